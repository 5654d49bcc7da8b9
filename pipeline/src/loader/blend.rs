//! Blending sources by weight: which source each example of the global stream comes
//! from, as a pure function of its position.
//!
//! **Semantics.** Weights are fractions of training *examples*. After the first `k`
//! examples of the stream, source `s` has contributed `c_s(k)` examples with
//! `|c_s(k) − k·w_s| < d/2`, where `d = ⌈log₂ S⌉` is the depth of the schedule below
//! (`w_s` normalised to sum 1): for up to 8 sources, `c_s(k)` is within ±1 of
//! `round(k·w_s)` at every prefix of the stream. It is a schedule, not a random draw:
//! the same weights give the same sequence of sources.
//!
//! **The schedule.** The sources are split into two halves recursively (a balanced
//! binary tree); at a node whose left half holds the fraction `p` of the weight, the
//! left half receives `L(k) = ⌊k·p + ½⌋` of the node's first `k` examples, so example
//! `k` goes left exactly when `L(k + 1) > L(k)`. Each step is exact integer arithmetic
//! (`p` is a ratio of integers: weights are read as exact decimals), so any position is
//! located in `O(d)` without walking the stream — what lets loader workers build any
//! batch independently and a run resume anywhere.
//!
//! **Changing weights.** A [`Blend`] is one segment of the stream: weights that took
//! effect at global position `since`, when each source had contributed `offsets[s]`.
//! Resuming with other weights starts a new segment there ([`Blend::reweighted`]): every
//! source continues from its own count, so no example repeats before its source's
//! epoch ends.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Exact decimal weights scaled to integers with a common denominator.
fn scaled(weights: &[String]) -> Result<Vec<u128>> {
    let bad = |w: &str, why: &str| Error::LoaderConfig {
        field: "weight",
        message: format!("{w:?}: {why}"),
    };
    let mut parsed = Vec::with_capacity(weights.len());
    let mut decimals = 0usize;
    for w in weights {
        let (int, frac) = w.split_once('.').unwrap_or((w.as_str(), ""));
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() && frac.is_empty() || !digits_ok(int) || !digits_ok(frac) {
            return Err(bad(w, "not a decimal number ≥ 0 (like 0.6 or 3)"));
        }
        let frac = frac.trim_end_matches('0');
        decimals = decimals.max(frac.len());
        parsed.push((int.to_string(), frac.to_string()));
    }
    if decimals > 12 {
        return Err(bad(&weights.join(", "), "more than 12 decimal places"));
    }
    let scaled: Vec<u128> = parsed
        .iter()
        .zip(weights)
        .map(|((int, frac), w)| {
            let digits = format!("{int}{frac:0<decimals$}");
            digits
                .trim_start_matches('0')
                .parse::<u128>()
                .or_else(|_| {
                    if digits.bytes().all(|b| b == b'0') {
                        Ok(0)
                    } else {
                        Err(())
                    }
                })
                .ok()
                .filter(|v| *v < 1 << 60)
                .ok_or_else(|| bad(w, "too large"))
        })
        .collect::<Result<_>>()?;
    if scaled.iter().sum::<u128>() == 0 {
        return Err(bad(&weights.join(", "), "no source has a positive weight"));
    }
    if scaled.iter().sum::<u128>() >= 1 << 62 {
        return Err(bad(&weights.join(", "), "too large together"));
    }
    Ok(scaled)
}

/// A weight as an exact decimal string: the shortest representation of `w` that reads
/// back as the same `f64` (`0.6`, not `0.59999999999999997…`).
pub fn weight_string(w: f64) -> String {
    let text = format!("{w}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

/// The balanced binary tree of the schedule.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf(usize),
    Split {
        /// Weight of the left half.
        left: u128,
        /// Weight of both halves.
        total: u128,
        halves: Box<(Node, Node)>,
    },
}

impl Node {
    fn build(weights: &[u128], first: usize) -> Node {
        if weights.len() == 1 {
            return Node::Leaf(first);
        }
        let mid = weights.len().div_ceil(2);
        Node::Split {
            left: weights[..mid].iter().sum(),
            total: weights.iter().sum(),
            halves: Box::new((
                Node::build(&weights[..mid], first),
                Node::build(&weights[mid..], first + mid),
            )),
        }
    }

    fn depth(&self) -> u32 {
        match self {
            Node::Leaf(_) => 0,
            Node::Split { halves, .. } => 1 + halves.0.depth().max(halves.1.depth()),
        }
    }
}

/// `⌊k·left/total + ½⌋`: how many of a node's first `k` examples go left.
fn left_of(k: u64, left: u128, total: u128) -> u64 {
    ((2 * u128::from(k) * left + total) / (2 * total)) as u64
}

/// Which source each example of a stream comes from, for fixed weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    root: Node,
    sources: usize,
}

impl Schedule {
    /// The schedule of these weights (exact decimals, ≥ 0, at least one positive).
    pub fn new(weights: &[String]) -> Result<Self> {
        if weights.is_empty() {
            return Err(Error::LoaderConfig {
                field: "weight",
                message: "no sources".into(),
            });
        }
        let scaled = scaled(weights)?;
        Ok(Schedule {
            root: Node::build(&scaled, 0),
            sources: weights.len(),
        })
    }

    /// Number of sources.
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// Depth of the tree: the deviation bound is `depth / 2` examples.
    pub fn depth(&self) -> u32 {
        self.root.depth()
    }

    /// Example `k` (from 0) of the stream: its source, and how many examples of that
    /// source came before it.
    pub fn locate(&self, mut k: u64) -> (usize, u64) {
        let mut node = &self.root;
        loop {
            match node {
                Node::Leaf(source) => return (*source, k),
                Node::Split {
                    left,
                    total,
                    halves,
                } => {
                    let before = left_of(k, *left, *total);
                    if left_of(k + 1, *left, *total) > before {
                        k = before;
                        node = &halves.0;
                    } else {
                        k -= before;
                        node = &halves.1;
                    }
                }
            }
        }
    }

    /// How many of the first `k` examples each source contributed.
    pub fn counts(&self, k: u64) -> Vec<u64> {
        let mut counts = vec![0; self.sources];
        fn walk(node: &Node, k: u64, counts: &mut [u64]) {
            match node {
                Node::Leaf(source) => counts[*source] = k,
                Node::Split {
                    left,
                    total,
                    halves,
                } => {
                    let l = left_of(k, *left, *total);
                    walk(&halves.0, l, counts);
                    walk(&halves.1, k - l, counts);
                }
            }
        }
        walk(&self.root, k, &mut counts);
        counts
    }
}

/// One segment of a blended stream: the weights in force from global position `since`,
/// and what each source had contributed by then. Stored in checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blend {
    /// Each source's weight, an exact decimal (`"0.6"`).
    pub weights: Vec<String>,
    /// Global position (examples of the stream) where these weights took effect.
    pub since: u64,
    /// Examples each source had contributed at `since`.
    pub offsets: Vec<u64>,
}

impl Blend {
    /// Weights in force from the start of the stream.
    pub fn new(weights: Vec<String>) -> Result<Self> {
        Schedule::new(&weights)?;
        let offsets = vec![0; weights.len()];
        Ok(Blend {
            weights,
            since: 0,
            offsets,
        })
    }

    /// The schedule of this segment.
    pub fn schedule(&self) -> Result<Schedule> {
        if self.offsets.len() != self.weights.len() {
            return Err(Error::LoaderConfig {
                field: "blend",
                message: format!(
                    "{} weights but {} source offsets",
                    self.weights.len(),
                    self.offsets.len()
                ),
            });
        }
        Schedule::new(&self.weights)
    }

    /// Examples each source has contributed after `k ≥ since` examples of the stream.
    pub fn counts(&self, schedule: &Schedule, k: u64) -> Vec<u64> {
        let local = schedule.counts(k.saturating_sub(self.since));
        local
            .iter()
            .zip(&self.offsets)
            .map(|(l, o)| l + o)
            .collect()
    }

    /// The segment that continues this one at position `k` with `weights` (the same
    /// sources): `self` when the weights are the same.
    pub fn reweighted(&self, k: u64, weights: Vec<String>) -> Result<Blend> {
        let schedule = self.schedule()?;
        if weights.len() != self.weights.len() {
            return Err(Error::LoaderConfig {
                field: "blend",
                message: format!(
                    "{} sources where the run had {}",
                    weights.len(),
                    self.weights.len()
                ),
            });
        }
        if same_weights(&weights, &self.weights)? {
            return Ok(self.clone());
        }
        Schedule::new(&weights)?;
        Ok(Blend {
            offsets: self.counts(&schedule, k),
            weights,
            since: k,
        })
    }
}

/// Whether two weight lists are the same fractions (`0.5, 0.5` = `1, 1`).
fn same_weights(a: &[String], b: &[String]) -> Result<bool> {
    let (a, b) = (scaled(a)?, scaled(b)?);
    let (ta, tb): (u128, u128) = (a.iter().sum(), b.iter().sum());
    Ok(a.iter().zip(&b).all(|(x, y)| x * tb == y * ta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strings(weights: &[f64]) -> Vec<String> {
        weights.iter().map(|&w| weight_string(w)).collect()
    }

    proptest! {
        /// At every prefix, each source's count is within ±1 of round(k·w).
        #[test]
        fn prefix_proportions_hold_within_one_example(
            raw in proptest::collection::vec(1u32..1000, 1..9),
            len in 1u64..3000,
        ) {
            let weights: Vec<String> = raw.iter().map(|w| format!("{}.{:02}", w / 100, w % 100)).collect();
            let schedule = Schedule::new(&weights).unwrap();
            let total: f64 = raw.iter().map(|&w| f64::from(w)).sum();
            let mut counts = vec![0u64; raw.len()];
            for k in 0..len {
                let (source, before) = schedule.locate(k);
                prop_assert_eq!(before, counts[source], "example {} is the next of its source", k);
                counts[source] += 1;
                prop_assert_eq!(&schedule.counts(k + 1), &counts);
                for (s, &c) in counts.iter().enumerate() {
                    let ideal = (k + 1) as f64 * f64::from(raw[s]) / total;
                    prop_assert!((c as f64 - ideal.round()).abs() <= 1.0,
                        "source {} has {} of {} examples, ideal {:.2}", s, c, k + 1, ideal);
                }
            }
        }

        /// A change of weights continues every source from its own count: the union of
        /// the two segments reads each source's examples in order, none twice.
        #[test]
        fn reweighting_continues_every_source(
            a in proptest::collection::vec(1u32..100, 2..5),
            b_seed in any::<u64>(),
            switch in 0u64..500,
        ) {
            let first = Blend::new(a.iter().map(|w| w.to_string()).collect()).unwrap();
            let b: Vec<String> = (0..a.len()).map(|i| ((cocolm_shared::hash::mix64(b_seed ^ i as u64) % 50) + 1).to_string()).collect();
            let second = first.reweighted(switch, b).unwrap();
            let (s1, s2) = (first.schedule().unwrap(), second.schedule().unwrap());
            let mut next = vec![0u64; a.len()];
            for k in 0..switch + 500 {
                let (source, before) = if k < switch {
                    s1.locate(k)
                } else {
                    let (s, local) = s2.locate(k - second.since);
                    (s, second.offsets[s] + local)
                };
                prop_assert_eq!(before, next[source]);
                next[source] += 1;
            }
            prop_assert_eq!(second.counts(&s2, switch + 500), next);
        }
    }

    #[test]
    fn weights_are_exact_decimals() {
        assert_eq!(weight_string(0.6), "0.6");
        assert_eq!(weight_string(3.0), "3");
        assert!(Schedule::new(&strings(&[0.6, 0.25, 0.15])).is_ok());
        for bad in ["-1", "x", "", "1e3", "1.2.3"] {
            assert!(Schedule::new(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(Schedule::new(&["0".into(), "0.0".into()]).is_err());
        assert!(Schedule::new(&["0".into(), "2".into()]).is_ok());
        assert!(same_weights(&strings(&[0.5, 0.5]), &strings(&[1.0, 1.0])).unwrap());
        assert!(!same_weights(&strings(&[0.6, 0.4]), &strings(&[0.5, 0.5])).unwrap());
    }

    #[test]
    fn the_web_books_wiki_mix_is_what_it_says_at_every_prefix() {
        let schedule = Schedule::new(&strings(&[0.6, 0.25, 0.15])).unwrap();
        assert_eq!(schedule.counts(100), vec![60, 25, 15]);
        assert_eq!(
            schedule.counts(1_000_000_000_000),
            vec![600_000_000_000, 250_000_000_000, 150_000_000_000]
        );
        let first: Vec<usize> = (0..20).map(|k| schedule.locate(k).0).collect();
        assert_eq!(first.iter().filter(|&&s| s == 0).count(), 12, "{first:?}");
    }
}
