//! Optimisers, gradient clipping and the learning-rate schedule.
//!
//! An [`Optimizer`] takes the gradients of one rank (summed over its micro-batches),
//! combines them across data-parallel ranks when there are several, unscales and clips
//! them with the global norm, and updates the flattened parameters, all in the stable
//! parameter order of [`crate::params`]. Two implementations, one per topology:
//!
//! - [`AdamW`]: one rank, the whole state (the parameters are the fp32 master weights);
//! - [`ShardedAdamW`]: ZeRO stage 1 over a [`Collective`](crate::collective::Collective),
//!   each rank owning `1/W` of the fp32 master weights and moments.
//!
//! State round-trips exactly through [`OptimizerState`]: a whole state is addressed per
//! parameter by path, a shard by its rank in a [`ShardInfo`] layout, and
//! [`sharded::merge`] turns the shards of any world size back into the whole.

pub mod adamw;
pub mod schedule;
pub mod sharded;

use crate::Result;
use crate::params::NamedTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use adamw::{AdamW, AdamWConfig};
pub use schedule::LinearSchedule;
pub use sharded::ShardedAdamW;

/// Flattened gradients in parameter order; `None` for a parameter without gradient.
pub type Gradients<B> = Vec<Option<Tensor<B, 1>>>;

/// Where a shard sits in a ZeRO-1 layout (see [`sharded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// The rank owning the shard.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    /// Elements per communication bucket.
    pub bucket: usize,
}

/// The state of an optimiser as host data.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    /// Updates applied so far.
    pub step: u64,
    /// The state tensors: for the whole model, per parameter, named
    /// `<parameter path>.<slot>`; for a shard, one flat tensor per slot, named `<slot>`.
    pub tensors: Vec<NamedTensor>,
    /// `None` for the whole model, else the shard these tensors are.
    pub shard: Option<ShardInfo>,
}

/// What a step asks of the optimiser besides the gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRequest {
    /// Learning rate.
    pub lr: f64,
    /// Global-norm clipping threshold (0: no clipping).
    pub clip_norm: f64,
    /// The gradients handed over are sums; dividing by this gives the mean gradient of
    /// the step (micro-batches × ranks × loss scale).
    pub grad_divisor: f64,
}

/// What a step did.
#[derive(Debug, Clone)]
pub struct StepOutcome<B: Backend> {
    /// Euclidean norm of the mean gradient over all ranks, before clipping.
    pub grad_norm: f64,
    /// The updated parameters in order, or `None` when the norm is not finite: nothing
    /// was applied (and every rank sees the same norm, so all skip together).
    pub params: Option<Vec<Tensor<B, 1>>>,
}

/// A first-order optimiser over flattened parameters.
pub trait Optimizer<B: Backend> {
    /// Combine `grads` across ranks, take the global norm, clip, and update `params`
    /// (see [`StepRequest`], [`StepOutcome`]). Parameters without gradient on every rank
    /// are returned unchanged.
    fn step(
        &mut self,
        params: Vec<Tensor<B, 1>>,
        grads: Gradients<B>,
        request: &StepRequest,
    ) -> Result<StepOutcome<B>>;

    /// Host copy of this rank's state, for a checkpoint.
    fn state(&self) -> OptimizerState;

    /// Restore a state: the whole state (any implementation takes its part of it) or, for
    /// a sharded optimiser, its own shard. `source` names the file in errors.
    /// `params` are the current parameter values (restored with the state; a sharded
    /// optimiser takes its master weights from them).
    fn load_state(
        &mut self,
        state: OptimizerState,
        params: &[Tensor<B, 1>],
        source: &Path,
    ) -> Result<()>;

    /// Bytes of optimiser state this rank holds: fp32 master weights and two moments.
    fn state_bytes(&self) -> u64;

    /// The shard this rank holds, `None` for the whole state.
    fn shard(&self) -> Option<ShardInfo>;
}

/// Add `more` into `sum`, parameter by parameter.
pub fn accumulate<B: Backend>(sum: &mut Gradients<B>, more: Gradients<B>) {
    for (s, m) in sum.iter_mut().zip(more) {
        *s = match (s.take(), m) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
}

/// Euclidean norm of all gradients together.
pub fn global_norm<B: Backend>(grads: &Gradients<B>) -> f64 {
    let squares: Vec<Tensor<B, 1>> = grads
        .iter()
        .flatten()
        .map(|g| g.clone().square().sum())
        .collect();
    if squares.is_empty() {
        return 0.0;
    }
    let total: f32 = Tensor::cat(squares, 0).sum().into_scalar().elem();
    (total as f64).sqrt()
}

/// Factor that brings a gradient of norm `norm` within `max_norm` (1 when it already is,
/// or when `max_norm` is 0, i.e. clipping is off). Same rule as PyTorch's
/// `clip_grad_norm_`.
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 {
        (max_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuInner;

    #[test]
    fn global_norm_and_clipping() {
        let device = Default::default();
        let grads: Gradients<CpuInner> = vec![
            Some(Tensor::from_floats([3.0, 0.0], &device)),
            None,
            Some(Tensor::from_floats([4.0], &device)),
        ];
        assert!((global_norm(&grads) - 5.0).abs() < 1e-6);
        assert!((clip_factor(5.0, 1.0) - 0.2).abs() < 1e-6);
        assert_eq!(clip_factor(0.5, 1.0), 1.0);
        assert_eq!(clip_factor(5.0, 0.0), 1.0);
    }

    #[test]
    fn accumulation_sums_and_keeps_missing() {
        let device = Default::default();
        let mut a: Gradients<CpuInner> =
            vec![Some(Tensor::from_floats([1.0], &device)), None, None];
        let b: Gradients<CpuInner> = vec![
            Some(Tensor::from_floats([2.0], &device)),
            Some(Tensor::from_floats([5.0], &device)),
            None,
        ];
        accumulate(&mut a, b);
        let v: Vec<Option<f32>> = a.into_iter().map(|g| g.map(|g| g.into_scalar())).collect();
        assert_eq!(v, vec![Some(3.0), Some(5.0), None]);
    }
}
