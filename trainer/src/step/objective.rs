//! The COCO-LM objective of one micro-batch: the generator on the masked input,
//! replacements drawn from its softmax, the corrector on the corrupted input, the losses.
//!
//! With `n_m` masked positions and `B` rows:
//!
//! ```text
//! loss = mlm_weight · Σ_masked CE_gen / n_m
//!      + copy_weight · mean_nonpad BCE_copy
//!      + clm_weight · Σ_masked CE_clm · (1 − σ(copy)).detach() / n_m
//!      + scl_weight · SCL / B            (SCL: half the sum over the 2B views)
//! ```
//!
//! which, with the weights 1, 50, 1, 1, is COCO-LM's
//! `(MLM_sum + 50·BCE_mean·n_m + Σ CE·w + SCL·n_m/B) / n_m` (and stays defined when a batch
//! has no masked position). The two vocabulary heads are differentiated by hand
//! ([`crate::vocab`]); everything else by one backward pass through both models
//! ([`super::gradients`]).

use super::batch::DeviceBatch;
use super::metrics::MicroStats;
use crate::kernels::TrainBackend;
use crate::loss::{binary_cross_entropy_with_logits, contrastive_loss};
use crate::model::CocoLm;
use crate::vocab::{VocabLoss, vocab_loss};
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Int, Tensor};
use cocolm_shared::RunConfig;

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
/// the token table by [`super::gradients::micro_gradients`] (no `[vocab, H]` zeros per
/// lookup).
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
    /// The total loss (see the module docs) times the loss scale, fp32. Its backward pass
    /// yields every gradient (times the scale) apart from the token table's and the
    /// vocabulary biases'.
    pub total: Tensor<B, 1>,
    /// The vocabulary heads' own gradients, times the loss scale (`None` without masked
    /// positions).
    pub vocab: Option<VocabGrads<B::InnerBackend>>,
    /// The token lookups of the forward pass.
    pub lookups: Vec<Lookup<B>>,
    /// Statistics, still on the device ([`MicroStats::read`]).
    pub stats: MicroStats<Tensor<B::InnerBackend, 1>>,
}

/// What every part of the objective reads.
struct Context<'a, B: AutodiffBackend> {
    model: &'a CocoLm<B>,
    batch: &'a DeviceBatch<B>,
    weights: &'a LossWeights,
    /// The token table, outside the graph.
    table: Tensor<B::InnerBackend, 2>,
    /// Original ids at the masked positions.
    targets: Tensor<B::InnerBackend, 1, Int>,
    /// Flat masked positions.
    masked: Tensor<B::InnerBackend, 1, Int>,
    /// `1 / n_m` (1 without masked positions).
    per_masked: f64,
    /// The loss scale the gradients are computed at.
    loss_scale: f64,
}

impl<B: AutodiffBackend> Context<'_, B> {
    fn scalar(&self, v: f64) -> Tensor<B::InnerBackend, 1> {
        Tensor::from_floats([v as f32], &self.table.device())
    }
}

/// The generator's part: its MLM loss, and one replacement drawn per masked position.
fn generator<B: TrainBackend>(
    c: &Context<'_, B>,
    lookups: &mut Vec<Lookup<B>>,
) -> (VocabLoss<B>, Tensor<B::InnerBackend, 1, Int>) {
    let (model, batch) = (c.model, c.batch);
    let lookup = Lookup::new(&c.table, batch.input.ids.clone().inner());
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
    let w = Tensor::full(
        [batch.n_masked],
        c.weights.mlm * c.per_masked * c.loss_scale,
        &c.table.device(),
    );
    let bias = model.generator.head.bias.val().inner();
    let uniforms = Some(batch.uniforms.clone().inner());
    let (loss, samples) = vocab_loss(x, c.table.clone(), bias, c.targets.clone(), w, uniforms);
    (loss, samples.expect("vocab_loss draws when asked to"))
}

/// The corrupted input, where the drawn samples replace the masked tokens.
struct Corruption<B: Backend> {
    /// Corrupted ids `[batch · seq]`.
    ids: Tensor<B, 1, Int>,
    /// Copy labels: 1 where the token is the original, `[batch · seq]`.
    labels: Tensor<B, 1>,
    /// Number of masked positions whose sample differs from the original, `[1]`.
    replaced: Tensor<B, 1>,
}

fn corrupt<B: AutodiffBackend>(
    c: &Context<'_, B>,
    samples: Option<&Tensor<B::InnerBackend, 1, Int>>,
) -> Corruption<B::InnerBackend> {
    let batch = c.batch;
    let device = c.table.device();
    let original = batch.original.clone().inner();
    let all = batch.input.batch * batch.input.seq;
    let Some(samples) = samples else {
        return Corruption {
            ids: original,
            labels: Tensor::ones([all], &device),
            replaced: c.scalar(0.0),
        };
    };
    let replaced = samples.clone().not_equal(c.targets.clone()).float();
    let ids = original.select_assign(
        0,
        c.masked.clone(),
        samples.clone() - c.targets.clone(),
        IndexingUpdateOp::Add,
    );
    let labels = Tensor::<B::InnerBackend, 1>::ones([all], &device).select_assign(
        0,
        c.masked.clone(),
        replaced.clone().neg(),
        IndexingUpdateOp::Add,
    );
    Corruption {
        ids,
        labels,
        replaced: replaced.sum(),
    }
}

/// The corrector's part on the corrupted input: copy loss everywhere, CLM at the masked
/// positions, SCL on the crop.
struct Corrector<B: AutodiffBackend> {
    /// Σ copy BCE over real tokens, `[1]`.
    copy_sum: Tensor<B, 1>,
    /// Right copy predictions over real tokens, `[1]`.
    copy_correct: Tensor<B::InnerBackend, 1>,
    /// The CLM head and its weighted cross-entropy sum `[1]`, with masked positions.
    clm: Option<(VocabLoss<B>, Tensor<B::InnerBackend, 1>)>,
    /// SCL loss (half the Σ of the views' cross-entropies, [`contrastive_loss`]), `[1]`,
    /// when the batch has a crop.
    scl_sum: Option<Tensor<B, 1>>,
}

fn corrector<B: TrainBackend>(
    c: &Context<'_, B>,
    corruption: &Corruption<B::InnerBackend>,
    lookups: &mut Vec<Lookup<B>>,
) -> Corrector<B> {
    let (model, batch) = (c.model, c.batch);
    let lookup = Lookup::new(&c.table, corruption.ids.clone());
    let input = batch
        .input
        .with_ids(Tensor::from_inner(corruption.ids.clone()));
    let out = model.corrector.forward_words(lookup.words.clone(), &input);
    lookups.push(lookup);
    let labels = corruption.labels.clone();
    let copy_sum = (binary_cross_entropy_with_logits(
        out.copy_logits.clone(),
        Tensor::from_inner(labels.clone()),
    ) * batch.real.clone())
    .sum();
    let copy_logits = out.copy_logits.clone().inner();
    let copy_correct = (copy_logits.clone().greater_elem(0.0).float() - labels)
        .abs()
        .neg()
        .add_scalar(1.0)
        .mul(batch.real.clone().inner())
        .sum();
    let clm = (batch.n_masked > 0).then(|| {
        let x = out.hidden.clone().select(0, batch.masked.clone());
        let keep = sigmoid(copy_logits.select(0, c.masked.clone()))
            .neg()
            .add_scalar(1.0);
        let w = keep
            .clone()
            .mul_scalar(c.weights.clm * c.per_masked * c.loss_scale);
        let bias = model.corrector.lm_head.bias.val().inner();
        let (loss, _) = vocab_loss(x, c.table.clone(), bias, c.targets.clone(), w, None);
        let weighted = (loss.cross_entropy.clone() * keep).sum();
        (loss, weighted)
    });
    let scl_sum = batch.crop.as_ref().and_then(|crop| {
        let lookup = Lookup::new(&c.table, crop.ids.clone().inner());
        let hidden = model
            .corrector
            .backbone
            .forward_words(lookup.words.clone(), crop);
        lookups.push(lookup);
        let (rows, seq) = (batch.input.batch, batch.input.seq);
        let a = model.corrector.scl_views(out.hidden.clone(), rows, seq)?;
        let b = model.corrector.scl_views(hidden, rows, crop.seq)?;
        Some(contrastive_loss(
            Tensor::cat(vec![a, b], 0),
            c.weights.scl_temperature,
        ))
    });
    Corrector {
        copy_sum,
        copy_correct,
        clm,
        scl_sum,
    }
}

/// The forward pass of one micro-batch (see the module docs), its gradients to be taken
/// at `loss_scale` (1 but in fp16).
pub fn forward_loss<B: TrainBackend>(
    model: &CocoLm<B>,
    batch: &DeviceBatch<B>,
    weights: &LossWeights,
    loss_scale: f64,
) -> MicroLoss<B> {
    let c = Context {
        model,
        batch,
        weights,
        table: model.token_embedding.val().inner(),
        targets: batch.targets.clone().inner(),
        masked: batch.masked.clone().inner(),
        per_masked: 1.0 / batch.n_masked.max(1) as f64,
        loss_scale,
    };
    let mut lookups = Vec::new();
    let generator = (batch.n_masked > 0).then(|| generator(&c, &mut lookups));
    let corruption = corrupt(&c, generator.as_ref().map(|(_, samples)| samples));
    let corrector = corrector(&c, &corruption, &mut lookups);

    let mut total = corrector
        .copy_sum
        .clone()
        .div_scalar(batch.n_real as f64)
        .mul_scalar(weights.copy);
    if let Some((g, _)) = &generator {
        let value = g
            .cross_entropy
            .clone()
            .sum()
            .mul_scalar(weights.mlm * c.per_masked);
        total = total + Tensor::from_inner(value);
    }
    if let Some((_, weighted)) = &corrector.clm {
        let value = weighted.clone().mul_scalar(weights.clm * c.per_masked);
        total = total + Tensor::from_inner(value);
    }
    if let Some(scl) = &corrector.scl_sum {
        total = total
            + scl
                .clone()
                .mul_scalar(weights.scl / batch.input.batch as f64);
    }
    // The vocabulary heads' surrogates (exactly 0) already carry the scale.
    let mut scaled = if loss_scale == 1.0 {
        total.clone()
    } else {
        total.clone().mul_scalar(loss_scale)
    };
    for surrogate in [
        generator.as_ref().map(|(g, _)| &g.surrogate),
        corrector.clm.as_ref().map(|(head, _)| &head.surrogate),
    ]
    .into_iter()
    .flatten()
    {
        scaled = scaled + surrogate.clone();
    }

    let zero = || c.scalar(0.0);
    let (mlm_sum, mlm_correct) = generator.as_ref().map_or_else(
        || (zero(), zero()),
        |(g, _)| (g.cross_entropy.clone().sum(), g.correct.clone()),
    );
    let (clm_sum, clm_correct) = corrector.clm.as_ref().map_or_else(
        || (zero(), zero()),
        |(head, weighted)| (weighted.clone(), head.correct.clone()),
    );
    let stats = MicroStats {
        n_masked: c.scalar(batch.n_masked as f64),
        n_real: c.scalar(batch.n_real as f64),
        rows: c.scalar(batch.input.batch as f64),
        mlm_sum,
        mlm_correct,
        copy_sum: corrector.copy_sum.inner(),
        copy_correct: corrector.copy_correct,
        clm_sum,
        clm_correct,
        replaced: corruption.replaced,
        scl_sum: corrector.scl_sum.map_or_else(zero, |s| s.inner()),
        loss: total.clone().inner(),
    };
    let vocab = generator
        .zip(corrector.clm)
        .map(|((g, _), (head, _))| VocabGrads {
            tokens: g.d_tokens + head.d_tokens,
            generator_bias: g.d_bias,
            corrector_bias: head.d_bias,
        });
    MicroLoss {
        total: scaled,
        vocab,
        lookups,
        stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EncoderInput;
    use crate::test_util::{rng_lock, synthetic_batch, tiny_config};
    use crate::{CpuBackend, CpuInner};
    use burn::module::AutodiffModule;

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
        CpuBackend::seed(&device, 2);
        let model = CocoLm::<CpuBackend>::init(&config.model, &device).unwrap();
        let raw = synthetic_batch(&config, 1);
        let b = DeviceBatch::upload(&raw, &config.model, 0, &device).unwrap();
        let loss = forward_loss(&model, &b, &LossWeights::from_config(&config), 1.0);
        let s = loss.stats.read();
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

    /// The corrector's part against the model computed directly: COCO-LM's CLM head is
    /// `h·Eᵀ + b` on the last hidden state (no transform), and each masked row's
    /// cross-entropy is weighted by `1 − σ(copy logit)`.
    #[test]
    fn clm_is_the_tied_projection_of_the_hidden_state_weighted_by_the_copy_head() {
        let _guard = rng_lock();
        let mut config = tiny_config();
        config.model.dropout = 0.0;
        let device = Default::default();
        CpuBackend::seed(&device, 3);
        let model = CocoLm::<CpuBackend>::init(&config.model, &device).unwrap();
        let raw = synthetic_batch(&config, 0);
        let batch = DeviceBatch::upload(&raw, &config.model, 0, &device).unwrap();
        let weights = LossWeights::from_config(&config);
        let c = Context {
            model: &model,
            batch: &batch,
            weights: &weights,
            table: model.token_embedding.val().inner(),
            targets: batch.targets.clone().inner(),
            masked: batch.masked.clone().inner(),
            per_masked: 1.0 / batch.n_masked as f64,
            loss_scale: 1.0,
        };
        // Replace every other masked token by the next id.
        let targets: Vec<i64> = raw
            .masked_positions
            .iter()
            .map(|&p| raw.original_ids[p as usize] as i64)
            .collect();
        let samples: Vec<i64> = targets
            .iter()
            .enumerate()
            .map(|(k, &t)| if k % 2 == 0 { (t + 1) % 40 } else { t })
            .collect();
        let samples = Tensor::<CpuInner, 1, Int>::from_data(
            burn::tensor::TensorData::new(samples.clone(), [samples.len()]),
            &device,
        );
        let corruption = corrupt(&c, Some(&samples));
        let (_, weighted) = corrector(&c, &corruption, &mut Vec::new())
            .clm
            .expect("the batch has masked positions");
        let got = weighted.into_scalar() as f64;

        let inner = model.clone().valid();
        let input = EncoderInput::<CpuInner>::new(
            &raw.input_ids,
            &raw.lengths,
            raw.batch_size,
            raw.seq_len,
            &device,
        )
        .with_ids(corruption.ids.clone());
        let tokens = inner.token_embedding.val();
        let out = inner.corrector.forward(tokens.clone(), &input);
        let masked = batch.masked.clone().inner();
        let logits = inner
            .corrector
            .lm_head
            .forward(out.hidden.select(0, masked.clone()), tokens);
        let log_p = burn::tensor::activation::log_softmax(logits, 1)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let copy = out
            .copy_logits
            .select(0, masked)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let want: f64 = targets
            .iter()
            .enumerate()
            .map(|(k, &t)| {
                let ce = -log_p[k * 40 + t as usize] as f64;
                ce * (1.0 - 1.0 / (1.0 + (-copy[k] as f64).exp()))
            })
            .sum();
        assert!((got - want).abs() < 1e-4 * want.abs(), "{got} vs {want}");
    }
}
