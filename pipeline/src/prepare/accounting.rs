//! Per-input accounting: every document read is accepted or rejected with a reason.

use crate::corpus::Reject;
use crate::{Error, Result};
use cocolm_shared::manifest::Totals;
use cocolm_shared::{InputFileRecord, Manifest};
use std::path::PathBuf;

/// Detailed rejections kept per input (the counts are always complete).
pub const MAX_REJECTION_EXAMPLES: usize = 10;

/// Empty records for `files`, with their sizes.
pub fn input_records(files: &[PathBuf]) -> Result<Vec<InputFileRecord>> {
    files
        .iter()
        .map(|path| {
            let bytes = std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .len();
            Ok(InputFileRecord {
                path: path.display().to_string(),
                bytes,
                ..InputFileRecord::default()
            })
        })
        .collect()
}

/// Running counts of a job, in input order.
#[derive(Debug, Clone)]
pub struct Accounting {
    inputs: Vec<InputFileRecord>,
    totals: Totals,
}

impl Accounting {
    /// Continue from the counts of a manifest.
    pub fn new(inputs: &[InputFileRecord], totals: &Totals) -> Self {
        Accounting {
            inputs: inputs.to_vec(),
            totals: *totals,
        }
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

    /// Store the counts in `manifest`, with example and token totals from its shards.
    pub fn write_into(&self, manifest: &mut Manifest) {
        manifest.inputs.clone_from(&self.inputs);
        manifest.totals = Totals {
            examples: manifest.shards.iter().map(|s| s.rows).sum(),
            tokens: manifest.shards.iter().map(|s| s.tokens).sum(),
            ..self.totals
        };
    }
}
