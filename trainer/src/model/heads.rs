//! Output heads: the Dense → GELU → LayerNorm transform, and the LM head tied to the
//! token embeddings.

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

/// Transform, then a decoder tied to the token embeddings plus its own bias.
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
