//! The concrete backends the trainer is tested and measured with.
//!
//! Model code is generic over `B: Backend`; only the training step and loop need
//! `B: AutodiffBackend`. These aliases are what a binary picks from:
//!
//! - [`CpuBackend`]: `burn-ndarray` in `f32` with autodiff, multi-threaded (rayon and
//!   `matrixmultiply` threading) and SIMD, the embedded default that runs anywhere;
//! - with the `cuda` feature, [`CudaF16`] / [`CudaBf16`] / [`CudaF32`]: `burn-cuda`.
//!   The half-precision aliases run the whole model in that element type; fp32 master
//!   weights with dynamic loss scaling are not implemented yet.

/// The CPU backend without autodiff (evaluation, optimiser arithmetic).
pub type CpuInner = burn::backend::NdArray<f32>;

/// The CPU training backend: `Autodiff<NdArray<f32>>`.
pub type CpuBackend = burn::backend::Autodiff<CpuInner>;

/// CUDA training backend in fp16.
#[cfg(feature = "cuda")]
pub type CudaF16 = burn::backend::Autodiff<burn::backend::Cuda<burn::tensor::f16, i32>>;

/// CUDA training backend in bf16.
#[cfg(feature = "cuda")]
pub type CudaBf16 = burn::backend::Autodiff<burn::backend::Cuda<burn::tensor::bf16, i32>>;

/// CUDA training backend in fp32.
#[cfg(feature = "cuda")]
pub type CudaF32 = burn::backend::Autodiff<burn::backend::Cuda<f32, i32>>;
