//! The one error type of the pipeline crate.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the pipeline can fail with. File variants carry the path and, where it
/// is known, the byte offset or line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An input path does not exist or holds no file cocolm can read.
    #[error("{path}: {message}")]
    Input {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A shard file is missing, truncated, corrupted or inconsistent with the manifest.
    #[error("{path}: corrupt shard: {message}")]
    Shard {
        /// The shard file.
        path: PathBuf,
        /// What was found.
        message: String,
    },
    /// An Arrow or Parquet operation failed on a file.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// The output directory holds something `prepare` must not overwrite.
    #[error("{path}: {message}")]
    Output {
        /// The directory.
        path: PathBuf,
        /// Why it cannot be used.
        message: String,
    },
    /// A tokenizer could not be trained, loaded or run.
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    /// `--strict` was given and a document was rejected.
    #[error("{path}: {detail} (rejected under --strict)")]
    Strict {
        /// The input file.
        path: PathBuf,
        /// Where and why.
        detail: String,
    },
    /// A SQL query over the shards failed.
    #[error("sql: {0}")]
    Sql(String),
    /// A loader worker failed or the loader was configured inconsistently.
    #[error("loader: {0}")]
    Loader(String),
    /// A shared type (manifest, config) could not be read or written.
    #[error(transparent)]
    Shared(#[from] cocolm_shared::Error),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Shard`] for `path`.
    pub fn shard(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Shard {
            path: path.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Format`] for `path`.
    pub fn format(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Format {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
