//! The tied vocabulary projection and its cross-entropy, differentiated by hand.
//!
//! An LM head ends in `logits = x·Eᵀ + b` over the whole vocabulary, at the masked rows
//! only. Left to autodiff, the `[rows, vocab]` logits, their softmax and several
//! same-sized gradient temporaries are built and kept per head, and `Eᵀ` is copied in
//! every pass. Here the projection and the loss run on the inner backend, outside the
//! graph ([`Kernels::vocab_head`]: the burn-op reference by default, one fused pass over
//! the logits on the CPU):
//!
//! ```text
//! p   = softmax(x·Eᵀ + b)                 CE_i = log Σ exp − logit[target_i]
//! G   = (p − onehot(target)) · w_i         (w: the per-row loss weights)
//! ∂x  = G·E          ∂E = Gᵀ·x          ∂b = Σ_rows G
//! ```
//!
//! `∂x` enters the graph through the zero-valued surrogate `s − s.detach()` with
//! `s = Σ x ⊙ ∂x` (so the transform below the projection gets its gradient from the
//! backward pass), and `∂E`, `∂b` are added to the parameter gradients directly
//! ([`crate::step::objective::VocabGrads`]). The result is the gradient autodiff would compute, with one
//! `[rows, vocab]` matrix alive at a time.

use crate::kernels::{HeadRows, Kernels, TrainBackend};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Int, Tensor};

/// What one vocabulary head contributes to a training step.
#[derive(Debug, Clone)]
pub struct VocabLoss<B: AutodiffBackend> {
    /// Zero-valued fp32 scalar whose gradient with respect to the head input `x` is the
    /// weighted loss gradient `∂x`. Add it to the loss.
    pub surrogate: Tensor<B, 1>,
    /// Cross-entropy of every row (no gradient), `[rows]`.
    pub cross_entropy: Tensor<B::InnerBackend, 1>,
    /// Number of rows whose argmax is the target, `[1]`.
    pub correct: Tensor<B::InnerBackend, 1>,
    /// `∂E`, `[vocab, H]`.
    pub d_tokens: Tensor<B::InnerBackend, 2>,
    /// `∂b`, `[vocab]`.
    pub d_bias: Tensor<B::InnerBackend, 1>,
}

/// Loss, gradients and (given `uniforms`) one sampled class per row of a tied vocabulary
/// head.
///
/// `row_weights` are the weights of the rows' cross-entropies in the total loss; the
/// gradients are those of `Σ w_i · CE_i`. With `uniforms` (one `U[0, 1)` per row), one
/// class per row is drawn from the softmax by inverse CDF
/// ([`sample_categorical`](crate::sample::sample_categorical)).
///
/// # Shapes
/// - `x`: head input after the transform, `[rows, H]`; `table`: `E`, `[vocab, H]`;
///   `bias`: `[vocab]`
/// - `targets`, `row_weights`, `uniforms`: `[rows]`
/// - samples: `[rows]`
pub fn vocab_loss<B: TrainBackend>(
    x: Tensor<B, 2>,
    table: Tensor<B::InnerBackend, 2>,
    bias: Tensor<B::InnerBackend, 1>,
    targets: Tensor<B::InnerBackend, 1, Int>,
    row_weights: Tensor<B::InnerBackend, 1>,
    uniforms: Option<Tensor<B::InnerBackend, 1>>,
) -> (VocabLoss<B>, Option<Tensor<B::InnerBackend, 1, Int>>) {
    let rows = HeadRows {
        uniforms,
        x: x.clone().inner(),
        targets,
        weights: row_weights,
    };
    let out = B::InnerBackend::vocab_head(rows, table, bias);
    let s = (x * Tensor::from_inner(out.d_x)).sum();
    (
        VocabLoss {
            surrogate: (s.clone() - s.detach()).cast(DType::F32),
            cross_entropy: out.cross_entropy,
            correct: out.correct,
            d_tokens: out.d_tokens,
            d_bias: out.d_bias,
        },
        out.samples,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;
    use crate::loss::cross_entropy;
    use burn::tensor::{Distribution, TensorData};

    type AD = CpuBackend;

    /// The hand-written gradients equal autodiff through `x·Eᵀ + b` and cross-entropy,
    /// for a head processed whole and one split across two threads.
    #[test]
    fn matches_autodiff() {
        for rows in [5, crate::kernels::reference::SPLIT_ROWS + 7] {
            check_against_autodiff(rows);
        }
    }

    fn check_against_autodiff(rows: usize) {
        let device = Default::default();
        let (hidden, vocab) = (4, 9);
        let x = Tensor::<AD, 2>::random([rows, hidden], Distribution::Normal(0.0, 1.0), &device);
        let e = Tensor::<AD, 2>::random([vocab, hidden], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<AD, 1>::random([vocab], Distribution::Normal(0.0, 1.0), &device);
        let t: Vec<i64> = (0..rows as i64)
            .map(|i| (i * 5 + 3) % vocab as i64)
            .collect();
        let targets = Tensor::<AD, 1, Int>::from_data(TensorData::new(t, [rows]), &device);
        let w: Vec<f32> = (0..rows).map(|i| (i % 4) as f32 * 0.5).collect();
        let w = Tensor::<AD, 1>::from_data(TensorData::new(w, [rows]), &device);

        // Reference: autodiff all the way.
        let (xr, er, br) = (
            x.clone().require_grad(),
            e.clone().require_grad(),
            b.clone().require_grad(),
        );
        let logits = xr.clone().matmul(er.clone().transpose()) + br.clone().unsqueeze::<2>();
        let (ce, _) = cross_entropy(logits, targets.clone());
        let grads = (ce.clone() * w.clone()).sum().backward();
        let want = |t: Tensor<AD, 2>| t.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        let (want_x, want_e) = (want(xr), want(er));
        let want_b = br
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();

        // By hand.
        let xh = x.require_grad();
        let (out, samples) = vocab_loss::<AD>(
            xh.clone(),
            e.inner(),
            b.inner(),
            targets.inner(),
            w.inner(),
            None,
        );
        assert!(samples.is_none());
        let grads = out.surrogate.clone().backward();
        let got_x = xh
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let got_e = out.d_tokens.into_data().to_vec::<f32>().unwrap();
        let got_b = out.d_bias.into_data().to_vec::<f32>().unwrap();
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert!(close(&got_x, &want_x), "{got_x:?} vs {want_x:?}");
        assert!(close(&got_e, &want_e));
        assert!(close(&got_b, &want_b));
        assert_eq!(out.surrogate.into_scalar(), 0.0);
        let ce_want = ce.into_data().to_vec::<f32>().unwrap();
        assert!(close(
            &out.cross_entropy.into_data().to_vec::<f32>().unwrap(),
            &ce_want
        ));
    }
}
