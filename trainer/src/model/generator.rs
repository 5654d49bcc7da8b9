//! The auxiliary MLM generator: a shallow encoder (dropout 0) with an LM head tied to the
//! shared token embeddings.

use super::EncoderInput;
use super::backbone::Backbone;
use super::heads::LmHead;
use crate::kernels::Kernels;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// The generator. Its embeddings (positions, token type, LayerNorm) are its own; the
/// token table is the main model's.
#[derive(Module, Debug)]
pub struct Generator<B: Backend> {
    /// Embeddings and encoder.
    pub backbone: Backbone<B>,
    /// MLM head: Dense → GELU → LayerNorm → tied decoder + bias.
    pub head: LmHead<B>,
}

impl<B: Kernels> Generator<B> {
    /// MLM logits at the masked positions (at least one).
    ///
    /// # Shapes
    /// - `tokens`: `[vocab, H]`; `input.ids`: `[batch · seq]` (masked input)
    /// - `masked`: flat positions `b · seq + s`, `[n_masked]`
    /// - output: `[n_masked, vocab]`
    pub fn forward(
        &self,
        tokens: Tensor<B, 2>,
        input: &EncoderInput<B>,
        masked: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let hidden = self.backbone.forward(tokens.clone(), input);
        self.head.forward(hidden.select(0, masked), tokens)
    }
}
