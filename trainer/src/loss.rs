//! Loss functions, written to keep few vocabulary-sized temporaries alive.

use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

/// Cross-entropy `−log softmax(logits)[target]` of every row.
///
/// Only the (detached) row maxima, one `exp` output and the gathered logits are kept for
/// the backward pass; no log-probability matrix is materialised.
///
/// # Shapes
/// - `logits`: `[rows, classes]`; `targets`: `[rows]`
/// - output: `[rows]`
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let rows = targets.dims()[0];
    let max = logits.clone().detach().max_dim(1);
    let shifted = logits - max;
    let log_sum_exp = shifted.clone().exp().sum_dim(1).log();
    let picked = shifted.gather(1, targets.reshape([rows, 1]));
    (log_sum_exp - picked).reshape([rows])
}

/// Binary cross-entropy of a logit against a 0/1 label, elementwise and stable:
/// `max(x, 0) − x·y + log(1 + e^(−|x|))`.
///
/// # Shapes
/// - `logits`, `labels`: `[n]`
/// - output: `[n]`
pub fn binary_cross_entropy_with_logits<B: Backend>(
    logits: Tensor<B, 1>,
    labels: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let soft = logits.clone().abs().neg().exp().log1p();
    relu(logits.clone()) - logits * labels + soft
}

/// Sequence contrastive loss, summed over the `2B` views.
///
/// `views` holds `B` first views then their `B` second views, each row L2-normalised.
/// The positive of row `i` is row `(i + B) mod 2B`; the other `2B − 2` rows are
/// negatives (the row itself is excluded).
///
/// # Shapes
/// - `views`: `[2B, H]`
/// - output: `[1]`
pub fn contrastive_loss<B: Backend>(views: Tensor<B, 2>, temperature: f64) -> Tensor<B, 1> {
    let [n, _] = views.dims();
    let half = n / 2;
    let device = views.device();
    let similarity = views
        .clone()
        .matmul(views.transpose())
        .div_scalar(temperature);
    let diagonal: Vec<bool> = (0..n * n).map(|k| k / n == k % n).collect();
    let diagonal = Tensor::<B, 2, Bool>::from_data(TensorData::new(diagonal, [n, n]), &device);
    let similarity = similarity.mask_fill(diagonal, -1.0e4);
    let positives: Vec<i64> = (0..n).map(|i| ((i + half) % n) as i64).collect();
    let positives = Tensor::<B, 1, Int>::from_data(TensorData::new(positives, [n]), &device);
    cross_entropy(similarity, positives).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{CpuBackend, CpuInner};
    use burn::tensor::activation::log_softmax;

    type B = CpuInner;

    fn vec1(t: Tensor<B, 1>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn cross_entropy_known_values() {
        let device = Default::default();
        // Uniform logits over 4 classes: ln 4. Row 2: logits (0, ln 3) → −log(3/4).
        let logits = Tensor::<B, 2>::from_floats(
            [[1.0, 1.0, 1.0, 1.0], [0.0, 3f32.ln(), 0.0, -1e9]],
            &device,
        );
        let targets = Tensor::<B, 1, Int>::from_ints([2, 1], &device);
        let ce = vec1(cross_entropy(logits, targets));
        assert!((ce[0] - 4f32.ln()).abs() < 1e-6, "{ce:?}");
        assert!((ce[1] - (5f32 / 3.0).ln()).abs() < 1e-6, "{ce:?}");
    }

    #[test]
    fn cross_entropy_is_stable_for_large_logits() {
        let device = Default::default();
        let logits = Tensor::<B, 2>::from_floats([[1000.0, 0.0]], &device);
        let ce = vec1(cross_entropy(logits, Tensor::from_ints([1], &device)));
        assert!((ce[0] - 1000.0).abs() < 1e-3, "{ce:?}");
    }

    #[test]
    fn bce_known_values() {
        let device = Default::default();
        let x = Tensor::<B, 1>::from_floats([0.0, 2.0, -3.0, 50.0], &device);
        let y = Tensor::<B, 1>::from_floats([1.0, 0.0, 0.0, 1.0], &device);
        let got = vec1(binary_cross_entropy_with_logits(x, y));
        let want = [
            2f64.ln(),
            (1.0 + 2f64.exp()).ln(),
            (1.0 + (-3f64).exp()).ln(),
            0.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn contrastive_loss_by_hand() {
        let device = Default::default();
        // B = 1: two views; each row's only candidate is its positive → loss 0.
        let views = Tensor::<B, 2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
        assert!(vec1(contrastive_loss(views, 1.0))[0].abs() < 1e-6);
        // B = 2, orthonormal-ish views: row 0 positive is row 2.
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let views =
            Tensor::<B, 2>::from_floats([[1.0, 0.0], [0.0, 1.0], [s, s], [0.0, 1.0]], &device);
        let got = vec1(contrastive_loss(views, 0.5))[0] as f64;
        let sim = |a: [f64; 2], b: [f64; 2]| (a[0] * b[0] + a[1] * b[1]) / 0.5;
        let v = [[1.0, 0.0], [0.0, 1.0], [s as f64, s as f64], [0.0, 1.0]];
        let mut want = 0.0;
        for i in 0..4 {
            let pos = (i + 2) % 4;
            let denom: f64 = (0..4)
                .filter(|&j| j != i)
                .map(|j| sim(v[i], v[j]).exp())
                .sum();
            want += -(sim(v[i], v[pos]).exp() / denom).ln();
        }
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }

    /// Finite differences of the composed cross-entropy against its autodiff gradient.
    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        type AD = CpuBackend;
        let device = Default::default();
        let values: Vec<f32> = (0..15).map(|k| ((k * 7 % 11) as f32 - 5.0) * 0.3).collect();
        let targets = [3i64, 0, 4];
        let loss_of = |v: &[f32]| -> f64 {
            let logits = Tensor::<B, 2>::from_data(TensorData::new(v.to_vec(), [3, 5]), &device);
            let t = Tensor::<B, 1, Int>::from_data(TensorData::new(targets.to_vec(), [3]), &device);
            let w = Tensor::<B, 1>::from_floats([1.0, 0.5, 2.0], &device);
            (cross_entropy(logits, t) * w).sum().into_scalar() as f64
        };
        let logits = Tensor::<AD, 2>::from_data(TensorData::new(values.clone(), [3, 5]), &device)
            .require_grad();
        let t = Tensor::<AD, 1, Int>::from_data(TensorData::new(targets.to_vec(), [3]), &device);
        let w = Tensor::<AD, 1>::from_floats([1.0, 0.5, 2.0], &device);
        let grads = (cross_entropy(logits.clone(), t) * w).sum().backward();
        let analytic = logits
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        // Cross-check against log_softmax too.
        let reference = {
            let l = Tensor::<B, 2>::from_data(TensorData::new(values.clone(), [3, 5]), &device);
            let lp = log_softmax(l, 1).into_data().to_vec::<f32>().unwrap();
            -(lp[3] as f64) - 0.5 * lp[5] as f64 - 2.0 * lp[14] as f64
        };
        assert!((loss_of(&values) - reference).abs() < 1e-5);
        let h = 1e-2f32;
        for k in 0..values.len() {
            let mut plus = values.clone();
            plus[k] += h;
            let mut minus = values.clone();
            minus[k] -= h;
            let numeric = (loss_of(&plus) - loss_of(&minus)) / (2.0 * h as f64);
            assert!(
                (numeric - analytic[k] as f64).abs() < 2e-3,
                "d/dlogit[{k}]: numeric {numeric}, autodiff {}",
                analytic[k]
            );
        }
    }
}
