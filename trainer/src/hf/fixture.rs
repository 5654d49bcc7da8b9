//! The reference check: our encoder, loaded with a Hugging Face ELECTRA fixture's
//! weights, against the outputs `transformers` computed for it (the fixture's
//! `io.safetensors`; see `trainer/tests/data/electra-tiny`).
//!
//! Only unpadded positions are compared; the figure is `‖out − ref‖ / ‖ref‖`.

use super::{load_discriminator, load_generator};
use crate::kernels::Kernels;
use crate::model::{CocoLm, EncoderInput};
use crate::{Error, Result};
use burn::tensor::{DType, Int, Tensor, TensorData};
use cocolm_shared::ModelConfig;
use safetensors::SafeTensors;
use std::path::Path;

/// The fixture's shape: 2 layers (generator 1), hidden 64, 4 heads, FFN 256, vocabulary
/// 1000, absolute positions only, token-type row 0, LayerNorm ε 1e-12.
pub fn electra_tiny() -> ModelConfig {
    ModelConfig {
        vocab_size: 1000,
        hidden_size: 64,
        num_layers: 2,
        num_heads: 4,
        ffn_size: 256,
        generator_layers: 1,
        max_positions: 128,
        type_vocab_size: 2,
        relative_position: false,
        layer_norm_eps: 1e-12,
        dropout: 0.0,
        ..ModelConfig::default()
    }
}

/// Relative errors against the reference outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixtureErrors {
    /// The discriminator's embeddings output.
    pub embeddings: f64,
    /// The discriminator's last hidden state.
    pub last_hidden_state: f64,
    /// The generator's vocabulary logits.
    pub generator_logits: f64,
}

impl FixtureErrors {
    /// The largest of the three.
    pub fn max(&self) -> f64 {
        self.embeddings
            .max(self.last_hidden_state)
            .max(self.generator_logits)
    }
}

/// The inputs and expected outputs of `io.safetensors`.
struct Io {
    ids: Vec<u32>,
    lengths: Vec<u32>,
    batch: usize,
    seq: usize,
    bytes: Vec<u8>,
    path: std::path::PathBuf,
}

impl Io {
    fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |message: String| Error::Safetensors {
            path: path.to_path_buf(),
            message,
        };
        let (ids, shape, mask) = {
            let file = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
            let ints = |name: &str| -> Result<(Vec<i64>, Vec<usize>)> {
                let v = file.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
                let data = v
                    .data()
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("eight bytes")))
                    .collect();
                Ok((data, v.shape().to_vec()))
            };
            let (ids, shape) = ints("input_ids")?;
            let (mask, _) = ints("attention_mask")?;
            (ids, shape, mask)
        };
        let [batch, seq] = shape[..] else {
            return Err(bad(format!(
                "input_ids has shape {shape:?}, not [batch, seq]"
            )));
        };
        let lengths: Vec<u32> = mask
            .chunks(seq)
            .map(|row| row.iter().sum::<i64>() as u32)
            .collect();
        // Our layout pads at the end of each row.
        for (row, &len) in mask.chunks(seq).zip(&lengths) {
            if !row
                .iter()
                .enumerate()
                .all(|(s, &m)| (m == 1) == (s < len as usize))
            {
                return Err(bad("attention_mask pads before the end of a row".into()));
            }
        }
        Ok(Self {
            ids: ids.iter().map(|&i| i as u32).collect(),
            lengths,
            batch,
            seq,
            bytes,
            path: path.to_path_buf(),
        })
    }

    fn floats(&self, name: &str) -> Result<(Vec<f32>, usize)> {
        let bad = |message: String| Error::Safetensors {
            path: self.path.clone(),
            message: format!("{name}: {message}"),
        };
        let file = SafeTensors::deserialize(&self.bytes).map_err(|e| bad(e.to_string()))?;
        let v = file.tensor(name).map_err(|e| bad(e.to_string()))?;
        let data = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("four bytes")))
            .collect();
        let width = *v.shape().last().unwrap_or(&1);
        Ok((data, width))
    }

    /// Flat indices of the unpadded positions.
    fn real_positions(&self) -> Vec<usize> {
        (0..self.batch)
            .flat_map(|b| (0..self.lengths[b] as usize).map(move |s| b * self.seq + s))
            .collect()
    }
}

/// ‖out − ref‖ / ‖ref‖ over the given rows (`width` values per row of `reference`).
fn relative_error(out: &[f32], reference: &[f32], rows: &[usize], width: usize) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (k, &r) in rows.iter().enumerate() {
        for j in 0..width {
            let (o, e) = (out[k * width + j] as f64, reference[r * width + j] as f64);
            diff += (o - e).powi(2);
            norm += e.powi(2);
        }
    }
    (diff / norm).sqrt()
}

/// The values of `t`'s `rows`, as fp32.
fn rows_of<B: Kernels>(t: Tensor<B, 2>, rows: &[Tensor<B, 1, Int>]) -> Vec<f32> {
    t.select(0, rows[0].clone())
        .cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 values")
}

/// Load the fixture in `dir` into a model on `device`, computing in `dtype`, and
/// compare its outputs with the reference.
pub fn check_fixture<B: Kernels>(
    dir: &Path,
    dtype: DType,
    device: &B::Device,
) -> Result<FixtureErrors> {
    let io = Io::load(&dir.join("io.safetensors"))?;
    let model = CocoLm::<B>::init(&electra_tiny(), device)?;
    let rows = io.real_positions();
    let index = [Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            [rows.len()],
        ),
        device,
    )];
    let input =
        EncoderInput::<B>::new(&io.ids, &io.lengths, io.batch, io.seq, device).in_dtype(dtype);

    let (backbone, tokens) = load_discriminator(
        model.corrector.backbone,
        &dir.join("discriminator.safetensors"),
        device,
    )?;
    let embedded = backbone.embeddings.forward(tokens.clone(), &input);
    let (reference, width) = io.floats("discriminator.embeddings_output")?;
    let embeddings = relative_error(&rows_of(embedded, &index), &reference, &rows, width);
    let hidden = backbone.forward(tokens, &input);
    let (reference, width) = io.floats("discriminator.last_hidden_state")?;
    let last_hidden_state = relative_error(&rows_of(hidden, &index), &reference, &rows, width);

    let (generator, tokens) =
        load_generator(model.generator, &dir.join("generator.safetensors"), device)?;
    let logits = generator.forward(tokens, &input, index[0].clone());
    let (reference, width) = io.floats("generator.logits")?;
    let out = logits
        .cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 values");
    Ok(FixtureErrors {
        embeddings,
        last_hidden_state,
        generator_logits: relative_error(&out, &reference, &rows, width),
    })
}
