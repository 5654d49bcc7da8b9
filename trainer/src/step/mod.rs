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
//! RNG (dropout) is reseeded from [`cocolm_shared::hash::seed_of`] before it, and the
//! generator's draws are keyed by `(seed, step, example, position)`
//! ([`crate::sample::position_uniforms`]), so both replay exactly after a resume, and the
//! draws do not depend on how a global batch is split across ranks.

pub mod batch;
pub mod gradients;
pub mod metrics;
pub mod objective;

pub use batch::DeviceBatch;
pub use gradients::{VocabParams, micro_gradients};
pub use metrics::{EvalMetrics, MicroStats, StepInfo, StepMetrics};
pub use objective::{LossWeights, MicroLoss, forward_loss};

use crate::checkpoint::Checkpoint;
use crate::collective::{Collective, SingleRank};
use crate::kernels::TrainBackend;
use crate::model::CocoLm;
use crate::optim::{
    self, AdamW, AdamWConfig, LinearSchedule, Optimizer, ShardedAdamW, StepRequest,
};
use crate::params;
use crate::precision::{LossScale, LossScaler, compute_dtype};
use crate::{Error, Result};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorData};
use cocolm_shared::hash::seed_of;
use cocolm_shared::{Batch, RunConfig};
use std::sync::Arc;
use std::time::Instant;

/// Domain tag mixed into the seed of the initial weights.
const INIT_TAG: u64 = 0x696e_6974; // "init"
/// Domain tag mixed into the seed of the generator's draws on held-out batches.
const EVAL_TAG: u64 = 0x6576_616c; // "eval"
/// Domain tag mixed into the seed of the generator's draws.
const SAMPLE_TAG: u64 = 0x7361_6d70; // "samp"

/// How the data-parallel ranks of a run share the optimiser (one variant per topology).
pub enum DataParallel<B: Backend> {
    /// One rank holding the whole optimiser state ([`AdamW`]).
    Single,
    /// ZeRO stage 1 across the ranks of `collective`, one rank included
    /// ([`ShardedAdamW`]).
    Zero1 {
        /// The ranks.
        collective: Arc<dyn Collective<B>>,
        /// Elements per communication bucket.
        bucket: usize,
    },
}

impl<B: Backend> std::fmt::Debug for DataParallel<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataParallel::Single => f.write_str("Single"),
            DataParallel::Zero1 { collective, bucket } => f
                .debug_struct("Zero1")
                .field("rank", &collective.rank())
                .field("world", &collective.world())
                .field("bucket", bucket)
                .finish(),
        }
    }
}

/// The model, its optimiser and schedule, and the step counter.
pub struct Trainer<B: AutodiffBackend> {
    model: CocoLm<B>,
    vocab_params: VocabParams,
    optimizer: Box<dyn Optimizer<B::InnerBackend>>,
    collective: Arc<dyn Collective<B::InnerBackend>>,
    schedule: LinearSchedule,
    config: RunConfig,
    weights: LossWeights,
    /// The compute dtype of the forward and backward passes.
    dtype: DType,
    /// Dynamic loss scaling (fp16 only).
    scaler: Option<LossScaler>,
    step: u64,
    device: B::Device,
}

impl<B: TrainBackend> Trainer<B> {
    /// A fresh model (seeded from `train.seed`), zero optimiser state, step 0, one rank.
    pub fn new(config: &RunConfig, device: &B::Device) -> Result<Self> {
        Self::with_topology(config, device, DataParallel::Single)
    }

    /// The same, as one rank of a data-parallel run: every rank starts from rank 0's
    /// parameters.
    pub fn with_topology(
        config: &RunConfig,
        device: &B::Device,
        topology: DataParallel<B::InnerBackend>,
    ) -> Result<Self> {
        Self::starting_from(config, device, topology, None)
    }

    /// The same, starting from `initial` weights (every parameter, by path; read from
    /// the given file) instead of a random draw, with a fresh optimiser at step 0.
    pub fn starting_from(
        config: &RunConfig,
        device: &B::Device,
        topology: DataParallel<B::InnerBackend>,
        initial: Option<(Vec<params::NamedTensor>, &std::path::Path)>,
    ) -> Result<Self> {
        let mut model = {
            // The CPU backends' RNG is process-wide: ranks sharing a process (threads)
            // draw their initial weights one at a time.
            static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one_at_a_time = INIT.lock().unwrap_or_else(|e| e.into_inner());
            B::seed(device, seed_of(&[config.train.seed, INIT_TAG]));
            CocoLm::init(&config.model, device)?
        };
        if let Some((tensors, source)) = initial {
            model = params::import(model, tensors, source, device)?;
        }
        let specs = params::param_specs(&model);
        let vocab_params = VocabParams::find(&specs);
        let adamw = AdamWConfig::from_train_config(&config.train);
        let (collective, optimizer): (_, Box<dyn Optimizer<B::InnerBackend>>) = match topology {
            DataParallel::Single => (
                Arc::new(SingleRank) as Arc<dyn Collective<B::InnerBackend>>,
                Box::new(AdamW::new(specs, adamw, device)),
            ),
            DataParallel::Zero1 { collective, bucket } => {
                if collective.world() > 1 {
                    let numel: Vec<usize> = specs.iter().map(params::ParamSpec::numel).collect();
                    let flat = Tensor::cat(params::flat_values(&model), 0);
                    let flat = collective.broadcast(flat, 0)?;
                    model = params::set_flat_values(model, optim::sharded::split(flat, &numel));
                }
                let values = params::flat_values(&model);
                let sharded =
                    ShardedAdamW::new(specs, &values, adamw, collective.clone(), bucket, device);
                (collective, Box::new(sharded))
            }
        };
        Ok(Self {
            model,
            vocab_params,
            optimizer,
            collective,
            schedule: LinearSchedule {
                peak: config.train.lr,
                warmup: config.train.warmup_steps,
                total: config.train.steps,
            },
            weights: LossWeights::from_config(config),
            dtype: compute_dtype(config.train.precision),
            scaler: LossScaler::from_config(&config.train),
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
    pub fn optimizer(&self) -> &dyn Optimizer<B::InnerBackend> {
        self.optimizer.as_ref()
    }

    /// The data-parallel ranks.
    pub fn collective(&self) -> &dyn Collective<B::InnerBackend> {
        self.collective.as_ref()
    }

    /// The loss scale (fp16 only).
    pub fn loss_scale(&self) -> Option<LossScale> {
        self.scaler.as_ref().map(LossScaler::state)
    }

    /// Continue from `checkpoint` (read from `source`): model, optimiser state, loss scale
    /// and step. The optimiser state may be whole or the shards of every rank of any world
    /// size (merged when they are not this rank's layout).
    pub fn restore(&mut self, checkpoint: Checkpoint, source: &std::path::Path) -> Result<()> {
        let Checkpoint {
            step,
            model,
            mut optimizer,
            loss_scale,
            ..
        } = checkpoint;
        self.model = params::import(self.model.clone(), model, source, &self.device)?;
        let values = params::flat_values(&self.model);
        let own = self.optimizer.shard();
        let state = match optimizer.iter().position(|o| o.shard == own) {
            Some(at) => optimizer.swap_remove(at),
            None => optim::sharded::merge(optimizer, &params::param_specs(&self.model), source)?,
        };
        self.optimizer.load_state(state, &values, source)?;
        if let (Some(scaler), Some(state)) = (&mut self.scaler, loss_scale) {
            scaler.restore(state);
        }
        self.step = step;
        Ok(())
    }

    /// The model on held-out `batches`: the generator's MLM loss and accuracy, and the
    /// corrector's copy and CLM accuracy on the input the generator corrupted, without
    /// dropout and without touching the parameters, the optimiser or any random stream
    /// (the generator's draws are keyed by a fixed seed, so every evaluation of the same
    /// batches corrupts them alike).
    pub fn evaluate(&self, batches: &[Batch]) -> Result<EvalMetrics> {
        let mut model = self.model.clone();
        model.corrector.backbone = model.corrector.backbone.without_dropout();
        let sample_seed = seed_of(&[self.config.train.seed, EVAL_TAG]);
        let mut stats = MicroStats::default();
        for batch in batches {
            let device_batch =
                DeviceBatch::upload(batch, &self.config.model, sample_seed, &self.device)?
                    .in_dtype(self.dtype);
            stats += forward_loss(&model, &device_batch, &self.weights, 1.0)
                .stats
                .read();
        }
        Ok(EvalMetrics::new(&stats))
    }

    /// One optimiser step over this rank's `micro_batches` (as many as
    /// `train.grad_accum`); every rank of the run calls it with its own batches.
    ///
    /// Nothing is applied when the loss or the gradient norm is not finite on any rank:
    /// in fp16 the step is skipped and the loss scale lowered ([`LossScaler`]), unless
    /// the scale is at its floor; otherwise the step fails with [`Error::NonFinite`]
    /// (`last_checkpoint` left empty for the caller to fill).
    pub fn train_step(&mut self, micro_batches: &[Batch]) -> Result<StepMetrics> {
        let started = Instant::now();
        let accum = self.config.train.grad_accum;
        if micro_batches.len() != accum {
            return Err(Error::config(
                "train.grad_accum",
                format!(
                    "{accum} micro-batches per step, got {}",
                    micro_batches.len()
                ),
            ));
        }
        let seed = self.config.train.seed;
        let (rank, world) = (self.collective.rank(), self.collective.world());
        let sample_seed = seed_of(&[seed, self.step, SAMPLE_TAG]);
        let loss_scale = self.scaler.as_ref().map_or(1.0, LossScaler::scale);
        let mut sum: Option<optim::Gradients<B::InnerBackend>> = None;
        let mut stats = MicroStats::default();
        for (index, batch) in micro_batches.iter().enumerate() {
            // Numbered across ranks, so a global batch split over fewer or more ranks
            // replays the same dropout.
            let micro = (rank * accum + index) as u64;
            B::seed(&self.device, seed_of(&[seed, self.step, micro]));
            let device_batch =
                DeviceBatch::upload(batch, &self.config.model, sample_seed, &self.device)?
                    .in_dtype(self.dtype);
            let loss = forward_loss(&self.model, &device_batch, &self.weights, loss_scale);
            stats += loss.stats.clone().read();
            let grads = micro_gradients(&self.model, loss, self.vocab_params);
            match &mut sum {
                Some(sum) => optim::accumulate(sum, grads),
                None => sum = Some(grads),
            }
        }
        if world > 1 {
            stats = self.all_reduce_stats(stats)?;
        }
        let micro_batches = accum * world;
        let lr = self.schedule.lr(self.step);
        let request = StepRequest {
            lr,
            clip_norm: self.config.train.clip_norm,
            grad_divisor: micro_batches as f64 * loss_scale,
        };
        let values = params::flat_values(&self.model);
        let outcome = self
            .optimizer
            .step(values, sum.unwrap_or_default(), &request)?;
        let skipped = match outcome.params {
            Some(updated) => {
                self.model = params::set_flat_values(self.model.clone(), updated);
                if let Some(scaler) = &mut self.scaler {
                    scaler.clean_step();
                }
                false
            }
            None => {
                if !self.scaler.as_mut().is_some_and(LossScaler::overflow) {
                    return Err(if stats.loss.is_finite() {
                        self.non_finite("gradient norm", outcome.grad_norm)
                    } else {
                        self.non_finite("loss", stats.loss)
                    });
                }
                true
            }
        };
        self.step += 1;
        Ok(StepMetrics::new(
            &stats,
            StepInfo {
                step: self.step,
                micro_batches,
                scl: self.config.model.scl,
                lr,
                grad_norm: outcome.grad_norm,
                elapsed_s: started.elapsed().as_secs_f64(),
                optimizer_state_bytes: self.optimizer.state_bytes(),
                loss_scale: (loss_scale != 1.0 || self.scaler.is_some()).then_some(loss_scale),
                skipped,
            },
        ))
    }

    /// The statistics summed over all ranks.
    fn all_reduce_stats(&self, stats: MicroStats) -> Result<MicroStats> {
        let values = stats.into_array().map(|v| v as f32);
        let n = values.len();
        let device = &self.device;
        let tensor =
            Tensor::<B::InnerBackend, 1>::from_data(TensorData::new(values.to_vec(), [n]), device);
        let summed = params::tensor_to_vec(self.collective.all_reduce(tensor)?);
        Ok(MicroStats::from_array(std::array::from_fn(|i| {
            f64::from(summed[i])
        })))
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
    fn weight_decay_skips_biases_and_layer_norms_unless_its_scope_is_all() {
        let mut config = tiny_config();
        let device = Default::default();
        let model = CocoLm::<B>::init(&config.model, &device).unwrap();
        let mask = |config: &cocolm_shared::RunConfig| {
            let adamw = AdamW::<crate::CpuInner>::new(
                params::param_specs(&model),
                AdamWConfig::from_train_config(&config.train),
                &device,
            );
            adamw
                .decay_mask()
                .map(|(name, decay)| (name.to_string(), decay))
                .collect::<Vec<_>>()
        };
        let matrices = mask(&config);
        for (name, decay) in &matrices {
            let vector = name.ends_with(".bias") || name.contains("norm.");
            assert_eq!(*decay, !vector, "{name}");
        }
        assert!(matrices.iter().any(|(_, decay)| !decay));
        config.train.weight_decay_scope = cocolm_shared::DecayScope::All;
        assert!(mask(&config).iter().all(|(_, decay)| *decay));
    }
}
