//! `--dedup near`: a document similar to an earlier one — by MinHash over word 5-grams,
//! banded for locality-sensitive hashing — is rejected as `duplicate`, naming the
//! earlier document.
//!
//! - **Shingles**: the normalised text of `--dedup exact` (NFC, whitespace collapsed),
//!   ASCII-lowercased, split into words; every run of [`SHINGLE_WORDS`] consecutive words
//!   is a shingle (a shorter document is one shingle). The Jaccard similarity of two
//!   documents is that of their shingle sets.
//! - **MinHash**: 128 permutations of 32-bit shingle hashes (`a·x + b mod 2^32`, `a`
//!   odd: a bijection), the minimum of each over the document's shingles. Two documents'
//!   minima agree at one permutation with probability ≈ their Jaccard similarity J.
//! - **Bands**: the 128 minima in [`BANDS`] bands of [`ROWS`]; each band hashed to 64
//!   bits with its index (a key). A document is a near duplicate when one of its keys
//!   belongs to a document kept earlier; otherwise its keys are recorded. The chance
//!   that a pair of similarity J shares a key is `1 − (1 − J^8)^16`: 0.06 at J = 0.5,
//!   0.26 at 0.6, 0.61 at 0.7, 0.95 at 0.8, 0.9999 at 0.9 — the threshold is about
//!   **J ≈ 0.7** (where it is 1/2). Measured on planted pairs in the tests.
//! - Like `exact`, the keys come from the tokenizer workers and the decision is taken in
//!   input order (the same output for any thread count); keys go to the same side file
//!   (16 records per kept document), so resume and `merge` work as for `exact`. Memory:
//!   16 table entries per kept document (600–1,200 bytes, 16× `exact`).
//! - Near-duplication is not transitive: `merge` reports a part's documents similar to
//!   an earlier part's, but the documents a single job would keep can differ slightly.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Words per shingle.
pub const SHINGLE_WORDS: usize = 5;
/// LSH bands.
pub const BANDS: usize = 16;
/// MinHash values per band.
pub const ROWS: usize = 8;
const PERMUTATIONS: usize = BANDS * ROWS;

/// `(a, b)` of each permutation, `a` odd: fixed, from SplitMix64 with seed 0.
const COEFFICIENTS: ([u32; PERMUTATIONS], [u32; PERMUTATIONS]) = {
    let (mut a, mut b) = ([0u32; PERMUTATIONS], [0u32; PERMUTATIONS]);
    let mut state = 0u64;
    let mut i = 0;
    while i < PERMUTATIONS {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        a[i] = (z as u32) | 1;
        b[i] = (z >> 32) as u32;
        i += 1;
    }
    (a, b)
};

/// The [`BANDS`] keys of a document's text: band index in the high 64 bits, the hash
/// of the band's minima in the low.
pub fn band_keys(text: &str) -> [u128; BANDS] {
    let mut normalised = super::dedup::normalise(text);
    normalised.make_ascii_lowercase();
    let words: Vec<u64> = normalised
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(xxh3_64)
        .collect();
    let minima = minhash(&words);
    std::array::from_fn(|band| {
        let rows = &minima[band * ROWS..(band + 1) * ROWS];
        let mut bytes = [0u8; ROWS * 4];
        for (chunk, m) in bytes.chunks_exact_mut(4).zip(rows) {
            chunk.copy_from_slice(&m.to_le_bytes());
        }
        (band as u128) << 64 | u128::from(xxh3_64_with_seed(&bytes, band as u64))
    })
}

/// The minimum of each permutation over the shingles of `words` (word hashes). With
/// AVX2 (checked at run time) the 128 multiply-adds and minima of a shingle take 16
/// vector instructions each.
fn minhash(words: &[u64]) -> [u32; PERMUTATIONS] {
    cocolm_shared::simd::wide(|| minhash_with(words))
}

/// [`minhash`]'s loop, inlined into each instruction-set variant of `wide`.
#[inline(always)]
fn minhash_with(words: &[u64]) -> [u32; PERMUTATIONS] {
    let (a, b) = &COEFFICIENTS;
    let mut minima = [u32::MAX; PERMUTATIONS];
    let width = SHINGLE_WORDS.min(words.len()).max(1);
    for window in words.windows(width) {
        let mut h = 0u64;
        for &w in window {
            h = (h.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        let x = (h >> 32) as u32 ^ h as u32;
        for ((m, &a), &b) in minima.iter_mut().zip(a).zip(b) {
            *m = (*m).min(a.wrapping_mul(x).wrapping_add(b));
        }
    }
    minima
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::HashSet;

    fn shingles(text: &str) -> HashSet<Vec<String>> {
        let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        let width = SHINGLE_WORDS.min(words.len()).max(1);
        words.windows(width).map(<[String]>::to_vec).collect()
    }

    fn jaccard(x: &str, y: &str) -> f64 {
        let (a, b) = (shingles(x), shingles(y));
        a.intersection(&b).count() as f64 / a.union(&b).count() as f64
    }

    #[test]
    fn the_vector_and_portable_minhash_agree() {
        let words: Vec<u64> = (0..300u64)
            .map(|i| i.wrapping_mul(0x2545_f491_4f6c_dd1d))
            .collect();
        for n in [0, 1, 4, 5, 6, 300] {
            assert_eq!(minhash(&words[..n]), minhash_with(&words[..n]), "{n} words");
        }
    }

    #[test]
    fn keys_ignore_case_normal_form_and_whitespace_and_see_edits() {
        let text = "The  Caf\u{e9} opened\tits doors at nine and closed them at five every day";
        let same = "the cafe\u{301} opened its doors AT nine and closed them at five every day ";
        assert_eq!(band_keys(text), band_keys(same));
        let edited = text.replace("nine", "ten");
        let shared = band_keys(text)
            .iter()
            .zip(band_keys(&edited))
            .filter(|(x, y)| **x == *y)
            .count();
        assert!(shared < BANDS, "one word of 15 changes 5 of 11 shingles");
        assert_eq!(band_keys("short text"), band_keys("SHORT   text"));
        assert_ne!(band_keys("short text"), band_keys("short texts"));
    }

    /// Planted near duplicates: 400 unrelated documents of 150–400 words, and for each a
    /// copy with a share of its words replaced; detection by exact Jaccard of the pair.
    #[test]
    fn planted_near_duplicates_are_found_around_the_threshold() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let vocabulary: Vec<String> = (0..20_000).map(|i| format!("w{i}")).collect();
        let mut kept: HashSet<u128> = HashSet::new();
        // (Jaccard of the pair, found) for every planted copy.
        let mut pairs = Vec::new();
        let mut false_positives = 0;
        for doc in 0..400 {
            let n = rng.random_range(150..400);
            let words: Vec<&str> = (0..n)
                .map(|_| vocabulary[rng.random_range(0..vocabulary.len())].as_str())
                .collect();
            let original = words.join(" ");
            let keys = band_keys(&original);
            if keys.iter().any(|k| kept.contains(k)) {
                false_positives += 1;
            }
            kept.extend(keys);
            let share = [0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12][doc % 8];
            let copy: Vec<&str> = words
                .iter()
                .map(|w| {
                    if rng.random_bool(share) {
                        vocabulary[rng.random_range(0..vocabulary.len())].as_str()
                    } else {
                        w
                    }
                })
                .collect();
            let copy = copy.join(" ");
            let found = band_keys(&copy).iter().any(|k| kept.contains(k));
            pairs.push((jaccard(&original, &copy), found));
        }
        let rate = |lo: f64, hi: f64| {
            let bucket: Vec<_> = pairs.iter().filter(|(j, _)| *j >= lo && *j < hi).collect();
            let found = bucket.iter().filter(|(_, f)| *f).count();
            (found as f64 / bucket.len().max(1) as f64, bucket.len())
        };
        for (lo, hi) in [
            (0.0, 0.5),
            (0.5, 0.6),
            (0.6, 0.7),
            (0.7, 0.8),
            (0.8, 0.9),
            (0.9, 1.01),
        ] {
            let (r, n) = rate(lo, hi);
            let p = |j: f64| 1.0 - (1.0 - j.powi(ROWS as i32)).powi(BANDS as i32);
            eprintln!(
                "J in [{lo:.1}, {hi:.1}): {n:3} pairs, found {r:.2} (theory {:.2}–{:.2})",
                p(lo),
                p(hi.min(1.0))
            );
        }
        assert_eq!(false_positives, 0, "unrelated documents share no key");
        let (high, n_high) = rate(0.8, 1.01);
        let (low, n_low) = rate(0.0, 0.5);
        assert!(n_high >= 100 && n_low >= 30, "{n_high} {n_low}");
        assert!(high >= 0.95, "recall at J >= 0.8: {high}");
        assert!(low <= 0.1, "found at J < 0.5: {low}");
    }
}
