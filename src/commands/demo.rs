//! `cocolm demo`: the embedded default. The bundled corpus (compiled into the binary)
//! → a BPE tokenizer → shards → a short training run → a loss plot, then a summary of
//! where everything is and what the losses did.

use super::train::data::SourceSpec;
use super::train::{TrainPlan, train};
use crate::cli::DemoArgs;
use anyhow::{Context, Result, bail};
use cocolm_pipeline::corpus::ReadOptions;
use cocolm_pipeline::prepare::{PrepareOptions, TokenizerArtifact, prepare};
use cocolm_pipeline::tokenizer::{Encoder, EngineChoice, ModelKind};
use cocolm_shared::RunConfig;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The bundled corpus: Moby Dick, one JSON line per chapter, zstd.
const CORPUS: &[u8] = include_bytes!("../../data/moby-dick.jsonl.zst");
/// The demo's run configuration.
const CONFIG: &str = include_str!("../../configs/demo.toml");
/// A file that marks a directory as the demo's own, so a re-run may clear it.
const MARKER: &str = ".cocolm-demo";

/// `cocolm demo`.
pub fn run(args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    let out = &args.out;
    claim(out)?;
    let corpus = out.join("corpus/moby-dick.jsonl.zst");
    std::fs::create_dir_all(corpus.parent().expect("has a parent"))?;
    std::fs::write(&corpus, CORPUS).with_context(|| format!("writing {}", corpus.display()))?;

    let (vocab_size, seq_len) = if args.quick { (1000, 64) } else { (8000, 128) };
    println!(
        "[1/4] training a {vocab_size}-id byte-level BPE tokenizer on {}",
        corpus.display()
    );
    let tokenizer = super::tokenizer::train_on(
        std::slice::from_ref(&corpus),
        &ReadOptions::default(),
        &Default::default(),
        ModelKind::Bpe,
        vocab_size,
    )?;
    let tokenizer_path = out.join("tokenizer.json");
    tokenizer.save(&tokenizer_path)?;

    println!("[2/4] preparing shards of {seq_len} tokens");
    let shards = out.join("shards");
    let mut options = PrepareOptions::new(vec![corpus.clone()], shards.clone());
    options.seq_len = seq_len;
    let artifact = TokenizerArtifact {
        record: tokenizer.record(tokenizer_path.display().to_string()),
        json: tokenizer.json().as_bytes().to_vec(),
    };
    let encoder = Encoder::new(&tokenizer, EngineChoice::Auto)?;
    let report = prepare(&options, &artifact, Arc::new(encoder), &mut |_| {})?;
    let totals = report.manifest.totals;
    println!(
        "      {} documents → {} examples, {} tokens",
        totals.documents_accepted, totals.examples, totals.tokens
    );

    let mut config = RunConfig::from_toml_str(CONFIG, Path::new("configs/demo.toml"))?;
    if args.quick {
        config.model.hidden_size = 32;
        config.model.num_layers = 2;
        config.model.num_heads = 2;
        config.model.ffn_size = 64;
        config.model.max_positions = seq_len;
        config.train.steps = 30;
        config.train.warmup_steps = 5;
        config.train.log_every = 5;
        config.train.checkpoint_every = 10;
    }
    let model = &config.model;
    println!(
        "[3/4] training COCO-LM ({} layers, hidden {}, {}-layer generator) for {} steps of {} sequences on the CPU",
        model.num_layers,
        model.hidden_size,
        model.generator_depth(),
        config.train.steps,
        config.train.batch_size
    );
    let run_dir = out.join("run");
    let summary = train(TrainPlan {
        sources: vec![SourceSpec {
            path: shards.clone(),
            weight: "1".into(),
        }],
        out: &run_dir,
        config,
        resume: false,
        verify: true,
        eval: None,
        init_from_hf: None,
    })?;

    println!("[4/4] done in {:.0} s", started.elapsed().as_secs_f64());
    println!("  tokenizer    {}", tokenizer_path.display());
    println!("  shards       {} (cocolm stats {0})", shards.display());
    println!("  metrics      {}", run_dir.join("metrics.jsonl").display());
    println!("  loss plot    {}", run_dir.join("loss.svg").display());
    if let Some(checkpoint) = &summary.last_checkpoint {
        println!("  checkpoint   {}", checkpoint.display());
    }
    print_losses(&run_dir.join("metrics.jsonl"))
}

/// Make `out` the demo's directory: create it, or clear a previous demo's.
fn claim(out: &Path) -> Result<()> {
    if out.exists() {
        let ours = out.join(MARKER).exists();
        let empty = std::fs::read_dir(out)?.next().is_none();
        if !ours && !empty {
            bail!(
                "{} exists and was not made by `cocolm demo`; choose another --out",
                out.display()
            );
        }
        for sub in ["corpus", "shards", "run", "tokenizer.json"] {
            let path = out.join(sub);
            if path.is_dir() {
                std::fs::remove_dir_all(&path)
                    .with_context(|| format!("clearing {}", path.display()))?;
            } else if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("clearing {}", path.display()))?;
            }
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join(MARKER), "made by cocolm demo\n")?;
    Ok(())
}

/// First and last logged value of every loss component.
fn print_losses(metrics: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics)
        .with_context(|| format!("reading {}", metrics.display()))?;
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        bail!("{}: no steps logged", metrics.display());
    };
    println!(
        "  what the losses did (step {} → step {}):",
        first["step"], last["step"]
    );
    for (key, what) in [
        ("loss", "total loss"),
        ("mlm_loss", "generator MLM loss"),
        ("mlm_accuracy", "generator MLM accuracy"),
        ("copy_loss", "copy loss (is the token original?)"),
        ("copy_accuracy", "copy accuracy"),
        ("clm_loss", "corrective LM loss"),
        (
            "replaced_fraction",
            "masked positions the generator replaced",
        ),
    ] {
        if let (Some(a), Some(b)) = (first[key].as_f64(), last[key].as_f64()) {
            println!("    {what:<42} {a:>8.4} → {b:>8.4}");
        }
    }
    Ok(())
}
