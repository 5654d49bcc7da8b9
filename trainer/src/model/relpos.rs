//! COCO-LM's bucketed relative position bias (bidirectional), one table per encoder.
//!
//! The bias added to the attention score of query `i` and key `j` is
//! `table[bucket(j − i), head]`, with the bucket function of the released COCO-LM
//! (`relative_position_bucket` in `fairseq/modules/transformer_sentence_encoder.py` of
//! microsoft/COCO-LM): with `n = |j − i|`, `half = buckets / 2` and `exact = half / 2`,
//! a distance below `exact` is its own magnitude, a larger one
//! `exact + ⌈ln(n / exact) / ln((max_distance − 1) / exact) · (half − 1 − exact)⌉`, at
//! most `half − 1`; the magnitude takes the sign of `j − i`, and the whole matrix is
//! shifted so that its smallest entry (at distance `max_positions − 1`) is bucket 0.
//!
//! This is not Hugging Face T5's function (floor instead of ceiling, `ln(max_distance /
//! exact)`, and the two directions in separate halves): the two differ at 35 distances
//! per direction for 32 buckets and maximum distance 128, distance 12 among them.

use super::layers::normal_param;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// Bucket magnitude of a distance `n ≥ 0`, computed in `f32` like the reference.
fn magnitude(n: usize, num_buckets: usize, max_distance: usize) -> usize {
    let half = num_buckets / 2;
    let exact = half / 2;
    if n < exact {
        return n;
    }
    let span = (half - 1 - exact) as f32;
    let scaled = ((n as f32 / exact as f32).ln() / ((max_distance - 1) as f32 / exact as f32).ln()
        * span)
        .ceil();
    (exact + scaled as usize).min(half - 1)
}

/// Bucket of the relative position `key − query` in a model with `max_positions`
/// positions: COCO-LM's signed bucket shifted by the magnitude of the farthest distance,
/// so buckets run from 0 to twice that magnitude.
pub fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
    max_positions: usize,
) -> usize {
    let shift = magnitude(max_positions.saturating_sub(1), num_buckets, max_distance);
    shifted_bucket(relative_position, shift, num_buckets, max_distance)
}

/// [`relative_position_bucket`] with its shift already computed.
fn shifted_bucket(
    relative_position: i64,
    shift: usize,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let n = magnitude(
        relative_position.unsigned_abs() as usize,
        num_buckets,
        max_distance,
    );
    if relative_position < 0 {
        shift - n
    } else {
        shift + n
    }
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
    /// Positions of the model, which fix the bucket of distance 0.
    pub max_positions: usize,
}

impl<B: Backend> RelativePositionBias<B> {
    /// A table drawn from `N(0, init_std²)`.
    pub fn new(
        num_buckets: usize,
        max_distance: usize,
        max_positions: usize,
        num_heads: usize,
        init_std: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            table: normal_param([num_buckets, num_heads], init_std, device),
            num_buckets,
            max_distance,
            max_positions,
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
        let (buckets, distance) = (self.num_buckets, self.max_distance);
        let shift = magnitude(self.max_positions.saturating_sub(1), buckets, distance);
        let buckets: Vec<i64> = (0..seq as i64)
            .flat_map(|i| {
                (0..seq as i64).map(move |j| shifted_bucket(j - i, shift, buckets, distance) as i64)
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

    /// Values worked out by hand from COCO-LM's function with 32 buckets, max distance
    /// 128 and 512 positions: 16 magnitudes per direction, 8 exact, then
    /// `8 + ⌈ln(n/8)/ln(127/8)·7⌉` capped at 15; the shift is the magnitude of distance
    /// 511, 15. Hugging Face T5's function gives 9 (not 10) at −12 and 8 (not 9) at −9.
    #[test]
    fn buckets_match_hand_computed_coco_lm_values() {
        let cases: [(i64, usize); 18] = [
            (0, 15),
            (-1, 14),
            (1, 16),
            (-7, 8),
            (7, 22),
            (-8, 7),   // ln(1) = 0
            (-9, 6),   // ln(9/8)/ln(15.875)·7 = 0.298 → 1
            (-11, 6),  // 0.806 → 1
            (-12, 5),  // 1.027 → 2
            (12, 25),  // the same, keys after the query
            (-16, 5),  // 1.755 → 2
            (-23, 4),  // 2.674 → 3
            (-45, 2),  // 4.373 → 5
            (-90, 0),  // 6.128 → 7
            (-127, 0), // 7 → 15 capped
            (-1000, 0),
            (1000, 30),
            (511, 30),
        ];
        for (rel, want) in cases {
            assert_eq!(
                relative_position_bucket(rel, 32, 128, 512),
                want,
                "relative position {rel}"
            );
        }
    }

    /// The shift follows the model's positions, as the reference's `rp_bucket.min()`
    /// over a `max_positions × max_positions` matrix does.
    #[test]
    fn the_shift_is_the_magnitude_of_the_farthest_distance() {
        // 64 positions: distance 63 has magnitude 8 + ⌈ln(63/8)/ln(15.875)·7⌉ = 8 + 6.
        assert_eq!(relative_position_bucket(0, 32, 128, 64), 14);
        assert_eq!(relative_position_bucket(-63, 32, 128, 64), 0);
        assert_eq!(relative_position_bucket(63, 32, 128, 64), 28);
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
            max_positions: 8,
        };
        // 4 buckets: magnitudes 0 (distance 0) and 1 (≥ 1), shift 1: before → 0,
        // same → 1, after → 2.
        let b = bias.forward(3).into_data().to_vec::<f32>().unwrap();
        assert_eq!(&b[..9], &[1.0, 2.0, 2.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0]);
        assert_eq!(b[9], 101.0);
    }
}
