//! Step timing (`cocolm bench train`): [`bench_step`] times full training steps —
//! generator, sampling, corrector, backward, AdamW — on [`Synthetic`] batches.

use crate::kernels::TrainBackend;
use crate::step::Trainer;
use crate::synthetic::{Content, FIRST_ORDINARY, Synthetic};
use crate::{Error, Result};
use cocolm_shared::{Batch, RunConfig};
use std::time::Instant;

/// Settings of [`bench_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchOptions {
    /// Columns per row (at most `model.max_positions`).
    pub seq_len: usize,
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
}

/// Timing of full training steps.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Timed steps.
    pub steps: usize,
    /// Rows per micro-batch × micro-batches per step.
    pub sequences_per_step: usize,
    /// Columns per row.
    pub seq_len: usize,
    /// Trainable parameters (generator and corrector, shared table once).
    pub parameters: usize,
    /// Mean milliseconds per optimiser step.
    pub ms_per_step: f64,
    /// Fastest step.
    pub min_ms_per_step: f64,
    /// Tokens (all positions, full rows) per second.
    pub tokens_per_s: f64,
}

/// Time `options.steps` training steps of the configured model on random full-length
/// batches with `data.mask_prob` masking (batch generation is not timed).
pub fn bench_step<B: TrainBackend>(
    config: &RunConfig,
    device: &B::Device,
    options: BenchOptions,
) -> Result<BenchReport> {
    if options.seq_len == 0 || options.seq_len > config.model.max_positions {
        return Err(Error::config(
            "bench.seq_len",
            format!(
                "{} is not in 1..={}",
                options.seq_len, config.model.max_positions
            ),
        ));
    }
    if options.steps == 0 {
        return Err(Error::config("bench.steps", "must be at least 1"));
    }
    if config.model.vocab_size <= FIRST_ORDINARY as usize + 2 {
        return Err(Error::config(
            "model.vocab_size",
            format!(
                "synthetic batches need more than {} ids",
                FIRST_ORDINARY + 2
            ),
        ));
    }
    let synthetic = Synthetic {
        batch_size: config.train.batch_size,
        seq_len: options.seq_len,
        vocab_size: config.model.vocab_size,
        mask_prob: config.data.mask_prob,
        seed: config.train.seed,
        content: Content::Random,
        ragged: false,
        crop_fraction: config.model.scl.then_some(config.data.crop_fraction),
    };
    let mut trainer = Trainer::<B>::new(config, device)?;
    let parameters = crate::params::param_specs(trainer.model())
        .iter()
        .map(|p| p.numel())
        .sum();
    let accum = config.train.grad_accum;
    let mut times = Vec::with_capacity(options.steps);
    for k in 0..options.warmup + options.steps {
        let micro: Vec<Batch> = (0..accum)
            .map(|m| synthetic.batch((k * accum + m) as u64))
            .collect();
        let started = Instant::now();
        trainer.train_step(&micro)?;
        if k >= options.warmup {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let tokens = (config.train.batch_size * accum * options.seq_len) as f64;
    Ok(BenchReport {
        steps: options.steps,
        sequences_per_step: config.train.batch_size * accum,
        seq_len: options.seq_len,
        parameters,
        ms_per_step: mean * 1e3,
        min_ms_per_step: times.iter().cloned().fold(f64::INFINITY, f64::min) * 1e3,
        tokens_per_s: tokens / mean,
    })
}
