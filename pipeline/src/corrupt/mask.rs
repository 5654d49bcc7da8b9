//! COCO-LM masking.

use cocolm_shared::SpecialTokens;
use cocolm_shared::hash::SplitMix64;

/// Replaces a fraction of the non-special positions of a row by `[MASK]`.
///
/// The number masked is `⌊p · c + u⌋` for `c` candidate positions and `u` uniform in
/// `[0, 1)` — exactly `p · c` in expectation, as in COCO-LM's released code — and the
/// positions are drawn without replacement.
#[derive(Debug, Clone)]
pub struct Masker {
    prob: f64,
    special: SpecialTokens,
}

impl Masker {
    /// A masker of probability `prob` with these special tokens.
    pub fn new(prob: f64, special: SpecialTokens) -> Self {
        assert!(
            prob > 0.0 && prob < 1.0,
            "mask probability {prob} not in (0, 1)"
        );
        Masker { prob, special }
    }

    /// Mask `ids` into `masked` (same length) and append the masked row positions,
    /// ascending, to `positions`. `scratch` is reused between calls.
    pub fn apply(
        &self,
        ids: &[u32],
        rng: &mut SplitMix64,
        masked: &mut [u32],
        positions: &mut Vec<u32>,
        scratch: &mut Vec<u32>,
    ) {
        masked.copy_from_slice(ids);
        scratch.clear();
        scratch.extend(
            ids.iter()
                .enumerate()
                .filter(|(_, id)| !self.special.contains(**id))
                .map(|(i, _)| i as u32),
        );
        let n = (self.prob * scratch.len() as f64 + rng.next_f64()) as usize;
        let n = n.min(scratch.len());
        // Partial Fisher–Yates: the first n entries become a uniform sample.
        for k in 0..n {
            let j = k + rng.below((scratch.len() - k) as u64) as usize;
            scratch.swap(k, j);
        }
        let chosen = &mut scratch[..n];
        chosen.sort_unstable();
        for &p in chosen.iter() {
            masked[p as usize] = self.special.mask;
        }
        positions.extend_from_slice(chosen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corrupt::{Stage, rng_for};
    use proptest::prelude::*;

    const SPECIAL: SpecialTokens = SpecialTokens {
        pad: 0,
        cls: 1,
        sep: 2,
        mask: 3,
        unk: 4,
    };

    fn row(len: usize, seed: u64) -> Vec<u32> {
        let mut rng = SplitMix64::new(seed);
        let mut ids: Vec<u32> = (0..len).map(|_| 5 + rng.below(100) as u32).collect();
        ids[0] = SPECIAL.cls;
        *ids.last_mut().unwrap() = SPECIAL.sep;
        if len > 10 {
            ids[len / 2] = SPECIAL.sep;
        }
        ids
    }

    proptest! {
        #[test]
        fn never_masks_special_tokens_and_positions_are_sorted(len in 3usize..200, seed in any::<u64>()) {
            let ids = row(len, seed);
            let mut masked = vec![0; len];
            let (mut pos, mut scratch) = (Vec::new(), Vec::new());
            Masker::new(0.15, SPECIAL).apply(&ids, &mut SplitMix64::new(seed), &mut masked, &mut pos, &mut scratch);
            prop_assert!(pos.windows(2).all(|w| w[0] < w[1]));
            for (i, (&a, &b)) in ids.iter().zip(&masked).enumerate() {
                if pos.contains(&(i as u32)) {
                    prop_assert!(!SPECIAL.contains(a));
                    prop_assert_eq!(b, SPECIAL.mask);
                } else {
                    prop_assert_eq!(a, b);
                }
            }
        }
    }

    #[test]
    fn rate_is_fifteen_percent() {
        let masker = Masker::new(0.15, SPECIAL);
        let (mut candidates, mut chosen) = (0usize, 0usize);
        let mut masked = vec![0; 128];
        let (mut pos, mut scratch) = (Vec::new(), Vec::new());
        for i in 0..2000 {
            let ids = row(128, i);
            candidates += ids.iter().filter(|&&id| !SPECIAL.contains(id)).count();
            pos.clear();
            masker.apply(
                &ids,
                &mut rng_for(1, 0, i, Stage::Mask),
                &mut masked,
                &mut pos,
                &mut scratch,
            );
            chosen += pos.len();
        }
        let rate = chosen as f64 / candidates as f64;
        assert!((rate - 0.15).abs() < 0.002, "rate {rate}");
    }

    #[test]
    fn pure_function_of_seed_epoch_index() {
        let ids = row(100, 9);
        let masks = |seed, epoch, index| {
            let mut masked = vec![0; 100];
            let (mut pos, mut scratch) = (Vec::new(), Vec::new());
            Masker::new(0.15, SPECIAL).apply(
                &ids,
                &mut rng_for(seed, epoch, index, Stage::Mask),
                &mut masked,
                &mut pos,
                &mut scratch,
            );
            pos
        };
        assert_eq!(masks(1, 2, 3), masks(1, 2, 3));
        assert_ne!(masks(1, 2, 3), masks(1, 2, 4));
        assert_ne!(masks(1, 2, 3), masks(1, 3, 3));
        assert_ne!(masks(1, 2, 3), masks(2, 2, 3));
    }
}
