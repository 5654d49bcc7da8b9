//! JSON-lines inputs (`.jsonl`, `.jsonl.zst`): one JSON object per line, the text in a
//! named string field. Blank lines are not documents; every other line is one.
//!
//! Only the text field is materialised: other fields are skipped by the parser without
//! allocation. A line whose first member is the text field takes a faster path
//! ([`json_text`](super::json_text)); every other line, and every line that path does not
//! take, goes through serde_json.

use super::source::{ReadFailure, ReadStats, Source};
use super::{DocumentReader, InputFile, Location, ReadOptions, Record, Reject};
use crate::Result;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::fmt;
use std::sync::Arc;

/// Reader of a JSON-lines file.
pub struct JsonLinesReader {
    source: Source,
    field: String,
    max_doc_bytes: u64,
    line: u64,
    done: bool,
    buf: Vec<u8>,
}

impl JsonLinesReader {
    /// Open `input` (zstd-compressed when `zstd`).
    pub fn open(
        input: &InputFile,
        zstd: bool,
        options: &ReadOptions,
        stats: Arc<ReadStats>,
    ) -> Result<Self> {
        Ok(JsonLinesReader {
            source: Source::open(input, zstd, stats)?,
            field: options.text_field.clone(),
            max_doc_bytes: options.max_doc_bytes,
            line: 0,
            done: false,
            buf: Vec::new(),
        })
    }

    fn parse_line(&self, at: Option<Location>) -> Record {
        if let Some(text) = super::json_text::text_field(&self.buf, &self.field) {
            return Record::from_text(at, text);
        }
        match extract(&self.buf, &self.field) {
            // The parser checks UTF-8 inside strings; only a failed line pays for telling
            // invalid UTF-8 apart from malformed JSON.
            Err(e) => match std::str::from_utf8(&self.buf) {
                Err(bad) => Record::rejected(
                    at,
                    Reject::InvalidUtf8,
                    format!("invalid utf-8 at byte {} of the line", bad.valid_up_to()),
                ),
                Ok(_) => Record::rejected(at, Reject::MalformedJson, e.to_string()),
            },
            Ok(Extracted::Missing) => Record::rejected(
                at,
                Reject::MissingField,
                format!("no field {:?}", self.field),
            ),
            Ok(Extracted::NotString(kind)) => Record::rejected(
                at,
                Reject::NotAString,
                format!("field {:?} is {kind}", self.field),
            ),
            Ok(Extracted::Text(text)) => Record::from_text(at, text),
        }
    }
}

impl DocumentReader for JsonLinesReader {
    fn next_record(&mut self) -> Result<Option<Record>> {
        while !self.done {
            let len = match self
                .source
                .read_line_capped(&mut self.buf, self.max_doc_bytes)
            {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    self.done = true;
                    return match self.source.failure(e) {
                        ReadFailure::Corrupt(detail) => Ok(Some(Record::rejected(
                            Some(Location::Line(self.line + 1)),
                            Reject::CorruptCompression,
                            format!("{detail} (from line {} to the end)", self.line + 1),
                        ))),
                        ReadFailure::Fatal(e) => Err(e),
                    };
                }
            };
            self.line += 1;
            let at = Some(Location::Line(self.line));
            if len > self.max_doc_bytes {
                return Ok(Some(Record::rejected(
                    at,
                    Reject::TooLarge,
                    format!("{len} bytes exceed --max-doc-bytes {}", self.max_doc_bytes),
                )));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(self.parse_line(at)));
        }
        self.done = true;
        Ok(None)
    }
}

/// The text field of `line`, a JSON object, by serde_json.
fn extract(line: &[u8], field: &str) -> serde_json::Result<Extracted> {
    let mut de = serde_json::Deserializer::from_slice(line);
    FieldSeed { field }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
}

/// The text field of one JSON object.
#[derive(Debug, PartialEq)]
enum Extracted {
    Missing,
    NotString(&'static str),
    Text(String),
}

struct FieldSeed<'f> {
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Extracted;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Extracted, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Extracted;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Extracted, A::Error> {
        let mut found = Extracted::Missing;
        while let Some(is_field) = map.next_key_seed(KeyIs(self.field))? {
            if is_field && matches!(found, Extracted::Missing) {
                found = match map.next_value::<serde_json::Value>()? {
                    serde_json::Value::String(s) => Extracted::Text(s),
                    serde_json::Value::Null => Extracted::NotString("null"),
                    serde_json::Value::Bool(_) => Extracted::NotString("a boolean"),
                    serde_json::Value::Number(_) => Extracted::NotString("a number"),
                    serde_json::Value::Array(_) => Extracted::NotString("an array"),
                    serde_json::Value::Object(_) => Extracted::NotString("an object"),
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Compares a map key with the wanted field name without allocating.
struct KeyIs<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Content;
    use crate::corpus::json_text::text_field;
    use proptest::prelude::*;

    /// Strings of characters JSON escapes or must escape, and ones it need not.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('\n'),
                Just('\u{1}'),
                Just('é'),
                Just('😀'),
                Just('\u{2028}'),
                proptest::char::range(' ', '~'),
            ],
            0..40,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    /// A JSON string: serde_json's spelling, or every UTF-16 unit as `\uXXXX`.
    fn spell(text: &str, as_units: bool) -> String {
        if !as_units {
            return serde_json::to_string(text).unwrap();
        }
        let units: String = text.encode_utf16().map(|u| format!("\\u{u:04x}")).collect();
        format!("\"{units}\"")
    }

    proptest! {
        /// The fast path answers only what serde_json answers, and takes every valid line
        /// of its shape; damaged lines (cut anywhere, a byte replaced) included.
        #[test]
        fn the_fast_path_agrees_with_serde_json(
            text in text(),
            as_units in any::<bool>(),
            ws in prop_oneof![Just(""), Just(" "), Just("\t\r\n ")],
            (tail, valid) in prop_oneof![
                Just(("}", true)),
                Just(("} \n", true)),
                Just((", \"meta\": {\"a\": [1, \"}\"]}}", true)),
                Just((", \"text\": \"again\", \"n\": -1.5e-3}", true)),
                Just((", }", false)),
                Just((", \"a\": }", false)),
                Just(("", false)),
                Just(("} x", false)),
            ],
            damage in proptest::option::of((any::<prop::sample::Index>(), any::<u8>(), any::<bool>())),
        ) {
            let line = format!("{ws}{{{ws}\"text\"{ws}:{ws}{}{ws}{tail}", spell(&text, as_units));
            let mut bytes = line.into_bytes();
            if let Some((at, byte, cut)) = damage {
                let at = at.index(bytes.len());
                if cut { bytes.truncate(at) } else { bytes[at] = byte }
            }
            let serde = extract(&bytes, "text").ok();
            match text_field(&bytes, "text") {
                Some(fast) => prop_assert_eq!(serde, Some(Extracted::Text(fast))),
                None => prop_assert!(
                    damage.is_some() || !valid,
                    "missed a valid line: {:?}", String::from_utf8_lossy(&bytes)
                ),
            }
            if damage.is_none() {
                prop_assert_eq!(extract(&bytes, "text").is_ok(), valid);
            }
        }
    }

    fn read_all(bytes: &[u8], zstd: bool) -> Vec<(Option<Location>, String)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, bytes).unwrap();
        let options = ReadOptions {
            max_doc_bytes: 64,
            ..ReadOptions::default()
        };
        let mut r = JsonLinesReader::open(
            &InputFile::local(path, bytes.len() as u64),
            zstd,
            &options,
            Arc::default(),
        )
        .unwrap();
        std::iter::from_fn(|| r.next_record().unwrap())
            .map(|r| {
                let s = match r.content {
                    Content::Text(t) => t,
                    Content::Rejected { reason, .. } => format!("<{reason}>"),
                };
                (r.location, s)
            })
            .collect()
    }

    #[test]
    fn extracts_the_field_and_rejects_the_rest() {
        let input = concat!(
            "{\"id\": 1, \"text\": \"hello \\\"x\\\"\", \"meta\": {\"a\": [1,2]}}\n",
            "\n",
            "{\"text\": 5}\n",
            "{\"title\": \"no text\"}\n",
            "{\"text\": \"unterminated\n",
            "[\"not an object\"]\n",
            "{\"te\\u0078t\": \"escaped key\"}\n",
            "{\"text\": \"   \"}\n",
            "{\"text\": \"a\"} trailing\n",
            "{\"text\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n",
            "{\"text\": null}",
        );
        let got = read_all(input.as_bytes(), false);
        let texts: Vec<&str> = got.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            texts,
            [
                "hello \"x\"",
                "<text field not a string>",
                "<missing text field>",
                "<malformed json>",
                "<malformed json>",
                "escaped key",
                "<empty document>",
                "<malformed json>",
                "<document too large>",
                "<text field not a string>",
            ]
        );
        assert_eq!(got[1].0, Some(Location::Line(3)));
        assert_eq!(got[9].0, Some(Location::Line(11)));
    }

    #[test]
    fn invalid_utf8_line_is_rejected() {
        let got = read_all(b"{\"text\": \"a\xff\"}\n{\"text\": \"b\"}\n", false);
        assert_eq!(got[0].1, "<invalid utf-8>");
        assert_eq!(got[1].1, "b");
    }

    #[test]
    fn truncated_zstd_keeps_what_was_read_and_rejects_the_rest() {
        let mut lines = String::new();
        for i in 0..20_000 {
            lines.push_str(&format!("{{\"text\": \"document number {i}\"}}\n"));
        }
        let data = zstd::encode_all(lines.as_bytes(), 1).unwrap();
        let got = read_all(&data[..data.len() * 2 / 3], true);
        let (last_loc, last) = got.last().unwrap();
        assert_eq!(last, "<truncated or corrupt compressed data>");
        let n = got.len() - 1;
        assert!(n > 1000 && n < 20_000, "{n}");
        assert_eq!(*last_loc, Some(Location::Line(n as u64 + 1)));
        assert!(
            got[..n]
                .iter()
                .enumerate()
                .all(|(i, (_, t))| *t == format!("document number {i}"))
        );
    }
}
