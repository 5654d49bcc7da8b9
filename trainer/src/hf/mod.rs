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

    fn layer_norm(&mut self, hf: &str, ours: &str) -> Result<()> {
        self.copy(&format!("{hf}.weight"), &format!("{ours}.weight"))?;
        self.copy(&format!("{hf}.bias"), &format!("{ours}.bias"))
    }

    fn mismatch(&self, t: &NamedTensor, expected: &str) -> Error {
        Error::TensorMismatch {
            path: self.path.to_path_buf(),
            name: t.name.clone(),
            expected: expected.to_string(),
            got: format!("shape {:?}", t.shape),
        }
    }

    /// Map `electra.*` onto `backbone.*`; returns the word embeddings.
    fn backbone(&mut self, layers: usize) -> Result<NamedTensor> {
        let e = "electra.embeddings";
        let tokens = self.take(&format!("{e}.word_embeddings.weight"))?;
        self.copy(
            &format!("{e}.position_embeddings.weight"),
            "backbone.embeddings.positions",
        )?;
        self.copy(
            &format!("{e}.token_type_embeddings.weight"),
            "backbone.embeddings.token_types",
        )?;
        self.layer_norm(&format!("{e}.LayerNorm"), "backbone.embeddings.norm")?;
        for n in 0..layers {
            let hf = format!("electra.encoder.layer.{n}");
            let ours = format!("backbone.encoder.layers.{n}");
            let qkv = ["query", "key", "value"].map(|p| format!("{hf}.attention.self.{p}"));
            self.linear(&qkv, &format!("{ours}.attention.qkv"))?;
            self.linear(
                &[format!("{hf}.attention.output.dense")],
                &format!("{ours}.attention.output"),
            )?;
            self.layer_norm(
                &format!("{hf}.attention.output.LayerNorm"),
                &format!("{ours}.attention_norm"),
            )?;
            self.linear(
                &[format!("{hf}.intermediate.dense")],
                &format!("{ours}.ffn_in"),
            )?;
            self.linear(&[format!("{hf}.output.dense")], &format!("{ours}.ffn_out"))?;
            self.layer_norm(
                &format!("{hf}.output.LayerNorm"),
                &format!("{ours}.ffn_norm"),
            )?;
        }
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
    hf.linear(
        &["generator_predictions.dense".to_string()],
        "head.transform.dense",
    )?;
    hf.layer_norm("generator_predictions.LayerNorm", "head.transform.norm")?;
    hf.copy("generator_lm_head.bias", "head.bias")?;
    let mapped = hf.finish(&[])?;
    let generator = params::import(generator, mapped, path, device)?;
    Ok((generator, table(tokens, device)))
}
