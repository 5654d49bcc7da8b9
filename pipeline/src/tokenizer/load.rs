//! [`TokenizerJson`]: a `tokenizer.json` in memory, read from disk or freshly trained.
//!
//! A file is read whole, decompressed when it starts with the zstd magic number (whatever its
//! name), parsed by `tokenizers` 0.23.2, and given the special tokens it lacks
//! ([`special`](super::special)). The *final* JSON — the file's own text when nothing was added,
//! the library's re-serialisation when something was — is what [`TokenizerJson::json`] returns,
//! what [`TokenizerJson::sha256`] hashes and what [`TokenizerJson::save`] writes: the file to
//! keep next to the shards, and the one Python must load to get the same ids.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use cocolm_shared::hash::sha256_hex;
use cocolm_shared::manifest::write_atomic;
use cocolm_shared::{SpecialTokens, TokenizerRecord};
use tokenizers::Tokenizer;

use super::cache::{Entry, Slot, Verdict, default_root};
use super::engine::Engine;
use super::error::{Result, TokenizerError};
use super::special::ensure_special_tokens;

/// The first four bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// A tokenizer as cocolm uses it: its final JSON, the hash and size recorded in the shard
/// manifest, and the ids of the special tokens.
///
/// Build one with [`TokenizerJson::load`] or [`train`](fn@super::train); encode with
/// [`Encoder::new`](super::Encoder::new).
pub struct TokenizerJson {
    json: String,
    sha256: String,
    vocab_size: usize,
    special_tokens: SpecialTokens,
    added_special_tokens: Vec<String>,
    /// The reference engine's tokenizer, parsed from `json` when first needed (a load
    /// answered by the cache may never need it).
    tokenizer: OnceLock<Tokenizer>,
    /// The cache slot it was loaded through, and the fast engine's verdict found there.
    cache: Option<(Slot, Option<Verdict>)>,
}

impl TokenizerJson {
    /// Read a `tokenizer.json`, plain or zstd-compressed, and add the special tokens it lacks.
    ///
    /// Every failure names `path`: a missing file ([`TokenizerError::Io`]), a truncated or
    /// corrupt zstd stream ([`TokenizerError::Decompress`]), content that is not UTF-8 or not a
    /// tokenizer ([`TokenizerError::Parse`]).
    ///
    /// What the load derives is cached ([`cache`](super::cache)): loading the same file
    /// again reads it from there.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_through(path, default_root().as_deref())
    }

    /// [`TokenizerJson::load`] with the cache rooted at `root` (`None`: no cache).
    pub(super) fn load_through(path: &Path, root: Option<&Path>) -> Result<Self> {
        let text = read_text(path)?;
        let slot = root.map(|root| Slot::new(root, &text));
        if let Some(slot) = &slot
            && let Some((entry, json)) = slot.read()
        {
            return Ok(Self {
                json,
                sha256: entry.final_sha256,
                vocab_size: entry.vocab_size,
                special_tokens: entry.special_tokens,
                added_special_tokens: entry.added_special_tokens,
                tokenizer: OnceLock::new(),
                cache: Some((slot.clone(), entry.fast)),
            });
        }
        let tokenizer = Tokenizer::from_str(&text).map_err(|e| TokenizerError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut loaded = Self::new(tokenizer, text)?;
        if let Some(slot) = slot {
            let entry = Entry {
                final_sha256: loaded.sha256.clone(),
                vocab_size: loaded.vocab_size,
                special_tokens: loaded.special_tokens,
                added_special_tokens: loaded.added_special_tokens.clone(),
                fast: None,
            };
            slot.write(&entry, &loaded.json);
            loaded.cache = Some((slot, None));
        }
        Ok(loaded)
    }

    /// Wrap a tokenizer built in memory (by the trainer): serialise it and read it back.
    ///
    /// The reference engine must be what readers of the file get, not the trained model:
    /// a Unigram score that went through JSON can come back one ulp away, and that flips
    /// near-ties between segmentations.
    pub(super) fn from_built(tokenizer: &Tokenizer) -> Result<Self> {
        let json = serialise(tokenizer)?;
        Self::new(read_back(&json)?, json)
    }

    /// Wrap `tokenizer`, parsed from `text`, adding the special tokens it lacks.
    fn new(mut tokenizer: Tokenizer, text: String) -> Result<Self> {
        let (special_tokens, added_special_tokens) = ensure_special_tokens(&mut tokenizer)?;
        let (json, tokenizer) = if added_special_tokens.is_empty() {
            (text, tokenizer)
        } else {
            let json = serialise(&tokenizer)?;
            let tokenizer = read_back(&json)?;
            (json, tokenizer)
        };
        let vocab_size = tokenizer
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&max| max as usize + 1);
        Ok(Self {
            sha256: sha256_hex(json.as_bytes()),
            json,
            vocab_size,
            special_tokens,
            added_special_tokens,
            tokenizer: OnceLock::from(tokenizer),
            cache: None,
        })
    }

    /// The final tokenizer JSON, special tokens included.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Lower-case hex SHA-256 of [`TokenizerJson::json`].
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Number of ids, added tokens included: one past the largest id, which is the number of
    /// embedding rows a model needs (and the token count when ids are contiguous, as they are
    /// in every tokenizer trained here).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Ids of `[PAD] [CLS] [SEP] [MASK] [UNK]`.
    pub fn special_tokens(&self) -> SpecialTokens {
        self.special_tokens
    }

    /// The special tokens that were missing and were added, in `[PAD] [CLS] [SEP] [MASK] [UNK]`
    /// order; empty for a trained tokenizer.
    pub fn added_special_tokens(&self) -> &[String] {
        &self.added_special_tokens
    }

    /// The manifest's record of this tokenizer; `file` is the path as given by the user.
    pub fn record(&self, file: impl Into<String>) -> TokenizerRecord {
        TokenizerRecord {
            file: file.into(),
            sha256: self.sha256.clone(),
            vocab_size: self.vocab_size,
            special_tokens: self.special_tokens,
            added_special_tokens: self.added_special_tokens.clone(),
        }
    }

    /// Write [`TokenizerJson::json`] to `path` (plain, whatever the name), atomically: to
    /// `path` + `.tmp`, fsynced, then renamed.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        write_atomic(Path::new(&tmp), path, self.json.as_bytes())?;
        Ok(())
    }

    /// The `tokenizers` 0.23.2 tokenizer parsed from [`TokenizerJson::json`] (parsed
    /// now if the load came from the cache).
    pub(super) fn reference(&self) -> Result<&Tokenizer> {
        if let Some(tokenizer) = self.tokenizer.get() {
            return Ok(tokenizer);
        }
        let tokenizer = read_back(&self.json)?;
        Ok(self.tokenizer.get_or_init(|| tokenizer))
    }

    /// The fast engine's verdict the cache holds for this file: `Ok(canonical JSON)` when
    /// it agreed on the probe texts, `Err(reason)` when it did not; `None` when unknown.
    pub(super) fn cached_fast(&self) -> Option<std::result::Result<String, String>> {
        let (slot, verdict) = self.cache.as_ref()?;
        match verdict.as_ref()? {
            Verdict::Agrees(sha256) => slot.canonical(sha256).map(Ok),
            Verdict::Fallback(reason) => Some(Err(reason.clone())),
        }
    }

    /// Whether the reference engine's tokenizer has been parsed.
    #[cfg(test)]
    pub(super) fn reference_parsed(&self) -> bool {
        self.tokenizer.get().is_some()
    }

    /// Store the fast engine's verdict in the cache this was loaded through, if any.
    pub(super) fn remember_fast(&self, verdict: std::result::Result<&str, &str>) {
        if let Some((slot, _)) = &self.cache {
            slot.remember(verdict);
        }
    }
}

impl fmt::Debug for TokenizerJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenizerJson")
            .field("sha256", &self.sha256)
            .field("vocab_size", &self.vocab_size)
            .field("special_tokens", &self.special_tokens)
            .field("added_special_tokens", &self.added_special_tokens)
            .finish_non_exhaustive()
    }
}

/// The JSON of `tokenizer`.
fn serialise(tokenizer: &Tokenizer) -> Result<String> {
    tokenizer.to_string(false).map_err(TokenizerError::library(
        Engine::Reference,
        "serialise the tokenizer",
    ))
}

/// The tokenizer `json` describes, where `json` is our own serialisation.
fn read_back(json: &str) -> Result<Tokenizer> {
    Tokenizer::from_str(json).map_err(TokenizerError::library(
        Engine::Reference,
        "read back the serialised tokenizer",
    ))
}

/// The text of a tokenizer file, decompressed if it is a zstd stream.
fn read_text(path: &Path) -> Result<String> {
    let raw = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
    let bytes = if raw.starts_with(&ZSTD_MAGIC) {
        zstd::stream::decode_all(raw.as_slice()).map_err(|source| TokenizerError::Decompress {
            path: path.to_path_buf(),
            source,
        })?
    } else {
        raw
    };
    String::from_utf8(bytes).map_err(|e| TokenizerError::Parse {
        path: path.to_path_buf(),
        message: format!("not UTF-8: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{llama3, trained};
    use super::super::{ModelKind, TRAINED_SPECIAL_TOKENS};
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn llama3_gets_the_five_special_tokens_appended() {
        let Some(llama3) = llama3() else { return };
        assert_eq!(llama3.added_special_tokens(), SpecialTokens::NAMES);
        let expected = SpecialTokens {
            pad: 128_256,
            cls: 128_257,
            sep: 128_258,
            mask: 128_259,
            unk: 128_260,
        };
        assert_eq!(llama3.special_tokens(), expected);
        assert_eq!(llama3.vocab_size(), 128_261);
        assert_eq!(llama3.reference().unwrap().get_vocab_size(true), 128_261);
        assert_eq!(llama3.sha256(), sha256_hex(llama3.json().as_bytes()));
    }

    #[test]
    fn saved_json_reloads_with_nothing_added_and_the_same_hash() {
        let Some(llama3) = llama3() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        llama3.save(&path).unwrap();
        let again = TokenizerJson::load(&path).unwrap();
        assert!(again.added_special_tokens().is_empty());
        assert_eq!(again.sha256(), llama3.sha256());
        assert_eq!(again.special_tokens(), llama3.special_tokens());
        assert_eq!(again.vocab_size(), llama3.vocab_size());
        let record = again.record("tokenizer.json");
        assert_eq!(record.sha256, llama3.sha256());
        assert_eq!(record.vocab_size, 128_261);
    }

    #[test]
    fn plain_and_zstd_files_give_the_same_tokenizer() {
        let tokenizer = trained(ModelKind::Bpe);
        let dir = tempfile::tempdir().unwrap();
        let json = tokenizer.json().as_bytes();
        let plain = write(dir.path(), "t.json", json);
        let packed = write(
            dir.path(),
            "t.json.zst",
            &zstd::encode_all(json, 3).unwrap(),
        );
        let (plain, packed) = (
            TokenizerJson::load(&plain).unwrap(),
            TokenizerJson::load(&packed).unwrap(),
        );
        assert_eq!(plain.sha256(), tokenizer.sha256());
        assert_eq!(packed.sha256(), tokenizer.sha256());
        assert_eq!(packed.vocab_size(), tokenizer.vocab_size());
        assert_eq!(packed.special_tokens(), TRAINED_SPECIAL_TOKENS);
    }

    /// The message of `err`, checked to name `path`.
    fn names_path(err: TokenizerError, path: &Path) -> String {
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "{message:?} does not name {}",
            path.display()
        );
        message
    }

    #[test]
    fn bad_files_give_errors_naming_the_file() {
        let json = trained(ModelKind::Bpe).json().as_bytes();
        let packed = zstd::encode_all(json, 3).unwrap();
        let dir = tempfile::tempdir().unwrap();

        let missing = dir.path().join("missing.json");
        let err = TokenizerJson::load(&missing).unwrap_err();
        assert!(matches!(err, TokenizerError::Io { .. }), "{err:?}");
        names_path(err, &missing);

        let truncated = write(dir.path(), "cut.json.zst", &packed[..packed.len() / 2]);
        let err = TokenizerJson::load(&truncated).unwrap_err();
        assert!(matches!(err, TokenizerError::Decompress { .. }), "{err:?}");
        names_path(err, &truncated);

        let mut flipped = packed.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let corrupt = write(dir.path(), "corrupt.json.zst", &flipped);
        let err = TokenizerJson::load(&corrupt).unwrap_err();
        assert!(
            matches!(
                err,
                TokenizerError::Decompress { .. } | TokenizerError::Parse { .. }
            ),
            "{err:?}"
        );
        names_path(err, &corrupt);

        let cut_json = write(dir.path(), "cut.json", &json[..json.len() / 2]);
        let err = TokenizerJson::load(&cut_json).unwrap_err();
        assert!(matches!(err, TokenizerError::Parse { .. }), "{err:?}");
        names_path(err, &cut_json);

        let not_utf8 = write(dir.path(), "latin1.json", b"{\"version\": \"1.0\xff\"}");
        let err = TokenizerJson::load(&not_utf8).unwrap_err();
        assert!(names_path(err, &not_utf8).contains("UTF-8"));

        let not_tokenizer = write(dir.path(), "other.json", b"{\"hello\": 1}");
        let err = TokenizerJson::load(&not_tokenizer).unwrap_err();
        assert!(matches!(err, TokenizerError::Parse { .. }), "{err:?}");
        names_path(err, &not_tokenizer);
    }
}
