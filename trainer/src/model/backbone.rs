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

impl<B: Backend> Backbone<B> {
    /// The same weights with every dropout probability 0: the model evaluated on an
    /// autodiff backend (where dropout is otherwise active).
    pub fn without_dropout(mut self) -> Self {
        self.embeddings.dropout = 0.0;
        for layer in &mut self.encoder.layers {
            layer.dropout = 0.0;
            layer.attention.dropout = 0.0;
        }
        self
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

#[cfg(test)]
mod tests {
    use crate::CpuInner;
    use crate::model::{CocoLm, EncoderInput};
    use crate::params;
    use crate::test_util::{synthetic_batch, tiny_config};
    use cocolm_shared::Batch;

    #[test]
    fn padding_does_not_change_real_positions() {
        let config = tiny_config();
        let device = Default::default();
        let model = CocoLm::<CpuInner>::init(&config.model, &device).unwrap();
        let raw = synthetic_batch(&config, 2);
        let mut other = raw.clone();
        for (r, &len) in raw.lengths.iter().enumerate() {
            for s in len as usize..raw.seq_len {
                other.input_ids[r * raw.seq_len + s] = 7 + s as u32;
            }
        }
        let hidden = |b: &Batch| {
            let input = EncoderInput::<CpuInner>::new(
                &b.input_ids,
                &b.lengths,
                b.batch_size,
                b.seq_len,
                &device,
            );
            let h = model
                .corrector
                .backbone
                .forward(model.token_embedding.val(), &input);
            params::tensor_to_vec(h)
        };
        let (a, c) = (hidden(&raw), hidden(&other));
        let hdim = config.model.hidden_size;
        for (r, &len) in raw.lengths.iter().enumerate() {
            let span = r * raw.seq_len * hdim..(r * raw.seq_len + len as usize) * hdim;
            for k in span {
                assert!(
                    (a[k] - c[k]).abs() < 1e-5,
                    "row {r} changed with its padding"
                );
            }
        }
        assert!(
            raw.lengths.iter().any(|&l| (l as usize) < raw.seq_len),
            "the batch has padding"
        );
    }
}
