//! Example order: a permutation of a shard set that is a pure function of
//! (seed, epoch); a source of a blend uses its own seed ([`super::source_seed`]).
//!
//! The permutation is a keyed 4-round Feistel network on the smallest even power of
//! two ≥ n, restricted to `[0, n)` by cycle walking. It needs no memory (a billion
//! examples cost nothing to shuffle), maps any position in O(1) expected time (fewer
//! than 4 network evaluations on average), which is what makes resuming at an exact
//! position free, and its output is defined by this file alone.

use cocolm_shared::hash::{mix64, seed_of};

/// A bijection of `[0, n)` keyed by (seed, epoch).
#[derive(Debug, Clone)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    keys: [u64; 4],
}

impl Permutation {
    /// The permutation of `n` items for `epoch` under `seed`.
    pub fn new(n: u64, seed: u64, epoch: u64) -> Self {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let half_bits = bits.div_ceil(2);
        let keys = std::array::from_fn(|round| seed_of(&[seed, epoch, round as u64, 0x5EED]));
        Permutation { n, half_bits, keys }
    }

    /// Number of items.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether it permutes nothing.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The item at position `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn apply(&self, i: u64) -> u64 {
        assert!(i < self.n, "position {i} of {}", self.n);
        let mut x = i;
        loop {
            x = self.network(x);
            if x < self.n {
                return x;
            }
        }
    }

    fn network(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for key in self.keys {
            let f = mix64(right ^ key) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << self.half_bits) | right
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn is_a_permutation(n in 1u64..3000, seed in any::<u64>(), epoch in 0u64..4) {
            let p = Permutation::new(n, seed, epoch);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let j = p.apply(i) as usize;
                prop_assert!(!seen[j], "{} twice", j);
                seen[j] = true;
            }
        }
    }

    #[test]
    fn depends_on_seed_and_epoch_only() {
        let order = |seed, epoch| -> Vec<u64> {
            let p = Permutation::new(1000, seed, epoch);
            (0..1000).map(|i| p.apply(i)).collect()
        };
        assert_eq!(order(7, 2), order(7, 2));
        assert_ne!(order(7, 2), order(7, 3));
        assert_ne!(order(7, 2), order(8, 2));
        // Shuffled, not the identity or a rotation.
        let o = order(7, 2);
        let fixed = o
            .iter()
            .enumerate()
            .filter(|(i, v)| *i as u64 == **v)
            .count();
        assert!(fixed < 20, "{fixed} fixed points");
    }
}
