//! `cocolm demo`.
use crate::cli::DemoArgs;
use anyhow::Result;

/// Run the demo.
pub fn run(_args: &DemoArgs) -> Result<()> {
    anyhow::bail!("demo: waiting for the trainer")
}
