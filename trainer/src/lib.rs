//! The COCO-LM trainer: generator, corrective main model, losses, AdamW, training loop
//! and checkpoints, on burn.
//!
//! - [`model`]: the encoder (2-D activations, T5 relative position bias), the generator
//!   and the corrector sharing one token table ([`model::CocoLm`]);
//! - [`loss`], [`sample`], [`vocab`]: cross-entropy, copy BCE, SCL, the replacement
//!   draw, and the hand-differentiated tied vocabulary heads;
//! - [`step`]: one training step ([`step::Trainer`]): batch upload, the objective
//!   ([`step::objective`]), the backward pass, metrics;
//! - [`optim`]: the [`optim::Optimizer`] trait, [`optim::AdamW`] and the ZeRO-1
//!   [`optim::ShardedAdamW`], clipping, schedule;
//! - [`precision`]: the compute dtype and fp16 loss scaling;
//! - [`checkpoint`]: atomic checkpoint directories and retention;
//! - [`collective`]: the data-parallel seam ([`collective::Collective`]) and its
//!   implementations;
//! - [`train`]: the loop ([`train::run`]) with metrics, checkpoints and resume;
//! - [`hf`]: loading Hugging Face ELECTRA weights (the reference check);
//! - [`synthetic`]: corrupted batches without a corpus (timing, tests);
//! - [`mod@bench`]: step timing for `cocolm bench train`;
//! - [`kernels`]: the backend extension for the hot blocks (encoder layer, vocabulary
//!   head, AdamW): burn-op defaults, fused multi-threaded implementations on the CPU;
//! - [`backend`]: the concrete backends.
//!
//! Model code is generic over `B: Backend` (`B: Kernels` where it runs an encoder); the
//! training step, loop and benchmark need [`kernels::TrainBackend`] (autodiff, with
//! [`kernels::Kernels`] on it and on its inner backend).
//!
//! A program that trains on the CPU should call [`backend::tune_allocator`] once at
//! start-up (about a third faster steps with glibc; it is `unsafe`, read its rule). `cocolm bench train` times steps;
//! `PERF_NOTES.md` records what was measured.
//!
//! Determinism: the generator's draws are a pure function of `(seed, step, example,
//! position)` ([`sample::position_uniforms`]), and every micro-batch reseeds the backend
//! RNG (dropout) from `(seed, step, global micro-batch index)`. The CPU backends' RNG is
//! process-wide, so nothing else in the process may draw from burn's RNG while training
//! if resumed runs are to be bit-identical; in-process thread ranks share it, so their
//! dropout masks depend on thread timing (their tests run without dropout).
#![warn(missing_docs)]

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod collective;
pub mod error;
pub mod finetune;
pub mod hf;
pub mod kernels;
pub mod loss;
pub mod model;
pub mod optim;
pub mod params;
pub mod precision;
pub mod pretrained;
pub mod sample;
pub mod step;
pub mod synthetic;
pub mod tensor_file;
pub mod train;
pub mod vocab;

#[cfg(test)]
mod test_util;

pub use backend::{CpuBackend, CpuInner};
pub use error::{Error, Result};
