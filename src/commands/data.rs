//! `cocolm stats` and `cocolm export`.

use crate::cli::{ExportArgs, StatsArgs};
use anyhow::{Context, Result};
use cocolm_pipeline::loader::blend::Schedule;
use cocolm_pipeline::shard::reader::{ShardSet, Verify};
use cocolm_pipeline::stats::{Sql, report};
use cocolm_shared::RunConfig;
use std::io::Write;

/// `cocolm stats DIR [--sql …]`.
pub fn stats(args: &StatsArgs) -> Result<()> {
    if args.plan {
        return plan(args);
    }
    let dir = args
        .dir
        .as_deref()
        .context("a shard directory is required")?;
    let verify = if args.no_verify {
        Verify::Structure
    } else {
        Verify::Full
    };
    let set = ShardSet::open(dir, verify)?;
    let sql = Sql::new(&set)?;
    let mut stdout = std::io::stdout().lock();
    if let Some(query) = &args.sql {
        let batches = sql.query(query)?;
        let table = arrow::util::pretty::pretty_format_batches(&batches)?;
        writeln!(stdout, "{table}")?;
        return Ok(());
    }
    let tokenizer = super::tokenizer::load_beside_shards(dir)?;
    let decode = |id: u32| tokenizer.decode(&[id]).unwrap_or_else(|e| format!("<{e}>"));
    let report = report(&sql, &set, args.top, &decode)?;
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(stdout, "{report}")?;
    }
    Ok(())
}

/// One source in `cocolm stats --plan`.
#[derive(serde::Serialize)]
struct PlanRow {
    source: String,
    weight: String,
    examples: u64,
    tokens: u64,
    /// Examples the run draws from it.
    examples_drawn: u64,
    tokens_drawn: u64,
    /// Passes over it (a repeat factor above 1).
    epochs: f64,
}

/// `cocolm stats --plan`: what a blended run will draw from each source.
fn plan(args: &StatsArgs) -> Result<()> {
    let config = match &args.config {
        Some(path) => RunConfig::from_toml_file(path)?,
        None => RunConfig::default(),
    };
    let specs = super::train::data::sources(&args.data, &config);
    let sets = super::train::data::open(&specs, !args.no_verify)?;
    let weights: Vec<String> = specs.iter().map(|s| s.weight.clone()).collect();
    let schedule = Schedule::new(&weights)?;
    let steps = args.steps.unwrap_or(config.train.steps);
    let per_step = (config.train.batch_size * config.train.grad_accum) as u64 * args.world.max(1);
    let total = steps * per_step;
    let drawn = schedule.counts(total);
    let mut rows = Vec::new();
    for ((spec, set), drawn) in specs.iter().zip(&sets).zip(drawn) {
        let m = set.manifest();
        let examples = set.len();
        let tokens_per_example = m.totals.tokens as f64 / examples.max(1) as f64;
        rows.push(PlanRow {
            source: spec.path.display().to_string(),
            weight: spec.weight.clone(),
            examples,
            tokens: m.totals.tokens,
            examples_drawn: drawn,
            tokens_drawn: (drawn as f64 * tokens_per_example).round() as u64,
            epochs: drawn as f64 / examples.max(1) as f64,
        });
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let plan = serde_json::json!({
            "steps": steps,
            "examples_per_step": per_step,
            "examples": total,
            "sources": rows,
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&plan)?)?;
        return Ok(());
    }
    writeln!(
        stdout,
        "{steps} steps × {per_step} examples = {total} examples drawn from {} sources",
        rows.len()
    )?;
    writeln!(
        stdout,
        "{:<40} {:>8} {:>12} {:>14} {:>14} {:>16} {:>8}",
        "source", "weight", "examples", "tokens", "drawn", "tokens drawn", "epochs"
    )?;
    for r in &rows {
        writeln!(
            stdout,
            "{:<40} {:>8} {:>12} {:>14} {:>14} {:>16} {:>8.2}",
            r.source, r.weight, r.examples, r.tokens, r.examples_drawn, r.tokens_drawn, r.epochs
        )?;
    }
    Ok(())
}

/// `cocolm export DIR --parquet OUT`.
pub fn export(args: &ExportArgs) -> Result<()> {
    let set = ShardSet::open(&args.dir, Verify::Full)?;
    let files = cocolm_pipeline::export::to_parquet(&set, &args.parquet)
        .with_context(|| format!("exporting {}", args.dir.display()))?;
    println!(
        "wrote {} Parquet files to {}",
        files.len(),
        args.parquet.display()
    );
    Ok(())
}
