//! Backend-specific implementations of the model's hot blocks.
//!
//! [`Kernels`] is a backend extension: each method has a default built from burn tensor
//! operations (the reference, differentiated by burn's autodiff), and a backend may
//! override it with a fused implementation. On the CPU backends ([`crate::CpuInner`] and
//! [`crate::CpuBackend`]) the encoder layer has hand-written, multi-threaded forward and
//! backward code, the vocabulary heads one fused pass over their logits and AdamW one
//! pass over each parameter ([`cpu`]); the CUDA backends use the defaults.

pub mod cpu;

use crate::model::encoder::EncoderLayer;
use crate::optim::adamw::AdamWUpdate;
use crate::vocab::{HeadOutput, HeadRows};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

/// Overridable implementations of the model's hot blocks.
pub trait Kernels: Backend {
    /// One encoder layer ([`EncoderLayer::forward_graph`] by default).
    ///
    /// # Shapes
    /// - `x`: `[batch · seq, H]`; `bias`: `[batch or 1, heads or 1, seq or 1, seq]`
    /// - output: `[batch · seq, H]`
    fn encoder_layer(
        layer: &EncoderLayer<Self>,
        x: Tensor<Self, 2>,
        batch: usize,
        seq: usize,
        bias: Tensor<Self, 4>,
    ) -> Tensor<Self, 2> {
        layer.forward_graph(x, batch, seq, bias)
    }

    /// A tied vocabulary head's loss, gradients and draws at some rows
    /// ([`crate::vocab::head_graph`] by default).
    ///
    /// # Shapes
    /// - `table`: `E`, `[vocab, H]`; `bias`: `[vocab]`; `rows.x`: `[rows, H]`
    fn vocab_head(
        rows: HeadRows<Self>,
        table: Tensor<Self, 2>,
        bias: Tensor<Self, 1>,
    ) -> HeadOutput<Self> {
        crate::vocab::head_graph(rows, table, bias)
    }

    /// One AdamW update of a flattened parameter `p` with gradient `g` and moments `m`,
    /// `v`; returns `[p, m, v]` ([`crate::optim::adamw::update_graph`] by default).
    fn adamw_update(
        p: Tensor<Self, 1>,
        g: Tensor<Self, 1>,
        m: Tensor<Self, 1>,
        v: Tensor<Self, 1>,
        update: &AdamWUpdate,
    ) -> [Tensor<Self, 1>; 3] {
        crate::optim::adamw::update_graph(p, g, m, v, update)
    }
}

/// A backend the trainer can train on: autodiff, with [`Kernels`] on it and on its inner
/// backend.
pub trait TrainBackend: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

impl<B> TrainBackend for B where B: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

/// The CUDA backends of [`crate::backend`] use the defaults.
#[cfg(feature = "cuda")]
mod cuda {
    use super::Kernels;
    use burn::backend::{Autodiff, Cuda};
    use burn::tensor::{bf16, f16};

    macro_rules! defaults {
        ($($float:ty),*) => {$(
            impl Kernels for Cuda<$float, i32> {}
            impl Kernels for Autodiff<Cuda<$float, i32>> {}
        )*};
    }

    defaults!(f16, bf16, f32);
}
