//! Loader tests over a toy shard set.

use super::*;
use crate::shard::reader::Verify;
use crate::testutil::{toy_shards, toy_shards_of};
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
            batches[(epoch + 1) * n as usize - 1].cursor_after.consumed,
            (epoch as u64 + 1) * n
        );
    }
}

/// The rows of `ranks` loaders, rank after rank for each global batch: what one rank
/// with the whole global batch would read.
fn global_rows(batches_by_rank: &[Vec<Batch>]) -> Vec<(u32, u64)> {
    let steps = batches_by_rank[0].len();
    (0..steps)
        .flat_map(|t| {
            batches_by_rank.iter().flat_map(move |ranks| {
                let b = &ranks[t];
                b.example_sources
                    .iter()
                    .copied()
                    .zip(b.example_indices.iter().copied())
            })
        })
        .collect()
}

#[test]
fn the_global_stream_does_not_depend_on_the_number_of_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(&toy_shards(dir.path(), 50));
    // A global batch of 12 rows: 1 × 12, 2 × 6, 3 × 4, 4 × 3; long enough to cross
    // epochs mid-batch (50 is no multiple of 12).
    let run = |world: u64, cursor: LoaderCursor, steps: usize| -> Vec<Vec<Batch>> {
        (0..world)
            .map(|rank| {
                let opts = LoaderOptions {
                    batch_size: 12 / world as usize,
                    rank,
                    world,
                    ..options(2)
                };
                take(&set, &opts, cursor, steps)
            })
            .collect()
    };
    let one = run(1, LoaderCursor::start(9), 20);
    let reference = global_rows(&one);
    for world in [2, 3, 4] {
        let ranks = run(world, LoaderCursor::start(9), 20);
        assert_eq!(global_rows(&ranks), reference, "W = {world}");
        for t in 0..20 {
            let cursors: BTreeSet<_> = ranks.iter().map(|r| r[t].cursor_after.consumed).collect();
            assert_eq!(cursors.len(), 1, "every rank carries the same cursor");
            assert_eq!(ranks[0][t].cursor_after, one[0][t].cursor_after);
        }
        // W = 1 → checkpoint after step 7 → W ranks: the same examples, batch by batch.
        let resumed = run(world, one[0][6].cursor_after, 13);
        assert_eq!(
            global_rows(&resumed),
            reference[7 * 12..],
            "1 → {world} ranks"
        );
    }
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
    let cases: [(LoaderOptions, &str); 2] = [
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
    ];
    for (options, expected) in cases {
        match BatchPlan::new(set.clone(), &options, LoaderCursor::start(1)) {
            Err(Error::LoaderConfig { field, .. }) => assert_eq!(field, expected),
            other => panic!("{expected}: {:?}", other.map(|_| ())),
        }
    }
    let other = tempfile::tempdir().unwrap();
    let longer = open(&toy_shards_of(other.path(), 30, 24));
    let two = Blend::new(vec!["1".into(), "1".into()]).unwrap();
    let field_of =
        |sources: Vec<ShardSet>, blend: Blend, cursor: LoaderCursor| match BatchPlan::blended(
            sources,
            blend,
            &options(1),
            cursor,
        ) {
            Err(Error::LoaderConfig { field, message }) => (field, message),
            other => panic!("{:?}", other.map(|_| ())),
        };
    let (field, message) = field_of(
        vec![set.clone(), longer],
        two.clone(),
        LoaderCursor::start(1),
    );
    assert_eq!(field, "sources");
    assert!(message.contains("seq_len 24"), "{message}");
    let (field, _) = field_of(vec![set.clone()], two.clone(), LoaderCursor::start(1));
    assert_eq!(field, "blend");
    let later = two.reweighted(10, vec!["1".into(), "3".into()]).unwrap();
    let (field, _) = field_of(vec![set.clone(), set], later, LoaderCursor::start(1));
    assert_eq!(field, "cursor.consumed");
}

/// Each source's reads, in order, from a run's batches.
fn reads_by_source(batches: &[Batch], sources: usize) -> Vec<Vec<u64>> {
    let mut reads = vec![Vec::new(); sources];
    for b in batches {
        for (&s, &i) in b.example_sources.iter().zip(&b.example_indices) {
            reads[s as usize].push(i);
        }
    }
    reads
}

#[test]
fn a_blend_keeps_its_proportions_and_every_source_its_own_epochs_across_a_reweighting() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let sets = vec![
        open(&toy_shards(dirs[0].path(), 50)),
        open(&toy_shards(dirs[1].path(), 13)),
    ];
    let sizes: Vec<u64> = sets.iter().map(ShardSet::len).collect();
    let blend = Blend::new(vec!["0.7".into(), "0.3".into()]).unwrap();
    let opts = options(2);
    let start = |blend: &Blend, cursor| {
        Loader::from_plan(
            BatchPlan::blended(sets.clone(), blend.clone(), &opts, cursor).unwrap(),
            &opts,
        )
        .unwrap()
    };
    let mut loader = start(&blend, LoaderCursor::start(4));
    let first: Vec<Batch> = (0..20).map(|_| loader.next_batch().unwrap()).collect();
    let plan =
        BatchPlan::blended(sets.clone(), blend.clone(), &opts, LoaderCursor::start(4)).unwrap();
    for (t, b) in first.iter().enumerate() {
        let k = b.cursor_after.consumed;
        assert_eq!(k, (t as u64 + 1) * 5);
        let counts = plan.source_counts(k);
        assert_eq!(
            reads_by_source(&first[..=t], 2)
                .iter()
                .map(|r| r.len() as u64)
                .collect::<Vec<_>>(),
            counts
        );
        assert!(
            (counts[0] as f64 - 0.7 * k as f64).abs() <= 1.0,
            "{counts:?} after {k}"
        );
    }

    // Resume after batch 12 with other weights: each source goes on from its own count.
    let at = first[11].cursor_after;
    let reweighted = blend
        .reweighted(at.consumed, vec!["0.2".into(), "0.8".into()])
        .unwrap();
    assert_eq!(reweighted.offsets, plan.source_counts(at.consumed));
    let mut loader = start(&reweighted, at);
    let second: Vec<Batch> = (0..30).map(|_| loader.next_batch().unwrap()).collect();
    let mut all = first[..12].to_vec();
    all.extend(second);
    for (source, reads) in reads_by_source(&all, 2).iter().enumerate() {
        let n = sizes[source] as usize;
        for (e, epoch) in reads.chunks(n).enumerate() {
            let unique: BTreeSet<_> = epoch.iter().collect();
            assert_eq!(
                unique.len(),
                epoch.len(),
                "source {source} repeats an example in epoch {e}"
            );
        }
    }
    let tail = reads_by_source(&all[12..], 2);
    let share = tail[1].len() as f64 / (30 * 5) as f64;
    assert!(
        (share - 0.8).abs() < 0.01,
        "the new weights hold after the change: {share}"
    );
}
