//! `prepare --part K/N` then `merge`, against one `prepare` over all inputs.

use super::*;
use crate::prepare::part::Part;
use crate::prepare::{PrepareOptions, PrepareReport, prepare};
use crate::shard::reader::{ShardSet, Verify};
use crate::testutil::{artifact, corpus, toy, with_duplicates};

fn options(input: &Path, out: &Path, part: Option<Part>) -> PrepareOptions {
    PrepareOptions {
        seq_len: 16,
        threads: 2,
        shard_bytes: 40 * (16 * 4 + 16),
        rows_per_batch: 8,
        part,
        ..PrepareOptions::new(vec![input.to_path_buf()], out.to_path_buf())
    }
}

fn run(options: &PrepareOptions) -> PrepareReport {
    prepare(options, &artifact(), toy(None), &mut |_| {}).unwrap()
}

/// The N parts of `options`' job, each in `dir/part-K`.
fn parts(dir: &Path, base: &PrepareOptions, n: u64) -> Vec<PathBuf> {
    (0..n)
        .map(|index| {
            let out = dir.join(format!("part-{index}-of-{n}"));
            let part = Some(Part { index, count: n });
            run(&PrepareOptions {
                out: out.clone(),
                part,
                ..base.clone()
            });
            out
        })
        .collect()
}

/// The examples' spans between [CLS] and the final [SEP], joined: documents separated
/// by [SEP].
fn stream(set: &ShardSet) -> Vec<u32> {
    (0..set.len())
        .flat_map(|i| {
            let ex = set.example(i);
            ex[1..ex.len() - 1].to_vec()
        })
        .collect()
}

#[test]
fn parts_merged_hold_the_single_jobs_documents_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let single_dir = dir.path().join("single");
    let single = run(&options(&input, &single_dir, None)).manifest;
    let single_set = ShardSet::open(&single_dir, Verify::Full).unwrap();
    for n in 1..=3 {
        let part_dirs = parts(dir.path(), &options(&input, &single_dir, None), n);
        let out = dir.path().join(format!("merged-{n}"));
        // Given in reverse: the order of the arguments does not matter.
        let reversed: Vec<PathBuf> = part_dirs.iter().rev().cloned().collect();
        let report = merge(&out, &reversed).unwrap();
        assert_eq!(
            (report.linked, report.copied),
            (report.manifest.shards.len(), 0)
        );
        let merged = ShardSet::open(&out, Verify::Full).unwrap();

        // The parts' examples, in part order; their streams joined by [SEP] are the
        // single job's stream.
        let mut examples = Vec::new();
        let mut joined: Vec<u32> = Vec::new();
        for part_dir in &part_dirs {
            let part = ShardSet::open(part_dir, Verify::Full).unwrap();
            examples.extend((0..part.len()).map(|i| part.example(i).to_vec()));
            let s = stream(&part);
            if !s.is_empty() && !joined.is_empty() {
                joined.push(2);
            }
            joined.extend(s);
        }
        let merged_examples: Vec<Vec<u32>> = (0..merged.len())
            .map(|i| merged.example(i).to_vec())
            .collect();
        assert_eq!(merged_examples, examples, "{n} parts");
        assert_eq!(joined, stream(&single_set), "{n} parts");
        if n == 1 {
            assert_eq!(merged_examples.len() as u64, single_set.len());
        }

        // Accounting: every input's, as the single job counted it.
        let m = &report.manifest;
        assert_eq!(m.inputs, single.inputs, "{n} parts");
        let t = (
            m.totals.documents_read,
            m.totals.documents_accepted,
            m.totals.documents_rejected,
        );
        let s = &single.totals;
        assert_eq!(
            t,
            (s.documents_read, s.documents_accepted, s.documents_rejected)
        );
        assert_eq!(m.totals.examples, merged.len());
        // Document ordinals count over the whole set: they never go back, and the
        // first part's examples start where the single job's do.
        let documents: Vec<u64> = (0..merged.len()).map(|i| merged.document(i)).collect();
        assert!(documents.windows(2).all(|w| w[0] <= w[1]), "{documents:?}");
        let first_part = ShardSet::open(&part_dirs[0], Verify::Full).unwrap().len();
        for i in 0..first_part {
            assert_eq!(merged.document(i), single_set.document(i));
        }
        assert!(*documents.last().unwrap() < s.documents_read);
        assert_eq!(m.part, None);
        assert_eq!(Manifest::read_dir(&out).unwrap(), report.manifest);
    }
}

/// The duplicates corpus under `mode`: one job in `dir/single`, and 3 parts merged into
/// `dir/merged`; the single job's manifest, the documents the parts rejected, and the
/// merge's report.
fn dedup_job_and_merged_parts(dir: &Path, mode: Dedup) -> (Manifest, u64, MergeReport) {
    let input = with_duplicates(dir);
    let base = PrepareOptions {
        dedup: mode,
        ..options(&input, &dir.join("single"), None)
    };
    let single = run(&base).manifest;
    let part_dirs = parts(dir, &base, 3);
    let within: u64 = part_dirs
        .iter()
        .map(|d| Manifest::read_dir(d).unwrap().totals.documents_rejected)
        .sum();
    let report = merge(&dir.join("merged"), &part_dirs).unwrap();
    (single, within, report)
}

#[test]
fn merge_reports_duplicates_across_parts_and_joins_the_side_files() {
    let dir = tempfile::tempdir().unwrap();
    let (single, within, report) = dedup_job_and_merged_parts(dir.path(), Dedup::Exact);
    let out = dir.path().join("merged");
    // One job drops every repeat; the parts drop their own, the merge counts the rest.
    assert_eq!(
        within + report.cross_part_duplicates,
        single.totals.documents_rejected
    );
    assert!(report.cross_part_duplicates > 100);
    assert_eq!(report.duplicate_examples.len(), MAX_DUPLICATE_EXAMPLES);
    assert!(
        report.duplicate_examples[0].contains("part1.jsonl line")
            && report.duplicate_examples[0].contains(": same text as "),
        "{:?}",
        report.duplicate_examples
    );
    // The distinct documents, where they were first seen: the single job's side file.
    assert_eq!(
        std::fs::read(out.join(DEDUP_FILE)).unwrap(),
        std::fs::read(dir.path().join("single").join(DEDUP_FILE)).unwrap()
    );
}

/// Near duplication is not transitive, so merged `--dedup near` parts can keep other
/// documents than one job would (a part keeps X and drops Y as similar to X; the merge
/// then drops X as similar to an earlier part's document, and Y stays dropped). What
/// must hold: every document is accounted for once — rejected in its part, reported
/// by the merge, or recorded as kept with all its band keys — and no two kept documents
/// share a band key.
#[test]
fn near_parts_merged_account_for_every_document_and_keep_no_two_similar() {
    let dir = tempfile::tempdir().unwrap();
    let (single, within, report) = dedup_job_and_merged_parts(dir.path(), Dedup::Near);
    let out = dir.path().join("merged");
    assert!(report.cross_part_duplicates > 100);
    assert!(
        report.duplicate_examples[0].contains(": similar text to "),
        "{:?}",
        report.duplicate_examples
    );

    let path = out.join(DEDUP_FILE);
    let mut keys = Vec::new();
    let mut file = std::fs::File::open(&path).unwrap();
    dedup::read_records(&path, &mut file, None, |key, origin| {
        keys.push((key, origin))
    })
    .unwrap();
    let kept: Vec<_> = keys.chunk_by(|a, b| a.1 == b.1).collect();
    assert!(
        kept.iter()
            .all(|doc| doc.len() == crate::prepare::near::BANDS)
    );
    assert_eq!(
        within + report.cross_part_duplicates + kept.len() as u64,
        single.totals.documents_read
    );
    let distinct: std::collections::HashSet<u128> = keys.iter().map(|&(k, _)| k).collect();
    assert_eq!(
        distinct.len(),
        keys.len(),
        "two kept documents share a band key"
    );
}

#[test]
fn parts_of_other_jobs_or_unfinished_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let base = options(&input, &dir.path().join("unused"), None);
    let good = parts(dir.path(), &base, 3);
    let refuse = |parts: &[PathBuf]| {
        let out = tempfile::tempdir().unwrap();
        merge(&out.path().join("m"), parts).unwrap_err().to_string()
    };

    let err = refuse(&good[..2]);
    assert!(
        err.contains("2 part folder(s) given") && err.contains("part 2 is missing"),
        "{err}"
    );
    let err = refuse(&[good[0].clone(), good[2].clone(), good[2].clone()]);
    assert!(
        err.contains("part 2 again") || err.contains("part 1 of 3 is missing"),
        "{err}"
    );

    // Another seq_len, another input list, a whole (not part) set.
    let other_len = dir.path().join("len");
    run(&PrepareOptions {
        seq_len: 32,
        out: other_len.clone(),
        part: Some(Part { index: 1, count: 3 }),
        ..base.clone()
    });
    let err = refuse(&[good[0].clone(), other_len.clone(), good[2].clone()]);
    assert!(err.contains("len") && err.contains("seq_len 32"), "{err}");
    let fewer = dir.path().join("fewer");
    run(&PrepareOptions {
        inputs: vec![input.join("sub")],
        out: fewer.clone(),
        part: Some(Part { index: 1, count: 3 }),
        ..base.clone()
    });
    let err = refuse(&[good[0].clone(), fewer, good[2].clone()]);
    assert!(err.contains("another input list"), "{err}");
    let whole = dir.path().join("whole");
    run(&PrepareOptions {
        out: whole.clone(),
        ..base.clone()
    });
    let err = refuse(&[whole]);
    assert!(err.contains("is not a part"), "{err}");

    // An interrupted part.
    let crashed = dir.path().join("crashed");
    let mut opts = options(&input, &crashed, Some(Part { index: 2, count: 3 }));
    opts.threads = 1;
    prepare(&opts, &artifact(), toy(Some(20)), &mut |_| {}).unwrap_err();
    let err = refuse(&[good[0].clone(), good[1].clone(), crashed]);
    assert!(
        err.contains("crashed") && err.contains("incomplete"),
        "{err}"
    );

    // A shard cut short.
    let damaged = dir.path().join("damaged");
    run(&PrepareOptions {
        out: damaged.clone(),
        part: Some(Part { index: 0, count: 3 }),
        ..base.clone()
    });
    let shard = damaged.join("shard-00000.arrow");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let err = refuse(&[damaged, good[1].clone(), good[2].clone()]);
    assert!(
        err.contains("shard-00000.arrow") && err.contains("damaged"),
        "{err}"
    );
}

#[test]
fn an_interrupted_merge_is_redone_and_a_finished_set_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let good = parts(dir.path(), &options(&input, &dir.path().join("u"), None), 2);
    let out = dir.path().join("merged");
    // What a merge killed before its manifest leaves: links and the tokenizer copy.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("shard-00000.arrow"), b"half").unwrap();
    std::fs::write(out.join(TOKENIZER_FILE), b"{}").unwrap();
    let report = merge(&out, &good).unwrap();
    ShardSet::open(&out, Verify::Full).unwrap();
    let err = merge(&out, &good).unwrap_err().to_string();
    assert!(err.contains("already holds a shard set"), "{err}");
    // The parts are untouched: a shard of part 0 still has its own name and checksum.
    let part0 = Manifest::read_dir(&good[0]).unwrap();
    assert_eq!(part0.shards[0].sha256, report.manifest.shards[0].sha256);
    ShardSet::open(&good[0], Verify::Full).unwrap();
}
