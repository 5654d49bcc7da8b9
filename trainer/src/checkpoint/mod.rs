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
//!     optimizer.safetensors   one rank: AdamW moments, `<path>.exp_avg` / `<path>.exp_avg_sq`
//!     optimizer-rank-00001-of-00004.safetensors
//!                             ZeRO-1: each rank's shard of the moments (flat `exp_avg`,
//!                             `exp_avg_sq`), instead of `optimizer.safetensors`
//!     state.json              format_version, step, optimizer_step, optimizer_shards
//!                             (world and bucket size, when sharded), loss_scale (fp16),
//!                             config, caller, files (size and SHA-256 of every other
//!                             file, [`integrity`]); written last
//! ```
//!
//! [`FileCheckpointer::verify`] checks a checkpoint against its `state.json` without
//! loading it; a damaged one is passed over on resume ([`crate::train::find_resume`]) and
//! set aside as `step-XXXXXXXX.damaged`, never deleted.
//!
//! A checkpoint is written under `step-XXXXXXXX.tmp/`, every file and the directory are
//! fsynced, then it is renamed into place: a crash leaves either the complete new
//! checkpoint or none, and the previous one is untouched. With several ranks
//! ([`FileCheckpointer::save_ranked`]) rank 0 prepares the directory, every rank writes
//! its optimiser shard, rank 0 writes the model and the state and renames; the ranks
//! agree after each phase, so one rank's failure fails the save on all of them (ranks on
//! several machines need a shared file system for the run directory).
//!
//! The shards of any world size merge into the whole state
//! ([`crate::optim::sharded::merge`]), so a run resumes on another number of ranks.

pub mod file;
pub mod integrity;

use crate::Result;
use crate::optim::OptimizerState;
use crate::params::NamedTensor;
use crate::precision::LossScale;
use cocolm_shared::RunConfig;
use std::path::{Path, PathBuf};

pub use file::{FileCheckpointer, Verified};

/// Version of the checkpoint format written, the only one this build reads
/// ([`crate::Error::CheckpointFormat`] otherwise). 4: the model as released COCO-LM has
/// it (CLM head without a transform, COCO-LM's relative-position buckets, halved SCL
/// loss); 3 and before held a model that differs, with the same parameter files.
pub const FORMAT_VERSION: u32 = 4;

/// The content of one checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Optimiser steps completed.
    pub step: u64,
    /// The configuration of the run.
    pub config: RunConfig,
    /// Model parameters by path.
    pub model: Vec<NamedTensor>,
    /// Optimiser state: the whole state, or the shards of every rank (when saving with
    /// [`FileCheckpointer::save_ranked`], this rank's own).
    pub optimizer: Vec<OptimizerState>,
    /// The caller's own state (loader cursor, …), stored verbatim.
    pub caller: serde_json::Value,
    /// The fp16 loss scale, when the run has one.
    pub loss_scale: Option<LossScale>,
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
