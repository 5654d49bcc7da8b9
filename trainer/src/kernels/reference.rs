//! The portable implementations, from burn tensor operations and differentiated by burn's
//! autodiff: the defaults of [`Kernels`](super::Kernels), the reference the fused
//! kernels are tested against, and the building blocks (dense layer, LayerNorm, GELU,
//! dropout) the model uses directly.
//!
//! **Precision.** Activations carry the compute dtype (fp32, bf16 or fp16); parameters
//! are fp32 master weights, cast to the activations' dtype where they meet them (the
//! cast is differentiable: gradients arrive in fp32). Matrix products, GELU and the
//! residual sums run in the compute dtype; LayerNorm statistics, the attention softmax,
//! the generator's vocabulary logits (they are sampled from) and both heads' softmax,
//! cross-entropy and sampling run in fp32. In fp32 every cast is a no-op.

use super::{AdamWUpdate, HeadOutput, HeadRows, LayerCall, LayerTensors};
use crate::loss::softmax;
use crate::sample::sample_categorical;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, IndexingUpdateOp, Int, Tensor};

/// `y = x·W + b` on 2-D input, `W` stored `[in, out]`, in `x`'s dtype.
///
/// # Shapes
/// - `x`: `[rows, in]`; `weight`: `[in, out]`; `bias`: `[out]`
/// - output: `[rows, out]`
pub fn linear<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 2> {
    let dtype = x.dtype();
    burn::tensor::module::linear(x, weight.cast(dtype), Some(bias.cast(dtype)))
}

/// Layer normalisation over the last dimension (biased variance, as PyTorch), computed
/// in fp32 and returned in `x`'s dtype. The inverse standard deviation is a `powf`, not
/// a division (see [`crate::loss`]).
///
/// # Shapes
/// - `x`: `[rows, features]`; `gain`, `shift`: `[features]`
/// - output: `[rows, features]`
pub fn layer_norm<B: Backend>(
    x: Tensor<B, 2>,
    gain: Tensor<B, 1>,
    shift: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, 2> {
    let dtype = x.dtype();
    let x = x.cast(DType::F32);
    let centred = x.clone() - x.mean_dim(1);
    let var = centred.clone().square().mean_dim(1);
    let normed = centred * var.add_scalar(eps).powf_scalar(-0.5);
    let y =
        normed * gain.cast(DType::F32).unsqueeze::<2>() + shift.cast(DType::F32).unsqueeze::<2>();
    y.cast(dtype)
}

/// GELU with the exact error function, `x·Φ(x)` (BERT / Hugging Face `"gelu"`).
///
/// Built from differentiable primitives so the gradient is exact too (burn's fused
/// `gelu` differentiates the tanh approximation).
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let cdf = x
        .clone()
        .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5);
    x * cdf
}

/// Inverted dropout with keep probability `1 − p`, active only on autodiff backends
/// (burn's convention: a model on the inner backend is in evaluation mode).
pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64) -> Tensor<B, D> {
    if p == 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    // A uniform costs half the random bytes of burn's Bernoulli draw (a u64 each).
    let keep = x
        .random_like(Distribution::Uniform(0.0, 1.0))
        .greater_equal_elem(p)
        .float()
        .cast(x.dtype())
        .mul_scalar(1.0 / (1.0 - p));
    x * keep
}

/// Scaled dot-product self-attention with an additive score bias and the output
/// projection. Q, K and V come from one fused `[H, 3H]` projection; only the scores are
/// 4-D.
///
/// # Shapes
/// - `x`: `[batch · seq, H]`; `bias`: `[batch or 1, heads or 1, seq or 1, seq]`
/// - output: `[batch · seq, H]`
fn attention<B: Backend>(
    x: Tensor<B, 2>,
    w: &LayerTensors<B>,
    call: &LayerCall,
    bias: Tensor<B, 4>,
) -> Tensor<B, 2> {
    let [rows, hidden] = x.dims();
    let (batch, seq, heads) = (call.batch, call.seq, call.heads);
    let head_dim = hidden / heads;
    // [rows, 3H] → [3, batch, heads, seq, head_dim]
    let qkv = linear(x, w.qkv_w.clone(), w.qkv_b.clone())
        .reshape([batch, seq, 3, heads, head_dim])
        .permute([2, 0, 3, 1, 4]);
    let part = |i: usize| {
        qkv.clone()
            .narrow(0, i, 1)
            .reshape([batch, heads, seq, head_dim])
    };
    let q = part(0).mul_scalar(1.0 / (head_dim as f64).sqrt());
    let (k, v) = (part(1), part(2));
    let dtype = q.dtype();
    // Scores, bias and softmax in fp32; the products in the compute dtype.
    let scores = q.matmul(k.swap_dims(2, 3)).cast(DType::F32) + bias.cast(DType::F32);
    let probs = dropout(softmax(scores, 3), call.attention_dropout).cast(dtype);
    let context = probs.matmul(v).swap_dims(1, 2).reshape([rows, hidden]);
    linear(context, w.out_w.clone(), w.out_b.clone())
}

/// One post-LN encoder layer: attention → residual → LayerNorm → FFN (GELU) → residual →
/// LayerNorm, with dropout on the attention probabilities and both residual branches.
///
/// # Shapes
/// - `x`: `[batch · seq, H]`; `bias`: `[batch or 1, heads or 1, seq or 1, seq]`
/// - output: `[batch · seq, H]`
pub fn encoder_layer<B: Backend>(
    x: Tensor<B, 2>,
    w: LayerTensors<B>,
    call: &LayerCall,
    bias: Tensor<B, 4>,
) -> Tensor<B, 2> {
    let attended = attention(x.clone(), &w, call, bias);
    let x = layer_norm(
        x + dropout(attended, call.hidden_dropout),
        w.norm1_g,
        w.norm1_b,
        call.eps,
    );
    let ffn = linear(
        gelu(linear(x.clone(), w.ffn_in_w, w.ffn_in_b)),
        w.ffn_out_w,
        w.ffn_out_b,
    );
    layer_norm(
        x + dropout(ffn, call.hidden_dropout),
        w.norm2_g,
        w.norm2_b,
        call.eps,
    )
}

impl<B: Backend> HeadRows<B> {
    fn narrow(&self, start: usize, len: usize) -> Self {
        Self {
            x: self.x.clone().narrow(0, start, len),
            targets: self.targets.clone().narrow(0, start, len),
            weights: self.weights.clone().narrow(0, start, len),
            uniforms: self.uniforms.clone().map(|u| u.narrow(0, start, len)),
        }
    }
}

/// Softmax probabilities, per-row cross-entropy and argmax hits of some logits.
struct Scores<B: Backend> {
    probs: Tensor<B, 2>,
    cross_entropy: Tensor<B, 1>,
    correct: Tensor<B, 1>,
}

/// Six passes over the logits; the subtraction, `exp` and division reuse their buffer.
fn scores<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Scores<B> {
    let rows = targets.dims()[0];
    let picked = logits.clone().gather(1, targets.clone().reshape([rows, 1]));
    let max = logits.clone().max_dim(1);
    let correct = logits
        .clone()
        .argmax(1)
        .reshape([rows])
        .equal(targets)
        .float()
        .sum();
    let exp = (logits - max.clone()).exp();
    let sum = exp.clone().sum_dim(1);
    let probs = exp / sum.clone();
    Scores {
        probs,
        cross_entropy: (sum.log() + max - picked).reshape([rows]),
        correct,
    }
}

/// [`vocab_head`] of one block of rows: the logits in fp32 (from an fp32 product when
/// they are sampled from, else from one in `x`'s dtype), everything computed from them
/// in fp32, the gradient products in `x`'s dtype.
fn head_block<B: Backend>(
    rows: HeadRows<B>,
    table: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> HeadOutput<B> {
    let [n, _] = rows.x.dims();
    let vocab = bias.dims()[0];
    let device = rows.x.device();
    let dtype = rows.x.dtype();
    // Logits that are sampled from come from an fp32 product; the others from one in the
    // compute dtype, cast to fp32.
    let product = if rows.uniforms.is_some() {
        DType::F32
    } else {
        dtype
    };
    let logits = rows
        .x
        .clone()
        .cast(product)
        .matmul(table.clone().cast(product).transpose())
        .cast(DType::F32)
        + bias.cast(DType::F32).unsqueeze::<2>();
    let table = table.cast(dtype);
    let Scores {
        probs,
        cross_entropy,
        correct,
    } = scores(logits, rows.targets.clone());
    let samples = rows.uniforms.map(|u| sample_categorical(probs.clone(), u));
    let minus_one = Tensor::full([n, 1], -1.0, &device);
    let grad = probs.scatter(
        1,
        rows.targets.reshape([n, 1]),
        minus_one,
        IndexingUpdateOp::Add,
    ) * rows.weights.cast(DType::F32).reshape([n, 1]);
    let d_bias = grad.clone().sum_dim(0).reshape([vocab]);
    let grad = grad.cast(dtype);
    HeadOutput {
        cross_entropy,
        correct,
        samples,
        d_x: grad.clone().matmul(table),
        d_bias,
        d_tokens: grad.transpose().matmul(rows.x).cast(DType::F32),
    }
}

/// Rows below which [`vocab_head`] does not split a head across two threads.
pub(crate) const SPLIT_ROWS: usize = 64;

/// A tied vocabulary head at some rows (the formulas are in [`crate::vocab`]): logits
/// `x·Eᵀ + b`, cross-entropy, argmax hits, draws by inverse CDF, and the gradients of
/// `Σ w_i · CE_i`. The rows are split into two halves on two threads (burn-ndarray runs
/// elementwise work on one thread).
pub fn vocab_head<B: Backend>(
    rows: HeadRows<B>,
    table: Tensor<B, 2>,
    bias: Tensor<B, 1>,
) -> HeadOutput<B> {
    let n = rows.x.dims()[0];
    if n < SPLIT_ROWS {
        return head_block(rows, table, bias);
    }
    let half = n / 2;
    let (first, second) = (rows.narrow(0, half), rows.narrow(half, n - half));
    let (a, b) = std::thread::scope(|scope| {
        let (table_first, bias_first) = (table.clone(), bias.clone());
        let worker = scope.spawn(move || head_block(first, table_first, bias_first));
        let second = head_block(second, table, bias);
        (
            worker.join().expect("a vocabulary worker thread panicked"),
            second,
        )
    });
    HeadOutput {
        cross_entropy: Tensor::cat(vec![a.cross_entropy, b.cross_entropy], 0),
        correct: a.correct + b.correct,
        samples: a
            .samples
            .zip(b.samples)
            .map(|(x, y)| Tensor::cat(vec![x, y], 0)),
        d_x: Tensor::cat(vec![a.d_x, b.d_x], 0),
        d_tokens: a.d_tokens + b.d_tokens,
        d_bias: a.d_bias + b.d_bias,
    }
}

/// One AdamW update: with `ĝ = grad_scale·g`,
///
/// ```text
/// m ← β₁·m + (1 − β₁)·ĝ      v ← β₂·v + (1 − β₂)·ĝ²
/// p ← decay·p − step_size · m/(√v + ε)
/// ```
///
/// Returns `[p, m, v]`.
pub fn adamw_update<B: Backend>(
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    m: Tensor<B, 1>,
    v: Tensor<B, 1>,
    u: &AdamWUpdate,
) -> [Tensor<B, 1>; 3] {
    let g = g.mul_scalar(u.grad_scale);
    let m = m.mul_scalar(u.beta1) + g.clone().mul_scalar(1.0 - u.beta1);
    let v = v.mul_scalar(u.beta2) + g.square().mul_scalar(1.0 - u.beta2);
    let update = m.clone() / v.clone().sqrt().add_scalar(u.eps);
    let p = if u.decay != 1.0 {
        p.mul_scalar(u.decay)
    } else {
        p
    };
    [p - update.mul_scalar(u.step_size), m, v]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuInner;

    type B = CpuInner;

    #[test]
    fn linear_is_x_times_w_plus_b() {
        let device = Default::default();
        let y = linear(
            Tensor::<B, 2>::from_floats([[1.0, 1.0]], &device),
            Tensor::from_floats([[1.0, 2.0], [3.0, 4.0]], &device),
            Tensor::from_floats([0.5, -0.5], &device),
        );
        assert_eq!(y.into_data().to_vec::<f32>().unwrap(), vec![4.5, 5.5]);
    }

    #[test]
    fn layer_norm_normalises_rows() {
        let device = Default::default();
        let y = layer_norm(
            Tensor::<B, 2>::from_floats([[1.0, 2.0, 3.0, 4.0]], &device),
            Tensor::ones([4], &device),
            Tensor::zeros([4], &device),
            1e-5,
        );
        let v = y.into_data().to_vec::<f32>().unwrap();
        let expected = [-1.341_636, -0.447_212, 0.447_212, 1.341_636];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{v:?}");
        }
    }

    #[test]
    fn gelu_matches_erf_formula() {
        let device = Default::default();
        let xs = [-3.0f32, -1.0, -0.1, 0.0, 0.5, 2.0];
        let y = gelu(Tensor::<B, 1>::from_floats(xs, &device));
        let got = y.into_data().to_vec::<f32>().unwrap();
        for (x, g) in xs.iter().zip(got) {
            let x = *x as f64;
            let want = 0.5 * x * (1.0 + erf_series(x / std::f64::consts::SQRT_2));
            assert!(
                (g as f64 - want).abs() < 1e-6,
                "gelu({x}) = {g}, want {want}"
            );
        }
    }

    /// The Taylor series of erf, accurate for |x| ≤ 3 (enough here; Abramowitz–Stegun
    /// 7.1.26 is too coarse).
    fn erf_series(x: f64) -> f64 {
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0;
        while term.abs() > 1e-17 || n < 5 {
            sum += term / (2 * n + 1) as f64;
            n += 1;
            term *= -x * x / n as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn dropout_is_identity_without_autodiff() {
        let device = Default::default();
        let x = Tensor::<B, 2>::ones([3, 3], &device);
        let y = dropout(x.clone(), 0.5);
        assert_eq!(x.into_data(), y.into_data());
    }
}
