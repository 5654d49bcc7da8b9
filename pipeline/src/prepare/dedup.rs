//! `--dedup exact`: a document whose normalised text was already seen is rejected as
//! `duplicate`, naming where the text was first seen.
//!
//! - **Normalised text**: Unicode NFC, then every run of whitespace (Unicode White_Space)
//!   collapsed to one space, leading and trailing whitespace removed. Its
//!   [`fingerprint`] is its 128-bit XXH3 hash (xxh3_128, seed 0; a chance collision
//!   among 10^9 documents has probability ~10^-21; it is not built to resist texts
//!   crafted to collide), computed by the tokenizer workers; the decision is taken by
//!   the packing thread in input order, so the output is the same for any thread count.
//! - **Memory**: one 32-byte entry per distinct document (the 16-byte fingerprint, the
//!   input index and the packed location of the first occurrence; 33 bytes a bucket
//!   with the control byte) in a hash table kept between 44 % and 88 % full: 38–75
//!   bytes per distinct document, 0 per duplicate; while the table grows, the old one
//!   (half the size) is held too, so the peak is up to 113 bytes per distinct document
//!   (measured: 2,000,000 distinct documents add 200 MB to peak RSS).
//! - **Resume**: every distinct document is appended to [`DEDUP_FILE`] in the output
//!   folder (28-byte records after a 16-byte header). Before each shard commit the file
//!   is synced and the manifest's resume point records how many of its records are
//!   valid ([`ResumePoint::dedup_entries`](cocolm_shared::manifest::ResumePoint)); a
//!   resumed job reloads those and cuts off the rest. The complete file stays with the
//!   shards, the set's list of distinct documents.

use super::append_log::AppendLog;
use crate::corpus::Location;
use crate::{Error, Result};
use cocolm_shared::manifest::Dedup;
use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufReader, Read};
use std::path::Path;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
use xxhash_rust::xxh3::xxh3_128;

/// File name of the side file of first-seen documents, in the output folder.
pub const DEDUP_FILE: &str = "dedup.bin";
/// First bytes of [`DEDUP_FILE`]: a magic and the format version.
const HEADER: &[u8; 16] = b"cocolm-dedup\0\0\0\x01";
/// Bytes per record: fingerprint (16), input index (4), packed location (8), little-endian.
const RECORD: usize = 28;

/// How a duplicate's detail names the document it repeats under `mode`: `same text as`,
/// or `similar text to` under `--dedup near`.
pub fn relation(mode: Dedup) -> &'static str {
    match mode {
        Dedup::Near => "similar text to",
        Dedup::None | Dedup::Exact => "same text as",
    }
}

/// The 128-bit fingerprint of a document's normalised text (module docs).
pub fn fingerprint(text: &str) -> u128 {
    xxh3_128(&normalise(text))
}

/// The normalised text (module docs): NFC, whitespace runs collapsed to one space.
pub(super) fn normalise(text: &str) -> Vec<u8> {
    if is_nfc(text) {
        collapse_whitespace(text)
    } else {
        collapse_whitespace(&text.nfc().collect::<String>())
    }
}

/// Whether `text` is certainly in NFC. ASCII is (and resets the quick check's state, its
/// combining class being 0), so only the runs of non-ASCII characters are checked.
fn is_nfc(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(start) = bytes[at..].iter().position(|b| !b.is_ascii()) {
        let start = at + start;
        let end = bytes[start..]
            .iter()
            .position(u8::is_ascii)
            .map_or(bytes.len(), |n| start + n);
        if is_nfc_quick(text[start..end].chars()) != IsNormalized::Yes {
            return false;
        }
        at = end;
    }
    true
}

/// Byte classes for [`collapse_whitespace`]: ASCII whitespace, and the lead bytes of
/// the multi-byte White_Space characters (U+0085, U+00A0, U+1680, U+2000–U+200A,
/// U+2028, U+2029, U+202F, U+205F, U+3000).
const fn byte_classes() -> [u8; 256] {
    let mut classes = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        classes[b] = match b as u8 {
            b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => BLANK,
            0xc2 | 0xe1 | 0xe2 | 0xe3 => LEAD,
            _ => 0,
        };
        b += 1;
    }
    classes
}
const BLANK: u8 = 1;
const LEAD: u8 = 2;
static CLASSES: [u8; 256] = byte_classes();

/// `text` with every run of whitespace (Unicode White_Space) made one space, none at the
/// ends: the words of `split_whitespace` joined by spaces. Branch-free per byte, except
/// at the lead bytes of multi-byte whitespace, which are decoded.
fn collapse_whitespace(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = vec![0u8; bytes.len()];
    // `n` ≤ `at` always: the output is never longer than the input read so far.
    let (mut n, mut at, mut blank_before) = (0usize, 0usize, true);
    while at < bytes.len() {
        let b = bytes[at];
        let class = CLASSES[usize::from(b)];
        if class == LEAD {
            let c = text[at..].chars().next().expect("at a character boundary");
            let width = c.len_utf8();
            if c.is_whitespace() {
                out[n] = b' ';
                n += usize::from(!blank_before);
                blank_before = true;
            } else {
                out[n..n + width].copy_from_slice(&bytes[at..at + width]);
                n += width;
                blank_before = false;
            }
            at += width;
            continue;
        }
        let blank = class == BLANK;
        out[n] = if blank { b' ' } else { b };
        // A blank after a blank overwrites the space already written.
        n += usize::from(!(blank & blank_before));
        blank_before = blank;
        at += 1;
    }
    if blank_before && n > 0 {
        n -= 1;
    }
    out.truncate(n);
    out
}

/// Call `each` with the records of the side file `path` (open as `file`), in order: the
/// first `entries` of them, or all when `None` (the file must then end on a record).
pub fn read_records(
    path: &Path,
    file: &mut File,
    entries: Option<u64>,
    mut each: impl FnMut(u128, Origin),
) -> Result<()> {
    let damaged = |message: String| Error::Output {
        path: path.to_path_buf(),
        message: format!(
            "{message}; it belongs to the manifest's job: prepare again into a new --out"
        ),
    };
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let held = len.saturating_sub(HEADER.len() as u64) / RECORD as u64;
    let entries = match entries {
        Some(entries) if held < entries => {
            return Err(damaged(format!(
                "holds {held} records, the manifest counts {entries}"
            )));
        }
        Some(entries) => entries,
        None if len < HEADER.len() as u64
            || !(len - HEADER.len() as u64).is_multiple_of(RECORD as u64) =>
        {
            return Err(damaged(format!(
                "is {len} bytes, not a header and whole {RECORD}-byte records"
            )));
        }
        None => held,
    };
    let mut reader = BufReader::new(file);
    let mut header = [0u8; 16];
    reader
        .read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    if &header != HEADER {
        return Err(damaged("is not a cocolm dedup file (bad header)".into()));
    }
    let mut record = [0u8; RECORD];
    for _ in 0..entries {
        reader
            .read_exact(&mut record)
            .map_err(|e| Error::io(path, e))?;
        let (hash, rest) = record.split_at(16);
        let (input, location) = rest.split_at(4);
        let origin = Origin {
            input: u32::from_le_bytes(input.try_into().expect("4 bytes")),
            location: u64::from_le_bytes(location.try_into().expect("8 bytes")),
        };
        each(
            u128::from_le_bytes(hash.try_into().expect("16 bytes")),
            origin,
        );
    }
    Ok(())
}

/// Where a distinct document was first seen: its input's index and its location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Index of the input file.
    pub input: u32,
    /// [`Location`] packed in 64 bits: 0 none, a line as itself, a row with the top bit.
    location: u64,
}

const ROW: u64 = 1 << 63;

impl Origin {
    /// The origin of document at `location` of input `input`.
    pub fn new(input: usize, location: Option<Location>) -> Self {
        let location = match location {
            None => 0,
            Some(Location::Line(line)) => line & !ROW,
            Some(Location::Row(row)) => ROW | (row & !ROW),
        };
        Origin {
            input: u32::try_from(input).expect("fewer than 2^32 input files"),
            location,
        }
    }

    /// The same location in input `input` (renumbered by `merge`).
    pub fn with_input(self, input: usize) -> Self {
        Origin {
            input: u32::try_from(input).expect("fewer than 2^32 input files"),
            ..self
        }
    }

    /// The document's location in its input.
    pub fn location(&self) -> Option<Location> {
        match self.location {
            0 => None,
            l if l & ROW != 0 => Some(Location::Row(l & !ROW)),
            line => Some(Location::Line(line)),
        }
    }
}

/// A [`Hasher`] for keys that are already uniform (fingerprints): their low 64 bits.
#[derive(Default)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// The distinct documents seen so far, mirrored in [`DEDUP_FILE`].
pub struct Seen {
    first: HashMap<u128, Origin, BuildHasherDefault<FingerprintHasher>>,
    file: AppendLog,
}

impl Seen {
    /// A new, empty side file in `out` (replacing debris of a job killed before its
    /// first manifest).
    pub fn create(out: &Path) -> Result<Self> {
        let mut file = AppendLog::open(out.join(DEDUP_FILE), 0)?;
        file.append(HEADER)?;
        file.sync()?;
        Ok(Seen {
            first: HashMap::default(),
            file,
        })
    }

    /// The first `entries` records of the side file in `out`; later records (written
    /// after the manifest's last update) are cut off.
    pub fn resume(out: &Path, entries: u64) -> Result<Self> {
        let path = out.join(DEDUP_FILE);
        let mut file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut first = HashMap::with_capacity_and_hasher(entries as usize, Default::default());
        read_records(&path, &mut file, Some(entries), |fingerprint, origin| {
            first.insert(fingerprint, origin);
        })?;
        let valid = HEADER.len() as u64 + entries * RECORD as u64;
        Ok(Seen {
            first,
            file: AppendLog::open(path, valid)?,
        })
    }

    /// Where a document with this fingerprint was first seen, if it was.
    pub fn first_seen(&self, fingerprint: u128) -> Option<Origin> {
        self.first.get(&fingerprint).copied()
    }

    /// Record a distinct document (not seen before).
    pub fn insert(&mut self, fingerprint: u128, origin: Origin) -> Result<()> {
        let mut record = [0u8; RECORD];
        record[..16].copy_from_slice(&fingerprint.to_le_bytes());
        record[16..20].copy_from_slice(&origin.input.to_le_bytes());
        record[20..].copy_from_slice(&origin.location.to_le_bytes());
        self.file.append(&record)?;
        self.first.insert(fingerprint, origin);
        Ok(())
    }

    /// Write what is buffered and sync it to disk; returns the number of records, the
    /// count a manifest written next may rely on.
    pub fn sync(&mut self) -> Result<u64> {
        self.file.sync()?;
        Ok(self.first.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_normal_form_and_whitespace_only() {
        let composed = "caf\u{e9} au lait";
        let decomposed = "cafe\u{301} au lait";
        assert_ne!(composed, decomposed);
        assert_eq!(fingerprint(composed), fingerprint(decomposed));
        assert_eq!(
            fingerprint("  café\t au\n\n lait \u{2003}"),
            fingerprint(composed)
        );
        assert_ne!(fingerprint("café au lait"), fingerprint("cafe au lait"));
        assert_ne!(fingerprint("a b"), fingerprint("ab"));
        assert_ne!(fingerprint("Café au lait"), fingerprint(composed));
        assert_eq!(fingerprint("\ta  b "), xxh3_128(b"a b"));
    }

    proptest::proptest! {
        /// The byte-wise collapse is `split_whitespace` joined by single spaces, and the
        /// run-wise NFC check agrees with normalising, on any text.
        #[test]
        fn normalisation_matches_the_definition(text in "(\\PC|\\s|e\u{301}|\u{85}|\u{a0}|\u{2003}){0,40}") {
            let words: Vec<&str> = text.split_whitespace().collect();
            proptest::prop_assert_eq!(collapse_whitespace(&text), words.join(" ").into_bytes());
            let nfc: String = text.nfc().collect();
            if is_nfc(&text) {
                proptest::prop_assert_eq!(&nfc, &text);
            }
            proptest::prop_assert_eq!(fingerprint(&text), fingerprint(&nfc));
        }
    }

    #[test]
    fn origins_round_trip_and_entries_are_32_bytes() {
        for location in [
            None,
            Some(Location::Line(1)),
            Some(Location::Line(1 << 40)),
            Some(Location::Row(0)),
            Some(Location::Row(77)),
        ] {
            assert_eq!(Origin::new(3, location).location(), location);
        }
        // What the module docs promise per distinct document.
        assert_eq!(std::mem::size_of::<(u128, Origin)>(), 32);
    }

    #[test]
    fn resume_keeps_the_counted_records_and_cuts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Seen::create(dir.path()).unwrap();
        for i in 0..5u128 {
            seen.insert(
                i * 7919,
                Origin::new(i as usize, Some(Location::Line(i as u64 + 1))),
            )
            .unwrap();
        }
        assert_eq!(seen.sync().unwrap(), 5);
        drop(seen);
        let mut seen = Seen::resume(dir.path(), 3).unwrap();
        assert_eq!(
            seen.first_seen(2 * 7919),
            Some(Origin::new(2, Some(Location::Line(3))))
        );
        assert_eq!(seen.first_seen(3 * 7919), None);
        seen.insert(1, Origin::new(9, None)).unwrap();
        assert_eq!(seen.sync().unwrap(), 4);
        let len = std::fs::metadata(dir.path().join(DEDUP_FILE))
            .unwrap()
            .len();
        assert_eq!(len, 16 + 4 * 28);
        let err = Seen::resume(dir.path(), 9).err().unwrap().to_string();
        assert!(
            err.contains("holds 4 records, the manifest counts 9"),
            "{err}"
        );
        std::fs::write(dir.path().join(DEDUP_FILE), [0u8; 64]).unwrap();
        let err = Seen::resume(dir.path(), 1).err().unwrap().to_string();
        assert!(
            err.contains("dedup.bin") && err.contains("bad header"),
            "{err}"
        );
    }
}
