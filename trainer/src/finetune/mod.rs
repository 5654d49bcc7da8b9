//! Fine-tuning for sequence classification: the corrector's encoder (or the same
//! architecture freshly initialised, the from-scratch baseline) with `[CLS]` → dropout →
//! linear on top, trained with AdamW, linear warm-up and decay, and early stopping on a
//! development set.
//!
//! The caller tokenizes: each [`Example`] holds `[CLS] … [SEP]` ids and a class index.

pub mod score;

use crate::kernels::reference::dropout;
use crate::kernels::{Kernels, TrainBackend};
use crate::loss::cross_entropy;
use crate::model::backbone::Backbone;
use crate::model::layers::Dense;
use crate::model::{CocoLm, EncoderInput};
use crate::optim::{AdamW, AdamWConfig, LinearSchedule, Optimizer, StepRequest};
use crate::{Result, params};
use burn::module::{AutodiffModule, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, ElementConversion, Int, Tensor, TensorData};
use cocolm_shared::hash::{SplitMix64, seed_of};
use cocolm_shared::{DecayScope, ModelConfig};
pub use score::Scores;
use std::time::Instant;

/// One labelled sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Token ids, `[CLS]` first, at most the model's positions.
    pub ids: Vec<u32>,
    /// Class index.
    pub label: usize,
}

/// The corrector's encoder with a classification head on its first position.
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    /// The token table `[vocab, H]`.
    pub token_embedding: Param<Tensor<B, 2>>,
    /// Embeddings and encoder of the corrector.
    pub backbone: Backbone<B>,
    /// `Linear(H, classes)` on the `[CLS]` vector.
    pub head: Dense<B>,
    /// Dropout before the head (training only).
    pub dropout: f64,
}

impl<B: Backend> Classifier<B> {
    /// The corrector and token table of `model` with a new head drawn from
    /// `N(0, model.init_std²)` (seed the backend first for a reproducible draw); the
    /// generator and the pretraining heads are dropped.
    pub fn new(model: CocoLm<B>, config: &ModelConfig, classes: usize, device: &B::Device) -> Self {
        Self {
            token_embedding: model.token_embedding,
            backbone: model.corrector.backbone,
            head: Dense::new(config.hidden_size, classes, config.init_std, device),
            dropout: config.dropout,
        }
    }
}

impl<B: Kernels> Classifier<B> {
    /// Class logits, fp32.
    ///
    /// # Shapes
    /// - `input.ids`: `[batch · seq]` with `[CLS]` at every row's first position
    /// - output: `[batch, classes]`
    pub fn forward(&self, input: &EncoderInput<B>) -> Tensor<B, 2> {
        let hidden = self.backbone.forward(self.token_embedding.val(), input);
        let device = hidden.device();
        let (batch, seq) = (input.batch, input.seq);
        let cls = Tensor::<B, 1, Int>::arange_step(0..(batch * seq) as i64, seq, &device);
        let x = dropout(hidden.select(0, cls), self.dropout);
        self.head.forward(x).cast(DType::F32)
    }
}

/// How to fine-tune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Most passes over the training set.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Sequences per update.
    pub batch_size: usize,
    /// Fraction of all updates spent warming up linearly; then linear decay to 0.
    pub warmup_fraction: f64,
    /// AdamW weight decay (matrices only).
    pub weight_decay: f64,
    /// Gradient-norm clipping (0: off).
    pub clip_norm: f64,
    /// Stop after this many epochs without a better development accuracy.
    pub patience: usize,
    /// Seed of the head's initialisation, the order of examples and dropout.
    pub seed: u64,
    /// The `[PAD]` id.
    pub pad: u32,
}

/// One epoch of [`fit`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Mean training cross-entropy of the epoch.
    pub train_loss: f64,
    /// The development set after the epoch.
    pub dev: Scores,
    /// Wall time of the epoch (training and evaluation).
    pub seconds: f64,
}

/// What [`fit`] reports while it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FitEvent<'a> {
    /// An update was applied: `done` of the `total` planned.
    Update {
        /// Updates applied so far.
        done: u64,
        /// Updates of all epochs.
        total: u64,
    },
    /// An epoch ended and was scored on the development set.
    Epoch(&'a EpochReport),
}

/// What [`fit`] returns.
#[derive(Debug)]
pub struct Fitted<B: Backend> {
    /// The model after its best epoch (by development accuracy; the earlier on ties).
    pub model: Classifier<B>,
    /// Every epoch run.
    pub history: Vec<EpochReport>,
    /// The epoch `model` is from.
    pub best_epoch: usize,
}

/// Fine-tune `model` on `train`, evaluating on `dev` after every epoch and keeping the
/// best epoch's weights; `on_event` hears of every update and every epoch.
pub fn fit<B: TrainBackend>(
    mut model: Classifier<B>,
    train: &[Example],
    dev: &[Example],
    options: &FitOptions,
    device: &B::Device,
    mut on_event: impl FnMut(FitEvent<'_>),
) -> Result<Fitted<B>> {
    let classes = model.head.bias.dims()[0];
    let per_epoch = train.len().div_ceil(options.batch_size.max(1)) as u64;
    let total = per_epoch * options.epochs as u64;
    let schedule = LinearSchedule {
        peak: options.lr,
        warmup: (total as f64 * options.warmup_fraction).round() as u64,
        total,
    };
    let mut optimizer = AdamW::<B::InnerBackend>::new(
        params::param_specs(&model),
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: options.weight_decay,
            scope: DecayScope::Matrices,
        },
        device,
    );
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut best: Option<(f64, usize, Classifier<B>)> = None;
    let mut history = Vec::new();
    let mut update = 0u64;
    for epoch in 1..=options.epochs {
        let started = Instant::now();
        SplitMix64::new(seed_of(&[options.seed, epoch as u64])).shuffle(&mut order);
        let mut loss_sum = 0.0;
        for chunk in order.chunks(options.batch_size.max(1)) {
            let rows: Vec<&Example> = chunk.iter().map(|&i| &train[i]).collect();
            let input = encoder_input::<B>(&rows, options.pad, device);
            let targets: Vec<i64> = rows.iter().map(|e| e.label as i64).collect();
            let targets =
                Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [rows.len()]), device);
            let (ce, _) = cross_entropy(model.forward(&input), targets);
            let loss = ce.mean();
            let value: f64 = loss.clone().into_scalar().elem();
            loss_sum += value * rows.len() as f64;
            let grads = loss.backward();
            let gradients = params::gradients(&model, &grads);
            let request = StepRequest {
                lr: schedule.lr(update),
                clip_norm: options.clip_norm,
                grad_divisor: 1.0,
            };
            let outcome = optimizer.step(params::flat_values(&model), gradients, &request)?;
            if let Some(values) = outcome.params {
                model = params::set_flat_values(model, values);
            }
            update += 1;
            on_event(FitEvent::Update {
                done: update,
                total,
            });
        }
        let dev_scores = evaluate(&model.valid(), dev, classes, options, device);
        let report = EpochReport {
            epoch,
            train_loss: loss_sum / train.len().max(1) as f64,
            dev: dev_scores,
            seconds: started.elapsed().as_secs_f64(),
        };
        on_event(FitEvent::Epoch(&report));
        history.push(report);
        if best
            .as_ref()
            .is_none_or(|(accuracy, _, _)| dev_scores.accuracy > *accuracy)
        {
            best = Some((dev_scores.accuracy, epoch, model.clone()));
        }
        let best_epoch = best.as_ref().map_or(epoch, |b| b.1);
        if epoch - best_epoch >= options.patience.max(1) {
            break;
        }
    }
    let (_, best_epoch, model) = best.unwrap_or((0.0, 0, model));
    Ok(Fitted {
        model,
        history,
        best_epoch,
    })
}

/// The class predicted for every example, in order (no dropout).
pub fn predict<B: Kernels>(
    model: &Classifier<B>,
    examples: &[Example],
    batch_size: usize,
    pad: u32,
    device: &B::Device,
) -> Vec<usize> {
    examples
        .chunks(batch_size.max(1))
        .flat_map(|chunk| {
            let rows: Vec<&Example> = chunk.iter().collect();
            let logits = model.forward(&encoder_input::<B>(&rows, pad, device));
            logits
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .into_vec::<i64>()
                .expect("argmax reads back as integers")
                .into_iter()
                .map(|c| c as usize)
        })
        .collect()
}

/// Accuracy and macro-F1 of `model` on `examples`.
pub fn evaluate<B: Kernels>(
    model: &Classifier<B>,
    examples: &[Example],
    classes: usize,
    options: &FitOptions,
    device: &B::Device,
) -> Scores {
    let predicted = predict(model, examples, options.batch_size, options.pad, device);
    let gold: Vec<usize> = examples.iter().map(|e| e.label).collect();
    Scores::of(&predicted, &gold, classes)
}

/// The rows padded with `pad` to the longest of them.
fn encoder_input<B: Backend>(rows: &[&Example], pad: u32, device: &B::Device) -> EncoderInput<B> {
    let seq = rows.iter().map(|e| e.ids.len()).max().unwrap_or(1).max(1);
    let mut ids = Vec::with_capacity(rows.len() * seq);
    for e in rows {
        ids.extend_from_slice(&e.ids);
        ids.resize(ids.len() + seq - e.ids.len(), pad);
    }
    let lengths: Vec<u32> = rows.iter().map(|e| e.ids.len() as u32).collect();
    EncoderInput::new(&ids, &lengths, rows.len(), seq, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;
    use crate::test_util::{rng_lock, tiny_config};

    /// A task a tiny model learns in a few epochs: the class is whether token 7 occurs.
    fn task(n: usize, seed: u64) -> Vec<Example> {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                let len = 4 + rng.below(6) as usize;
                let mut ids: Vec<u32> = (0..len).map(|_| 10 + rng.below(20) as u32).collect();
                let label = rng.below(2) as usize;
                if label == 1 {
                    let at = rng.below(len as u64) as usize;
                    ids[at] = 7;
                } else {
                    ids.iter_mut().filter(|t| **t == 7).for_each(|t| *t = 8);
                }
                ids.insert(0, 1);
                ids.push(2);
                Example { ids, label }
            })
            .collect()
    }

    #[test]
    fn a_tiny_classifier_learns_and_keeps_its_best_epoch() {
        let _guard = rng_lock();
        let config = tiny_config();
        let device = Default::default();
        CpuBackend::seed(&device, 4);
        let pretrained = CocoLm::<CpuBackend>::init(&config.model, &device).unwrap();
        let model = Classifier::new(pretrained, &config.model, 2, &device);
        let options = FitOptions {
            epochs: 6,
            lr: 3e-3,
            batch_size: 16,
            warmup_fraction: 0.1,
            weight_decay: 0.01,
            clip_norm: 1.0,
            patience: 6,
            seed: 1,
            pad: 0,
        };
        let (train, dev) = (task(256, 1), task(64, 2));
        let (mut updates, mut epochs) = (0, 0);
        let fitted = fit(
            model,
            &train,
            &dev,
            &options,
            &device,
            |event| match event {
                FitEvent::Update { done, total } => {
                    assert!(done <= total);
                    updates = done;
                }
                FitEvent::Epoch(report) => {
                    epochs += 1;
                    assert_eq!(report.epoch, epochs);
                }
            },
        )
        .unwrap();
        assert_eq!((updates, epochs), (6 * 16, 6));
        assert_eq!(fitted.history.len(), 6);
        let best = fitted.history[fitted.best_epoch - 1].dev.accuracy;
        assert!(
            fitted.history.iter().all(|e| e.dev.accuracy <= best),
            "{:?}",
            fitted.history
        );
        assert!(best > 0.85, "dev accuracy {best}: {:?}", fitted.history);
        let again = evaluate(&fitted.model.valid(), &dev, 2, &options, &device);
        assert_eq!(
            again.accuracy, best,
            "the model returned is the best epoch's"
        );
        assert!(
            fitted.history.last().unwrap().train_loss < fitted.history[0].train_loss,
            "{:?}",
            fitted.history
        );
    }

    #[test]
    fn padding_does_not_change_a_prediction() {
        let _guard = rng_lock();
        let config = tiny_config();
        let device = Default::default();
        CpuBackend::seed(&device, 5);
        let model = Classifier::new(
            CocoLm::<CpuBackend>::init(&config.model, &device).unwrap(),
            &config.model,
            3,
            &device,
        )
        .valid();
        let examples = task(8, 3);
        let alone: Vec<usize> = examples
            .iter()
            .flat_map(|e| predict(&model, std::slice::from_ref(e), 1, 0, &device))
            .collect();
        assert_eq!(predict(&model, &examples, 8, 0, &device), alone);
    }
}
