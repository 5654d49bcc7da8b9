//! T5-style bucketed relative position bias (bidirectional).
//!
//! The bias added to the attention score of query `i` and key `j` is
//! `table[bucket(j − i), head]`. Half the buckets hold keys before the query, half keys
//! after it; within each half, the first `n/2` distances get one bucket each and larger
//! distances share logarithmically sized buckets up to `max_distance`, beyond which all
//! distances share the last bucket (Raffel et al. 2020; `_relative_position_bucket` in
//! Hugging Face's T5, which COCO-LM uses).

use super::layers::normal_param;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// Bucket of the relative position `key − query`, bidirectional T5 formula, computed in
/// `f32` like the reference.
pub fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let half = num_buckets / 2;
    let mut bucket = if relative_position > 0 { half } else { 0 };
    let n = relative_position.unsigned_abs() as usize;
    let max_exact = half / 2;
    bucket += if n < max_exact {
        n
    } else {
        let scaled = (n as f32 / max_exact as f32).ln()
            / (max_distance as f32 / max_exact as f32).ln()
            * (half - max_exact) as f32;
        (max_exact + scaled as usize).min(half - 1)
    };
    bucket
}

/// One bias table `[buckets, heads]` shared by all layers of an encoder.
#[derive(Module, Debug)]
pub struct RelativePositionBias<B: Backend> {
    /// `[num_buckets, num_heads]`.
    pub table: Param<Tensor<B, 2>>,
    /// Number of buckets (both directions together).
    pub num_buckets: usize,
    /// Distance from which all positions share the last bucket.
    pub max_distance: usize,
}

impl<B: Backend> RelativePositionBias<B> {
    /// A table drawn from `N(0, init_std²)`.
    pub fn new(
        num_buckets: usize,
        max_distance: usize,
        num_heads: usize,
        init_std: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            table: normal_param([num_buckets, num_heads], init_std, device),
            num_buckets,
            max_distance,
        }
    }

    /// The bias for a sequence length.
    ///
    /// # Shapes
    /// - output: `[1, heads, seq, seq]`, entry `[0, h, i, j]` for query `i`, key `j`
    pub fn forward(&self, seq: usize) -> Tensor<B, 4> {
        let table = self.table.val();
        let device = table.device();
        let [_, heads] = table.dims();
        let buckets: Vec<i64> = (0..seq as i64)
            .flat_map(|i| {
                (0..seq as i64).map(move |j| {
                    relative_position_bucket(j - i, self.num_buckets, self.max_distance) as i64
                })
            })
            .collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(buckets, [seq * seq]), &device);
        table
            .select(0, index)
            .reshape([seq, seq, heads])
            .permute([2, 0, 1])
            .unsqueeze::<4>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values worked out by hand from the T5 formula with 32 buckets, max distance 128:
    /// 16 buckets per direction, 8 exact, then `8 + ⌊ln(n/8)/ln(16)·8⌋` capped at 15;
    /// keys after the query (positive `j − i`) add 16.
    #[test]
    fn buckets_match_hand_computed_t5_values() {
        let cases: [(i64, usize); 16] = [
            (0, 0),
            (-1, 1),
            (1, 17),
            (-7, 7),
            (7, 23),
            (-8, 8),   // ln(1) = 0
            (-11, 8),  // ln(11/8)/ln16·8 = 0.919
            (-12, 9),  // ln(1.5)/ln16·8 = 1.170
            (-16, 10), // ln(2)/ln16·8 = 2 exactly
            (-23, 11), // ln(2.875)/ln16·8 = 3.047
            (-32, 12), // ln(4)/ln16·8 = 4
            (-64, 14), // ln(8)/ln16·8 = 6
            (-127, 15),
            (-128, 15), // 8 + 8 = 16, capped at 15
            (-1000, 15),
            (1000, 31),
        ];
        for (rel, want) in cases {
            assert_eq!(
                relative_position_bucket(rel, 32, 128),
                want,
                "relative position {rel}"
            );
        }
    }

    #[test]
    fn bias_is_indexed_by_key_minus_query() {
        let device = Default::default();
        let bias = RelativePositionBias::<crate::backend::CpuInner> {
            table: Param::from_tensor(Tensor::from_floats(
                [[0.0, 100.0], [1.0, 101.0], [2.0, 102.0], [3.0, 103.0]],
                &device,
            )),
            num_buckets: 4,
            max_distance: 8,
        };
        // 4 buckets: 2 per direction, 1 exact: distance 0 → 0, ≥ 1 → 1; after → +2.
        let b = bias.forward(3).into_data().to_vec::<f32>().unwrap();
        assert_eq!(&b[..9], &[0.0, 3.0, 3.0, 1.0, 0.0, 3.0, 1.0, 1.0, 0.0]);
        assert_eq!(b[9], 100.0);
    }
}
