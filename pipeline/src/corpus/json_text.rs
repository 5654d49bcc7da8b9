//! The text field of a JSON line without the general parser, for lines of the usual
//! shape: the field first (`{"text": "…"`), then `}` or more members.
//!
//! The reader is one thread feeding every tokenizer thread, and serde_json decodes a
//! string at about 1.2 GB/s here (UTF-8 checked, escapes decoded, copied twice when it
//! has escapes). This scans the string 16 bytes at a time for its end, escapes and
//! control characters, copies it once and checks its UTF-8 once. Members after the
//! field are still checked by serde_json, so a line is accepted exactly when serde_json
//! accepts it.
//!
//! [`text_field`] answers `None` for anything it does not cover — another first key, a
//! key with escapes, a value that is not a plain string, a lone surrogate, a control
//! character, invalid UTF-8, malformed members after it — and the caller then parses the
//! line with serde_json, which gives the text or names the fault. So its `Some` must
//! always equal serde_json's answer, which the reader's tests check on generated lines.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// The text of `line` when it is a JSON object whose first member is `field` with a
/// string value, and the whole line is valid JSON (trailing whitespace allowed).
pub fn text_field(line: &[u8], field: &str) -> Option<String> {
    let mut at = skip_ws(line, 0);
    at = expect(line, at, b'{')?;
    at = skip_ws(line, at);
    at = expect(line, at, b'"')?;
    let key = line.get(at..at + field.len())?;
    if key != field.as_bytes() {
        return None;
    }
    at = expect(line, at + field.len(), b'"')?;
    at = expect(line, skip_ws(line, at), b':')?;
    at = expect(line, skip_ws(line, at), b'"')?;
    let (text, end) = string_body(&line[at..])?;
    at = skip_ws(line, at + end);
    match line.get(at)? {
        b'}' => (skip_ws(line, at + 1) == line.len()).then_some(text),
        b',' => members_are_valid(&line[at + 1..]).then_some(text),
        _ => None,
    }
}

/// Whether `rest`, what follows the first member's comma, completes a valid object: it
/// is `{` followed by it, with a key first (so `{"a": 1, }` stays invalid), checked as
/// the reader's serde path checks the members after the text field ([`Members`]).
fn members_are_valid(rest: &[u8]) -> bool {
    let first = skip_ws(rest, 0);
    if rest.get(first) != Some(&b'"') {
        return false;
    }
    let mut object = Vec::with_capacity(rest.len() + 1 - first);
    object.push(b'{');
    object.extend_from_slice(&rest[first..]);
    serde_json::from_slice::<Members>(&object).is_ok()
}

/// The members of an object as the reader's serde path sees the ones after its text
/// field: each key decoded as a string (escapes, surrogates and UTF-8 checked, as when
/// it is compared with the field name), each value skipped by serde_json's own rules.
/// (Skipping the keys too would accept a key with invalid UTF-8 that the reader
/// rejects.)
struct Members;

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(Members)
    }
}

impl<'de> Visitor<'de> for Members {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        while map.next_key::<String>()?.is_some() {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(Members)
    }
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The index after `byte` at `at`, if it is there.
fn expect(bytes: &[u8], at: usize, byte: u8) -> Option<usize> {
    (bytes.get(at) == Some(&byte)).then_some(at + 1)
}

/// A JSON string's contents, `body` starting after its opening quote: the decoded text
/// and the index after the closing quote.
fn string_body(body: &[u8]) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let found = at + find_special(&body[at..])?;
        if out.capacity() == 0 && body[found] == b'"' {
            // No escape: one exact copy.
            out = body[..found].to_vec();
        } else {
            out.reserve(body.len() - at);
            out.extend_from_slice(&body[at..found]);
        }
        match body[found] {
            b'"' => return Some((String::from_utf8(out).ok()?, found + 1)),
            b'\\' => at = unescape(body, found + 1, &mut out)?,
            _ => return None, // a control character: invalid JSON
        }
    }
}

/// Decode the escape whose letter is at `at` onto `out`; the index after it.
fn unescape(body: &[u8], at: usize, out: &mut Vec<u8>) -> Option<usize> {
    let byte = match *body.get(at)? {
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 0x08,
        b'f' => 0x0C,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'u' => {
            let unit = hex4(body, at + 1)?;
            let (code, next) = match unit {
                0xD800..=0xDBFF => {
                    // A leading surrogate must be followed by `\u` and a trailing one.
                    let low = (body.get(at + 5..at + 7)? == b"\\u")
                        .then(|| hex4(body, at + 7))
                        .flatten()
                        .filter(|low| (0xDC00..=0xDFFF).contains(low))?;
                    (0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00), at + 11)
                }
                0xDC00..=0xDFFF => return None,
                _ => (unit, at + 5),
            };
            let c = char::from_u32(code)?;
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            return Some(next);
        }
        _ => return None,
    };
    out.push(byte);
    Some(at + 1)
}

/// Four hex digits at `at`.
fn hex4(body: &[u8], at: usize) -> Option<u32> {
    let digits = body.get(at..at + 4)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &d| Some(acc * 16 + char::from(d).to_digit(16)?))
}

/// Whether a string byte ends the plain run: a quote, a backslash or a control character.
fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The index of the first [`is_special`] byte.
fn find_special(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of x86_64; every load reads 16 bytes inside `bytes`.
        unsafe {
            use std::arch::x86_64::*;
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let control = _mm_set1_epi8(0x1F);
            while at + 16 <= bytes.len() {
                let v = _mm_loadu_si128(bytes.as_ptr().add(at).cast());
                // v ≤ 0x1F (unsigned) exactly when min(v, 0x1F) == v.
                let below = _mm_cmpeq_epi8(_mm_min_epu8(v, control), v);
                let hits = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                    below,
                );
                let mask = _mm_movemask_epi8(hits) as u32;
                if mask != 0 {
                    return Some(at + mask.trailing_zeros() as usize);
                }
                at += 16;
            }
        }
    }
    bytes[at..]
        .iter()
        .position(|&b| is_special(b))
        .map(|p| at + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usual_lines() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"text": "plain"}"#, Some("plain")),
            (
                r#"  {"text":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00"}  "#,
                Some("a\"b\\c/d\n\té😀"),
            ),
            (
                r#"{"text": "x", "meta": {"a": [1, 2.5e3, null, true]}}"#,
                Some("x"),
            ),
            (r#"{"text": "x", }"#, None),
            (r#"{"text": "x",}"#, None),
            (r#"{"text": "x"} trailing"#, None),
            (r#"{"text": "x""#, None),
            (r#"{"text": "lone \ud800 surrogate"}"#, None),
            (r#"{"text": "lone \udc00 trail"}"#, None),
            (r#"{"text": "bad \x escape"}"#, None),
            (r#"{"text": 5}"#, None),
            (r#"{"id": 1, "text": "later"}"#, None),
            (r#"{"te\u0078t": "escaped key"}"#, None),
            (r#"{"texts": "other key"}"#, None),
            (r#"{"text": "x", "meta": [1, }"#, None),
        ];
        for (line, want) in cases {
            assert_eq!(
                text_field(line.as_bytes(), "text").as_deref(),
                *want,
                "{line}"
            );
        }
        assert_eq!(text_field(b"{\"text\": \"tab\there\"}", "text"), None);
        assert_eq!(text_field(b"{\"text\": \"a\xff\"}", "text"), None);
        // A later key the reader would reject: invalid UTF-8, a lone surrogate.
        assert_eq!(text_field(b"{\"text\": \"a\", \"m\x80\": 1}", "text"), None);
        assert_eq!(text_field(br#"{"text": "a", "m\ud800": 1}"#, "text"), None);
    }

    #[test]
    fn finds_the_first_special_byte_at_every_offset() {
        for len in 0..70 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x00, 0x1F] {
                    let mut bytes = vec![b'a'; len];
                    bytes.extend_from_slice(&[0x20, 0x7F, 0x80, 0xFF]);
                    if at < len {
                        bytes[at] = special;
                    }
                    let want = bytes.iter().position(|&b| is_special(b));
                    assert_eq!(find_special(&bytes), want, "len {len} at {at}");
                }
            }
        }
    }
}
