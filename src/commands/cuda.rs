//! The CUDA side of `train` and `bench train` (feature `cuda`): the device, and the
//! data-parallel topology of this process (NCCL after a TCP rendezvous).

use anyhow::{Context, Result};
use cocolm_trainer::backend::{CudaInner, check_cuda};
use cocolm_trainer::collective::launch::{Launch, rendezvous};
use cocolm_trainer::collective::nccl::{NcclCollective, unique_id};
use cocolm_trainer::step::DataParallel;
use std::sync::Arc;
use std::time::Duration;

/// How long ranks wait for each other at the rendezvous.
const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(600);

/// GPU `ordinal` (the process's local rank).
pub fn device(ordinal: usize) -> burn_cubecl::cubecl::cuda::CudaDevice {
    burn_cubecl::cubecl::cuda::CudaDevice::new(ordinal)
}

/// This process's topology: ZeRO-1 over NCCL when `zero` (several ranks, or asked for
/// on one), else a single rank. Checks the GPU and its libraries first.
pub fn topology(launch: &Launch, bucket: usize, zero: bool) -> Result<DataParallel<CudaInner>> {
    check_cuda(launch.local_rank, zero)?;
    if !zero {
        return Ok(DataParallel::Single);
    }
    let id = rendezvous(launch, unique_id, RENDEZVOUS_TIMEOUT)?;
    let collective = NcclCollective::new(launch.local_rank, launch.rank, launch.world, &id)
        .with_context(|| format!("rank {} of {}: joining NCCL", launch.rank, launch.world))?;
    Ok(DataParallel::Zero1 {
        collective: Arc::new(collective),
        bucket,
    })
}

/// Bytes in use on GPU `ordinal` (every process's), from the driver.
pub fn memory_in_use(ordinal: usize) -> Option<u64> {
    let context = cudarc::driver::CudaContext::new(ordinal).ok()?;
    context.bind_to_thread().ok()?;
    let (free, total) = cudarc::driver::result::mem_get_info().ok()?;
    Some((total - free) as u64)
}
