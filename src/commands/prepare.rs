//! `cocolm prepare`: the corpus → shards job with a progress bar and a summary.

use crate::cli::{MergeArgs, PrepareArgs};
use crate::progress::{bar, bytes};
use anyhow::{Context, Result};
use cocolm_pipeline::prepare::{PrepareOptions, PrepareReport, TokenizerArtifact, prepare};
use cocolm_pipeline::tokenizer::{Encoder, EngineChoice, TokenizerJson};
use std::sync::Arc;
use std::time::Instant;

/// The job's options from the command line.
pub fn options(args: &PrepareArgs) -> PrepareOptions {
    let mut options = PrepareOptions::new(args.inputs.clone(), args.out.clone());
    options.seq_len = args.seq_len;
    options.read = super::tokenizer::read_options(&args.read);
    options.stores = super::tokenizer::stores(&args.read);
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    options.shard_bytes = args.shard_size;
    options.strict = args.strict;
    options.dedup = args.dedup;
    options.part = args.part;
    options.stop = crate::signals::stop();
    options
}

/// Load a tokenizer and build its encoder, saying which engine encodes.
pub fn load_tokenizer(path: &std::path::Path) -> Result<(TokenizerJson, Encoder)> {
    let tokenizer = TokenizerJson::load(path)
        .with_context(|| format!("loading tokenizer {}", path.display()))?;
    let encoder = Encoder::new(&tokenizer, EngineChoice::Auto)?;
    if let Some(reason) = encoder.fallback_reason() {
        eprintln!("note: encoding with {} ({reason})", encoder.engine());
    }
    if !tokenizer.added_special_tokens().is_empty() {
        eprintln!(
            "note: added special tokens {} to {}",
            tokenizer.added_special_tokens().join(" "),
            path.display()
        );
    }
    Ok((tokenizer, encoder))
}

/// `cocolm prepare`.
pub fn run(args: &PrepareArgs) -> Result<PrepareReport> {
    let (tokenizer, encoder) = load_tokenizer(&args.tokenizer)?;
    let artifact = TokenizerArtifact {
        record: tokenizer.record(args.tokenizer.display().to_string()),
        json: tokenizer.json().as_bytes().to_vec(),
    };
    let options = options(args);
    let started = Instant::now();
    let progress = bar(
        0,
        "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
    );
    let report = prepare(&options, &artifact, Arc::new(encoder), &mut |p| {
        progress.set_length(p.bytes_total);
        progress.set_position(p.bytes_read);
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        progress.set_message(format!(
            "{} docs ({:.0}/s) {} tokens ({:.0}/s) {} examples",
            p.documents,
            p.documents as f64 / secs,
            p.tokens,
            p.tokens as f64 / secs,
            p.examples
        ));
    });
    progress.finish_and_clear();
    let report = match report {
        Err(cocolm_pipeline::Error::Interrupted {
            out,
            signal,
            shards,
        }) => {
            return Err(crate::signals::Resumable(format!(
                "stopped on signal {signal}: {} holds {shards} complete shard(s) and a manifest to resume from; to resume, run the same command:\n  {}",
                out.display(),
                crate::signals::command_line("")
            ))
            .into());
        }
        report => report?,
    };
    print_summary(args, &report);
    let requests = options.stores.requests();
    if requests.sent() > 0 {
        println!(
            "object stores: {} requests, {} of them failed and were retried",
            requests.sent(),
            requests.failed()
        );
    }
    Ok(report)
}

fn print_summary(args: &PrepareArgs, report: &PrepareReport) {
    let m = &report.manifest;
    for name in &report.skipped_files {
        eprintln!("note: skipped {name} (unknown format)");
    }
    if report.already_complete {
        println!("{} is already complete: nothing to do", args.out.display());
    } else if report.resumed {
        println!("resumed an interrupted job in {}", args.out.display());
    }
    if let Some(part) = &m.part {
        println!(
            "part {}/{}: {} of the {} input files; join the parts with `cocolm merge`",
            part.index,
            part.count,
            m.inputs.len(),
            part.all_inputs
        );
    }
    let t = &m.totals;
    println!(
        "{}: {} shards, {} examples of {} tokens, {} tokens",
        args.out.display(),
        m.shards.len(),
        t.examples,
        m.seq_len,
        t.tokens
    );
    println!(
        "documents: {} read, {} accepted, {} rejected",
        t.documents_read, t.documents_accepted, t.documents_rejected
    );
    for input in m.inputs.iter().filter(|i| i.documents_rejected > 0) {
        let reasons: Vec<String> = input
            .rejections
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        println!("  {}: {}", input.path, reasons.join(", "));
        for example in input.rejection_examples.iter().take(3) {
            println!("    {example}");
        }
    }
    if !report.already_complete {
        let tm = &report.timings;
        let secs = tm.wall_ns as f64 / 1e9;
        println!(
            "read {} in {:.2} s: {}/s, {:.0} tokens/s",
            bytes(report.bytes_read as f64),
            secs,
            bytes(report.bytes_read as f64 / secs),
            t.tokens as f64 / secs
        );
        let ms = |ns: u64| ns as f64 / 1e6;
        println!(
            "time (ms): read {:.0}, decompress {:.0}, parse {:.0}, encode {:.0} (all workers), pack {:.0}, write {:.0}, packer waited {:.0}",
            ms(tm.read_ns),
            ms(tm.decompress_ns),
            ms(tm.parse_ns),
            ms(tm.encode_ns),
            ms(tm.pack_ns),
            ms(tm.write_ns),
            ms(tm.wait_ns)
        );
        if tm.encode_cpu_ns > 0 {
            println!(
                "CPU (ms): tokenizer threads {:.0}, reader {:.0}, packer {:.0}, hashing shards {:.0}",
                ms(tm.encode_cpu_ns),
                ms(tm.read_cpu_ns),
                ms(tm.pack_cpu_ns),
                ms(tm.digest_cpu_ns)
            );
            if let Some((thread, busy)) = tm.bound_by_one_thread() {
                println!(
                    "the {thread} thread was on the CPU {:.0}% of the job: it bounded this job, not tokenization, so more --threads would not help; parts side by side would (--part K/N, then cocolm merge; README: \"Many cores on one machine\")",
                    100.0 * busy
                );
            }
        }
        let (_, peak, _) = crate::memory::resident();
        println!("peak memory (RSS) {}", bytes(peak as f64));
    }
}

/// `cocolm merge`.
pub fn merge(args: &MergeArgs) -> Result<()> {
    let report = cocolm_pipeline::merge::merge(&args.out, &args.parts)?;
    let m = &report.manifest;
    let t = &m.totals;
    println!(
        "{}: {} parts merged, {} shards ({} linked, {} copied across file systems), {} examples of {} tokens, {} tokens",
        args.out.display(),
        args.parts.len(),
        m.shards.len(),
        report.linked,
        report.copied,
        t.examples,
        m.seq_len,
        t.tokens
    );
    println!(
        "documents: {} read, {} accepted, {} rejected, over {} inputs",
        t.documents_read,
        t.documents_accepted,
        t.documents_rejected,
        m.inputs.len()
    );
    if report.cross_part_duplicates > 0 {
        println!(
            "note: {} accepted documents repeat the text of a document in an earlier part (each part drops only its own duplicates; these stay in the shards):",
            report.cross_part_duplicates
        );
        for example in &report.duplicate_examples {
            println!("  {example}");
        }
    }
    Ok(())
}
