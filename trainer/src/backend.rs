//! The concrete backends the trainer is tested and measured with.
//!
//! Model code is generic over `B: Backend`; only the training step and loop need
//! `B: AutodiffBackend`. These aliases are what a binary picks from:
//!
//! - [`CpuBackend`]: `burn-ndarray` in `f32` with autodiff, multi-threaded (rayon and
//!   `matrixmultiply` threading) and SIMD, the embedded default that runs anywhere;
//! - [`FlexBackend`]: `burn-flex` with autodiff, for half precision on the CPU (the
//!   portable code path, the one CUDA runs);
//! - with the `cuda` feature, `CudaBackend`: burn's cubecl CUDA backend, fp32 parameters,
//!   any precision by casts.

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

/// The CUDA backend without autodiff: burn-cuda's cubecl backend (without fusion) with
/// f32 as its default float, named through `burn-cubecl` so that the NCCL collective can
/// reach its buffers.
#[cfg(feature = "cuda")]
pub type CudaInner = burn_cubecl::CubeBackend<burn_cubecl::cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// The CUDA training backend: fp32 parameters (master weights), activations in the run's
/// precision by casts ([`crate::precision`]).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<CudaInner>;

/// Check, without panicking, that GPU `ordinal` can be used: the driver library, a
/// device, NVRTC and the CUDA headers cubecl compiles kernels with, and (for several
/// ranks) NCCL. cudarc and cubecl panic when a library is missing; this names it instead.
#[cfg(feature = "cuda")]
pub fn check_cuda(ordinal: usize, nccl: bool) -> crate::Result<()> {
    use cudarc::driver::{result as driver, sys as driver_sys};
    let missing = |what: &str| crate::Error::Device {
        device: format!("cuda:{ordinal}"),
        message: what.to_string(),
    };
    // SAFETY: only probes whether the shared library can be loaded.
    if !unsafe { driver_sys::is_culib_present() } {
        return Err(missing(
            "the NVIDIA driver library (libcuda.so) is not installed or not on the loader path",
        ));
    }
    driver::init().map_err(|e| {
        missing(&format!(
            "cuInit failed: {e:?} (no GPU, or a driver too old)"
        ))
    })?;
    let count = driver::device::get_count().map_err(|e| missing(&format!("{e:?}")))?;
    if ordinal >= count as usize {
        return Err(missing(&format!(
            "{count} CUDA device(s) visible (CUDA_VISIBLE_DEVICES?)"
        )));
    }
    // SAFETY: as above.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(missing(
            "NVRTC (libnvrtc.so) is not installed or not on the loader path",
        ));
    }
    if burn_cubecl::cubecl::cuda::install::cuda_path().is_none() {
        return Err(missing(
            "the CUDA toolkit headers were not found (set CUDA_PATH, or install to /usr/local/cuda)",
        ));
    }
    // SAFETY: as above.
    if nccl && !unsafe { cudarc::nccl::sys::is_culib_present() } {
        return Err(missing(
            "NCCL is not loadable as libnccl.so: install libnccl-dev, or put a libnccl.so link to libnccl.so.2 on LD_LIBRARY_PATH",
        ));
    }
    Ok(())
}

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
