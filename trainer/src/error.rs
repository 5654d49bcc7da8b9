//! The one error type of the trainer crate.

use std::path::{Path, PathBuf};

/// Result alias of the trainer crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, training, checkpointing or loading a model.
///
/// File variants carry the path; shape variants carry the operation (or tensor name), the
/// expected and the found value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing, renaming or syncing a file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A safetensors file could not be parsed or written.
    #[error("{path}: safetensors: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the safetensors crate said.
        message: String,
    },
    /// A JSON file (checkpoint state, metrics) could not be parsed or written.
    #[error("{path}: JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde said.
        message: String,
    },
    /// A tensor the model needs is absent from a weights file.
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// A weights file holds tensors the model has no place for.
    #[error("{path}: unexpected tensors {names:?}")]
    UnexpectedTensors {
        /// The weights file.
        path: PathBuf,
        /// The names nobody consumed (at most a few are listed).
        names: Vec<String>,
    },
    /// A stored tensor has the wrong shape or element type.
    #[error("{path}: tensor `{name}`: expected {expected}, found {got}")]
    TensorMismatch {
        /// The weights file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// Expected shape / dtype, written out.
        expected: String,
        /// Found shape / dtype, written out.
        got: String,
    },
    /// The run configuration cannot build a model or a training loop.
    #[error("configuration: {field}: {message}")]
    Config {
        /// The offending field, as `table.field`.
        field: String,
        /// Why.
        message: String,
    },
    /// A batch handed to the trainer is inconsistent (wrong buffer length, bad id, …).
    #[error("batch {seq}: {field}: expected {expected}, got {got}")]
    Batch {
        /// `Batch::seq` of the offending batch.
        seq: u64,
        /// The offending field.
        field: &'static str,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// The loss or the gradient norm became NaN or infinite; nothing was applied.
    #[error(
        "step {step}: {what} is not finite ({value}); training stopped, the last good checkpoint is {}",
        last_checkpoint.as_ref().map_or_else(|| "none".to_string(), |p| p.display().to_string())
    )]
    NonFinite {
        /// The optimiser step that failed (0-based).
        step: u64,
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The offending value.
        value: f64,
        /// The newest checkpoint on disk, intact.
        last_checkpoint: Option<PathBuf>,
    },
    /// The batch source returned an error.
    #[error("batch source failed before step {step}: {source}")]
    Data {
        /// The optimiser step that was waiting for data.
        step: u64,
        /// The source's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A collective operation across data-parallel ranks failed (another rank failed or
    /// left, or the ranks disagree on the operation or its size).
    #[error("rank {rank}: {op} failed: {message}")]
    Collective {
        /// The operation.
        op: &'static str,
        /// This rank.
        rank: usize,
        /// Why.
        message: String,
    },
    /// The device cannot be used (a library, the GPU or the toolkit is missing).
    #[error("{device}: {message}")]
    Device {
        /// The device (`cuda:0`).
        device: String,
        /// What is missing.
        message: String,
    },
    /// The launch variables of a data-parallel run are missing or inconsistent.
    #[error("launch: {variable}: {message}")]
    Launch {
        /// The environment variable at fault.
        variable: String,
        /// What is wrong.
        message: String,
    },
    /// The ranks could not meet at the rendezvous address.
    #[error("rendezvous at {address}: {message}")]
    Rendezvous {
        /// `MASTER_ADDR:MASTER_PORT`.
        address: String,
        /// What happened.
        message: String,
    },
    /// A checkpoint directory is unusable (wrong format version, mismatched model, …).
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A checkpoint of a format this build does not read (not damage: resume stops
    /// instead of passing over it).
    #[error(
        "checkpoint {path}: format version {version}, {}",
        if *version < crate::checkpoint::FORMAT_VERSION {
            "written by an earlier cocolm whose model differs from the released COCO-LM \
             (format 4 on: the CLM head is the tied projection alone, relative positions \
             use COCO-LM's buckets, the SCL loss is halved); this build cannot continue \
             it: start a new run, or finish this one with the cocolm that wrote it"
        } else {
            "written by a newer cocolm; this build reads format 4"
        }
    )]
    CheckpointFormat {
        /// The checkpoint directory.
        path: PathBuf,
        /// The version its `state.json` records.
        version: u32,
    },
}

impl Error {
    /// An [`Error::Io`] naming `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// An [`Error::Config`].
    pub fn config(field: &str, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
