//! [`train`]: a new tokenizer from a stream of documents, with `tokenizers` 0.23.2's trainers.
//!
//! | [`ModelKind`] | normalizer | pre-tokenizer | decoder |
//! |---|---|---|---|
//! | `Bpe` (default) | none | `ByteLevel` (GPT-2 regex, no prefix space) | `ByteLevel` |
//! | `WordPiece` | `BertNormalizer`, cased | `BertPreTokenizer` | `WordPiece` (`##`) |
//! | `Unigram` | `NFKC` | `Metaspace` (`▁`, always prepended) | `Metaspace` |
//!
//! Byte-level BPE is GPT-2's and RoBERTa's scheme: every byte is in the alphabet, so no text
//! is ever unknown. The special tokens take the fixed ids [`TRAINED_SPECIAL_TOKENS`] (0–4)
//! and the file carries a `[CLS] $A [SEP]` template, so that Python's `encode(text)` frames a
//! document as the packer does; cocolm itself encodes without it. Unigram's special pieces are
//! rescored so that no text reaches them (see `make_special_pieces_unreachable`).
//!
//! BPE training is reproducible: the same documents in the same order give the same JSON, hash
//! included. WordPiece and Unigram training in `tokenizers` 0.23.2 is not (its trainers
//! iterate hash maps with random seeds), so keep the file a run produced.
//!
//! The trainers pre-tokenize on rayon's current pool: run [`train`] inside a
//! `rayon::ThreadPool::install` (or set `RAYON_NUM_THREADS`) to bound its threads.

use cocolm_shared::SpecialTokens;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::{BertNormalizer, unicode::NFKC};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, Tokenizer};

use super::engine::Engine;
use super::error::{Result, TokenizerError};
use super::load::TokenizerJson;
use super::special::{TRAINED_SPECIAL_TOKENS, special_added_tokens};

/// The subword model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelKind {
    /// Byte-level BPE (GPT-2, RoBERTa).
    #[default]
    Bpe,
    /// WordPiece (BERT), cased.
    WordPiece,
    /// Unigram language model (SentencePiece style).
    Unigram,
}

/// What to train.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainOptions {
    /// The subword model.
    pub model: ModelKind,
    /// Ids in the result, special tokens included, from
    /// [`TrainOptions::min_vocab_size`] to `u32::MAX`. The result is smaller when the corpus
    /// does not hold that many distinct pieces, and, for WordPiece, larger when the corpus has
    /// more distinct characters (every one is kept).
    pub vocab_size: usize,
    /// BPE and WordPiece: the fewest occurrences a pair needs to be merged. Ignored by Unigram.
    pub min_frequency: u64,
}

impl TrainOptions {
    /// `model` with `vocab_size` ids, merging pairs seen at least twice.
    pub fn new(model: ModelKind, vocab_size: usize) -> Self {
        Self {
            model,
            vocab_size,
            min_frequency: 2,
        }
    }

    /// The smallest accepted `vocab_size`: the special tokens, plus for byte-level BPE its 256
    /// byte symbols, else one more piece.
    pub fn min_vocab_size(&self) -> usize {
        let alphabet = match self.model {
            ModelKind::Bpe => ByteLevel::alphabet().len(),
            ModelKind::WordPiece | ModelKind::Unigram => 1,
        };
        SpecialTokens::NAMES.len() + alphabet
    }
}

/// Train a tokenizer on `documents`, one `String` per document.
///
/// The documents are consumed once, in a stream (rayon workers pre-tokenize them; only the
/// word counts are kept), so the corpus need not fit in memory. The iterator must be `Send`.
pub fn train<I>(documents: I, options: &TrainOptions) -> Result<TokenizerJson>
where
    I: IntoIterator<Item = String>,
    I::IntoIter: Send,
{
    let min = options.min_vocab_size();
    if options.vocab_size < min || options.vocab_size > u32::MAX as usize {
        return Err(TokenizerError::InvalidOption {
            option: "vocab_size",
            message: format!(
                "{} is out of range for {:?}: from {min} to {}",
                options.vocab_size,
                options.model,
                u32::MAX
            ),
        });
    }
    let (mut tokenizer, mut trainer) = untrained(options)?;
    tokenizer
        .train(&mut trainer, documents.into_iter())
        .map_err(TokenizerError::library(Engine::Reference, "train"))?;
    make_special_pieces_unreachable(&mut tokenizer)?;
    tokenizer.with_post_processor(Some(cls_sep_template()?));
    let trained = TokenizerJson::from_built(&tokenizer)?;
    if trained.special_tokens() != TRAINED_SPECIAL_TOKENS {
        return Err(TokenizerError::Library {
            engine: Engine::Reference,
            op: "train",
            message: format!(
                "special tokens at {:?}, expected {TRAINED_SPECIAL_TOKENS:?}",
                trained.special_tokens()
            ),
        });
    }
    Ok(trained)
}

/// The empty tokenizer and its trainer for `options`, whose `vocab_size` [`train`] checked.
fn untrained(options: &TrainOptions) -> Result<(Tokenizer, TrainerWrapper)> {
    let vocab_size = options.vocab_size;
    let specials = special_added_tokens();
    let (model, trainer, normalizer, pre_tokenizer, decoder): (
        ModelWrapper,
        TrainerWrapper,
        Option<NormalizerWrapper>,
        PreTokenizerWrapper,
        DecoderWrapper,
    ) = match options.model {
        ModelKind::Bpe => (
            BPE::default().into(),
            BpeTrainer::builder()
                .vocab_size(vocab_size)
                .min_frequency(options.min_frequency)
                .special_tokens(specials)
                .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
                .show_progress(false)
                .build()
                .into(),
            None,
            ByteLevel::new(false, true, true).into(),
            ByteLevel::default().into(),
        ),
        ModelKind::WordPiece => (
            WordPiece::default().into(),
            WordPieceTrainer::builder()
                .vocab_size(vocab_size)
                .min_frequency(options.min_frequency)
                .special_tokens(specials)
                .show_progress(false)
                .build()
                .into(),
            Some(BertNormalizer::new(true, true, Some(false), false).into()),
            BertPreTokenizer.into(),
            WordPieceDecoder::default().into(),
        ),
        ModelKind::Unigram => {
            let mut trainer = UnigramTrainer::default();
            // In range: `train` checked `vocab_size <= u32::MAX`.
            trainer.vocab_size = vocab_size as u32;
            trainer.special_tokens = specials;
            trainer.unk_token = Some(SpecialTokens::NAMES[4].to_string());
            // See `make_special_pieces_unreachable`.
            trainer.initial_alphabet = SpecialTokens::NAMES.concat().chars().collect();
            trainer.show_progress = false;
            let metaspace = Metaspace::new('▁', PrependScheme::Always, true);
            (
                Unigram::default().into(),
                trainer.into(),
                Some(NFKC.into()),
                metaspace.clone().into(),
                metaspace.into(),
            )
        }
    };
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(normalizer)
        .map_err(TokenizerError::library(
            Engine::Reference,
            "set the normalizer",
        ))?;
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(decoder));
    Ok((tokenizer, trainer))
}

/// Make the Unigram pieces of the special tokens unreachable from text.
///
/// The Unigram trainer keeps the special tokens as ordinary pieces with score 0, the best
/// there is, so a document that spells `[MASK]` would get id 3. Each is rescored below any
/// path through single characters: at most `n` pieces, each scoring at least the lowest score
/// `f`, cover an `n`-character string, so `(n + 1) * f` always loses, provided every character
/// of the names is in the vocabulary (the trainer's initial alphabet sees to that). The lowest
/// score, and the unknown-character score derived from it, drop too; that changes no other
/// segmentation, because an unknown character has no alternative in any path. Other models
/// never produce their special pieces from text.
fn make_special_pieces_unreachable(tokenizer: &mut Tokenizer) -> Result<()> {
    let ModelWrapper::Unigram(unigram) = tokenizer.get_model() else {
        return Ok(());
    };
    let longest = SpecialTokens::NAMES
        .iter()
        .map(|name| name.chars().count())
        .max();
    let longest = longest.unwrap_or_default();
    let score = unigram.min_score * (longest + 1) as f64;
    let pieces = unigram
        .iter()
        .map(|(piece, old)| {
            let special = SpecialTokens::NAMES.contains(&piece.as_str());
            (piece.clone(), if special { score } else { *old })
        })
        .collect();
    let unk = TRAINED_SPECIAL_TOKENS.unk as usize;
    let rescored = Unigram::from(pieces, Some(unk), unigram.byte_fallback()).map_err(
        TokenizerError::library(Engine::Reference, "rescore special pieces"),
    )?;
    tokenizer.with_model(rescored);
    Ok(())
}

/// The post-processor `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B:1 [SEP]:1`.
fn cls_sep_template() -> Result<TemplateProcessing> {
    const OP: &str = "build the [CLS]/[SEP] template";
    let mut builder = TemplateProcessing::builder();
    builder
        .try_single("[CLS] $A [SEP]")
        .map_err(TokenizerError::library(Engine::Reference, OP))?;
    builder
        .try_pair("[CLS] $A [SEP] $B:1 [SEP]:1")
        .map_err(TokenizerError::library(Engine::Reference, OP))?;
    builder
        .special_tokens(vec![
            ("[CLS]", TRAINED_SPECIAL_TOKENS.cls),
            ("[SEP]", TRAINED_SPECIAL_TOKENS.sep),
        ])
        .build()
        .map_err(TokenizerError::library(Engine::Reference, OP))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{builtin_corpus, distinct_words_corpus, trained};
    use super::super::{Encoder, EngineChoice};
    use super::*;

    #[test]
    fn every_model_puts_the_special_tokens_at_ids_0_to_4() {
        for kind in [ModelKind::Bpe, ModelKind::WordPiece, ModelKind::Unigram] {
            let tokenizer = trained(kind);
            assert_eq!(
                tokenizer.special_tokens(),
                TRAINED_SPECIAL_TOKENS,
                "{kind:?}"
            );
            assert!(tokenizer.added_special_tokens().is_empty(), "{kind:?}");
            let added = tokenizer.reference().unwrap().get_added_tokens_decoder();
            for (id, name) in SpecialTokens::NAMES.iter().enumerate() {
                let token = &added[&(id as u32)];
                assert_eq!(token.content, *name, "{kind:?}");
                assert!(token.special, "{kind:?}: {name} is not special");
            }
        }
    }

    #[test]
    fn vocab_size_is_reached_when_the_corpus_allows() {
        assert_eq!(trained(ModelKind::Bpe).vocab_size(), 2000);
        assert_eq!(trained(ModelKind::Unigram).vocab_size(), 2000);
        assert!(trained(ModelKind::WordPiece).vocab_size() >= 2000);
    }

    #[test]
    fn the_template_frames_a_document_with_cls_and_sep() {
        for kind in [ModelKind::Bpe, ModelKind::WordPiece, ModelKind::Unigram] {
            let reference = trained(kind).reference().unwrap();
            let ids = reference.encode("kalo mine", true).unwrap();
            let ids = ids.get_ids();
            assert_eq!(ids.first(), Some(&TRAINED_SPECIAL_TOKENS.cls), "{kind:?}");
            assert_eq!(ids.last(), Some(&TRAINED_SPECIAL_TOKENS.sep), "{kind:?}");
            assert!(ids.len() > 2, "{kind:?}");
        }
    }

    #[test]
    fn a_vocab_size_below_the_alphabet_is_refused() {
        let options = TrainOptions::new(ModelKind::Bpe, 200);
        let err = train(builtin_corpus(), &options).unwrap_err();
        assert!(
            matches!(
                err,
                TokenizerError::InvalidOption {
                    option: "vocab_size",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(options.min_vocab_size(), 261);
    }

    #[test]
    fn a_vocabulary_beyond_128k_trains_and_both_engines_agree() {
        let corpus = distinct_words_corpus(2000);
        let start = std::time::Instant::now();
        let tokenizer = train(corpus.clone(), &TrainOptions::new(ModelKind::Bpe, 140_000)).unwrap();
        eprintln!(
            "trained 140,000 ids in {:.1} s",
            start.elapsed().as_secs_f64()
        );
        assert_eq!(tokenizer.vocab_size(), 140_000);
        assert_eq!(tokenizer.special_tokens(), TRAINED_SPECIAL_TOKENS);
        let fast = Encoder::new(&tokenizer, EngineChoice::Fast).unwrap();
        let reference = Encoder::new(&tokenizer, EngineChoice::Reference).unwrap();
        let mut highest = 0;
        for text in corpus.iter().step_by(50) {
            let ids = fast.encode(text).unwrap();
            assert_eq!(ids, reference.encode(text).unwrap());
            assert_eq!(fast.decode(&ids).unwrap(), *text);
            highest = highest.max(ids.iter().copied().max().unwrap_or(0));
        }
        assert!(highest >= 131_072, "highest id {highest}");
    }

    #[test]
    fn bpe_training_is_reproducible() {
        let options = TrainOptions::new(ModelKind::Bpe, 600);
        let first = train(builtin_corpus(), &options).unwrap();
        let second = train(builtin_corpus(), &options).unwrap();
        assert_eq!(first.sha256(), second.sha256());
    }
}
