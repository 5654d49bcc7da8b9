//! Drawing the generator's replacement tokens.

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};

/// One uniform `U[0, 1)` per row from the backend RNG, for [`sample_categorical`]. Drawn
/// in one call (before any work is split across threads) so the stream is reproducible.
pub fn uniforms<B: Backend>(rows: usize, device: &B::Device) -> Tensor<B, 1> {
    Tensor::random([rows], Distribution::Uniform(0.0, 1.0), device)
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
    use crate::test_util::rng_lock;

    #[test]
    fn draws_follow_the_distribution() {
        let _guard = rng_lock();
        let device = Default::default();
        CpuInner::seed(&device, 7);
        let p = [0.1f32, 0.6, 0.0, 0.3];
        let rows = 20_000;
        let probs = Tensor::<CpuInner, 1>::from_floats(p, &device)
            .unsqueeze::<2>()
            .repeat_dim(0, rows);
        let draws = sample_categorical(probs, uniforms(rows, &device))
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
}
