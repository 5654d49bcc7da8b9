//! `cocolm checkpoint verify`: every checkpoint of a run against its recorded checksums.

use crate::cli::CheckpointVerifyArgs;
use crate::progress::bytes;
use anyhow::{Result, bail};
use cocolm_trainer::checkpoint::{FileCheckpointer, Retention};
use cocolm_trainer::train::CHECKPOINT_DIR;

/// `cocolm checkpoint verify RUN`.
pub fn verify(args: &CheckpointVerifyArgs) -> Result<()> {
    let root = if args.run.join(CHECKPOINT_DIR).is_dir() {
        args.run.join(CHECKPOINT_DIR)
    } else {
        args.run.clone()
    };
    if !root.is_dir() {
        bail!(
            "{}: no such run or checkpoints directory",
            args.run.display()
        );
    }
    let checkpointer = FileCheckpointer::new(&root, Retention::KeepNewest(1));
    let steps = checkpointer.steps()?;
    let mut damaged = 0;
    for &step in &steps {
        let dir = checkpointer.dir_of(step);
        match checkpointer.verify(&dir) {
            Ok(v) => println!(
                "{}  intact: {} files, {}, SHA-256 verified",
                dir.display(),
                v.files,
                bytes(v.bytes as f64),
            ),
            Err(e) => {
                damaged += 1;
                println!("{}  DAMAGED: {e}", dir.display());
            }
        }
    }
    for (_, dir) in checkpointer.incomplete()? {
        println!(
            "{}  incomplete: its job ended while writing it (ignored; replaced when that step is saved again)",
            dir.display()
        );
    }
    for (_, dir) in checkpointer.set_aside_dirs()? {
        println!(
            "{}  set aside as damaged by an earlier resume (kept for inspection; delete it when done)",
            dir.display()
        );
    }
    if steps.is_empty() {
        bail!("{}: no checkpoints", root.display());
    }
    if damaged > 0 {
        bail!(
            "{damaged} of {} checkpoints damaged; `cocolm train --resume` passes over them to the newest intact one",
            steps.len()
        );
    }
    println!("{} checkpoints intact", steps.len());
    Ok(())
}
