//! Step timing (`cocolm bench train`): [`bench_step`] times full training steps —
//! generator, sampling, corrector, backward, AdamW — on [`Synthetic`] batches.

use crate::kernels::TrainBackend;
use crate::step::{DataParallel, Trainer};
use crate::synthetic::{Content, FIRST_ORDINARY, Synthetic};
use crate::{Error, Result};
use cocolm_shared::{Batch, ModelConfig, RunConfig};
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
    /// Model FLOPs of a mean step ([`step_flops`]).
    pub flops_per_step: f64,
    /// Bytes of optimiser state on this rank.
    pub optimizer_state_bytes: u64,
    /// The most memory `memory` reported after a timed step.
    pub peak_memory: Option<u64>,
}

impl BenchReport {
    /// Model FLOPs per second of compute.
    pub fn flops_per_s(&self) -> f64 {
        self.flops_per_step / (self.ms_per_step / 1e3)
    }
}

/// Model FLOPs of one training step, counted as Megatron counts them: the matrix
/// products of the forward pass, three times (forward, and the two products of the
/// backward pass each forward product has), nothing for elementwise work.
///
/// Per token and encoder layer the forward products are `8H² + 4HF + 4SH` (Q/K/V and
/// output projections, the FFN, scores and context); the generator and the corrector run
/// on every token (the corrector also on the SCL crop); each masked token goes through
/// two head transforms (`2H²` each) and two tied vocabulary projections (`2HV` each); the
/// copy head is `2H` per token.
pub fn step_flops(
    model: &ModelConfig,
    sequences: usize,
    seq: usize,
    crop_seq: Option<usize>,
    masked: f64,
) -> f64 {
    let (h, f, v) = (
        model.hidden_size as f64,
        model.ffn_size as f64,
        model.vocab_size as f64,
    );
    let layer = |s: f64| 8.0 * h * h + 4.0 * h * f + 4.0 * s * h;
    let tokens = (sequences * seq) as f64;
    let mut forward = tokens
        * ((model.num_layers + model.generator_depth()) as f64 * layer(seq as f64) + 2.0 * h);
    if let Some(crop) = crop_seq {
        forward += (sequences * crop) as f64 * model.num_layers as f64 * layer(crop as f64);
    }
    forward += masked * 2.0 * (2.0 * h * h + 2.0 * h * v);
    3.0 * forward
}

/// Time `options.steps` training steps of the configured model on random full-length
/// batches with `data.mask_prob` masking (batch generation is not timed), as one rank of
/// `topology`. The device is synchronised after every step; `memory` is sampled after
/// each timed one.
pub fn bench_step<B: TrainBackend>(
    config: &RunConfig,
    device: &B::Device,
    options: BenchOptions,
    topology: DataParallel<B::InnerBackend>,
    memory: &dyn Fn() -> Option<u64>,
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
    let crop_fraction = config.model.scl.then_some(config.data.crop_fraction);
    let synthetic = Synthetic {
        batch_size: config.train.batch_size,
        seq_len: options.seq_len,
        vocab_size: config.model.vocab_size,
        mask_prob: config.data.mask_prob,
        seed: config.train.seed,
        content: Content::Random,
        ragged: false,
        crop_fraction,
    };
    let mut trainer = Trainer::<B>::with_topology(config, device, topology)?;
    let parameters = crate::params::param_specs(trainer.model())
        .iter()
        .map(|p| p.numel())
        .sum();
    let accum = config.train.grad_accum;
    let mut times = Vec::with_capacity(options.steps);
    let mut masked = 0u64;
    let mut peak_memory = None;
    let mut optimizer_state_bytes = 0;
    for k in 0..options.warmup + options.steps {
        let micro: Vec<Batch> = (0..accum)
            .map(|m| synthetic.batch((k * accum + m) as u64))
            .collect();
        let started = Instant::now();
        let metrics = trainer.train_step(&micro)?;
        B::sync(device).map_err(|e| Error::Device {
            device: format!("{device:?}"),
            message: format!("{e:?}"),
        })?;
        if k >= options.warmup {
            times.push(started.elapsed().as_secs_f64());
            masked += metrics.masked;
            optimizer_state_bytes = metrics.optimizer_state_bytes;
            peak_memory = peak_memory.max(memory());
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let sequences = config.train.batch_size * accum;
    let tokens = (sequences * options.seq_len) as f64;
    let crop_seq = crop_fraction.map(|f| ((options.seq_len as f64 * f).ceil() as usize).max(1));
    Ok(BenchReport {
        steps: options.steps,
        sequences_per_step: sequences,
        seq_len: options.seq_len,
        parameters,
        ms_per_step: mean * 1e3,
        min_ms_per_step: times.iter().cloned().fold(f64::INFINITY, f64::min) * 1e3,
        tokens_per_s: tokens / mean,
        flops_per_step: step_flops(
            &config.model,
            sequences,
            options.seq_len,
            crop_seq,
            masked as f64 / options.steps as f64,
        ),
        optimizer_state_bytes,
        peak_memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BERT-base's encoder alone: 12 layers, H 768, F 3072, 512 tokens, ~85M matrix
    /// parameters: about 6 FLOPs per parameter and token, plus attention.
    #[test]
    fn step_flops_count_the_products() {
        let model = ModelConfig {
            hidden_size: 768,
            ffn_size: 3072,
            num_layers: 12,
            generator_layers: 4,
            vocab_size: 32_000,
            ..ModelConfig::default()
        };
        let flops = step_flops(&model, 1, 512, None, 0.0);
        let per_layer_params = 12.0 * 768.0 * 768.0;
        let matrices = 6.0 * 512.0 * 16.0 * per_layer_params;
        let attention = 3.0 * 512.0 * 16.0 * 4.0 * 512.0 * 768.0;
        let copy = 3.0 * 512.0 * 2.0 * 768.0;
        assert!(
            (flops - (matrices + attention + copy)).abs() < 1.0,
            "{flops}"
        );
        // Each masked token adds the two heads.
        let with_masks = step_flops(&model, 1, 512, None, 10.0);
        let heads = 3.0 * 10.0 * 2.0 * (2.0 * 768.0 * 768.0 + 2.0 * 768.0 * 32_000.0);
        assert!((with_masks - flops - heads).abs() < 1.0);
    }
}
