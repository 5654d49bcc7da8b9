//! `cocolm finetune`: labelled TSV files, tokenized with the run's tokenizer, fine-tune
//! the pretrained corrector (or the same architecture from scratch) through
//! `cocolm_trainer::finetune`, and report accuracy and macro-F1.

use crate::cli::FinetuneArgs;
use crate::progress::bar;
use anyhow::{Context, Result, bail};
use burn::module::AutodiffModule;
use cocolm_pipeline::tokenizer::{Encoder, EngineChoice};
use cocolm_shared::hash::{SplitMix64, seed_of};
use cocolm_trainer::CpuBackend;
use cocolm_trainer::finetune::{Classifier, Example, FitEvent, FitOptions, Scores, evaluate, fit};
use cocolm_trainer::model::CocoLm;
use cocolm_trainer::pretrained::Pretrained;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One line of a TSV file.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    text: String,
    label: String,
    /// 1-based line number, for errors.
    line: usize,
}

/// `cocolm finetune`.
pub fn run(args: &FinetuneArgs) -> Result<()> {
    let started = Instant::now();
    let device = Default::default();
    let pretrained = Pretrained::<CpuBackend>::load(&args.checkpoint, &device)?;
    let config = pretrained.config.clone();
    let tokenizer = super::train::run_tokenizer(
        args.tokenizer.as_deref(),
        &pretrained.run,
        config.model.vocab_size,
    )?;
    let max_len = args.max_len.unwrap_or(128.min(config.model.max_positions));
    if max_len < 3 || max_len > config.model.max_positions {
        bail!(
            "--max-len {max_len} must be between 3 and the model's {} positions",
            config.model.max_positions
        );
    }
    let encoder = Encoder::new(&tokenizer, EngineChoice::Auto)?;

    let train_rows = read_tsv(&args.train)?;
    let labels: Vec<String> = train_rows
        .iter()
        .map(|r| r.label.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let index: BTreeMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut train_rows = train_rows;
    if let Some(n) = args.train_per_label {
        train_rows = per_label(train_rows, n, args.seed);
    }
    let special = tokenizer.special_tokens();
    let mut truncated = 0usize;
    let mut examples = |path: &Path, rows: &[Row]| -> Result<Vec<Example>> {
        rows.iter()
            .map(|row| {
                let Some(&label) = index.get(row.label.as_str()) else {
                    bail!(
                        "{}: line {}: label `{}` does not occur in the training file {}",
                        path.display(),
                        row.line,
                        row.label,
                        args.train.display()
                    );
                };
                let mut ids = vec![special.cls];
                let mut text = encoder
                    .encode(&row.text)
                    .with_context(|| format!("{}: line {}", path.display(), row.line))?;
                if text.len() > max_len - 2 {
                    text.truncate(max_len - 2);
                    truncated += 1;
                }
                ids.extend(text);
                ids.push(special.sep);
                Ok(Example { ids, label })
            })
            .collect()
    };
    let train = examples(&args.train, &train_rows)?;
    let dev = examples(&args.dev, &read_tsv(&args.dev)?)?;
    let test = match &args.test {
        Some(path) => Some(examples(path, &read_tsv(path)?)?),
        None => None,
    };

    let options = FitOptions {
        epochs: args.epochs,
        lr: args.lr,
        batch_size: args.batch_size,
        warmup_fraction: 0.1,
        weight_decay: 0.01,
        clip_norm: 1.0,
        patience: args.patience,
        seed: args.seed,
        pad: special.pad,
    };
    // One seed for the head (and, from scratch, every weight) and for dropout.
    <CpuBackend as burn::tensor::backend::Backend>::seed(&device, seed_of(&[args.seed, 0x6674]));
    let model = if args.from_scratch {
        CocoLm::init(&config.model, &device)?
    } else {
        pretrained.model
    };
    let classifier = Classifier::new(model, &config.model, labels.len(), &device);
    let start = if args.from_scratch {
        "from scratch".to_string()
    } else {
        format!(
            "from {} (step {})",
            pretrained.path.display(),
            pretrained.step
        )
    };
    eprintln!(
        "fine-tuning {start}: {} labels, {} training / {} dev{} examples{}",
        labels.len(),
        train.len(),
        dev.len(),
        test.as_ref()
            .map_or(String::new(), |t| format!(" / {} test", t.len())),
        if truncated > 0 {
            format!(" ({truncated} cut to {max_len} tokens)")
        } else {
            String::new()
        }
    );
    let progress = bar(0, "{elapsed_precise} [{wide_bar}] update {pos}/{len} {msg}");
    let fitted = fit(
        classifier,
        &train,
        &dev,
        &options,
        &device,
        |event| match event {
            FitEvent::Update { done, total } => {
                progress.set_length(total);
                progress.set_position(done);
            }
            FitEvent::Epoch(e) => progress.suspend(|| {
                println!(
                    "epoch {}: train loss {:.4}, dev accuracy {:.4}, macro-F1 {:.4} ({:.0} s)",
                    e.epoch, e.train_loss, e.dev.accuracy, e.dev.macro_f1, e.seconds
                );
            }),
        },
    )?;
    progress.finish_and_clear();
    let model = fitted.model.valid();
    let dev_scores = fitted.history[fitted.best_epoch - 1].dev;
    let test_scores = test
        .as_ref()
        .map(|t| evaluate(&model, t, labels.len(), &options, &device));
    let line = |name: &str, s: &Scores| {
        println!(
            "{name}: accuracy {:.4}, macro-F1 {:.4} ({} examples)",
            s.accuracy, s.macro_f1, s.examples
        );
    };
    println!("chosen: epoch {}", fitted.best_epoch);
    line("dev", &dev_scores);
    if let Some(s) = &test_scores {
        line("test", s);
    }

    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(args, &pretrained.run));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let results = serde_json::json!({
        "checkpoint": pretrained.path,
        "checkpoint_step": pretrained.step,
        "from_scratch": args.from_scratch,
        "train": args.train,
        "dev": args.dev,
        "test": args.test,
        "labels": labels.len(),
        "train_examples": train.len(),
        "train_per_label": args.train_per_label,
        "truncated": truncated,
        "max_len": max_len,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "patience": args.patience,
        "seed": args.seed,
        "history": fitted.history,
        "best_epoch": fitted.best_epoch,
        "dev_scores": dev_scores,
        "test_scores": test_scores,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let path = out.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// `RUN/finetune/<train file's folder>-<pretrained|scratch>[-N-per-label]`.
fn default_out(args: &FinetuneArgs, run: &Path) -> PathBuf {
    let task = args
        .train
        .parent()
        .and_then(Path::file_name)
        .or_else(|| args.train.file_stem())
        .map_or_else(|| "task".into(), |n| n.to_string_lossy().into_owned());
    let start = if args.from_scratch {
        "scratch"
    } else {
        "pretrained"
    };
    let subset = args
        .train_per_label
        .map_or(String::new(), |n| format!("-{n}-per-label"));
    run.join("finetune").join(format!("{task}-{start}{subset}"))
}

/// The rows of a `text<TAB>label` file; a first line `text<TAB>label` is a header.
fn read_tsv(path: &Path) -> Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if i == 0 && line.eq_ignore_ascii_case("text\tlabel") {
            continue;
        }
        let at = |what: &str| format!("{}: line {}: {what}", path.display(), i + 1);
        let Some((text, label)) = line.rsplit_once('\t') else {
            bail!(at("no tab between the text and its label"));
        };
        if text.trim().is_empty() {
            bail!(at("empty text"));
        }
        if label.trim().is_empty() {
            bail!(at("empty label"));
        }
        rows.push(Row {
            text: text.to_string(),
            label: label.trim().to_string(),
            line: i + 1,
        });
    }
    if rows.is_empty() {
        bail!("{}: no examples", path.display());
    }
    Ok(rows)
}

/// At most `n` rows of each label, drawn with `seed`, in file order.
fn per_label(rows: Vec<Row>, n: usize, seed: u64) -> Vec<Row> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    SplitMix64::new(seed_of(&[seed, 0x7375_6273])).shuffle(&mut order);
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    let mut keep = vec![false; rows.len()];
    for i in order {
        let count = taken.entry(rows[i].label.as_str()).or_default();
        if *count < n {
            *count += 1;
            keep[i] = true;
        }
    }
    rows.into_iter()
        .zip(keep)
        .filter_map(|(row, keep)| keep.then_some(row))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tsv(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tsv");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_rows_with_or_without_a_header() {
        let (_d, path) = tsv("text\tlabel\nhello there\tgreet\r\nbye\tleave\n");
        let rows = read_tsv(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].text.as_str(), rows[0].label.as_str(), rows[0].line),
            ("hello there", "greet", 2)
        );
        assert_eq!(rows[1].label, "leave");
        let (_d, path) = tsv("hello\tgreet\n");
        assert_eq!(read_tsv(&path).unwrap()[0].line, 1);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        for (content, what) in [
            ("a\tx\nno tab here\n", "line 2: no tab"),
            ("a\tx\n \ty\n", "line 2: empty text"),
            ("text\tlabel\na\t\n", "line 2: empty label"),
            ("text\tlabel\n", "no examples"),
        ] {
            let (_d, path) = tsv(content);
            let err = read_tsv(&path).unwrap_err().to_string();
            assert!(
                err.contains("x.tsv") && err.contains(what),
                "{content:?}: {err}"
            );
        }
    }

    #[test]
    fn the_per_label_subset_is_fixed_by_the_seed_and_keeps_file_order() {
        let rows: Vec<Row> = (0..60)
            .map(|i| Row {
                text: format!("t{i}"),
                label: format!("l{}", i % 3),
                line: i + 1,
            })
            .collect();
        let a = per_label(rows.clone(), 4, 7);
        assert_eq!(a.len(), 12);
        for l in ["l0", "l1", "l2"] {
            assert_eq!(a.iter().filter(|r| r.label == l).count(), 4);
        }
        assert!(a.windows(2).all(|w| w[0].line < w[1].line));
        assert_eq!(a, per_label(rows.clone(), 4, 7));
        assert_ne!(a, per_label(rows.clone(), 4, 8));
        assert_eq!(per_label(rows, 100, 7).len(), 60);
    }
}
