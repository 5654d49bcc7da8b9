//! `cocolm stats` and `cocolm export`.

use crate::cli::{ExportArgs, StatsArgs};
use anyhow::{Context, Result};
use cocolm_pipeline::shard::reader::{ShardSet, Verify};
use cocolm_pipeline::stats::{Sql, report};
use std::io::Write;

/// `cocolm stats DIR [--sql …]`.
pub fn stats(args: &StatsArgs) -> Result<()> {
    let verify = if args.no_verify {
        Verify::Structure
    } else {
        Verify::Full
    };
    let set = ShardSet::open(&args.dir, verify)?;
    let sql = Sql::new(&set)?;
    let mut stdout = std::io::stdout().lock();
    if let Some(query) = &args.sql {
        let batches = sql.query(query)?;
        let table = arrow::util::pretty::pretty_format_batches(&batches)?;
        writeln!(stdout, "{table}")?;
        return Ok(());
    }
    let tokenizer = super::tokenizer::load_beside_shards(&args.dir)?;
    let decode = |id: u32| tokenizer.decode(&[id]).unwrap_or_else(|e| format!("<{e}>"));
    let report = report(&sql, &set, args.top, &decode)?;
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(stdout, "{report}")?;
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
