//! The run configuration: one TOML file with `[model]`, `[train]` and `[data]` tables.
//!
//! Every table is `deny_unknown_fields` (a typo is an error, not a silently ignored key)
//! and `default` (a field left out takes the value of [`Default`]). Units are in the
//! field docs. Example files live in `configs/`.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole run: model shape, optimisation, data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Shape of the main model and its generator.
    pub model: ModelConfig,
    /// Optimisation and loop settings.
    pub train: TrainConfig,
    /// Loader and corruption settings.
    pub data: DataConfig,
}

/// Shape of the main (corrective) model and the auxiliary generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Vocabulary size; 0 takes it from the shard manifest's tokenizer.
    pub vocab_size: usize,
    /// Hidden width H of both models.
    pub hidden_size: usize,
    /// Layers of the main model.
    pub num_layers: usize,
    /// Attention heads (must divide `hidden_size`).
    pub num_heads: usize,
    /// Inner width of the feed-forward block.
    pub ffn_size: usize,
    /// Layers of the generator; 0 means a third of `num_layers` (at least 1).
    pub generator_layers: usize,
    /// Learned absolute positions (the longest sequence the model accepts).
    pub max_positions: usize,
    /// Rows of the token-type embedding: 0 for none, 1+ for Hugging Face compatibility
    /// (row 0 is added at every position).
    pub type_vocab_size: usize,
    /// COCO-LM's bucketed relative position bias, one table per head shared by all
    /// layers.
    pub relative_position: bool,
    /// Buckets of the relative position bias.
    pub rel_pos_buckets: usize,
    /// Distance beyond which relative positions share the last bucket.
    pub rel_pos_max_distance: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout probability in the main model (the generator always uses 0).
    pub dropout: f64,
    /// Standard deviation of the normal initialisation (BERT: 0.02).
    pub init_std: f64,
    /// Sequence contrastive learning head and loss (off by default, as in T-NLRv5).
    pub scl: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            vocab_size: 0,
            hidden_size: 256,
            num_layers: 4,
            num_heads: 4,
            ffn_size: 1024,
            generator_layers: 0,
            max_positions: 512,
            type_vocab_size: 0,
            relative_position: true,
            rel_pos_buckets: 32,
            rel_pos_max_distance: 128,
            layer_norm_eps: 1e-5,
            dropout: 0.1,
            init_std: 0.02,
            scl: false,
        }
    }
}

impl ModelConfig {
    /// Generator depth after applying the "a third of the main model" default.
    pub fn generator_depth(&self) -> usize {
        if self.generator_layers > 0 {
            self.generator_layers
        } else {
            (self.num_layers / 3).max(1)
        }
    }
}

/// Where the model trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The CPU (fp32: fused multi-threaded kernels; bf16/fp16: the portable code path on
    /// burn-flex, the one CUDA runs).
    #[default]
    Cpu,
    /// The first visible CUDA GPU of the process (a build with the `cuda` feature).
    Cuda,
}

/// Numeric precision of the forward and backward passes. Parameters, gradients and the
/// optimiser state are fp32 in every case (master weights); half precision casts the
/// parameters where they are used and keeps LayerNorm statistics, softmax, the
/// vocabulary logits and the losses in fp32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere.
    #[default]
    Fp32,
    /// IEEE half precision, with dynamic loss scaling (`train.loss_scale_*`).
    Fp16,
    /// bfloat16 (no loss scaling: its range is fp32's).
    Bf16,
}

/// Which parameters AdamW's weight decay applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DecayScope {
    /// Weight matrices and embedding tables only; biases and LayerNorm parameters
    /// (vectors) are not decayed (BERT, Hugging Face `Trainer`).
    #[default]
    Matrices,
    /// Every parameter, as fairseq's Adam does (one parameter group), and so the released
    /// COCO-LM recipe.
    All,
}

/// The lowercase names of [`Device`], [`Precision`] and [`DecayScope`] (as in the configuration file),
/// for command-line flags.
macro_rules! named_choices {
    ($($ty:ident { $($variant:ident = $name:literal),+ })+) => {$(
        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!(
                        "`{other}` is not one of {}",
                        [$($name),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $($ty::$variant => $name,)+
                })
            }
        }
    )+};
}

named_choices! {
    Device { Cpu = "cpu", Cuda = "cuda" }
    Precision { Fp32 = "fp32", Fp16 = "fp16", Bf16 = "bf16" }
    DecayScope { Matrices = "matrices", All = "all" }
}

/// Optimisation and loop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Sequences per optimiser step (per data-parallel rank, before accumulation).
    pub batch_size: usize,
    /// Micro-batches accumulated per optimiser step.
    pub grad_accum: usize,
    /// Optimiser steps of the run.
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warm-up from 0 to `lr`; then linear decay to 0 at `steps`.
    pub warmup_steps: u64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// The parameters `weight_decay` applies to.
    pub weight_decay_scope: DecayScope,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Global gradient-norm clipping threshold; 0 disables clipping.
    pub clip_norm: f64,
    /// Weight of the generator's MLM loss (1 in COCO-LM; with 0 the generator's own layers
    /// get no gradient).
    pub mlm_weight: f64,
    /// Weight of the copy (binary) loss.
    pub copy_weight: f64,
    /// Weight of the corrective LM loss (1 in COCO-LM).
    pub clm_weight: f64,
    /// Weight of the SCL loss (when `model.scl`).
    pub scl_weight: f64,
    /// SCL softmax temperature.
    pub scl_temperature: f64,
    /// Seed of initialisation, data order, corruption and sampling.
    pub seed: u64,
    /// Log metrics every this many steps.
    pub log_every: u64,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Also write one when this many minutes have passed since the last (0: off), so a
    /// pre-empted run loses at most this much work whatever its step time.
    pub checkpoint_every_minutes: f64,
    /// Checkpoints kept on disk (the newest); at least 1.
    pub keep_checkpoints: usize,
    /// Where the model trains.
    pub device: Device,
    /// Numeric precision of the forward and backward passes.
    pub precision: Precision,
    /// fp16 only: the initial loss scale.
    pub loss_scale_initial: f64,
    /// fp16 only: the scale doubles after this many steps without overflow.
    pub loss_scale_window: u64,
    /// fp16 only: overflowing steps (each skipped) before the scale is halved; the count
    /// restarts when the scale grows.
    pub loss_scale_hysteresis: u32,
    /// fp16 only: the scale never falls below this; a non-finite step at this scale
    /// stops the run.
    pub loss_scale_min: f64,
    /// Elements per communication bucket of the ZeRO-1 optimiser (data-parallel runs):
    /// gradients are reduce-scattered and parameters all-gathered this many at a time.
    pub zero_bucket: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            grad_accum: 1,
            steps: 1000,
            lr: 5e-4,
            warmup_steps: 100,
            weight_decay: 0.01,
            weight_decay_scope: DecayScope::Matrices,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            clip_norm: 1.0,
            mlm_weight: 1.0,
            copy_weight: 50.0,
            clm_weight: 1.0,
            scl_weight: 1.0,
            scl_temperature: 1.0,
            seed: 1,
            log_every: 10,
            checkpoint_every: 500,
            checkpoint_every_minutes: 30.0,
            keep_checkpoints: 2,
            device: Device::Cpu,
            precision: Precision::Fp32,
            loss_scale_initial: 65536.0,
            loss_scale_window: 2000,
            loss_scale_hysteresis: 2,
            loss_scale_min: 1.0,
            zero_bucket: 40_000_000,
        }
    }
}

/// Loader and corruption settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Fraction of non-special positions replaced by `[MASK]`.
    pub mask_prob: f64,
    /// Length of the SCL crop as a fraction of each sequence.
    pub crop_fraction: f64,
    /// Loader worker threads; 0 picks from the number of cores.
    pub workers: usize,
    /// Batches the queue holds ahead of the trainer.
    pub queue_depth: usize,
    /// Verify shard checksums when opening them.
    pub verify: bool,
    /// The shard directories to blend (`[[data.sources]]`); `cocolm train --data` takes
    /// precedence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<DataSource>,
}

/// One source of a blend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// Shard directory.
    pub path: std::path::PathBuf,
    /// Its fraction of the training examples (normalised over the sources).
    #[serde(default = "unit_weight")]
    pub weight: f64,
}

fn unit_weight() -> f64 {
    1.0
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            mask_prob: 0.15,
            crop_fraction: 0.9,
            workers: 0,
            queue_depth: 8,
            verify: true,
            sources: Vec::new(),
        }
    }
}

impl RunConfig {
    /// Read and validate a TOML configuration file.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml_str(&text, path)
    }

    /// Parse and validate TOML; `path` only names the source in errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self> {
        let config: RunConfig = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Read a TOML configuration file, apply `overrides` (`section.key=value`, the value
    /// in TOML syntax, a bare word taken as a string: `model.num_layers=4`,
    /// `train.precision=bf16`), then validate. An override naming an unknown key is an
    /// error, as in the file.
    pub fn from_toml_file_with(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let parse_error = |message: String| Error::Parse {
            path: path.to_path_buf(),
            message,
        };
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
        for assignment in overrides {
            let invalid = |message: &str| Error::Invalid {
                path: path.to_path_buf(),
                field: assignment.clone(),
                message: message.to_string(),
            };
            let (key, value) = assignment
                .split_once('=')
                .ok_or_else(|| invalid("an override is `section.key=value`"))?;
            let (key, value) = (key.trim(), value.trim());
            let value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
                Ok(mut t) => t.remove("v").expect("the table has the key just parsed"),
                Err(_) => toml::Value::String(value.to_string()),
            };
            let mut parts: Vec<&str> = key.split('.').collect();
            let last = parts.pop().filter(|k| !k.is_empty());
            let mut section = &mut table;
            for part in parts {
                section = section
                    .entry(part)
                    .or_insert_with(|| toml::Value::Table(Default::default()))
                    .as_table_mut()
                    .ok_or_else(|| invalid("overrides a value, not a section"))?;
            }
            let last = last.ok_or_else(|| invalid("names no key"))?;
            section.insert(last.to_string(), value);
        }
        let config: RunConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| parse_error(format!("with the overrides: {e}")))?;
        config.validate(path)?;
        Ok(config)
    }

    /// The configuration as TOML text.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("RunConfig always serialises to TOML")
    }

    /// Check ranges and consistency; `path` only names the source in errors.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(Error::Invalid {
                path: PathBuf::from(path),
                field: field.to_string(),
                message,
            })
        };
        let m = &self.model;
        if m.hidden_size == 0 || m.num_heads == 0 || !m.hidden_size.is_multiple_of(m.num_heads) {
            return bad(
                "model.num_heads",
                format!(
                    "{} heads must be positive and divide hidden_size {}",
                    m.num_heads, m.hidden_size
                ),
            );
        }
        if m.num_layers == 0 || m.ffn_size == 0 || m.max_positions == 0 {
            return bad(
                "model",
                "num_layers, ffn_size and max_positions must be positive".into(),
            );
        }
        if m.relative_position
            && (m.rel_pos_buckets < 4
                || !m.rel_pos_buckets.is_multiple_of(2)
                || m.rel_pos_max_distance <= m.rel_pos_buckets / 4 + 1)
        {
            return bad(
                "model.rel_pos_buckets",
                format!(
                    "the relative position bias needs an even number of buckets, at least 4, \
                     and a max distance above buckets/4 + 1 (got {} buckets, max distance {})",
                    m.rel_pos_buckets, m.rel_pos_max_distance
                ),
            );
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return bad("model.dropout", format!("{} is not in [0, 1)", m.dropout));
        }
        let t = &self.train;
        if t.batch_size == 0 || t.grad_accum == 0 {
            return bad(
                "train.batch_size",
                "batch_size and grad_accum must be positive".into(),
            );
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return bad("train.lr", format!("{} must be positive", t.lr));
        }
        if !(0.0..1.0).contains(&t.beta1) || !(0.0..1.0).contains(&t.beta2) {
            return bad("train.beta1", "betas must lie in [0, 1)".into());
        }
        if !(t.loss_scale_min > 0.0
            && t.loss_scale_initial >= t.loss_scale_min
            && t.loss_scale_initial.is_finite())
        {
            return bad(
                "train.loss_scale_initial",
                format!(
                    "{} must be finite and at least loss_scale_min {} (itself positive)",
                    t.loss_scale_initial, t.loss_scale_min
                ),
            );
        }
        if t.loss_scale_window == 0 || t.loss_scale_hysteresis == 0 {
            return bad(
                "train.loss_scale_window",
                "loss_scale_window and loss_scale_hysteresis must be at least 1".into(),
            );
        }
        if t.zero_bucket == 0 {
            return bad("train.zero_bucket", "must be at least 1".into());
        }
        if !(t.checkpoint_every_minutes.is_finite() && t.checkpoint_every_minutes >= 0.0) {
            return bad(
                "train.checkpoint_every_minutes",
                format!(
                    "{} is not a number of minutes ≥ 0",
                    t.checkpoint_every_minutes
                ),
            );
        }
        if t.keep_checkpoints == 0 {
            return bad("train.keep_checkpoints", "must be at least 1".into());
        }
        if t.log_every == 0 {
            return bad("train.log_every", "must be at least 1".into());
        }
        let d = &self.data;
        if let Some(bad_weight) = d
            .sources
            .iter()
            .find(|s| !(s.weight.is_finite() && s.weight >= 0.0))
        {
            return bad(
                "data.sources.weight",
                format!("{} for {}", bad_weight.weight, bad_weight.path.display()),
            );
        }
        if !(d.mask_prob > 0.0 && d.mask_prob < 1.0) {
            return bad(
                "data.mask_prob",
                format!("{} is not in (0, 1)", d.mask_prob),
            );
        }
        if !(d.crop_fraction > 0.0 && d.crop_fraction <= 1.0) {
            return bad(
                "data.crop_fraction",
                format!("{} is not in (0, 1]", d.crop_fraction),
            );
        }
        if d.queue_depth == 0 {
            return bad("data.queue_depth", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_values_and_refuse_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[model]\nnum_layers = 2\n").unwrap();
        let set = |v: &[&str]| {
            let v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            RunConfig::from_toml_file_with(&path, &v)
        };
        let c = set(&[
            "model.num_layers=4",
            "train.precision = bf16",
            "train.lr=3e-4",
        ])
        .unwrap();
        assert_eq!(c.model.num_layers, 4);
        assert_eq!(c.train.precision, Precision::Bf16);
        assert_eq!(c.train.lr, 3e-4);
        assert_eq!(set(&[]).unwrap().model.num_layers, 2);
        for bad in [
            "model.layers=4",
            "model=4",
            "nothing",
            "model.num_layers=many",
        ] {
            let err = set(&[bad]).unwrap_err().to_string();
            assert!(err.contains("c.toml"), "{bad}: {err}");
        }
    }

    #[test]
    fn device_and_precision_names_match_the_file_format() {
        for device in [Device::Cpu, Device::Cuda] {
            assert_eq!(device.to_string().parse::<Device>(), Ok(device));
            assert_eq!(
                serde_json::to_value(device).unwrap(),
                device.to_string().as_str()
            );
        }
        for precision in [Precision::Fp32, Precision::Fp16, Precision::Bf16] {
            assert_eq!(precision.to_string().parse::<Precision>(), Ok(precision));
            assert_eq!(
                serde_json::to_value(precision).unwrap(),
                precision.to_string().as_str()
            );
        }
        assert!(
            "fp8"
                .parse::<Precision>()
                .unwrap_err()
                .contains("fp32, fp16, bf16")
        );
    }

    #[test]
    fn toml_round_trip() {
        let mut c = RunConfig::default();
        c.model.hidden_size = 64;
        c.train.precision = Precision::Bf16;
        let text = c.to_toml_string();
        let back = RunConfig::from_toml_str(&text, Path::new("x.toml")).unwrap();
        assert_eq!(c, back);
    }

    #[test]
    fn missing_fields_take_defaults() {
        let c =
            RunConfig::from_toml_str("[model]\nhidden_size = 128\n", Path::new("x.toml")).unwrap();
        assert_eq!(c.model.hidden_size, 128);
        assert_eq!(c.model.num_heads, ModelConfig::default().num_heads);
        assert_eq!(c.train, TrainConfig::default());
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = RunConfig::from_toml_str("[model]\nhiden_size = 128\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.toml") && err.contains("hiden_size"),
            "{err}"
        );
    }

    #[test]
    fn invalid_heads_rejected() {
        let err = RunConfig::from_toml_str(
            "[model]\nhidden_size = 100\nnum_heads = 3\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("model.num_heads"), "{err}");
    }

    #[test]
    fn generator_depth_defaults_to_a_third() {
        let mut m = ModelConfig {
            num_layers: 12,
            ..ModelConfig::default()
        };
        assert_eq!(m.generator_depth(), 4);
        m.num_layers = 2;
        assert_eq!(m.generator_depth(), 1);
        m.generator_layers = 3;
        assert_eq!(m.generator_depth(), 3);
    }
}
