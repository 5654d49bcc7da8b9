//! Output heads: the Dense → GELU → LayerNorm transform, the generator's MLM head (the
//! transform, then the decoder tied to the token embeddings) and the corrector's CLM head
//! (the tied decoder alone, as in the released COCO-LM's `CLMHead`).

use super::layers::{Dense, LayerNorm, const_param};
use crate::kernels::reference::{self, gelu};
use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Dense(H, H) → GELU → LayerNorm: the MLM/CLM head transform and the SCL projection.
#[derive(Module, Debug)]
pub struct Transform<B: Backend> {
    /// `[H, H]`.
    pub dense: Dense<B>,
    /// LayerNorm after the GELU.
    pub norm: LayerNorm<B>,
}

impl<B: Backend> Transform<B> {
    /// BERT initialisation.
    pub fn new(hidden: usize, layer_norm_eps: f64, init_std: f64, device: &B::Device) -> Self {
        Self {
            dense: Dense::new(hidden, hidden, init_std, device),
            norm: LayerNorm::new(hidden, layer_norm_eps, device),
        }
    }

    /// # Shapes
    /// - `x`: `[rows, H]`
    /// - output: `[rows, H]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.norm.forward(gelu(self.dense.forward(x)))
    }
}

/// The generator's MLM head: transform, then a decoder tied to the token embeddings plus
/// its own bias.
#[derive(Module, Debug)]
pub struct LmHead<B: Backend> {
    /// Dense → GELU → LayerNorm.
    pub transform: Transform<B>,
    /// Output bias `[vocab]`.
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> LmHead<B> {
    /// BERT initialisation, zero output bias.
    pub fn new(
        hidden: usize,
        vocab: usize,
        layer_norm_eps: f64,
        init_std: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            transform: Transform::new(hidden, layer_norm_eps, init_std, device),
            bias: const_param([vocab], 0.0, device),
        }
    }

    /// Vocabulary logits of the given rows only (callers select the masked positions
    /// first, so no `[all tokens, vocab]` tensor is ever built).
    ///
    /// # Shapes
    /// - `x`: `[rows, H]`; `tokens`: the token table `[vocab, H]`
    /// - output: `[rows, vocab]`
    pub fn forward(&self, x: Tensor<B, 2>, tokens: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = self.transform.forward(x);
        reference::linear(x, tokens.transpose(), self.bias.val())
    }
}

/// The corrector's CLM head: the last hidden state projected straight onto the tied
/// token table plus its own bias, `h·Eᵀ + b` (no transform, as COCO-LM's `CLMHead`).
#[derive(Module, Debug)]
pub struct ClmHead<B: Backend> {
    /// Output bias `[vocab]`.
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> ClmHead<B> {
    /// Zero output bias.
    pub fn new(vocab: usize, device: &B::Device) -> Self {
        Self {
            bias: const_param([vocab], 0.0, device),
        }
    }

    /// Vocabulary logits of the given rows (the training step runs this projection by
    /// hand, see [`crate::vocab`]).
    ///
    /// # Shapes
    /// - `hidden`: `[rows, H]`; `tokens`: the token table `[vocab, H]`
    /// - output: `[rows, vocab]`
    pub fn forward(&self, hidden: Tensor<B, 2>, tokens: Tensor<B, 2>) -> Tensor<B, 2> {
        reference::linear(hidden, tokens.transpose(), self.bias.val())
    }
}
