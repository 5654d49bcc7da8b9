//! `cocolm finetune` end to end: from a run and from scratch, the per-label subset, the
//! results file, and bad TSV rows named by file and line.

use crate::train::{shards, tiny_config, train_args};
use crate::util::{run_err, run_ok};
use std::path::{Path, PathBuf};

/// A three-label task in words of the bundled corpus, `rows` lines with a header.
fn task(dir: &Path, name: &str, rows: usize) -> PathBuf {
    let words = [
        ("sea", "whale ship sea sail water"),
        ("land", "land town horse field road"),
        ("man", "captain man old he his"),
    ];
    let mut text = String::from("text\tlabel\n");
    for i in 0..rows {
        let (label, vocabulary) = words[i % 3];
        let mut line: Vec<&str> = vocabulary.split(' ').collect();
        line.rotate_left(i % 5);
        text.push_str(&format!("{} the {}\t{label}\n", line.join(" "), i % 7));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn results(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path.join("results.json")).unwrap()).unwrap()
}

#[test]
fn finetunes_from_a_run_and_from_scratch_and_names_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    let config = tiny_config(dir.path(), 3, 3);
    let run = dir.path().join("run");
    run_ok(&train_args(&data, &config, &run, &[]));
    assert!(
        run.join("tokenizer.json").is_file(),
        "train copies the tokenizer into the run"
    );
    let (train, dev, test) = (
        task(dir.path(), "train.tsv", 60),
        task(dir.path(), "dev.tsv", 15),
        task(dir.path(), "test.tsv", 15),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let base = |out: &Path| {
        vec![
            "finetune".to_string(),
            "--checkpoint".into(),
            s(&run),
            "--train".into(),
            s(&train),
            "--dev".into(),
            s(&dev),
            "--test".into(),
            s(&test),
            "--epochs".into(),
            "2".into(),
            "--batch-size".into(),
            "8".into(),
            "--out".into(),
            s(out),
        ]
    };

    let pretrained = dir.path().join("pretrained");
    let printed = run_ok(&base(&pretrained));
    assert!(printed.contains("test: accuracy"), "{printed}");
    let r = results(&pretrained);
    assert_eq!(r["from_scratch"], false);
    assert_eq!(r["labels"], 3);
    assert_eq!(r["train_examples"], 60);
    assert_eq!(r["checkpoint_step"], 3);
    let history = r["history"].as_array().unwrap();
    assert!(!history.is_empty() && history.len() <= 2);
    let best = r["best_epoch"].as_u64().unwrap() as usize;
    assert_eq!(r["dev_scores"], history[best - 1]["dev"]);
    for scores in [&r["dev_scores"], &r["test_scores"]] {
        let accuracy = scores["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{scores}");
        assert_eq!(scores["examples"], 15);
    }

    let scratch = dir.path().join("scratch");
    let mut args = base(&scratch);
    args.extend(["--from-scratch", "--train-per-label", "4"].map(String::from));
    run_ok(&args);
    let r = results(&scratch);
    assert_eq!(r["from_scratch"], true);
    assert_eq!(r["train_examples"], 12, "4 of each of 3 labels");

    // A label the training file lacks, and a row without a tab.
    let odd = dir.path().join("odd.tsv");
    std::fs::write(&odd, "text\tlabel\nwhale\tsea\nsome ship\tsky\n").unwrap();
    let mut args = base(&dir.path().join("x"));
    args[6] = s(&odd);
    let err = run_err(&args);
    assert!(
        err.contains("odd.tsv: line 3") && err.contains("`sky`"),
        "{err}"
    );
    std::fs::write(&odd, "whale\tsea\nno tab\n").unwrap();
    let mut args = base(&dir.path().join("x"));
    args[4] = s(&odd);
    let err = run_err(&args);
    assert!(err.contains("odd.tsv: line 2: no tab"), "{err}");
}
