//! `cocolm tokenizer train` → `prepare` → `stats` / `export`, bad inputs, kill -9.

use crate::util::{repo, run_err, run_ok};
use cocolm_pipeline::corpus::{Documents, ReadOptions};
use cocolm_pipeline::shard::reader::{ShardSet, Verify};
use cocolm_pipeline::tokenizer::{Encoder, EngineChoice, TokenizerJson};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The bundled corpus.
pub fn moby() -> PathBuf {
    repo().join("data/moby-dick.jsonl.zst")
}

/// Train a small BPE tokenizer on the bundled corpus into `dir`.
pub fn small_tokenizer(dir: &Path) -> PathBuf {
    let out = dir.join("tokenizer.json");
    run_ok(&[
        "tokenizer",
        "train",
        "--input",
        moby().to_str().unwrap(),
        "--vocab-size",
        "2000",
        "--out",
        out.to_str().unwrap(),
    ]);
    out
}

/// `cocolm prepare` of the bundled corpus with `tokenizer` into `out`, plus `extra`
/// arguments; returns stdout.
pub fn prepare_moby(tokenizer: &Path, out: &Path, extra: &[&str]) -> String {
    run_ok(&prepare_args(&moby(), tokenizer, out, extra))
}

/// The arguments of `cocolm prepare --input … --tokenizer … --out …` plus `extra`.
pub fn prepare_args(input: &Path, tokenizer: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let paths = [input, tokenizer, out].map(|p| p.to_str().unwrap().to_string());
    let [input, tokenizer, out] = paths;
    [
        "prepare",
        "--input",
        &input,
        "--tokenizer",
        &tokenizer,
        "--out",
        &out,
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

/// The token stream `prepare` should produce: documents encoded in order, joined by [SEP].
pub fn expected_stream(inputs: &[PathBuf], tokenizer: &Path) -> Vec<u32> {
    let tok = TokenizerJson::load(tokenizer).unwrap();
    let encoder = Encoder::new(&tok, EngineChoice::Auto).unwrap();
    let sep = tok.special_tokens().sep;
    let (files, _) = cocolm_pipeline::corpus::discover(inputs, &Default::default()).unwrap();
    let mut stream = Vec::new();
    for (i, text) in Documents::new(files, ReadOptions::default(), Default::default()).enumerate() {
        if i > 0 {
            stream.push(sep);
        }
        encoder.encode_into(&text, &mut stream).unwrap();
    }
    stream
}

/// The spans of all examples of a shard set, concatenated.
pub fn shard_stream(dir: &Path) -> Vec<u32> {
    let set = ShardSet::open(dir, Verify::Full).unwrap();
    (0..set.len())
        .flat_map(|i| set.example(i)[1..set.example(i).len() - 1].to_vec())
        .collect()
}

/// The files of a shard directory and their bytes (the job's lock file, which holds its
/// pid, aside).
pub fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != cocolm_shared::lock::LOCK_FILE)
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
fn bundled_corpus_round_trip_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    let shards = dir.path().join("shards");
    let extra = ["--seq-len", "128", "--shard-size", "64K"];
    let out = prepare_moby(&tokenizer, &shards, &extra);
    assert!(out.contains("135 accepted, 0 rejected"), "{out}");
    assert_eq!(
        shard_stream(&shards),
        expected_stream(&[moby()], &tokenizer)
    );
    let set = ShardSet::open(&shards, Verify::Full).unwrap();
    assert!(set.manifest().shards.len() > 3);

    let again = prepare_moby(&tokenizer, &shards, &extra);
    assert!(again.contains("already complete"), "{again}");

    let s = shards.to_str().unwrap();
    let report = run_ok(&["stats", s]);
    assert!(
        report.contains(&format!("examples          {}", set.len())),
        "{report}"
    );
    assert!(report.contains("\" the\""), "{report}");
    let sql = run_ok(&[
        "stats",
        s,
        "--sql",
        "SELECT SUM(length) AS tokens FROM examples",
    ]);
    assert!(
        sql.contains(&set.manifest().totals.tokens.to_string()),
        "{sql}"
    );
    let err = run_err(&["stats", s, "--sql", "SELECT nope FROM examples"]);
    assert!(err.contains("nope"), "{err}");

    let pq = dir.path().join("pq");
    let out = run_ok(&["export", s, "--parquet", pq.to_str().unwrap()]);
    assert!(
        out.contains(&format!(
            "wrote {} Parquet files",
            set.manifest().shards.len()
        )),
        "{out}"
    );
}

#[test]
fn thread_count_does_not_change_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    let mut outputs = Vec::new();
    for threads in ["1", "3"] {
        let out = dir.path().join(format!("t{threads}"));
        prepare_moby(
            &tokenizer,
            &out,
            &[
                "--seq-len",
                "64",
                "--shard-size",
                "100K",
                "--threads",
                threads,
            ],
        );
        outputs.push(files_of(&out));
    }
    assert_eq!(outputs[0], outputs[1]);
}

/// Every kind of bad input: counted with its reason, named in the summary, never lost.
#[test]
fn bad_inputs_are_counted_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    let input = dir.path().join("bad");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("good.txt"), "Call me Ishmael.").unwrap();
    std::fs::write(input.join("latin1.txt"), b"caf\xe9 au lait").unwrap();
    std::fs::write(input.join("empty.txt"), b"").unwrap();
    std::fs::write(input.join("image.txt"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    std::fs::write(
        input.join("lines.jsonl"),
        "{\"text\": \"fine\"}\n{\"text\": \"oops\"\n{\"other\": 1}\n{\"text\": \"also fine\"}\n",
    )
    .unwrap();
    let mut lines = String::new();
    // Poorly compressible, so that the zstd stream has many blocks before the cut.
    let mut x = 1u64;
    for i in 0..20_000 {
        x = cocolm_shared::hash::mix64(x);
        lines.push_str(&format!(
            "{{\"text\": \"document {i} {x:x} {:x}\"}}\n",
            x.rotate_left(17)
        ));
    }
    let z = zstd::encode_all(lines.as_bytes(), 3).unwrap();
    std::fs::write(input.join("truncated.jsonl.zst"), &z[..z.len() / 2]).unwrap();
    let mut big = std::fs::File::create(input.join("huge.jsonl")).unwrap();
    big.write_all(b"{\"text\": \"").unwrap();
    big.write_all(&vec![b'a'; 50 << 20]).unwrap();
    big.write_all(b"\"}\n{\"text\": \"after the huge line\"}\n")
        .unwrap();
    drop(big);

    let out_dir = dir.path().join("out");
    let args = prepare_args(&input, &tokenizer, &out_dir, &["--seq-len", "32"]);
    let out = run_ok(&args);
    for expected in [
        "latin1.txt: 1 invalid utf-8",
        "empty.txt: 1 empty document",
        "image.txt: 1 binary content",
        "lines.jsonl: 1 malformed json, 1 missing text field",
        "line 2: malformed json",
        "huge.jsonl: 1 document too large",
        "line 1: document too large: 52428812 bytes exceed --max-doc-bytes 16777216",
        "truncated.jsonl.zst: 1 truncated or corrupt compressed data",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let m = cocolm_shared::Manifest::read_dir(&out_dir).unwrap();
    let per_input: BTreeMap<&str, (u64, u64)> = m
        .inputs
        .iter()
        .map(|i| {
            (
                Path::new(&i.path).file_name().unwrap().to_str().unwrap(),
                (i.documents_accepted, i.documents_rejected),
            )
        })
        .collect();
    assert_eq!(per_input["good.txt"], (1, 0));
    assert_eq!(per_input["lines.jsonl"], (2, 2));
    assert_eq!(per_input["huge.jsonl"], (1, 1));
    let (acc, rej) = per_input["truncated.jsonl.zst"];
    assert!(acc > 100 && rej == 1, "{acc} {rej}");
    assert_eq!(
        m.totals.documents_read,
        m.totals.documents_accepted + m.totals.documents_rejected
    );

    let strict = dir.path().join("strict");
    let err = run_err(&prepare_args(
        &input,
        &tokenizer,
        &strict,
        &["--seq-len", "32", "--strict"],
    ));
    assert!(
        err.contains("empty.txt") && err.contains("rejected under --strict"),
        "{err}"
    );
}

#[test]
fn missing_or_unknown_inputs_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    let out = dir.path().join("o");
    let err = run_err(&[
        "prepare",
        "--input",
        "/no/such/file.txt",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("/no/such/file.txt"), "{err}");
    let odd = dir.path().join("table.csv");
    std::fs::write(&odd, "a,b").unwrap();
    let err = run_err(&[
        "prepare",
        "--input",
        odd.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        err.contains("table.csv") && err.contains("unknown input format"),
        "{err}"
    );
    let bad_tok = dir.path().join("bad.json");
    std::fs::write(&bad_tok, "{ not json").unwrap();
    let err = run_err(&[
        "prepare",
        "--input",
        moby().to_str().unwrap(),
        "--tokenizer",
        bad_tok.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("bad.json"), "{err}");
}

/// `--dedup exact` over the bundled corpus and a copy of it: the copy adds nothing, every
/// document of it is counted as a duplicate of the same line of the original.
#[test]
fn dedup_exact_drops_a_copied_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    let copy = dir.path().join("copy.jsonl.zst");
    std::fs::copy(moby(), &copy).unwrap();
    let alone = dir.path().join("alone");
    prepare_moby(&tokenizer, &alone, &["--seq-len", "64", "--dedup", "exact"]);
    let both = dir.path().join("both");
    let mut args = prepare_args(&moby(), &tokenizer, &both, &["--seq-len", "64"]);
    args.extend(["--input", copy.to_str().unwrap(), "--dedup", "exact"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = run_ok(&args);
    assert_eq!(shard_stream(&both), shard_stream(&alone));
    let manifest = cocolm_shared::Manifest::read_dir(&both).unwrap();
    let [original, copied] = &manifest.inputs[..] else {
        panic!("two inputs")
    };
    assert!(original.documents_accepted > 100);
    assert_eq!(copied.documents_rejected, original.documents_accepted);
    assert_eq!(copied.rejections["duplicate"], original.documents_accepted);
    let first = &copied.rejection_examples[0];
    let (line, rest) = first.split_once(": duplicate: same text as ").unwrap();
    assert_eq!(rest, format!("{} {line}", moby().display()), "{first}");
    assert!(summary.contains("duplicate"), "{summary}");
    let err = run_err(&["prepare", "--dedup", "fuzzy"]);
    assert!(
        err.contains("fuzzy") && err.contains("none, exact or near"),
        "{err}"
    );
}

/// `prepare --part K/N` on each part of five inputs, then `merge`: the merged set holds
/// every document of a single `prepare`, in order, and reads like any other set.
#[test]
fn parts_prepared_apart_merge_into_the_single_jobs_set() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    let (files, _) = cocolm_pipeline::corpus::discover(&[moby()], &Default::default()).unwrap();
    let docs: Vec<String> =
        Documents::new(files, ReadOptions::default(), Default::default()).collect();
    for (k, chunk) in docs.chunks(docs.len().div_ceil(5)).enumerate() {
        let lines: String = chunk
            .iter()
            .map(|text| format!("{}\n", serde_json::json!({ "text": text })))
            .collect();
        std::fs::write(inputs.join(format!("{k}.jsonl")), lines).unwrap();
    }
    let prepare = |out: &Path, extra: &[&str]| {
        let mut extra = extra.to_vec();
        extra.extend(["--seq-len", "64", "--shard-size", "20K"]);
        let args = prepare_args(&inputs, &tokenizer, out, &extra);
        run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let single = dir.path().join("single");
    prepare(&single, &[]);
    let mut parts = Vec::new();
    for k in 0..3 {
        let out = dir.path().join(format!("part{k}"));
        let summary = prepare(&out, &["--part", &format!("{k}/3")]);
        assert!(summary.contains(&format!("part {k}/3: ")), "{summary}");
        parts.push(out.to_str().unwrap().to_string());
    }
    let merged = dir.path().join("merged");
    let mut args = vec!["merge", merged.to_str().unwrap()];
    args.extend(parts.iter().map(String::as_str));
    let summary = run_ok(&args);
    assert!(summary.contains("3 parts merged"), "{summary}");
    let (a, b) = (
        cocolm_shared::Manifest::read_dir(&single).unwrap(),
        cocolm_shared::Manifest::read_dir(&merged).unwrap(),
    );
    assert_eq!(a.inputs, b.inputs);
    assert_eq!(a.totals.documents_accepted, docs.len() as u64);
    assert_eq!(b.totals.documents_accepted, docs.len() as u64);
    // Each part ends in its own last example: the merged set has at most 2 more.
    assert!((a.totals.examples..=a.totals.examples + 2).contains(&b.totals.examples));
    let stats = run_ok(&["stats", merged.to_str().unwrap(), "--json"]);
    assert!(stats.contains("\"examples\""), "{stats}");
    let err = run_err(&["prepare", "--part", "3/3"]);
    assert!(err.contains("0 <= K < N"), "{err}");
}
