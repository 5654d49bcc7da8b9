//! One COCO-LM training step: the objective of each micro-batch, one backward pass
//! through both models, gradient accumulation, clipping, the optimiser update.
//!
//! - [`batch`]: a loader [`Batch`] checked against the model and uploaded;
//! - [`objective`]: the forward pass and the loss of a micro-batch (the formula is there);
//! - [`gradients`]: its backward pass, hand-differentiated parts included;
//! - [`metrics`]: the statistics a step collects and the `metrics.jsonl` line;
//! - [`Trainer`] (here): the step itself.
//!
//! Every micro-step is a pure function of `(seed, step, micro-batch index)`: the backend
//! RNG is reseeded from [`cocolm_shared::hash::seed_of`] before it, so dropout and
//! sampling replay exactly after a resume.

pub mod batch;
pub mod gradients;
pub mod metrics;
pub mod objective;

pub use batch::DeviceBatch;
pub use gradients::{VocabParams, micro_gradients};
pub use metrics::{MicroStats, StepInfo, StepMetrics};
pub use objective::{LossWeights, MicroLoss, forward_loss};

use crate::kernels::TrainBackend;
use crate::model::CocoLm;
use crate::optim::{self, AdamW, AdamWConfig, LinearSchedule, Optimizer};
use crate::params;
use crate::{Error, Result};
use burn::tensor::backend::AutodiffBackend;
use cocolm_shared::hash::seed_of;
use cocolm_shared::{Batch, RunConfig};
use std::time::Instant;

/// Domain tag mixed into the seed of the initial weights.
const INIT_TAG: u64 = 0x696e_6974; // "init"

/// The model, its optimiser and schedule, and the step counter.
pub struct Trainer<B: AutodiffBackend> {
    model: CocoLm<B>,
    vocab_params: VocabParams,
    optimizer: AdamW<B::InnerBackend>,
    schedule: LinearSchedule,
    config: RunConfig,
    weights: LossWeights,
    step: u64,
    device: B::Device,
}

impl<B: TrainBackend> Trainer<B> {
    /// A fresh model (seeded from `train.seed`), zero optimiser state, step 0.
    pub fn new(config: &RunConfig, device: &B::Device) -> Result<Self> {
        B::seed(device, seed_of(&[config.train.seed, INIT_TAG]));
        let model = CocoLm::init(&config.model, device)?;
        let specs = params::param_specs(&model);
        let vocab_params = VocabParams::find(&specs);
        let optimizer = AdamW::new(specs, AdamWConfig::from_train_config(&config.train), device);
        Ok(Self {
            model,
            vocab_params,
            optimizer,
            schedule: LinearSchedule {
                peak: config.train.lr,
                warmup: config.train.warmup_steps,
                total: config.train.steps,
            },
            weights: LossWeights::from_config(config),
            config: config.clone(),
            step: 0,
            device: device.clone(),
        })
    }

    /// Optimiser steps completed.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The model.
    pub fn model(&self) -> &CocoLm<B> {
        &self.model
    }

    /// The configuration the trainer was built with.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The optimiser.
    pub fn optimizer(&self) -> &AdamW<B::InnerBackend> {
        &self.optimizer
    }

    /// Replace model, optimiser state and step (resuming from a checkpoint).
    pub fn restore(
        &mut self,
        step: u64,
        model: Vec<params::NamedTensor>,
        optimizer: optim::OptimizerState,
        source: &std::path::Path,
    ) -> Result<()> {
        self.model = params::import(self.model.clone(), model, source, &self.device)?;
        self.optimizer.load_state(optimizer, source)?;
        self.step = step;
        Ok(())
    }

    /// One optimiser step over `micro_batches` (as many as `train.grad_accum`).
    ///
    /// Nothing is applied when the loss or the gradient norm is not finite
    /// ([`Error::NonFinite`], `last_checkpoint` left empty for the caller to fill).
    pub fn train_step(&mut self, micro_batches: &[Batch]) -> Result<StepMetrics> {
        let started = Instant::now();
        if micro_batches.len() != self.config.train.grad_accum {
            return Err(Error::config(
                "train.grad_accum",
                format!(
                    "{} micro-batches per step, got {}",
                    self.config.train.grad_accum,
                    micro_batches.len()
                ),
            ));
        }
        let mut sum: Option<optim::Gradients<B::InnerBackend>> = None;
        let mut stats = MicroStats::default();
        for (index, batch) in micro_batches.iter().enumerate() {
            B::seed(
                &self.device,
                seed_of(&[self.config.train.seed, self.step, index as u64]),
            );
            let device_batch = DeviceBatch::upload(batch, &self.config.model, &self.device)?;
            let loss = forward_loss(&self.model, &device_batch, &self.weights);
            let micro = loss.stats.clone().read();
            if !micro.loss.is_finite() {
                return Err(self.non_finite("loss", micro.loss));
            }
            stats += micro;
            let grads = micro_gradients(&self.model, loss, self.vocab_params);
            match &mut sum {
                Some(sum) => optim::accumulate(sum, grads),
                None => sum = Some(grads),
            }
        }
        let grads = sum.unwrap_or_default();
        let accum = micro_batches.len() as f64;
        let grad_norm = optim::global_norm(&grads) / accum;
        if !grad_norm.is_finite() {
            return Err(self.non_finite("gradient norm", grad_norm));
        }
        let grad_scale = optim::clip_factor(grad_norm, self.config.train.clip_norm) / accum;
        let lr = self.schedule.lr(self.step);
        let values = params::flat_values(&self.model);
        let updated = self.optimizer.step(values, &grads, lr, grad_scale);
        self.model = params::set_flat_values(self.model.clone(), updated);
        self.step += 1;
        Ok(StepMetrics::new(
            &stats,
            StepInfo {
                step: self.step,
                micro_batches: micro_batches.len(),
                scl: self.config.model.scl,
                lr,
                grad_norm,
                elapsed_s: started.elapsed().as_secs_f64(),
            },
        ))
    }

    fn non_finite(&self, what: &'static str, value: f64) -> Error {
        Error::NonFinite {
            step: self.step,
            what,
            value,
            last_checkpoint: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;
    use crate::test_util::{rng_lock, synthetic_batch, tiny_config};

    type B = CpuBackend;

    #[test]
    fn a_batch_without_masks_still_trains_the_copy_head() {
        let _guard = rng_lock();
        let config = tiny_config();
        let device = Default::default();
        let mut trainer = Trainer::<B>::new(&config, &device).unwrap();
        let mut b = synthetic_batch(&config, 4);
        b.input_ids.clone_from(&b.original_ids);
        b.masked_positions.clear();
        let m = trainer.train_step(&[b]).unwrap();
        assert_eq!(m.masked, 0);
        assert!(m.loss.is_finite() && m.copy_loss > 0.0 && m.mlm_loss == 0.0);
    }

    #[test]
    fn weight_decay_skips_biases_and_layer_norms() {
        let config = tiny_config();
        let trainer = Trainer::<B>::new(&config, &Default::default()).unwrap();
        for (name, decay) in trainer.optimizer().decay_mask() {
            let vector = name.ends_with(".bias") || name.contains("norm.");
            assert_eq!(decay, !vector, "{name}");
        }
    }
}
