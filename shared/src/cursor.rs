//! The loader's exact position, stored in checkpoints.

use serde::{Deserialize, Serialize};

/// Where a loader stands in the global stream: the next batch starts at example
/// `consumed` of the stream of `seed`. The stream (and so the cursor) is the same for
/// every data-parallel rank and every number of ranks; resuming from a cursor yields
/// exactly the batches an uninterrupted run would have produced next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderCursor {
    /// Shuffle seed of the run.
    pub seed: u64,
    /// Examples of the global stream consumed by all ranks together.
    pub consumed: u64,
}

impl LoaderCursor {
    /// The start of the stream of `seed`.
    pub fn start(seed: u64) -> Self {
        Self { seed, consumed: 0 }
    }
}
