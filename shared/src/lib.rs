//! What both sides of cocolm speak.
//!
//! The corpus pipeline (`cocolm-pipeline`) and the trainer (`cocolm-trainer`) do not
//! depend on each other. They meet here:
//!
//! - [`config`]: the run configuration read from TOML (model, training, data);
//! - [`batch`]: the [`Batch`] a loader worker hands through the queue to the trainer;
//! - [`manifest`]: the `manifest.json` that describes a shard directory;
//! - [`cursor`]: the exact position of a loader in its epoch, stored in checkpoints;
//! - [`error`]: the errors these types raise when read from disk;
//! - [`stop`] and [`lock`]: a clean-stop request and one writer per output folder, for
//!   the long jobs of both sides;
//! - [`simd`]: the hot loops of both sides under AVX2 where the CPU has it.
#![warn(missing_docs)]

pub mod batch;
pub mod config;
pub mod cursor;
pub mod error;
pub mod hash;
pub mod lock;
pub mod manifest;
pub mod simd;
pub mod stop;

pub use batch::{Batch, CropView};
pub use config::{
    DataConfig, DataSource, DecayScope, Device, ModelConfig, Precision, RunConfig, TrainConfig,
};
pub use cursor::LoaderCursor;
pub use error::{Error, Result};
pub use lock::DirLock;
pub use manifest::{
    Dedup, InputFileRecord, Manifest, ManifestState, ShardRecord, SpecialTokens, TokenizerRecord,
};
pub use stop::Stop;
