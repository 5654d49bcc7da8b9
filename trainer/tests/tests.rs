//! End-to-end tests of the trainer's public API. Fixtures live in `tests/data/`.

mod configs;
mod data_parallel;
mod electra;
mod precision;
mod training;

use std::sync::{Mutex, MutexGuard};

/// The ndarray backend has one process-wide RNG that the trainer reseeds every step;
/// tests that train hold this lock so that parallel tests do not draw from it meanwhile.
pub fn rng_lock() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}
