//! Embeddings followed by an encoder stack: the part the generator and the main model
//! share in structure (not in weights, apart from the token table).

use super::EncoderInput;
use super::embeddings::Embeddings;
use super::encoder::{Encoder, EncoderConfig};
use crate::kernels::Kernels;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Embeddings (positions, token type, LayerNorm) and an encoder.
#[derive(Module, Debug)]
pub struct Backbone<B: Backend> {
    /// Input embeddings (the token table itself is passed in).
    pub embeddings: Embeddings<B>,
    /// The Transformer layers.
    pub encoder: Encoder<B>,
}

impl<B: Backend> Backbone<B> {
    /// BERT initialisation.
    pub fn new(
        config: &EncoderConfig,
        max_positions: usize,
        type_vocab_size: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            embeddings: Embeddings::new(
                max_positions,
                type_vocab_size,
                config.hidden,
                config.layer_norm_eps,
                config.dropout,
                config.init_std,
                device,
            ),
            encoder: config.init(device),
        }
    }
}

impl<B: Kernels> Backbone<B> {
    /// # Shapes
    /// - `tokens`: `[vocab, H]`; `input.ids`: `[batch · seq]`
    /// - output: last hidden state `[batch · seq, H]`
    pub fn forward(&self, tokens: Tensor<B, 2>, input: &EncoderInput<B>) -> Tensor<B, 2> {
        self.encoder
            .forward(self.embeddings.forward(tokens, input), input)
    }

    /// The same from token vectors already looked up ([`Embeddings::forward_words`]).
    ///
    /// # Shapes
    /// - `words`: `[batch · seq, H]`
    /// - output: `[batch · seq, H]`
    pub fn forward_words(&self, words: Tensor<B, 2>, input: &EncoderInput<B>) -> Tensor<B, 2> {
        self.encoder
            .forward(self.embeddings.forward_words(words, input), input)
    }
}
