//! The real Python clients: pyarrow, Hugging Face datasets and tokenizers read what we
//! write and agree with our ids. Skipped, with a reason, where the modules are absent.

use crate::prepare::{
    expected_stream, moby, prepare_args, prepare_moby, shard_stream, small_tokenizer,
};
use crate::util::{python_script, python_with, run_ok, shared};
use cocolm_pipeline::shard::reader::{ShardSet, Verify};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn pyarrow_and_datasets_read_the_shards() {
    let Some(python) = python_with(&["pyarrow", "datasets"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    let shards = dir.path().join("shards");
    prepare_moby(
        &tokenizer,
        &shards,
        &["--seq-len", "128", "--shard-size", "100K"],
    );
    let out = python_script(&python, "read_shards.py", &[shards.to_str().unwrap()]);
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    let set = ShardSet::open(&shards, Verify::Full).unwrap();
    let examples: Vec<Vec<u32>> = serde_json::from_value(got["examples"].clone()).unwrap();
    assert_eq!(examples.len() as u64, set.len());
    for (i, e) in examples.iter().enumerate() {
        assert_eq!(e.as_slice(), set.example(i as u64), "example {i}");
    }
    assert_eq!(got["datasets_rows"], set.len());
    let batches: usize = set
        .manifest()
        .shards
        .iter()
        .map(|s| s.batch_offsets.len())
        .sum();
    assert_eq!(got["random_access_batches"], batches);
}

/// Python `tokenizers` on the same documents gives the ids in our shards.
fn python_agrees(python: &Path, tokenizer: &Path, inputs: &[std::path::PathBuf], shards: &Path) {
    let (files, _) = cocolm_pipeline::corpus::discover(inputs).unwrap();
    let texts: Vec<String> =
        cocolm_pipeline::corpus::Documents::new(files, Default::default(), Default::default())
            .collect();
    // Python loads the tokenizer copy beside the shards (special tokens included).
    let copy = shards.join("tokenizer.json");
    let mut child = Command::new(python)
        .arg(crate::util::repo().join("tests/python/tokenizer_ids.py"))
        .arg(&copy)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&texts).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let ids: Vec<Vec<u32>> = serde_json::from_slice(&out.stdout).unwrap();
    let sep = cocolm_shared::Manifest::read_dir(shards)
        .unwrap()
        .tokenizer
        .special_tokens
        .sep;
    let python_stream: Vec<u32> = ids
        .iter()
        .enumerate()
        .flat_map(|(i, doc)| {
            (i > 0)
                .then_some(sep)
                .into_iter()
                .chain(doc.iter().copied())
        })
        .collect();
    let ours = shard_stream(shards);
    assert_eq!(ours.len(), python_stream.len());
    assert!(ours == python_stream, "token streams differ");
    assert_eq!(ours, expected_stream(inputs, tokenizer));
}

#[test]
fn python_tokenizers_gives_our_ids_for_a_trained_tokenizer() {
    let Some(python) = python_with(&["tokenizers"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    let shards = dir.path().join("shards");
    prepare_moby(&tokenizer, &shards, &["--seq-len", "256"]);
    python_agrees(&python, &tokenizer, &[moby()], &shards);
}

#[test]
fn python_tokenizers_gives_our_ids_for_the_128k_tokenizer() {
    let Some(shared) = shared() else { return };
    let Some(python) = python_with(&["tokenizers"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = shared.join("data/tokenizers/llama3-128k.tokenizer.json.zst");
    let input = shared.join("data/corpus/wikipedia-summaries.jsonl.zst");
    let shards = dir.path().join("shards");
    let out = run_ok(&prepare_args(
        &input,
        &tokenizer,
        &shards,
        &["--seq-len", "512"],
    ));
    assert!(out.contains("10033 accepted"), "{out}");
    let m = cocolm_shared::Manifest::read_dir(&shards).unwrap();
    assert_eq!(m.tokenizer.vocab_size, 128_261);
    assert_eq!(m.tokenizer.added_special_tokens.len(), 5);
    python_agrees(&python, &tokenizer, &[input], &shards);
}
