//! Optimisers, gradient clipping and the learning-rate schedule.
//!
//! An [`Optimizer`] updates flattened parameters given flattened gradients, both in the
//! stable parameter order of [`crate::params`]. Its state is addressed per parameter by
//! path and round-trips exactly through [`OptimizerState`], so a checkpoint can hold it
//! and a sharded (ZeRO stage 1) implementation can own a subset of it.

pub mod adamw;
pub mod schedule;

use crate::Result;
use crate::params::NamedTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use std::path::Path;

pub use adamw::{AdamW, AdamWConfig};
pub use schedule::LinearSchedule;

/// Flattened gradients in parameter order; `None` for a parameter without gradient.
pub type Gradients<B> = Vec<Option<Tensor<B, 1>>>;

/// The whole state of an optimiser as host data.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    /// Updates applied so far.
    pub step: u64,
    /// Per-parameter state tensors, named `<parameter path>.<slot>`.
    pub tensors: Vec<NamedTensor>,
}

/// A first-order optimiser over flattened parameters.
pub trait Optimizer<B: Backend> {
    /// Apply one update with learning rate `lr`, after multiplying every gradient by
    /// `grad_scale` (accumulation averaging and clipping). Returns the new values in the
    /// same order; parameters without gradient are returned unchanged.
    fn step(
        &mut self,
        params: Vec<Tensor<B, 1>>,
        grads: &Gradients<B>,
        lr: f64,
        grad_scale: f64,
    ) -> Vec<Tensor<B, 1>>;

    /// Host copy of the state, for a checkpoint.
    fn state(&self) -> OptimizerState;

    /// Restore a state written by [`Optimizer::state`]; `source` names the file in errors.
    fn load_state(&mut self, state: OptimizerState, source: &Path) -> Result<()>;
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
