//! Drawing the generator's replacement tokens.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use cocolm_shared::Batch;
use cocolm_shared::hash::seed_of;

/// One `U[0, 1)` per masked position of `batch`, for [`sample_categorical`]: a pure
/// function of `(seed, example, column)`, so the draw at a position does not depend on
/// which micro-batch or data-parallel rank the example lands in, nor on any RNG state.
///
/// # Panics
/// When `batch.example_indices` has fewer rows than a masked position needs (callers
/// check the batch first).
pub fn position_uniforms(seed: u64, batch: &Batch) -> Vec<f32> {
    batch
        .masked_positions
        .iter()
        .map(|&p| {
            let (row, col) = (p as usize / batch.seq_len, p as usize % batch.seq_len);
            let bits = seed_of(&[seed, batch.example_indices[row], col as u64]);
            // The top 24 bits: exactly representable, below 1.
            (bits >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// One class per row drawn from the probabilities `probs` by inverse CDF: the first class
/// whose cumulative probability reaches `u · total`. Pass detached `f32` probabilities (the
/// softmax of the generator's logits); no gradient flows through a draw.
///
/// # Shapes
/// - `probs`: `[rows, classes]`, rows summing to about 1; `uniforms`: `[rows]`
/// - output: `[rows]`
pub fn sample_categorical<B: Backend>(
    probs: Tensor<B, 2>,
    uniforms: Tensor<B, 1>,
) -> Tensor<B, 1, Int> {
    let [rows, classes] = probs.dims();
    let cdf = probs.cumsum(1);
    let total = cdf.clone().narrow(1, classes - 1, 1);
    let u = uniforms.reshape([rows, 1]) * total;
    let below = cdf.lower(u).float().sum_dim(1);
    below.int().clamp(0, classes as i64 - 1).reshape([rows])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuInner;

    #[test]
    fn draws_follow_the_distribution() {
        let device = Default::default();
        let p = [0.1f32, 0.6, 0.0, 0.3];
        let rows = 20_000;
        let batch = Batch {
            seq_len: 4,
            masked_positions: (0..rows as u32).map(|i| 4 * i + 1).collect(),
            example_indices: (0..rows as u64).collect(),
            ..Batch::default()
        };
        let uniforms = position_uniforms(7, &batch);
        assert!(uniforms.iter().all(|u| (0.0..1.0).contains(u)));
        let probs = Tensor::<CpuInner, 1>::from_floats(p, &device)
            .unsqueeze::<2>()
            .repeat_dim(0, rows);
        let uniforms = Tensor::<CpuInner, 1>::from_floats(uniforms.as_slice(), &device);
        let draws = sample_categorical(probs, uniforms)
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        let mut counts = [0usize; 4];
        for d in draws {
            counts[d as usize] += 1;
        }
        assert_eq!(counts[2], 0, "a zero-probability class was drawn");
        for (c, want) in counts.iter().zip(p) {
            let freq = *c as f32 / rows as f32;
            assert!((freq - want).abs() < 0.015, "{counts:?}");
        }
    }

    #[test]
    fn uniforms_depend_on_the_example_and_column_only() {
        let batch = Batch {
            seq_len: 3,
            masked_positions: vec![1, 5],
            example_indices: vec![40, 41],
            ..Batch::default()
        };
        // The same positions of the same examples, in another batch layout.
        let moved = Batch {
            seq_len: 3,
            masked_positions: vec![2, 4, 8],
            example_indices: vec![9, 40, 41],
            ..Batch::default()
        };
        let (a, b) = (position_uniforms(1, &batch), position_uniforms(1, &moved));
        assert_eq!(a, b[1..]);
        assert_ne!(a, position_uniforms(2, &batch));
    }
}
