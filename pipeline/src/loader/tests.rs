//! Loader tests over a toy shard set.

use super::*;
use crate::shard::reader::Verify;
use crate::testutil::toy_shards;
use std::collections::BTreeSet;

fn open(dir: &std::path::Path) -> ShardSet {
    ShardSet::open(dir, Verify::Full).unwrap()
}

fn options(workers: usize) -> LoaderOptions {
    LoaderOptions {
        batch_size: 5,
        workers,
        queue_depth: 4,
        crop_fraction: Some(0.9),
        ..LoaderOptions::default()
    }
}

fn take(set: &ShardSet, options: &LoaderOptions, cursor: LoaderCursor, n: usize) -> Vec<Batch> {
    let mut loader = Loader::start(set.clone(), options, cursor).unwrap();
    (0..n).map(|_| loader.next_batch().unwrap()).collect()
}

/// Batches without their sequence numbers (which restart at 0 in every run).
fn content(batches: &[Batch]) -> Vec<Batch> {
    batches
        .iter()
        .map(|b| Batch {
            seq: 0,
            ..b.clone()
        })
        .collect()
}

#[test]
fn same_batches_whatever_the_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(&toy_shards(dir.path(), 120));
    let one = take(&set, &options(1), LoaderCursor::start(3), 30);
    let four = take(&set, &options(4), LoaderCursor::start(3), 30);
    assert_eq!(one, four);
    let other_seed = take(&set, &options(2), LoaderCursor::start(4), 30);
    assert_ne!(content(&one), content(&other_seed));
}

#[test]
fn every_example_once_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(&toy_shards(dir.path(), 120));
    let n = set.len();
    let opts = LoaderOptions {
        batch_size: 1,
        ..options(2)
    };
    let batches = take(&set, &opts, LoaderCursor::start(1), 2 * n as usize);
    for epoch in 0..2 {
        let seen: Vec<u64> = batches[epoch * n as usize..(epoch + 1) * n as usize]
            .iter()
            .map(|b| b.example_indices[0])
            .collect();
        let unique: BTreeSet<_> = seen.iter().copied().collect();
        assert_eq!(unique.len() as u64, n);
        assert_eq!(
            batches[(epoch + 1) * n as usize - 1].cursor_after.epoch,
            epoch as u64 + 1
        );
    }
}

#[test]
fn ranks_read_disjoint_equal_shares() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(&toy_shards(dir.path(), 120));
    let world = 3;
    let per_rank = set.len() / world;
    let mut all = BTreeSet::new();
    for rank in 0..world {
        let opts = LoaderOptions {
            batch_size: 1,
            rank,
            world,
            ..options(2)
        };
        let batches = take(&set, &opts, LoaderCursor::start(9), per_rank as usize);
        for b in &batches {
            assert!(
                all.insert(b.example_indices[0]),
                "example read by two ranks"
            );
        }
        assert_eq!(
            batches.last().unwrap().cursor_after,
            LoaderCursor {
                seed: 9,
                epoch: 1,
                position: 0
            }
        );
    }
    assert_eq!(all.len() as u64, per_rank * world);
}

#[test]
fn resume_from_any_cursor_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(&toy_shards(dir.path(), 60));
    // Long enough to cross epoch boundaries mid-batch.
    let full = take(&set, &options(3), LoaderCursor::start(5), 40);
    for k in [1, 7, 13, 29] {
        let resumed = take(&set, &options(2), full[k - 1].cursor_after, 40 - k);
        assert_eq!(
            content(&resumed),
            content(&full[k..]),
            "resume after batch {k}"
        );
    }
}

#[test]
fn batches_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(&toy_shards(dir.path(), 60));
    let special = set.manifest().tokenizer.special_tokens;
    let (mut masked, mut candidates) = (0, 0);
    for b in take(&set, &options(2), LoaderCursor::start(1), 50) {
        let s = b.seq_len;
        let crop = b.crop.as_ref().unwrap();
        for (row, &len) in b.lengths.iter().enumerate() {
            let ids = set.example(b.example_indices[row]);
            assert_eq!(&b.original_ids[row * s..row * s + len as usize], ids);
            assert!(
                b.original_ids[row * s + len as usize..(row + 1) * s]
                    .iter()
                    .all(|&t| t == special.pad)
            );
            candidates += ids.iter().filter(|&&t| !special.contains(t)).count();
            assert_eq!(crop.ids[row * crop.seq_len], special.cls);
        }
        for &p in &b.masked_positions {
            let p = p as usize;
            assert_eq!(b.input_ids[p], special.mask);
            assert!(!special.contains(b.original_ids[p]));
            assert!((p % s) < b.lengths[p / s] as usize);
        }
        let unmasked =
            (0..b.input_ids.len()).filter(|p| !b.masked_positions.contains(&(*p as u32)));
        assert!(
            unmasked
                .clone()
                .all(|p| b.input_ids[p] == b.original_ids[p])
        );
        masked += b.masked_positions.len();
    }
    let rate = masked as f64 / candidates as f64;
    assert!((rate - 0.15).abs() < 0.02, "mask rate {rate}");
}

#[test]
fn damaged_shards_are_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = toy_shards(dir.path(), 120);
    let shard = out.join("shard-00001.arrow");
    let original = std::fs::read(&shard).unwrap();

    // Truncated.
    std::fs::write(&shard, &original[..original.len() - 100]).unwrap();
    let err = ShardSet::open(&out, Verify::Structure)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shard-00001.arrow") && err.contains("truncated"),
        "{err}"
    );

    // Same size, flipped byte: the checksum catches it.
    let mut flipped = original.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x40;
    std::fs::write(&shard, &flipped).unwrap();
    let err = ShardSet::open(&out, Verify::Full).unwrap_err().to_string();
    assert!(
        err.contains("shard-00001.arrow") && err.contains("checksum"),
        "{err}"
    );

    // Missing.
    std::fs::remove_file(&shard).unwrap();
    let err = ShardSet::open(&out, Verify::Structure)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shard-00001.arrow") && err.contains("missing"),
        "{err}"
    );
    std::fs::write(&shard, &original).unwrap();

    // Ids beyond the vocabulary: caught at open (full) or when batching (structure only).
    let mut manifest = cocolm_shared::Manifest::read_dir(&out).unwrap();
    manifest.tokenizer.vocab_size = 50;
    manifest.write_dir(&out).unwrap();
    let err = ShardSet::open(&out, Verify::Full).unwrap_err();
    assert!(err.to_string().contains("vocabulary size 50"), "{err}");
    // The error names the record batch holding the bad id.
    let offsets: Vec<u64> = manifest
        .shards
        .iter()
        .flat_map(|s| s.batch_offsets.clone())
        .collect();
    assert!(
        matches!(&err, Error::Shard { offset: Some(o), .. } if offsets.contains(o)),
        "{err}"
    );
    let set = ShardSet::open(&out, Verify::Structure).unwrap();
    let mut loader = Loader::start(set, &options(2), LoaderCursor::start(1)).unwrap();
    let err = loader.next_batch().unwrap_err();
    assert!(
        err.to_string().contains("shard-0000") && err.to_string().contains("vocabulary size 50"),
        "{err}"
    );
    assert!(
        matches!(&err, Error::Shard { offset: Some(o), .. } if offsets.contains(o)),
        "{err}"
    );
}

/// A shard that fails to decode names the byte where its bad message starts.
#[test]
fn undecodable_record_batch_is_named_by_offset() {
    let dir = tempfile::tempdir().unwrap();
    let out = toy_shards(dir.path(), 120);
    let manifest = cocolm_shared::Manifest::read_dir(&out).unwrap();
    let at = manifest.shards[1].batch_offsets[2];
    let shard = out.join("shard-00001.arrow");
    let mut bytes = std::fs::read(&shard).unwrap();
    // A continuation marker and a 16-byte message that is not a flatbuffer.
    let garbage: Vec<u8> = [0xff, 0xff, 0xff, 0xff, 16, 0, 0, 0]
        .into_iter()
        .chain([0x55; 16])
        .collect();
    bytes[at as usize..at as usize + garbage.len()].copy_from_slice(&garbage);
    std::fs::write(&shard, &bytes).unwrap();
    let err = ShardSet::open(&out, Verify::Structure).unwrap_err();
    match &err {
        Error::Shard { path, offset, .. } => {
            assert_eq!((path, *offset), (&shard, Some(at)), "{err}");
        }
        other => panic!("not a shard error: {other}"),
    }
    assert!(err.to_string().contains(&format!("at byte {at}")), "{err}");
}

/// A manifest whose batch offsets disagree with the file: the error gives the real one.
#[test]
fn misplaced_record_batch_is_named_by_offset() {
    let dir = tempfile::tempdir().unwrap();
    let out = toy_shards(dir.path(), 120);
    let mut manifest = cocolm_shared::Manifest::read_dir(&out).unwrap();
    let at = manifest.shards[0].batch_offsets[1];
    manifest.shards[0].batch_offsets[1] += 8;
    manifest.write_dir(&out).unwrap();
    let err = ShardSet::open(&out, Verify::Structure).unwrap_err();
    assert!(
        matches!(&err, Error::Shard { offset: Some(o), .. } if *o == at),
        "{err}"
    );
}

#[test]
fn inconsistent_options_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(&toy_shards(dir.path(), 30));
    let cases: [(LoaderOptions, &str); 3] = [
        (
            LoaderOptions {
                rank: 2,
                world: 2,
                ..options(1)
            },
            "rank",
        ),
        (
            LoaderOptions {
                batch_size: 0,
                ..options(1)
            },
            "batch_size",
        ),
        (
            LoaderOptions {
                world: 1000,
                ..options(1)
            },
            "world",
        ),
    ];
    for (options, expected) in cases {
        match BatchPlan::new(set.clone(), &options, LoaderCursor::start(1)) {
            Err(Error::LoaderConfig { field, .. }) => assert_eq!(field, expected),
            other => panic!("{expected}: {:?}", other.map(|_| ())),
        }
    }
    let cursor = LoaderCursor {
        position: set.len(),
        ..LoaderCursor::start(1)
    };
    assert!(matches!(
        BatchPlan::new(set, &options(1), cursor),
        Err(Error::LoaderConfig {
            field: "cursor.position",
            ..
        })
    ));
}
