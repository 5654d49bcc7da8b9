//! The real Python clients: pyarrow, Hugging Face datasets and tokenizers read what we
//! write and agree with our ids. Skipped, with a reason, where the modules are absent.

use crate::prepare::{
    expected_stream, moby, prepare_args, prepare_moby, shard_stream, small_tokenizer,
};
use crate::util::{python_optional, python_script, python_with, run_ok, shared};
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
    let (files, _) = cocolm_pipeline::corpus::discover(inputs, &Default::default()).unwrap();
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

/// `cocolm export-hf` loads in Hugging Face transformers, which computes the corrector's
/// hidden states and the generator's logits that cocolm computes (a model without the
/// relative-position bias, which ELECTRA lacks).
#[test]
fn transformers_computes_what_cocolm_computes_from_an_export() {
    use cocolm_trainer::CpuInner;
    use cocolm_trainer::model::EncoderInput;
    use cocolm_trainer::params::{NamedTensor, tensor_to_vec};
    use cocolm_trainer::pretrained::Pretrained;
    let Some(python) = python_optional(&["torch", "transformers", "safetensors"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = crate::train::shards(dir.path());
    let config = crate::train::tiny_config(dir.path(), 2, 2);
    let run = dir.path().join("run");
    let overrides = [
        "--set",
        "model.relative_position=false",
        "--set",
        "model.type_vocab_size=2",
    ];
    run_ok(&crate::train::train_args(&data, &config, &run, &overrides));
    let export = dir.path().join("hf");
    run_ok(&["export-hf", run.to_str().unwrap(), export.to_str().unwrap()]);

    let device = Default::default();
    let p = Pretrained::<CpuInner>::load(&run, &device).unwrap();
    let set = ShardSet::open(&data, Verify::Full).unwrap();
    let (batch, seq, lengths) = (2usize, 24usize, [24u32, 13]);
    let mut ids = Vec::new();
    for (row, &len) in lengths.iter().enumerate() {
        ids.extend_from_slice(&set.example(row as u64)[..len as usize]);
        ids.resize((row + 1) * seq, 0);
    }
    let input = EncoderInput::<CpuInner>::new(&ids, &lengths, batch, seq, &device);
    let tokens = p.model.token_embedding.val();
    let hidden = p.model.corrector.backbone.forward(tokens.clone(), &input);
    let all = burn::tensor::Tensor::<CpuInner, 1, burn::tensor::Int>::arange(
        0..(batch * seq) as i64,
        &device,
    );
    let logits = p.model.generator.forward(tokens, &input, all);
    let vocab = logits.dims()[1];
    let width = hidden.dims()[1];
    let io = dir.path().join("io.safetensors");
    let tensor = |name: &str, shape: Vec<usize>, data: Vec<f32>| NamedTensor {
        name: name.into(),
        shape,
        data,
    };
    cocolm_trainer::tensor_file::write(
        &io,
        &[
            tensor(
                "input_ids",
                vec![batch, seq],
                ids.iter().map(|&i| i as f32).collect(),
            ),
            tensor(
                "lengths",
                vec![batch],
                lengths.iter().map(|&l| l as f32).collect(),
            ),
            tensor("hidden", vec![batch, seq, width], tensor_to_vec(hidden)),
            tensor(
                "generator_logits",
                vec![batch, seq, vocab],
                tensor_to_vec(logits),
            ),
        ],
    )
    .unwrap();
    let out = python_script(
        &python,
        "hf_electra.py",
        &[export.to_str().unwrap(), io.to_str().unwrap()],
    );
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    for part in ["corrector", "generator"] {
        let error = got[part].as_f64().unwrap();
        assert!(error <= 1e-5, "{part}: relative error {error}");
    }
    assert!(
        !got["tokenizer_ids"].as_array().unwrap().is_empty(),
        "{got}"
    );
    eprintln!("transformers vs cocolm: {got}");
}
