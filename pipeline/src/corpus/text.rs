//! Plain-text inputs (`.txt`, `.txt.zst`): one document per file, or one per block of
//! lines separated by blank lines (`--split-blank-lines`).

use super::source::{ReadFailure, ReadStats, Source};
use super::{DocumentReader, InputFile, Location, ReadOptions, Record, Reject};
use crate::Result;
use std::sync::Arc;

/// Reader of a text file.
pub struct TextReader {
    source: Source,
    split_blank_lines: bool,
    max_doc_bytes: u64,
    line: u64,
    done: bool,
    line_buf: Vec<u8>,
}

impl TextReader {
    /// Open `input` (zstd-compressed when `zstd`).
    pub fn open(
        input: &InputFile,
        zstd: bool,
        options: &ReadOptions,
        stats: Arc<ReadStats>,
    ) -> Result<Self> {
        Ok(TextReader {
            source: Source::open(input, zstd, stats)?,
            split_blank_lines: options.split_blank_lines,
            max_doc_bytes: options.max_doc_bytes,
            line: 0,
            done: false,
            line_buf: Vec::new(),
        })
    }

    fn whole_file(&mut self) -> Result<Option<Record>> {
        self.done = true;
        let mut bytes = Vec::new();
        let at = Some(Location::Line(1));
        match self
            .source
            .read_to_end_capped(&mut bytes, self.max_doc_bytes)
        {
            Ok(total) if total > self.max_doc_bytes => {
                Ok(Some(too_large(at, total, self.max_doc_bytes)))
            }
            Ok(_) => Ok(Some(Record::from_bytes(at, bytes))),
            Err(e) => match self.source.failure(e) {
                ReadFailure::Corrupt(detail) => Ok(Some(Record::rejected(
                    at,
                    Reject::CorruptCompression,
                    detail,
                ))),
                ReadFailure::Fatal(e) => Err(e),
            },
        }
    }

    fn next_block(&mut self) -> Result<Option<Record>> {
        let mut block: Vec<u8> = Vec::new();
        let mut block_len = 0u64;
        let mut start = None;
        loop {
            let line = match self
                .source
                .read_line_capped(&mut self.line_buf, self.max_doc_bytes)
            {
                Ok(line) => line,
                Err(e) => {
                    self.done = true;
                    return match self.source.failure(e) {
                        ReadFailure::Corrupt(detail) => Ok(Some(Record::rejected(
                            Some(Location::Line(start.unwrap_or(self.line + 1))),
                            Reject::CorruptCompression,
                            format!(
                                "{detail} (from line {} to the end)",
                                start.unwrap_or(self.line + 1)
                            ),
                        ))),
                        ReadFailure::Fatal(e) => Err(e),
                    };
                }
            };
            let Some(len) = line else {
                self.done = true;
                break;
            };
            self.line += 1;
            let blank =
                len <= self.max_doc_bytes && self.line_buf.iter().all(u8::is_ascii_whitespace);
            if blank {
                if start.is_some() {
                    break;
                }
                continue;
            }
            if start.is_none() {
                start = Some(self.line);
            } else {
                block_len += 1;
                if block_len <= self.max_doc_bytes {
                    block.push(b'\n');
                }
            }
            block_len += len;
            let room = self.max_doc_bytes.saturating_sub(block.len() as u64) as usize;
            block.extend_from_slice(&self.line_buf[..room.min(self.line_buf.len())]);
        }
        let Some(start) = start else {
            return Ok(None);
        };
        let at = Some(Location::Line(start));
        if block_len > self.max_doc_bytes {
            return Ok(Some(too_large(at, block_len, self.max_doc_bytes)));
        }
        Ok(Some(Record::from_bytes(at, block)))
    }
}

fn too_large(at: Option<Location>, len: u64, max: u64) -> Record {
    Record::rejected(
        at,
        Reject::TooLarge,
        format!("{len} bytes exceed --max-doc-bytes {max}"),
    )
}

impl DocumentReader for TextReader {
    fn next_record(&mut self) -> Result<Option<Record>> {
        if self.done {
            return Ok(None);
        }
        if self.split_blank_lines {
            self.next_block()
        } else {
            self.whole_file()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Content;

    fn read_all(bytes: &[u8], split: bool, max: u64) -> Vec<Record> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txt");
        std::fs::write(&path, bytes).unwrap();
        let options = ReadOptions {
            split_blank_lines: split,
            max_doc_bytes: max,
            ..ReadOptions::default()
        };
        let mut r = TextReader::open(
            &InputFile::local(path, bytes.len() as u64),
            false,
            &options,
            Arc::default(),
        )
        .unwrap();
        std::iter::from_fn(|| r.next_record().unwrap()).collect()
    }

    fn texts(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| match &r.content {
                Content::Text(t) => t.clone(),
                Content::Rejected { reason, .. } => format!("<{reason}>"),
            })
            .collect()
    }

    #[test]
    fn whole_file_is_one_document() {
        assert_eq!(texts(&read_all(b"a\n\nb\n", false, 100)), ["a\n\nb\n"]);
    }

    #[test]
    fn blank_lines_split_blocks_with_line_numbers() {
        let recs = read_all(b"\n a\r\nb\n \t\n\nc\n", true, 100);
        assert_eq!(texts(&recs), [" a\nb", "c"]);
        assert_eq!(recs[0].location, Some(Location::Line(2)));
        assert_eq!(recs[1].location, Some(Location::Line(6)));
    }

    #[test]
    fn bad_content_is_rejected_with_reason() {
        assert_eq!(texts(&read_all(b"", false, 100)), ["<empty document>"]);
        assert_eq!(
            texts(&read_all(b"ab\xffcd", false, 100)),
            ["<invalid utf-8>"]
        );
        assert_eq!(
            texts(&read_all(b"PNG\0\x01", false, 100)),
            ["<binary content>"]
        );
        assert_eq!(
            texts(&read_all(&[b'z'; 500], false, 100)),
            ["<document too large>"]
        );
        assert_eq!(
            texts(&read_all(b"ok\n\nxxxxxxxxxxxx\nyy\n\nfine", true, 10)),
            ["ok", "<document too large>", "fine"]
        );
    }
}
