//! The SCL view: an uncorrupted contiguous crop of each sequence.

use cocolm_shared::hash::SplitMix64;

/// Crops `fraction` of a sequence's tokens, keeping `[CLS]` in front.
#[derive(Debug, Clone, Copy)]
pub struct Cropper {
    fraction: f64,
    cls: u32,
}

impl Cropper {
    /// A cropper keeping `fraction` (in `(0, 1]`) of each sequence.
    pub fn new(fraction: f64, cls: u32) -> Self {
        assert!(
            fraction > 0.0 && fraction <= 1.0,
            "crop fraction {fraction} not in (0, 1]"
        );
        Cropper { fraction, cls }
    }

    /// Length of the crop of a sequence of `len` tokens (`[CLS]` included).
    pub fn crop_len(&self, len: usize) -> usize {
        ((len as f64 * self.fraction).ceil() as usize).clamp(len.min(2), len)
    }

    /// Write `[CLS]` and a contiguous window of `ids[1..]` into `out` (cleared first): the
    /// window of `crop_len(ids.len()) − 1` tokens starts at a uniform position.
    pub fn apply(&self, ids: &[u32], rng: &mut SplitMix64, out: &mut Vec<u32>) {
        out.clear();
        out.push(self.cls);
        let body = &ids[1.min(ids.len())..];
        let take = self.crop_len(ids.len()).saturating_sub(1).min(body.len());
        let start = rng.below((body.len() - take + 1) as u64) as usize;
        out.extend_from_slice(&body[start..start + take]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_is_contiguous_and_ninety_percent() {
        let ids: Vec<u32> = std::iter::once(1).chain(10..109).collect();
        let c = Cropper::new(0.9, 1);
        let mut out = Vec::new();
        for seed in 0..50 {
            c.apply(&ids, &mut SplitMix64::new(seed), &mut out);
            assert_eq!(out.len(), 90);
            assert_eq!(out[0], 1);
            assert!(out[1..].windows(2).all(|w| w[1] == w[0] + 1));
        }
    }
}
