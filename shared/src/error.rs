//! Errors raised while reading shared types from disk.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong reading a configuration or a manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML/JSON for the expected type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with the line where it knows it.
        message: String,
    },
    /// The content parsed but breaks a rule (a value out of range, an inconsistency).
    #[error("{path}: invalid {field}: {message}")]
    Invalid {
        /// The file (or `<config>` when built in code).
        path: PathBuf,
        /// The offending field, dotted (`model.hidden_size`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Another process holds the folder's lock ([`crate::lock::DirLock`]).
    #[error(
        "{dir}: another job is writing here ({holder}); wait for it to end, or choose another folder"
    )]
    Locked {
        /// The locked folder.
        dir: PathBuf,
        /// Who holds it: `pid N: command line`.
        holder: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
