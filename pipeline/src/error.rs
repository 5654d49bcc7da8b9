//! The one error type of the pipeline crate.

use datafusion::error::DataFusionError;
use std::fmt;
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
    /// An object in a store (or a store) could not be listed or read, after retries.
    #[error("{url}: {message}")]
    Remote {
        /// The object's (or the store's) URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// A shard file is missing, truncated, corrupted or inconsistent with the manifest.
    #[error("{path}: corrupt shard{}: {message}", AtByte(*.offset))]
    Shard {
        /// The shard file.
        path: PathBuf,
        /// Byte offset in the file of the message that failed to decode, or of the record
        /// batch holding the bad data; `None` for whole-file faults (size, checksum).
        offset: Option<u64>,
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
    /// The job was asked to stop ([`cocolm_shared::Stop`], a signal) and did: what is
    /// committed in `out` is consistent, and the same command resumes from it.
    #[error(
        "{out}: stopped (signal {signal}) with {shards} complete shard(s) committed; run the same command to resume"
    )]
    Interrupted {
        /// The output directory.
        out: PathBuf,
        /// The signal (or other cause) of the request.
        signal: i32,
        /// Shards committed to the manifest.
        shards: usize,
    },
    /// A tokenizer could not be trained, loaded or run.
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    /// `--strict` was given and a document was rejected.
    #[error("{input}: {detail} (rejected under --strict)")]
    Strict {
        /// The input file or object.
        input: String,
        /// Where and why.
        detail: String,
    },
    /// A SQL statement over the shards failed to plan or run, or its result could not
    /// be read.
    #[error("sql: {source}")]
    Sql {
        /// The statement.
        query: String,
        /// What DataFusion (or Arrow, wrapped by it) said.
        source: Box<DataFusionError>,
    },
    /// A table for SQL (`examples`, `shards`, `inputs`) could not be built or registered.
    #[error("sql: building table {table}: {source}")]
    SqlTable {
        /// The table.
        table: &'static str,
        /// What DataFusion (or Arrow, wrapped by it) said.
        source: Box<DataFusionError>,
    },
    /// The runtime that runs SQL queries could not start.
    #[error("sql: starting the query runtime: {source}")]
    SqlRuntime {
        /// The underlying error.
        source: std::io::Error,
    },
    /// The loader was asked for something its shard set cannot give.
    #[error("loader: {field}: {message}")]
    LoaderConfig {
        /// The offending option (`rank`, `batch_size`, `world`, `cursor.position`).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The loader delivered an error before and delivers nothing more.
    #[error("loader: stopped after an earlier error")]
    LoaderStopped,
    /// A worker thread (prepare's reader or tokenizers, the loader's workers) panicked.
    #[error("thread {thread} panicked: {message}")]
    WorkerPanicked {
        /// The thread's name, which names its stage (`cocolm-read`, `cocolm-encode-2`,
        /// `cocolm-loader-0`).
        thread: String,
        /// The panic message (`<non-string panic payload>` when it was not a string).
        message: String,
    },
    /// Worker threads ended without delivering every result and without an error (a bug
    /// in cocolm, not a problem with the data).
    #[error("{stage}: worker threads ended before delivering every result")]
    WorkersEnded {
        /// The stage (`prepare`, `loader`).
        stage: &'static str,
    },
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

    /// An [`Error::Shard`] for the whole of `path` (no offset).
    pub fn shard(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Shard {
            path: path.into(),
            offset: None,
            message: message.into(),
        }
    }

    /// An [`Error::Shard`] at byte `offset` of `path`.
    pub fn shard_at(path: impl Into<PathBuf>, offset: u64, message: impl Into<String>) -> Self {
        Error::Shard {
            path: path.into(),
            offset: Some(offset),
            message: message.into(),
        }
    }

    /// A closure that turns a DataFusion or Arrow error of `query` into [`Error::Sql`],
    /// for `map_err`.
    pub fn sql<E: Into<DataFusionError>>(query: &str) -> impl FnOnce(E) -> Self + '_ {
        move |e| Error::Sql {
            query: query.to_string(),
            source: Box::new(e.into()),
        }
    }

    /// A closure that turns a DataFusion or Arrow error while building `table` into
    /// [`Error::SqlTable`], for `map_err`.
    pub fn sql_table<E: Into<DataFusionError>>(table: &'static str) -> impl FnOnce(E) -> Self {
        move |e| Error::SqlTable {
            table,
            source: Box::new(e.into()),
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

/// ` at byte N` when the offset is known, else nothing.
struct AtByte(Option<u64>);

impl fmt::Display for AtByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(offset) => write!(f, " at byte {offset}"),
            None => Ok(()),
        }
    }
}
