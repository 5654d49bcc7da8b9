//! The batch that crosses the queue from loader workers to the trainer.

use crate::LoaderCursor;

/// One corrupted batch, laid out row-major `[batch_size, seq_len]` in flat buffers so
/// it can be filled without per-example allocation and uploaded to a device in one copy.
///
/// Padding sits at the end of each row (`lengths[b]` real tokens, then `pad_id`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Sequence number of the batch in the run (0, 1, 2, …), for reordering.
    pub seq: u64,
    /// Rows in the batch.
    pub batch_size: usize,
    /// Columns of every row (padded length).
    pub seq_len: usize,
    /// Corrupted input: original ids with the masked positions set to `[MASK]`. `[B·S]`.
    pub input_ids: Vec<u32>,
    /// The uncorrupted ids. `[B·S]`.
    pub original_ids: Vec<u32>,
    /// Real (non-pad) tokens per row. `[B]`.
    pub lengths: Vec<u32>,
    /// Flat indices `b·S + s` of the masked positions, ascending. `[n_masked]`.
    pub masked_positions: Vec<u32>,
    /// Optional uncorrupted contiguous crop per row (the SCL view).
    pub crop: Option<CropView>,
    /// Example index (row of its source's shard set) of every row. `[B]`.
    pub example_indices: Vec<u64>,
    /// Source of every row, its place in the blend (0 with one source). `[B]`.
    pub example_sources: Vec<u32>,
    /// The loader cursor just after this batch: resuming from it yields the next batch.
    pub cursor_after: LoaderCursor,
}

/// The SCL view: an uncorrupted contiguous crop of every row, `[B, crop_len]`, padded
/// at the end; each crop starts with `[CLS]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CropView {
    /// Columns of every crop row.
    pub seq_len: usize,
    /// Crop ids, `[B·crop_len]`.
    pub ids: Vec<u32>,
    /// Real tokens per crop row, `[B]`.
    pub lengths: Vec<u32>,
}

impl Batch {
    /// Number of masked positions.
    pub fn n_masked(&self) -> usize {
        self.masked_positions.len()
    }

    /// Number of real (non-pad) tokens.
    pub fn n_tokens(&self) -> usize {
        self.lengths.iter().map(|&l| l as usize).sum()
    }

    /// Attention mask `[B·S]`: 1 for real tokens, 0 for padding.
    pub fn attention_mask(&self) -> Vec<u8> {
        let mut mask = vec![0u8; self.batch_size * self.seq_len];
        for (b, &len) in self.lengths.iter().enumerate() {
            mask[b * self.seq_len..b * self.seq_len + len as usize].fill(1);
        }
        mask
    }
}
