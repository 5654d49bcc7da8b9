//! `cocolm bench data-vs-compute`: is a run limited by its data pipeline or by its
//! accelerator, and how many loader workers does it need?
//!
//! Three measurements of `--seconds` each, on the run's own data and batch shape:
//! (a) the loader alone for every worker count, pulled as fast as it delivers; (b) the
//! consumer alone, on batches that are always ready; (c) both together through the queue.
//! The consumer is the real trainer on the configured device and precision (the CPU in
//! fp32 or, through burn-flex, bf16/fp16; CUDA device 0 in a `cuda` build), or a
//! simulated one that takes each batch
//! for the time a target rate gives it (`--target-tokens-per-s`, or `--target` — an
//! accelerator's peak at a stated utilisation, divided by the model FLOPs per token of the
//! COCO-LM step). Worker start-up (until the first step's batches are there) is timed
//! apart. A run is data-bound when its consumer waits more than [`WAIT_LIMIT`] of its time.
//!
//! Tokens here are batch positions (`batch_size × seq_len`, padding included): what an
//! accelerator computes on. Packed shards are nearly full, so real tokens are close.

use crate::cli::{BenchDataVsComputeArgs, ConsumerKind};
use crate::progress::bar;
use anyhow::{Context, Result, bail};
use cocolm_pipeline::loader::blend::Blend;
use cocolm_pipeline::loader::{BatchPlan, Loader, LoaderOptions};
use cocolm_pipeline::queue::QueueMetrics;
use cocolm_shared::{Batch, Device, LoaderCursor, Precision, RunConfig};
use cocolm_trainer::backend::{CpuBackend, FlexBackend};
use cocolm_trainer::kernels::TrainBackend;
use cocolm_trainer::step::{DataParallel, Trainer};
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, Instant};

/// A consumer waiting for data more than this fraction of its time is data-bound.
pub const WAIT_LIMIT: f64 = 0.05;
/// Steps each consumer measurement runs at least.
const MIN_STEPS: u32 = 4;
/// Time-series windows per measurement of (c).
const WINDOWS: usize = 40;

/// Something that consumes the batches of one optimiser step.
trait Consumer {
    fn consume(&mut self, step: &[Batch]) -> Result<()>;
}

/// Takes each step for the time `positions_per_s` gives it.
struct Simulated {
    positions_per_s: f64,
}

impl Consumer for Simulated {
    fn consume(&mut self, step: &[Batch]) -> Result<()> {
        let until =
            Instant::now() + Duration::from_secs_f64(positions(step) / self.positions_per_s);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            // Sleep most of it, spin the last stretch (sleeps overshoot by ~0.1 ms).
            if left > Duration::from_micros(300) {
                std::thread::sleep(left - Duration::from_micros(200));
            } else {
                std::hint::spin_loop();
            }
        }
        Ok(())
    }
}

/// The trainer, on one device of backend `B`.
struct Real<B: TrainBackend> {
    trainer: Trainer<B>,
}

impl<B: TrainBackend> Real<B> {
    fn boxed(config: &RunConfig, device: &B::Device) -> Result<Box<dyn Consumer>> {
        let trainer = Trainer::<B>::with_topology(config, device, DataParallel::Single)?;
        Ok(Box::new(Real { trainer }))
    }
}

/// The trainer on the configured device and precision, and its description.
fn real_consumer(config: &RunConfig) -> Result<(Box<dyn Consumer>, String)> {
    let precision = config.train.precision;
    Ok(match (config.train.device, precision) {
        (Device::Cpu, Precision::Fp32) => (
            Real::<CpuBackend>::boxed(config, &Default::default())?,
            "the trainer on the CPU in fp32".into(),
        ),
        (Device::Cpu, _) => (
            Real::<FlexBackend>::boxed(config, &Default::default())?,
            format!("the trainer on the CPU in {precision} (burn-flex)"),
        ),
        (Device::Cuda, _) => (
            cuda_consumer(config)?,
            format!("the trainer on CUDA device 0 in {precision}"),
        ),
    })
}

/// The trainer on GPU 0, after checking the driver, the device and the libraries.
#[cfg(feature = "cuda")]
fn cuda_consumer(config: &RunConfig) -> Result<Box<dyn Consumer>> {
    cocolm_trainer::backend::check_cuda(0, false)?;
    Real::<cocolm_trainer::backend::CudaBackend>::boxed(config, &crate::commands::cuda::device(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_consumer(_: &RunConfig) -> Result<Box<dyn Consumer>> {
    Err(crate::commands::needs_cuda_build("train.device = \"cuda\""))
}

impl<B: TrainBackend> Consumer for Real<B> {
    fn consume(&mut self, step: &[Batch]) -> Result<()> {
        self.trainer.train_step(step)?;
        Ok(())
    }
}

/// Batch positions in a step.
fn positions(step: &[Batch]) -> f64 {
    step.iter().map(|b| (b.batch_size * b.seq_len) as f64).sum()
}

/// (a): the loader alone.
#[derive(Debug, Clone, Serialize)]
pub struct Alone {
    /// Loader worker threads.
    pub workers: usize,
    /// Seconds until the first batch.
    pub startup_s: f64,
    /// Batch positions delivered per second.
    pub tokens_per_s: f64,
    /// Real (non-pad) tokens delivered per second.
    pub real_tokens_per_s: f64,
    /// Queue counters of the run.
    pub queue: QueueMetrics,
}

/// One window of (c).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the start of the measurement.
    pub t: f64,
    /// Fraction of the window the consumer waited for data.
    pub wait: f64,
    /// Mean batches ready when the consumer asked, in the window.
    pub depth: f64,
}

/// (c): loader and consumer together.
#[derive(Debug, Clone, Serialize)]
pub struct Together {
    /// Loader worker threads.
    pub workers: usize,
    /// Seconds until the first step's batches were there.
    pub startup_s: f64,
    /// Batch positions consumed per second.
    pub tokens_per_s: f64,
    /// Fraction of the consumer's time spent waiting for data.
    pub consumer_wait_fraction: f64,
    /// Time producers were blocked on a full queue, summed over workers.
    pub producer_blocked_s: f64,
    /// Batches ready when the consumer asked: 50th, 90th and 99th percentiles.
    pub depth_percentiles: [usize; 3],
    /// `data-bound` or `compute-bound`.
    pub verdict: &'static str,
    /// Consumer wait and queue depth over time.
    pub timeline: Vec<Sample>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What consumed.
    pub consumer: String,
    /// (b): positions per second the consumer takes with data always ready.
    pub consumer_tokens_per_s: f64,
    /// (a), per worker count.
    pub pipeline: Vec<Alone>,
    /// (c), per worker count.
    pub together: Vec<Together>,
    /// The fewest workers that keep the consumer fed (waiting ≤ 5%), if any.
    pub fewest_workers: Option<usize>,
    /// The most the loader delivers alone over what the consumer takes.
    pub headroom: f64,
    /// `data-bound` or `compute-bound`, at the most workers tried.
    pub verdict: &'static str,
}

/// `cocolm bench data-vs-compute`.
pub fn run(args: &BenchDataVsComputeArgs) -> Result<()> {
    if args.seconds.is_nan()
        || args.seconds <= 0.0
        || args.workers.is_empty()
        || args.workers.contains(&0)
    {
        bail!("--seconds must be positive and --workers a list of counts ≥ 1");
    }
    let mut config = RunConfig::from_toml_file_with(&args.config, &args.overrides.assignments())?;
    let sets = crate::commands::train::data::open(&args.data, false)?;
    let (vocab, seq_len) = {
        let m = sets[0].manifest();
        (m.tokenizer.vocab_size, m.seq_len)
    };
    if config.model.vocab_size == 0 {
        config.model.vocab_size = vocab;
    }
    config.model.max_positions = config.model.max_positions.max(seq_len);
    let weights = args.data.iter().map(|s| s.weight.clone()).collect();
    let options = |workers: usize| LoaderOptions {
        workers,
        ..LoaderOptions::for_run(&config, 0, 1)
    };
    let plan = BatchPlan::blended(
        sets,
        Blend::new(weights)?,
        &options(1),
        LoaderCursor::start(config.train.seed),
    )?;
    let accum = config.train.grad_accum;
    let target = simulated_rate(args, &config, seq_len);
    let (mut consumer, consumer_name): (Box<dyn Consumer>, String) = match target {
        Some((rate, name)) => (
            Box::new(Simulated {
                positions_per_s: rate,
            }),
            name,
        ),
        None => real_consumer(&config)?,
    };

    let phases = 1 + 2 * args.workers.len() as u64;
    let progress = bar(phases, "{elapsed_precise} [{wide_bar}] {pos}/{len} {msg}");
    let seconds = Duration::from_secs_f64(args.seconds);
    let mut pipeline = Vec::new();
    for &workers in &args.workers {
        progress.set_message(format!("loader alone, {workers} workers"));
        pipeline.push(loader_alone(&plan, &options(workers), seconds)?);
        progress.inc(1);
    }
    progress.set_message("consumer alone");
    let consumer_tokens_per_s = consumer_alone(&mut *consumer, &plan, &options(1), accum, seconds)?;
    progress.inc(1);
    let mut together = Vec::new();
    for &workers in &args.workers {
        progress.set_message(format!("together, {workers} workers"));
        together.push(both(
            &mut *consumer,
            &plan,
            &options(workers),
            accum,
            seconds,
        )?);
        progress.inc(1);
    }
    progress.finish_and_clear();

    let fewest_workers = together
        .iter()
        .filter(|t| t.consumer_wait_fraction <= WAIT_LIMIT)
        .map(|t| t.workers)
        .min();
    let best = pipeline.iter().map(|a| a.tokens_per_s).fold(0.0, f64::max);
    let verdict = together.last().map_or("data-bound", |t| t.verdict);
    let report = Report {
        consumer: consumer_name,
        consumer_tokens_per_s,
        pipeline,
        together,
        fewest_workers,
        headroom: best / consumer_tokens_per_s,
        verdict,
    };
    write_outputs(args, &report)?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(stdout, "{}", text(&report))?;
    }
    Ok(())
}

/// The simulated consumer's rate and its description, when one is asked for.
fn simulated_rate(
    args: &BenchDataVsComputeArgs,
    config: &RunConfig,
    seq_len: usize,
) -> Option<(f64, String)> {
    if let Some(rate) = args.target_tokens_per_s {
        return Some((rate, format!("simulated at {} tokens/s", si(rate))));
    }
    if let Some(accelerator) = args.target {
        let sequences = config.train.batch_size * config.train.grad_accum;
        let crop = config
            .model
            .scl
            .then(|| ((seq_len as f64 * config.data.crop_fraction).ceil() as usize).max(1));
        let masked = config.data.mask_prob * (sequences * seq_len) as f64;
        let flops =
            cocolm_trainer::bench::step_flops(&config.model, sequences, seq_len, crop, masked);
        let per_token = flops / (sequences * seq_len) as f64;
        let rate = accelerator.peak_flops() * args.utilisation * f64::from(args.gpus) / per_token;
        return Some((
            rate,
            format!(
                "simulated {} × {:?} at {:.0}% of {} FLOP/s ({} FLOP per token): {} tokens/s",
                args.gpus,
                accelerator,
                100.0 * args.utilisation,
                si(accelerator.peak_flops()),
                si(per_token),
                si(rate)
            ),
        ));
    }
    (args.consumer == ConsumerKind::Simulated).then(|| {
        (
            f64::INFINITY,
            "simulated, infinitely fast (give --target-tokens-per-s or --target)".into(),
        )
    })
}

/// (a) for one worker count.
fn loader_alone(plan: &BatchPlan, options: &LoaderOptions, seconds: Duration) -> Result<Alone> {
    let started = Instant::now();
    let mut loader = Loader::from_plan(plan.clone(), options)?;
    let first = loader.next_batch()?;
    let startup_s = started.elapsed().as_secs_f64();
    loader.recycle(first);
    let clock = Instant::now();
    let (mut positions, mut real) = (0.0, 0.0);
    while clock.elapsed() < seconds {
        let batch = loader.next_batch()?;
        positions += (batch.batch_size * batch.seq_len) as f64;
        real += batch.n_tokens() as f64;
        loader.recycle(batch);
    }
    let elapsed = clock.elapsed().as_secs_f64();
    Ok(Alone {
        workers: options.workers,
        startup_s,
        tokens_per_s: positions / elapsed,
        real_tokens_per_s: real / elapsed,
        queue: loader.metrics(),
    })
}

/// (b): the consumer on one step of batches, again and again (one untimed step first).
fn consumer_alone(
    consumer: &mut dyn Consumer,
    plan: &BatchPlan,
    options: &LoaderOptions,
    accum: usize,
    seconds: Duration,
) -> Result<f64> {
    let mut loader = Loader::from_plan(plan.clone(), options)?;
    let step: Vec<Batch> = (0..accum)
        .map(|_| loader.next_batch())
        .collect::<Result<_, _>>()?;
    drop(loader);
    consumer.consume(&step)?;
    let clock = Instant::now();
    let mut steps = 0u32;
    while steps < MIN_STEPS || clock.elapsed() < seconds {
        consumer.consume(&step)?;
        steps += 1;
    }
    Ok(positions(&step) * f64::from(steps) / clock.elapsed().as_secs_f64())
}

/// (c) for one worker count.
fn both(
    consumer: &mut dyn Consumer,
    plan: &BatchPlan,
    options: &LoaderOptions,
    accum: usize,
    seconds: Duration,
) -> Result<Together> {
    let started = Instant::now();
    let mut loader = Loader::from_plan(plan.clone(), options)?;
    let mut step: Vec<Batch> = (0..accum)
        .map(|_| loader.next_batch())
        .collect::<Result<_, _>>()?;
    let startup_s = started.elapsed().as_secs_f64();
    let window = seconds.as_secs_f64() / WINDOWS as f64;
    let clock = Instant::now();
    let (mut wait, mut consumed) = (Duration::ZERO, 0.0);
    let mut depths = Vec::new();
    let mut timeline = Vec::new();
    let (mut window_start, mut window_wait, mut window_depths) = (0.0, Duration::ZERO, Vec::new());
    let blocked_before = loader.metrics().producer_blocked_ns;
    let mut steps = 0u32;
    loop {
        consumer.consume(&step)?;
        consumed += positions(&step);
        steps += 1;
        for batch in step.drain(..) {
            loader.recycle(batch);
        }
        let now = clock.elapsed();
        if now.as_secs_f64() - window_start >= window {
            let span = now.as_secs_f64() - window_start;
            timeline.push(Sample {
                t: now.as_secs_f64(),
                wait: window_wait.as_secs_f64() / span,
                depth: mean(&window_depths),
            });
            (window_start, window_wait) = (now.as_secs_f64(), Duration::ZERO);
            window_depths.clear();
        }
        // At least a few steps, however long a step of a large global batch takes.
        if now >= seconds && steps >= MIN_STEPS {
            break;
        }
        for _ in 0..accum {
            let ready = loader.ready();
            depths.push(ready);
            window_depths.push(ready);
            let asked = Instant::now();
            step.push(loader.next_batch()?);
            let waited = asked.elapsed();
            wait += waited;
            window_wait += waited;
        }
    }
    let elapsed = clock.elapsed().as_secs_f64();
    let consumer_wait_fraction = wait.as_secs_f64() / elapsed;
    depths.sort_unstable();
    let percentile = |q: f64| {
        depths
            .get(((depths.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    Ok(Together {
        workers: options.workers,
        startup_s,
        tokens_per_s: consumed / elapsed,
        consumer_wait_fraction,
        producer_blocked_s: (loader.metrics().producer_blocked_ns - blocked_before) as f64 / 1e9,
        depth_percentiles: [percentile(0.5), percentile(0.9), percentile(0.99)],
        verdict: verdict(consumer_wait_fraction),
        timeline,
    })
}

/// `data-bound` when the consumer waited more than [`WAIT_LIMIT`] of its time.
fn verdict(wait_fraction: f64) -> &'static str {
    if wait_fraction > WAIT_LIMIT {
        "data-bound"
    } else {
        "compute-bound"
    }
}

fn mean(values: &[usize]) -> f64 {
    values.iter().sum::<usize>() as f64 / values.len().max(1) as f64
}

/// `1.23 M`-style numbers.
fn si(v: f64) -> String {
    let (value, unit) = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(scale, _)| v.abs() >= *scale)
        .map_or((v, ""), |(scale, unit)| (v / scale, unit));
    format!("{value:.3} {unit}").trim_end().to_string()
}

fn workers_word(n: usize) -> &'static str {
    if n == 1 { "worker" } else { "workers" }
}

/// The text report.
fn text(r: &Report) -> String {
    let mut out = format!(
        "consumer: {}\n(b) consumer alone, data always ready: {} tokens/s\n(a) loader alone:\n",
        r.consumer,
        si(r.consumer_tokens_per_s)
    );
    for a in &r.pipeline {
        out += &format!(
            "    {:>2} {}: {:>12} tokens/s ({} real), start-up {:.3} s\n",
            a.workers,
            workers_word(a.workers),
            si(a.tokens_per_s),
            si(a.real_tokens_per_s),
            a.startup_s
        );
    }
    out += "(c) together through the queue:\n";
    for t in &r.together {
        out += &format!(
            "    {:>2} {}: {:>12} tokens/s, consumer waited {:.1}%, producers blocked {:.2} s, queue depth p50/p90/p99 {}/{}/{} → {}\n",
            t.workers,
            workers_word(t.workers),
            si(t.tokens_per_s),
            100.0 * t.consumer_wait_fraction,
            t.producer_blocked_s,
            t.depth_percentiles[0],
            t.depth_percentiles[1],
            t.depth_percentiles[2],
            t.verdict
        );
    }
    out += &match r.fewest_workers {
        Some(w) => format!(
            "verdict: compute-bound from {w} {}: the loader alone delivers {:.1}× what the consumer takes\n",
            workers_word(w),
            r.headroom
        ),
        None => format!(
            "verdict: data-bound with every worker count tried: the loader alone delivers {:.2}× what the consumer takes; more cores or lighter corruption are needed\n",
            r.headroom
        ),
    };
    out
}

/// `report.json` and `timeline.svg` in `--out`.
fn write_outputs(args: &BenchDataVsComputeArgs, report: &Report) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json = args.out.join("report.json");
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let series = |value: fn(&Sample) -> f64| -> Vec<crate::plot::Series> {
        report
            .together
            .iter()
            .map(|t| crate::plot::Series {
                label: format!("{} {}", t.workers, workers_word(t.workers)),
                points: t.timeline.iter().map(|s| (s.t, value(s))).collect(),
            })
            .collect()
    };
    let panels = [
        crate::plot::Panel {
            title: "consumer waiting for data (fraction of time)".into(),
            x_label: "seconds".into(),
            series: series(|s| s.wait),
        },
        crate::plot::Panel {
            title: "queue depth (batches ready)".into(),
            x_label: "seconds".into(),
            series: series(|s| s.depth),
        },
    ];
    crate::plot::chart(&panels, &args.out.join("timeline.svg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_numbers() {
        assert_eq!(verdict(0.2), "data-bound");
        assert_eq!(verdict(0.01), "compute-bound");
        assert_eq!(si(3_550_000.0), "3.550 M");
        assert_eq!(si(12.0), "12.000");
        assert_eq!(mean(&[1, 2, 3]), 2.0);
    }
}
