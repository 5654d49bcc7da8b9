//! `cocolm prepare`.
use crate::cli::PrepareArgs;
use anyhow::Result;

/// Run prepare.
pub fn run(_args: &PrepareArgs) -> Result<()> {
    anyhow::bail!("prepare: waiting for the tokenizer module")
}
