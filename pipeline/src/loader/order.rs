//! Example order: a permutation of the shard set that is a pure function of
//! (seed, epoch), and each data-parallel rank's share of it.
//!
//! The permutation is a keyed 4-round Feistel network on the smallest even power of
//! two ≥ n, restricted to `[0, n)` by cycle walking. It needs no memory (a billion
//! examples cost nothing to shuffle), maps any position in O(1) expected time (fewer
//! than 4 network evaluations on average), which is what makes resuming at an exact
//! position free, and its output is defined by this file alone.
//!
//! **Ranks.** With world size W, position p of rank r's share of an epoch is element
//! `p·W + r` of that epoch's permutation. Every rank gets `⌊n / W⌋` examples per epoch;
//! the `n mod W` examples at the end of each epoch's permutation are skipped that epoch
//! (different ones every epoch, since the permutation changes).

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

/// Rank `rank`'s share of every epoch of `n` examples among `world` ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankShare {
    /// Examples in the set.
    pub n: u64,
    /// This rank.
    pub rank: u64,
    /// Number of ranks.
    pub world: u64,
}

impl RankShare {
    /// Examples this rank reads per epoch: `⌊n / world⌋`.
    pub fn len(&self) -> u64 {
        self.n / self.world
    }

    /// Whether the rank reads nothing (fewer examples than ranks).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The example at `position` of this rank's share of the epoch of `perm`.
    pub fn example(&self, perm: &Permutation, position: u64) -> u64 {
        perm.apply(position * self.world + self.rank)
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

        #[test]
        fn rank_shares_are_disjoint_equal_and_cover_all_but_the_remainder(
            n in 1u64..2000, world in 1u64..9, seed in any::<u64>(),
        ) {
            let p = Permutation::new(n, seed, 1);
            let mut seen = vec![0u8; n as usize];
            for rank in 0..world {
                let share = RankShare { n, rank, world };
                prop_assert_eq!(share.len(), n / world);
                for pos in 0..share.len() {
                    seen[share.example(&p, pos) as usize] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&c| c <= 1));
            prop_assert_eq!(seen.iter().filter(|&&c| c == 1).count() as u64, n / world * world);
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
