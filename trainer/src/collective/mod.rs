//! The collective seam: how data-parallel ranks exchange tensors.
//!
//! [`Collective`] is the one interface the trainer uses across ranks: all-reduce,
//! reduce-scatter, all-gather and broadcast of flat tensors, and a barrier. Two
//! implementations exist:
//!
//! - [`threads::ThreadGroup`]: ranks as threads of one process (the CPU test bed), the
//!   data exchanged through host memory and reduced in rank order (deterministic);
//! - `nccl::NcclCollective` (feature `cuda`): NCCL through cudarc, one process per GPU,
//!   on the device memory of burn's CUDA tensors.
//!
//! [`launch`] reads a process's rank from the cluster's launch variables and hands rank
//! 0's NCCL id to the others.
//!
//! Every rank calls the same operations in the same order (NCCL's rule); sizes must agree
//! across ranks. A rank that fails aborts the group, and the others' pending or later
//! calls return [`Error::Collective`](crate::Error::Collective) instead of waiting
//! forever.

pub mod launch;
#[cfg(feature = "cuda")]
pub mod nccl;
pub mod threads;

use crate::Result;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Data-parallel communication among `world` ranks.
///
/// Tensors are flat (`[n]`) and of any float dtype; the result has the input's dtype.
/// Sums are taken in `f32` or wider.
pub trait Collective<B: Backend>: Send + Sync {
    /// This rank, `0..world`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn world(&self) -> usize;

    /// The elementwise sum over all ranks, on every rank.
    fn all_reduce(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>>;

    /// `tensor` is `[world · k]` on every rank; rank `r` receives the elementwise sum over
    /// ranks of its part `r·k..(r + 1)·k`, `[k]`.
    fn reduce_scatter(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>>;

    /// `tensor` is `[k]` on every rank; every rank receives the parts in rank order,
    /// `[world · k]`.
    fn all_gather(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>>;

    /// Rank `root`'s `tensor`, on every rank (the others pass a tensor of the same size).
    fn broadcast(&self, tensor: Tensor<B, 1>, root: usize) -> Result<Tensor<B, 1>>;

    /// Return once every rank has called it.
    fn barrier(&self) -> Result<()>;
}

/// Whether `ok` holds on every rank (an all-reduce of one flag): lets the ranks take a
/// decision together, so that one rank's failure ends the operation on all of them.
pub fn all_ok<B: Backend>(
    collective: &dyn Collective<B>,
    ok: bool,
    device: &B::Device,
) -> Result<bool> {
    let [failed] = any_rank(collective, [!ok], device)?;
    Ok(!failed)
}

/// For each flag, whether it holds on at least one rank (one all-reduce for all of
/// them): several decisions the ranks must take together, at the cost of one.
pub fn any_rank<B: Backend, const N: usize>(
    collective: &dyn Collective<B>,
    flags: [bool; N],
    device: &B::Device,
) -> Result<[bool; N]> {
    if collective.world() == 1 {
        return Ok(flags);
    }
    let counts = Tensor::<B, 1>::from_floats(flags.map(|f| if f { 1.0 } else { 0.0 }), device);
    let counts = collective.all_reduce(counts)?.into_data();
    let counts = counts.iter::<f32>().collect::<Vec<_>>();
    Ok(std::array::from_fn(|i| counts[i] > 0.0))
}

/// A single rank: every operation is the identity (no communication).
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleRank;

impl<B: Backend> Collective<B> for SingleRank {
    fn rank(&self) -> usize {
        0
    }

    fn world(&self) -> usize {
        1
    }

    fn all_reduce(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        Ok(tensor)
    }

    fn reduce_scatter(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        Ok(tensor)
    }

    fn all_gather(&self, tensor: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        Ok(tensor)
    }

    fn broadcast(&self, tensor: Tensor<B, 1>, _root: usize) -> Result<Tensor<B, 1>> {
        Ok(tensor)
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}
