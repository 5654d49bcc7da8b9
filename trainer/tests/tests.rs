//! End-to-end tests of the trainer's public API. Fixtures live in `tests/data/`.

mod configs;
mod data_parallel;
mod electra;
mod precision;
mod training;

use cocolm_shared::RunConfig;
use cocolm_trainer::synthetic::{Content, Synthetic};
use std::sync::{Mutex, MutexGuard};

/// The ndarray backend has one process-wide RNG that the trainer reseeds every step;
/// tests that train hold this lock so that parallel tests do not draw from it meanwhile.
pub fn rng_lock() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// `configs/tiny.toml` shrunk further: vocabulary 32, hidden 32, FFN 64, 32 positions,
/// batches of 8.
pub fn tiny() -> RunConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/tiny.toml");
    let mut c = RunConfig::from_toml_file(&path).unwrap();
    c.model.vocab_size = 32;
    c.model.hidden_size = 32;
    c.model.ffn_size = 64;
    c.model.max_positions = 32;
    c.train.batch_size = 8;
    c
}

/// A learnable synthetic corpus for `config`'s model: rows of 16 tokens repeating short
/// motifs, masked with `data.mask_prob`, with an SCL crop when the model has SCL.
pub fn motifs(config: &RunConfig, seed: u64, ragged: bool) -> Synthetic {
    Synthetic {
        batch_size: config.train.batch_size,
        seq_len: 16,
        vocab_size: config.model.vocab_size,
        mask_prob: config.data.mask_prob,
        seed,
        content: Content::Motifs,
        ragged,
        crop_fraction: config.model.scl.then_some(0.9),
    }
}

/// Raises the stop flag when the loop reports step `at`.
pub struct StopAt {
    /// The flag to raise.
    pub stop: cocolm_shared::Stop,
    /// The step after which to raise it.
    pub at: u64,
}

impl cocolm_trainer::train::RunHooks for StopAt {
    fn on_event(&mut self, event: cocolm_trainer::train::Event<'_>) {
        if let cocolm_trainer::train::Event::Step(m) = event
            && m.step == self.at
        {
            self.stop.request(15);
        }
    }
}
