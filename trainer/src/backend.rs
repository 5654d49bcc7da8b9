//! The concrete backends the trainer is tested and measured with.
//!
//! Model code is generic over `B: Backend`; only the training step and loop need
//! `B: AutodiffBackend`. These aliases are what a binary picks from:
//!
//! - [`CpuBackend`]: `burn-ndarray` in `f32` with autodiff, multi-threaded (rayon and
//!   `matrixmultiply` threading) and SIMD, the embedded default that runs anywhere;
//! - with the `cuda` feature, `CudaF16` / `CudaBf16` / `CudaF32`: `burn-cuda`.
//!   The half-precision aliases run the whole model in that element type; fp32 master
//!   weights with dynamic loss scaling are not implemented yet.

/// The CPU backend without autodiff (evaluation, optimiser arithmetic).
pub type CpuInner = burn::backend::NdArray<f32>;

/// The CPU training backend: `Autodiff<NdArray<f32>>`.
pub type CpuBackend = burn::backend::Autodiff<CpuInner>;

/// The CPU backend for half precision, without autodiff: burn-flex, which stores and
/// computes f32, bf16 and f16 tensors (parameters stay f32, activations are cast).
pub type FlexInner = burn::backend::Flex;

/// The CPU training backend for half precision: `Autodiff<Flex>`, running the portable
/// reference kernels (the code path CUDA runs).
pub type FlexBackend = burn::backend::Autodiff<FlexInner>;

/// CUDA training backend in fp16.
#[cfg(feature = "cuda")]
pub type CudaF16 = burn::backend::Autodiff<burn::backend::Cuda<burn::tensor::f16, i32>>;

/// CUDA training backend in bf16.
#[cfg(feature = "cuda")]
pub type CudaBf16 = burn::backend::Autodiff<burn::backend::Cuda<burn::tensor::bf16, i32>>;

/// CUDA training backend in fp32.
#[cfg(feature = "cuda")]
pub type CudaF32 = burn::backend::Autodiff<burn::backend::Cuda<f32, i32>>;

/// Keep freed tensor memory in the process instead of returning it to the kernel.
///
/// burn-ndarray allocates a fresh buffer for most results. With glibc's defaults every
/// buffer above the (adaptive) mmap threshold is a new mapping whose pages fault in and
/// are zeroed on first touch, then unmapped on drop: about a third of a CPU training
/// step. This switches glibc's `malloc` to the heap only (`M_MMAP_MAX = 0`), never trims
/// it, and grows it 64 MiB at a time, so buffers are recycled. Returns whether the
/// settings were applied (only on Linux with glibc).
///
/// # Safety
///
/// This changes the allocator of the whole process, for all code in it: memory freed
/// after the call is never returned to the operating system, and large allocations no
/// longer get their own mapping. Call it only from a program's `main` (never from a
/// library on behalf of its host), once, at start-up, before other threads are spawned
/// and before any code that relies on glibc's default `malloc` behaviour (for instance
/// one that itself calls `mallopt`) has run.
pub unsafe fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::c_int;
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_TOP_PAD: c_int = -2;
        const M_MMAP_MAX: c_int = -4;
        unsafe extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        // SAFETY: `mallopt` only sets allocator parameters; these three are documented
        // glibc options and any value is valid for them. The process-wide effect is the
        // caller's to accept (see `# Safety`).
        unsafe {
            mallopt(M_MMAP_MAX, 0) == 1
                && mallopt(M_TRIM_THRESHOLD, c_int::MAX) == 1
                && mallopt(M_TOP_PAD, 64 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
