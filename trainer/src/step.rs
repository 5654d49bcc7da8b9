//! One COCO-LM training step: generator, sampled replacements, corrector, losses,
//! one backward pass through both models, gradient accumulation, clipping, AdamW.
//!
//! Loss of a micro-batch with `n_m` masked positions and `B` rows:
//!
//! ```text
//! loss = mlm_weight · Σ_masked CE_gen / n_m
//!      + copy_weight · mean_nonpad BCE_copy
//!      + clm_weight · Σ_masked CE_clm · (1 − σ(copy)).detach() / n_m
//!      + scl_weight · SCL_sum / B
//! ```
//!
//! which, with the weights 1, 50, 1, 1, is COCO-LM's
//! `(MLM_sum + 50·BCE_mean·n_m + Σ CE·w + SCL·n_m/B) / n_m` (and stays defined when a batch
//! has no masked position). The two vocabulary heads are differentiated by hand
//! ([`crate::vocab`]); everything else by one backward pass through both models.
//!
//! Every micro-step is a pure function of `(seed, step, micro-batch index)`: the backend
//! RNG is reseeded from [`cocolm_shared::hash::seed_of`] before it, so dropout and
//! sampling replay exactly after a resume.

use crate::kernels::TrainBackend;
use crate::loss::{binary_cross_entropy_with_logits, contrastive_loss};
use crate::model::{CocoLm, EncoderInput};
use crate::optim::{self, AdamW, AdamWConfig, LinearSchedule, Optimizer};
use crate::params::{self, ParamSpec};
use crate::vocab::{VocabLoss, vocab_loss};
use crate::{Error, Result};
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use cocolm_shared::hash::seed_of;
use cocolm_shared::{Batch, ModelConfig, RunConfig};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Domain tag mixed into the seed of the initial weights.
const INIT_TAG: u64 = 0x696e_6974; // "init"

/// Loss weights read from the training configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// Weight of the generator's MLM loss.
    pub mlm: f64,
    /// Weight of the copy (binary) loss.
    pub copy: f64,
    /// Weight of the corrective LM loss.
    pub clm: f64,
    /// Weight of the SCL loss.
    pub scl: f64,
    /// SCL temperature.
    pub scl_temperature: f64,
}

impl LossWeights {
    /// The weights of a run configuration.
    pub fn from_config(config: &RunConfig) -> Self {
        let t = &config.train;
        Self {
            mlm: t.mlm_weight,
            copy: t.copy_weight,
            clm: t.clm_weight,
            scl: t.scl_weight,
            scl_temperature: t.scl_temperature,
        }
    }
}

/// A [`Batch`] uploaded to a device, checked against the model.
#[derive(Debug, Clone)]
pub struct DeviceBatch<B: Backend> {
    /// Masked input and its attention layout.
    pub input: EncoderInput<B>,
    /// Uncorrupted ids `[batch · seq]`.
    pub original: Tensor<B, 1, Int>,
    /// Flat masked positions `[n_masked]`.
    pub masked: Tensor<B, 1, Int>,
    /// Original ids at the masked positions `[n_masked]`.
    pub targets: Tensor<B, 1, Int>,
    /// 1 at real tokens, 0 at pads, `[batch · seq]`.
    pub real: Tensor<B, 1>,
    /// Number of masked positions.
    pub n_masked: usize,
    /// Number of real tokens.
    pub n_real: usize,
    /// The SCL crop, when the batch has one.
    pub crop: Option<EncoderInput<B>>,
}

fn bad(batch: &Batch, field: &'static str, expected: impl ToString, got: impl ToString) -> Error {
    Error::Batch {
        seq: batch.seq,
        field,
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

fn check_rows(
    batch: &Batch,
    field: &'static str,
    ids: &[u32],
    lengths: &[u32],
    seq: usize,
    model: &ModelConfig,
) -> Result<()> {
    let rows = batch.batch_size;
    if seq == 0 || seq > model.max_positions {
        return Err(bad(
            batch,
            field,
            format!("1..={} columns", model.max_positions),
            seq,
        ));
    }
    if ids.len() != rows * seq {
        return Err(bad(batch, field, format!("{rows}·{seq} ids"), ids.len()));
    }
    if lengths.len() != rows {
        return Err(bad(batch, "lengths", rows, lengths.len()));
    }
    if let Some(&len) = lengths.iter().find(|&&l| l == 0 || l as usize > seq) {
        return Err(bad(batch, "lengths", format!("1..={seq}"), len));
    }
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= model.vocab_size) {
        return Err(bad(
            batch,
            field,
            format!("ids below vocab_size {}", model.vocab_size),
            id,
        ));
    }
    Ok(())
}

impl<B: Backend> DeviceBatch<B> {
    /// Check `batch` against the model configuration and upload it.
    pub fn upload(batch: &Batch, model: &ModelConfig, device: &B::Device) -> Result<Self> {
        let (rows, seq) = (batch.batch_size, batch.seq_len);
        if rows == 0 {
            return Err(bad(batch, "batch_size", "at least 1 row", 0));
        }
        check_rows(
            batch,
            "input_ids",
            &batch.input_ids,
            &batch.lengths,
            seq,
            model,
        )?;
        check_rows(
            batch,
            "original_ids",
            &batch.original_ids,
            &batch.lengths,
            seq,
            model,
        )?;
        let mut previous = None;
        for &p in &batch.masked_positions {
            let (row, col) = (p as usize / seq, p as usize % seq);
            if row >= rows || col >= batch.lengths[row] as usize || previous.is_some_and(|q| q >= p)
            {
                return Err(bad(
                    batch,
                    "masked_positions",
                    "ascending positions inside the rows' lengths",
                    p,
                ));
            }
            previous = Some(p);
        }
        let crop = match &batch.crop {
            Some(c) => {
                check_rows(batch, "crop.ids", &c.ids, &c.lengths, c.seq_len, model)?;
                Some(EncoderInput::new(
                    &c.ids, &c.lengths, rows, c.seq_len, device,
                ))
            }
            None if model.scl => {
                return Err(bad(batch, "crop", "an SCL crop (model.scl is on)", "none"));
            }
            None => None,
        };
        let ints = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device)
        };
        let targets = batch
            .masked_positions
            .iter()
            .map(|&p| batch.original_ids[p as usize] as i64)
            .collect();
        let real: Vec<f32> = batch.attention_mask().into_iter().map(f32::from).collect();
        Ok(Self {
            input: EncoderInput::new(&batch.input_ids, &batch.lengths, rows, seq, device),
            original: ints(batch.original_ids.iter().map(|&i| i as i64).collect()),
            masked: ints(batch.masked_positions.iter().map(|&p| p as i64).collect()),
            targets: ints(targets),
            real: Tensor::from_data(TensorData::new(real, [rows * seq]), device),
            n_masked: batch.n_masked(),
            n_real: batch.n_tokens(),
            crop,
        })
    }
}

/// Gradients of the vocabulary heads, computed outside the graph ([`crate::vocab`]).
#[derive(Debug, Clone)]
pub struct VocabGrads<B: Backend> {
    /// Both heads' `∂E`, `[vocab, H]`.
    pub tokens: Tensor<B, 2>,
    /// `∂` of the generator head's output bias, `[vocab]`.
    pub generator_bias: Tensor<B, 1>,
    /// `∂` of the corrector LM head's output bias, `[vocab]`.
    pub corrector_bias: Tensor<B, 1>,
}

/// Token vectors looked up outside the graph: a leaf whose gradient is scattered into
/// the token table by [`micro_gradients`] (no `[vocab, H]` zeros per lookup).
#[derive(Debug, Clone)]
pub struct Lookup<B: AutodiffBackend> {
    /// The ids looked up, `[rows]`.
    pub ids: Tensor<B::InnerBackend, 1, Int>,
    /// Their vectors, a leaf that requires gradients, `[rows, H]`.
    pub words: Tensor<B, 2>,
}

impl<B: AutodiffBackend> Lookup<B> {
    fn new(table: &Tensor<B::InnerBackend, 2>, ids: Tensor<B::InnerBackend, 1, Int>) -> Self {
        let words = Tensor::from_inner(table.clone().select(0, ids.clone())).require_grad();
        Self { ids, words }
    }
}

/// The loss of one micro-batch, ready for the backward pass.
#[derive(Debug, Clone)]
pub struct MicroLoss<B: AutodiffBackend> {
    /// The total loss (see the module docs). Its backward pass yields every gradient
    /// apart from the token table's and the vocabulary biases'.
    pub total: Tensor<B, 1>,
    /// The vocabulary heads' own gradients (`None` without masked positions).
    pub vocab: Option<VocabGrads<B::InnerBackend>>,
    /// The token lookups of the forward pass.
    pub lookups: Vec<Lookup<B>>,
    /// Statistics, still on the device (see [`read_stats`]).
    pub stats: Tensor<B::InnerBackend, 1>,
}

/// Where the hand-differentiated parameters sit in the parameter order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VocabParams {
    /// `token_embedding`.
    pub tokens: usize,
    /// `generator.head.bias`.
    pub generator_bias: usize,
    /// `corrector.lm_head.bias`.
    pub corrector_bias: usize,
}

impl VocabParams {
    /// Find them by path.
    pub fn find(specs: &[ParamSpec]) -> Self {
        let at = |name: &str| {
            specs
                .iter()
                .position(|s| s.name == name)
                .unwrap_or_else(|| panic!("the model has a parameter `{name}`"))
        };
        Self {
            tokens: at("token_embedding"),
            generator_bias: at("generator.head.bias"),
            corrector_bias: at("corrector.lm_head.bias"),
        }
    }
}

/// Backward pass of a micro-batch: all parameter gradients, flattened, in parameter order.
///
/// The token table's gradient is assembled here: the vocabulary heads' `∂E` plus every
/// lookup's word gradient added into its rows.
pub fn micro_gradients<B: AutodiffBackend>(
    model: &CocoLm<B>,
    loss: MicroLoss<B>,
    at: VocabParams,
) -> optim::Gradients<B::InnerBackend> {
    let backward = loss.total.backward();
    let mut grads = params::gradients(model, &backward);
    let table = model.token_embedding.val();
    let [vocab_size, hidden] = table.dims();
    let mut table_grad = None;
    if let Some(vocab) = loss.vocab {
        table_grad = Some(vocab.tokens);
        add_grad(&mut grads[at.generator_bias], vocab.generator_bias);
        add_grad(&mut grads[at.corrector_bias], vocab.corrector_bias);
    }
    for lookup in loss.lookups {
        if let Some(words) = lookup.words.grad(&backward) {
            let base = table_grad
                .take()
                .unwrap_or_else(|| Tensor::zeros([vocab_size, hidden], &table.device()));
            table_grad = Some(base.select_assign(0, lookup.ids, words, IndexingUpdateOp::Add));
        }
    }
    if let Some(g) = table_grad {
        add_grad(&mut grads[at.tokens], g.reshape([vocab_size * hidden]));
    }
    grads
}

fn add_grad<B: Backend>(slot: &mut Option<Tensor<B, 1>>, grad: Tensor<B, 1>) {
    *slot = Some(match slot.take() {
        Some(g) => g + grad,
        None => grad,
    });
}

/// Counts and sums of one micro-batch, read back to the host in one transfer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MicroStats {
    /// Masked positions.
    pub n_masked: f64,
    /// Real tokens.
    pub n_real: f64,
    /// Rows.
    pub rows: f64,
    /// Σ generator CE.
    pub mlm_sum: f64,
    /// Generator argmax = original.
    pub mlm_correct: f64,
    /// Σ copy BCE over real tokens.
    pub copy_sum: f64,
    /// Copy predictions (logit > 0 ⇔ original) that are right, over real tokens.
    pub copy_correct: f64,
    /// Σ weighted CLM CE.
    pub clm_sum: f64,
    /// CLM argmax = original.
    pub clm_correct: f64,
    /// Masked positions whose sample differs from the original.
    pub replaced: f64,
    /// Σ SCL CE.
    pub scl_sum: f64,
    /// Total loss.
    pub loss: f64,
}

impl std::ops::AddAssign for MicroStats {
    fn add_assign(&mut self, o: Self) {
        self.n_masked += o.n_masked;
        self.n_real += o.n_real;
        self.rows += o.rows;
        self.mlm_sum += o.mlm_sum;
        self.mlm_correct += o.mlm_correct;
        self.copy_sum += o.copy_sum;
        self.copy_correct += o.copy_correct;
        self.clm_sum += o.clm_sum;
        self.clm_correct += o.clm_correct;
        self.replaced += o.replaced;
        self.scl_sum += o.scl_sum;
        self.loss += o.loss;
    }
}

/// The forward pass of one micro-batch: the generator on the masked input, replacements
/// drawn from its softmax, the corrector on the corrupted input, the losses.
pub fn forward_loss<B: TrainBackend>(
    model: &CocoLm<B>,
    batch: &DeviceBatch<B>,
    weights: &LossWeights,
) -> MicroLoss<B> {
    let device = batch.original.device();
    let (rows, seq, n_masked) = (batch.input.batch, batch.input.seq, batch.n_masked);
    let per_masked = 1.0 / n_masked.max(1) as f64;
    let scalar = |v: f64| Tensor::<B::InnerBackend, 1>::from_floats([v as f32], &device);
    let zero = || scalar(0.0);
    let table = model.token_embedding.val().inner();
    let heads = n_masked > 0;
    let mut lookups = Vec::new();
    let targets = batch.targets.clone().inner();
    let masked = batch.masked.clone().inner();

    // Generator on the masked input; one replacement drawn per masked position.
    let generator = heads.then(|| {
        let lookup = Lookup::new(&table, batch.input.ids.clone().inner());
        let hidden = model
            .generator
            .backbone
            .forward_words(lookup.words.clone(), &batch.input);
        lookups.push(lookup);
        let x = model
            .generator
            .head
            .transform
            .forward(hidden.select(0, batch.masked.clone()));
        let w = Tensor::full([n_masked], weights.mlm * per_masked, &device);
        let bias = model.generator.head.bias.val().inner();
        let (loss, samples) = vocab_loss(x, table.clone(), bias, targets.clone(), w, true);
        (loss, samples.expect("vocab_loss draws when asked to"))
    });
    let (corrupted, labels, replaced) = match &generator {
        Some((_, samples)) => {
            let replaced = samples.clone().not_equal(targets.clone()).float();
            let corrupted = batch.original.clone().inner().select_assign(
                0,
                masked.clone(),
                samples.clone() - targets.clone(),
                IndexingUpdateOp::Add,
            );
            let labels = Tensor::<B::InnerBackend, 1>::ones([rows * seq], &device).select_assign(
                0,
                masked.clone(),
                replaced.clone().neg(),
                IndexingUpdateOp::Add,
            );
            (corrupted, labels, replaced.sum())
        }
        None => (
            batch.original.clone().inner(),
            Tensor::ones([rows * seq], &device),
            zero(),
        ),
    };

    // Corrector on the corrupted input: copy head everywhere, CLM at masked positions.
    let lookup = Lookup::new(&table, corrupted.clone());
    let input = batch.input.with_ids(Tensor::from_inner(corrupted));
    let out = model.corrector.forward_words(lookup.words.clone(), &input);
    lookups.push(lookup);
    let labels_ad = Tensor::<B, 1>::from_inner(labels.clone());
    let copy_sum = (binary_cross_entropy_with_logits(out.copy_logits.clone(), labels_ad)
        * batch.real.clone())
    .sum();
    let copy_mean = copy_sum.clone().div_scalar(batch.n_real as f64);
    let copy_logits = out.copy_logits.clone().inner();
    let copy_correct = (copy_logits.clone().greater_elem(0.0).float() - labels)
        .abs()
        .neg()
        .add_scalar(1.0)
        .mul(batch.real.clone().inner())
        .sum();
    let clm = heads.then(|| {
        let x = model
            .corrector
            .lm_head
            .transform
            .forward(out.hidden.clone().select(0, batch.masked.clone()));
        let keep = sigmoid(copy_logits.select(0, masked.clone()))
            .neg()
            .add_scalar(1.0);
        let w = keep.clone().mul_scalar(weights.clm * per_masked);
        let bias = model.corrector.lm_head.bias.val().inner();
        let (loss, _) = vocab_loss(x, table.clone(), bias, targets.clone(), w, false);
        let weighted = (loss.cross_entropy.clone() * keep).sum();
        (loss, weighted)
    });

    let scl_sum = batch.crop.as_ref().and_then(|crop| {
        let lookup = Lookup::new(&table, crop.ids.clone().inner());
        let hidden = model
            .corrector
            .backbone
            .forward_words(lookup.words.clone(), crop);
        lookups.push(lookup);
        let a = model.corrector.scl_views(out.hidden.clone(), rows, seq)?;
        let b = model.corrector.scl_views(hidden, rows, crop.seq)?;
        Some(contrastive_loss(
            Tensor::cat(vec![a, b], 0),
            weights.scl_temperature,
        ))
    });

    let mut total = copy_mean.mul_scalar(weights.copy);
    if let Some((g, _)) = &generator {
        let value = g
            .cross_entropy
            .clone()
            .sum()
            .mul_scalar(weights.mlm * per_masked);
        total = total + Tensor::from_inner(value) + g.surrogate.clone();
    }
    if let Some((c, weighted)) = &clm {
        let value = weighted.clone().mul_scalar(weights.clm * per_masked);
        total = total + Tensor::from_inner(value) + c.surrogate.clone();
    }
    if let Some(scl) = &scl_sum {
        total = total + scl.clone().mul_scalar(weights.scl / rows as f64);
    }

    let (mlm_sum, mlm_correct) = generator.as_ref().map_or_else(
        || (zero(), zero()),
        |(g, _)| (g.cross_entropy.clone().sum(), g.correct.clone()),
    );
    let (clm_sum, clm_correct) = clm
        .as_ref()
        .map_or_else(|| (zero(), zero()), |(c, w)| (w.clone(), c.correct.clone()));
    let stats = Tensor::cat(
        vec![
            scalar(n_masked as f64),
            scalar(batch.n_real as f64),
            scalar(rows as f64),
            mlm_sum,
            mlm_correct,
            copy_sum.inner(),
            copy_correct,
            clm_sum,
            clm_correct,
            replaced,
            scl_sum.map_or_else(zero, |s| s.inner()),
            total.clone().inner(),
        ],
        0,
    );
    let vocab = generator.zip(clm).map(|((g, _), (c, _))| {
        let (g, c): (VocabLoss<B>, VocabLoss<B>) = (g, c);
        VocabGrads {
            tokens: g.d_tokens + c.d_tokens,
            generator_bias: g.d_bias,
            corrector_bias: c.d_bias,
        }
    });
    MicroLoss {
        total,
        vocab,
        lookups,
        stats,
    }
}

/// Read the statistics tensor of [`forward_loss`] back to the host.
pub fn read_stats<B: Backend>(stats: Tensor<B, 1>) -> MicroStats {
    let v = params::tensor_to_vec(stats);
    MicroStats {
        n_masked: v[0] as f64,
        n_real: v[1] as f64,
        rows: v[2] as f64,
        mlm_sum: v[3] as f64,
        mlm_correct: v[4] as f64,
        copy_sum: v[5] as f64,
        copy_correct: v[6] as f64,
        clm_sum: v[7] as f64,
        clm_correct: v[8] as f64,
        replaced: v[9] as f64,
        scl_sum: v[10] as f64,
        loss: v[11] as f64,
    }
}

/// What one optimiser step reports (one line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimiser steps completed, this one included.
    pub step: u64,
    /// Total loss (mean over the micro-batches).
    pub loss: f64,
    /// Generator MLM cross-entropy per masked token.
    pub mlm_loss: f64,
    /// Generator argmax accuracy at masked positions.
    pub mlm_accuracy: f64,
    /// Copy BCE per real token.
    pub copy_loss: f64,
    /// Copy accuracy over real tokens.
    pub copy_accuracy: f64,
    /// Weighted CLM cross-entropy per masked token (the term in the loss).
    pub clm_loss: f64,
    /// CLM argmax accuracy at masked positions.
    pub clm_accuracy: f64,
    /// Fraction of masked positions whose sampled token differs from the original.
    pub replaced_fraction: f64,
    /// SCL loss per row (`Σ over 2B views / B`), when SCL is on.
    pub scl_loss: Option<f64>,
    /// Learning rate used by this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Real tokens of the step (all micro-batches).
    pub tokens: u64,
    /// Masked tokens of the step.
    pub masked: u64,
    /// Wall time of the step, data loading excluded.
    pub step_ms: f64,
    /// Real tokens per second of compute.
    pub tokens_per_s: f64,
    /// Fraction of wall time spent waiting for batches (filled in by the loop).
    pub data_wait_fraction: Option<f64>,
}

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
            let micro = read_stats(loss.stats.clone());
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

        let elapsed = started.elapsed().as_secs_f64();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Ok(StepMetrics {
            step: self.step,
            loss: stats.loss / accum,
            mlm_loss: ratio(stats.mlm_sum, stats.n_masked),
            mlm_accuracy: ratio(stats.mlm_correct, stats.n_masked),
            copy_loss: ratio(stats.copy_sum, stats.n_real),
            copy_accuracy: ratio(stats.copy_correct, stats.n_real),
            clm_loss: ratio(stats.clm_sum, stats.n_masked),
            clm_accuracy: ratio(stats.clm_correct, stats.n_masked),
            replaced_fraction: ratio(stats.replaced, stats.n_masked),
            scl_loss: self
                .config
                .model
                .scl
                .then(|| ratio(stats.scl_sum, stats.rows)),
            lr,
            grad_norm,
            tokens: stats.n_real as u64,
            masked: stats.n_masked as u64,
            step_ms: elapsed * 1e3,
            tokens_per_s: ratio(stats.n_real, elapsed),
            data_wait_fraction: None,
        })
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
    use crate::bench::{Content, Synthetic};
    use crate::test_util::{rng_lock, tiny_config};
    use std::collections::BTreeMap;

    type B = CpuBackend;

    fn batch(config: &RunConfig, index: u64) -> Batch {
        Synthetic {
            batch_size: 3,
            seq_len: 12,
            vocab_size: config.model.vocab_size,
            mask_prob: 0.3,
            seed: 5,
            content: Content::Motifs,
            ragged: true,
            crop_fraction: config.model.scl.then_some(0.9),
        }
        .batch(index)
    }

    /// L1 norm of the gradient of every parameter, for a micro-batch with these weights.
    fn grad_norms(
        config: &RunConfig,
        model: &CocoLm<B>,
        b: &DeviceBatch<B>,
    ) -> BTreeMap<String, f32> {
        let loss = forward_loss(model, b, &LossWeights::from_config(config));
        let specs = params::param_specs(model);
        let at = VocabParams::find(&specs);
        specs
            .into_iter()
            .zip(micro_gradients(model, loss, at))
            .filter_map(|(spec, g)| g.map(|g| (spec.name, g.abs().sum().into_scalar())))
            .collect()
    }

    fn has_grad(norms: &BTreeMap<String, f32>, prefix: &str) -> bool {
        norms
            .iter()
            .any(|(name, &n)| name.starts_with(prefix) && n > 0.0)
    }

    #[test]
    fn gradient_flows_only_where_it_should() {
        let _guard = rng_lock();
        let mut config = tiny_config();
        config.model.scl = true;
        let device = Default::default();
        B::seed(&device, 1);
        let model = CocoLm::<B>::init(&config.model, &device).unwrap();
        let b = DeviceBatch::upload(&batch(&config, 0), &config.model, &device).unwrap();
        let with = |mlm: f64, copy: f64, clm: f64, scl: f64| {
            let mut c = config.clone();
            (
                c.train.mlm_weight,
                c.train.copy_weight,
                c.train.clm_weight,
                c.train.scl_weight,
            ) = (mlm, copy, clm, scl);
            grad_norms(&c, &model, &b)
        };

        // The generator learns from its MLM loss only: with MLM weight 0 its layers get
        // no gradient through the sampled replacements, while the shared token table
        // still learns from the corrector.
        let without_mlm = with(0.0, 50.0, 1.0, 1.0);
        assert!(!has_grad(&without_mlm, "generator."), "{without_mlm:?}");
        assert!(has_grad(&without_mlm, "token_embedding"));
        assert!(has_grad(&without_mlm, "corrector.backbone.encoder"));
        assert!(has_grad(&without_mlm, "corrector.scl_head"));

        let mlm_only = with(1.0, 0.0, 0.0, 0.0);
        assert!(has_grad(&mlm_only, "generator.backbone.encoder"));
        assert!(has_grad(&mlm_only, "generator.head"));
        assert!(has_grad(&mlm_only, "token_embedding"));
        assert!(!has_grad(&mlm_only, "corrector."), "{mlm_only:?}");

        // The CLM weight 1 − σ(copy) is detached: CLM alone does not train the copy head.
        let clm_only = with(0.0, 0.0, 1.0, 0.0);
        assert!(!has_grad(&clm_only, "corrector.copy_head"));
        assert!(has_grad(&clm_only, "corrector.lm_head"));
        assert!(has_grad(&clm_only, "corrector.backbone.encoder"));
        let copy_only = with(0.0, 1.0, 0.0, 0.0);
        assert!(has_grad(&copy_only, "corrector.copy_head"));
        assert!(!has_grad(&copy_only, "corrector.lm_head"));
    }

    #[test]
    fn total_combines_the_parts_as_documented() {
        let _guard = rng_lock();
        let mut config = tiny_config();
        config.model.scl = true;
        config.train.mlm_weight = 2.0;
        config.train.copy_weight = 7.0;
        config.train.clm_weight = 3.0;
        config.train.scl_weight = 0.5;
        let device = Default::default();
        B::seed(&device, 2);
        let model = CocoLm::<B>::init(&config.model, &device).unwrap();
        let raw = batch(&config, 1);
        let b = DeviceBatch::upload(&raw, &config.model, &device).unwrap();
        let loss = forward_loss(&model, &b, &LossWeights::from_config(&config));
        let s = read_stats(loss.stats);
        let n_m = raw.n_masked() as f64;
        let want = 2.0 * s.mlm_sum / n_m
            + 7.0 * s.copy_sum / s.n_real
            + 3.0 * s.clm_sum / n_m
            + 0.5 * s.scl_sum / 3.0;
        assert!(
            (s.loss - want).abs() < 1e-4 * want.abs(),
            "{} vs {want}",
            s.loss
        );
        assert!((loss.total.into_scalar() as f64 - s.loss).abs() < 1e-6 * want.abs());
        assert_eq!(s.n_masked, n_m);
        assert_eq!(s.n_real, raw.n_tokens() as f64);
        assert!(s.replaced <= s.n_masked);
        assert!(s.mlm_sum > 0.0 && s.clm_sum > 0.0 && s.scl_sum > 0.0);
    }

    #[test]
    fn clm_terms_are_weighted_by_one_minus_sigmoid_copy() {
        // By hand: CE values 2 and 1 with copy logits 0 and ln 3 → weights 1/2 and 1/4.
        let device = Default::default();
        type I = crate::CpuInner;
        let ce = Tensor::<I, 1>::from_floats([2.0, 1.0], &device);
        let copy = Tensor::<I, 1>::from_floats([0.0, 3f32.ln()], &device);
        let weighted = (ce * sigmoid(copy).neg().add_scalar(1.0))
            .sum()
            .into_scalar();
        assert!((weighted - (1.0 + 0.25)).abs() < 1e-6);
    }

    #[test]
    fn padding_does_not_change_real_positions() {
        let config = tiny_config();
        let device = Default::default();
        type I = crate::CpuInner;
        let model = CocoLm::<I>::init(&config.model, &device).unwrap();
        let raw = batch(&config, 2);
        let mut other = raw.clone();
        for (r, &len) in raw.lengths.iter().enumerate() {
            for s in len as usize..raw.seq_len {
                other.input_ids[r * raw.seq_len + s] = 7 + s as u32;
            }
        }
        let hidden = |b: &Batch| {
            let input =
                EncoderInput::<I>::new(&b.input_ids, &b.lengths, b.batch_size, b.seq_len, &device);
            let h = model
                .corrector
                .backbone
                .forward(model.token_embedding.val(), &input);
            params::tensor_to_vec(h)
        };
        let (a, c) = (hidden(&raw), hidden(&other));
        let hdim = config.model.hidden_size;
        for (r, &len) in raw.lengths.iter().enumerate() {
            let span = r * raw.seq_len * hdim..(r * raw.seq_len + len as usize) * hdim;
            for k in span {
                assert!(
                    (a[k] - c[k]).abs() < 1e-5,
                    "row {r} changed with its padding"
                );
            }
        }
        assert!(
            raw.lengths.iter().any(|&l| (l as usize) < raw.seq_len),
            "the batch has padding"
        );
    }

    #[test]
    fn inconsistent_batches_are_rejected() {
        let config = tiny_config();
        let device = Default::default();
        let good = batch(&config, 3);
        let upload = |b: &Batch| {
            DeviceBatch::<crate::CpuInner>::upload(b, &config.model, &device).map(|_| ())
        };
        upload(&good).unwrap();

        let mut b = good.clone();
        let row = b
            .lengths
            .iter()
            .position(|&l| (l as usize) < b.seq_len)
            .unwrap();
        b.masked_positions = vec![(row * b.seq_len + b.seq_len - 1) as u32];
        assert!(
            upload(&b)
                .unwrap_err()
                .to_string()
                .contains("masked_positions")
        );

        let mut b = good.clone();
        b.input_ids[0] = config.model.vocab_size as u32;
        assert!(upload(&b).unwrap_err().to_string().contains("input_ids"));

        let mut b = good.clone();
        b.lengths[0] = 0;
        assert!(upload(&b).unwrap_err().to_string().contains("lengths"));

        let mut b = good.clone();
        b.original_ids.pop();
        assert!(upload(&b).unwrap_err().to_string().contains("original_ids"));

        let mut b = good;
        b.masked_positions.reverse();
        if b.masked_positions.len() > 1 {
            assert!(upload(&b).is_err());
        }
    }

    #[test]
    fn a_batch_without_masks_still_trains_the_copy_head() {
        let _guard = rng_lock();
        let config = tiny_config();
        let device = Default::default();
        let mut trainer = Trainer::<B>::new(&config, &device).unwrap();
        let mut b = batch(&config, 4);
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
