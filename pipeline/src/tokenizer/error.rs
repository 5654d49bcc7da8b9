//! The errors of the tokenizer module.

use std::path::PathBuf;

use super::engine::Engine;

/// Result alias for the tokenizer module.
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// What can go wrong training, loading, saving or running a tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file starts like a zstd stream but does not decompress (truncated or corrupt).
    #[error("{path}: corrupt or truncated zstd stream: {source}")]
    Decompress {
        /// The file.
        path: PathBuf,
        /// What the zstd decoder said.
        source: std::io::Error,
    },
    /// The (decompressed) content is not a `tokenizer.json` that `tokenizers` 0.23.2 reads.
    #[error("{path}: not a valid tokenizer.json: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and column where it knows them.
        message: String,
    },
    /// A training option is out of range.
    #[error("invalid tokenizer training option {option}: {message}")]
    InvalidOption {
        /// The option (`vocab_size`, …).
        option: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The tokenizers library refused an operation (training, adding tokens, serialising,
    /// encoding, decoding).
    #[error("{engine}: {op} failed: {message}")]
    Library {
        /// Which library.
        engine: Engine,
        /// The operation (`train`, `encode`, …).
        op: &'static str,
        /// What the library said.
        message: String,
    },
    /// [`EngineChoice::Fast`](super::EngineChoice::Fast) was asked for, but that engine cannot
    /// read this tokenizer or does not give the same ids as the reference.
    #[error("the fast tokenizer engine cannot be used: {reason}")]
    FastEngineUnavailable {
        /// Why.
        reason: String,
    },
    /// Writing through the shared helpers failed.
    #[error(transparent)]
    Shared(#[from] cocolm_shared::Error),
}

impl TokenizerError {
    /// A [`TokenizerError::Io`] for `path`.
    pub(super) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TokenizerError::Io {
            path: path.into(),
            source,
        }
    }

    /// A closure that turns a library error into [`TokenizerError::Library`], for `map_err`.
    pub(super) fn library<E: std::fmt::Display>(
        engine: Engine,
        op: &'static str,
    ) -> impl FnOnce(E) -> Self {
        move |e| TokenizerError::Library {
            engine,
            op,
            message: e.to_string(),
        }
    }
}
