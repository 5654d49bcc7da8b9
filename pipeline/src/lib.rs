//! The data side of cocolm: raw corpora in, memory-mapped Arrow shards out, and the
//! streaming, corrupting loader that feeds them to the trainer.
//!
//! - [`corpus`]: streaming readers of `.txt`, `.jsonl` (optionally zstd) and `.parquet`;
//! - [`tokenizer`]: training (HF `tokenizers`), loading and fast encoding;
//! - [`pack`]: documents into fixed-length `[CLS] … [SEP]` examples;
//! - [`shard`]: the Arrow IPC shard format, its writer and memory-mapped reader;
//! - [`prepare`]: the resumable, parallel `cocolm prepare` job, whole or in parts
//!   ([`merge`] joins them);
//! - [`loader`], [`corrupt`], [`queue`]: deterministic order, COCO-LM masking, and the
//!   worker pool that hands [`cocolm_shared::Batch`]es to the trainer;
//! - [`stats`], [`export`]: SQL over shards (DataFusion) and Parquet interchange.
#![warn(missing_docs)]

pub mod corpus;
pub mod corrupt;
pub mod cpu;
pub mod error;
pub mod export;
pub mod loader;
pub mod merge;
pub mod pack;
pub mod prepare;
pub mod queue;
pub mod shard;
pub mod stats;
pub mod tokenizer;
mod worker;

#[cfg(test)]
mod testutil;

pub use error::{Error, Result};
