//! [`Encoder`]: text to ids for the packer's worker threads, and ids to text for reports.
//!
//! Two engines read the same `tokenizer.json`:
//!
//! - [`Engine::Fast`], `tokenizers` 1.0.0-rc.3 (the crate is called `tk` here): 60 to 100 times
//!   faster on a 128K byte-level BPE, but a release candidate that reads only its own canonical
//!   JSON, so the file goes through its `tk-convert` upgrade pass first;
//! - [`Engine::Reference`], `tokenizers` 0.23.2: the library the tokenizer was trained with,
//!   whose ids Python's `tokenizers` reproduces.
//!
//! [`EngineChoice::Auto`] uses the fast engine when it reads the file *and* gives the
//! reference's ids on the [probe texts](super::probe), and falls back to the reference
//! otherwise, keeping the reason ([`Encoder::fallback_reason`]).
//!
//! Encoding adds no special tokens (no post-processor: the packer frames documents itself),
//! applies no truncation or padding from the file, and treats special-token strings in the text
//! as text (see [`special`](super::special)). Each call runs on the calling thread: no rayon.

use std::cell::RefCell;
use std::fmt;

use tk::pipeline::{EncodeOptions, Override, PipelineToken, PipelineTokenizer};
use tokenizers::Tokenizer;

use super::engine::Engine;
use super::error::{Result, TokenizerError};
use super::load::TokenizerJson;
use super::probe::probe_texts;

/// Which engine an [`Encoder`] should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// The fast engine if it reads the file and matches the reference on the probe texts,
    /// else the reference.
    #[default]
    Auto,
    /// The fast engine, or [`TokenizerError::FastEngineUnavailable`].
    Fast,
    /// The reference engine.
    Reference,
}

/// Encodes documents to ids. `Send + Sync`: share one behind an `Arc` between worker threads.
pub struct Encoder {
    backend: Backend,
    fallback_reason: Option<String>,
}

enum Backend {
    Fast(PipelineTokenizer),
    Reference(Box<Tokenizer>),
}

thread_local! {
    /// The fast engine's output buffer, reused by every call on this thread.
    static FAST_IDS: RefCell<Vec<PipelineToken>> = const { RefCell::new(Vec::new()) };
}

/// Options for the fast engine: no post-processor, no truncation or padding, and special-token
/// strings in the text encoded as text.
fn fast_options() -> EncodeOptions {
    EncodeOptions {
        add_special_tokens: false,
        encode_special_tokens: true,
        padding: Override::Off,
        truncation: Override::Off,
    }
}

impl Encoder {
    /// An encoder for `tokenizer` on the engine `choice` asks for.
    ///
    /// The fast engine's verdict is cached with the tokenizer ([`TokenizerJson::load`]):
    /// when the cache says it agrees, it is built from the cached canonical JSON and the
    /// reference engine is never parsed.
    pub fn new(tokenizer: &TokenizerJson, choice: EngineChoice) -> Result<Self> {
        if choice != EngineChoice::Reference {
            match tokenizer.cached_fast() {
                Some(Ok(canonical)) => {
                    if let Ok(fast) = tk::from_json(&canonical) {
                        return Ok(Self {
                            backend: Backend::Fast(fast),
                            fallback_reason: None,
                        });
                    }
                }
                Some(Err(reason)) if choice == EngineChoice::Fast => {
                    return Err(TokenizerError::FastEngineUnavailable { reason });
                }
                Some(Err(reason)) => {
                    let reference = reference_engine(tokenizer.reference()?)?;
                    return Ok(Self::reference(reference, Some(reason)));
                }
                None => {}
            }
        }
        let reference = reference_engine(tokenizer.reference()?)?;
        let fast = match choice {
            EngineChoice::Reference => return Ok(Self::reference(reference, None)),
            EngineChoice::Auto | EngineChoice::Fast => fast_engine(tokenizer.json(), &reference),
        };
        tokenizer.remember_fast(match &fast {
            Ok((_, canonical)) => Ok(canonical.as_str()),
            Err(reason) => Err(reason.as_str()),
        });
        let fast = fast.map(|(fast, _)| fast);
        match (fast, choice) {
            (Ok(fast), _) => Ok(Self {
                backend: Backend::Fast(fast),
                fallback_reason: None,
            }),
            (Err(reason), EngineChoice::Fast) => {
                Err(TokenizerError::FastEngineUnavailable { reason })
            }
            (Err(reason), _) => Ok(Self::reference(reference, Some(reason))),
        }
    }

    fn reference(tokenizer: Tokenizer, fallback_reason: Option<String>) -> Self {
        Self {
            backend: Backend::Reference(Box::new(tokenizer)),
            fallback_reason,
        }
    }

    /// The engine in use.
    pub fn engine(&self) -> Engine {
        match self.backend {
            Backend::Fast(_) => Engine::Fast,
            Backend::Reference(_) => Engine::Reference,
        }
    }

    /// Why [`EngineChoice::Auto`] fell back to the reference engine; `None` when it did not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Append the ids of `text` to `ids`, without special tokens. On error `ids` is unchanged.
    pub fn encode_into(&self, text: &str, ids: &mut Vec<u32>) -> Result<()> {
        match &self.backend {
            Backend::Fast(tokenizer) => FAST_IDS.with_borrow_mut(|buf| {
                buf.clear();
                tokenizer
                    .encode_into(text, &fast_options(), buf)
                    .map_err(TokenizerError::library(Engine::Fast, "encode"))?;
                ids.extend_from_slice(PipelineToken::cast_slice(buf));
                Ok(())
            }),
            Backend::Reference(tokenizer) => {
                let encoding = tokenizer
                    .encode_fast(text, false)
                    .map_err(TokenizerError::library(Engine::Reference, "encode"))?;
                ids.extend_from_slice(encoding.get_ids());
                Ok(())
            }
        }
    }

    /// The ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        self.encode_into(text, &mut ids)?;
        Ok(ids)
    }

    /// The text of `ids`, special tokens included (invalid UTF-8 from partial byte-level tokens
    /// is replaced by U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.backend {
            Backend::Fast(tokenizer) => tokenizer
                .decode(ids, false)
                .map_err(TokenizerError::library(Engine::Fast, "decode")),
            Backend::Reference(tokenizer) => tokenizer
                .decode(ids, false)
                .map_err(TokenizerError::library(Engine::Reference, "decode")),
        }
    }
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("engine", &self.engine())
            .field("fallback_reason", &self.fallback_reason)
            .finish()
    }
}

/// The reference tokenizer set up for encoding: no truncation, no padding, special-token strings
/// in the text encoded as text.
fn reference_engine(tokenizer: &Tokenizer) -> Result<Tokenizer> {
    let mut tokenizer = tokenizer.clone();
    tokenizer
        .with_truncation(None)
        .map_err(TokenizerError::library(
            Engine::Reference,
            "disable truncation",
        ))?;
    tokenizer.with_padding(None);
    tokenizer.set_encode_special_tokens(true);
    Ok(tokenizer)
}

/// The fast engine for `json` and the canonical JSON it read, if it reads it and agrees
/// with `reference` on the probe texts; otherwise why not.
fn fast_engine(json: &str, reference: &Tokenizer) -> Result<(PipelineTokenizer, String), String> {
    let canonical =
        tk::canonicalize_str(json).map_err(|e| format!("tk-convert cannot upgrade it: {e}"))?;
    let fast = tk::from_json(&canonical).map_err(|e| format!("it cannot read it: {e}"))?;
    for (i, text) in probe_texts().iter().enumerate() {
        let expected = reference
            .encode_fast(text.as_str(), false)
            .map_err(|e| format!("the reference cannot encode probe text {i}: {e}"))?;
        let mut got = Vec::new();
        fast.encode_into(text, &fast_options(), &mut got)
            .map_err(|e| format!("it cannot encode probe text {i}: {e}"))?;
        if PipelineToken::cast_slice(&got) != expected.get_ids() {
            return Err(format!(
                "its ids differ from the reference on probe text {i}"
            ));
        }
    }
    Ok((fast, canonical))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    use super::super::ModelKind;
    use super::super::test_support::{builtin_corpus, llama3, sotu, trained, wikipedia};
    use super::*;
    use cocolm_shared::SpecialTokens;

    const MODELS: [ModelKind; 3] = [ModelKind::Bpe, ModelKind::WordPiece, ModelKind::Unigram];

    /// Probe texts, the built-in corpus, and every `step`-th document of the shared corpora
    /// when present.
    fn real_texts(step: usize) -> Vec<String> {
        let mut texts = probe_texts();
        texts.extend(builtin_corpus());
        texts.extend(sotu().unwrap_or_default().into_iter().step_by(step));
        texts.extend(wikipedia().unwrap_or_default().into_iter().step_by(step));
        texts
    }

    /// Both engines for `tokenizer`; panics if the fast one is unavailable.
    fn both(tokenizer: &TokenizerJson) -> (Encoder, Encoder) {
        (
            Encoder::new(tokenizer, EngineChoice::Fast).unwrap(),
            Encoder::new(tokenizer, EngineChoice::Reference).unwrap(),
        )
    }

    fn assert_same_ids(tokenizer: &TokenizerJson, texts: &[String], what: &str) {
        let (fast, reference) = both(tokenizer);
        assert_eq!(
            (fast.engine(), reference.engine()),
            (Engine::Fast, Engine::Reference)
        );
        let mut tokens = 0;
        for (i, text) in texts.iter().enumerate() {
            let expected = reference.encode(text).unwrap();
            let got = fast.encode(text).unwrap();
            assert!(
                got == expected,
                "{what}: text {i} ({:?}…) encodes differently",
                text.chars().take(60).collect::<String>()
            );
            tokens += got.len();
        }
        eprintln!("{what}: {} texts, {tokens} tokens, same ids", texts.len());
    }

    #[test]
    fn engines_agree_on_trained_tokenizers() {
        let texts = real_texts(5);
        for kind in MODELS {
            assert_same_ids(trained(kind), &texts, &format!("{kind:?}"));
        }
    }

    #[test]
    fn engines_agree_on_llama3() {
        let Some(llama3) = llama3() else { return };
        assert_same_ids(llama3, &real_texts(1), "llama3");
    }

    #[test]
    fn special_token_strings_in_text_are_text() {
        let text = "[PAD] [CLS] x [SEP] [MASK] [UNK][MASK]<|begin_of_text|><|eot_id|>";
        let mut tokenizers: Vec<&TokenizerJson> = MODELS.iter().map(|&k| trained(k)).collect();
        tokenizers.extend(llama3());
        for tokenizer in tokenizers {
            let specials = tokenizer.special_tokens();
            let (fast, reference) = both(tokenizer);
            for encoder in [&fast, &reference] {
                let ids = encoder.encode(text).unwrap();
                assert!(ids.len() > 8, "{:?}: {ids:?}", encoder.engine());
                assert!(
                    !ids.iter().any(|&id| specials.contains(id) || id >= 128_000),
                    "{:?}: a special id in {ids:?}",
                    encoder.engine()
                );
            }
        }
    }

    #[test]
    fn byte_level_decoding_restores_the_text() {
        let mut tokenizers = vec![trained(ModelKind::Bpe)];
        tokenizers.extend(llama3());
        for tokenizer in tokenizers {
            let (fast, reference) = both(tokenizer);
            for text in probe_texts() {
                let ids = fast.encode(&text).unwrap();
                assert_eq!(fast.decode(&ids).unwrap(), text);
                assert_eq!(reference.decode(&ids).unwrap(), text);
            }
            let specials = tokenizer.special_tokens().ids();
            assert_eq!(
                fast.decode(&specials).unwrap(),
                SpecialTokens::NAMES.concat()
            );
            assert_eq!(
                reference.decode(&specials).unwrap(),
                SpecialTokens::NAMES.concat()
            );
        }
    }

    #[test]
    fn auto_uses_the_fast_engine_and_falls_back_with_a_reason() {
        let tokenizer = trained(ModelKind::Bpe);
        let auto = Encoder::new(tokenizer, EngineChoice::Auto).unwrap();
        assert_eq!(auto.engine(), Engine::Fast);
        assert_eq!(auto.fallback_reason(), None);

        // tk-convert refuses a ByteLevel pre-tokenizer that adds a prefix space.
        let json = tokenizer.json().replace(
            "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true",
            "\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true",
        );
        assert_ne!(json, tokenizer.json());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prefix-space.json");
        std::fs::write(&path, json).unwrap();
        let prefixed = TokenizerJson::load(&path).unwrap();
        let auto = Encoder::new(&prefixed, EngineChoice::Auto).unwrap();
        assert_eq!(auto.engine(), Engine::Reference);
        let reason = auto.fallback_reason().unwrap();
        assert!(reason.contains("add_prefix_space"), "{reason}");
        let err = Encoder::new(&prefixed, EngineChoice::Fast).unwrap_err();
        assert!(
            matches!(err, TokenizerError::FastEngineUnavailable { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn one_encoder_serves_several_threads() {
        let encoder = Arc::new(Encoder::new(trained(ModelKind::Bpe), EngineChoice::Auto).unwrap());
        let texts = Arc::new(builtin_corpus());
        let expected: Vec<Vec<u32>> = texts.iter().map(|t| encoder.encode(t).unwrap()).collect();
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (encoder, texts) = (Arc::clone(&encoder), Arc::clone(&texts));
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    texts
                        .iter()
                        .skip(w)
                        .map(|text| {
                            ids.clear();
                            encoder.encode_into(text, &mut ids).unwrap();
                            ids.clone()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (w, worker) in workers.into_iter().enumerate() {
            assert_eq!(worker.join().unwrap(), expected[w..]);
        }
    }

    /// The ids Python `tokenizers` gives for `texts`, or `None` (after saying why) when no
    /// Python with `tokenizers` is at hand (`COCOLM_PYTHON`, default `python3`).
    fn python_ids(tokenizer: &TokenizerJson, texts: &[String]) -> Option<Vec<Vec<u32>>> {
        let python = std::env::var("COCOLM_PYTHON").unwrap_or_else(|_| "python3".into());
        let has_tokenizers = Command::new(&python)
            .args(["-c", "import tokenizers"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_tokenizers {
            eprintln!("skipping: {python} cannot import tokenizers (set COCOLM_PYTHON)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tokenizer.save(&path).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/tokenizer_ids.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let input = serde_json::to_vec(texts).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(output.status.success(), "{script:?} failed");
        Some(serde_json::from_slice(&output.stdout).unwrap())
    }

    #[test]
    fn python_gives_the_same_ids() {
        let mut texts = probe_texts();
        texts.extend(builtin_corpus().into_iter().take(50));
        texts.extend(sotu().unwrap_or_default().into_iter().step_by(10));
        texts.extend(wikipedia().unwrap_or_default().into_iter().step_by(20));
        let mut tokenizers: Vec<(String, &TokenizerJson)> = MODELS
            .iter()
            .map(|&k| (format!("{k:?}"), trained(k)))
            .collect();
        tokenizers.extend(llama3().map(|t| ("llama3".to_string(), t)));
        for (name, tokenizer) in tokenizers {
            let Some(expected) = python_ids(tokenizer, &texts) else {
                return;
            };
            let encoder = Encoder::new(tokenizer, EngineChoice::Auto).unwrap();
            for (i, (text, expected)) in texts.iter().zip(&expected).enumerate() {
                assert!(
                    encoder.encode(text).unwrap() == *expected,
                    "{name}: text {i} ({:?}…) differs from Python",
                    text.chars().take(60).collect::<String>()
                );
            }
            eprintln!("{name}: {} texts, same ids as Python", texts.len());
        }
    }

    #[test]
    fn encoder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Encoder>();
        assert_send_sync::<TokenizerJson>();
    }
}
