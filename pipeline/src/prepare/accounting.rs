//! Per-input accounting: every document read is accepted or rejected with a reason.
//!
//! A shard commit must not cost O(inputs) (a million input files make a 241 MB
//! manifest): the accounting of each finished input is appended once to
//! [`INPUT_LOG_FILE`], synced before each commit, and the partial manifest holds only the
//! input in progress and how many bytes of the log are valid ([`InputLog`]). The final
//! manifest lists every input, and the log is removed.

use super::append_log::AppendLog;
use crate::corpus::{InputFile, Reject};
use crate::{Error, Result};
use cocolm_shared::manifest::{INPUT_LOG_FILE, InputLog, ResumePoint, Totals};
use cocolm_shared::{InputFileRecord, Manifest, ManifestState};
use std::path::Path;

/// Detailed rejections kept per input (the counts are always complete).
pub const MAX_REJECTION_EXAMPLES: usize = 10;

/// Empty records for `files`, with their sizes.
pub fn input_records(files: &[InputFile]) -> Vec<InputFileRecord> {
    files
        .iter()
        .map(|file| InputFileRecord {
            path: file.name.clone(),
            bytes: file.bytes,
            ..InputFileRecord::default()
        })
        .collect()
}

/// The append-only log of finished inputs ([`INPUT_LOG_FILE`]), one JSON record a line.
#[derive(Debug)]
pub struct InputLogWriter(AppendLog);

impl InputLogWriter {
    /// The log in `out`, cut to its first `committed` bytes (created when missing and
    /// `committed` is 0).
    pub fn open(out: &Path, committed: u64) -> Result<Self> {
        Ok(InputLogWriter(AppendLog::open(
            out.join(INPUT_LOG_FILE),
            committed,
        )?))
    }

    fn append(&mut self, record: &InputFileRecord) -> Result<()> {
        let mut line = serde_json::to_vec(record).expect("an input record serialises");
        line.push(b'\n');
        self.0.append(&line)
    }
}

/// Running counts of a job, in input order.
#[derive(Debug)]
pub struct Accounting {
    inputs: Vec<InputFileRecord>,
    totals: Totals,
    log: InputLogWriter,
    /// Inputs already in the log: those before it are finished.
    logged: usize,
    all_inputs_sha256: String,
}

impl Accounting {
    /// Continue from the counts of a manifest (every input listed), whose first `logged`
    /// inputs are in `log`.
    pub fn new(
        inputs: &[InputFileRecord],
        totals: &Totals,
        log: InputLogWriter,
        logged: usize,
    ) -> Self {
        Accounting {
            all_inputs_sha256: super::part::inputs_sha256(inputs),
            inputs: inputs.to_vec(),
            totals: *totals,
            log,
            logged,
        }
    }

    /// Log every input before `input` not yet logged: the job has moved past them.
    pub fn finish_before(&mut self, input: usize) -> Result<()> {
        while self.logged < input {
            self.log.append(&self.inputs[self.logged])?;
            self.logged += 1;
        }
        Ok(())
    }

    /// Write the partial manifest of a commit at `resume` (inputs before it finished and
    /// logged): the log synced, then a manifest holding only the input in progress.
    pub fn write_partial(
        &mut self,
        manifest: &mut Manifest,
        resume: ResumePoint,
        out: &Path,
    ) -> Result<()> {
        let input = resume.input as usize;
        self.finish_before(input)?;
        let committed_bytes = self.log.0.sync()?;
        manifest.state = ManifestState::Partial(resume);
        manifest.totals = self.totals_with(manifest);
        manifest.input_log = Some(InputLog {
            committed_bytes,
            all_inputs: self.inputs.len() as u64,
            all_inputs_sha256: self.all_inputs_sha256.clone(),
        });
        let all = std::mem::replace(&mut manifest.inputs, vec![self.inputs[input].clone()]);
        let written = manifest.write_dir(out);
        manifest.inputs = all;
        manifest.input_log = None;
        Ok(written?)
    }

    /// Count a rejected document of input `input`.
    pub fn reject(&mut self, input: usize, reason: Reject, detail: String) {
        let record = &mut self.inputs[input];
        record.documents_read += 1;
        record.documents_rejected += 1;
        *record
            .rejections
            .entry(reason.as_str().to_string())
            .or_default() += 1;
        if record.rejection_examples.len() < MAX_REJECTION_EXAMPLES {
            record.rejection_examples.push(detail);
        }
        self.totals.documents_read += 1;
        self.totals.documents_rejected += 1;
    }

    /// Count an accepted document of input `input` with `tokens` tokens.
    pub fn accept(&mut self, input: usize, tokens: u64) {
        let record = &mut self.inputs[input];
        record.documents_read += 1;
        record.documents_accepted += 1;
        record.tokens += tokens;
        self.totals.documents_read += 1;
        self.totals.documents_accepted += 1;
    }

    /// The document totals so far.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Store every input's counts in `manifest`, with example and token totals from its
    /// shards (the final manifest).
    pub fn write_into(&self, manifest: &mut Manifest) {
        manifest.inputs.clone_from(&self.inputs);
        manifest.totals = self.totals_with(manifest);
    }

    fn totals_with(&self, manifest: &Manifest) -> Totals {
        Totals {
            examples: manifest.shards.iter().map(|s| s.rows).sum(),
            tokens: manifest.shards.iter().map(|s| s.tokens).sum(),
            ..self.totals
        }
    }

    /// Remove the log: the final manifest lists every input.
    pub fn remove_log(self) -> Result<()> {
        let path = self.log.0.path().to_path_buf();
        drop(self.log);
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))
    }
}
