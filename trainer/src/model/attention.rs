//! Multi-head self-attention on 2-D activations.
//!
//! Q, K and V come from one fused `[H, 3H]` projection of the `[rows, H]` input; only the
//! score computation is 4-D (`[batch, heads, seq, seq]`).

use super::layers::{Dense, dropout};
use crate::loss::softmax;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Scaled dot-product self-attention with an additive score bias.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    /// Query, key and value projections side by side: `[H, 3H]`, columns `q | k | v`.
    pub qkv: Dense<B>,
    /// Output projection `[H, H]`.
    pub output: Dense<B>,
    /// Number of heads (divides H).
    pub num_heads: usize,
    /// Dropout on the attention probabilities.
    pub dropout: f64,
}

impl<B: Backend> SelfAttention<B> {
    /// BERT initialisation.
    pub fn new(
        hidden: usize,
        num_heads: usize,
        dropout: f64,
        init_std: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            qkv: Dense::new(hidden, 3 * hidden, init_std, device),
            output: Dense::new(hidden, hidden, init_std, device),
            num_heads,
            dropout,
        }
    }

    /// # Shapes
    /// - `x`: `[batch · seq, H]`
    /// - `bias`: `[batch or 1, heads or 1, seq, seq]`, added to the scores (key padding
    ///   mask and relative position bias)
    /// - output: `[batch · seq, H]`
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        seq: usize,
        bias: Tensor<B, 4>,
    ) -> Tensor<B, 2> {
        let [rows, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        // [rows, 3H] → [3, batch, heads, seq, head_dim]
        let qkv = self
            .qkv
            .forward(x)
            .reshape([batch, seq, 3, heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| {
            qkv.clone()
                .narrow(0, i, 1)
                .reshape([batch, heads, seq, head_dim])
        };
        let q = part(0).mul_scalar(1.0 / (head_dim as f64).sqrt());
        let (k, v) = (part(1), part(2));
        let scores = q.matmul(k.swap_dims(2, 3)) + bias;
        let probs = dropout(softmax(scores, 3), self.dropout);
        let context = probs.matmul(v).swap_dims(1, 2).reshape([rows, hidden]);
        self.output.forward(context)
    }
}
