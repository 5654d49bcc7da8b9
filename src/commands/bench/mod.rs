//! `cocolm bench …`: throughput measurements printed as a table and as one JSON line.

pub mod data_vs_compute;

use crate::cli::{BenchLoaderArgs, BenchPrepareArgs, BenchTrainArgs};
use anyhow::{Context, Result};
use cocolm_pipeline::corpus;
use cocolm_pipeline::loader::blend::Blend;
use cocolm_pipeline::loader::{BatchPlan, Loader, LoaderOptions};
use cocolm_pipeline::prepare::{PrepareOptions, Timings, TokenizerArtifact};
use cocolm_pipeline::shard::reader::ShardSet;
use cocolm_shared::{Device, LoaderCursor, Precision, RunConfig};
use cocolm_trainer::backend::{CpuBackend, FlexBackend};
use cocolm_trainer::bench::{BenchOptions, BenchReport, bench_step};
use cocolm_trainer::collective::SingleRank;
use cocolm_trainer::step::DataParallel;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// `cocolm bench loader DIR[:WEIGHT]…` (several: a blend).
pub fn loader(args: &BenchLoaderArgs) -> Result<()> {
    let sets = super::train::data::open(&args.sources, false)?;
    let set = sets[0].clone();
    let examples: u64 = sets.iter().map(ShardSet::len).sum();
    let (rss_open, _, anon_open) = crate::memory::resident();
    let seq_len = set.manifest().seq_len;
    let batches = args
        .batches
        .unwrap_or_else(|| examples.div_ceil(args.batch_size as u64));
    let options = LoaderOptions {
        batch_size: args.batch_size,
        workers: args.workers,
        queue_depth: 2 * args.workers + 2,
        crop_fraction: args.crop.then_some(0.9),
        ..LoaderOptions::default()
    };
    let weights = args.sources.iter().map(|s| s.weight.clone()).collect();
    let plan = BatchPlan::blended(sets, Blend::new(weights)?, &options, LoaderCursor::start(1))?;
    let mut loader = Loader::from_plan(plan, &options)?;
    let start = Instant::now();
    let mut tokens = 0u64;
    let mut masked = 0u64;
    for _ in 0..batches {
        let batch = loader.next_batch()?;
        tokens += batch.n_tokens() as u64;
        masked += batch.n_masked() as u64;
        loader.recycle(batch);
    }
    let loader_s = start.elapsed().as_secs_f64();
    let metrics = loader.metrics();
    drop(loader);
    let (rss_after, rss_peak, anon_after) = crate::memory::resident();

    // Physical reference: copy the same number of examples of the first source, in
    // storage order, into a reused padded buffer.
    let mut buffer = vec![0u32; args.batch_size * seq_len];
    let start = Instant::now();
    let mut copied = 0u64;
    let mut index = 0u64;
    for _ in 0..batches {
        for row in 0..args.batch_size {
            let ids = set.example(index % set.len());
            buffer[row * seq_len..row * seq_len + ids.len()].copy_from_slice(ids);
            copied += ids.len() as u64;
            index += 1;
        }
        std::hint::black_box(&buffer);
    }
    let memcpy_s = start.elapsed().as_secs_f64();

    let names: Vec<String> = args
        .sources
        .iter()
        .map(|s| format!("{}:{}", s.path.display(), s.weight))
        .collect();
    println!(
        "loader bench: {} ({examples} examples, seq_len {seq_len})",
        names.join(" + ")
    );
    println!(
        "  batch size {}, workers {}, batches {batches}, crop {}",
        args.batch_size, args.workers, args.crop
    );
    println!(
        "  loader:  {:>10.1} batches/s {:>14.0} tokens/s  ({:.3} s, {:.1}% masked)",
        batches as f64 / loader_s,
        tokens as f64 / loader_s,
        loader_s,
        100.0 * masked as f64 / tokens.max(1) as f64
    );
    println!(
        "  memcpy:  {:>10.1} batches/s {:>14.0} tokens/s  ({:.3} s)",
        batches as f64 / memcpy_s,
        copied as f64 / memcpy_s,
        memcpy_s
    );
    println!(
        "  consumer waited {:.1}% of the loader time; producers blocked {:.3} s; mean queue depth {:.1}",
        100.0 * metrics.consumer_wait_ns as f64 / 1e9 / loader_s,
        metrics.producer_blocked_ns as f64 / 1e9,
        metrics.mean_depth
    );
    let mib = |b: u64| crate::progress::bytes(b as f64);
    println!(
        "  RSS after open {} (anonymous {}), after the run {} (anonymous {}), peak {}; the rest is the mapped shards",
        mib(rss_open),
        mib(anon_open),
        mib(rss_after),
        mib(anon_after),
        mib(rss_peak)
    );
    let json = serde_json::json!({
        "bench": "loader", "sources": names, "examples": examples, "seq_len": seq_len, "batch_size": args.batch_size,
        "workers": args.workers, "batches": batches, "crop": args.crop,
        "loader_tokens_per_s": tokens as f64 / loader_s, "memcpy_tokens_per_s": copied as f64 / memcpy_s,
        "loader_batches_per_s": batches as f64 / loader_s, "queue": metrics,
        "rss_open": rss_open, "rss_after": rss_after, "rss_peak": rss_peak,
        "anon_open": anon_open, "anon_after": anon_after,
    });
    println!("{json}");
    Ok(())
}

/// `cocolm bench prepare`: bare encoding of the texts held in memory, then the whole
/// prepare job on the same inputs, with the same threads; `--rounds` times, alternating.
pub fn prepare(args: &BenchPrepareArgs) -> Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (tokenizer, encoder) = super::prepare::load_tokenizer(&args.tokenizer)?;
    let encoder = Arc::new(encoder);
    let read = super::tokenizer::read_options(&args.read);
    let stores = super::tokenizer::stores(&args.read);
    let (files, _) = corpus::discover(&args.inputs, &stores)?;
    let mut documents = corpus::Documents::new(files, read.clone(), Default::default());
    let texts: Vec<String> = documents.by_ref().collect();
    documents.finish()?;
    let text_bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
    let scratch = std::env::temp_dir().join(format!("cocolm-bench-prepare-{}", std::process::id()));
    let mut options = PrepareOptions::new(args.inputs.clone(), scratch.clone());
    options.seq_len = args.seq_len;
    options.read = read;
    options.stores = stores;
    options.threads = threads;
    let artifact = TokenizerArtifact {
        record: tokenizer.record(args.tokenizer.display().to_string()),
        json: tokenizer.json().as_bytes().to_vec(),
    };
    println!(
        "prepare bench: {} documents, {:.1} MB of text, {} threads, seq_len {}, {} rounds",
        texts.len(),
        text_bytes as f64 / 1e6,
        threads,
        args.seq_len,
        args.rounds
    );
    let mb = |s: f64| text_bytes as f64 / 1e6 / s;
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let ((tokens, bare_threads_ns), bare_s, bare_cpu_s) =
            measured(|| bare_encoding(&texts, &encoder, threads))?;

        // The whole job, into a scratch directory.
        let _ = std::fs::remove_dir_all(&scratch);
        let (report, prepare_s, prepare_cpu_s) = measured(|| {
            let encoder = encoder.clone();
            Ok(cocolm_pipeline::prepare::prepare(
                &options,
                &artifact,
                encoder,
                &mut |_| {},
            )?)
        })?;
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("removing {}", scratch.display()))?;
        let t = report.timings;
        println!(
            "round {round}: bare {bare_s:.3} s ({:.0} MB/s, CPU {bare_cpu_s:.2} s), prepare {prepare_s:.3} s ({:.0} MB/s, CPU {prepare_cpu_s:.2} s) = {:.2}x",
            mb(bare_s),
            mb(prepare_s),
            bare_s / prepare_s
        );
        println!(
            "  prepare time (ms): read {:.0}, decompress {:.0}, parse {:.0}, encode {:.0} (summed over {threads} workers), pack {:.0}, write {:.0}, packer waited {:.0}",
            ms(t.read_ns),
            ms(t.decompress_ns),
            ms(t.parse_ns),
            ms(t.encode_ns),
            ms(t.pack_ns),
            ms(t.write_ns),
            ms(t.wait_ns)
        );
        rounds.push(Round {
            tokens,
            bare_s,
            prepare_s,
            bare_cpu_s,
            prepare_cpu_s,
            bare_threads_cpu_s: bare_threads_ns as f64 / 1e9,
            timings: t,
        });
    }
    // Each quantity's values over the rounds, sorted: the median is the middle one.
    let sorted = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let median = |v: &[f64]| v[v.len() / 2];
    let (bare, prepared) = (sorted(&|r| r.bare_s), sorted(&|r| r.prepare_s));
    let (bare_cpu, prepare_cpu) = (sorted(&|r| r.bare_cpu_s), sorted(&|r| r.prepare_cpu_s));
    let (bare_s, prepare_s) = (median(&bare), median(&prepared));
    let spread = |v: &[f64]| format!("{:.3}-{:.3} s", v[0], v[v.len() - 1]);
    println!(
        "  bare encoding: {:>8.1} MB/s (median {bare_s:.3} s, {})",
        mb(bare_s),
        spread(&bare)
    );
    println!(
        "  prepare:       {:>8.1} MB/s (median {prepare_s:.3} s, {}) = {:.2}x bare encoding by median, {:.2}x by fastest",
        mb(prepare_s),
        spread(&prepared),
        bare_s / prepare_s,
        bare[0] / prepared[0]
    );
    println!(
        "  CPU time (median): bare {:.2} s ({:.2} cores busy), prepare {:.2} s ({:.2} cores busy; {:.2}x the bare CPU)",
        median(&bare_cpu),
        median(&bare_cpu) / bare_s,
        median(&prepare_cpu),
        median(&prepare_cpu) / prepare_s,
        median(&prepare_cpu) / median(&bare_cpu)
    );
    // Where prepare's CPU goes, by thread (medians over rounds, each taken apart).
    let cpu = |f: &dyn Fn(&Timings) -> u64| median(&sorted(&|r| f(&r.timings) as f64 / 1e9));
    let encode_cpu = cpu(&|t| t.encode_cpu_ns);
    let bare_threads = median(&sorted(&|r| r.bare_threads_cpu_s));
    let mut ceilings = serde_json::Value::Null;
    if encode_cpu > 0.0 {
        let (read_cpu, pack_cpu) = (cpu(&|t| t.read_cpu_ns), cpu(&|t| t.pack_cpu_ns));
        let digest_cpu = cpu(&|t| t.digest_cpu_ns);
        println!(
            "  CPU by thread (median, ms): tokenizer threads {:.0} (the bare encoding's {:.0}: {:+.1}%), reader {:.0}, packer {:.0}, hashing {:.0}, the rest (opening, syncing, starting) {:.0}",
            encode_cpu * 1e3,
            bare_threads * 1e3,
            100.0 * (encode_cpu / bare_threads - 1.0),
            read_cpu * 1e3,
            pack_cpu * 1e3,
            digest_cpu * 1e3,
            (median(&prepare_cpu) - encode_cpu - read_cpu - pack_cpu - digest_cpu) * 1e3
        );
        // One job has one reader, one packer and one shard hashed at a time: text per
        // second of each one's CPU is the most it can pass, however many tokenizer
        // threads there are.
        let (reader, packer, digest) = (mb(read_cpu), mb(pack_cpu), mb(digest_cpu));
        let per_thread = mb(encode_cpu);
        println!(
            "  one job's ceilings (text per CPU second): reader {reader:.0} MB/s, packer {packer:.0} MB/s, hashing {digest:.0} MB/s, a tokenizer thread {per_thread:.0} MB/s: tokenization outpaces the slowest single thread from about {:.0} tokenizer threads (run --part K/N side by side beyond that)",
            reader.min(packer).min(digest) / per_thread
        );
        ceilings = serde_json::json!({
            "reader_mb_per_s": reader, "packer_mb_per_s": packer, "digest_mb_per_s": digest,
            "tokenizer_thread_mb_per_s": per_thread,
        });
    }
    let json = serde_json::json!({
        "bench": "prepare", "documents": texts.len(), "text_bytes": text_bytes, "threads": threads,
        "seq_len": args.seq_len, "bare_s": bare_s, "prepare_s": prepare_s,
        "bare_mb_per_s": mb(bare_s), "prepare_mb_per_s": mb(prepare_s),
        "ratio": bare_s / prepare_s, "bare_cpu_s": median(&bare_cpu),
        "prepare_cpu_s": median(&prepare_cpu), "ceilings": ceilings, "rounds": rounds,
    });
    println!("{json}");
    Ok(())
}

/// Run `f`: its result, the wall seconds and the process's CPU seconds it took.
fn measured<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64, f64)> {
    let cpu = cocolm_pipeline::cpu::process_seconds();
    let start = Instant::now();
    let out = f()?;
    let wall = start.elapsed().as_secs_f64();
    Ok((out, wall, cocolm_pipeline::cpu::process_seconds() - cpu))
}

/// One round of `bench prepare` (seconds), as its JSON report lists it.
#[derive(serde::Serialize)]
struct Round {
    tokens: u64,
    bare_s: f64,
    prepare_s: f64,
    bare_cpu_s: f64,
    prepare_cpu_s: f64,
    /// The bare encoding threads' own CPU time.
    bare_threads_cpu_s: f64,
    timings: Timings,
}

/// Encode every text, each of `threads` threads taking every `threads`-th one: the
/// number of tokens, and the CPU time of those threads.
fn bare_encoding(
    texts: &[String],
    encoder: &cocolm_pipeline::tokenizer::Encoder,
    threads: usize,
) -> Result<(u64, u64)> {
    let cpu_ns = AtomicU64::new(0);
    let tokens = std::thread::scope(|scope| {
        let cpu_ns = &cpu_ns;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                // Named, so a profile tells these threads from the job's.
                let thread = std::thread::Builder::new().name(format!("cocolm-bare-{t}"));
                thread.spawn_scoped(scope, move || -> Result<u64> {
                    cocolm_pipeline::cpu::charge(cpu_ns, || {
                        let mut ids = Vec::new();
                        let mut n = 0u64;
                        for text in texts.iter().skip(t).step_by(threads) {
                            ids.clear();
                            encoder.encode_into(text, &mut ids)?;
                            n += ids.len() as u64;
                        }
                        Ok(n)
                    })
                })
            })
            .collect::<std::io::Result<_>>()
            .context("starting the bare encoding threads")?;
        handles
            .into_iter()
            .map(|h| h.join().expect("encoder thread"))
            .sum::<Result<u64>>()
    })?;
    Ok((tokens, cpu_ns.into_inner()))
}

/// `cocolm bench train`: full COCO-LM steps (generator, sampling, corrector, backward,
/// AdamW) on synthetic batches, on the configured device and precision.
pub fn train(args: &BenchTrainArgs) -> Result<()> {
    let mut config =
        cocolm_shared::RunConfig::from_toml_file_with(&args.config, &args.overrides.assignments())?;
    if config.model.vocab_size == 0 {
        config.model.vocab_size = args.vocab_size;
    }
    config.model.max_positions = config.model.max_positions.max(args.seq_len);
    let options = cocolm_trainer::bench::BenchOptions {
        seq_len: args.seq_len,
        warmup: args.warmup as usize,
        steps: args.steps as usize,
    };
    /// One CPU rank, through the sharded optimiser when asked.
    fn cpu_topology<B: burn::tensor::backend::Backend>(
        zero: bool,
        bucket: usize,
    ) -> DataParallel<B> {
        match zero {
            true => DataParallel::Zero1 {
                collective: Arc::new(SingleRank),
                bucket,
            },
            false => DataParallel::Single,
        }
    }
    let bucket = config.train.zero_bucket;
    let rss = || Some(crate::memory::resident().0);
    let r = match (config.train.device, config.train.precision) {
        (Device::Cpu, Precision::Fp32) => bench_step::<CpuBackend>(
            &config,
            &Default::default(),
            options,
            cpu_topology(args.zero, bucket),
            &rss,
        )?,
        (Device::Cpu, _) => bench_step::<FlexBackend>(
            &config,
            &Default::default(),
            options,
            cpu_topology(args.zero, bucket),
            &rss,
        )?,
        (Device::Cuda, _) => train_on_gpu(&config, options, args.zero)?,
    };
    let m = &config.model;
    println!(
        "train bench: {} ({} layers, hidden {}, {} heads, FFN {}, generator {} layers, vocab {}, relative positions {}, dropout {}, {} parameters) on {:?} in {:?}{}",
        args.config.display(),
        m.num_layers,
        m.hidden_size,
        m.num_heads,
        m.ffn_size,
        m.generator_depth(),
        m.vocab_size,
        m.relative_position,
        m.dropout,
        r.parameters,
        config.train.device,
        config.train.precision,
        if args.zero { ", ZeRO-1" } else { "" }
    );
    let tflops = r.flops_per_s() / 1e12;
    let mfu = args.peak_tflops.map(|peak| tflops / peak);
    println!(
        "  {} sequences × {} tokens per step: {:.1} ms/step (fastest {:.1}), {:.0} tokens/s over {} steps",
        r.sequences_per_step, r.seq_len, r.ms_per_step, r.min_ms_per_step, r.tokens_per_s, r.steps
    );
    println!(
        "  {:.3} TFLOP per step (model FLOPs), {tflops:.2} TFLOP/s{}; optimiser state {}{}",
        r.flops_per_step / 1e12,
        mfu.map_or_else(String::new, |u| format!(
            " = {:.1}% of {} TFLOP/s",
            100.0 * u,
            args.peak_tflops.unwrap_or_default()
        )),
        crate::progress::bytes(r.optimizer_state_bytes as f64),
        r.peak_memory.map_or_else(String::new, |b| format!(
            ", peak memory {}",
            crate::progress::bytes(b as f64)
        ))
    );
    let json = serde_json::json!({
        "bench": "train", "config": args.config.display().to_string(), "parameters": r.parameters,
        "device": config.train.device, "precision": config.train.precision, "zero": args.zero,
        "sequences_per_step": r.sequences_per_step, "seq_len": r.seq_len, "steps": r.steps,
        "ms_per_step": r.ms_per_step, "min_ms_per_step": r.min_ms_per_step, "tokens_per_s": r.tokens_per_s,
        "flops_per_step": r.flops_per_step, "tflops_per_s": tflops, "mfu": mfu,
        "optimizer_state_bytes": r.optimizer_state_bytes, "peak_memory": r.peak_memory,
    });
    println!("{json}");
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn train_on_gpu(_: &RunConfig, _: BenchOptions, _: bool) -> Result<BenchReport> {
    Err(crate::commands::needs_cuda_build("train.device = \"cuda\""))
}

#[cfg(feature = "cuda")]
fn train_on_gpu(config: &RunConfig, options: BenchOptions, zero: bool) -> Result<BenchReport> {
    let launch = cocolm_trainer::collective::launch::Launch::from_env()?;
    let topology =
        super::cuda::topology(&launch, config.train.zero_bucket, zero || launch.world > 1)?;
    let device = super::cuda::device(launch.local_rank);
    let memory = || super::cuda::memory_in_use(launch.local_rank);
    Ok(bench_step::<cocolm_trainer::backend::CudaBackend>(
        config, &device, options, topology, &memory,
    )?)
}
