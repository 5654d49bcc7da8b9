//! The main (corrective) model: encoder, copy head, CLM head, optional SCL head.

use super::EncoderInput;
use super::backbone::Backbone;
use super::heads::{ClmHead, Transform};
use super::layers::Dense;
use crate::kernels::Kernels;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor};

/// What one corrector pass over the corrupted batch produces.
#[derive(Debug, Clone)]
pub struct CorrectorOutput<B: Backend> {
    /// Last hidden state `[batch · seq, H]`.
    pub hidden: Tensor<B, 2>,
    /// Copy logits ("this token is original"), fp32, `[batch · seq]` (pads included;
    /// callers weight them out).
    pub copy_logits: Tensor<B, 1>,
}

/// The corrective language model.
#[derive(Module, Debug)]
pub struct Corrector<B: Backend> {
    /// Embeddings and encoder.
    pub backbone: Backbone<B>,
    /// `Linear(H, 1)`: is the token at this position the original one?
    pub copy_head: Dense<B>,
    /// CLM head: the tied decoder + bias on the last hidden state (the training step runs
    /// it by hand at the masked rows, see [`crate::vocab`]).
    pub lm_head: ClmHead<B>,
    /// SCL projection Dense → GELU → LayerNorm, when sequence contrastive learning is on.
    pub scl_head: Option<Transform<B>>,
}

impl<B: Kernels> Corrector<B> {
    /// Hidden states and copy logits of the corrupted input.
    ///
    /// # Shapes
    /// - `tokens`: `[vocab, H]`; `input.ids`: corrupted ids `[batch · seq]`
    pub fn forward(&self, tokens: Tensor<B, 2>, input: &EncoderInput<B>) -> CorrectorOutput<B> {
        self.forward_words(tokens.select(0, input.ids.clone()), input)
    }

    /// The same from token vectors already looked up.
    ///
    /// # Shapes
    /// - `words`: `[batch · seq, H]`
    pub fn forward_words(
        &self,
        words: Tensor<B, 2>,
        input: &EncoderInput<B>,
    ) -> CorrectorOutput<B> {
        let hidden = self.backbone.forward_words(words, input);
        let rows = hidden.dims()[0];
        let copy_logits = self
            .copy_head
            .forward(hidden.clone())
            .cast(DType::F32)
            .reshape([rows]);
        CorrectorOutput {
            hidden,
            copy_logits,
        }
    }

    /// SCL view vectors of the first (`[CLS]`) position of every row, L2-normalised, in
    /// fp32. `None` when the model has no SCL head.
    ///
    /// # Shapes
    /// - `hidden`: `[batch · seq, H]` of a batch with `seq` columns
    /// - output: `[batch, H]`
    pub fn scl_views(
        &self,
        hidden: Tensor<B, 2>,
        batch: usize,
        seq: usize,
    ) -> Option<Tensor<B, 2>> {
        let head = self.scl_head.as_ref()?;
        let device = hidden.device();
        let cls = Tensor::<B, 1, Int>::arange_step(0..(batch * seq) as i64, seq, &device);
        let z = head.forward(hidden.select(0, cls)).cast(DType::F32);
        let inverse_norm = z
            .clone()
            .square()
            .sum_dim(1)
            .add_scalar(1e-12)
            .powf_scalar(-0.5);
        Some(z * inverse_norm)
    }
}
