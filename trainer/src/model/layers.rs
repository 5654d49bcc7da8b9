//! Building blocks: a 2-D dense layer, LayerNorm, exact GELU, dropout and initialisers.
//!
//! Every layer works on 2-D activations `[rows, features]` (rows = batch × sequence):
//! one matrix multiplication per layer for the whole batch, and a `[in, out]` weight
//! gradient that is a single `xᵀ·g` product.

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
        burn::tensor::module::linear(x, self.weight.val(), Some(self.bias.val()))
    }
}

/// Layer normalisation over the last dimension (biased variance, as PyTorch). The
/// inverse standard deviation is a `powf`, not a division (see [`crate::loss`]).
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
        let centred = x.clone() - x.mean_dim(1);
        let var = centred.clone().square().mean_dim(1);
        let normed = centred * var.add_scalar(self.eps).powf_scalar(-0.5);
        normed * self.weight.val().unsqueeze::<2>() + self.bias.val().unsqueeze::<2>()
    }
}

/// GELU with the exact error function, `x·Φ(x)` (BERT / Hugging Face `"gelu"`).
///
/// Built from differentiable primitives so the gradient is exact too (burn's fused
/// `gelu` differentiates the tanh approximation).
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let cdf = x
        .clone()
        .mul_scalar(std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5);
    x * cdf
}

/// Inverted dropout with keep probability `1 − p`, active only on autodiff backends
/// (burn's convention: a model on the inner backend is in evaluation mode).
pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64) -> Tensor<B, D> {
    if p == 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    // A uniform f32 costs half the random bytes of burn's Bernoulli draw (a u64 each).
    let keep = x
        .random_like(Distribution::Uniform(0.0, 1.0))
        .greater_equal_elem(p)
        .float()
        .mul_scalar(1.0 / (1.0 - p));
    x * keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuInner;

    type B = CpuInner;

    #[test]
    fn dense_is_x_times_w_plus_b() {
        let device = Default::default();
        let dense = Dense::<B> {
            weight: Param::from_tensor(Tensor::from_floats([[1.0, 2.0], [3.0, 4.0]], &device)),
            bias: Param::from_tensor(Tensor::from_floats([0.5, -0.5], &device)),
        };
        let y = dense.forward(Tensor::from_floats([[1.0, 1.0]], &device));
        assert_eq!(y.into_data().to_vec::<f32>().unwrap(), vec![4.5, 5.5]);
    }

    #[test]
    fn layer_norm_normalises_rows() {
        let device = Default::default();
        let ln = LayerNorm::<B>::new(4, 1e-5, &device);
        let y = ln.forward(Tensor::from_floats([[1.0, 2.0, 3.0, 4.0]], &device));
        let v = y.into_data().to_vec::<f32>().unwrap();
        let expected = [-1.341_636, -0.447_212, 0.447_212, 1.341_636];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{v:?}");
        }
    }

    #[test]
    fn gelu_matches_erf_formula() {
        let device = Default::default();
        let xs = [-3.0f32, -1.0, -0.1, 0.0, 0.5, 2.0];
        let y = gelu(Tensor::<B, 1>::from_floats(xs, &device));
        let got = y.into_data().to_vec::<f32>().unwrap();
        for (x, g) in xs.iter().zip(got) {
            let x = *x as f64;
            let want = 0.5 * x * (1.0 + libm_erf(x / std::f64::consts::SQRT_2));
            assert!(
                (g as f64 - want).abs() < 1e-6,
                "gelu({x}) = {g}, want {want}"
            );
        }
    }

    /// Abramowitz–Stegun 7.1.26 is too coarse; use a series for |x| ≤ 3 (enough here).
    fn libm_erf(x: f64) -> f64 {
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0;
        while term.abs() > 1e-17 || n < 5 {
            sum += term / (2 * n + 1) as f64;
            n += 1;
            term *= -x * x / n as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn dropout_is_identity_without_autodiff() {
        let device = Default::default();
        let x = Tensor::<B, 2>::ones([3, 3], &device);
        let y = dropout(x.clone(), 0.5);
        assert_eq!(x.into_data(), y.into_data());
    }
}
