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
