//! What `prepare` finds in `--out`, and what it does about it.
//!
//! - nothing, or an empty directory: a fresh job;
//! - a complete manifest made with the same inputs, tokenizer and options: nothing to do;
//! - an incomplete manifest made with the same: resume, after deleting temporary files
//!   and shards written after the manifest's last update;
//! - leftovers of a job killed before its first manifest (only shard, temporary and
//!   tokenizer files): removed, then a fresh job;
//! - anything else (other files, a manifest made differently): an error; cocolm never
//!   deletes what it did not write.

use super::dedup::DEDUP_FILE;
use crate::{Error, Result};
use cocolm_shared::lock::LOCK_FILE;
use cocolm_shared::manifest::{
    INPUT_LOG_FILE, MANIFEST_FILE, PartRecord, PrepareOptionsRecord, ResumePoint, write_atomic,
};
use cocolm_shared::{InputFileRecord, Manifest, ManifestState, TokenizerRecord};
use std::path::Path;

/// File name of the tokenizer copy beside the shards.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// What to do with the output directory.
#[derive(Debug)]
pub enum Plan {
    /// Start from nothing.
    Fresh,
    /// Continue the job of this (partial) manifest from its resume point.
    Resume {
        /// The manifest so far.
        manifest: Manifest,
        /// Its resume point: the first token not yet in a shard.
        resume: ResumePoint,
    },
    /// The job is already done.
    Complete(Manifest),
}

/// Decide what to do with `out` for a job with these parameters.
pub fn plan(
    out: &Path,
    seq_len: usize,
    tokenizer: &TokenizerRecord,
    options: &PrepareOptionsRecord,
    inputs: &[InputFileRecord],
    part: Option<&PartRecord>,
) -> Result<Plan> {
    let Some(names) = fresh_or_listed(out)? else {
        return Ok(Plan::Fresh);
    };
    let manifest = Manifest::read_dir(out)?;
    let mismatch = if manifest.seq_len != seq_len {
        Some(format!(
            "--seq-len {} (this run: {seq_len})",
            manifest.seq_len
        ))
    } else if manifest.tokenizer.sha256 != tokenizer.sha256 {
        Some(format!(
            "a different tokenizer ({})",
            manifest.tokenizer.file
        ))
    } else if manifest.options != *options {
        Some(format!("different options {:?}", manifest.options))
    } else if !same_inputs(&manifest, inputs) {
        Some("different input files (or their sizes changed)".into())
    } else if manifest.part.as_ref() != part {
        Some(match &manifest.part {
            Some(p) => format!(
                "--part {}/{} of the input list with sha256 {}",
                p.index, p.count, p.all_inputs_sha256
            ),
            None => "no --part".into(),
        })
    } else {
        None
    };
    if let Some(what) = mismatch {
        return Err(Error::Output {
            path: out.to_path_buf(),
            message: format!(
                "holds shards prepared with {what}; use the same arguments to resume, or another --out"
            ),
        });
    }
    let resume = match manifest.state {
        ManifestState::Complete => return Ok(Plan::Complete(manifest)),
        ManifestState::Partial(resume) => resume,
    };
    let listed: Vec<&str> = manifest.shards.iter().map(|s| s.file.as_str()).collect();
    let stale: Vec<String> = names
        .into_iter()
        .filter(|n| {
            is_ours(n)
                && ![TOKENIZER_FILE, DEDUP_FILE, INPUT_LOG_FILE].contains(&n.as_str())
                && !listed.contains(&n.as_str())
        })
        .collect();
    remove(out, &stale)?;
    Ok(Plan::Resume { manifest, resume })
}

/// Make `out` ready for a new shard set (`merge`): create it, or clear what a job killed
/// before its first manifest left there; refuse a folder holding a manifest or files
/// cocolm did not write.
pub fn fresh(out: &Path) -> Result<()> {
    match fresh_or_listed(out)? {
        None => Ok(()),
        Some(_) => Err(Error::Output {
            path: out.to_path_buf(),
            message: format!(
                "already holds a shard set ({MANIFEST_FILE}); choose an empty or new folder"
            ),
        }),
    }
}

/// `None` when `out` is ready for a fresh job (created, or cleared of leftovers); its
/// entries when it holds a manifest; an error when it holds files that are not ours.
fn fresh_or_listed(out: &Path) -> Result<Option<Vec<String>>> {
    if !out.exists() {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        return Ok(None);
    }
    let names = list(out)?;
    if names.iter().any(|n| n == MANIFEST_FILE) {
        return Ok(Some(names));
    }
    if let Some(foreign) = names.iter().find(|n| !is_ours(n)) {
        return Err(Error::Output {
            path: out.to_path_buf(),
            message: format!(
                "not empty ({foreign:?}) and holds no {MANIFEST_FILE}; choose an empty or new folder"
            ),
        });
    }
    remove(out, &names)?;
    Ok(None)
}

/// Write the tokenizer copy atomically.
pub fn write_tokenizer(out: &Path, json: &[u8]) -> Result<()> {
    let path = out.join(TOKENIZER_FILE);
    write_atomic(&out.join(format!("{TOKENIZER_FILE}.tmp")), &path, json)?;
    Ok(())
}

/// Whether `manifest` was made from the input list `inputs` (paths and sizes): compared
/// whole, or by its hash when a partial manifest keeps its finished inputs in the log.
fn same_inputs(manifest: &Manifest, inputs: &[InputFileRecord]) -> bool {
    match &manifest.input_log {
        Some(log) => {
            log.all_inputs == inputs.len() as u64
                && log.all_inputs_sha256 == super::part::inputs_sha256(inputs)
        }
        None => {
            manifest.inputs.len() == inputs.len()
                && manifest
                    .inputs
                    .iter()
                    .zip(inputs)
                    .all(|(x, y)| x.path == y.path && x.bytes == y.bytes)
        }
    }
}

/// Files `prepare` writes: shards, temporaries, the tokenizer copy, the dedup side file.
fn is_ours(name: &str) -> bool {
    let shard =
        name.starts_with("shard-") && (name.ends_with(".arrow") || name.ends_with(".arrow.tmp"));
    shard
        || [TOKENIZER_FILE, DEDUP_FILE, INPUT_LOG_FILE].contains(&name)
        || name.ends_with(".json.tmp")
}

/// The folder's entries, less the job's own lock file.
fn list(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn remove(dir: &Path, names: &[String]) -> Result<()> {
    for name in names {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}
