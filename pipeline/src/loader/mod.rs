//! The streaming loader: memory-mapped shards → corrupted [`Batch`]es, in a
//! deterministic order, exactly resumable, on any number of ranks.
//!
//! **The global stream.** One or more sources (shard sets) are blended by weight
//! ([`blend`]); each source is read in its own order, the permutation of (seed, source,
//! epoch) ([`order`]), epoch after epoch (a small source repeats). The stream does not
//! depend on the number of ranks.
//!
//! **Ranks.** With `W` ranks of `b` rows, global batch `t` is the `B = b·W` examples
//! after position `c + t·B` of the stream (from cursor `c`); rank `r` takes its slice
//! `r·b .. (r + 1)·b`. Resuming with another `W` and the same `B` consumes exactly the
//! examples an uninterrupted run would have. Every batch carries the cursor just after
//! its global batch (the same on every rank); a loader started from it yields exactly
//! the batches that would have come next. Batches are built by
//! [`crate::queue::OrderedPool`] workers, so the content does not depend on the worker
//! count.

pub mod blend;
pub mod order;

use crate::corrupt::crop::Cropper;
use crate::corrupt::mask::Masker;
use crate::corrupt::{Stage, rng_for};
use crate::queue::{OrderedPool, QueueMetrics};
use crate::shard::reader::ShardSet;
use crate::{Error, Result};
use blend::{Blend, Schedule};
use cocolm_shared::hash::seed_of;
use cocolm_shared::{Batch, LoaderCursor};
use order::Permutation;

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

impl LoaderOptions {
    /// The loader of a run: batch shape, workers (`data.workers`, 0 picking from the
    /// cores), queue depth, masking and the SCL crop from `config`, as `rank` of `world`.
    pub fn for_run(config: &cocolm_shared::RunConfig, rank: u64, world: u64) -> Self {
        LoaderOptions {
            batch_size: config.train.batch_size,
            workers: if config.data.workers == 0 {
                default_workers()
            } else {
                config.data.workers
            },
            queue_depth: config.data.queue_depth,
            mask_prob: config.data.mask_prob,
            crop_fraction: config.model.scl.then_some(config.data.crop_fraction),
            rank,
            world,
        }
    }
}

/// Worker threads when the configuration says 0: one core is left to the trainer.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).clamp(1, 8))
}

/// The seed of source `source`'s order: the run's seed for the first source (so a
/// one-source run reads as before blends existed), a derived one for the others.
pub fn source_seed(seed: u64, source: usize) -> u64 {
    if source == 0 {
        seed
    } else {
        seed_of(&[seed, source as u64, 0xB1E0D])
    }
}

/// Builds batch k of a run; shared by all workers. Pure: the same k gives the same batch.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    sources: Vec<ShardSet>,
    /// Each source's order seed ([`source_seed`]), derived once.
    keys: Vec<u64>,
    blend: Blend,
    schedule: Schedule,
    seed: u64,
    start: u64,
    batch_size: usize,
    rank: u64,
    world: u64,
    seq_len: usize,
    vocab: u64,
    pad: u32,
    masker: Masker,
    cropper: Option<Cropper>,
}

impl BatchPlan {
    /// The plan of a run over one shard set from `cursor`.
    pub fn new(set: ShardSet, options: &LoaderOptions, cursor: LoaderCursor) -> Result<Self> {
        Self::blended(vec![set], Blend::new(vec!["1".into()])?, options, cursor)
    }

    /// The plan of a run over `sources` blended by `blend`, from `cursor`. The sources
    /// must share the tokenizer and the sequence length.
    pub fn blended(
        sources: Vec<ShardSet>,
        blend: Blend,
        options: &LoaderOptions,
        cursor: LoaderCursor,
    ) -> Result<Self> {
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
        let schedule = blend.schedule()?;
        if schedule.sources() != sources.len() {
            return Err(Error::LoaderConfig {
                field: "blend",
                message: format!(
                    "{} weights for {} sources",
                    schedule.sources(),
                    sources.len()
                ),
            });
        }
        let first = sources[0].manifest();
        for set in &sources {
            let m = set.manifest();
            let odd = if m.tokenizer.sha256 != first.tokenizer.sha256 {
                Some(format!(
                    "tokenizer {} (SHA-256 {})",
                    m.tokenizer.file, m.tokenizer.sha256
                ))
            } else if m.seq_len != first.seq_len {
                Some(format!("seq_len {}", m.seq_len))
            } else if set.is_empty() {
                Some("no examples".into())
            } else {
                None
            };
            if let Some(odd) = odd {
                return Err(Error::LoaderConfig {
                    field: "sources",
                    message: format!(
                        "{} has {odd}, unlike {} (every source must share the tokenizer and seq_len of the first)",
                        set.dir().display(),
                        sources[0].dir().display()
                    ),
                });
            }
        }
        if cursor.consumed < blend.since {
            return Err(Error::LoaderConfig {
                field: "cursor.consumed",
                message: format!(
                    "cursor at example {} is before the blend's start {}",
                    cursor.consumed, blend.since
                ),
            });
        }
        let special = first.tokenizer.special_tokens;
        Ok(BatchPlan {
            keys: (0..sources.len())
                .map(|s| source_seed(cursor.seed, s))
                .collect(),
            seed: cursor.seed,
            start: cursor.consumed,
            batch_size: options.batch_size,
            rank: options.rank,
            world: options.world,
            seq_len: first.seq_len,
            vocab: first.tokenizer.vocab_size as u64,
            pad: special.pad,
            masker: Masker::new(options.mask_prob, special),
            cropper: options.crop_fraction.map(|f| Cropper::new(f, special.cls)),
            schedule,
            blend,
            sources,
        })
    }

    /// Global example `k` of the stream: its source, and that source's count of examples
    /// read before it (over all its epochs).
    fn locate(&self, k: u64) -> (usize, u64) {
        let (source, local) = self.schedule.locate(k - self.blend.since);
        (source, self.blend.offsets[source] + local)
    }

    /// Examples each source has contributed after `consumed` examples of the stream.
    pub fn source_counts(&self, consumed: u64) -> Vec<u64> {
        self.blend.counts(&self.schedule, consumed)
    }

    /// Build batch `k`, refilling `spare` if given.
    pub fn build(&self, k: u64, spare: Option<Batch>) -> Result<Batch> {
        let (b, s) = (self.batch_size, self.seq_len);
        let global_batch = b as u64 * self.world;
        let mut batch = spare.unwrap_or_default();
        let first = self.start + k * global_batch + self.rank * b as u64;
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
        batch.example_sources.clear();
        let mut crop = self.cropper.map(|_| {
            let mut c = batch.crop.take().unwrap_or_default();
            c.ids.clear();
            c.lengths.clear();
            c
        });
        // The permutation last used by each source, with its epoch.
        let mut perms: Vec<Option<(u64, Permutation)>> = vec![None; self.sources.len()];
        let (mut row_positions, mut scratch, mut cropped) = (Vec::new(), Vec::new(), Vec::new());
        for row in 0..b {
            let (source, count) = self.locate(first + row as u64);
            let set = &self.sources[source];
            let n = set.len();
            let (epoch, position) = (count / n, count % n);
            let key = self.keys[source];
            let perm = match perms[source].take() {
                Some((e, p)) if e == epoch => p,
                _ => Permutation::new(n, key, epoch),
            };
            let index = perm.apply(position);
            perms[source] = Some((epoch, perm));
            let ids = set.example(index);
            self.check(set, index, ids)?;
            let span = row * s..row * s + ids.len();
            batch.original_ids[span.clone()].copy_from_slice(ids);
            row_positions.clear();
            let mut rng = rng_for(key, epoch, index, Stage::Mask);
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
            batch.example_sources.push(source as u32);
            if let (Some(cropper), Some(view)) = (&self.cropper, crop.as_mut()) {
                let mut rng = rng_for(key, epoch, index, Stage::Crop);
                cropper.apply(ids, &mut rng, &mut cropped);
                view.seq_len = cropper.crop_len(s);
                let start = view.ids.len();
                view.ids.extend_from_slice(&cropped);
                view.ids.resize(start + view.seq_len, self.pad);
                view.lengths.push(cropped.len() as u32);
            }
        }
        batch.crop = crop;
        batch.cursor_after = LoaderCursor {
            seed: self.seed,
            consumed: self.start + (k + 1) * global_batch,
        };
        Ok(batch)
    }

    fn check(&self, set: &ShardSet, index: u64, ids: &[u32]) -> Result<()> {
        let bad = |message: String| {
            let (file, row) = set.shard_of(index);
            Err(Error::Shard {
                path: set.dir().join(file),
                offset: set.batch_offset(index),
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
        Self::from_plan(BatchPlan::new(set, options, cursor)?, options)
    }

    /// Start workers that build the batches of a plan.
    pub fn from_plan(plan: BatchPlan, options: &LoaderOptions) -> Result<Self> {
        let pool = OrderedPool::start(options.workers, options.queue_depth, move |k, spare| {
            plan.build(k, spare)
        });
        Ok(Loader { pool })
    }

    /// The next batch (the stream never ends; epochs follow each other).
    pub fn next_batch(&mut self) -> Result<Batch> {
        self.pool.next_item()
    }

    /// Batches built and waiting in the queue now.
    pub fn ready(&self) -> usize {
        self.pool.ready()
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
