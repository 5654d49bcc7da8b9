//! The tokenizer: train one, load one, encode documents with it.
//!
//! cocolm uses Hugging Face `tokenizers` and its `tokenizer.json` format, so a tokenizer made
//! here loads unchanged in Python (`Tokenizer.from_file`) and gives the same ids there.
//!
//! - [`train`](fn@train) (`train.rs`): a byte-level BPE (default), WordPiece or Unigram
//!   vocabulary from a stream of documents, with `tokenizers` 0.23.2's trainers; the special
//!   tokens `[PAD] [CLS] [SEP] [MASK] [UNK]` take ids 0–4.
//! - [`TokenizerJson::load`] (`load.rs`): an existing `tokenizer.json`, plain or
//!   `.zst`; the special tokens it lacks are appended (`special.rs`); the SHA-256
//!   and vocabulary size of the final JSON go into the shard manifest
//!   ([`TokenizerJson::record`]).
//! - [`Encoder`] (`encode.rs`): text to ids without special tokens, `Send + Sync`,
//!   one call per document on the caller's thread; `tokenizers` 1.0.0-rc.3 when it gives the
//!   same ids as 0.23.2 on the probe texts (`probe.rs`), else 0.23.2.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cocolm_pipeline::tokenizer::{Encoder, EngineChoice, TokenizerJson};
//! let tokenizer = TokenizerJson::load("llama3-128k.tokenizer.json.zst".as_ref())?;
//! let encoder = Encoder::new(&tokenizer, EngineChoice::Auto)?;
//! let mut ids = Vec::new();
//! encoder.encode_into("Four score and seven years ago", &mut ids)?;
//! # Ok(()) }
//! ```

mod cache;
mod encode;
mod engine;
mod error;
mod load;
mod probe;
mod special;
mod train;

pub use encode::{Encoder, EngineChoice};
pub use engine::Engine;
pub use error::{Result, TokenizerError};
pub use load::TokenizerJson;
pub use special::TRAINED_SPECIAL_TOKENS;
pub use train::{ModelKind, TrainOptions, train};

#[cfg(test)]
mod test_support;
