//! A pretrained model read back from a run: what fine-tuning and export start from.

use crate::checkpoint::{FileCheckpointer, Retention};
use crate::model::CocoLm;
use crate::train::{CHECKPOINT_DIR, find_resume};
use crate::{Error, Result, params};
use burn::tensor::backend::Backend;
use cocolm_shared::RunConfig;
use std::path::{Path, PathBuf};

/// The weights of one checkpoint, as a model.
#[derive(Debug)]
pub struct Pretrained<B: Backend> {
    /// Generator and corrector.
    pub model: CocoLm<B>,
    /// The run's configuration (`model.vocab_size` resolved).
    pub config: RunConfig,
    /// Optimiser steps the checkpoint was taken after.
    pub step: u64,
    /// The checkpoint directory.
    pub path: PathBuf,
    /// The run directory it belongs to (the checkpoint's grandparent), where the run's
    /// `tokenizer.json` is.
    pub run: PathBuf,
}

impl<B: Backend> Pretrained<B> {
    /// Read `run_or_checkpoint`: a run directory (its newest intact checkpoint) or one
    /// checkpoint directory (verified against its checksums first).
    pub fn load(run_or_checkpoint: &Path, device: &B::Device) -> Result<Self> {
        let checkpointer = |dir: &Path| {
            FileCheckpointer::new(
                dir.parent().unwrap_or(dir).to_path_buf(),
                Retention::KeepNewest(1),
            )
        };
        let (path, run) = if run_or_checkpoint.join("state.json").is_file() {
            checkpointer(run_or_checkpoint).verify(run_or_checkpoint)?;
            let run = run_or_checkpoint
                .parent()
                .and_then(Path::parent)
                .unwrap_or(run_or_checkpoint)
                .to_path_buf();
            (run_or_checkpoint.to_path_buf(), run)
        } else {
            // `find_resume` verified the checkpoint it returns.
            let point = find_resume(run_or_checkpoint)?.ok_or_else(|| Error::Checkpoint {
                path: run_or_checkpoint.join(CHECKPOINT_DIR),
                message: "no checkpoint (give a run directory that has one, or a checkpoint \
                          directory)"
                    .into(),
            })?;
            (point.path, run_or_checkpoint.to_path_buf())
        };
        let (step, config, tensors) = checkpointer(&path).load_model(&path)?;
        let model = CocoLm::init(&config.model, device)?;
        let model = params::import(model, tensors, &path, device)?;
        Ok(Self {
            model,
            config,
            step,
            path,
            run,
        })
    }
}
