//! Corpus readers: one document at a time, in file order, in bounded memory.
//!
//! Every input format implements [`DocumentReader`]. A reader never drops a document
//! silently: each call yields either the text of the next document or a rejection with
//! its reason and location ([`Record`]). Problems with the *content* (invalid UTF-8, a
//! malformed JSON line, a truncated `.zst`, a binary file, an oversized document)
//! become rejections; failing to read the *file system* (missing file, permission,
//! I/O error) is an [`Error`] that stops the job.
//!
//! Formats, chosen by extension ([`Format::of`]):
//! `.txt` / `.txt.zst` ([`text`]), `.jsonl` / `.jsonl.zst` ([`jsonl`]), `.parquet`
//! ([`parquet`]).

pub mod input;
mod json_text;
pub mod jsonl;
pub mod parquet;
pub mod source;
pub mod store;
pub mod text;

use crate::{Error, Result};
use input::UNKNOWN_FORMAT;
pub use input::{InputFile, discover, prefetch_after};
pub use source::ReadStats;
use std::path::Path;
use std::sync::Arc;
pub use store::{Retry, Stores};

/// Why a document is not in the output. The string forms are the keys of the
/// manifest's per-input `rejections` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// A JSON line that does not parse or is not an object.
    MalformedJson,
    /// A JSON object without the text field.
    MissingField,
    /// The text field is present but is not a string (or is null).
    NotAString,
    /// A NUL byte: a binary file, not text.
    Binary,
    /// Nothing but whitespace.
    Empty,
    /// Longer than `--max-doc-bytes`.
    TooLarge,
    /// A compressed stream that ends early or does not decode; the rest of the file
    /// counts as one rejected document.
    CorruptCompression,
    /// A file that cannot be read as its format (e.g. not Parquet, no such column).
    UnreadableFile,
    /// The same normalised text as an earlier document (`prepare --dedup exact`).
    Duplicate,
}

impl Reject {
    /// The stable key used in manifests and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::InvalidUtf8 => "invalid utf-8",
            Reject::MalformedJson => "malformed json",
            Reject::MissingField => "missing text field",
            Reject::NotAString => "text field not a string",
            Reject::Binary => "binary content",
            Reject::Empty => "empty document",
            Reject::TooLarge => "document too large",
            Reject::CorruptCompression => "truncated or corrupt compressed data",
            Reject::UnreadableFile => "unreadable file",
            Reject::Duplicate => "duplicate",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a reader yields for one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The document's text.
    Text(String),
    /// The document was not accepted.
    Rejected {
        /// Why.
        reason: Reject,
        /// A human-readable detail (byte offset, parser message, sizes).
        detail: String,
    },
}

/// One document of an input file, accepted or rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where it starts: a 1-based line for line-oriented formats, a row for Parquet.
    pub location: Option<Location>,
    /// Its text, or why it was rejected.
    pub content: Content,
}

/// Where a record starts in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line number.
    Line(u64),
    /// 0-based row of a Parquet file.
    Row(u64),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Line(l) => write!(f, "line {l}"),
            Location::Row(r) => write!(f, "row {r}"),
        }
    }
}

impl Record {
    fn text(location: Option<Location>, text: String) -> Self {
        Record {
            location,
            content: Content::Text(text),
        }
    }

    fn rejected(location: Option<Location>, reason: Reject, detail: impl Into<String>) -> Self {
        Record {
            location,
            content: Content::Rejected {
                reason,
                detail: detail.into(),
            },
        }
    }

    /// Check decoded bytes and turn them into a text record or a rejection.
    fn from_bytes(location: Option<Location>, bytes: Vec<u8>) -> Self {
        if let Some(at) = memchr::memchr(0, &bytes) {
            return Record::rejected(location, Reject::Binary, format!("NUL byte at offset {at}"));
        }
        match String::from_utf8(bytes) {
            Ok(text) => Record::from_text(location, text),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                Record::rejected(
                    location,
                    Reject::InvalidUtf8,
                    format!("invalid utf-8 at byte {at} of the document"),
                )
            }
        }
    }

    /// A text record, or an [`Reject::Empty`] rejection for whitespace-only text.
    fn from_text(location: Option<Location>, text: String) -> Self {
        if text.trim().is_empty() {
            Record::rejected(location, Reject::Empty, "no text")
        } else {
            Record::text(location, text)
        }
    }
}

/// A reader of one input file.
pub trait DocumentReader: Send {
    /// The next document, `Ok(None)` at the end of the file.
    fn next_record(&mut self) -> Result<Option<Record>>;
}

/// Input formats, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text; `zstd` when the name ends in `.zst`.
    Text {
        /// Compressed with zstd.
        zstd: bool,
    },
    /// JSON lines; `zstd` when the name ends in `.zst`.
    JsonLines {
        /// Compressed with zstd.
        zstd: bool,
    },
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// The format of a file, from its name; `None` for names cocolm does not read.
    pub fn of(path: &Path) -> Option<Format> {
        Format::of_name(path.file_name()?.to_str()?)
    }

    /// The format of a file or object, from the end of its name.
    pub fn of_name(name: &str) -> Option<Format> {
        let name = name.to_ascii_lowercase();
        let (stem, zstd) = match name.strip_suffix(".zst") {
            Some(stem) => (stem, true),
            None => (name.as_str(), false),
        };
        if stem.ends_with(".txt") {
            Some(Format::Text { zstd })
        } else if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
            Some(Format::JsonLines { zstd })
        } else if stem.ends_with(".parquet") && !zstd {
            Some(Format::Parquet)
        } else {
            None
        }
    }
}

/// How documents are read from the inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// JSON field / Parquet column holding the text.
    pub text_field: String,
    /// Split `.txt` files into documents at blank lines (otherwise one per file).
    pub split_blank_lines: bool,
    /// Documents longer than this are rejected ([`Reject::TooLarge`]) without being
    /// held in memory whole.
    pub max_doc_bytes: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            text_field: "text".into(),
            split_blank_lines: false,
            max_doc_bytes: 16 << 20,
        }
    }
}

/// Open a reader for `input`. `stats` counts the bytes read and the time spent.
pub fn open(
    input: &InputFile,
    options: &ReadOptions,
    stats: Arc<ReadStats>,
) -> Result<Box<dyn DocumentReader>> {
    let format = Format::of_name(&input.name)
        .ok_or_else(|| input.read_error(std::io::Error::other(UNKNOWN_FORMAT)))?;
    Ok(match format {
        Format::Text { zstd } => Box::new(text::TextReader::open(input, zstd, options, stats)?),
        Format::JsonLines { zstd } => {
            Box::new(jsonl::JsonLinesReader::open(input, zstd, options, stats)?)
        }
        Format::Parquet => Box::new(parquet::ParquetReader::open(input, options, stats)?),
    })
}

/// The accepted texts of several files in order, as a plain iterator (for tokenizer
/// training and benchmarks). Rejected documents are counted; a file-system error ends
/// the iteration and is kept for [`Documents::finish`].
pub struct Documents {
    files: Vec<InputFile>,
    next: usize,
    options: ReadOptions,
    stats: Arc<ReadStats>,
    current: Option<Box<dyn DocumentReader>>,
    accepted: u64,
    rejected: u64,
    error: Option<Error>,
}

impl Documents {
    /// Iterate over the documents of `files`.
    pub fn new(files: Vec<InputFile>, options: ReadOptions, stats: Arc<ReadStats>) -> Self {
        Documents {
            files,
            next: 0,
            options,
            stats,
            current: None,
            accepted: 0,
            rejected: 0,
            error: None,
        }
    }

    /// Documents yielded and rejected so far, or the error that ended the iteration.
    pub fn finish(self) -> Result<(u64, u64)> {
        match self.error {
            Some(e) => Err(e),
            None => Ok((self.accepted, self.rejected)),
        }
    }

    fn step(&mut self) -> Result<Option<String>> {
        loop {
            let Some(reader) = self.current.as_mut() else {
                let Some(input) = self.files.get(self.next) else {
                    return Ok(None);
                };
                prefetch_after(&self.files, self.next);
                self.current = Some(open(input, &self.options, self.stats.clone())?);
                self.next += 1;
                continue;
            };
            match reader.next_record()? {
                None => self.current = None,
                Some(Record {
                    content: Content::Text(text),
                    ..
                }) => {
                    self.accepted += 1;
                    return Ok(Some(text));
                }
                Some(_) => self.rejected += 1,
            }
        }
    }
}

impl Iterator for Documents {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.error.is_some() {
            return None;
        }
        self.step().unwrap_or_else(|e| {
            self.error = Some(e);
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        assert_eq!(
            Format::of(Path::new("a/b.txt")),
            Some(Format::Text { zstd: false })
        );
        assert_eq!(
            Format::of(Path::new("b.TXT.zst")),
            Some(Format::Text { zstd: true })
        );
        assert_eq!(
            Format::of(Path::new("c.jsonl.zst")),
            Some(Format::JsonLines { zstd: true })
        );
        assert_eq!(Format::of(Path::new("d.parquet")), Some(Format::Parquet));
        assert_eq!(Format::of(Path::new("e.csv")), None);
        assert_eq!(Format::of(Path::new("f.parquet.zst")), None);
    }
}
