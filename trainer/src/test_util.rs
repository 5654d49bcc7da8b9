//! Helpers shared by the unit tests.

use std::sync::{Mutex, MutexGuard};

static RNG: Mutex<()> = Mutex::new(());

/// The ndarray backend has one process-wide RNG; tests that seed it and expect a
/// reproducible stream hold this lock so parallel tests do not draw from it meanwhile.
pub fn rng_lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tiny model and loop: 2 layers (generator 1), hidden 16, 2 heads, vocab 40.
pub fn tiny_config() -> cocolm_shared::RunConfig {
    let mut c = cocolm_shared::RunConfig::default();
    c.model.vocab_size = 40;
    c.model.hidden_size = 16;
    c.model.num_layers = 2;
    c.model.num_heads = 2;
    c.model.ffn_size = 32;
    c.model.generator_layers = 1;
    c.model.max_positions = 16;
    c.model.rel_pos_max_distance = 16;
    c.model.rel_pos_buckets = 8;
    c.train.batch_size = 3;
    c.train.steps = 10;
    c.train.warmup_steps = 2;
    c
}

/// Batch `index` of a small ragged motif corpus for [`tiny_config`]-shaped models
/// (3 rows of 12, 30 % masked, an SCL crop when `model.scl` is on).
pub fn synthetic_batch(config: &cocolm_shared::RunConfig, index: u64) -> cocolm_shared::Batch {
    crate::synthetic::Synthetic {
        batch_size: 3,
        seq_len: 12,
        vocab_size: config.model.vocab_size,
        mask_prob: 0.3,
        seed: 5,
        content: crate::synthetic::Content::Motifs,
        ragged: true,
        crop_fraction: config.model.scl.then_some(0.9),
    }
    .batch(index)
}
