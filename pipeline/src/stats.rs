//! SQL over shard sets (DataFusion) and the default `cocolm stats` report.
//!
//! Tables registered for every query:
//!
//! | table | columns |
//! |---|---|
//! | `examples` | `example` (UInt64, global index), `input_ids` (`List<UInt32>`), `length` (UInt32, real tokens), `document` (UInt64) |
//! | `shards` | `file`, `rows`, `tokens`, `bytes` |
//! | `inputs` | `path`, `bytes`, `documents_read`, `documents_accepted`, `documents_rejected`, `tokens` |
//!
//! `examples` is built from the memory-mapped record batches without copying the ids.

use crate::shard::reader::ShardSet;
use crate::{Error, Result};
use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, UInt64Type};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde::Serialize;
use std::sync::Arc;

/// Runs SQL over one shard set.
pub struct Sql {
    ctx: SessionContext,
    runtime: tokio::runtime::Runtime,
}

impl Sql {
    /// Register the tables of `set`.
    pub fn new(set: &ShardSet) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
            .build()
            .map_err(|source| Error::SqlRuntime { source })?;
        let ctx = SessionContext::new();
        register(&ctx, "examples", examples_batches(set)?)?;
        register(&ctx, "shards", vec![shards_batch(set)?])?;
        register(&ctx, "inputs", vec![inputs_batch(set)?])?;
        Ok(Sql { ctx, runtime })
    }

    /// Run one statement and collect its result.
    pub fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.runtime.block_on(async {
            let df = self.ctx.sql(sql).await.map_err(Error::sql(sql))?;
            df.collect().await.map_err(Error::sql(sql))
        })
    }

    /// Run a query of integer columns and return them as columns of `u64`s (nulls as 0).
    fn columns_u64(&self, sql: &str) -> Result<Vec<Vec<u64>>> {
        let batches = self.query(sql)?;
        let width = batches.first().map_or(0, |b| b.num_columns());
        let mut out = vec![Vec::new(); width];
        for batch in batches {
            for (c, column) in out.iter_mut().enumerate() {
                let col = arrow::compute::cast(batch.column(c), &DataType::UInt64)
                    .map_err(Error::sql(sql))?;
                column.extend(
                    col.as_primitive::<UInt64Type>()
                        .iter()
                        .map(|v| v.unwrap_or(0)),
                );
            }
        }
        Ok(out)
    }
}

fn register(ctx: &SessionContext, name: &'static str, batches: Vec<RecordBatch>) -> Result<()> {
    let schema = batches[0].schema();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut partitions = vec![Vec::new(); workers.min(batches.len()).max(1)];
    let n = partitions.len();
    for (i, b) in batches.into_iter().enumerate() {
        partitions[i % n].push(b);
    }
    let table = MemTable::try_new(schema, partitions).map_err(Error::sql_table(name))?;
    ctx.register_table(name, Arc::new(table))
        .map_err(Error::sql_table(name))?;
    Ok(())
}

fn examples_batches(set: &ShardSet) -> Result<Vec<RecordBatch>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("example", DataType::UInt64, false),
        set.record_batches()
            .first()
            .map(|b| b.schema().field(0).clone())
            .unwrap_or_else(|| crate::shard::schema().field(0).clone()),
        Field::new("length", DataType::UInt32, false),
        Field::new("document", DataType::UInt64, false),
    ]));
    let mut first = 0u64;
    let mut out = Vec::new();
    for batch in set.record_batches() {
        let ids = batch.column(0).as_list::<i32>();
        let rows = batch.num_rows() as u64;
        let lengths: UInt32Array = ids
            .offsets()
            .windows(2)
            .map(|w| Some((w[1] - w[0]) as u32))
            .collect();
        let example: UInt64Array = (first..first + rows).map(Some).collect();
        // Through the set: a merged set offsets each shard's document column.
        let document: UInt64Array = (first..first + rows)
            .map(|i| Some(set.document(i)))
            .collect();
        first += rows;
        out.push(
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(example),
                    batch.column(0).clone(),
                    Arc::new(lengths),
                    Arc::new(document),
                ],
            )
            .map_err(Error::sql_table("examples"))?,
        );
    }
    if out.is_empty() {
        out.push(RecordBatch::new_empty(schema));
    }
    Ok(out)
}

fn shards_batch(set: &ShardSet) -> Result<RecordBatch> {
    let shards = &set.manifest().shards;
    let u64s = |f: fn(&cocolm_shared::ShardRecord) -> u64| -> ArrayRef {
        Arc::new(shards.iter().map(|s| Some(f(s))).collect::<UInt64Array>())
    };
    RecordBatch::try_from_iter([
        (
            "file",
            Arc::new(
                shards
                    .iter()
                    .map(|s| Some(s.file.as_str()))
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        ("rows", u64s(|s| s.rows)),
        ("tokens", u64s(|s| s.tokens)),
        ("bytes", u64s(|s| s.bytes)),
    ])
    .map_err(Error::sql_table("shards"))
}

fn inputs_batch(set: &ShardSet) -> Result<RecordBatch> {
    let inputs = &set.manifest().inputs;
    let u64s = |f: fn(&cocolm_shared::InputFileRecord) -> u64| -> ArrayRef {
        Arc::new(inputs.iter().map(|s| Some(f(s))).collect::<UInt64Array>())
    };
    RecordBatch::try_from_iter([
        (
            "path",
            Arc::new(
                inputs
                    .iter()
                    .map(|s| Some(s.path.as_str()))
                    .collect::<StringArray>(),
            ) as ArrayRef,
        ),
        ("bytes", u64s(|s| s.bytes)),
        ("documents_read", u64s(|s| s.documents_read)),
        ("documents_accepted", u64s(|s| s.documents_accepted)),
        ("documents_rejected", u64s(|s| s.documents_rejected)),
        ("tokens", u64s(|s| s.tokens)),
    ])
    .map_err(Error::sql_table("inputs"))
}

/// The default report of `cocolm stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Examples.
    pub examples: u64,
    /// Real tokens (`[CLS]`/`[SEP]` included).
    pub tokens: u64,
    /// Tokens per example when padded.
    pub seq_len: usize,
    /// Fraction of a padded batch that would be padding.
    pub padding_fraction: f64,
    /// Examples by length: (lowest length of the bucket, count), buckets of `seq_len / 16`.
    pub length_histogram: Vec<(u64, u64)>,
    /// Most frequent ids: (id, count, decoded string).
    pub top_ids: Vec<(u32, u64, String)>,
    /// Fraction of tokens that are `[UNK]`.
    pub unk_rate: f64,
    /// Documents read, accepted, rejected over all inputs.
    pub documents: (u64, u64, u64),
}

/// Compute the default report; `decode` renders one id for the top-ids table.
pub fn report(
    sql: &Sql,
    set: &ShardSet,
    top: usize,
    decode: &dyn Fn(u32) -> String,
) -> Result<Report> {
    let m = set.manifest();
    let seq_len = m.seq_len;
    let totals = sql.columns_u64("SELECT COUNT(*), COALESCE(SUM(length), 0) FROM examples")?;
    let (examples, tokens) = (totals[0][0], totals[1][0]);
    let bucket = (seq_len / 16).max(1);
    let hist_sql = format!(
        "SELECT (length / {bucket}) * {bucket} AS lo, COUNT(*) AS n FROM examples GROUP BY lo ORDER BY lo"
    );
    let hist = sql.columns_u64(&hist_sql)?;
    // One pass over the tokens: the count of every id (at most the vocabulary size rows)
    // gives both the most frequent ids and the [UNK] count.
    let counts = sql.columns_u64(
        "SELECT id, COUNT(*) AS n FROM (SELECT unnest(input_ids) AS id FROM examples) GROUP BY id",
    )?;
    let mut by_count: Vec<(u64, u64)> = counts[0]
        .iter()
        .copied()
        .zip(counts[1].iter().copied())
        .collect();
    let unk = u64::from(m.tokenizer.special_tokens.unk);
    let unk_count = by_count
        .iter()
        .find(|(id, _)| *id == unk)
        .map_or(0, |(_, n)| *n);
    by_count.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    by_count.truncate(top);
    Ok(Report {
        examples,
        tokens,
        seq_len,
        padding_fraction: if examples == 0 {
            0.0
        } else {
            1.0 - tokens as f64 / (examples * seq_len as u64) as f64
        },
        length_histogram: hist[0]
            .iter()
            .copied()
            .zip(hist[1].iter().copied())
            .collect(),
        top_ids: by_count
            .into_iter()
            .map(|(id, n)| (id as u32, n, decode(id as u32)))
            .collect(),
        unk_rate: if tokens == 0 {
            0.0
        } else {
            unk_count as f64 / tokens as f64
        },
        documents: (
            m.totals.documents_read,
            m.totals.documents_accepted,
            m.totals.documents_rejected,
        ),
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (read, accepted, rejected) = self.documents;
        writeln!(f, "examples          {}", self.examples)?;
        writeln!(f, "tokens            {}", self.tokens)?;
        writeln!(f, "seq_len           {}", self.seq_len)?;
        writeln!(f, "padding fraction  {:.4}", self.padding_fraction)?;
        writeln!(f, "[UNK] rate        {:.6}", self.unk_rate)?;
        writeln!(
            f,
            "documents         {read} read, {accepted} accepted, {rejected} rejected"
        )?;
        writeln!(f, "length histogram")?;
        let max = self
            .length_histogram
            .iter()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(1)
            .max(1);
        for (lo, n) in &self.length_histogram {
            let bar = "#".repeat(((n * 40).div_ceil(max)) as usize);
            writeln!(f, "  {lo:>6}+ {n:>10} {bar}")?;
        }
        writeln!(f, "most frequent ids")?;
        for (id, n, text) in &self.top_ids {
            writeln!(f, "  {id:>8} {n:>12}  {text:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::reader::Verify;
    use crate::testutil::toy_shards;
    use datafusion::error::DataFusionError;

    #[test]
    fn report_matches_the_shards() {
        let dir = tempfile::tempdir().unwrap();
        let set = ShardSet::open(&toy_shards(dir.path(), 80), Verify::Full).unwrap();
        let sql = Sql::new(&set).unwrap();
        let r = report(&sql, &set, 5, &|id| format!("<{id}>")).unwrap();
        assert_eq!(r.examples, set.len());
        let tokens: u64 = (0..set.len()).map(|i| set.example(i).len() as u64).sum();
        assert_eq!(r.tokens, tokens);
        assert_eq!(
            r.length_histogram.iter().map(|(_, n)| n).sum::<u64>(),
            set.len()
        );
        // The most frequent id, counted by hand.
        let mut counts = std::collections::HashMap::<u32, u64>::new();
        for i in 0..set.len() {
            for &id in set.example(i) {
                *counts.entry(id).or_default() += 1;
            }
        }
        let best = counts.values().max().unwrap();
        assert_eq!(r.top_ids[0].1, *best);
        assert_eq!(r.top_ids[0].2, format!("<{}>", r.top_ids[0].0));
        let text = r.to_string();
        assert!(text.contains("examples") && text.contains("most frequent ids"));
    }

    #[test]
    fn user_sql_over_all_tables() {
        let dir = tempfile::tempdir().unwrap();
        let set = ShardSet::open(&toy_shards(dir.path(), 30), Verify::Full).unwrap();
        let sql = Sql::new(&set).unwrap();
        let n = sql.columns_u64("SELECT SUM(rows) FROM shards").unwrap();
        assert_eq!(n, [[set.len()]]);
        let docs = sql
            .columns_u64("SELECT SUM(documents_accepted) FROM inputs")
            .unwrap();
        assert_eq!(docs, [[30]]);
        let err = sql.query("SELECT nope FROM examples").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        match err {
            Error::Sql { query, source } => {
                assert_eq!(query, "SELECT nope FROM examples");
                assert!(
                    matches!(source.find_root(), DataFusionError::SchemaError(..)),
                    "{source:?}"
                );
            }
            other => panic!("not an Sql error: {other:?}"),
        }
    }
}
