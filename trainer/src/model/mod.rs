//! The COCO-LM pair: a generator and a corrective main model sharing one token table.
//!
//! All activations are 2-D `[batch · seq, H]`; attention alone reshapes to 4-D.
//! Vocabulary-sized projections are computed only at masked positions. Parameter paths
//! (`corrector.backbone.encoder.layers.0.attention.qkv.weight`, …) are the checkpoint
//! keys, so field names are stable.

pub mod attention;
pub mod backbone;
pub mod corrector;
pub mod embeddings;
pub mod encoder;
pub mod generator;
pub mod heads;
pub mod layers;
pub mod relpos;

use crate::{Error, Result};
use backbone::Backbone;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use cocolm_shared::ModelConfig;
use corrector::Corrector;
use encoder::EncoderConfig;
use generator::Generator;
use heads::{ClmHead, LmHead, Transform};
use layers::{Dense, normal_param};

/// Score added to attention logits of padding keys (BERT's value; safe in fp16 too).
pub const MASKED_SCORE: f32 = -10_000.0;

/// Token ids of a padded batch and the attention mask derived from its lengths.
#[derive(Debug, Clone)]
pub struct EncoderInput<B: Backend> {
    /// Flat ids `[batch · seq]`, row-major.
    pub ids: Tensor<B, 1, Int>,
    /// Rows.
    pub batch: usize,
    /// Columns.
    pub seq: usize,
    /// Additive key mask `[batch, 1, 1, seq]`: 0 for real tokens, [`MASKED_SCORE`] for pads.
    pub key_mask: Tensor<B, 4>,
    /// The dtype the encoders compute in (fp32, bf16 or fp16); the embeddings are cast
    /// to it (see [`crate::kernels::reference`] for what stays in fp32).
    pub dtype: DType,
}

impl<B: Backend> EncoderInput<B> {
    /// Upload `ids` (`[batch · seq]`) with pads after `lengths[b]` tokens of each row,
    /// computed in fp32 ([`EncoderInput::in_dtype`] for another precision). The caller
    /// has checked the buffer sizes.
    pub fn new(ids: &[u32], lengths: &[u32], batch: usize, seq: usize, device: &B::Device) -> Self {
        let ids = ids.iter().map(|&i| i as i64).collect::<Vec<_>>();
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&len| {
                (0..seq).map(move |s| if s < len as usize { 0.0 } else { MASKED_SCORE })
            })
            .collect();
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [batch * seq]), device),
            batch,
            seq,
            key_mask: Tensor::from_data(TensorData::new(mask, [batch, 1, 1, seq]), device),
            dtype: DType::F32,
        }
    }

    /// The same input, computed in `dtype`.
    pub fn in_dtype(self, dtype: DType) -> Self {
        Self { dtype, ..self }
    }

    /// The same layout with other ids (the corrupted input).
    pub fn with_ids(&self, ids: Tensor<B, 1, Int>) -> Self {
        Self {
            ids,
            ..self.clone()
        }
    }
}

/// Generator and corrector with their shared token embedding table.
#[derive(Module, Debug)]
pub struct CocoLm<B: Backend> {
    /// The token table `[vocab, H]`, used by both models' inputs and both LM decoders.
    pub token_embedding: Param<Tensor<B, 2>>,
    /// The auxiliary MLM generator.
    pub generator: Generator<B>,
    /// The main corrective model.
    pub corrector: Corrector<B>,
}

impl<B: Backend> CocoLm<B> {
    /// A freshly initialised pair (BERT initialisation). Seed the backend first for a
    /// reproducible draw.
    pub fn init(config: &ModelConfig, device: &B::Device) -> Result<Self> {
        check_model_config(config)?;
        let m = config;
        let stack = |layers: usize, dropout: f64| EncoderConfig {
            hidden: m.hidden_size,
            layers,
            heads: m.num_heads,
            ffn: m.ffn_size,
            relative_position: m.relative_position.then_some((
                m.rel_pos_buckets,
                m.rel_pos_max_distance,
                m.max_positions,
            )),
            layer_norm_eps: m.layer_norm_eps,
            dropout,
            init_std: m.init_std,
        };
        let backbone =
            |c: &EncoderConfig| Backbone::new(c, m.max_positions, m.type_vocab_size, device);
        Ok(Self {
            token_embedding: normal_param([m.vocab_size, m.hidden_size], m.init_std, device),
            generator: Generator {
                backbone: backbone(&stack(m.generator_depth(), 0.0)),
                head: LmHead::new(
                    m.hidden_size,
                    m.vocab_size,
                    m.layer_norm_eps,
                    m.init_std,
                    device,
                ),
            },
            corrector: Corrector {
                backbone: backbone(&stack(m.num_layers, m.dropout)),
                copy_head: Dense::new(m.hidden_size, 1, m.init_std, device),
                lm_head: ClmHead::new(m.vocab_size, device),
                scl_head: m
                    .scl
                    .then(|| Transform::new(m.hidden_size, m.layer_norm_eps, m.init_std, device)),
            },
        })
    }
}

/// Checks beyond [`RunConfig::validate`](cocolm_shared::RunConfig::validate) that model
/// construction needs.
pub fn check_model_config(m: &ModelConfig) -> Result<()> {
    if m.vocab_size == 0 {
        return Err(Error::config(
            "model.vocab_size",
            "is 0; resolve it from the shard manifest before building the model",
        ));
    }
    if m.hidden_size == 0 || m.num_heads == 0 || !m.hidden_size.is_multiple_of(m.num_heads) {
        return Err(Error::config(
            "model.num_heads",
            format!(
                "{} heads do not divide hidden_size {}",
                m.num_heads, m.hidden_size
            ),
        ));
    }
    if m.num_layers == 0 || m.ffn_size == 0 || m.max_positions == 0 {
        return Err(Error::config(
            "model",
            "num_layers, ffn_size and max_positions must be positive",
        ));
    }
    Ok(())
}
