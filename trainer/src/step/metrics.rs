//! What a step measures: the per-micro-batch counts and sums ([`MicroStats`]), and the
//! line of `metrics.jsonl` made from them ([`StepMetrics`]).

use crate::params;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

/// Defines [`MicroStats`] from one list of fields: the struct, its conversion to and from
/// a fixed-order array (the layout of the statistics tensor) and its sum. The order is
/// written here once.
macro_rules! micro_stats {
    ($($(#[doc = $doc:expr])+ $field:ident,)+) => {
        /// Counts and sums of one micro-batch (or of several, added up), each a `T`: host
        /// `f64` values, or device scalars `[1]` while the step runs, read back in one
        /// transfer by [`MicroStats::read`].
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub struct MicroStats<T = f64> {
            $($(#[doc = $doc])+ pub $field: T,)+
        }

        /// Number of fields of [`MicroStats`].
        const FIELDS: usize = [$(stringify!($field)),+].len();

        impl<T> MicroStats<T> {
            /// The fields in their fixed order.
            pub(crate) fn into_array(self) -> [T; FIELDS] {
                [$(self.$field),+]
            }

            /// The inverse of [`MicroStats::into_array`].
            pub(crate) fn from_array(values: [T; FIELDS]) -> Self {
                let [$($field),+] = values;
                Self { $($field),+ }
            }
        }

        impl std::ops::AddAssign for MicroStats {
            fn add_assign(&mut self, o: Self) {
                $(self.$field += o.$field;)+
            }
        }
    };
}

micro_stats! {
    /// Masked positions.
    n_masked,
    /// Real tokens.
    n_real,
    /// Rows.
    rows,
    /// Σ generator CE.
    mlm_sum,
    /// Generator argmax = original.
    mlm_correct,
    /// Σ copy BCE over real tokens.
    copy_sum,
    /// Copy predictions (logit > 0 ⇔ original) that are right, over real tokens.
    copy_correct,
    /// Σ weighted CLM CE.
    clm_sum,
    /// CLM argmax = original.
    clm_correct,
    /// Masked positions whose sample differs from the original.
    replaced,
    /// Σ SCL CE.
    scl_sum,
    /// Total loss.
    loss,
}

impl<B: Backend> MicroStats<Tensor<B, 1>> {
    /// Read every statistic back to the host in one transfer.
    pub fn read(self) -> MicroStats {
        let values = params::tensor_to_vec(Tensor::cat(self.into_array().to_vec(), 0));
        let values: [f32; FIELDS] = values
            .try_into()
            .expect("one value per statistic (each a [1] tensor)");
        MicroStats::from_array(values.map(f64::from))
    }
}

/// What one optimiser step reports (one line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimiser steps completed, this one included.
    pub step: u64,
    /// Total loss (mean over the micro-batches; `null` in JSON when not finite).
    #[serde(deserialize_with = "null_as_nan")]
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
    /// Global gradient norm before clipping (`null` in JSON when not finite: the step
    /// was skipped or failed).
    #[serde(deserialize_with = "null_as_nan")]
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
    /// Bytes of optimiser state on this rank (fp32 master weights and moments).
    #[serde(default)]
    pub optimizer_state_bytes: u64,
    /// The loss scale the step ran at (fp16 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f64>,
    /// The gradients were not finite and nothing was applied (fp16: the loss scale was
    /// lowered).
    #[serde(default)]
    pub skipped: bool,
    /// What the data side reports about this step ([`crate::train::RunHooks::data_metrics`]:
    /// `cocolm train` puts each source's examples read and epochs there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// The model on the held-out slice, on the steps it was evaluated
    /// (`cocolm train --eval-data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalMetrics>,
}

/// How the model does on held-out batches, without dropout and without learning from
/// them ([`crate::step::Trainer::evaluate`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Sequences evaluated.
    pub sequences: u64,
    /// Generator MLM cross-entropy per masked token.
    pub mlm_loss: f64,
    /// Generator argmax accuracy at the masked positions.
    pub mlm_accuracy: f64,
    /// Copy accuracy of the corrector over the real tokens of the input the generator
    /// corrupted.
    pub copy_accuracy: f64,
    /// CLM argmax accuracy at the masked positions.
    pub clm_accuracy: f64,
}

impl EvalMetrics {
    /// The metrics of summed statistics.
    pub fn new(stats: &MicroStats) -> Self {
        Self {
            sequences: stats.rows as u64,
            mlm_loss: ratio(stats.mlm_sum, stats.n_masked),
            mlm_accuracy: ratio(stats.mlm_correct, stats.n_masked),
            copy_accuracy: ratio(stats.copy_correct, stats.n_real),
            clm_accuracy: ratio(stats.clm_correct, stats.n_masked),
        }
    }
}

/// `a / b`, 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// JSON has no NaN or infinity (serde_json writes `null`): read `null` back as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What [`StepMetrics::new`] needs besides the statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Optimiser steps completed, this one included.
    pub step: u64,
    /// Micro-batches of the step, over all ranks.
    pub micro_batches: usize,
    /// Whether SCL is on (its loss is reported).
    pub scl: bool,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Wall time of the step in seconds.
    pub elapsed_s: f64,
    /// Bytes of optimiser state on this rank.
    pub optimizer_state_bytes: u64,
    /// The loss scale of the step (fp16 only).
    pub loss_scale: Option<f64>,
    /// Whether the step was skipped.
    pub skipped: bool,
}

impl StepMetrics {
    /// The metrics of a step from its summed statistics.
    pub fn new(stats: &MicroStats, info: StepInfo) -> Self {
        Self {
            step: info.step,
            loss: stats.loss / info.micro_batches as f64,
            mlm_loss: ratio(stats.mlm_sum, stats.n_masked),
            mlm_accuracy: ratio(stats.mlm_correct, stats.n_masked),
            copy_loss: ratio(stats.copy_sum, stats.n_real),
            copy_accuracy: ratio(stats.copy_correct, stats.n_real),
            clm_loss: ratio(stats.clm_sum, stats.n_masked),
            clm_accuracy: ratio(stats.clm_correct, stats.n_masked),
            replaced_fraction: ratio(stats.replaced, stats.n_masked),
            scl_loss: info.scl.then(|| ratio(stats.scl_sum, stats.rows)),
            lr: info.lr,
            grad_norm: info.grad_norm,
            tokens: stats.n_real as u64,
            masked: stats.n_masked as u64,
            step_ms: info.elapsed_s * 1e3,
            tokens_per_s: ratio(stats.n_real, info.elapsed_s),
            data_wait_fraction: None,
            optimizer_state_bytes: info.optimizer_state_bytes,
            loss_scale: info.loss_scale,
            skipped: info.skipped,
            data: None,
            eval: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuInner;

    /// Every field goes to its own slot and comes back under its own name.
    #[test]
    fn statistics_round_trip_through_one_tensor() {
        let device = Default::default();
        let values: [f32; FIELDS] = std::array::from_fn(|i| i as f32 + 0.5);
        let tensors = MicroStats::<Tensor<CpuInner, 1>>::from_array(
            values.map(|v| Tensor::from_floats([v], &device)),
        );
        let read = tensors.read();
        assert_eq!(read.into_array(), values.map(f64::from));
        assert_eq!(read.n_masked, 0.5);
        assert_eq!(read.loss, FIELDS as f64 - 0.5);
        let mut sum = read;
        sum += read;
        assert_eq!(sum.replaced, 2.0 * read.replaced);
    }
}
