//! `cocolm train`.
use crate::cli::TrainArgs;
use anyhow::Result;

/// Run training.
pub fn run(_args: &TrainArgs) -> Result<()> {
    anyhow::bail!("train: waiting for the trainer")
}
