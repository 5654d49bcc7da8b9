//! A request to stop a job cleanly, made from a signal handler or another thread.
//!
//! Long jobs (`prepare`, the training loop) look at their [`Stop`] between units of
//! work they can leave consistently (a chunk of documents, an optimiser step) and end
//! early, leaving what a rerun resumes from. The binary requests it from its
//! SIGINT/SIGTERM/SIGUSR1 handler; storing into the flag is async-signal-safe.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

/// A shared flag: clones see the same request.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicI32>);

impl Stop {
    /// A flag nobody has raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the job to stop; `cause` is the signal number (any non-zero value). The
    /// first request is kept.
    pub fn request(&self, cause: i32) {
        let cause = if cause == 0 { -1 } else { cause };
        let _ = self
            .0
            .compare_exchange(0, cause, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The cause of the first request, if one was made.
    pub fn requested(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            cause => Some(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_first_request() {
        let stop = Stop::new();
        let seen = stop.clone();
        assert_eq!(seen.requested(), None);
        stop.request(15);
        stop.request(2);
        assert_eq!(seen.requested(), Some(15));
        let zero = Stop::new();
        zero.request(0);
        assert!(zero.requested().is_some(), "a zero cause still stops");
    }
}
