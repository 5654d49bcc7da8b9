//! Loss functions with exact, deterministic gradients and few vocabulary-sized
//! temporaries.
//!
//! burn-ndarray's SIMD `recip` is the 14-bit `rcp14` approximation on AVX-512 machines,
//! applied to the aligned middle of a buffer only; burn's autodiff uses it in the
//! backward pass of `log`, `log1p` and tensor division. Gradients through those ops are
//! therefore inexact and depend on buffer alignment, which breaks bit-exact resume. The
//! losses here attach their analytic gradient through a *surrogate*: the value is
//! computed on detached inputs, and `s − s.detach()` (exactly zero) adds a term `s` whose
//! gradient is the right one. Model code uses [`softmax`], which divides only a constant
//! by a tracked tensor, and non-integer `powf` (burn lowers `powf(−1)` and `powf(−2)` to
//! `recip` too).

use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

/// `value` with the gradient of `surrogate` (`value + (surrogate − surrogate.detach())`).
fn with_gradient_of<B: Backend, const D: usize>(
    value: Tensor<B, D>,
    surrogate: Tensor<B, D>,
) -> Tensor<B, D> {
    value + (surrogate.clone() - surrogate.detach())
}

/// Softmax along `dim` as `exp(x − max) · (1 / Σ exp)`, where `1 / s` divides an untracked
/// tensor of ones: its gradient `−1/s²` needs no `recip`.
pub fn softmax<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let max = x.clone().detach().max_dim(dim);
    let exp = (x - max).exp();
    let sum = exp.clone().sum_dim(dim);
    exp * (sum.ones_like() / sum)
}

/// Cross-entropy `−log softmax(logits)[target]` of every row, and the softmax
/// probabilities (detached; the generator samples from them).
///
/// The gradient `softmax − onehot` is attached through `Σ p·logits − logits[target]`
/// with `p` constant: the backward pass keeps one `[rows, classes]` tensor (`p`).
///
/// # Shapes
/// - `logits`: `[rows, classes]`; `targets`: `[rows]`
/// - output: `([rows], [rows, classes])`
pub fn cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> (Tensor<B, 1>, Tensor<B, 2>) {
    let rows = targets.dims()[0];
    let targets = targets.reshape([rows, 1]);
    let fixed = logits.clone().detach();
    let max = fixed.clone().max_dim(1);
    let exp = (fixed.clone() - max.clone()).exp();
    let sum = exp.clone().sum_dim(1);
    let probs = exp / sum.clone();
    let value = sum.log() + max - fixed.gather(1, targets.clone());
    let surrogate = (logits.clone() * probs.clone()).sum_dim(1) - logits.gather(1, targets);
    (with_gradient_of(value, surrogate).reshape([rows]), probs)
}

/// Binary cross-entropy of a logit against a 0/1 label, elementwise and stable:
/// `max(x, 0) − x·y + log(1 + e^(−|x|))`, with gradient `σ(x) − y`.
///
/// # Shapes
/// - `logits`, `labels`: `[n]`
/// - output: `[n]`
pub fn binary_cross_entropy_with_logits<B: Backend>(
    logits: Tensor<B, 1>,
    labels: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let x = logits.clone().detach();
    let value = relu(x.clone()) - x.clone() * labels.clone() + x.clone().abs().neg().exp().log1p();
    let slope = sigmoid(x) - labels;
    with_gradient_of(value, logits * slope)
}

/// Sequence contrastive loss: half the sum of the `2B` views' cross-entropies, as the
/// released COCO-LM's `seqcontrast` (`0.5 · nll_loss(…, reduction='sum')`, posted by its
/// authors in microsoft/COCO-LM issue #2), so each pair counts once.
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
    cross_entropy(similarity, positives).0.sum().mul_scalar(0.5)
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
        let ce = vec1(cross_entropy(logits, targets).0);
        assert!((ce[0] - 4f32.ln()).abs() < 1e-6, "{ce:?}");
        assert!((ce[1] - (5f32 / 3.0).ln()).abs() < 1e-6, "{ce:?}");
    }

    #[test]
    fn cross_entropy_is_stable_for_large_logits() {
        let device = Default::default();
        let logits = Tensor::<B, 2>::from_floats([[1000.0, 0.0]], &device);
        let ce = vec1(cross_entropy(logits, Tensor::from_ints([1], &device)).0);
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
        // The released loss halves the sum over the 2B views.
        let want = 0.5 * want;
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
            (cross_entropy(logits, t).0 * w).sum().into_scalar() as f64
        };
        let logits = Tensor::<AD, 2>::from_data(TensorData::new(values.clone(), [3, 5]), &device)
            .require_grad();
        let t = Tensor::<AD, 1, Int>::from_data(TensorData::new(targets.to_vec(), [3]), &device);
        let w = Tensor::<AD, 1>::from_floats([1.0, 0.5, 2.0], &device);
        let grads = (cross_entropy(logits.clone(), t).0 * w).sum().backward();
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

    /// Central differences of a scalar function of a vector, against autodiff.
    fn check_gradient(values: &[f32], f: impl Fn(Tensor<CpuBackend, 1>) -> Tensor<CpuBackend, 1>) {
        type AD = CpuBackend;
        let device = Default::default();
        let n = values.len();
        let eval = |v: &[f32]| -> f64 {
            f(Tensor::<AD, 1>::from_data(
                TensorData::new(v.to_vec(), [n]),
                &device,
            ))
            .into_scalar() as f64
        };
        let x = Tensor::<AD, 1>::from_data(TensorData::new(values.to_vec(), [n]), &device)
            .require_grad();
        let grads = f(x.clone()).backward();
        let analytic = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        let h = 1e-2f32;
        for k in 0..n {
            let (mut plus, mut minus) = (values.to_vec(), values.to_vec());
            plus[k] += h;
            minus[k] -= h;
            let numeric = (eval(&plus) - eval(&minus)) / (2.0 * h as f64);
            assert!(
                (numeric - analytic[k] as f64).abs() < 2e-3 * (1.0 + numeric.abs()),
                "d/dx[{k}]: numeric {numeric}, autodiff {}",
                analytic[k]
            );
        }
    }

    #[test]
    fn bce_gradient_matches_finite_differences() {
        let device = Default::default();
        let labels = [1.0f32, 0.0, 0.0, 1.0, 1.0];
        check_gradient(&[-2.0, -0.3, 0.0, 0.7, 3.0], |x| {
            let y = Tensor::from_floats(labels, &device);
            let w = Tensor::from_floats([1.0, 2.0, 0.5, 1.0, 3.0], &device);
            (binary_cross_entropy_with_logits(x, y) * w).sum()
        });
    }

    #[test]
    fn softmax_matches_burn_and_its_gradient_matches_finite_differences() {
        let device = Default::default();
        let x = Tensor::<B, 2>::from_floats([[0.5, -1.0, 2.0], [3.0, 3.0, -4.0]], &device);
        let ours = softmax(x.clone(), 1).into_data().to_vec::<f32>().unwrap();
        let theirs = burn::tensor::activation::softmax(x, 1)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (a, b) in ours.iter().zip(theirs) {
            assert!((a - b).abs() < 1e-6);
        }
        check_gradient(&[0.5, -1.0, 2.0, 3.0, 3.0, -4.0], |x| {
            let w =
                Tensor::<CpuBackend, 2>::from_floats([[1.0, -2.0, 0.5], [0.3, 1.0, 2.0]], &device);
            (softmax(x.reshape([2, 3]), 1) * w).sum()
        });
    }

    #[test]
    fn contrastive_gradient_matches_finite_differences() {
        check_gradient(&[0.6, 0.8, 1.0, 0.0, 0.0, 1.0, 0.8, -0.6], |x| {
            contrastive_loss(x.reshape([4, 2]), 0.7)
        });
    }

    /// Gradients must not depend on where buffers happen to be aligned (the SIMD `recip`
    /// approximation did): repeated backward passes give identical bits.
    #[test]
    fn gradients_are_bit_reproducible() {
        type AD = CpuBackend;
        let device = Default::default();
        let values: Vec<f32> = (0..3000)
            .map(|k| ((k * 37 % 101) as f32 - 50.0) * 0.07)
            .collect();
        let labels: Vec<f32> = (0..1000).map(|k| (k % 3 == 0) as u8 as f32).collect();
        let targets: Vec<i64> = (0..1000).map(|k| k % 3).collect();
        let run = || {
            let x = Tensor::<AD, 1>::from_data(TensorData::new(values.clone(), [3000]), &device)
                .require_grad();
            let y = Tensor::<AD, 1>::from_data(TensorData::new(labels.clone(), [1000]), &device);
            let t =
                Tensor::<AD, 1, Int>::from_data(TensorData::new(targets.clone(), [1000]), &device);
            let bce = binary_cross_entropy_with_logits(x.clone().narrow(0, 7, 1000), y).sum();
            let ce = cross_entropy(x.clone().reshape([1000, 3]), t).0.sum();
            let sm = (softmax(x.clone().reshape([30, 100]), 1) * 3.0)
                .square()
                .sum();
            let sm = sm
                + (softmax(x.clone().reshape([300, 10]), 1) * x.clone().reshape([300, 10])).sum();
            let grads = (bce + ce + sm).backward();
            x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap()
        };
        let first = run();
        for k in 1..8 {
            // Shift where the next buffers land (the SIMD split depends on alignment).
            let _shift: Vec<Tensor<B, 1>> = (0..k)
                .map(|j| Tensor::zeros([17 + 3 * j], &device))
                .collect();
            assert!(run() == first, "run {k} differs");
        }
    }
}
