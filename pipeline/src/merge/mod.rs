//! `cocolm merge OUT PART…`: the folders of `prepare --part K/N` (all N parts of one
//! input list) joined into one shard set without copying shard bytes.
//!
//! - Every part must be complete and made from the same input list (its SHA-256 in each
//!   part's manifest), tokenizer, `seq_len` and options; each K from 0 to N−1 once. What
//!   disagrees is refused, naming the part's folder and the reason.
//! - Shards are hard-linked into `OUT` under new numbers, parts in order K = 0, 1, …;
//!   a shard on another file system is copied (and counted in the report). The parts'
//!   folders are left as they were.
//! - The merged set holds the parts' examples in that order, so the same documents in
//!   the same order as one `prepare` over all inputs: its token stream is that job's,
//!   except that each part ends in its own last (possibly short) example. The
//!   manifest's inputs and totals are the parts' joined; each shard's `document_offset`
//!   makes document ordinals count over the whole set.
//! - Under `--dedup exact` (or `near`), a part only knows its own documents: the merge
//!   reports the documents that repeat (or resemble) one of an earlier part (they stay in
//!   the shards; taking them out would rewrite them) and writes the merged set's
//!   `dedup.bin`. Near duplication is not transitive, so under `near` the documents a
//!   single job would keep can differ slightly from the parts' joined.
//!
//! The manifest is written last: a merge interrupted before it leaves only files that
//! the same command clears and redoes.

use crate::prepare::dedup::{self, DEDUP_FILE, Seen};
use crate::prepare::output::{self, TOKENIZER_FILE};
use crate::shard::shard_file_name;
use crate::{Error, Result};
use cocolm_shared::manifest::{Dedup, FORMAT_NAME, FORMAT_VERSION, PartRecord, Totals};
use cocolm_shared::{DirLock, Manifest, ManifestState, ShardRecord};
use std::path::{Path, PathBuf};

/// Detailed duplicates kept in a [`MergeReport`] (the count is always complete).
pub const MAX_DUPLICATE_EXAMPLES: usize = 10;

/// What [`merge`] did.
#[derive(Debug, Clone)]
pub struct MergeReport {
    /// The merged set's manifest.
    pub manifest: Manifest,
    /// Shards hard-linked into the output.
    pub linked: usize,
    /// Shards copied (their part is on another file system).
    pub copied: usize,
    /// Under `--dedup exact`: documents whose text was first seen in an earlier part.
    pub cross_part_duplicates: u64,
    /// The first of them: `INPUT LOCATION: same text as INPUT LOCATION` (`similar text
    /// to` under `near`).
    pub duplicate_examples: Vec<String>,
}

/// Join the part folders `parts` (in any order) into `out`.
pub fn merge(out: &Path, parts: &[PathBuf]) -> Result<MergeReport> {
    let ordered = check_parts(parts)?;
    let _lock = DirLock::acquire(out)?;
    output::fresh(out)?;
    let (first_dir, first) = &ordered[0];
    let tokenizer = std::fs::read(first_dir.join(TOKENIZER_FILE))
        .map_err(|e| Error::io(first_dir.join(TOKENIZER_FILE), e))?;
    output::write_tokenizer(out, &tokenizer)?;

    let mut report = MergeReport {
        manifest: Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            created_by: concat!("cocolm ", env!("CARGO_PKG_VERSION"), " merge").into(),
            state: ManifestState::Complete,
            seq_len: first.seq_len,
            tokenizer: first.tokenizer.clone(),
            options: first.options.clone(),
            shards: Vec::new(),
            inputs: Vec::new(),
            totals: Totals::default(),
            part: None,
            input_log: None,
        },
        linked: 0,
        copied: 0,
        cross_part_duplicates: 0,
        duplicate_examples: Vec::new(),
    };
    let mut seen = match first.options.dedup {
        Dedup::None => None,
        Dedup::Exact | Dedup::Near => Some(Seen::create(out)?),
    };
    let mut documents = 0u64;
    for (dir, part) in &ordered {
        for shard in &part.shards {
            let file = shard_file_name(report.manifest.shards.len());
            if link_or_copy(&dir.join(&shard.file), &out.join(&file))? {
                report.linked += 1;
            } else {
                report.copied += 1;
            }
            report.manifest.shards.push(ShardRecord {
                file,
                document_offset: documents + shard.document_offset,
                ..shard.clone()
            });
        }
        if let Some(seen) = &mut seen {
            let inputs: Vec<&str> = report
                .manifest
                .inputs
                .iter()
                .chain(&part.inputs)
                .map(|i| i.path.as_str())
                .collect();
            let offset = report.manifest.inputs.len();
            let (count, examples) = join_dedup(seen, first.options.dedup, dir, &inputs, offset)?;
            report.cross_part_duplicates += count;
            let room = MAX_DUPLICATE_EXAMPLES - report.duplicate_examples.len();
            report
                .duplicate_examples
                .extend(examples.into_iter().take(room));
        }
        report.manifest.inputs.extend(part.inputs.iter().cloned());
        let (t, p) = (&mut report.manifest.totals, &part.totals);
        t.examples += p.examples;
        t.tokens += p.tokens;
        t.documents_read += p.documents_read;
        t.documents_accepted += p.documents_accepted;
        t.documents_rejected += p.documents_rejected;
        documents += p.documents_read;
    }
    if let Some(seen) = &mut seen {
        seen.sync()?;
    }
    for shard in &report.manifest.shards {
        cocolm_shared::manifest::sync_parent(&out.join(&shard.file))?;
    }
    report.manifest.write_dir(out)?;
    Ok(report)
}

/// The parts' manifests ordered by K, after checking that they are the N complete parts
/// of one job.
fn check_parts(parts: &[PathBuf]) -> Result<Vec<(PathBuf, Manifest)>> {
    let refuse = |dir: &Path, message: String| Error::Output {
        path: dir.to_path_buf(),
        message,
    };
    if parts.is_empty() {
        return Err(Error::Input {
            path: PathBuf::new(),
            message: "no part folders to merge".into(),
        });
    }
    let mut read = Vec::new();
    for dir in parts {
        let manifest = Manifest::read_dir(dir)?;
        let Some(part) = manifest.part.clone() else {
            return Err(refuse(
                dir,
                "is not a part (prepared without --part K/N): nothing to merge it with".into(),
            ));
        };
        if !manifest.state.is_complete() {
            return Err(refuse(
                dir,
                format!(
                    "part {}/{} is incomplete (an interrupted prepare): run its prepare command again to finish it",
                    part.index, part.count
                ),
            ));
        }
        read.push((dir.clone(), part, manifest));
    }
    read.sort_by_key(|(_, part, _)| part.index);
    let (first_dir, first_part, first) = &read[0];
    let same_job = |part: &PartRecord| {
        PartRecord {
            index: part.index,
            ..first_part.clone()
        } == *part
    };
    for (k, (dir, part, manifest)) in read.iter().enumerate() {
        let versus = format!("than {}", first_dir.display());
        let mismatch = if !same_job(part) {
            Some(format!(
                "is part {}/{} of another input list ({} files, sha256 {}) {versus}",
                part.index, part.count, part.all_inputs, part.all_inputs_sha256
            ))
        } else if manifest.tokenizer.sha256 != first.tokenizer.sha256 {
            Some(format!(
                "was prepared with another tokenizer ({}) {versus}",
                manifest.tokenizer.file
            ))
        } else if manifest.seq_len != first.seq_len {
            Some(format!(
                "has seq_len {}, not {} as {}",
                manifest.seq_len,
                first.seq_len,
                first_dir.display()
            ))
        } else if manifest.options != first.options {
            Some(format!(
                "was prepared with other options ({:?}) {versus}",
                manifest.options
            ))
        } else if part.index != k as u64 {
            let what = if part.index < k as u64 {
                format!("is part {} again", part.index)
            } else {
                format!(
                    "is part {}: part {k} of {} is missing",
                    part.index, part.count
                )
            };
            Some(what)
        } else {
            None
        };
        if let Some(message) = mismatch {
            return Err(refuse(dir, message));
        }
        for shard in &manifest.shards {
            let path = dir.join(&shard.file);
            let bytes = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            if bytes != shard.bytes {
                return Err(Error::shard(
                    &path,
                    format!(
                        "{bytes} bytes, the manifest says {}: the part is damaged",
                        shard.bytes
                    ),
                ));
            }
        }
    }
    let count = first_part.count as usize;
    if read.len() != count {
        return Err(Error::Input {
            path: first_dir.clone(),
            message: format!(
                "{} part folder(s) given, the parts say there are {count}: part {} is missing",
                read.len(),
                read.len()
            ),
        });
    }
    let inputs: usize = read.iter().map(|(_, _, m)| m.inputs.len()).sum();
    if inputs as u64 != first_part.all_inputs {
        return Err(refuse(
            first_dir,
            format!(
                "the parts hold {inputs} inputs, the input list has {}",
                first_part.all_inputs
            ),
        ));
    }
    Ok(read.into_iter().map(|(dir, _, m)| (dir, m)).collect())
}

/// Add the part in `dir` (its inputs numbered from `offset` in `inputs`, the merged
/// list so far) to `seen`; returns how many of its documents were first seen in an
/// earlier part, and the first [`MAX_DUPLICATE_EXAMPLES`] of them in detail.
fn join_dedup(
    seen: &mut Seen,
    mode: Dedup,
    dir: &Path,
    inputs: &[&str],
    offset: usize,
) -> Result<(u64, Vec<String>)> {
    let path = dir.join(DEDUP_FILE);
    let mut file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut records = Vec::new();
    dedup::read_records(&path, &mut file, None, |fingerprint, origin| {
        records.push((
            fingerprint,
            origin.with_input(offset + origin.input as usize),
        ));
    })?;
    let name = |origin: dedup::Origin| match origin.location() {
        Some(location) => format!("{} {location}", inputs[origin.input as usize]),
        None => inputs[origin.input as usize].to_string(),
    };
    let (mut count, mut examples) = (0u64, Vec::new());
    // A document's keys are consecutive records with its origin: one under `exact`,
    // one per band under `near`.
    for document in records.chunk_by(|a, b| a.1 == b.1) {
        let origin = document[0].1;
        let first = document.iter().find_map(|&(key, _)| seen.first_seen(key));
        match first {
            Some(first) => {
                count += 1;
                if examples.len() < MAX_DUPLICATE_EXAMPLES {
                    let relation = dedup::relation(mode);
                    examples.push(format!("{}: {relation} {}", name(origin), name(first)));
                }
            }
            None => {
                for &(key, origin) in document {
                    seen.insert(key, origin)?;
                }
            }
        }
    }
    Ok((count, examples))
}

/// Hard-link `from` to `to`; copy (and sync) when they are on different file systems.
/// Returns whether it linked.
fn link_or_copy(from: &Path, to: &Path) -> Result<bool> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            std::fs::copy(from, to).map_err(|e| Error::io(to, e))?;
            std::fs::File::open(to)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(to, e))?;
            Ok(false)
        }
        Err(e) => Err(Error::io(to, e)),
    }
}

#[cfg(test)]
mod tests;
