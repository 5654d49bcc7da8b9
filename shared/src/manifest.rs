//! `manifest.json`: the description of a shard directory.
//!
//! The JSON Schema in `schemas/manifest.schema.json` is the source of truth; a test in
//! `cocolm-pipeline` checks this code against it.
//!
//! In Rust, whether the set is finished is one value, [`ManifestState`]; in the JSON it is
//! the pair `complete` + `resume` (so files written before the enum existed still read,
//! and Python sees plain fields). Reading refuses a pair that disagrees, and any content
//! that code would index out of range ([`Manifest::validate`]), with an
//! [`Error::Invalid`] naming the file and the field.

use crate::{Error, Result};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Value of [`Manifest::format`].
pub const FORMAT_NAME: &str = "cocolm-shards";
/// Current [`Manifest::format_version`]. Readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;
/// File name of the manifest inside a shard directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the log of finished inputs' accounting beside a partial manifest
/// ([`InputLog`]).
pub const INPUT_LOG_FILE: &str = "inputs.jsonl";

/// The manifest of a shard directory.
///
/// Serialised as the JSON object of `schemas/manifest.schema.json`; deserialising checks
/// it as [`Manifest::validate`] does.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for this release.
    pub format_version: u32,
    /// Program and version that wrote it.
    pub created_by: String,
    /// Finished, or where an interrupted `prepare` continues (`complete` and `resume`
    /// in the JSON).
    pub state: ManifestState,
    /// Tokens per example, `[CLS]` and final `[SEP]` included (the last example of the
    /// set may be shorter).
    pub seq_len: usize,
    /// The tokenizer the ids come from.
    pub tokenizer: TokenizerRecord,
    /// The options the shards were prepared with; a resumed run must use the same.
    pub options: PrepareOptionsRecord,
    /// Shards in order; example `i` of the set is found by summing `rows`.
    pub shards: Vec<ShardRecord>,
    /// Every input file in input order, with its accounting.
    pub inputs: Vec<InputFileRecord>,
    /// Totals over the shards and inputs.
    pub totals: Totals,
    /// Which part of a larger input list this set is (`prepare --part K/N`); `None` for
    /// a whole set (also one made by `merge`).
    pub part: Option<PartRecord>,
    /// In a partial manifest written by `prepare`: the inputs before the resume point
    /// are in [`INPUT_LOG_FILE`], not in the JSON, so a shard commit costs O(1) in the
    /// number of inputs. Reading merges them back: [`Manifest::inputs`] then holds every
    /// input up to the resume point's.
    pub input_log: Option<InputLog>,
}

/// Where the finished inputs of a partial manifest are: the first `committed_bytes` of
/// [`INPUT_LOG_FILE`], one JSON [`InputFileRecord`] per line, in input order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputLog {
    /// Bytes of the log that are valid (later ones are debris of an interrupted job).
    pub committed_bytes: u64,
    /// Input files of the whole job.
    pub all_inputs: u64,
    /// SHA-256 of the whole input list (each path and size, in input order).
    pub all_inputs_sha256: String,
}

/// The part of the inputs a shard set was prepared from (`prepare --part K/N`), and the
/// whole input list it was cut from, so `merge` can tell parts of one job apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartRecord {
    /// K: 0-based index of this part.
    pub index: u64,
    /// N: the number of parts.
    pub count: u64,
    /// Input files of all parts together.
    pub all_inputs: u64,
    /// SHA-256 of the whole input list (each path and size, in input order).
    pub all_inputs_sha256: String,
}

/// How far the `prepare` that wrote a manifest got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestState {
    /// Every input is consumed; the shard set can be read (`"complete": true`, no
    /// `resume`).
    Complete,
    /// Interrupted; `prepare` continues from this point (`"complete": false` and
    /// `resume`).
    Partial(ResumePoint),
}

impl ManifestState {
    /// Whether every input is consumed.
    pub fn is_complete(&self) -> bool {
        matches!(self, ManifestState::Complete)
    }

    /// Where `prepare` continues; `None` when complete.
    pub fn resume_point(&self) -> Option<ResumePoint> {
        match self {
            ManifestState::Complete => None,
            ManifestState::Partial(resume) => Some(*resume),
        }
    }
}

/// The tokenizer a shard set was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerRecord {
    /// The file as given (plain or `.zst`).
    pub file: String,
    /// SHA-256 of the tokenizer JSON (decompressed), after special tokens were added.
    pub sha256: String,
    /// Number of ids, added tokens included.
    pub vocab_size: usize,
    /// Ids of the special tokens.
    pub special_tokens: SpecialTokens,
    /// Special tokens that were missing from the file and were added by cocolm.
    #[serde(default)]
    pub added_special_tokens: Vec<String>,
}

/// Ids of the special tokens cocolm uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialTokens {
    /// `[PAD]`.
    pub pad: u32,
    /// `[CLS]`.
    pub cls: u32,
    /// `[SEP]`.
    pub sep: u32,
    /// `[MASK]`.
    pub mask: u32,
    /// `[UNK]`.
    pub unk: u32,
}

impl SpecialTokens {
    /// The names, in the canonical order `[PAD] [CLS] [SEP] [MASK] [UNK]`.
    pub const NAMES: [&'static str; 5] = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"];

    /// Ids in the order of [`SpecialTokens::NAMES`].
    pub fn ids(&self) -> [u32; 5] {
        [self.pad, self.cls, self.sep, self.mask, self.unk]
    }

    /// Whether `id` is one of the special tokens.
    pub fn contains(&self, id: u32) -> bool {
        self.ids().contains(&id)
    }
}

/// Options that determine the content of the shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareOptionsRecord {
    /// JSON field / Parquet column holding the text.
    pub text_field: String,
    /// Whether `.txt` files were split into documents at blank lines.
    pub split_blank_lines: bool,
    /// Documents longer than this many bytes were rejected.
    pub max_doc_bytes: u64,
    /// Examples per shard.
    pub rows_per_shard: u64,
    /// Examples per Arrow record batch inside a shard.
    pub rows_per_batch: u64,
    /// Which duplicate documents were dropped (absent in the JSON: none).
    #[serde(default, skip_serializing_if = "Dedup::is_none")]
    pub dedup: Dedup,
}

/// Which duplicate documents `prepare` drops (`--dedup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dedup {
    /// Keep every document.
    #[default]
    None,
    /// Drop a document whose text, in Unicode NFC with runs of whitespace collapsed to one
    /// space, equals an earlier document's (rejected as `duplicate`).
    Exact,
    /// Also drop a document similar to an earlier one: MinHash over word 5-grams with
    /// 16 LSH bands of 8 rows, Jaccard threshold about 0.7 (rejected as `duplicate`).
    Near,
}

impl Dedup {
    /// Whether nothing is dropped.
    pub fn is_none(&self) -> bool {
        *self == Dedup::None
    }
}

impl std::str::FromStr for Dedup {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Dedup::None),
            "exact" => Ok(Dedup::Exact),
            "near" => Ok(Dedup::Near),
            other => Err(format!(
                "unknown dedup mode {other:?} (none, exact or near)"
            )),
        }
    }
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRecord {
    /// File name, relative to the manifest.
    pub file: String,
    /// Examples.
    pub rows: u64,
    /// Real tokens (`[CLS]`/`[SEP]` included, no padding).
    pub tokens: u64,
    /// File size.
    pub bytes: u64,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Byte offset of every record batch message, for random access to the stream.
    pub batch_offsets: Vec<u64>,
    /// Rows of every record batch.
    pub batch_rows: Vec<u64>,
    /// Added to the shard's `document` column to give the ordinal in this set: the
    /// documents of the parts before it, for a shard set made by `merge` (absent: 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub document_offset: u64,
}

/// Accounting of one input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InputFileRecord {
    /// Path as given on the command line (or found under a given directory).
    pub path: String,
    /// Size on disk.
    pub bytes: u64,
    /// Documents read (accepted + rejected).
    pub documents_read: u64,
    /// Documents whose tokens are in the shards.
    pub documents_accepted: u64,
    /// Documents not in the shards.
    pub documents_rejected: u64,
    /// Tokens contributed (document tokens, without separators).
    pub tokens: u64,
    /// Rejections counted by reason (`invalid utf-8`, `malformed json`, …).
    #[serde(default)]
    pub rejections: BTreeMap<String, u64>,
    /// The first few rejections in detail (`line 17: malformed json: …`).
    #[serde(default)]
    pub rejection_examples: Vec<String>,
}

/// Totals of a shard set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Examples over all shards.
    pub examples: u64,
    /// Real tokens over all shards.
    pub tokens: u64,
    /// Documents read over all inputs.
    pub documents_read: u64,
    /// Documents accepted.
    pub documents_accepted: u64,
    /// Documents rejected.
    pub documents_rejected: u64,
}

/// Where an interrupted `prepare` continues: the first token not yet in a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumePoint {
    /// Index into [`Manifest::inputs`].
    pub input: u64,
    /// Document ordinal within that input (accepted and rejected both count).
    pub document: u64,
    /// Tokens of that document's stream (its tokens then `[SEP]`) already written.
    pub token_offset: u64,
    /// Global ordinal of that document over all inputs.
    pub global_document: u64,
    /// With `--dedup exact`: records of the side file of first-seen documents that are
    /// valid at this point (those of documents before this one); later ones are debris.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dedup_entries: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ResumePoint {
    /// The start of the first input: where a fresh job begins.
    pub const START: ResumePoint = ResumePoint {
        input: 0,
        document: 0,
        token_offset: 0,
        global_document: 0,
        dedup_entries: 0,
    };
}

/// The manifest as it is laid out in JSON: `complete` and `resume` as two fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestJson {
    format: String,
    format_version: u32,
    created_by: String,
    complete: bool,
    seq_len: usize,
    tokenizer: TokenizerRecord,
    options: PrepareOptionsRecord,
    shards: Vec<ShardRecord>,
    inputs: Vec<InputFileRecord>,
    totals: Totals,
    #[serde(default)]
    resume: Option<ResumePoint>,
    #[serde(default)]
    part: Option<PartRecord>,
    #[serde(default)]
    input_log: Option<InputLog>,
}

/// A field of a manifest that breaks a rule, before a path is known.
#[derive(Debug)]
struct InvalidField {
    field: String,
    message: String,
}

impl InvalidField {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    fn at(self, path: &Path) -> Error {
        Error::Invalid {
            path: path.to_path_buf(),
            field: self.field,
            message: self.message,
        }
    }
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.message)
    }
}

impl ManifestJson {
    /// The state from `complete` + `resume`, then the checks of [`Manifest::validate`].
    fn into_manifest(self) -> std::result::Result<Manifest, InvalidField> {
        let state = match (self.complete, self.resume) {
            (true, None) => ManifestState::Complete,
            (false, Some(resume)) => ManifestState::Partial(resume),
            (true, Some(_)) => {
                return Err(InvalidField::new(
                    "resume",
                    "present in a complete manifest (\"complete\": true has no resume point)",
                ));
            }
            (false, None) => {
                return Err(InvalidField::new(
                    "resume",
                    "missing from an incomplete manifest (\"complete\": false needs the point where prepare continues)",
                ));
            }
        };
        let manifest = Manifest {
            format: self.format,
            format_version: self.format_version,
            created_by: self.created_by,
            state,
            seq_len: self.seq_len,
            tokenizer: self.tokenizer,
            options: self.options,
            shards: self.shards,
            inputs: self.inputs,
            totals: self.totals,
            part: self.part,
            input_log: self.input_log,
        };
        manifest.check()?;
        Ok(manifest)
    }
}

impl Serialize for Manifest {
    /// The layout of `schemas/manifest.schema.json`, fields in its order; `resume` only
    /// when partial, `part` only for a part.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let resume = self.state.resume_point();
        let fields = 10
            + usize::from(resume.is_some())
            + usize::from(self.part.is_some())
            + usize::from(self.input_log.is_some());
        let mut m = serializer.serialize_struct("Manifest", fields)?;
        m.serialize_field("format", &self.format)?;
        m.serialize_field("format_version", &self.format_version)?;
        m.serialize_field("created_by", &self.created_by)?;
        m.serialize_field("complete", &self.state.is_complete())?;
        m.serialize_field("seq_len", &self.seq_len)?;
        m.serialize_field("tokenizer", &self.tokenizer)?;
        m.serialize_field("options", &self.options)?;
        m.serialize_field("shards", &self.shards)?;
        m.serialize_field("inputs", &self.inputs)?;
        m.serialize_field("totals", &self.totals)?;
        match &resume {
            Some(resume) => m.serialize_field("resume", resume)?,
            None => m.skip_field("resume")?,
        }
        match &self.part {
            Some(part) => m.serialize_field("part", part)?,
            None => m.skip_field("part")?,
        }
        match &self.input_log {
            Some(log) => m.serialize_field("input_log", log)?,
            None => m.skip_field("input_log")?,
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Manifest {
    /// Refuses an inconsistent `complete`/`resume` pair and what [`Manifest::validate`]
    /// refuses, naming the field.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        ManifestJson::deserialize(deserializer)?
            .into_manifest()
            .map_err(serde::de::Error::custom)
    }
}

impl Manifest {
    /// Read `manifest.json` from a shard directory.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        Self::read(&dir.join(MANIFEST_FILE))
    }

    /// Read and check a manifest file: its format and version, then its consistency
    /// (see [`Manifest::validate`]).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut m: ManifestJson = serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if m.format != FORMAT_NAME {
            return Err(Error::Invalid {
                path: path.to_path_buf(),
                field: "format".into(),
                message: format!("expected {FORMAT_NAME:?}, found {:?}", m.format),
            });
        }
        if m.format_version != FORMAT_VERSION {
            return Err(Error::Invalid {
                path: path.to_path_buf(),
                field: "format_version".into(),
                message: format!(
                    "this cocolm reads version {FORMAT_VERSION}, the manifest is version {}",
                    m.format_version
                ),
            });
        }
        if let Some(log) = &m.input_log {
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut inputs = read_input_log(&dir.join(INPUT_LOG_FILE), log.committed_bytes)?;
            let expected = m.resume.map_or(0, |r| r.input) as usize;
            if inputs.len() != expected || m.inputs.len() != 1 {
                return Err(Error::Invalid {
                    path: path.to_path_buf(),
                    field: "input_log".into(),
                    message: format!(
                        "{INPUT_LOG_FILE} holds {} finished inputs and the manifest {} more; the resume point needs {expected} and 1",
                        inputs.len(),
                        m.inputs.len()
                    ),
                });
            }
            inputs.append(&mut m.inputs);
            m.inputs = inputs;
        }
        m.into_manifest().map_err(|e| e.at(path))
    }

    /// Check what code relies on: the schema's minimums (`seq_len` at least 3, …), a
    /// partial manifest resumes inside its inputs, and every shard lists one offset per
    /// record batch and as many rows as its batches hold. The error names `path` and the
    /// field (`resume.input`, `shards[3].batch_offsets`).
    pub fn validate(&self, path: &Path) -> Result<()> {
        self.check().map_err(|e| e.at(path))
    }

    fn check(&self) -> std::result::Result<(), InvalidField> {
        // The schema's minimums: a packer needs room for [CLS], a token and [SEP]; shards
        // and record batches hold at least one row.
        let minimums = [
            ("seq_len", self.seq_len as u64, 3),
            ("tokenizer.vocab_size", self.tokenizer.vocab_size as u64, 1),
            ("options.rows_per_shard", self.options.rows_per_shard, 1),
            ("options.rows_per_batch", self.options.rows_per_batch, 1),
        ];
        for (field, value, minimum) in minimums {
            if value < minimum {
                return Err(InvalidField::new(
                    field,
                    format!("{value} is below the minimum {minimum}"),
                ));
            }
        }
        if let Some(part) = &self.part
            && part.index >= part.count
        {
            return Err(InvalidField::new(
                "part.index",
                format!(
                    "{} is not below the number of parts {}",
                    part.index, part.count
                ),
            ));
        }
        if let ManifestState::Partial(resume) = &self.state
            && resume.input >= self.inputs.len() as u64
        {
            return Err(InvalidField::new(
                "resume.input",
                format!(
                    "{} is not the index of one of the {} inputs",
                    resume.input,
                    self.inputs.len()
                ),
            ));
        }
        for (i, shard) in self.shards.iter().enumerate() {
            if shard.batch_offsets.len() != shard.batch_rows.len() {
                return Err(InvalidField::new(
                    format!("shards[{i}].batch_offsets"),
                    format!(
                        "{} offsets for the {} record batches of batch_rows",
                        shard.batch_offsets.len(),
                        shard.batch_rows.len()
                    ),
                ));
            }
            let sum = shard
                .batch_rows
                .iter()
                .try_fold(0u64, |a, &r| a.checked_add(r));
            if sum != Some(shard.rows) {
                return Err(InvalidField::new(
                    format!("shards[{i}].rows"),
                    format!(
                        "{}, but its batch_rows add up to {}",
                        shard.rows,
                        sum.map_or("more than 2^64".into(), |s| s.to_string())
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Write atomically: to `manifest.json.tmp`, fsync, then rename over `manifest.json`.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        Self::write_json_dir(dir, &self.to_json())
    }

    /// The manifest as [`Manifest::write_dir`] writes it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serialises")
    }

    /// Write a manifest serialised by [`Manifest::to_json`] atomically as
    /// `dir/manifest.json`.
    pub fn write_json_dir(dir: &Path, json: &[u8]) -> Result<()> {
        write_atomic(
            &dir.join(format!("{MANIFEST_FILE}.tmp")),
            &dir.join(MANIFEST_FILE),
            json,
        )
    }

    /// Total examples over all shards.
    pub fn num_examples(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }
}

/// The records in the first `bytes` bytes of an input log ([`InputLog`]).
fn read_input_log(path: &Path, bytes: u64) -> Result<Vec<InputFileRecord>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut text = Vec::new();
    file.take(bytes)
        .read_to_end(&mut text)
        .map_err(|e| Error::io(path, e))?;
    if text.len() as u64 != bytes {
        return Err(Error::Invalid {
            path: path.to_path_buf(),
            field: "committed_bytes".into(),
            message: format!("{} bytes, the manifest counts {bytes}", text.len()),
        });
    }
    text.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_slice(line).map_err(|e| Error::Parse {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// Write `bytes` to `tmp`, fsync it, rename it to `path` and fsync the directory. On a
/// write error (a full disk) `tmp` is removed and `path` keeps its previous content.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(tmp);
        return Err(Error::io(tmp, e));
    }
    drop(f);
    std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))?;
    sync_parent(path)
}

/// fsync the directory holding `path`, so a rename into it is durable.
pub fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let d = std::fs::File::open(dir).map_err(|e| Error::io(dir, e))?;
        d.sync_all().map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partial manifest as `prepare` writes it, in the JSON layout of format version 1
    /// (unchanged since before [`ManifestState`]).
    const PARTIAL: &str = r#"{
  "format": "cocolm-shards",
  "format_version": 1,
  "created_by": "cocolm 0.1.0",
  "complete": false,
  "seq_len": 16,
  "tokenizer": {
    "file": "toy",
    "sha256": "toy",
    "vocab_size": 205,
    "special_tokens": {"pad": 0, "cls": 1, "sep": 2, "mask": 3, "unk": 4},
    "added_special_tokens": []
  },
  "options": {
    "text_field": "text",
    "split_blank_lines": false,
    "max_doc_bytes": 16777216,
    "rows_per_shard": 40,
    "rows_per_batch": 8
  },
  "shards": [
    {
      "file": "shard-00000.arrow",
      "rows": 40,
      "tokens": 600,
      "bytes": 9000,
      "sha256": "ab",
      "batch_offsets": [200, 1900, 3600, 5300, 7000],
      "batch_rows": [8, 8, 8, 8, 8]
    }
  ],
  "inputs": [
    {
      "path": "in/a.txt",
      "bytes": 500,
      "documents_read": 12,
      "documents_accepted": 12,
      "documents_rejected": 0,
      "tokens": 580,
      "rejections": {},
      "rejection_examples": []
    },
    {
      "path": "in/b.txt",
      "bytes": 300,
      "documents_read": 0,
      "documents_accepted": 0,
      "documents_rejected": 0,
      "tokens": 0,
      "rejections": {},
      "rejection_examples": []
    }
  ],
  "totals": {
    "examples": 40,
    "tokens": 600,
    "documents_read": 12,
    "documents_accepted": 12,
    "documents_rejected": 0
  },
  "resume": {"input": 1, "document": 0, "token_offset": 7, "global_document": 12}
}"#;

    fn json(edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(PARTIAL).unwrap();
        edit(&mut v);
        v
    }

    fn partial() -> Manifest {
        serde_json::from_str(PARTIAL).unwrap()
    }

    /// Write `value` as a manifest file, read it back, and return the error's field and
    /// message (the path must be the file's).
    fn read_error(value: &serde_json::Value) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        std::fs::write(&path, serde_json::to_vec(value).unwrap()).unwrap();
        match Manifest::read(&path).unwrap_err() {
            Error::Invalid {
                path: p,
                field,
                message,
            } => {
                assert_eq!(p, path);
                (field, message)
            }
            other => panic!("not an Invalid error: {other}"),
        }
    }

    #[test]
    fn files_of_the_existing_layout_read() {
        let m = partial();
        assert_eq!(
            m.state,
            ManifestState::Partial(ResumePoint {
                input: 1,
                document: 0,
                token_offset: 7,
                global_document: 12,
                dedup_entries: 0,
            })
        );
        let complete = json(|v| {
            v["complete"] = true.into();
            v.as_object_mut().unwrap().remove("resume");
        });
        let m: Manifest = serde_json::from_value(complete).unwrap();
        assert_eq!(m.state, ManifestState::Complete);
    }

    #[test]
    fn serde_round_trip_keeps_the_json_layout() {
        let partial_json: serde_json::Value = serde_json::from_str(PARTIAL).unwrap();
        let mut m = partial();
        assert_eq!(serde_json::to_value(&m).unwrap(), partial_json);
        let back: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);

        m.state = ManifestState::Complete;
        let value = serde_json::to_value(&m).unwrap();
        assert_eq!(value["complete"], true);
        assert!(value.get("resume").is_none(), "{value}");
        let back: Manifest = serde_json::from_value(value).unwrap();
        assert_eq!(back, m);

        // Field order is the schema's, as before the state enum.
        let text = serde_json::to_string(&partial()).unwrap();
        let keys: Vec<usize> = [
            "\"format\"",
            "\"created_by\"",
            "\"complete\"",
            "\"seq_len\"",
            "\"totals\"",
            "\"resume\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn written_manifest_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let m = partial();
        m.write_dir(dir.path()).unwrap();
        assert_eq!(Manifest::read_dir(dir.path()).unwrap(), m);
    }

    #[test]
    fn complete_with_a_resume_point_is_refused() {
        let (field, message) = read_error(&json(|v| v["complete"] = true.into()));
        assert_eq!(field, "resume");
        assert!(message.contains("complete"), "{message}");
    }

    #[test]
    fn partial_without_a_resume_point_is_refused() {
        let (field, message) = read_error(&json(|v| {
            v.as_object_mut().unwrap().remove("resume");
        }));
        assert_eq!(field, "resume");
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn resume_point_beyond_the_inputs_is_refused() {
        let (field, message) = read_error(&json(|v| v["resume"]["input"] = 2.into()));
        assert_eq!(field, "resume.input");
        assert!(
            message.contains("2 is not the index of one of the 2 inputs"),
            "{message}"
        );
    }

    #[test]
    fn inconsistent_shard_records_are_refused() {
        let (field, message) = read_error(&json(|v| {
            v["shards"][0]["batch_offsets"] = serde_json::json!([200, 1900]);
        }));
        assert_eq!(field, "shards[0].batch_offsets");
        assert!(
            message.contains("2 offsets for the 5 record batches"),
            "{message}"
        );

        let (field, message) = read_error(&json(|v| v["shards"][0]["rows"] = 41.into()));
        assert_eq!(field, "shards[0].rows");
        assert!(message.contains("add up to 40"), "{message}");
    }

    #[test]
    fn values_below_the_schema_minimums_are_refused() {
        let (field, message) = read_error(&json(|v| v["seq_len"] = 2.into()));
        assert_eq!(field, "seq_len");
        assert!(message.contains("below the minimum 3"), "{message}");
        let (field, _) = read_error(&json(|v| v["options"]["rows_per_batch"] = 0.into()));
        assert_eq!(field, "options.rows_per_batch");
    }

    #[test]
    fn plain_deserialisation_names_the_field_too() {
        let err = serde_json::from_value::<Manifest>(json(|v| v["resume"]["input"] = 9.into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid resume.input"), "{err}");
    }

    #[test]
    fn validate_checks_manifests_built_in_code() {
        let mut m = partial();
        m.validate(Path::new("m.json")).unwrap();
        m.state = ManifestState::Partial(ResumePoint {
            input: 5,
            ..ResumePoint::START
        });
        let err = m.validate(Path::new("m.json")).unwrap_err().to_string();
        assert!(err.starts_with("m.json: invalid resume.input"), "{err}");
    }
}
