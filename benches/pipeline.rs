//! Criterion benches of the data path's hot loops: packing, shard writing, masking,
//! batch building from memory-mapped shards, and the `--dedup exact` fingerprint.
//!
//! `cargo bench --bench pipeline`. Results and the machine go in BENCHMARKS.md.

use cocolm_pipeline::corrupt::mask::Masker;
use cocolm_pipeline::corrupt::{Stage, rng_for};
use cocolm_pipeline::loader::{BatchPlan, LoaderOptions};
use cocolm_pipeline::pack::Packer;
use cocolm_pipeline::prepare::{Encode, PrepareOptions, TokenizerArtifact, prepare};
use cocolm_pipeline::shard::reader::{ShardSet, Verify};
use cocolm_pipeline::shard::writer::ShardWriter;
use cocolm_shared::hash::SplitMix64;
use cocolm_shared::{LoaderCursor, SpecialTokens, TokenizerRecord};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;

const SPECIAL: SpecialTokens = SpecialTokens {
    pad: 0,
    cls: 1,
    sep: 2,
    mask: 3,
    unk: 4,
};

/// Documents of 50–2000 random ids.
fn documents(n: usize) -> Vec<Vec<u32>> {
    let mut rng = SplitMix64::new(7);
    (0..n)
        .map(|_| {
            (0..50 + rng.below(1950))
                .map(|_| 5 + rng.below(30_000) as u32)
                .collect()
        })
        .collect()
}

fn packer(c: &mut Criterion) {
    let docs = documents(2000);
    let tokens: usize = docs.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("packer");
    group.throughput(Throughput::Elements(tokens as u64));
    group.bench_function("seq512", |b| {
        b.iter(|| {
            let mut p = Packer::new(512, SPECIAL.cls, SPECIAL.sep);
            let mut n = 0usize;
            for (i, d) in docs.iter().enumerate() {
                p.push_document::<()>(i as u64, d, i == 0, 0, |e| {
                    n += e.ids.len();
                    Ok(())
                })
                .unwrap();
            }
            black_box(n)
        })
    });
    group.finish();
}

fn shard_writer(c: &mut Criterion) {
    let example: Vec<u32> = (0..512).collect();
    let rows = 8192u64;
    let mut group = c.benchmark_group("shard_writer");
    group.throughput(Throughput::Bytes(rows * 512 * 4));
    group.sample_size(10);
    group.bench_function("8192x512", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut w = ShardWriter::new(dir.path(), 0, rows, 1024);
            for i in 0..rows {
                black_box(w.push(&example, i).unwrap());
            }
            w.finish().unwrap();
        })
    });
    group.finish();
}

fn masking(c: &mut Criterion) {
    let docs = documents(64);
    let rows: Vec<Vec<u32>> = docs
        .iter()
        .map(|d| d.iter().copied().cycle().take(512).collect())
        .collect();
    let masker = Masker::new(0.15, SPECIAL);
    let mut group = c.benchmark_group("masking");
    group.throughput(Throughput::Elements(64 * 512));
    group.bench_function("64x512", |b| {
        let (mut masked, mut pos, mut scratch) = (vec![0u32; 512], Vec::new(), Vec::new());
        b.iter(|| {
            pos.clear();
            for (i, row) in rows.iter().enumerate() {
                let mut rng = rng_for(1, 0, i as u64, Stage::Mask);
                masker.apply(row, &mut rng, &mut masked, &mut pos, &mut scratch);
            }
            black_box(pos.len())
        })
    });
    group.finish();
}

/// One id per byte: enough to build a shard set without a tokenizer.
struct Bytes;

impl Encode for Bytes {
    fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> cocolm_pipeline::Result<()> {
        out.extend(text.bytes().map(|b| 5 + u32::from(b)));
        Ok(())
    }
}

fn batch_building(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let mut rng = SplitMix64::new(3);
    let text: String = (0..4_000_000)
        .map(|_| char::from(b'a' + rng.below(26) as u8))
        .collect();
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out");
    let options = PrepareOptions {
        seq_len: 512,
        ..PrepareOptions::new(vec![input], out.clone())
    };
    let artifact = TokenizerArtifact {
        record: TokenizerRecord {
            file: "bytes".into(),
            sha256: "bytes".into(),
            vocab_size: 261,
            special_tokens: SPECIAL,
            added_special_tokens: vec![],
        },
        json: b"{}".to_vec(),
    };
    prepare(&options, &artifact, Arc::new(Bytes), &mut |_| {}).unwrap();
    let set = ShardSet::open(&out, Verify::Structure).unwrap();
    let mut group = c.benchmark_group("batch_building");
    for crop in [None, Some(0.9)] {
        let opts = LoaderOptions {
            batch_size: 32,
            crop_fraction: crop,
            ..LoaderOptions::default()
        };
        let plan = BatchPlan::new(set.clone(), &opts, LoaderCursor::start(1)).unwrap();
        group.throughput(Throughput::Elements(32 * 512));
        let name = if crop.is_some() {
            "32x512_crop"
        } else {
            "32x512"
        };
        group.bench_function(name, |b| {
            let mut k = 0;
            let mut spare = None;
            b.iter(|| {
                let batch = plan.build(k, spare.take()).unwrap();
                k += 1;
                black_box(batch.masked_positions.len());
                spare = Some(batch);
            })
        });
    }
    group.finish();
}

/// `--dedup exact`'s fingerprint (NFC, whitespace collapsed, 128-bit hash) and `--dedup
/// near`'s band keys (MinHash of word 5-grams, 16 bands) over the bundled book's
/// documents, in bytes of text per second on one thread.
fn dedup_fingerprint(c: &mut Criterion) {
    use cocolm_pipeline::corpus::{Documents, ReadOptions, discover};
    let book = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/moby-dick.jsonl.zst");
    let (files, _) = discover(&[book], &Default::default()).unwrap();
    let docs: Vec<String> = Documents::new(files, ReadOptions::default(), Arc::default()).collect();
    let bytes: usize = docs.iter().map(String::len).sum();
    let mut group = c.benchmark_group("dedup");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("fingerprint_moby", |b| {
        b.iter(|| {
            docs.iter()
                .map(|d| cocolm_pipeline::prepare::dedup::fingerprint(d))
                .fold(0u128, |a, f| a ^ f)
        })
    });
    group.bench_function("near_keys_moby", |b| {
        b.iter(|| {
            docs.iter()
                .map(|d| cocolm_pipeline::prepare::near::band_keys(d)[0])
                .fold(0u128, |a, f| a ^ f)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    packer,
    shard_writer,
    masking,
    batch_building,
    dedup_fingerprint
);
criterion_main!(benches);
