//! Synthetic corrupted batches without a corpus: random ids (for timing) or repeated
//! motifs (a corpus a model can learn, for tests). Batch `i` of a [`Synthetic`] is a pure
//! function of its seed and `i`, like the loader's.

use cocolm_shared::hash::seed_of;
use cocolm_shared::{Batch, CropView, LoaderCursor, SpecialTokens};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Special-token ids of synthetic batches; ordinary tokens start at 5.
pub const SPECIALS: SpecialTokens = SpecialTokens {
    pad: 0,
    cls: 1,
    sep: 2,
    mask: 3,
    unk: 4,
};
/// The first id of an ordinary (non-special) token.
pub const FIRST_ORDINARY: u32 = 5;

/// What the ordinary tokens of a synthetic row are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Uniformly random ids.
    Random,
    /// A random motif of one or two tokens repeated along the row: every masked token
    /// can be copied from a neighbour at distance 1 or 2.
    Motifs,
}

/// A family of synthetic batches; batch `i` is a pure function of `(seed, i)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Synthetic {
    /// Rows per batch.
    pub batch_size: usize,
    /// Columns per row.
    pub seq_len: usize,
    /// Vocabulary size (more than 5 + 2).
    pub vocab_size: usize,
    /// Probability that an ordinary token is masked.
    pub mask_prob: f64,
    /// Seed of ids, lengths and masks.
    pub seed: u64,
    /// Ordinary-token content.
    pub content: Content,
    /// Random row lengths (padding at the end) instead of full rows.
    pub ragged: bool,
    /// Add an SCL crop of this fraction of each row.
    pub crop_fraction: Option<f64>,
}

impl Synthetic {
    /// Batch number `index`; its `cursor_after.consumed` is `index + 1` (batches, here).
    pub fn batch(&self, index: u64) -> Batch {
        let mut rng = StdRng::seed_from_u64(seed_of(&[self.seed, index]));
        let (rows, seq) = (self.batch_size, self.seq_len);
        let ordinary = self.vocab_size as u32 - FIRST_ORDINARY;
        let mut batch = Batch {
            seq: index,
            batch_size: rows,
            seq_len: seq,
            input_ids: vec![SPECIALS.pad; rows * seq],
            original_ids: vec![SPECIALS.pad; rows * seq],
            lengths: Vec::with_capacity(rows),
            example_indices: (0..rows as u64).map(|r| index * rows as u64 + r).collect(),
            cursor_after: LoaderCursor {
                seed: self.seed,
                consumed: index + 1,
            },
            ..Batch::default()
        };
        let mut crop = CropView::default();
        for r in 0..rows {
            let len = if self.ragged {
                rng.random_range(3.min(seq)..=seq)
            } else {
                seq
            };
            let motif = [rng.random_range(0..ordinary), rng.random_range(0..ordinary)];
            let period = rng.random_range(1..=2);
            let row = &mut batch.original_ids[r * seq..r * seq + len];
            row[0] = SPECIALS.cls;
            for (s, id) in row.iter_mut().enumerate().skip(1) {
                *id = match self.content {
                    Content::Random => FIRST_ORDINARY + rng.random_range(0..ordinary),
                    Content::Motifs => FIRST_ORDINARY + motif[(s - 1) % period],
                };
            }
            if len > 1 {
                row[len - 1] = SPECIALS.sep;
            }
            batch.lengths.push(len as u32);
            if let Some(fraction) = self.crop_fraction {
                let crop_seq = ((seq as f64 * fraction).ceil() as usize).max(1);
                let take = ((len as f64 * fraction).ceil() as usize).clamp(1, crop_seq);
                let from = rng.random_range(1..=len - take + 1);
                let mut ids = vec![SPECIALS.pad; crop_seq];
                ids[0] = SPECIALS.cls;
                ids[1..take].copy_from_slice(&row[from..from + take - 1]);
                crop.seq_len = crop_seq;
                crop.ids.extend(ids);
                crop.lengths.push(take as u32);
            }
        }
        batch.input_ids.clone_from(&batch.original_ids);
        for r in 0..rows {
            let len = batch.lengths[r] as usize;
            for s in 1..len.saturating_sub(1) {
                if rng.random_bool(self.mask_prob) {
                    let p = r * seq + s;
                    batch.input_ids[p] = SPECIALS.mask;
                    batch.masked_positions.push(p as u32);
                }
            }
        }
        batch.crop = self.crop_fraction.map(|_| crop);
        batch
    }

    /// Batches `first, first + 1, …` forever.
    pub fn from_index(&self, first: u64) -> impl Iterator<Item = Batch> + '_ {
        (first..).map(|i| self.batch(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Synthetic {
        Synthetic {
            batch_size: 4,
            seq_len: 12,
            vocab_size: 40,
            mask_prob: 0.3,
            seed: 9,
            content: Content::Motifs,
            ragged: true,
            crop_fraction: Some(0.9),
        }
    }

    #[test]
    fn batches_are_well_formed_and_reproducible() {
        let s = spec();
        let b = s.batch(3);
        assert_eq!(b, s.batch(3));
        assert_ne!(b, s.batch(4));
        assert_eq!(b.input_ids.len(), 48);
        for (r, &len) in b.lengths.iter().enumerate() {
            let row = &b.original_ids[r * 12..(r + 1) * 12];
            assert_eq!(row[0], SPECIALS.cls);
            assert!(row[len as usize..].iter().all(|&id| id == SPECIALS.pad));
        }
        for &p in &b.masked_positions {
            assert_eq!(b.input_ids[p as usize], SPECIALS.mask);
            assert!(b.original_ids[p as usize] >= FIRST_ORDINARY);
        }
        assert!(b.masked_positions.windows(2).all(|w| w[0] < w[1]));
        let crop = b.crop.unwrap();
        assert_eq!(crop.seq_len, 11);
        assert_eq!(crop.ids.len(), 44);
        assert_eq!(b.cursor_after.consumed, 4);
    }
}
