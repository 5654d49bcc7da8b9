//! Tests of the prepare job with a toy encoder (one id per character).

use super::*;
use crate::shard::reader::{ShardSet, Verify};
use crate::testutil::{artifact, corpus, toy, with_duplicates};
use std::path::Path;

fn options(input: &Path, out: &Path, threads: usize) -> PrepareOptions {
    PrepareOptions {
        seq_len: 16,
        threads,
        shard_bytes: 40 * (16 * 4 + 16),
        rows_per_batch: 8,
        ..PrepareOptions::new(vec![input.to_path_buf()], out.to_path_buf())
    }
}

fn run(opts: &PrepareOptions, encoder: Arc<dyn Encode>) -> Result<PrepareReport> {
    prepare(opts, &artifact(), encoder, &mut |_| {})
}

/// Every file of a directory, by name.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn shards_hold_the_documents_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let out = dir.path().join("out");
    let report = run(&options(&input, &out, 3), toy(None)).unwrap();
    let m = &report.manifest;
    assert_eq!(m.state, ManifestState::Complete);
    assert!(m.shards.len() >= 3, "{} shards", m.shards.len());

    // Expected stream: every accepted document, in discovery order, separated by [SEP].
    let (files, _) = corpus::discover(std::slice::from_ref(&input), &Default::default()).unwrap();
    let encoder = toy(None);
    let mut stream = Vec::new();
    let mut accepted = 0;
    for path in &files {
        let mut reader = corpus::open(path, &ReadOptions::default(), Arc::default()).unwrap();
        while let Some(record) = reader.next_record().unwrap() {
            if let Content::Text(text) = record.content {
                if accepted > 0 {
                    stream.push(2);
                }
                encoder.encode_into(&text, &mut stream).unwrap();
                accepted += 1;
            }
        }
    }
    let set = ShardSet::open(&out, Verify::Full).unwrap();
    let mut spans = Vec::new();
    for i in 0..set.len() {
        let ex = set.example(i);
        assert_eq!((ex[0], *ex.last().unwrap()), (1, 2));
        if i + 1 < set.len() {
            assert_eq!(ex.len(), 16);
        }
        spans.extend_from_slice(&ex[1..ex.len() - 1]);
    }
    assert_eq!(spans, stream);
    assert_eq!(m.totals.documents_accepted, accepted);
    assert_eq!(m.totals.examples, set.len());
    assert_eq!(m.totals.tokens, (stream.len() as u64) + 2 * set.len());
}

#[test]
fn accounting_counts_every_document() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let report = run(&options(&input, &dir.path().join("out"), 2), toy(None)).unwrap();
    let m = &report.manifest;
    let by_name = |suffix: &str| m.inputs.iter().find(|i| i.path.ends_with(suffix)).unwrap();
    assert_eq!(by_name("empty.txt").rejections["empty document"], 1);
    assert_eq!(by_name("binary.txt").rejections["binary content"], 1);
    let a = by_name("sub/a.jsonl");
    assert_eq!((a.documents_accepted, a.documents_rejected), (30, 3));
    assert_eq!(a.rejections["malformed json"], 3);
    assert!(
        a.rejection_examples[0].starts_with("line 5: malformed json"),
        "{:?}",
        a.rejection_examples
    );
    let c = by_name("sub/c.jsonl.zst");
    assert_eq!(c.rejections["truncated or corrupt compressed data"], 1);
    for i in &m.inputs {
        assert_eq!(
            i.documents_read,
            i.documents_accepted + i.documents_rejected,
            "{}",
            i.path
        );
    }
    let read: u64 = m.inputs.iter().map(|i| i.documents_read).sum();
    assert_eq!(read, m.totals.documents_read);
    assert_eq!(
        m.totals.documents_read,
        m.totals.documents_accepted + m.totals.documents_rejected
    );
}

#[test]
fn output_does_not_depend_on_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let one = dir.path().join("one");
    let four = dir.path().join("four");
    run(&options(&input, &one, 1), toy(None)).unwrap();
    run(&options(&input, &four, 4), toy(None)).unwrap();
    assert_eq!(snapshot(&one), snapshot(&four));
}

#[test]
fn interrupted_job_resumes_to_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let reference = dir.path().join("reference");
    run(&options(&input, &reference, 2), toy(None)).unwrap();
    let expected = snapshot(&reference);
    for crash_after in [0, 1, 17, 40, 55, 90] {
        let out = dir.path().join(format!("crash{crash_after}"));
        let err = run(&options(&input, &out, 2), toy(Some(crash_after))).unwrap_err();
        assert!(err.to_string().contains("simulated crash"), "{err}");
        let partial = Manifest::read_dir(&out).unwrap();
        assert!(matches!(partial.state, ManifestState::Partial(_)));
        // Debris a kill -9 could leave: a half-written shard and manifest.
        std::fs::write(out.join("shard-00099.arrow.tmp"), b"partial").unwrap();
        std::fs::write(out.join("manifest.json.tmp"), b"{").unwrap();
        let report = run(&options(&input, &out, 3), toy(None)).unwrap();
        assert!(report.resumed);
        assert_eq!(
            snapshot(&out),
            expected,
            "crash after {crash_after} documents"
        );
    }
}

#[test]
fn complete_output_is_left_alone_and_mismatches_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let out = dir.path().join("out");
    run(&options(&input, &out, 2), toy(None)).unwrap();
    let again = run(&options(&input, &out, 2), toy(None)).unwrap();
    assert!(again.already_complete);
    let mut other = options(&input, &out, 2);
    other.seq_len = 32;
    let err = run(&other, toy(None)).unwrap_err().to_string();
    assert!(err.contains("--seq-len 16"), "{err}");
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let err = run(&options(&input, &foreign, 2), toy(None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
    let mut tiny = options(&input, &dir.path().join("tiny"), 2);
    tiny.seq_len = 2;
    let err = run(&tiny, toy(None)).unwrap_err().to_string();
    assert!(err.contains("seq_len 2"), "{err}");
}

#[test]
fn a_stop_request_commits_nothing_partial_and_the_same_job_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let reference = dir.path().join("reference");
    run(&options(&input, &reference, 2), toy(None)).unwrap();
    let out = dir.path().join("out");
    let stopped = options(&input, &out, 2);
    stopped.stop.request(15);
    match run(&stopped, toy(None)) {
        Err(Error::Interrupted {
            signal: 15,
            shards: 0,
            ..
        }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(
        std::fs::read_dir(&out).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")),
        "no temporary file stays"
    );
    let resumed = run(&options(&input, &out, 2), toy(None)).unwrap();
    assert!(resumed.resumed);
    let without_lock = |dir: &Path| {
        let mut files = snapshot(dir);
        files.remove(cocolm_shared::lock::LOCK_FILE);
        files
    };
    assert_eq!(without_lock(&out), without_lock(&reference));
}

#[test]
fn strict_fails_on_the_first_rejection_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let mut opts = options(&input, &dir.path().join("out"), 2);
    opts.strict = true;
    let err = run(&opts, toy(None)).unwrap_err().to_string();
    assert!(
        err.contains("binary.txt") && err.contains("binary content"),
        "{err}"
    );
}

#[test]
fn manifest_follows_the_json_schema() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let out = dir.path().join("out");
    let schema = crate::testutil::repo_schema("manifest.schema.json");
    // Incomplete (with a resume point) and complete manifests both conform.
    run(&options(&input, &out, 2), toy(Some(60))).unwrap_err();
    for _ in 0..2 {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        crate::testutil::check_json_schema(&schema, &schema, &manifest, "manifest").unwrap();
        run(&options(&input, &out, 2), toy(None)).unwrap();
    }
    // The checker itself rejects a violation.
    let mut bad: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    bad["shards"][0]["extra"] = serde_json::json!(1);
    let err = crate::testutil::check_json_schema(&schema, &schema, &bad, "manifest").unwrap_err();
    assert!(err.contains("manifest.shards[0].extra"), "{err}");
}

/// `complete` and `resume` go together: the schema and the code accept the same pairs.
#[test]
fn schema_and_code_agree_on_complete_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let out = dir.path().join("out");
    let schema = crate::testutil::repo_schema("manifest.schema.json");
    run(&options(&input, &out, 2), toy(Some(60))).unwrap_err();
    let partial: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let resume = partial["resume"].clone();
    for complete in [false, true] {
        for with_resume in [false, true] {
            let mut m = partial.clone();
            m["complete"] = complete.into();
            let object = m.as_object_mut().unwrap();
            if with_resume {
                object.insert("resume".into(), resume.clone());
            } else {
                object.remove("resume");
            }
            let by_schema = crate::testutil::check_json_schema(&schema, &schema, &m, "manifest");
            let by_code = serde_json::from_value::<Manifest>(m);
            assert_eq!(
                by_schema.is_ok(),
                by_code.is_ok(),
                "complete {complete}, resume {with_resume}: {by_schema:?} {by_code:?}"
            );
            assert_eq!(by_code.is_ok(), complete != with_resume);
        }
    }
}

/// A damaged manifest in `--out` is an error naming the file and the field, not a panic.
#[test]
fn damaged_manifest_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let out = dir.path().join("out");
    run(&options(&input, &out, 2), toy(Some(60))).unwrap_err();
    let path = out.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let inputs = m["inputs"].as_array().unwrap().len();
    m["resume"]["input"] = (inputs + 3).into();
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let err = run(&options(&input, &out, 2), toy(None)).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Shared(cocolm_shared::Error::Invalid { path: p, field, .. })
                if *p == path && field == "resume.input"
        ),
        "{err}"
    );
}

/// An encoder that panics on its `at`-th document.
struct PanickingEncoder {
    at: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl Encode for PanickingEncoder {
    fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        assert!(n != self.at, "encoder exploded on document {n}");
        toy(None).encode_into(text, out)
    }
}

/// A panicking tokenizer worker ends the job with an error naming the thread and
/// carrying the panic message; the process goes on.
#[test]
fn panicking_tokenizer_worker_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    for threads in [1, 3] {
        let out = dir.path().join(format!("out{threads}"));
        let encoder = Arc::new(PanickingEncoder {
            at: 25,
            calls: Default::default(),
        });
        match run(&options(&input, &out, threads), encoder) {
            Err(Error::WorkerPanicked { thread, message }) => {
                assert!(thread.starts_with("cocolm-encode-"), "{thread}");
                assert_eq!(message, "encoder exploded on document 25");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // The output stays resumable.
        run(&options(&input, &out, threads), toy(None)).unwrap();
    }
}

/// Regression: when the final, shorter example completes a shard, that shard is listed.
#[test]
fn last_example_completing_a_shard_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path());
    let first = run(&options(&input, &dir.path().join("first"), 2), toy(None)).unwrap();
    let examples = first.manifest.totals.examples;
    let mut exact = options(&input, &dir.path().join("exact"), 2);
    exact.shard_bytes = examples * (16 * 4 + 16);
    let report = run(&exact, toy(None)).unwrap();
    assert_eq!(report.manifest.shards.len(), 1);
    assert_eq!(report.manifest.totals.examples, examples);
    assert_eq!(
        ShardSet::open(&dir.path().join("exact"), Verify::Full)
            .unwrap()
            .len(),
        examples
    );
}

fn dedup_options(input: &Path, out: &Path, threads: usize) -> PrepareOptions {
    mode_options(Dedup::Exact, input, out, threads)
}

fn mode_options(dedup: Dedup, input: &Path, out: &Path, threads: usize) -> PrepareOptions {
    PrepareOptions {
        dedup,
        ..options(input, out, threads)
    }
}

#[test]
fn dedup_exact_keeps_the_first_of_each_text_and_names_it() {
    use unicode_normalization::UnicodeNormalization;
    let dir = tempfile::tempdir().unwrap();
    let input = with_duplicates(dir.path());
    let out = dir.path().join("out");
    let report = run(&dedup_options(&input, &out, 3), toy(None)).unwrap();
    let m = &report.manifest;

    // Expected, by string comparison of the normalised texts (not by fingerprint).
    let (files, _) = corpus::discover(std::slice::from_ref(&input), &Default::default()).unwrap();
    let encoder = toy(None);
    let mut first: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let (mut stream, mut duplicates) = (Vec::new(), 0u64);
    for (f, path) in files.iter().enumerate() {
        let mut reader = corpus::open(path, &ReadOptions::default(), Arc::default()).unwrap();
        while let Some(record) = reader.next_record().unwrap() {
            let (Content::Text(text), Some(corpus::Location::Line(line))) =
                (record.content, record.location)
            else {
                panic!("every line is a document")
            };
            let nfc: String = text.nfc().collect();
            let key = nfc.split_whitespace().collect::<Vec<_>>().join(" ");
            if first.contains_key(&key) {
                duplicates += 1;
                continue;
            }
            first.insert(key, (f, line));
            if !stream.is_empty() {
                stream.push(2);
            }
            encoder.encode_into(&text, &mut stream).unwrap();
        }
    }
    assert!(
        duplicates > 600 && first.len() > 300,
        "{duplicates} of 1200"
    );
    assert_eq!(m.totals.documents_read, 1200);
    assert_eq!(m.totals.documents_accepted, first.len() as u64);
    assert_eq!(m.totals.documents_rejected, duplicates);
    let counted: u64 = m.inputs.iter().map(|i| i.rejections["duplicate"]).sum();
    assert_eq!(counted, duplicates);
    let set = ShardSet::open(&out, Verify::Full).unwrap();
    let spans: Vec<u32> = (0..set.len())
        .flat_map(|i| {
            let ex = set.example(i);
            ex[1..ex.len() - 1].to_vec()
        })
        .collect();
    assert_eq!(spans, stream);
    // `line L: duplicate: same text as PATH line L0`, L0 the first occurrence.
    let example = &m.inputs[2].rejection_examples[0];
    let (_, rest) = example.split_once(": duplicate: same text as ").unwrap();
    let (path, line) = rest.rsplit_once(" line ").unwrap();
    let f = files.iter().position(|p| p.name == path).unwrap();
    assert!(
        first.values().any(|&v| v == (f, line.parse().unwrap())),
        "{example}"
    );
    // The side file lists each distinct document once.
    let side = std::fs::metadata(out.join(dedup::DEDUP_FILE))
        .unwrap()
        .len();
    assert_eq!(side, 16 + 28 * first.len() as u64);
}

#[test]
fn dedup_is_the_same_for_any_thread_count_and_across_crashes() {
    for mode in [Dedup::Exact, Dedup::Near] {
        dedup_is_deterministic(mode);
    }
}

fn dedup_is_deterministic(mode: Dedup) {
    let dedup_options = |input: &Path, out: &Path, threads| mode_options(mode, input, out, threads);
    let dir = tempfile::tempdir().unwrap();
    let input = with_duplicates(dir.path());
    let reference = dir.path().join("reference");
    run(&dedup_options(&input, &reference, 1), toy(None)).unwrap();
    let expected = snapshot(&reference);
    assert!(
        Manifest::read_dir(&reference).unwrap().shards.len() >= 3,
        "the crashes below fall between shards"
    );
    let four = dir.path().join("four");
    run(&dedup_options(&input, &four, 4), toy(None)).unwrap();
    assert_eq!(snapshot(&four), expected);
    for crash_after in [0, 300, 520, 800, 1100] {
        let out = dir.path().join(format!("crash{crash_after}"));
        let err = run(&dedup_options(&input, &out, 2), toy(Some(crash_after))).unwrap_err();
        assert!(err.to_string().contains("simulated crash"), "{err}");
        // Records appended after the manifest's last update (a kill -9 between them).
        let mut side = std::fs::OpenOptions::new()
            .append(true)
            .open(out.join(dedup::DEDUP_FILE))
            .unwrap();
        std::io::Write::write_all(&mut side, &[0xab; 28 * 3]).unwrap();
        let report = run(&dedup_options(&input, &out, 3), toy(None)).unwrap();
        assert!(report.resumed);
        assert_eq!(
            snapshot(&out),
            expected,
            "{mode:?}: crash after {crash_after}"
        );
    }
    // Another mode over the same folder is refused.
    let err = run(&options(&input, &reference, 2), toy(None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("different options"), "{err}");
}

#[test]
fn dedup_near_drops_similar_documents_and_every_exact_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let input = with_duplicates(dir.path());
    let exact = run(
        &dedup_options(&input, &dir.path().join("exact"), 2),
        toy(None),
    )
    .unwrap();
    let near_out = dir.path().join("near");
    let near = run(&mode_options(Dedup::Near, &input, &near_out, 2), toy(None)).unwrap();
    // Exact duplicates have the same keys: near drops at least what exact drops.
    for (n, e) in near.manifest.inputs.iter().zip(&exact.manifest.inputs) {
        assert!(n.documents_rejected >= e.documents_rejected, "{}", n.path);
    }
    assert_eq!(
        near.manifest.totals.documents_read,
        exact.manifest.totals.documents_read
    );

    // A long document, the same with one word changed, and an unrelated one.
    let words: Vec<String> = (0..80).map(|i| format!("w{}", i * 13 % 97)).collect();
    let first = words.join(" ");
    let similar = first.replacen("w26", "changed", 1);
    let other: String = (0..80).map(|i| format!("x{i} ")).collect();
    let file = dir.path().join("near.jsonl");
    let lines: String = [&first, &similar, &other]
        .iter()
        .map(|t| format!("{}\n", serde_json::json!({ "text": t })))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = dir.path().join("pair");
    let m = run(&mode_options(Dedup::Near, &file, &out, 1), toy(None))
        .unwrap()
        .manifest;
    assert_eq!(m.totals.documents_accepted, 2);
    assert_eq!(
        m.inputs[0].rejection_examples,
        [format!(
            "line 2: duplicate: similar text to {} line 1",
            file.display()
        )]
    );
}

#[test]
fn strict_does_not_fail_on_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let input = with_duplicates(dir.path());
    let mut opts = dedup_options(&input, &dir.path().join("out"), 2);
    opts.strict = true;
    let report = run(&opts, toy(None)).unwrap();
    assert!(report.manifest.totals.documents_rejected > 0);
}

/// A shard commit writes only the input in progress; the finished ones go to the log
/// once each, and the final manifest lists them all.
#[test]
fn commits_log_finished_inputs_instead_of_rewriting_them() {
    use cocolm_shared::manifest::INPUT_LOG_FILE;
    let dir = tempfile::tempdir().unwrap();
    // Several work chunks over three inputs: a crash can fall after a commit.
    let input = with_duplicates(dir.path());
    let reference = dir.path().join("reference");
    let complete = run(&options(&input, &reference, 2), toy(None))
        .unwrap()
        .manifest;
    assert!(
        !reference.join(INPUT_LOG_FILE).exists(),
        "the log outlives the job"
    );
    let out = dir.path().join("out");
    // One worker: the chunks before the failing one are packed (and committed) first.
    run(&options(&input, &out, 1), toy(Some(1000))).unwrap_err();
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let resume = raw["resume"]["input"].as_u64().unwrap() as usize;
    assert!(resume > 0, "the crash falls after the first input");
    assert_eq!(raw["inputs"].as_array().unwrap().len(), 1);
    let log = std::fs::read_to_string(out.join(INPUT_LOG_FILE)).unwrap();
    assert_eq!(log.lines().count(), resume);
    // Read back, the partial manifest holds every input up to the resume point's, with
    // the counts the complete job ends with for the finished ones.
    let partial = Manifest::read_dir(&out).unwrap();
    assert_eq!(partial.inputs.len(), resume + 1);
    assert_eq!(partial.inputs[..resume], complete.inputs[..resume]);

    // A log cut short is refused by name.
    let log_path = out.join(INPUT_LOG_FILE);
    let bytes = std::fs::read(&log_path).unwrap();
    std::fs::write(&log_path, &bytes[..bytes.len() / 2]).unwrap();
    let err = run(&options(&input, &out, 2), toy(None))
        .unwrap_err()
        .to_string();
    assert!(err.contains(INPUT_LOG_FILE), "{err}");
}

/// A reader or packer on the CPU for most of a run of a second or more is named, the
/// busier of the two; short runs and runs spread over the tokenizer threads are not.
#[test]
fn names_the_single_thread_a_run_was_bound_by() {
    let second = 1_000_000_000;
    let timings = |wall_ns, read_cpu_ns, pack_cpu_ns| Timings {
        wall_ns,
        read_cpu_ns,
        pack_cpu_ns,
        encode_cpu_ns: 8 * wall_ns,
        ..Timings::default()
    };
    assert_eq!(
        timings(2 * second, second / 2, second * 19 / 10).bound_by_one_thread(),
        Some(("packer", 0.95))
    );
    assert_eq!(
        timings(2 * second, second * 17 / 10, second * 16 / 10).bound_by_one_thread(),
        Some(("reader", 0.85))
    );
    assert_eq!(
        timings(2 * second, second, second).bound_by_one_thread(),
        None
    );
    // A short run's fractions say little (start-up, the last shard's sync).
    assert_eq!(
        timings(second / 2, second / 2, second / 2).bound_by_one_thread(),
        None
    );
}
