//! The parameters of multi-head self-attention on 2-D activations (the computation is
//! [`crate::kernels::reference`]'s, or a backend's fused layer).
//!
//! Q, K and V come from one fused `[H, 3H]` projection of the `[rows, H]` input; only the
//! score computation is 4-D (`[batch, heads, seq, seq]`).

use super::layers::Dense;
use burn::module::Module;
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
}
