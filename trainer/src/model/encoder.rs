//! Post-LN Transformer encoder (BERT layout) with an optional shared relative position
//! bias.

use super::EncoderInput;
use super::attention::SelfAttention;
use super::layers::{Dense, LayerNorm};
use super::relpos::RelativePositionBias;
use crate::kernels::{Kernels, LayerCall, LayerTensors, LayerWeights};
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Shape of one encoder stack (generator or main model).
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// Hidden width H.
    pub hidden: usize,
    /// Number of layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward inner width.
    pub ffn: usize,
    /// `(buckets, max_distance, max_positions)` of the relative position bias, or
    /// `None`.
    pub relative_position: Option<(usize, usize, usize)>,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout probability (hidden states and attention probabilities).
    pub dropout: f64,
    /// Standard deviation of the normal initialisation.
    pub init_std: f64,
}

impl EncoderConfig {
    /// A stack with BERT initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Encoder<B> {
        Encoder {
            layers: (0..self.layers)
                .map(|_| EncoderLayer::new(self, device))
                .collect(),
            relative_position: self
                .relative_position
                .map(|(buckets, max_distance, positions)| {
                    RelativePositionBias::new(
                        buckets,
                        max_distance,
                        positions,
                        self.heads,
                        self.init_std,
                        device,
                    )
                }),
        }
    }
}

/// Attention → residual → LayerNorm → FFN (GELU) → residual → LayerNorm.
#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    /// Self-attention block.
    pub attention: SelfAttention<B>,
    /// LayerNorm after the attention residual.
    pub attention_norm: LayerNorm<B>,
    /// FFN input projection `[H, ffn]`.
    pub ffn_in: Dense<B>,
    /// FFN output projection `[ffn, H]`.
    pub ffn_out: Dense<B>,
    /// LayerNorm after the FFN residual.
    pub ffn_norm: LayerNorm<B>,
    /// Dropout on both residual branches.
    pub dropout: f64,
}

impl<B: Backend> EncoderLayer<B> {
    fn new(c: &EncoderConfig, device: &B::Device) -> Self {
        Self {
            attention: SelfAttention::new(c.hidden, c.heads, c.dropout, c.init_std, device),
            attention_norm: LayerNorm::new(c.hidden, c.layer_norm_eps, device),
            ffn_in: Dense::new(c.hidden, c.ffn, c.init_std, device),
            ffn_out: Dense::new(c.ffn, c.hidden, c.init_std, device),
            ffn_norm: LayerNorm::new(c.hidden, c.layer_norm_eps, device),
            dropout: c.dropout,
        }
    }

    /// The parameters as the kernels take them.
    pub fn weights(&self) -> LayerTensors<B> {
        let a = &self.attention;
        LayerWeights {
            qkv_w: a.qkv.weight.val(),
            qkv_b: a.qkv.bias.val(),
            out_w: a.output.weight.val(),
            out_b: a.output.bias.val(),
            norm1_g: self.attention_norm.weight.val(),
            norm1_b: self.attention_norm.bias.val(),
            ffn_in_w: self.ffn_in.weight.val(),
            ffn_in_b: self.ffn_in.bias.val(),
            ffn_out_w: self.ffn_out.weight.val(),
            ffn_out_b: self.ffn_out.bias.val(),
            norm2_g: self.ffn_norm.weight.val(),
            norm2_b: self.ffn_norm.bias.val(),
        }
    }

    /// The sizes and settings of a call on `batch` sequences of `seq` tokens.
    pub fn call(&self, batch: usize, seq: usize) -> LayerCall {
        LayerCall {
            batch,
            seq,
            heads: self.attention.num_heads,
            eps: self.attention_norm.eps,
            attention_dropout: self.attention.dropout,
            hidden_dropout: self.dropout,
        }
    }
}

impl<B: Kernels> EncoderLayer<B> {
    /// The layer through the backend's [`Kernels::encoder_layer`].
    ///
    /// # Shapes
    /// - `x`: `[batch · seq, H]`; `bias`: `[batch or 1, heads or 1, seq or 1, seq]`
    /// - output: `[batch · seq, H]`
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        batch: usize,
        seq: usize,
        bias: Tensor<B, 4>,
    ) -> Tensor<B, 2> {
        B::encoder_layer(x, self.weights(), &self.call(batch, seq), bias)
    }
}

/// A stack of [`EncoderLayer`]s sharing one relative position bias table.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    /// The layers, bottom first.
    pub layers: Vec<EncoderLayer<B>>,
    /// The shared relative position bias, when enabled.
    pub relative_position: Option<RelativePositionBias<B>>,
}

impl<B: Kernels> Encoder<B> {
    /// # Shapes
    /// - `x`: embedded input `[batch · seq, H]`
    /// - output: `[batch · seq, H]`
    pub fn forward(&self, mut x: Tensor<B, 2>, input: &EncoderInput<B>) -> Tensor<B, 2> {
        let mut bias = input.key_mask.clone();
        if let Some(relative) = &self.relative_position {
            bias = bias + relative.forward(input.seq);
        }
        for layer in &self.layers {
            x = layer.forward(x, input.batch, input.seq, bias.clone());
        }
        x
    }
}
