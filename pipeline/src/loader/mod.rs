//! The streaming loader: memory-mapped shards → corrupted [`Batch`]es, in a
//! deterministic order, exactly resumable.
//!
//! Rank r of W reads the stream formed by its share of epoch 0, then of epoch 1, …
//! (see [`order`]); batch k of a run that started at cursor c holds the `batch_size`
//! examples after position `c + k·batch_size` of that stream, so a batch may span the
//! end of one epoch and the start of the next. Every batch carries the cursor just
//! after it; a loader started from that cursor yields exactly the batches that would
//! have come next. Batches are built by [`crate::queue::OrderedPool`] workers, so the
//! content does not depend on the worker count.

pub mod order;

use crate::corrupt::crop::Cropper;
use crate::corrupt::mask::Masker;
use crate::corrupt::{Stage, rng_for};
use crate::queue::{OrderedPool, QueueMetrics};
use crate::shard::reader::ShardSet;
use crate::{Error, Result};
use cocolm_shared::{Batch, LoaderCursor};
use order::{Permutation, RankShare};

/// How batches are built and delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderOptions {
    /// Rows per batch.
    pub batch_size: usize,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Batches ready ahead of the consumer.
    pub queue_depth: usize,
    /// This data-parallel rank.
    pub rank: u64,
    /// Number of data-parallel ranks.
    pub world: u64,
    /// Fraction of non-special positions masked.
    pub mask_prob: f64,
    /// Length fraction of the SCL crop; `None` for no crop.
    pub crop_fraction: Option<f64>,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            batch_size: 16,
            workers: default_workers(),
            queue_depth: 8,
            rank: 0,
            world: 1,
            mask_prob: 0.15,
            crop_fraction: None,
        }
    }
}

/// Worker threads when the configuration says 0: one core is left to the trainer.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).clamp(1, 8))
}

/// Builds batch k of a run; shared by all workers. Pure: the same k gives the same batch.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    set: ShardSet,
    share: RankShare,
    seed: u64,
    start: u64,
    batch_size: usize,
    seq_len: usize,
    vocab: u64,
    pad: u32,
    masker: Masker,
    cropper: Option<Cropper>,
}

impl BatchPlan {
    /// The plan of a run over `set` from `cursor`.
    pub fn new(set: ShardSet, options: &LoaderOptions, cursor: LoaderCursor) -> Result<Self> {
        if options.world == 0 || options.rank >= options.world {
            return Err(Error::LoaderConfig {
                field: "rank",
                message: format!("rank {} of world size {}", options.rank, options.world),
            });
        }
        if options.batch_size == 0 {
            return Err(Error::LoaderConfig {
                field: "batch_size",
                message: "batch size 0".into(),
            });
        }
        let share = RankShare {
            n: set.len(),
            rank: options.rank,
            world: options.world,
        };
        if share.is_empty() {
            return Err(Error::LoaderConfig {
                field: "world",
                message: format!(
                    "{}: {} examples cannot feed {} ranks",
                    set.dir().display(),
                    set.len(),
                    options.world
                ),
            });
        }
        if cursor.position >= share.len() {
            return Err(Error::LoaderConfig {
                field: "cursor.position",
                message: format!(
                    "cursor position {} is beyond the {} examples of this rank's epoch",
                    cursor.position,
                    share.len()
                ),
            });
        }
        let m = set.manifest();
        let special = m.tokenizer.special_tokens;
        Ok(BatchPlan {
            share,
            seed: cursor.seed,
            start: cursor.epoch * share.len() + cursor.position,
            batch_size: options.batch_size,
            seq_len: m.seq_len,
            vocab: m.tokenizer.vocab_size as u64,
            pad: special.pad,
            masker: Masker::new(options.mask_prob, special),
            cropper: options.crop_fraction.map(|f| Cropper::new(f, special.cls)),
            set,
        })
    }

    /// The cursor at position `linear` of this rank's stream.
    fn cursor_at(&self, linear: u64) -> LoaderCursor {
        LoaderCursor {
            seed: self.seed,
            epoch: linear / self.share.len(),
            position: linear % self.share.len(),
        }
    }

    /// Build batch `k`, refilling `spare` if given.
    pub fn build(&self, k: u64, spare: Option<Batch>) -> Result<Batch> {
        let (b, s) = (self.batch_size, self.seq_len);
        let mut batch = spare.unwrap_or_default();
        let first = self.start + k * b as u64;
        batch.seq = k;
        batch.batch_size = b;
        batch.seq_len = s;
        batch.input_ids.clear();
        batch.input_ids.resize(b * s, self.pad);
        batch.original_ids.clear();
        batch.original_ids.resize(b * s, self.pad);
        batch.lengths.clear();
        batch.masked_positions.clear();
        batch.example_indices.clear();
        let mut crop = self.cropper.map(|_| {
            let mut c = batch.crop.take().unwrap_or_default();
            c.ids.clear();
            c.lengths.clear();
            c
        });
        let mut perm: Option<(u64, Permutation)> = None;
        let (mut row_positions, mut scratch, mut cropped) = (Vec::new(), Vec::new(), Vec::new());
        for row in 0..b {
            let cursor = self.cursor_at(first + row as u64);
            let epoch_perm = match perm.take() {
                Some((epoch, p)) if epoch == cursor.epoch => p,
                _ => Permutation::new(self.share.n, self.seed, cursor.epoch),
            };
            let index = self.share.example(&epoch_perm, cursor.position);
            perm = Some((cursor.epoch, epoch_perm));
            let ids = self.set.example(index);
            self.check(index, ids)?;
            let span = row * s..row * s + ids.len();
            batch.original_ids[span.clone()].copy_from_slice(ids);
            row_positions.clear();
            let mut rng = rng_for(self.seed, cursor.epoch, index, Stage::Mask);
            self.masker.apply(
                ids,
                &mut rng,
                &mut batch.input_ids[span],
                &mut row_positions,
                &mut scratch,
            );
            batch
                .masked_positions
                .extend(row_positions.iter().map(|&p| (row * s) as u32 + p));
            batch.lengths.push(ids.len() as u32);
            batch.example_indices.push(index);
            if let (Some(cropper), Some(view)) = (&self.cropper, crop.as_mut()) {
                let mut rng = rng_for(self.seed, cursor.epoch, index, Stage::Crop);
                cropper.apply(ids, &mut rng, &mut cropped);
                view.seq_len = cropper.crop_len(s);
                let start = view.ids.len();
                view.ids.extend_from_slice(&cropped);
                view.ids.resize(start + view.seq_len, self.pad);
                view.lengths.push(cropped.len() as u32);
            }
        }
        batch.crop = crop;
        batch.cursor_after = self.cursor_at(first + b as u64);
        Ok(batch)
    }

    fn check(&self, index: u64, ids: &[u32]) -> Result<()> {
        let bad = |message: String| {
            let (file, row) = self.set.shard_of(index);
            Err(Error::Shard {
                path: self.set.dir().join(file),
                offset: self.set.batch_offset(index),
                message: format!("row {row}: {message}"),
            })
        };
        if ids.len() > self.seq_len || ids.is_empty() {
            return bad(format!("{} tokens, seq_len is {}", ids.len(), self.seq_len));
        }
        if let Some(id) = ids.iter().find(|&&id| u64::from(id) >= self.vocab) {
            return bad(format!(
                "id {id} is not below the vocabulary size {}",
                self.vocab
            ));
        }
        Ok(())
    }
}

/// The running loader: a pool of workers building batches from a [`BatchPlan`].
pub struct Loader {
    pool: OrderedPool<Batch>,
}

impl Loader {
    /// Start workers that build the batches of `set` from `cursor` on.
    pub fn start(set: ShardSet, options: &LoaderOptions, cursor: LoaderCursor) -> Result<Self> {
        let plan = BatchPlan::new(set, options, cursor)?;
        let pool = OrderedPool::start(options.workers, options.queue_depth, move |k, spare| {
            plan.build(k, spare)
        });
        Ok(Loader { pool })
    }

    /// The next batch (the stream never ends; epochs follow each other).
    pub fn next_batch(&mut self) -> Result<Batch> {
        self.pool.next_item()
    }

    /// Hand a batch back so its buffers are reused.
    pub fn recycle(&self, batch: Batch) {
        self.pool.recycle(batch);
    }

    /// Queue measurements so far.
    pub fn metrics(&self) -> QueueMetrics {
        self.pool.metrics()
    }
}

#[cfg(test)]
mod tests;
