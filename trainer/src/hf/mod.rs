//! Loading Hugging Face ELECTRA weights (`ElectraForPreTraining` /
//! `ElectraForMaskedLM` safetensors) into our modules.
//!
//! This is how the encoder is checked against the reference implementation: with the
//! relative position bias off and `type_vocab_size ≥ 1`, our [`Backbone`] computes the same
//! function as HF's `ElectraModel`, and our [`Generator`] the same as its masked-LM head.
//!
//! Mapping (HF `nn.Linear` weights are `[out, in]`, ours `[in, out]`, so they are
//! transposed; query, key and value are concatenated into our fused `qkv`):
//!
//! | Hugging Face (`electra.` prefix) | ours (`backbone.` prefix) |
//! |---|---|
//! | `embeddings.word_embeddings.weight` | the token table (returned separately) |
//! | `embeddings.position_embeddings.weight` | `embeddings.positions` |
//! | `embeddings.token_type_embeddings.weight` | `embeddings.token_types` |
//! | `embeddings.LayerNorm.*` | `embeddings.norm.*` |
//! | `encoder.layer.N.attention.self.{query,key,value}.*` | `encoder.layers.N.attention.qkv.*` |
//! | `encoder.layer.N.attention.output.dense.*` | `encoder.layers.N.attention.output.*` |
//! | `encoder.layer.N.attention.output.LayerNorm.*` | `encoder.layers.N.attention_norm.*` |
//! | `encoder.layer.N.intermediate.dense.*` | `encoder.layers.N.ffn_in.*` |
//! | `encoder.layer.N.output.dense.*` | `encoder.layers.N.ffn_out.*` |
//! | `encoder.layer.N.output.LayerNorm.*` | `encoder.layers.N.ffn_norm.*` |
//! | `generator_predictions.dense.*`, `.LayerNorm.*` | `head.transform.dense.*`, `.norm.*` |
//! | `generator_lm_head.bias` | `head.bias` (the decoder is tied to the token table) |
//!
//! The discriminator's two-layer `discriminator_predictions` head is not our copy head and
//! is skipped.

pub mod fixture;

use crate::model::backbone::Backbone;
use crate::model::generator::Generator;
use crate::params::{self, NamedTensor};
use crate::{Error, Result, tensor_file};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use std::collections::BTreeMap;
use std::path::Path;

pub mod export;

/// Hugging Face's name of the token table.
const WORD_EMBEDDINGS: &str = "electra.embeddings.word_embeddings.weight";
/// The generator's decoder, tied to the token table (skipped when present).
const TIED_DECODER: &str = "generator_lm_head.weight";

/// How one of our parameters corresponds to Hugging Face ELECTRA tensors; the one table
/// both directions ([`load_discriminator`] and friends, [`export`]) read.
#[derive(Debug, Clone, PartialEq)]
enum Tie {
    /// The same tensor under another name.
    Same { hf: String, ours: String },
    /// `nn.Linear` layers side by side (`{hf}.weight` `[out, in]`, `{hf}.bias`) ↔ one
    /// [`Dense`](crate::model::layers::Dense) (`{ours}.weight` `[in, out]`, `{ours}.bias`).
    Linear { hf: Vec<String>, ours: String },
}

fn same(hf: String, ours: String) -> Tie {
    Tie::Same { hf, ours }
}

/// A LayerNorm's gain and shift.
fn norm(hf: &str, ours: &str) -> [Tie; 2] {
    [
        same(format!("{hf}.weight"), format!("{ours}.weight")),
        same(format!("{hf}.bias"), format!("{ours}.bias")),
    ]
}

/// An encoder's ties, `electra.*` ↔ `{ours}.*`, the word embeddings aside (see the table
/// in the module docs).
fn backbone_ties(layers: usize, ours: &str) -> Vec<Tie> {
    let e = "electra.embeddings";
    let mut ties = vec![
        same(
            format!("{e}.position_embeddings.weight"),
            format!("{ours}.embeddings.positions"),
        ),
        same(
            format!("{e}.token_type_embeddings.weight"),
            format!("{ours}.embeddings.token_types"),
        ),
    ];
    ties.extend(norm(
        &format!("{e}.LayerNorm"),
        &format!("{ours}.embeddings.norm"),
    ));
    for n in 0..layers {
        let hf = format!("electra.encoder.layer.{n}");
        let us = format!("{ours}.encoder.layers.{n}");
        let linear = |hf: Vec<String>, ours: String| Tie::Linear { hf, ours };
        ties.push(linear(
            ["query", "key", "value"]
                .map(|p| format!("{hf}.attention.self.{p}"))
                .to_vec(),
            format!("{us}.attention.qkv"),
        ));
        ties.push(linear(
            vec![format!("{hf}.attention.output.dense")],
            format!("{us}.attention.output"),
        ));
        ties.extend(norm(
            &format!("{hf}.attention.output.LayerNorm"),
            &format!("{us}.attention_norm"),
        ));
        ties.push(linear(
            vec![format!("{hf}.intermediate.dense")],
            format!("{us}.ffn_in"),
        ));
        ties.push(linear(
            vec![format!("{hf}.output.dense")],
            format!("{us}.ffn_out"),
        ));
        ties.extend(norm(
            &format!("{hf}.output.LayerNorm"),
            &format!("{us}.ffn_norm"),
        ));
    }
    ties
}

/// The generator's MLM head ↔ `{ours}.*` (its decoder is the token table).
fn generator_head_ties(ours: &str) -> Vec<Tie> {
    let mut ties = vec![Tie::Linear {
        hf: vec!["generator_predictions.dense".into()],
        ours: format!("{ours}.transform.dense"),
    }];
    ties.extend(norm(
        "generator_predictions.LayerNorm",
        &format!("{ours}.transform.norm"),
    ));
    ties.push(same(
        "generator_lm_head.bias".into(),
        format!("{ours}.bias"),
    ));
    ties
}

struct HfTensors<'a> {
    path: &'a Path,
    tensors: BTreeMap<String, NamedTensor>,
    out: Vec<NamedTensor>,
}

impl<'a> HfTensors<'a> {
    fn read(path: &'a Path) -> Result<Self> {
        let tensors = tensor_file::read(path)?
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        Ok(Self {
            path,
            tensors,
            out: Vec::new(),
        })
    }

    fn take(&mut self, name: &str) -> Result<NamedTensor> {
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| Error::MissingTensor {
                path: self.path.to_path_buf(),
                name: name.to_string(),
            })?;
        Ok(t)
    }

    /// Copy `hf` unchanged to `ours`.
    fn copy(&mut self, hf: &str, ours: &str) -> Result<()> {
        let t = self.take(hf)?;
        self.out.push(NamedTensor {
            name: ours.to_string(),
            ..t
        });
        Ok(())
    }

    /// `nn.Linear` (several side by side when `hf` has more than one prefix) to a [`Dense`](crate::model::layers::Dense).
    fn linear(&mut self, hf: &[String], ours: &str) -> Result<()> {
        let mut weights = Vec::new();
        let mut bias = Vec::new();
        for prefix in hf {
            let w = self.take(&format!("{prefix}.weight"))?;
            if w.shape.len() != 2 {
                return Err(self.mismatch(&w, "a 2-D weight"));
            }
            let b = self.take(&format!("{prefix}.bias"))?;
            if b.shape != [w.shape[0]] {
                return Err(self.mismatch(&b, &format!("shape [{}]", w.shape[0])));
            }
            bias.extend(b.data);
            weights.push(w);
        }
        let d_in = weights[0].shape[1];
        if let Some(w) = weights.iter().find(|w| w.shape[1] != d_in) {
            return Err(self.mismatch(w, &format!("{d_in} input features")));
        }
        let d_out: usize = weights.iter().map(|w| w.shape[0]).sum();
        // ours[i][offset + o] = hf[o][i]
        let mut data = vec![0.0f32; d_in * d_out];
        let mut offset = 0;
        for w in &weights {
            let rows = w.shape[0];
            for o in 0..rows {
                for i in 0..d_in {
                    data[i * d_out + offset + o] = w.data[o * d_in + i];
                }
            }
            offset += rows;
        }
        self.out.push(NamedTensor {
            name: format!("{ours}.weight"),
            shape: vec![d_in, d_out],
            data,
        });
        self.out.push(NamedTensor {
            name: format!("{ours}.bias"),
            shape: vec![d_out],
            data: bias,
        });
        Ok(())
    }

    fn mismatch(&self, t: &NamedTensor, expected: &str) -> Error {
        Error::TensorMismatch {
            path: self.path.to_path_buf(),
            name: t.name.clone(),
            expected: expected.to_string(),
            got: format!("shape {:?}", t.shape),
        }
    }

    /// Apply `ties` from Hugging Face's names to ours.
    fn apply(&mut self, ties: &[Tie]) -> Result<()> {
        for tie in ties {
            match tie {
                Tie::Same { hf, ours } => self.copy(hf, ours)?,
                Tie::Linear { hf, ours } => self.linear(hf, ours)?,
            }
        }
        Ok(())
    }

    /// Map `electra.*` onto `backbone.*`; returns the word embeddings.
    fn backbone(&mut self, layers: usize) -> Result<NamedTensor> {
        let tokens = self.take(WORD_EMBEDDINGS)?;
        self.apply(&backbone_ties(layers, "backbone"))?;
        Ok(tokens)
    }

    /// Fail on tensors nobody mapped, apart from those under `skipped` prefixes.
    fn finish(mut self, skipped: &[&str]) -> Result<Vec<NamedTensor>> {
        self.tensors
            .retain(|name, _| !skipped.iter().any(|s| name.starts_with(s)));
        if !self.tensors.is_empty() {
            return Err(Error::UnexpectedTensors {
                path: self.path.to_path_buf(),
                names: self.tensors.into_keys().take(8).collect(),
            });
        }
        Ok(self.out)
    }
}

/// A checked 2-D tensor (see [`check_table`]) on the device.
fn table<B: Backend>(t: NamedTensor, device: &B::Device) -> Tensor<B, 2> {
    let shape = [t.shape[0], t.shape[1]];
    Tensor::from_data(TensorData::new(t.data, shape), device)
}

fn check_table(path: &Path, t: &NamedTensor) -> Result<()> {
    if t.shape.len() != 2 {
        return Err(Error::TensorMismatch {
            path: path.to_path_buf(),
            name: t.name.clone(),
            expected: "a 2-D table".into(),
            got: format!("shape {:?}", t.shape),
        });
    }
    Ok(())
}

/// Load an `ElectraForPreTraining` checkpoint's encoder into `backbone`; returns the
/// loaded backbone and the discriminator's own token table `[vocab, H]`.
pub fn load_discriminator<B: Backend>(
    backbone: Backbone<B>,
    path: &Path,
    device: &B::Device,
) -> Result<(Backbone<B>, Tensor<B, 2>)> {
    let mut hf = HfTensors::read(path)?;
    let tokens = hf.backbone(backbone.encoder.layers.len())?;
    check_table(path, &tokens)?;
    let mapped: Vec<NamedTensor> = hf
        .finish(&["discriminator_predictions."])?
        .into_iter()
        .map(|t| NamedTensor {
            name: t.name["backbone.".len()..].to_string(),
            ..t
        })
        .collect();
    let backbone = params::import(backbone, mapped, path, device)?;
    Ok((backbone, table(tokens, device)))
}

/// Load an `ElectraForMaskedLM` checkpoint into `generator`; returns the loaded generator
/// and the generator's own token table `[vocab, H]` (its tied decoder).
pub fn load_generator<B: Backend>(
    generator: Generator<B>,
    path: &Path,
    device: &B::Device,
) -> Result<(Generator<B>, Tensor<B, 2>)> {
    let mut hf = HfTensors::read(path)?;
    let tokens = hf.backbone(generator.backbone.encoder.layers.len())?;
    check_table(path, &tokens)?;
    hf.apply(&generator_head_ties("head"))?;
    let mapped = hf.finish(&[TIED_DECODER])?;
    let generator = params::import(generator, mapped, path, device)?;
    Ok((generator, table(tokens, device)))
}
