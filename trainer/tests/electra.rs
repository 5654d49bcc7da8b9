//! The reference check: Hugging Face ELECTRA weights loaded into our encoder reproduce
//! the outputs `transformers` computed (`tests/data/electra-tiny`, see its README entry in
//! `../shared/README.md`).

use crate::rng_lock;
use burn::tensor::{Int, Tensor, TensorData};
use cocolm_shared::ModelConfig;
use cocolm_trainer::CpuInner;
use cocolm_trainer::hf::{load_discriminator, load_generator};
use cocolm_trainer::model::{CocoLm, EncoderInput};
use safetensors::SafeTensors;
use std::path::PathBuf;

type B = CpuInner;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/electra-tiny")
        .join(name)
}

/// The fixture's shape: 2 layers (generator 1), hidden 64, 4 heads, FFN 256, vocab 1000,
/// absolute positions only, token-type row 0, LayerNorm eps 1e-12.
fn electra_tiny() -> ModelConfig {
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

struct Io {
    ids: Vec<u32>,
    lengths: Vec<u32>,
    batch: usize,
    seq: usize,
    bytes: Vec<u8>,
}

impl Io {
    fn load() -> Self {
        let bytes = std::fs::read(fixture("io.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let ints = |name: &str| -> (Vec<i64>, Vec<usize>) {
            let v = file.tensor(name).unwrap();
            let data = v
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (data, v.shape().to_vec())
        };
        let (ids, shape) = ints("input_ids");
        let (mask, _) = ints("attention_mask");
        let (batch, seq) = (shape[0], shape[1]);
        let lengths: Vec<u32> = mask
            .chunks(seq)
            .map(|row| row.iter().sum::<i64>() as u32)
            .collect();
        // Padding is at the end of each row, as our layout requires.
        for (row, &len) in mask.chunks(seq).zip(&lengths) {
            assert!(
                row.iter()
                    .enumerate()
                    .all(|(s, &m)| (m == 1) == (s < len as usize))
            );
        }
        Self {
            ids: ids.iter().map(|&i| i as u32).collect(),
            lengths,
            batch,
            seq,
            bytes,
        }
    }

    fn floats(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let file = SafeTensors::deserialize(&self.bytes).unwrap();
        let v = file.tensor(name).unwrap();
        let data = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (data, v.shape().to_vec())
    }

    /// Flat indices of the unpadded positions.
    fn real_positions(&self) -> Vec<usize> {
        (0..self.batch)
            .flat_map(|b| (0..self.lengths[b] as usize).map(move |s| b * self.seq + s))
            .collect()
    }

    fn input(&self) -> EncoderInput<B> {
        EncoderInput::new(
            &self.ids,
            &self.lengths,
            self.batch,
            self.seq,
            &Default::default(),
        )
    }
}

/// ‖out − ref‖ / ‖ref‖ over the given rows (`width` values per row).
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

fn rows_of(t: Tensor<B, 2>, rows: &[usize]) -> Vec<f32> {
    let device = t.device();
    let index = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            [rows.len()],
        ),
        &device,
    );
    t.select(0, index).into_data().to_vec::<f32>().unwrap()
}

#[test]
fn discriminator_reproduces_hugging_face() {
    let _guard = rng_lock();
    let device = Default::default();
    let io = Io::load();
    let model = CocoLm::<B>::init(&electra_tiny(), &device).unwrap();
    let (backbone, tokens) = load_discriminator(
        model.corrector.backbone,
        &fixture("discriminator.safetensors"),
        &device,
    )
    .unwrap();
    let input = io.input();
    let rows = io.real_positions();

    let embedded = backbone.embeddings.forward(tokens.clone(), &input);
    let (reference, shape) = io.floats("discriminator.embeddings_output");
    let err = relative_error(&rows_of(embedded, &rows), &reference, &rows, shape[2]);
    eprintln!("embeddings_output: relative error {err:e}");
    assert!(err < 1e-5, "embeddings_output relative error {err:e}");

    let hidden = backbone.forward(tokens, &input);
    let (reference, shape) = io.floats("discriminator.last_hidden_state");
    let err = relative_error(&rows_of(hidden, &rows), &reference, &rows, shape[2]);
    eprintln!("last_hidden_state: relative error {err:e}");
    assert!(err < 1e-5, "last_hidden_state relative error {err:e}");
}

#[test]
fn generator_reproduces_hugging_face() {
    let _guard = rng_lock();
    let device = Default::default();
    let io = Io::load();
    let model = CocoLm::<B>::init(&electra_tiny(), &device).unwrap();
    let (generator, tokens) =
        load_generator(model.generator, &fixture("generator.safetensors"), &device).unwrap();
    let rows = io.real_positions();
    let positions = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            [rows.len()],
        ),
        &device,
    );
    let logits = generator.forward(tokens, &io.input(), positions);
    let (reference, shape) = io.floats("generator.logits");
    let out = logits.into_data().to_vec::<f32>().unwrap();
    let err = relative_error(&out, &reference, &rows, shape[2]);
    eprintln!("generator logits: relative error {err:e}");
    assert!(err < 1e-5, "generator logits relative error {err:e}");
}

#[test]
fn wrong_depth_is_an_error_naming_the_tensor() {
    let _guard = rng_lock();
    let device = Default::default();
    let config = ModelConfig {
        num_layers: 3,
        ..electra_tiny()
    };
    let model = CocoLm::<B>::init(&config, &device).unwrap();
    let err = load_discriminator(
        model.corrector.backbone,
        &fixture("discriminator.safetensors"),
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("electra.encoder.layer.2"), "{err}");
}
