//! `cocolm train`: the loader from `cocolm-pipeline` feeding the loop of `cocolm-trainer`.

pub mod data;

use crate::cli::TrainArgs;
use crate::progress::bar;
use crate::signals::{Resumable, command_line};
use anyhow::{Context, Result, bail};
use cocolm_pipeline::loader::{BatchPlan, Loader, LoaderOptions};
use cocolm_pipeline::prepare::output::TOKENIZER_FILE;
use cocolm_pipeline::queue::QueueMetrics;
use cocolm_shared::{Batch, Device, DirLock, LoaderCursor, Precision, RunConfig};
use cocolm_trainer::collective::launch::Launch;
use cocolm_trainer::step::DataParallel;
use cocolm_trainer::train::{Evaluation, Event, RunHooks, RunOptions, RunSummary, find_resume};
use data::{SourceSpec, Stream};
use indicatif::ProgressBar;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A training request, resolved against the data.
pub struct TrainPlan<'a> {
    /// The shard directories to blend, with their weights.
    pub sources: Vec<SourceSpec>,
    /// Run directory.
    pub out: &'a Path,
    /// The configuration, `model.vocab_size` resolved.
    pub config: RunConfig,
    /// Continue from the newest checkpoint.
    pub resume: bool,
    /// Checksum-verify the shards.
    pub verify: bool,
    /// Held-out shards, steps between evaluations, batches evaluated.
    pub eval: Option<(PathBuf, u64, usize)>,
    /// A Hugging Face export to start from.
    pub init_from_hf: Option<PathBuf>,
}

/// `cocolm train`.
pub fn run(args: &TrainArgs) -> Result<RunSummary> {
    let mut config = RunConfig::from_toml_file_with(&args.config, &args.overrides.assignments())?;
    if let Some(steps) = args.steps {
        config.train.steps = steps;
    }
    let sources = data::sources(&args.data, &config);
    train(TrainPlan {
        sources,
        out: &args.out,
        config,
        resume: args.resume,
        verify: !args.no_verify,
        eval: args
            .eval_data
            .clone()
            .map(|dir| (dir, args.eval_every, args.eval_batches)),
        init_from_hf: args.init_from_hf.clone(),
    })
}

/// Run (or resume) training as planned, with a progress bar; writes `loss.svg` at the end.
///
/// A process launched as one rank of several (torchrun's or Slurm's variables) trains its
/// share of the data; rank 0 reports progress and writes the run's files.
pub fn train(plan: TrainPlan<'_>) -> Result<RunSummary> {
    let launch = Launch::from_env()?;
    if launch.world > 1 && plan.config.train.device != Device::Cuda {
        bail!(
            "{} processes were launched (rank {}): data-parallel training across processes runs on CUDA with NCCL (train.device = \"cuda\"); on the CPU, train as one process",
            launch.world,
            launch.rank
        );
    }
    let lead = launch.rank == 0;
    // One job per run directory (rank 0 speaks for a data-parallel run), held to the end;
    // taken first, so a second job is refused before it reads anything.
    let _lock = if lead {
        Some(DirLock::acquire(plan.out)?)
    } else {
        None
    };
    let sets = data::open(&plan.sources, plan.verify)?;
    let mut config = plan.config;
    let manifest = sets[0].manifest();
    let first_dir = plan.sources[0].path.display();
    let vocab = manifest.tokenizer.vocab_size;
    if config.model.vocab_size == 0 {
        config.model.vocab_size = vocab;
    } else if config.model.vocab_size < vocab {
        bail!(
            "model.vocab_size {} is smaller than the {} ids of {first_dir}'s tokenizer",
            config.model.vocab_size,
            vocab
        );
    }
    if config.model.max_positions < manifest.seq_len {
        bail!(
            "model.max_positions {} is shorter than the shards' seq_len {}",
            config.model.max_positions,
            manifest.seq_len
        );
    }
    config.validate(Path::new("<run configuration>"))?;

    let resume = if plan.resume {
        let point = find_resume(plan.out)?;
        match &point {
            Some(point) if lead => {
                for passed in &point.passed_over {
                    eprintln!(
                        "warning: passing over {}: {}",
                        passed.path.display(),
                        passed.reason
                    );
                }
            }
            None if lead => eprintln!(
                "note: --resume: no checkpoint under {} yet; starting from step 0",
                plan.out.display()
            ),
            _ => {}
        }
        point
    } else {
        None
    };
    let world = launch.world as u64;
    let (stream, changes) = Stream::plan(
        &sets,
        plan.sources.iter().map(|s| s.weight.clone()).collect(),
        config.train.seed,
        world,
        config.train.batch_size as u64 * world,
        resume.as_ref().map(|p| (&p.caller, p.path.as_path())),
    )?;
    std::fs::create_dir_all(plan.out)
        .with_context(|| format!("creating {}", plan.out.display()))?;
    if lead {
        std::fs::write(plan.out.join("config.toml"), config.to_toml_string())
            .with_context(|| format!("writing {}", plan.out.join("config.toml").display()))?;
        // The tokenizer the ids come from, beside the checkpoints (fine-tuning and export
        // read it there); every source has the same one (checked by `data::open`).
        let from = plan.sources[0].path.join(TOKENIZER_FILE);
        if from.is_file() {
            let to = plan.out.join(TOKENIZER_FILE);
            let tmp = plan.out.join(format!("{TOKENIZER_FILE}.tmp"));
            std::fs::copy(&from, &tmp)
                .and_then(|_| std::fs::rename(&tmp, &to))
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }

    let init = match (&plan.init_from_hf, &resume) {
        (Some(dir), None) => Some(initial_weights(dir, &config, manifest)?),
        _ => None,
    };
    let eval = match (&plan.eval, lead) {
        (Some((dir, every, batches)), true) => Some(Evaluation {
            batches: held_out(dir, &sets[0], &config, *batches, plan.verify)?,
            every: *every,
        }),
        _ => None,
    };
    let options = LoaderOptions::for_run(&config, launch.rank as u64, launch.world as u64);
    let plan_of_batches = BatchPlan::blended(sets, stream.blend.clone(), &options, stream.cursor)?;
    let mut loader = Loader::from_plan(plan_of_batches, &options)?;
    let queue = Arc::new(Mutex::new(QueueMetrics::default()));
    let latest = Arc::new(Mutex::new(stream.cursor));
    let (queue_in_source, latest_in_source) = (queue.clone(), latest.clone());
    let batches = std::iter::from_fn(move || {
        let batch = loader.next_batch();
        *queue_in_source.lock().expect("queue metrics lock") = loader.metrics();
        if let Ok(b) = &batch {
            *latest_in_source.lock().expect("cursor lock") = b.cursor_after;
        }
        Some(batch)
    });
    let data_log_path = plan.out.join(DATA_METRICS_FILE);
    let data_log = if lead {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&data_log_path)
            .with_context(|| format!("opening {}", data_log_path.display()))?;
        // What changed on resume, said and logged with the step it takes effect after.
        let step = resume.as_ref().map_or(0, |p| p.step);
        for change in &changes {
            eprintln!("note: {change}");
            writeln!(
                file,
                "{}",
                serde_json::json!({"step": step, "change": change.to_string()})
            )
            .with_context(|| format!("writing {}", data_log_path.display()))?;
        }
        Some(file)
    } else {
        None
    };
    let progress = if lead {
        bar(
            config.train.steps,
            "{elapsed_precise} [{wide_bar}] step {pos}/{len} ETA {eta} {msg}",
        )
    } else {
        ProgressBar::hidden()
    };
    let mut hooks = Hooks {
        progress: &progress,
        stream,
        latest,
        queue,
        data_log,
        lead,
    };
    let run = Run {
        config: &config,
        out: plan.out,
        resume,
        eval,
        init,
    };
    let summary = match (config.train.device, config.train.precision) {
        (Device::Cpu, Precision::Fp32) => run.on::<cocolm_trainer::CpuBackend>(
            DataParallel::Single,
            &Default::default(),
            batches,
            &mut hooks,
        )?,
        (Device::Cpu, _) => run.on::<cocolm_trainer::backend::FlexBackend>(
            DataParallel::Single,
            &Default::default(),
            batches,
            &mut hooks,
        )?,
        (Device::Cuda, _) => run_on_gpu(&launch, run, batches, &mut hooks)?,
    };
    progress.finish_and_clear();
    if lead {
        let svg = plan.out.join("loss.svg");
        crate::plot::plot_run(&plan.out.join(cocolm_trainer::train::METRICS_FILE), &svg)?;
    }
    if let Some(signal) = summary.stopped {
        return Err(stopped_message(signal, &summary, lead).into());
    }
    Ok(summary)
}

/// The tokenizer of a run: `given`, else the `tokenizer.json` that `train` copies into
/// the run directory; checked against the model's vocabulary.
pub fn run_tokenizer(
    given: Option<&Path>,
    run: &Path,
    vocab_size: usize,
) -> Result<cocolm_pipeline::tokenizer::TokenizerJson> {
    let path = given.map_or_else(|| run.join(TOKENIZER_FILE), Path::to_path_buf);
    if !path.is_file() {
        bail!(
            "{}: no tokenizer there; pass --tokenizer with the tokenizer.json of the shards the run trained on",
            path.display()
        );
    }
    let tokenizer = cocolm_pipeline::tokenizer::TokenizerJson::load(&path)?;
    if tokenizer.vocab_size() > vocab_size {
        bail!(
            "{}: {} ids, more than the model's vocabulary of {vocab_size}: not the run's tokenizer",
            path.display(),
            tokenizer.vocab_size()
        );
    }
    Ok(tokenizer)
}

/// The weights of the Hugging Face export in `dir` for a model of `config`, checked
/// against the shards' tokenizer when the export has one.
fn initial_weights(
    dir: &Path,
    config: &RunConfig,
    shards: &cocolm_shared::manifest::Manifest,
) -> Result<(Vec<cocolm_trainer::params::NamedTensor>, PathBuf)> {
    let tokenizer = dir.join(TOKENIZER_FILE);
    if tokenizer.is_file() {
        let sha256 = cocolm_pipeline::tokenizer::TokenizerJson::load(&tokenizer)?
            .sha256()
            .to_string();
        if sha256 != shards.tokenizer.sha256 {
            bail!(
                "--init-from-hf {}: its tokenizer.json is not the one the shards were made with",
                dir.display()
            );
        }
    } else {
        eprintln!(
            "note: --init-from-hf {}: no tokenizer.json there, so the ids cannot be checked against the shards'",
            dir.display()
        );
    }
    let fresh = cocolm_trainer::params::export(&cocolm_trainer::model::CocoLm::<
        cocolm_trainer::CpuInner,
    >::init(&config.model, &Default::default())?);
    let (weights, notes) = cocolm_trainer::hf::export::import(dir, &config.model, fresh)?;
    for note in notes {
        eprintln!("note: --init-from-hf: {note}");
    }
    Ok((weights, dir.to_path_buf()))
}

/// The first `batches` batches of the held-out shards in `dir` (each example at most
/// once), corrupted as training batches are, in an order fixed by the run's seed.
fn held_out(
    dir: &Path,
    train: &cocolm_pipeline::shard::reader::ShardSet,
    config: &RunConfig,
    batches: usize,
    verify: bool,
) -> Result<Vec<Batch>> {
    let spec = SourceSpec {
        path: dir.to_path_buf(),
        weight: "1".into(),
    };
    let sets = data::open(std::slice::from_ref(&spec), verify)?;
    let (held, trained) = (sets[0].manifest(), train.manifest());
    if held.tokenizer.sha256 != trained.tokenizer.sha256 {
        bail!(
            "--eval-data {}: made with another tokenizer than the training shards",
            dir.display()
        );
    }
    if held.seq_len > config.model.max_positions {
        bail!(
            "--eval-data {}: seq_len {} is longer than model.max_positions {}",
            dir.display(),
            held.seq_len,
            config.model.max_positions
        );
    }
    let rows = config.train.batch_size as u64;
    let whole = (sets[0].len() / rows).max(1) as usize;
    let (stream, _) = Stream::plan(&sets, vec!["1".into()], config.train.seed, 1, rows, None)?;
    let options = LoaderOptions::for_run(config, 0, 1);
    let plan = BatchPlan::blended(sets, stream.blend.clone(), &options, stream.cursor)?;
    let mut loader = Loader::from_plan(plan, &options)?;
    (0..batches.min(whole))
        .map(|_| Ok(loader.next_batch()?))
        .collect()
}

/// What a run stopped by a signal reports (rank 0 only): where it is and how to resume.
fn stopped_message(signal: i32, summary: &RunSummary, lead: bool) -> Resumable {
    let cause = if signal > 0 {
        format!("signal {signal}")
    } else {
        "a signal to another rank".into()
    };
    Resumable(match (&summary.last_checkpoint, lead) {
        (_, false) => String::new(),
        (Some(path), true) => format!(
            "stopped on {cause} after step {}; checkpoint {}; to resume:\n  {}",
            summary.step,
            path.display(),
            command_line("--resume")
        ),
        (None, true) => format!(
            "stopped on {cause} before the first step ended: nothing to save; to start again:\n  {}",
            command_line("")
        ),
    })
}

/// A run, before its backend is chosen.
struct Run<'a> {
    config: &'a RunConfig,
    out: &'a Path,
    resume: Option<cocolm_trainer::train::ResumePoint>,
    eval: Option<Evaluation>,
    init: Option<(Vec<cocolm_trainer::params::NamedTensor>, PathBuf)>,
}

impl Run<'_> {
    fn on<B: cocolm_trainer::kernels::TrainBackend>(
        self,
        topology: DataParallel<B::InnerBackend>,
        device: &B::Device,
        batches: impl Iterator<Item = cocolm_pipeline::Result<Batch>>,
        hooks: &mut Hooks<'_>,
    ) -> Result<RunSummary> {
        let options = RunOptions {
            config: self.config,
            out_dir: self.out,
            resume: self.resume,
            topology,
            stop: crate::signals::stop(),
            eval: self.eval,
            init: self.init,
        };
        Ok(cocolm_trainer::train::run::<B, _, _>(
            options, device, batches, hooks,
        )?)
    }
}

#[cfg(not(feature = "cuda"))]
fn run_on_gpu(
    _launch: &Launch,
    _run: Run<'_>,
    _batches: impl Iterator<Item = cocolm_pipeline::Result<Batch>>,
    _hooks: &mut Hooks<'_>,
) -> Result<RunSummary> {
    bail!(
        "{}; or train on the CPU with --device cpu",
        super::needs_cuda_build("train.device = \"cuda\"")
    )
}

#[cfg(feature = "cuda")]
fn run_on_gpu(
    launch: &Launch,
    run: Run<'_>,
    batches: impl Iterator<Item = cocolm_pipeline::Result<Batch>>,
    hooks: &mut Hooks<'_>,
) -> Result<RunSummary> {
    let topology = super::cuda::topology(launch, run.config.train.zero_bucket, launch.world > 1)?;
    let device = super::cuda::device(launch.local_rank);
    run.on::<cocolm_trainer::backend::CudaBackend>(topology, &device, batches, hooks)
}

/// Loader queue metrics, one JSON line per logged step (appended by every run, resumed
/// runs included): what the consumer waited, what producers were blocked, queue depth.
pub const DATA_METRICS_FILE: &str = "loader_metrics.jsonl";

struct Hooks<'a> {
    progress: &'a ProgressBar,
    /// The data stream: what checkpoints store, what metrics report.
    stream: Stream,
    /// The cursor after the newest batch handed to the trainer.
    latest: Arc<Mutex<LoaderCursor>>,
    queue: Arc<Mutex<QueueMetrics>>,
    /// Rank 0's loader metrics log (other ranks write none).
    data_log: Option<std::fs::File>,
    /// Whether this is rank 0 (the one that reports).
    lead: bool,
}

impl Hooks<'_> {
    /// A line above the bar, or on stderr when there is no bar (rank 0 only).
    fn say(&self, line: String) {
        if !self.lead {
            return;
        }
        if self.progress.is_hidden() {
            eprintln!("{line}");
        } else {
            self.progress.println(line);
        }
    }
}

impl RunHooks for Hooks<'_> {
    fn caller_state(&mut self, last_batch: &Batch) -> serde_json::Value {
        self.stream.state(last_batch.cursor_after)
    }

    fn data_metrics(&mut self) -> Option<serde_json::Value> {
        let cursor = *self.latest.lock().expect("cursor lock");
        Some(self.stream.report(cursor))
    }

    fn on_event(&mut self, event: Event<'_>) {
        match event {
            Event::Started {
                rank,
                world,
                parameters,
                optimizer_state_bytes,
            } => {
                let unsharded = 12 * parameters as u64;
                let line = format!(
                    "rank {rank} of {world}: {parameters} parameters; optimiser state {} on this rank ({} unsharded{})",
                    crate::progress::bytes(optimizer_state_bytes as f64),
                    crate::progress::bytes(unsharded as f64),
                    if world > 1 { ", ZeRO-1" } else { "" }
                );
                // Every rank reports its own share.
                if self.lead {
                    self.say(line);
                } else {
                    eprintln!("{line}");
                }
            }
            Event::Resumed { step, path } => {
                self.progress.set_position(step);
                self.say(format!("resumed at step {step} from {}", path.display()));
            }
            Event::Step(m) => {
                let queue = *self.queue.lock().expect("queue metrics lock");
                let line = serde_json::json!({"step": m.step, "queue": queue});
                if let Some(log) = &mut self.data_log
                    && let Err(e) = writeln!(log, "{line}")
                {
                    self.say(format!("warning: cannot write {DATA_METRICS_FILE}: {e}"));
                }
                self.progress.set_position(m.step);
                self.progress.set_message(format!(
                    "loss {:.3} (mlm {:.3} copy {:.3} clm {:.3}) {:.0} tok/s, data wait {:.0}%",
                    m.loss,
                    m.mlm_loss,
                    m.copy_loss,
                    m.clm_loss,
                    m.tokens_per_s,
                    100.0 * m.data_wait_fraction.unwrap_or(0.0)
                ));
                if self.lead && self.progress.is_hidden() {
                    eprintln!(
                        "step {} loss {:.4} mlm {:.4} copy {:.4} clm {:.4} replaced {:.3} lr {:.2e} {:.0} tok/s",
                        m.step,
                        m.loss,
                        m.mlm_loss,
                        m.copy_loss,
                        m.clm_loss,
                        m.replaced_fraction,
                        m.lr,
                        m.tokens_per_s
                    );
                }
            }
            Event::SetAside { from, to } => {
                self.say(format!(
                    "moved the damaged {} to {} (kept for inspection)",
                    from.display(),
                    to.display()
                ));
            }
            Event::Checkpoint { step, path } => {
                self.say(format!("step {step}: checkpoint {}", path.display()));
            }
            _ => {}
        }
    }
}
