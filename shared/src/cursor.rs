//! The loader's exact position, stored in checkpoints.

use serde::{Deserialize, Serialize};

/// Where a loader stands: the next batch it yields is the one at `position` of the
/// permutation of `epoch` under `seed`. Resuming from a cursor yields exactly the
/// batches an uninterrupted run would have produced next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderCursor {
    /// Shuffle seed of the run.
    pub seed: u64,
    /// Epoch, from 0.
    pub epoch: u64,
    /// Index, within this rank's share of the epoch, of the next example to read.
    pub position: u64,
}

impl LoaderCursor {
    /// The start of epoch 0 under `seed`.
    pub fn start(seed: u64) -> Self {
        Self {
            seed,
            epoch: 0,
            position: 0,
        }
    }
}
