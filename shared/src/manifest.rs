//! `manifest.json`: the description of a shard directory.
//!
//! The JSON Schema in `schemas/manifest.schema.json` is the source of truth; a test in
//! `cocolm-pipeline` checks this code against it.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Value of [`Manifest::format`].
pub const FORMAT_NAME: &str = "cocolm-shards";
/// Current [`Manifest::format_version`]. Readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;
/// File name of the manifest inside a shard directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest of a shard directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for this release.
    pub format_version: u32,
    /// Program and version that wrote it.
    pub created_by: String,
    /// `true` once every input is consumed; while `false`, [`Manifest::resume`] says
    /// where an interrupted `prepare` continues.
    pub complete: bool,
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
    /// Where an interrupted run continues; absent when `complete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ResumePoint>,
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
}

impl Manifest {
    /// Read `manifest.json` from a shard directory.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        Self::read(&dir.join(MANIFEST_FILE))
    }

    /// Read and check a manifest file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
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
        Ok(m)
    }

    /// Write atomically: to `manifest.json.tmp`, fsync, then rename over `manifest.json`.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).expect("manifest serialises");
        write_atomic(&tmp, &path, &text)
    }

    /// Total examples over all shards.
    pub fn num_examples(&self) -> u64 {
        self.shards.iter().map(|s| s.rows).sum()
    }
}

/// Write `bytes` to `tmp`, fsync it, rename it to `path` and fsync the directory.
pub fn write_atomic(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(tmp, e))?;
    f.sync_all().map_err(|e| Error::io(tmp, e))?;
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
