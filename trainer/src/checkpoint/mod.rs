//! Checkpoints: everything needed to continue a run exactly.
//!
//! A checkpoint holds the model weights, the optimiser state, the step, the
//! [`RunConfig`] and an opaque JSON value the caller supplies (its loader cursor). The
//! trait [`Checkpointer`] is the interface; [`file::FileCheckpointer`] stores each
//! checkpoint as a directory and applies the retention policy [`Retention`].
//!
//! Directory layout (format [`FORMAT_VERSION`]):
//!
//! ```text
//! <root>/step-00001000/
//!     model.safetensors       parameters by path (f32)
//!     optimizer.safetensors   AdamW moments, `<path>.exp_avg` / `<path>.exp_avg_sq`
//!     state.json              format_version, step, optimizer_step, config, caller
//! ```
//!
//! A checkpoint is written under `step-XXXXXXXX.tmp/`, every file and the directory are
//! fsynced, then it is renamed into place: a crash leaves either the complete new
//! checkpoint or none, and the previous one is untouched.

pub mod file;

use crate::Result;
use crate::optim::OptimizerState;
use crate::params::NamedTensor;
use cocolm_shared::RunConfig;
use std::path::{Path, PathBuf};

pub use file::FileCheckpointer;

/// Version of the checkpoint layout; readers refuse others.
pub const FORMAT_VERSION: u32 = 1;

/// The content of one checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Optimiser steps completed.
    pub step: u64,
    /// The configuration of the run.
    pub config: RunConfig,
    /// Model parameters by path.
    pub model: Vec<NamedTensor>,
    /// Optimiser state.
    pub optimizer: OptimizerState,
    /// The caller's own state (loader cursor, …), stored verbatim.
    pub caller: serde_json::Value,
}

/// Where checkpoints are kept.
pub trait Checkpointer {
    /// Store `checkpoint` durably; returns its location.
    fn save(&self, checkpoint: &Checkpoint) -> Result<PathBuf>;
    /// The newest complete checkpoint, if any.
    fn latest(&self) -> Result<Option<PathBuf>>;
    /// Read a checkpoint written by [`Checkpointer::save`].
    fn load(&self, location: &Path) -> Result<Checkpoint>;
}

/// Which checkpoints survive a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep the newest `n` (at least 1).
    KeepNewest(usize),
}

impl Retention {
    /// The steps to delete, given all stored steps.
    pub fn to_delete(&self, mut steps: Vec<u64>) -> Vec<u64> {
        match *self {
            Retention::KeepNewest(n) => {
                steps.sort_unstable();
                let excess = steps.len().saturating_sub(n.max(1));
                steps.truncate(excess);
                steps
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_newest() {
        assert_eq!(
            Retention::KeepNewest(2).to_delete(vec![30, 10, 20]),
            vec![10]
        );
        assert_eq!(
            Retention::KeepNewest(5).to_delete(vec![1, 2]),
            Vec::<u64>::new()
        );
        assert_eq!(Retention::KeepNewest(0).to_delete(vec![1, 2]), vec![1]);
    }
}
