//! `prepare --part K/N`: the K-th of N deterministic parts of the input list, for
//! preparing one corpus on many machines; `merge` joins the parts' folders.
//!
//! Parts are contiguous runs of the input files in input order, cut where the running
//! total of file sizes crosses multiples of total/N (a file belongs to the part where
//! its middle byte falls), so part sizes are as even as whole files allow and the
//! parts, one after another, hold the inputs in the order a single job reads them. A
//! part may hold no input (more parts than files, or a file larger than a share): it
//! is then an empty, complete shard set.

use cocolm_shared::InputFileRecord;
use cocolm_shared::manifest::PartRecord;
use sha2::{Digest, Sha256};
use std::ops::Range;

/// K of N: which part of the inputs a job prepares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// K, 0-based.
    pub index: u64,
    /// N, at least 1.
    pub count: u64,
}

impl std::str::FromStr for Part {
    type Err = String;

    /// `K/N` with 0 ≤ K < N.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{s:?} is not K/N with 0 <= K < N (e.g. 0/4 … 3/4)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            k.trim().parse::<u64>().map_err(|_| bad())?,
            n.trim().parse::<u64>().map_err(|_| bad())?,
        );
        if index >= count {
            return Err(bad());
        }
        Ok(Part { index, count })
    }
}

impl Part {
    /// The inputs of this part: a range of `inputs` (possibly empty).
    pub fn select(&self, inputs: &[InputFileRecord]) -> Range<usize> {
        let total: u128 = inputs.iter().map(|i| u128::from(i.bytes)).sum();
        let mut before = 0u128;
        let owner = |before: u128, bytes: u64| -> u64 {
            if total == 0 {
                return 0;
            }
            // Twice the middle byte's offset, against twice the total: integers only.
            let middle2 = 2 * before + u128::from(bytes);
            ((middle2 * u128::from(self.count)) / (2 * total)).min(u128::from(self.count - 1))
                as u64
        };
        let owners: Vec<u64> = inputs
            .iter()
            .map(|i| {
                let k = owner(before, i.bytes);
                before += u128::from(i.bytes);
                k
            })
            .collect();
        let start = owners.partition_point(|&k| k < self.index);
        let end = owners.partition_point(|&k| k <= self.index);
        start..end
    }

    /// The manifest's record of this part of `all` inputs.
    pub fn record(&self, all: &[InputFileRecord]) -> PartRecord {
        PartRecord {
            index: self.index,
            count: self.count,
            all_inputs: all.len() as u64,
            all_inputs_sha256: inputs_sha256(all),
        }
    }
}

/// SHA-256 of an input list: each path, a NUL, its size in decimal, a newline.
pub fn inputs_sha256(inputs: &[InputFileRecord]) -> String {
    let mut hasher = Sha256::new();
    for input in inputs {
        hasher.update(input.path.as_bytes());
        hasher.update(format!("\0{}\n", input.bytes).as_bytes());
    }
    cocolm_shared::hash::hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs(sizes: &[u64]) -> Vec<InputFileRecord> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| InputFileRecord {
                path: format!("f{i}"),
                bytes,
                ..InputFileRecord::default()
            })
            .collect()
    }

    #[test]
    fn parses_k_of_n() {
        assert_eq!("2/4".parse::<Part>(), Ok(Part { index: 2, count: 4 }));
        for bad in ["4/4", "1", "a/2", "0/0", "-1/3"] {
            let err = bad.parse::<Part>().unwrap_err();
            assert!(err.contains("K/N"), "{err}");
        }
    }

    #[test]
    fn equal_files_split_evenly_and_a_big_file_stays_whole() {
        let even = inputs(&[10; 12]);
        let ranges: Vec<_> = (0..4)
            .map(|index| Part { index, count: 4 }.select(&even))
            .collect();
        assert_eq!(ranges, [0..3, 3..6, 6..9, 9..12]);
        let skewed = inputs(&[1000, 1, 1, 1]);
        let ranges: Vec<_> = (0..3)
            .map(|index| Part { index, count: 3 }.select(&skewed))
            .collect();
        // The big file's middle byte lies in the second third.
        assert_eq!(ranges, [0..0, 0..1, 1..4]);
    }

    proptest! {
        /// Whatever the sizes: the parts are contiguous, in order, cover every input
        /// once, and no part exceeds its share by more than its largest file.
        #[test]
        fn parts_tile_the_inputs(sizes in proptest::collection::vec(0u64..1000, 0..40), n in 1u64..7) {
            let all = inputs(&sizes);
            let total: u64 = sizes.iter().sum();
            let mut next = 0;
            for index in 0..n {
                let range = Part { index, count: n }.select(&all);
                prop_assert_eq!(range.start, next);
                next = range.end;
                let bytes: u64 = sizes[range.clone()].iter().sum();
                let largest = sizes[range].iter().copied().max().unwrap_or(0);
                prop_assert!(bytes <= total / n + 1 + largest, "{} > {}/{} + {}", bytes, total, n, largest);
            }
            prop_assert_eq!(next, all.len());
        }
    }
}
