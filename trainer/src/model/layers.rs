//! Building blocks with parameters: a 2-D dense layer, LayerNorm, and the initialisers.
//! Their computations are [`crate::kernels::reference`]'s.
//!
//! Every layer works on 2-D activations `[rows, features]` (rows = batch × sequence):
//! one matrix multiplication per layer for the whole batch, and a `[in, out]` weight
//! gradient that is a single `xᵀ·g` product.

use crate::kernels::reference;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// A parameter drawn from `N(0, std²)` (BERT initialisation of weight matrices).
pub fn normal_param<B: Backend, const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::random(
        shape,
        Distribution::Normal(0.0, std),
        device,
    ))
}

/// A parameter filled with `value` (0 for biases, 1 for LayerNorm gains).
pub fn const_param<B: Backend, const D: usize>(
    shape: [usize; D],
    value: f32,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    Param::from_tensor(Tensor::full(shape, value, device))
}

/// `y = x·W + b` on 2-D input, with `W` stored `[in, out]`.
#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    /// `[in, out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out]`.
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Dense<B> {
    /// BERT initialisation: `N(0, init_std²)` weights, zero bias.
    pub fn new(d_in: usize, d_out: usize, init_std: f64, device: &B::Device) -> Self {
        Self {
            weight: normal_param([d_in, d_out], init_std, device),
            bias: const_param([d_out], 0.0, device),
        }
    }

    /// # Shapes
    /// - `x`: `[rows, in]`
    /// - output: `[rows, out]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        reference::linear(x, self.weight.val(), self.bias.val())
    }
}

/// Layer normalisation over the last dimension ([`reference::layer_norm`]).
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Gain γ, `[features]`, initialised to 1.
    pub weight: Param<Tensor<B, 1>>,
    /// Shift β, `[features]`, initialised to 0.
    pub bias: Param<Tensor<B, 1>>,
    /// Added to the variance.
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// γ = 1, β = 0.
    pub fn new(features: usize, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: const_param([features], 1.0, device),
            bias: const_param([features], 0.0, device),
            eps,
        }
    }

    /// # Shapes
    /// - `x`: `[rows, features]`
    /// - output: `[rows, features]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        reference::layer_norm(x, self.weight.val(), self.bias.val(), self.eps)
    }
}
