//! The tied vocabulary projection and its cross-entropy, differentiated by hand.
//!
//! An LM head ends in `logits = x·Eᵀ + b` over the whole vocabulary, at the masked rows
//! only. Left to autodiff, the `[rows, vocab]` logits, their softmax and several
//! same-sized gradient temporaries are built and kept per head, and `Eᵀ` is copied in
//! every pass. Here the projection and the loss run on the inner backend, outside the
//! graph:
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
//! ([`crate::step::VocabGrads`]). The result is the gradient autodiff would compute, with one
//! `[rows, vocab]` matrix alive at a time and one `Eᵀ` copy per step.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Int, Tensor};

/// What one vocabulary head contributes to a training step.
#[derive(Debug, Clone)]
pub struct VocabLoss<B: AutodiffBackend> {
    /// Zero-valued scalar whose gradient with respect to the head input `x` is the
    /// weighted loss gradient `∂x`. Add it to the loss.
    pub surrogate: Tensor<B, 1>,
    /// Cross-entropy of every row (no gradient), `[rows]`.
    pub cross_entropy: Tensor<B::InnerBackend, 1>,
    /// Number of rows whose argmax is the target, `[1]`.
    pub correct: Tensor<B::InnerBackend, 1>,
    /// `∂E`, transposed: `[H, vocab]`.
    pub d_tokens_t: Tensor<B::InnerBackend, 2>,
    /// `∂b`, `[vocab]`.
    pub d_bias: Tensor<B::InnerBackend, 1>,
}

/// The token table in both layouts for one step: `E` `[vocab, H]` and a materialised
/// `Eᵀ` `[H, vocab]`, shared by the generator's and the corrector's heads.
#[derive(Debug, Clone)]
pub struct TiedTable<B: Backend> {
    /// `E`, `[vocab, H]`.
    pub table: Tensor<B, 2>,
    /// `Eᵀ`, `[H, vocab]`, contiguous.
    pub transposed: Tensor<B, 2>,
}

impl<B: Backend> TiedTable<B> {
    /// Copy `table` into the transposed layout once.
    pub fn new(table: Tensor<B, 2>) -> Self {
        let [vocab, hidden] = table.dims();
        // Reshaping a transposed view forces a contiguous copy on every backend.
        let transposed = table
            .clone()
            .transpose()
            .reshape([vocab * hidden])
            .reshape([hidden, vocab]);
        Self { table, transposed }
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

/// One block of rows of a head, computed entirely on the inner backend.
struct Block<B: Backend> {
    cross_entropy: Tensor<B, 1>,
    correct: Tensor<B, 1>,
    samples: Option<Tensor<B, 1, Int>>,
    d_x: Tensor<B, 2>,
    d_tokens_t: Tensor<B, 2>,
    d_bias: Tensor<B, 1>,
}

/// The rows of one block, inputs of [`block`].
struct Rows<B: Backend> {
    x: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    weights: Tensor<B, 1>,
    uniforms: Option<Tensor<B, 1>>,
}

impl<B: Backend> Rows<B> {
    fn narrow(&self, start: usize, len: usize) -> Self {
        Self {
            x: self.x.clone().narrow(0, start, len),
            targets: self.targets.clone().narrow(0, start, len),
            weights: self.weights.clone().narrow(0, start, len),
            uniforms: self.uniforms.clone().map(|u| u.narrow(0, start, len)),
        }
    }
}

fn block<B: Backend>(rows: Rows<B>, tied: &TiedTable<B>, bias: Tensor<B, 1>) -> Block<B> {
    let [n, _] = rows.x.dims();
    let vocab = bias.dims()[0];
    let device = rows.x.device();
    let logits = rows.x.clone().matmul(tied.transposed.clone()) + bias.unsqueeze::<2>();
    let Scores {
        probs,
        cross_entropy,
        correct,
    } = scores(logits, rows.targets.clone());
    let samples = rows
        .uniforms
        .map(|u| crate::sample::sample_categorical(probs.clone(), u));
    let minus_one = Tensor::full([n, 1], -1.0, &device);
    let grad = probs.scatter(
        1,
        rows.targets.reshape([n, 1]),
        minus_one,
        IndexingUpdateOp::Add,
    ) * rows.weights.reshape([n, 1]);
    Block {
        cross_entropy,
        correct,
        samples,
        d_x: grad.clone().matmul(tied.table.clone()),
        d_bias: grad.clone().sum_dim(0).reshape([vocab]),
        d_tokens_t: rows.x.transpose().matmul(grad),
    }
}

/// Rows below which a head is not split across two threads.
const SPLIT_ROWS: usize = 64;

/// Loss, gradients and (when `draw`) one sampled class per row of a tied vocabulary head.
///
/// `row_weights` are the weights of the rows' cross-entropies in the total loss; the
/// gradients are those of `Σ w_i · CE_i`. When `draw` is set, one class per row is drawn
/// from the softmax ([`sample_categorical`](crate::sample::sample_categorical)) before it
/// is turned into the gradient. Burn's CPU backend runs elementwise work on one thread, so
/// the rows are processed as two halves on two threads (the uniforms for the draws are
/// taken from the RNG first, so results do not depend on the split).
///
/// # Shapes
/// - `x`: head input after the transform, `[rows, H]`; `bias`: `[vocab]`
/// - `targets`, `row_weights`: `[rows]`
/// - samples: `[rows]`
pub fn vocab_loss<B: AutodiffBackend>(
    x: Tensor<B, 2>,
    tied: &TiedTable<B::InnerBackend>,
    bias: Tensor<B::InnerBackend, 1>,
    targets: Tensor<B::InnerBackend, 1, Int>,
    row_weights: Tensor<B::InnerBackend, 1>,
    draw: bool,
) -> (VocabLoss<B>, Option<Tensor<B::InnerBackend, 1, Int>>) {
    let inner = x.clone().inner();
    let [n, _] = inner.dims();
    let rows = Rows {
        uniforms: draw.then(|| crate::sample::uniforms(n, &inner.device())),
        x: inner,
        targets,
        weights: row_weights,
    };
    let blocks = if n >= SPLIT_ROWS {
        let half = n / 2;
        let (first, second) = (rows.narrow(0, half), rows.narrow(half, n - half));
        std::thread::scope(|scope| {
            let bias_first = bias.clone();
            let worker = scope.spawn(move || block(first, tied, bias_first));
            let second = block(second, tied, bias);
            vec![
                worker.join().expect("a vocabulary worker thread panicked"),
                second,
            ]
        })
    } else {
        vec![block(rows, tied, bias)]
    };
    let cross_entropy = Tensor::cat(blocks.iter().map(|b| b.cross_entropy.clone()).collect(), 0);
    let samples =
        draw.then(|| Tensor::cat(blocks.iter().filter_map(|b| b.samples.clone()).collect(), 0));
    let d_x = Tensor::cat(blocks.iter().map(|b| b.d_x.clone()).collect(), 0);
    let (correct, d_tokens_t, d_bias) = blocks
        .into_iter()
        .map(|b| (b.correct, b.d_tokens_t, b.d_bias))
        .reduce(|a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
        .expect("at least one block");
    let s = (x * Tensor::from_inner(d_x)).sum();
    (
        VocabLoss {
            surrogate: s.clone() - s.detach(),
            cross_entropy,
            correct,
            d_tokens_t,
            d_bias,
        },
        samples,
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
        for rows in [5, SPLIT_ROWS + 7] {
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
        let tied = TiedTable::new(e.inner());
        let (out, samples) = vocab_loss::<AD>(
            xh.clone(),
            &tied,
            b.inner(),
            targets.inner(),
            w.inner(),
            false,
        );
        assert!(samples.is_none());
        let grads = out.surrogate.clone().backward();
        let got_x = xh
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let got_e = out
            .d_tokens_t
            .transpose()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
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
