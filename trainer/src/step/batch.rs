//! A [`Batch`] from the loader, checked against the model and uploaded to a device.

use crate::model::EncoderInput;
use crate::sample::position_uniforms;
use crate::{Error, Result};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use cocolm_shared::{Batch, ModelConfig};

/// A [`Batch`] uploaded to a device, checked against the model.
#[derive(Debug, Clone)]
pub struct DeviceBatch<B: Backend> {
    /// Masked input and its attention layout.
    pub input: EncoderInput<B>,
    /// Uncorrupted ids `[batch · seq]`.
    pub original: Tensor<B, 1, Int>,
    /// Flat masked positions `[n_masked]`.
    pub masked: Tensor<B, 1, Int>,
    /// Original ids at the masked positions `[n_masked]`.
    pub targets: Tensor<B, 1, Int>,
    /// 1 at real tokens, 0 at pads, `[batch · seq]`.
    pub real: Tensor<B, 1>,
    /// One `U[0, 1)` per masked position for the generator's draw, `[n_masked]`
    /// ([`position_uniforms`]).
    pub uniforms: Tensor<B, 1>,
    /// Number of masked positions.
    pub n_masked: usize,
    /// Number of real tokens.
    pub n_real: usize,
    /// The SCL crop, when the batch has one.
    pub crop: Option<EncoderInput<B>>,
}

fn bad(batch: &Batch, field: &'static str, expected: impl ToString, got: impl ToString) -> Error {
    Error::Batch {
        seq: batch.seq,
        field,
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

fn check_rows(
    batch: &Batch,
    field: &'static str,
    ids: &[u32],
    lengths: &[u32],
    seq: usize,
    model: &ModelConfig,
) -> Result<()> {
    let rows = batch.batch_size;
    if seq == 0 || seq > model.max_positions {
        return Err(bad(
            batch,
            field,
            format!("1..={} columns", model.max_positions),
            seq,
        ));
    }
    if ids.len() != rows * seq {
        return Err(bad(batch, field, format!("{rows}·{seq} ids"), ids.len()));
    }
    if lengths.len() != rows {
        return Err(bad(batch, "lengths", rows, lengths.len()));
    }
    if let Some(&len) = lengths.iter().find(|&&l| l == 0 || l as usize > seq) {
        return Err(bad(batch, "lengths", format!("1..={seq}"), len));
    }
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= model.vocab_size) {
        return Err(bad(
            batch,
            field,
            format!("ids below vocab_size {}", model.vocab_size),
            id,
        ));
    }
    Ok(())
}

impl<B: Backend> DeviceBatch<B> {
    /// The same batch, encoded in `dtype` (its inputs and crop).
    pub fn in_dtype(self, dtype: burn::tensor::DType) -> Self {
        Self {
            input: self.input.in_dtype(dtype),
            crop: self.crop.map(|c| c.in_dtype(dtype)),
            ..self
        }
    }

    /// Check `batch` against the model configuration and upload it; the generator's
    /// draws will be keyed by `sample_seed` ([`position_uniforms`]).
    pub fn upload(
        batch: &Batch,
        model: &ModelConfig,
        sample_seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        let (rows, seq) = (batch.batch_size, batch.seq_len);
        if rows == 0 {
            return Err(bad(batch, "batch_size", "at least 1 row", 0));
        }
        if batch.example_indices.len() != rows {
            return Err(bad(
                batch,
                "example_indices",
                format!("{rows} rows"),
                batch.example_indices.len(),
            ));
        }
        check_rows(
            batch,
            "input_ids",
            &batch.input_ids,
            &batch.lengths,
            seq,
            model,
        )?;
        check_rows(
            batch,
            "original_ids",
            &batch.original_ids,
            &batch.lengths,
            seq,
            model,
        )?;
        let mut previous = None;
        for &p in &batch.masked_positions {
            let (row, col) = (p as usize / seq, p as usize % seq);
            if row >= rows || col >= batch.lengths[row] as usize || previous.is_some_and(|q| q >= p)
            {
                return Err(bad(
                    batch,
                    "masked_positions",
                    "ascending positions inside the rows' lengths",
                    p,
                ));
            }
            previous = Some(p);
        }
        let crop = match &batch.crop {
            Some(c) => {
                check_rows(batch, "crop.ids", &c.ids, &c.lengths, c.seq_len, model)?;
                Some(EncoderInput::new(
                    &c.ids, &c.lengths, rows, c.seq_len, device,
                ))
            }
            None if model.scl => {
                return Err(bad(batch, "crop", "an SCL crop (model.scl is on)", "none"));
            }
            None => None,
        };
        let ints = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device)
        };
        let targets = batch
            .masked_positions
            .iter()
            .map(|&p| batch.original_ids[p as usize] as i64)
            .collect();
        let real: Vec<f32> = batch.attention_mask().into_iter().map(f32::from).collect();
        let uniforms = position_uniforms(sample_seed, batch);
        Ok(Self {
            input: EncoderInput::new(&batch.input_ids, &batch.lengths, rows, seq, device),
            original: ints(batch.original_ids.iter().map(|&i| i as i64).collect()),
            masked: ints(batch.masked_positions.iter().map(|&p| p as i64).collect()),
            targets: ints(targets),
            real: Tensor::from_data(TensorData::new(real, [rows * seq]), device),
            uniforms: Tensor::from_data(TensorData::new(uniforms, [batch.n_masked()]), device),
            n_masked: batch.n_masked(),
            n_real: batch.n_tokens(),
            crop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{synthetic_batch, tiny_config};

    #[test]
    fn inconsistent_batches_are_rejected() {
        let config = tiny_config();
        let device = Default::default();
        let good = synthetic_batch(&config, 3);
        let upload = |b: &Batch| {
            DeviceBatch::<crate::CpuInner>::upload(b, &config.model, 0, &device).map(|_| ())
        };
        upload(&good).unwrap();

        let mut b = good.clone();
        let row = b
            .lengths
            .iter()
            .position(|&l| (l as usize) < b.seq_len)
            .unwrap();
        b.masked_positions = vec![(row * b.seq_len + b.seq_len - 1) as u32];
        assert!(
            upload(&b)
                .unwrap_err()
                .to_string()
                .contains("masked_positions")
        );

        let mut b = good.clone();
        b.input_ids[0] = config.model.vocab_size as u32;
        assert!(upload(&b).unwrap_err().to_string().contains("input_ids"));

        let mut b = good.clone();
        b.lengths[0] = 0;
        assert!(upload(&b).unwrap_err().to_string().contains("lengths"));

        let mut b = good.clone();
        b.original_ids.pop();
        assert!(upload(&b).unwrap_err().to_string().contains("original_ids"));

        let mut b = good.clone();
        b.example_indices.pop();
        assert!(
            upload(&b)
                .unwrap_err()
                .to_string()
                .contains("example_indices")
        );

        let mut b = good;
        assert!(
            b.masked_positions.len() > 1,
            "the batch has positions to swap"
        );
        b.masked_positions.reverse();
        assert!(
            upload(&b).is_err(),
            "masked positions out of order are refused"
        );
    }
}
