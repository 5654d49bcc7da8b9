//! `cocolm train`: the loader from `cocolm-pipeline` feeding the loop of `cocolm-trainer`.

use crate::cli::TrainArgs;
use crate::progress::bar;
use anyhow::{Context, Result, bail};
use cocolm_pipeline::loader::{Loader, LoaderOptions, default_workers};
use cocolm_pipeline::queue::QueueMetrics;
use cocolm_pipeline::shard::reader::{ShardSet, Verify};
use cocolm_shared::{Batch, LoaderCursor, Precision, RunConfig};
use cocolm_trainer::train::{Event, RunHooks, RunOptions, RunSummary, find_resume};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a checkpoint stores for the data side: where the loader resumes, and which data
/// it was reading.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DataState {
    cursor: LoaderCursor,
    tokenizer_sha256: String,
    examples: u64,
}

/// A training request, resolved against the data.
pub struct TrainPlan<'a> {
    /// Shard directory.
    pub data: &'a Path,
    /// Run directory.
    pub out: &'a Path,
    /// The configuration, `model.vocab_size` resolved.
    pub config: RunConfig,
    /// Continue from the newest checkpoint.
    pub resume: bool,
    /// Checksum-verify the shards.
    pub verify: bool,
}

/// `cocolm train`.
pub fn run(args: &TrainArgs) -> Result<RunSummary> {
    let mut config = RunConfig::from_toml_file(&args.config)?;
    if let Some(steps) = args.steps {
        config.train.steps = steps;
    }
    train(TrainPlan {
        data: &args.data,
        out: &args.out,
        config,
        resume: args.resume,
        verify: !args.no_verify,
    })
}

/// Run (or resume) training as planned, with a progress bar; writes `loss.svg` at the end.
pub fn train(plan: TrainPlan<'_>) -> Result<RunSummary> {
    let set = ShardSet::open(
        plan.data,
        if plan.verify {
            Verify::Full
        } else {
            Verify::Structure
        },
    )?;
    let mut config = plan.config;
    let manifest = set.manifest();
    let vocab = manifest.tokenizer.vocab_size;
    if config.model.vocab_size == 0 {
        config.model.vocab_size = vocab;
    } else if config.model.vocab_size < vocab {
        bail!(
            "model.vocab_size {} is smaller than the {} ids of {}'s tokenizer",
            config.model.vocab_size,
            vocab,
            plan.data.display()
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
        let point = find_resume(plan.out)?
            .with_context(|| format!("--resume: no checkpoint under {}", plan.out.display()))?;
        Some(point)
    } else {
        None
    };
    let cursor = match &resume {
        Some(point) => {
            let state: DataState =
                serde_json::from_value(point.caller.clone()).with_context(|| {
                    format!(
                        "{}: no loader state in the checkpoint",
                        point.path.display()
                    )
                })?;
            if state.tokenizer_sha256 != manifest.tokenizer.sha256 || state.examples != set.len() {
                bail!(
                    "{}: the checkpoint was trained on other shards (tokenizer {}, {} examples)",
                    point.path.display(),
                    state.tokenizer_sha256,
                    state.examples
                );
            }
            state.cursor
        }
        None => LoaderCursor::start(config.train.seed),
    };
    std::fs::create_dir_all(plan.out)
        .with_context(|| format!("creating {}", plan.out.display()))?;
    std::fs::write(plan.out.join("config.toml"), config.to_toml_string())
        .with_context(|| format!("writing {}", plan.out.join("config.toml").display()))?;

    let options = LoaderOptions {
        batch_size: config.train.batch_size,
        workers: if config.data.workers == 0 {
            default_workers()
        } else {
            config.data.workers
        },
        queue_depth: config.data.queue_depth,
        mask_prob: config.data.mask_prob,
        crop_fraction: config.model.scl.then_some(config.data.crop_fraction),
        ..LoaderOptions::default()
    };
    let mut loader = Loader::start(set.clone(), &options, cursor)?;
    let queue = Arc::new(Mutex::new(QueueMetrics::default()));
    let queue_in_source = queue.clone();
    let batches = std::iter::from_fn(move || {
        let batch = loader.next_batch();
        *queue_in_source.lock().expect("queue metrics lock") = loader.metrics();
        Some(batch)
    });
    let data_log_path = plan.out.join(DATA_METRICS_FILE);
    let data_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&data_log_path)
        .with_context(|| format!("opening {}", data_log_path.display()))?;
    let progress = bar(
        config.train.steps,
        "{elapsed_precise} [{wide_bar}] step {pos}/{len} ETA {eta} {msg}",
    );
    let mut hooks = Hooks {
        progress: &progress,
        tokenizer_sha256: manifest.tokenizer.sha256.clone(),
        examples: set.len(),
        queue,
        data_log,
    };
    let run_options = RunOptions {
        config: &config,
        out_dir: plan.out,
        resume,
        topology: cocolm_trainer::step::DataParallel::Single,
    };
    let summary = match config.train.precision {
        Precision::Fp32 => {
            let device = Default::default();
            cocolm_trainer::train::run::<cocolm_trainer::CpuBackend, _, _>(
                run_options,
                &device,
                batches,
                &mut hooks,
            )?
        }
        other => run_on_gpu(other, run_options, batches, &mut hooks)?,
    };
    progress.finish_and_clear();
    let svg = plan.out.join("loss.svg");
    crate::plot::plot_run(&plan.out.join(cocolm_trainer::train::METRICS_FILE), &svg)?;
    Ok(summary)
}

#[cfg(not(feature = "cuda"))]
fn run_on_gpu(
    precision: Precision,
    _options: RunOptions<'_, cocolm_trainer::CpuInner>,
    _batches: impl Iterator<Item = cocolm_pipeline::Result<Batch>>,
    _hooks: &mut Hooks<'_>,
) -> Result<RunSummary> {
    bail!(
        "precision {precision:?} trains on CUDA: rebuild with `--features cuda`, or set train.precision = \"fp32\" for the CPU"
    )
}

#[cfg(feature = "cuda")]
fn run_on_gpu(
    precision: Precision,
    options: RunOptions<'_>,
    batches: impl Iterator<Item = cocolm_pipeline::Result<Batch>>,
    hooks: &mut Hooks<'_>,
) -> Result<RunSummary> {
    use cocolm_trainer::backend::{CudaBf16, CudaF16};
    let device = Default::default();
    Ok(match precision {
        Precision::Bf16 => {
            cocolm_trainer::train::run::<CudaBf16, _, _>(options, &device, batches, hooks)?
        }
        _ => cocolm_trainer::train::run::<CudaF16, _, _>(options, &device, batches, hooks)?,
    })
}

/// Loader queue metrics, one JSON line per logged step (appended by every run, resumed
/// runs included): what the consumer waited, what producers were blocked, queue depth.
pub const DATA_METRICS_FILE: &str = "loader_metrics.jsonl";

struct Hooks<'a> {
    progress: &'a ProgressBar,
    tokenizer_sha256: String,
    examples: u64,
    queue: Arc<Mutex<QueueMetrics>>,
    data_log: std::fs::File,
}

impl Hooks<'_> {
    /// A line above the bar, or on stderr when there is no bar.
    fn say(&self, line: String) {
        if self.progress.is_hidden() {
            eprintln!("{line}");
        } else {
            self.progress.println(line);
        }
    }
}

impl RunHooks for Hooks<'_> {
    fn caller_state(&mut self, last_batch: &Batch) -> serde_json::Value {
        serde_json::to_value(DataState {
            cursor: last_batch.cursor_after,
            tokenizer_sha256: self.tokenizer_sha256.clone(),
            examples: self.examples,
        })
        .expect("the data state serialises")
    }

    fn on_event(&mut self, event: Event<'_>) {
        match event {
            Event::Resumed { step, path } => {
                self.progress.set_position(step);
                self.say(format!("resumed at step {step} from {}", path.display()));
            }
            Event::Step(m) => {
                let queue = *self.queue.lock().expect("queue metrics lock");
                let line = serde_json::json!({"step": m.step, "queue": queue});
                if let Err(e) = writeln!(self.data_log, "{line}") {
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
                if self.progress.is_hidden() {
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
            Event::Checkpoint { step, path } => {
                self.say(format!("step {step}: checkpoint {}", path.display()));
            }
            _ => {}
        }
    }
}
