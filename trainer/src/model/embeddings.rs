//! Input embeddings: token table (owned by [`CocoLm`](super::CocoLm) and passed in),
//! learned absolute positions, an optional token-type row, LayerNorm, dropout.

use super::EncoderInput;
use super::layers::{LayerNorm, normal_param};
use crate::kernels::reference::dropout;
use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Everything an encoder adds to the token vectors before its first layer.
#[derive(Module, Debug)]
pub struct Embeddings<B: Backend> {
    /// Learned absolute positions, `[max_positions, hidden]`.
    pub positions: Param<Tensor<B, 2>>,
    /// Token-type rows, `[type_vocab_size, hidden]`; row 0 is added at every position
    /// (Hugging Face compatibility). Absent when `type_vocab_size` is 0.
    pub token_types: Option<Param<Tensor<B, 2>>>,
    /// LayerNorm over the sum.
    pub norm: LayerNorm<B>,
    /// Dropout probability after the LayerNorm.
    pub dropout: f64,
}

impl<B: Backend> Embeddings<B> {
    /// Normal(0, init_std²) tables, unit LayerNorm.
    pub fn new(
        max_positions: usize,
        type_vocab_size: usize,
        hidden: usize,
        layer_norm_eps: f64,
        dropout: f64,
        init_std: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            positions: normal_param([max_positions, hidden], init_std, device),
            token_types: (type_vocab_size > 0)
                .then(|| normal_param([type_vocab_size, hidden], init_std, device)),
            norm: LayerNorm::new(hidden, layer_norm_eps, device),
            dropout,
        }
    }

    /// # Shapes
    /// - `tokens`: the shared token table `[vocab, H]`
    /// - `input.ids`: `[batch · seq]`
    /// - output: `[batch · seq, H]`
    pub fn forward(&self, tokens: Tensor<B, 2>, input: &EncoderInput<B>) -> Tensor<B, 2> {
        self.forward_words(tokens.select(0, input.ids.clone()), input)
    }

    /// The same from token vectors already looked up (the training step looks them up
    /// outside the graph and scatters their gradient into the table itself). The sum and
    /// its LayerNorm are fp32; the output is in the input's compute dtype.
    ///
    /// # Shapes
    /// - `words`: `[batch · seq, H]`
    /// - output: `[batch · seq, H]`
    pub fn forward_words(&self, words: Tensor<B, 2>, input: &EncoderInput<B>) -> Tensor<B, 2> {
        let (batch, seq) = (input.batch, input.seq);
        let hidden = words.dims()[1];
        let words = words.reshape([batch, seq, hidden]);
        let mut x = words + self.positions.val().narrow(0, 0, seq).unsqueeze::<3>();
        if let Some(types) = &self.token_types {
            x = x + types.val().narrow(0, 0, 1).unsqueeze::<3>();
        }
        let x = self.norm.forward(x.reshape([batch * seq, hidden]));
        dropout(x, self.dropout).cast(input.dtype)
    }
}
