//! Helpers shared by the unit tests.

use std::sync::{Mutex, MutexGuard};

static RNG: Mutex<()> = Mutex::new(());

/// The ndarray backend has one process-wide RNG; tests that seed it and expect a
/// reproducible stream hold this lock so parallel tests do not draw from it meanwhile.
pub fn rng_lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}
