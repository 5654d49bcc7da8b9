//! Corruption: what the loader does to each example before the trainer sees it.
//!
//! - [`mask`]: COCO-LM masking — a fraction of the non-special positions become
//!   `[MASK]` (no 80/10/10 split; `[CLS]`, `[SEP]` and `[PAD]` never);
//! - [`crop`]: the optional uncorrupted contiguous crop used as the SCL view.
//!
//! Both draw from a generator seeded by (seed, epoch, example index, stage), so the
//! corruption of example i in epoch e is a pure function of those, whatever the worker
//! count, batch size or resume point.

pub mod crop;
pub mod mask;

use cocolm_shared::hash::{SplitMix64, seed_of};

/// Stage tags that keep the generators of different stages independent.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub enum Stage {
    /// Choosing masked positions.
    Mask = 0x4D41_534B,
    /// Choosing the crop.
    Crop = 0x4352_4F50,
}

/// The generator for `stage` of example `index` in `epoch` under `seed`.
pub fn rng_for(seed: u64, epoch: u64, index: u64, stage: Stage) -> SplitMix64 {
    SplitMix64::new(seed_of(&[seed, epoch, index, stage as u64]))
}
