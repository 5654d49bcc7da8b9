//! Our model as Hugging Face ELECTRA, and back: the corrector as an `ElectraModel`
//! encoder, the generator as `ElectraForMaskedLM`, and what ELECTRA has no place for
//! (the copy head, the CLM head's bias, relative-position tables, an SCL head) under our
//! own parameter names in a third file. The name correspondences are [`super::Tie`]s, the
//! same table the loaders read, so export then import is exact.

use super::{HfTensors, TIED_DECODER, Tie, WORD_EMBEDDINGS, backbone_ties, generator_head_ties};
use crate::params::NamedTensor;
use crate::{Error, Result};
use cocolm_shared::ModelConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// File names of an export directory.
pub mod files {
    /// Each model's weights (the corrector at the top, the generator in `generator/`).
    pub const WEIGHTS: &str = "model.safetensors";
    /// Each model's Hugging Face configuration.
    pub const CONFIG: &str = "config.json";
    /// The generator's folder.
    pub const GENERATOR: &str = "generator";
    /// What ELECTRA has no place for, under our parameter names and shapes.
    pub const EXTRA: &str = "cocolm_extra.safetensors";
}

/// Our token table's name.
const TOKEN_TABLE: &str = "token_embedding";

/// A model in Hugging Face's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// The corrector's encoder (`electra.` names, `nn.Linear` weights `[out, in]`).
    pub corrector: Vec<NamedTensor>,
    /// Its `config.json` (an `ElectraModel`).
    pub corrector_config: serde_json::Value,
    /// The generator with its MLM head (`ElectraForMaskedLM`; the decoder is tied to the
    /// word embeddings, so it is not written).
    pub generator: Vec<NamedTensor>,
    /// Its `config.json`.
    pub generator_config: serde_json::Value,
    /// Every other parameter, under our names.
    pub extra: Vec<NamedTensor>,
}

/// Our parameters (`params::export` of a [`CocoLm`](crate::model::CocoLm)) as Hugging
/// Face ELECTRA. Without token types, a zero row is written (`type_vocab_size` 1: the
/// same function).
pub fn export(
    model: Vec<NamedTensor>,
    config: &ModelConfig,
    pad_token_id: u32,
) -> Result<Exported> {
    let mut ours: BTreeMap<String, NamedTensor> =
        model.into_iter().map(|t| (t.name.clone(), t)).collect();
    let table = ours
        .remove(TOKEN_TABLE)
        .ok_or_else(|| missing(TOKEN_TABLE))?;
    let word_embeddings = NamedTensor {
        name: WORD_EMBEDDINGS.into(),
        ..table
    };
    if config.type_vocab_size == 0 {
        for side in ["corrector", "generator"] {
            ours.insert(
                format!("{side}.backbone.embeddings.token_types"),
                NamedTensor {
                    name: format!("{side}.backbone.embeddings.token_types"),
                    shape: vec![1, config.hidden_size],
                    data: vec![0.0; config.hidden_size],
                },
            );
        }
    }
    let mut corrector = vec![word_embeddings.clone()];
    corrector.extend(untie(
        &mut ours,
        &backbone_ties(config.num_layers, "corrector.backbone"),
    )?);
    let mut generator = vec![word_embeddings];
    generator.extend(untie(&mut ours, &generator_ties(config))?);
    let hf_config = |layers: usize, dropout: f64, architecture: &str| {
        serde_json::json!({
            "architectures": [architecture],
            "model_type": "electra",
            "vocab_size": config.vocab_size,
            "embedding_size": config.hidden_size,
            "hidden_size": config.hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": config.num_heads,
            "intermediate_size": config.ffn_size,
            "hidden_act": "gelu",
            "hidden_dropout_prob": dropout,
            "attention_probs_dropout_prob": dropout,
            "max_position_embeddings": config.max_positions,
            "type_vocab_size": config.type_vocab_size.max(1),
            "initializer_range": config.init_std,
            "layer_norm_eps": config.layer_norm_eps,
            "position_embedding_type": "absolute",
            "pad_token_id": pad_token_id,
            "tie_word_embeddings": true,
            "cocolm": {
                "relative_position": config.relative_position.then(|| serde_json::json!({
                    "buckets": config.rel_pos_buckets,
                    "max_distance": config.rel_pos_max_distance,
                    "max_positions": config.max_positions,
                    "file": files::EXTRA,
                    "note": "transformers' ELECTRA does not compute this bias: load the table and add it to the attention scores (README)",
                })),
                "extra_file": files::EXTRA,
            },
        })
    };
    Ok(Exported {
        corrector,
        corrector_config: hf_config(config.num_layers, config.dropout, "ElectraModel"),
        generator,
        generator_config: hf_config(config.generator_depth(), 0.0, "ElectraForMaskedLM"),
        extra: ours.into_values().collect(),
    })
}

impl Exported {
    /// Write the export into `dir` (created): `config.json` and `model.safetensors` of
    /// the corrector, the same of the generator in `generator/`, and
    /// `cocolm_extra.safetensors`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let generator = dir.join(files::GENERATOR);
        std::fs::create_dir_all(&generator).map_err(|e| Error::io(&generator, e))?;
        for (folder, tensors, config) in [
            (dir, &self.corrector, &self.corrector_config),
            (generator.as_path(), &self.generator, &self.generator_config),
        ] {
            crate::tensor_file::write(&folder.join(files::WEIGHTS), tensors)?;
            let path = folder.join(files::CONFIG);
            let text = serde_json::to_string_pretty(config).map_err(|e| Error::Json {
                path: path.clone(),
                message: e.to_string(),
            })?;
            std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))?;
        }
        crate::tensor_file::write(&dir.join(files::EXTRA), &self.extra)
    }
}

/// The generator's encoder and MLM head, `electra.*` and `generator_*` ↔ `generator.*`.
fn generator_ties(config: &ModelConfig) -> Vec<Tie> {
    let mut ties = backbone_ties(config.generator_depth(), "generator.backbone");
    ties.extend(generator_head_ties("generator.head"));
    ties
}

/// Our tensors named by `ties` in Hugging Face's names and layout (removed from `ours`).
fn untie(ours: &mut BTreeMap<String, NamedTensor>, ties: &[Tie]) -> Result<Vec<NamedTensor>> {
    let mut take = |name: String| ours.remove(&name).ok_or_else(|| missing(&name));
    let mut out = Vec::new();
    for tie in ties {
        match tie {
            Tie::Same { hf, ours } => out.push(NamedTensor {
                name: hf.clone(),
                ..take(ours.clone())?
            }),
            Tie::Linear { hf, ours } => {
                let weight = take(format!("{ours}.weight"))?;
                let bias = take(format!("{ours}.bias"))?;
                let [d_in, d_out] = weight.shape[..] else {
                    return Err(missing(&weight.name));
                };
                let rows = d_out / hf.len();
                for (k, prefix) in hf.iter().enumerate() {
                    // hf[o][i] = ours[i][k·rows + o]
                    let mut data = vec![0.0f32; rows * d_in];
                    for o in 0..rows {
                        for i in 0..d_in {
                            data[o * d_in + i] = weight.data[i * d_out + k * rows + o];
                        }
                    }
                    out.push(NamedTensor {
                        name: format!("{prefix}.weight"),
                        shape: vec![rows, d_in],
                        data,
                    });
                    out.push(NamedTensor {
                        name: format!("{prefix}.bias"),
                        shape: vec![rows],
                        data: bias.data[k * rows..(k + 1) * rows].to_vec(),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn missing(name: &str) -> Error {
    Error::MissingTensor {
        path: "<model>".into(),
        name: name.to_string(),
    }
}

/// Read an export directory back as our parameters for a model of `config`: every
/// parameter of `fresh` (`params::export` of a freshly initialised model) replaced by the
/// export's. The Hugging Face configurations must describe `config`'s shape (a field that
/// differs is named); the generator's word embeddings must be the corrector's (one shared
/// table here); without [`files::EXTRA`] the copy head and the CLM bias keep `fresh`'s
/// values (said in the returned notes), and a model with relative positions is refused.
pub fn import(
    dir: &Path,
    config: &ModelConfig,
    fresh: Vec<NamedTensor>,
) -> Result<(Vec<NamedTensor>, Vec<String>)> {
    let generator_dir = dir.join(files::GENERATOR);
    check_config(&dir.join(files::CONFIG), config, config.num_layers)?;
    check_config(
        &generator_dir.join(files::CONFIG),
        config,
        config.generator_depth(),
    )?;
    let mut notes = Vec::new();
    let mut found: BTreeMap<String, NamedTensor> = BTreeMap::new();
    let corrector_path = dir.join(files::WEIGHTS);
    let mut hf = HfTensors::read(&corrector_path)?;
    let table = hf.take(WORD_EMBEDDINGS)?;
    hf.apply(&backbone_ties(config.num_layers, "corrector.backbone"))?;
    let generator_path = generator_dir.join(files::WEIGHTS);
    let mut generator = HfTensors::read(&generator_path)?;
    if generator.take(WORD_EMBEDDINGS)? != table {
        return Err(Error::TensorMismatch {
            path: generator_path.clone(),
            name: WORD_EMBEDDINGS.into(),
            expected: "the corrector's word embeddings (cocolm shares one token table)".into(),
            got: "other values".into(),
        });
    }
    generator.apply(&generator_ties(config))?;
    for t in hf
        .finish(&["discriminator_predictions."])?
        .into_iter()
        .chain(generator.finish(&[TIED_DECODER])?)
    {
        found.insert(t.name.clone(), t);
    }
    found.insert(
        TOKEN_TABLE.into(),
        NamedTensor {
            name: TOKEN_TABLE.into(),
            ..table
        },
    );
    let extra = dir.join(files::EXTRA);
    if extra.is_file() {
        for t in crate::tensor_file::read(&extra)? {
            found.insert(t.name.clone(), t);
        }
    } else if config.relative_position {
        return Err(Error::Checkpoint {
            path: dir.to_path_buf(),
            message: format!(
                "model.relative_position is on, but {} (the relative-position tables) is missing; set model.relative_position = false to start from a plain ELECTRA",
                files::EXTRA
            ),
        });
    } else {
        notes.push(format!(
            "{} is missing: the copy head and the CLM bias start freshly initialised",
            extra.display()
        ));
    }
    let mut out = Vec::with_capacity(fresh.len());
    for t in fresh {
        match found.remove(&t.name) {
            Some(v) => out.push(v),
            None => out.push(t),
        }
    }
    // A zero token-type row exported for a model without token types is dropped.
    found.retain(|name, t| {
        !(config.type_vocab_size == 0
            && name.ends_with("embeddings.token_types")
            && t.data.iter().all(|&v| v == 0.0))
    });
    if !found.is_empty() {
        return Err(Error::UnexpectedTensors {
            path: dir.to_path_buf(),
            names: found.into_keys().take(8).collect(),
        });
    }
    Ok((out, notes))
}

/// The shape fields of a Hugging Face `config.json` against ours.
fn check_config(path: &Path, config: &ModelConfig, layers: usize) -> Result<()> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let hf: serde_json::Value = serde_json::from_slice(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let wants: [(&str, serde_json::Value); 9] = [
        ("vocab_size", config.vocab_size.into()),
        ("hidden_size", config.hidden_size.into()),
        ("embedding_size", config.hidden_size.into()),
        ("num_hidden_layers", layers.into()),
        ("num_attention_heads", config.num_heads.into()),
        ("intermediate_size", config.ffn_size.into()),
        ("max_position_embeddings", config.max_positions.into()),
        ("type_vocab_size", config.type_vocab_size.max(1).into()),
        ("hidden_act", "gelu".into()),
    ];
    for (field, want) in wants {
        let got = hf.get(field).cloned().unwrap_or(serde_json::Value::Null);
        if got != want {
            return Err(Error::config(
                "model",
                format!(
                    "{}: {field} is {got}, the run's model needs {want}",
                    path.display()
                ),
            ));
        }
    }
    let eps = hf.get("layer_norm_eps").and_then(serde_json::Value::as_f64);
    if eps
        .is_none_or(|e| (e - config.layer_norm_eps).abs() > 1e-12 * config.layer_norm_eps.max(1.0))
    {
        return Err(Error::config(
            "model.layer_norm_eps",
            format!(
                "{}: layer_norm_eps is {eps:?}, the run's model has {}",
                path.display(),
                config.layer_norm_eps
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuInner;
    use crate::hf::fixture::electra_tiny;
    use crate::model::CocoLm;
    use crate::params;
    use crate::test_util::{rng_lock, tiny_config};
    use burn::tensor::backend::Backend;

    fn sorted(mut v: Vec<NamedTensor>) -> Vec<NamedTensor> {
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    #[test]
    fn export_then_import_is_exact() {
        let _guard = rng_lock();
        let device = Default::default();
        for (relative, types, scl) in [(true, 0, true), (false, 2, false)] {
            let mut config = tiny_config().model;
            config.relative_position = relative;
            config.type_vocab_size = types;
            config.scl = scl;
            CpuInner::seed(&device, 7);
            let model = params::export(&CocoLm::<CpuInner>::init(&config, &device).unwrap());
            let exported = export(model.clone(), &config, 0).unwrap();
            let dir = tempfile::tempdir().unwrap();
            exported.write(dir.path()).unwrap();
            CpuInner::seed(&device, 8);
            let fresh = params::export(&CocoLm::<CpuInner>::init(&config, &device).unwrap());
            let (back, notes) = import(dir.path(), &config, fresh).unwrap();
            assert!(notes.is_empty(), "{notes:?}");
            assert!(
                sorted(back) == sorted(model),
                "relative {relative}, types {types}"
            );
            // What ELECTRA has no place for is kept under our names.
            let extra: Vec<&str> = exported.extra.iter().map(|t| t.name.as_str()).collect();
            assert!(extra.contains(&"corrector.copy_head.weight"), "{extra:?}");
            assert!(extra.contains(&"corrector.lm_head.bias"), "{extra:?}");
            assert_eq!(
                extra.contains(&"corrector.backbone.encoder.relative_position.table"),
                relative
            );
        }
    }

    /// The fixture's Hugging Face tensors, loaded into our model and exported again,
    /// come back under their own names with the same values.
    #[test]
    fn the_electra_fixture_round_trips_to_its_own_tensors() {
        let fixture =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/electra-tiny");
        let device = Default::default();
        let config = electra_tiny();
        let model = CocoLm::<CpuInner>::init(&config, &device).unwrap();
        let (backbone, tokens) = crate::hf::load_discriminator(
            model.corrector.backbone.clone(),
            &fixture.join("discriminator.safetensors"),
            &device,
        )
        .unwrap();
        let (generator, _) = crate::hf::load_generator(
            model.generator.clone(),
            &fixture.join("generator.safetensors"),
            &device,
        )
        .unwrap();
        let mut model = model;
        model.corrector.backbone = backbone;
        model.generator = generator;
        model.token_embedding = burn::module::Param::from_tensor(tokens);
        let exported = export(params::export(&model), &config, 0).unwrap();
        for (file, ours) in [
            ("discriminator.safetensors", &exported.corrector),
            ("generator.safetensors", &exported.generator),
        ] {
            let reference: Vec<NamedTensor> = crate::tensor_file::read(&fixture.join(file))
                .unwrap()
                .into_iter()
                .filter(|t| {
                    !t.name.starts_with("discriminator_predictions.") && t.name != TIED_DECODER
                })
                .collect();
            let ours = sorted(ours.clone());
            let names = |v: &[NamedTensor]| v.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(&ours), names(&reference), "{file}");
            // The fixture's generator has a token table of its own; ours shares the
            // corrector's.
            for (a, b) in ours.iter().zip(&reference) {
                let shared = file.starts_with("generator") && a.name == WORD_EMBEDDINGS;
                assert!(a == b || shared, "{file}: {} differs", a.name);
            }
        }
    }
}
