//! The model's hot blocks behind one seam: an encoder layer, a tied vocabulary head, an
//! AdamW update.
//!
//! [`Kernels`] is a backend extension. Each method takes plain arguments defined here
//! ([`LayerWeights`] and [`LayerCall`], [`HeadRows`], [`AdamWUpdate`]) and has a default
//! in [`mod@reference`]: the computation from burn tensor operations, differentiated by burn's
//! autodiff, which every other implementation is tested against. A backend may override
//! a method with a fused implementation; [`cpu`] does so for the CPU backends
//! ([`crate::CpuInner`], [`crate::CpuBackend`]). The model builds the arguments from its
//! parameters and calls the seam; nothing here knows the model, so another
//! implementation (a `cuda/` folder beside `cpu/`) slots in without touching it.

pub mod cpu;
pub mod reference;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};

/// Number of parameters of an encoder layer.
pub const LAYER_PARAMS: usize = 12;

/// The parameters of one post-LN encoder layer, matrices `M` stored `[in, out]`, vectors
/// `V`, in one fixed order ([`LayerWeights::into_array`]). As burn tensors
/// ([`LayerTensors`]) they are a kernel's arguments; the CPU kernels use the same struct
/// for borrowed slices and for gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights<M, V> {
    /// Q, K, V projections side by side, `[H, 3H]`, columns `q | k | v`.
    pub qkv_w: M,
    /// `[3H]`.
    pub qkv_b: V,
    /// Attention output projection `[H, H]`.
    pub out_w: M,
    /// `[H]`.
    pub out_b: V,
    /// LayerNorm after the attention residual: gain `[H]`.
    pub norm1_g: V,
    /// Its shift `[H]`.
    pub norm1_b: V,
    /// FFN input projection `[H, F]`.
    pub ffn_in_w: M,
    /// `[F]`.
    pub ffn_in_b: V,
    /// FFN output projection `[F, H]`.
    pub ffn_out_w: M,
    /// `[H]`.
    pub ffn_out_b: V,
    /// LayerNorm after the FFN residual: gain `[H]`.
    pub norm2_g: V,
    /// Its shift `[H]`.
    pub norm2_b: V,
}

/// A layer's parameters as burn tensors.
pub type LayerTensors<B> = LayerWeights<Tensor<B, 2>, Tensor<B, 1>>;

impl<M, V> LayerWeights<M, V> {
    /// Convert every matrix with `m` and every vector with `v`.
    pub fn map<M2, V2>(
        self,
        mut m: impl FnMut(M) -> M2,
        mut v: impl FnMut(V) -> V2,
    ) -> LayerWeights<M2, V2> {
        LayerWeights {
            qkv_w: m(self.qkv_w),
            qkv_b: v(self.qkv_b),
            out_w: m(self.out_w),
            out_b: v(self.out_b),
            norm1_g: v(self.norm1_g),
            norm1_b: v(self.norm1_b),
            ffn_in_w: m(self.ffn_in_w),
            ffn_in_b: v(self.ffn_in_b),
            ffn_out_w: m(self.ffn_out_w),
            ffn_out_b: v(self.ffn_out_b),
            norm2_g: v(self.norm2_g),
            norm2_b: v(self.norm2_b),
        }
    }
}

impl<T> LayerWeights<T, T> {
    /// The parameters in their fixed order.
    pub fn into_array(self) -> [T; LAYER_PARAMS] {
        [
            self.qkv_w,
            self.qkv_b,
            self.out_w,
            self.out_b,
            self.norm1_g,
            self.norm1_b,
            self.ffn_in_w,
            self.ffn_in_b,
            self.ffn_out_w,
            self.ffn_out_b,
            self.norm2_g,
            self.norm2_b,
        ]
    }

    /// The inverse of [`LayerWeights::into_array`].
    pub fn from_array(values: [T; LAYER_PARAMS]) -> Self {
        let [
            qkv_w,
            qkv_b,
            out_w,
            out_b,
            norm1_g,
            norm1_b,
            ffn_in_w,
            ffn_in_b,
            ffn_out_w,
            ffn_out_b,
            norm2_g,
            norm2_b,
        ] = values;
        Self {
            qkv_w,
            qkv_b,
            out_w,
            out_b,
            norm1_g,
            norm1_b,
            ffn_in_w,
            ffn_in_b,
            ffn_out_w,
            ffn_out_b,
            norm2_g,
            norm2_b,
        }
    }
}

/// What an encoder layer call needs besides tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerCall {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Attention heads (divide H).
    pub heads: usize,
    /// LayerNorm epsilon.
    pub eps: f64,
    /// Dropout probability on the attention probabilities.
    pub attention_dropout: f64,
    /// Dropout probability on both residual branches.
    pub hidden_dropout: f64,
}

/// The rows of a tied vocabulary head: the input of [`Kernels::vocab_head`].
#[derive(Debug, Clone)]
pub struct HeadRows<B: Backend> {
    /// Head input after the transform, `[rows, H]`.
    pub x: Tensor<B, 2>,
    /// Target class of each row, `[rows]`.
    pub targets: Tensor<B, 1, Int>,
    /// Weight of each row's cross-entropy in the loss, `[rows]`.
    pub weights: Tensor<B, 1>,
    /// One `U[0, 1)` per row when a class is to be drawn from each row's softmax.
    pub uniforms: Option<Tensor<B, 1>>,
}

/// What [`Kernels::vocab_head`] returns.
#[derive(Debug, Clone)]
pub struct HeadOutput<B: Backend> {
    /// Cross-entropy of every row, `[rows]`.
    pub cross_entropy: Tensor<B, 1>,
    /// Rows whose argmax is the target, `[1]`.
    pub correct: Tensor<B, 1>,
    /// The drawn classes, `[rows]`, when uniforms were given.
    pub samples: Option<Tensor<B, 1, Int>>,
    /// `∂x`, `[rows, H]`.
    pub d_x: Tensor<B, 2>,
    /// `∂E`, `[vocab, H]`.
    pub d_tokens: Tensor<B, 2>,
    /// `∂b`, `[vocab]`.
    pub d_bias: Tensor<B, 1>,
}

/// The scalars of one AdamW update of one parameter, bias corrections folded in (the
/// formula is [`reference::adamw_update`]'s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWUpdate {
    /// Factor applied to the gradient first (accumulation averaging, clipping).
    pub grad_scale: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// `ε·√(1 − β₂ᵗ)`.
    pub eps: f64,
    /// `lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ)`.
    pub step_size: f64,
    /// Decoupled weight decay factor `1 − lr·λ` (1 without decay).
    pub decay: f64,
}

/// Overridable implementations of the model's hot blocks.
pub trait Kernels: Backend {
    /// One post-LN encoder layer ([`reference::encoder_layer`] by default).
    ///
    /// # Shapes
    /// - `x`: `[batch · seq, H]`; `bias`: `[batch or 1, heads or 1, seq or 1, seq]`
    /// - output: `[batch · seq, H]`
    fn encoder_layer(
        x: Tensor<Self, 2>,
        weights: LayerTensors<Self>,
        call: &LayerCall,
        bias: Tensor<Self, 4>,
    ) -> Tensor<Self, 2> {
        reference::encoder_layer(x, weights, call, bias)
    }

    /// A tied vocabulary head's loss, gradients and draws at some rows
    /// ([`reference::vocab_head`] by default).
    ///
    /// # Shapes
    /// - `table`: `E`, `[vocab, H]`; `bias`: `[vocab]`; `rows.x`: `[rows, H]`
    fn vocab_head(
        rows: HeadRows<Self>,
        table: Tensor<Self, 2>,
        bias: Tensor<Self, 1>,
    ) -> HeadOutput<Self> {
        reference::vocab_head(rows, table, bias)
    }

    /// One AdamW update of a flattened parameter `p` with gradient `g` and moments `m`,
    /// `v`; returns `[p, m, v]` ([`reference::adamw_update`] by default).
    fn adamw_update(
        p: Tensor<Self, 1>,
        g: Tensor<Self, 1>,
        m: Tensor<Self, 1>,
        v: Tensor<Self, 1>,
        update: &AdamWUpdate,
    ) -> [Tensor<Self, 1>; 3] {
        reference::adamw_update(p, g, m, v, update)
    }
}

/// A backend the trainer can train on: autodiff, with [`Kernels`] on it and on its inner
/// backend.
pub trait TrainBackend: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

impl<B> TrainBackend for B where B: AutodiffBackend<InnerBackend: Kernels> + Kernels {}

/// The half-precision CPU backends use the defaults (the code path CUDA runs).
impl Kernels for crate::backend::FlexInner {}
impl Kernels for crate::backend::FlexBackend {}

/// The CUDA backends use the defaults.
#[cfg(feature = "cuda")]
impl Kernels for crate::backend::CudaInner {}
#[cfg(feature = "cuda")]
impl Kernels for crate::backend::CudaBackend {}

#[cfg(test)]
pub(crate) mod test_support {
    //! Random layer parameters for the kernel tests.

    use super::{LayerCall, LayerTensors, LayerWeights};
    use burn::tensor::backend::Backend;
    use burn::tensor::{Distribution, Tensor};

    /// Parameters of a layer of width `hidden` and FFN width `ffn`, all drawn from
    /// `N(0, std²)` (LayerNorm gains around 1) so that every term matters numerically.
    pub fn random_layer<B: Backend>(
        hidden: usize,
        ffn: usize,
        std: f64,
        device: &B::Device,
    ) -> LayerTensors<B> {
        let normal = Distribution::Normal(0.0, std);
        let m = |shape: [usize; 2]| Tensor::<B, 2>::random(shape, normal, device);
        let v = |n: usize| Tensor::<B, 1>::random([n], normal, device);
        let gain = |n: usize| v(n).add_scalar(1.0);
        LayerWeights {
            qkv_w: m([hidden, 3 * hidden]),
            qkv_b: v(3 * hidden),
            out_w: m([hidden, hidden]),
            out_b: v(hidden),
            norm1_g: gain(hidden),
            norm1_b: v(hidden),
            ffn_in_w: m([hidden, ffn]),
            ffn_in_b: v(ffn),
            ffn_out_w: m([ffn, hidden]),
            ffn_out_b: v(hidden),
            norm2_g: gain(hidden),
            norm2_b: v(hidden),
        }
    }

    /// A call with these sizes, LayerNorm ε 1e-5 and the same dropout everywhere.
    pub fn call(batch: usize, seq: usize, heads: usize, dropout: f64) -> LayerCall {
        LayerCall {
            batch,
            seq,
            heads,
            eps: 1e-5,
            attention_dropout: dropout,
            hidden_dropout: dropout,
        }
    }
}
