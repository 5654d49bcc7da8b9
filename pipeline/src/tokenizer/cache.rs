//! A cache of what loading a `tokenizer.json` derives: the final JSON (special tokens
//! added), its hash, vocabulary size and special ids, and the fast engine's verdict on
//! the probe texts with the canonical JSON it reads. A second load of the same file
//! then parses it once, with the fast engine only, instead of twice with the reference
//! engine plus the upgrade pass and the probe.
//!
//! - **Where**: `$COCOLM_CACHE_DIR` (set but empty: no cache), else
//!   `$XDG_CACHE_HOME/cocolm`, else `$HOME/.cache/cocolm`; one folder per entry under
//!   `tokenizers/`, named by the SHA-256 of the file's text together with the cache
//!   format, both engines' versions and the probe texts, so a change of any of them is
//!   a miss, never a stale answer.
//! - **Trust**: every file is written to a temporary name and renamed; on reading, the
//!   final and canonical JSON must hash to what the entry records, else the entry is
//!   ignored and rewritten. A cache that cannot be written is skipped silently: it only
//!   ever saves time.

use std::path::{Path, PathBuf};

use cocolm_shared::SpecialTokens;
use cocolm_shared::hash::sha256_hex;
use serde::{Deserialize, Serialize};

use super::engine::Engine;
use super::probe::probe_texts;

/// Bumped when the entry's layout or meaning changes.
const FORMAT: u32 = 1;
const ENTRY: &str = "entry.json";
const FINAL: &str = "tokenizer.json";
const CANONICAL: &str = "canonical.json";

/// The cache root from the environment (module docs); `None` when disabled or unknown.
pub(super) fn default_root() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("COCOLM_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("cocolm"))
}

/// The fast engine's verdict on a tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Verdict {
    /// It reads the file and agrees on the probe texts; the SHA-256 of its canonical JSON.
    Agrees(String),
    /// It does not; why.
    Fallback(String),
}

/// What a load derived from one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Entry {
    pub final_sha256: String,
    pub vocab_size: usize,
    pub special_tokens: SpecialTokens,
    pub added_special_tokens: Vec<String>,
    pub fast: Option<Verdict>,
}

/// The cache folder of one tokenizer file.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    dir: PathBuf,
}

impl Slot {
    /// The folder for a file whose (decompressed) text is `text`, under `root`.
    pub fn new(root: &Path, text: &str) -> Self {
        let probes = probe_texts().join("\u{1f}");
        let key = format!(
            "{FORMAT}\n{}\n{}\n{}\n{}",
            Engine::Fast,
            Engine::Reference,
            sha256_hex(probes.as_bytes()),
            sha256_hex(text.as_bytes())
        );
        Slot {
            dir: root.join("tokenizers").join(sha256_hex(key.as_bytes())),
        }
    }

    /// The entry and the final JSON, when both are there and agree.
    pub fn read(&self) -> Option<(Entry, String)> {
        let entry: Entry =
            serde_json::from_slice(&std::fs::read(self.dir.join(ENTRY)).ok()?).ok()?;
        let json = std::fs::read_to_string(self.dir.join(FINAL)).ok()?;
        (sha256_hex(json.as_bytes()) == entry.final_sha256).then_some((entry, json))
    }

    /// The canonical JSON the fast engine agreed with, when it hashes to `sha256`.
    pub fn canonical(&self, sha256: &str) -> Option<String> {
        let json = std::fs::read_to_string(self.dir.join(CANONICAL)).ok()?;
        (sha256_hex(json.as_bytes()) == sha256).then_some(json)
    }

    /// Store an entry and its final JSON (best effort).
    pub fn write(&self, entry: &Entry, json: &str) {
        let _ = std::fs::create_dir_all(&self.dir);
        self.put(FINAL, json.as_bytes());
        self.put_entry(entry);
    }

    /// Record the fast engine's verdict in the entry, with its canonical JSON when it
    /// agrees (best effort).
    pub fn remember(&self, verdict: std::result::Result<&str, &str>) {
        let Some((mut entry, _)) = self.read() else {
            return;
        };
        entry.fast = Some(match verdict {
            Ok(canonical) => {
                self.put(CANONICAL, canonical.as_bytes());
                Verdict::Agrees(sha256_hex(canonical.as_bytes()))
            }
            Err(reason) => Verdict::Fallback(reason.to_string()),
        });
        self.put_entry(&entry);
    }

    fn put_entry(&self, entry: &Entry) {
        let json = serde_json::to_vec_pretty(entry).expect("an entry serialises");
        self.put(ENTRY, &json);
    }

    /// Write `name` through a temporary file unique to this process and moment.
    fn put(&self, name: &str, bytes: &[u8]) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = self
            .dir
            .join(format!("{name}.{}.{nanos}.tmp", std::process::id()));
        let stored = std::fs::write(&tmp, bytes).is_ok()
            && std::fs::rename(&tmp, self.dir.join(name)).is_ok();
        if !stored {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{builtin_corpus, llama3, trained};
    use super::super::{Encoder, EngineChoice, ModelKind, TokenizerJson};
    use super::*;

    /// Load `path` through a fresh cache twice: the second load comes from the cache,
    /// never parses the reference engine, and encodes exactly as the first.
    fn cached_load_matches(path: &Path) {
        let root = tempfile::tempdir().unwrap();
        let first = TokenizerJson::load_through(path, Some(root.path())).unwrap();
        let first_encoder = Encoder::new(&first, EngineChoice::Auto).unwrap();
        let second = TokenizerJson::load_through(path, Some(root.path())).unwrap();
        assert!(second.cached_fast().is_some(), "the verdict was stored");
        let second_encoder = Encoder::new(&second, EngineChoice::Auto).unwrap();
        assert!(
            !second.reference_parsed(),
            "the reference engine was parsed on a cache hit"
        );
        assert_eq!(second.json(), first.json());
        assert_eq!(second.sha256(), first.sha256());
        assert_eq!(second.vocab_size(), first.vocab_size());
        assert_eq!(second.special_tokens(), first.special_tokens());
        assert_eq!(second.added_special_tokens(), first.added_special_tokens());
        assert_eq!(second_encoder.engine(), first_encoder.engine());
        let reference = Encoder::new(&first, EngineChoice::Reference).unwrap();
        let mut texts = probe_texts();
        texts.extend(builtin_corpus());
        for text in &texts {
            let expected = reference.encode(text).unwrap();
            assert_eq!(first_encoder.encode(text).unwrap(), expected, "{text:?}");
            assert_eq!(second_encoder.encode(text).unwrap(), expected, "{text:?}");
        }

        // A damaged entry is a miss: the file is parsed again and the cache rewritten.
        let slot = Slot::new(root.path(), &std::fs::read_to_string(path).unwrap());
        std::fs::write(slot.dir.join(FINAL), "{}").unwrap();
        let third = TokenizerJson::load_through(path, Some(root.path())).unwrap();
        assert!(third.reference_parsed(), "a damaged entry was trusted");
        assert_eq!(third.sha256(), first.sha256());
        assert!(slot.read().is_some(), "the entry was rewritten");
    }

    #[test]
    fn a_cached_load_gives_the_same_tokenizer_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpe.json");
        std::fs::write(&path, trained(ModelKind::Bpe).json()).unwrap();
        cached_load_matches(&path);
    }

    #[test]
    fn a_cached_load_of_llama3_gives_the_same_tokenizer_and_ids() {
        // llama3 has the special tokens appended: the cached JSON is not the file's.
        let Some(llama3) = llama3() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("llama3.json");
        std::fs::write(&path, llama3.json().replace("[MASK]", "[MASK_]")).unwrap();
        cached_load_matches(&path);
    }

    #[test]
    fn a_fallback_verdict_is_cached_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bpe.json");
        std::fs::write(&path, trained(ModelKind::Bpe).json()).unwrap();
        let root = tempfile::tempdir().unwrap();
        let first = TokenizerJson::load_through(&path, Some(root.path())).unwrap();
        first.remember_fast(Err("a test says no"));
        let second = TokenizerJson::load_through(&path, Some(root.path())).unwrap();
        let encoder = Encoder::new(&second, EngineChoice::Auto).unwrap();
        assert_eq!(encoder.fallback_reason(), Some("a test says no"));
        let err = Encoder::new(&second, EngineChoice::Fast).err().unwrap();
        assert!(err.to_string().contains("a test says no"), "{err}");
    }
}
