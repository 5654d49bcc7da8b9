//! The training loop: batches in, metrics and checkpoints out, resumable.
//!
//! A run directory holds `metrics.jsonl` (one [`StepMetrics`] object per logged step)
//! and `checkpoints/step-XXXXXXXX/` (see [`crate::checkpoint`]). To resume, the caller
//! asks [`find_resume`] for the newest checkpoint, repositions its loader with the stored
//! caller value, and passes the [`ResumePoint`] to [`run`]: the continued run then
//! produces bit-identical losses to an uninterrupted one on CPU.

use crate::checkpoint::{Checkpoint, Checkpointer, FileCheckpointer, Retention};
use crate::collective::{all_ok, any_rank};
use crate::kernels::TrainBackend;
use crate::step::{DataParallel, StepMetrics, Trainer};
use crate::{Error, Result, params};
use cocolm_shared::{Batch, RunConfig, Stop};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// File name of the metrics log inside the run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Directory of the checkpoints inside the run directory.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// The newest intact checkpoint of a run directory and the caller value stored in it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumePoint {
    /// The checkpoint directory.
    pub path: PathBuf,
    /// Optimiser steps completed at the checkpoint.
    pub step: u64,
    /// What [`RunHooks::caller_state`] returned when it was written.
    pub caller: serde_json::Value,
    /// Newer checkpoints passed over because they are damaged or incomplete; [`run`]
    /// sets the damaged ones aside before it writes that step again.
    pub passed_over: Vec<PassedOver>,
}

/// A checkpoint [`find_resume`] did not take, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct PassedOver {
    /// Its directory.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
    /// Complete but damaged (set aside on resume), rather than never finished (a
    /// `.tmp` directory, replaced when that step is saved again).
    pub damaged: bool,
}

/// The newest intact checkpoint under `out_dir`, if any: every checkpoint is verified
/// against the checksums of its `state.json` ([`FileCheckpointer::verify`]) from the
/// newest down, and those passed over are listed in the result. Fails, listing them,
/// when checkpoints exist but none is intact.
pub fn find_resume(out_dir: &Path) -> Result<Option<ResumePoint>> {
    let checkpointer =
        FileCheckpointer::new(out_dir.join(CHECKPOINT_DIR), Retention::KeepNewest(1));
    let mut damaged = Vec::new();
    let mut found = None;
    // Newest first (`steps` is in order).
    for step in checkpointer.steps()?.into_iter().rev() {
        let path = checkpointer.dir_of(step);
        match checkpointer.verify(&path) {
            Ok(verified) => {
                found = Some((path, verified));
                break;
            }
            Err(e @ Error::CheckpointFormat { .. }) => return Err(e),
            Err(e) => damaged.push(PassedOver {
                path,
                reason: e.to_string(),
                damaged: true,
            }),
        }
    }
    let resumed_step = found.as_ref().map(|(_, v)| v.step);
    let mut passed_over: Vec<PassedOver> = checkpointer
        .incomplete()?
        .into_iter()
        .rev()
        .filter(|(step, _)| resumed_step.is_none_or(|s| *step > s))
        .map(|(_, path)| PassedOver {
            path,
            reason: "incomplete: its job ended while writing it".into(),
            damaged: false,
        })
        .collect();
    passed_over.extend(damaged);
    match found {
        Some((path, verified)) => Ok(Some(ResumePoint {
            path,
            step: verified.step,
            caller: verified.caller,
            passed_over,
        })),
        None if passed_over.iter().any(|p| p.damaged) => Err(Error::Checkpoint {
            path: checkpointer.root().to_path_buf(),
            message: format!(
                "no intact checkpoint to resume from: {}",
                passed_over
                    .iter()
                    .map(|p| p.reason.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
        None => Ok(None),
    }
}

/// Something the loop reports while it runs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The trainer is built (before any checkpoint is restored).
    Started {
        /// This rank.
        rank: usize,
        /// Number of data-parallel ranks.
        world: usize,
        /// Trainable parameters.
        parameters: usize,
        /// Bytes of optimiser state on this rank (fp32 master weights and moments:
        /// `12·parameters / world`, plus padding).
        optimizer_state_bytes: u64,
    },
    /// The model, optimiser and step were restored from a checkpoint.
    Resumed {
        /// Steps completed at the checkpoint.
        step: u64,
        /// The checkpoint directory.
        path: &'a Path,
    },
    /// A damaged checkpoint newer than the resume point was moved aside (rank 0).
    SetAside {
        /// Where it was.
        from: &'a Path,
        /// Where it is now.
        to: &'a Path,
    },
    /// A logged step (every `train.log_every` steps and the last one).
    Step(&'a StepMetrics),
    /// A checkpoint was written.
    Checkpoint {
        /// Steps completed.
        step: u64,
        /// The checkpoint directory.
        path: &'a Path,
    },
}

/// The caller's side of the loop.
pub trait RunHooks {
    /// The value stored in a checkpoint written right after `last_batch`; by default its
    /// `cursor_after`, which repositions a loader to the next batch.
    fn caller_state(&mut self, last_batch: &Batch) -> serde_json::Value {
        serde_json::json!(last_batch.cursor_after)
    }

    /// What the data side has to say about the step just run, logged in its metrics
    /// line as `data`; by default nothing.
    fn data_metrics(&mut self) -> Option<serde_json::Value> {
        None
    }

    /// Progress reporting; by default nothing.
    fn on_event(&mut self, _event: Event<'_>) {}
}

/// Hooks with the default behaviour.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultHooks;

impl RunHooks for DefaultHooks {}

/// What to run and where.
#[derive(Debug)]
pub struct RunOptions<'a, B: burn::tensor::backend::Backend> {
    /// The run configuration (`model.vocab_size` resolved).
    pub config: &'a RunConfig,
    /// Run directory (created if needed; shared by all ranks).
    pub out_dir: &'a Path,
    /// Continue from this checkpoint (from [`find_resume`]); `None` starts afresh and
    /// refuses a directory that already holds checkpoints.
    pub resume: Option<ResumePoint>,
    /// This process's place among the data-parallel ranks.
    pub topology: DataParallel<B>,
    /// A request to stop early: the loop finishes the optimiser step under way, writes a
    /// checkpoint and returns with [`RunSummary::stopped`] set.
    pub stop: Stop,
    /// Held-out batches to evaluate the model on, rank 0 only.
    pub eval: Option<Evaluation>,
    /// Start a fresh run from these weights (every parameter by path, and the file they
    /// come from) instead of a random draw; ignored on resume.
    pub init: Option<(Vec<params::NamedTensor>, PathBuf)>,
}

/// Held-out batches and how often to evaluate on them ([`Trainer::evaluate`]); the
/// results go into that step's metrics line as `eval` (the step is logged whatever
/// `log_every` says), and into the last step's.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The batches, the same at every evaluation.
    pub batches: Vec<Batch>,
    /// Evaluate after every this many steps.
    pub every: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Optimiser steps completed.
    pub step: u64,
    /// The newest checkpoint written or resumed from.
    pub last_checkpoint: Option<PathBuf>,
    /// Metrics of the last step run in this call.
    pub last_metrics: Option<StepMetrics>,
    /// The batch source ended before `train.steps`.
    pub source_exhausted: bool,
    /// The run stopped early on a [`RunOptions::stop`] request (on any rank); its cause.
    pub stopped: Option<i32>,
}

/// Train until `train.steps`, pulling `train.grad_accum` batches per step from `batches`.
///
/// Writes metrics every `log_every` steps, checkpoints every `checkpoint_every` steps,
/// when `checkpoint_every_minutes` have passed since the last one, and at the end. A
/// [`RunOptions::stop`] request (a signal) ends the run after the step under way, with a
/// checkpoint; the ranks of a data-parallel run agree on it and on time-based
/// checkpoints, so they stop and save at the same step. Fails with [`Error::NonFinite`]
/// (naming the intact last checkpoint) when the loss or gradient norm stops being finite,
/// and with [`Error::Data`] when the source yields an error. Time spent waiting in
/// `batches.next()` is reported as `data_wait_fraction`.
///
/// With several data-parallel ranks every rank calls it with its own share of the
/// batches; rank 0 writes `metrics.jsonl` (statistics summed over all ranks) and the
/// model, every rank its optimiser shard; the run stops on every rank when one rank's
/// source ends.
pub fn run<B, I, E>(
    options: RunOptions<'_, B::InnerBackend>,
    device: &B::Device,
    batches: I,
    hooks: &mut impl RunHooks,
) -> Result<RunSummary>
where
    B: TrainBackend,
    I: IntoIterator<Item = std::result::Result<Batch, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let RunOptions {
        config,
        out_dir,
        resume,
        topology,
        stop,
        eval,
        init,
    } = options;
    config
        .validate(Path::new("<run configuration>"))
        .map_err(|e| Error::config("run", e.to_string()))?;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let checkpointer = FileCheckpointer::new(
        out_dir.join(CHECKPOINT_DIR),
        Retention::KeepNewest(config.train.keep_checkpoints),
    );
    let (initial, source) = match init {
        Some((tensors, source)) if resume.is_none() => (Some(tensors), source),
        _ => (None, PathBuf::new()),
    };
    let initial = initial.map(|tensors| (tensors, source.as_path()));
    let mut trainer = Trainer::<B>::starting_from(config, device, topology, initial)?;
    let lead = trainer.collective().rank() == 0;
    hooks.on_event(Event::Started {
        rank: trainer.collective().rank(),
        world: trainer.collective().world(),
        parameters: params::param_specs(trainer.model())
            .iter()
            .map(params::ParamSpec::numel)
            .sum(),
        optimizer_state_bytes: trainer.optimizer().state_bytes(),
    });
    let inner_device = burn::tensor::Tensor::<B, 1>::empty([0], device)
        .inner()
        .device();
    let metrics_path = out_dir.join(METRICS_FILE);
    let mut last_checkpoint = None;
    match &resume {
        Some(point) => {
            let checkpoint = checkpointer.load(&point.path)?;
            if checkpoint.config.model != config.model {
                return Err(Error::Checkpoint {
                    path: point.path.clone(),
                    message: "its model configuration differs from this run's".into(),
                });
            }
            let step = checkpoint.step;
            trainer.restore(checkpoint, &point.path)?;
            if lead {
                truncate_metrics(&metrics_path, step)?;
            }
            hooks.on_event(Event::Resumed {
                step,
                path: &point.path,
            });
            last_checkpoint = Some(point.path.clone());
        }
        None => {
            if let Some(existing) = checkpointer.latest()? {
                return Err(Error::Checkpoint {
                    path: existing,
                    message: "the run directory already holds checkpoints; resume or choose another directory".into(),
                });
            }
            if lead {
                std::fs::File::create(&metrics_path).map_err(|e| Error::io(&metrics_path, e))?;
            }
        }
    }
    // Every rank reaches here (past `find_resume`) before rank 0's metrics file is
    // opened by anyone and damaged checkpoints are moved.
    if !all_ok(trainer.collective(), true, &inner_device)? {
        unreachable!("every rank agrees to start");
    }
    if lead && let Some(point) = &resume {
        for passed in point.passed_over.iter().filter(|p| p.damaged) {
            let to = checkpointer.set_aside(&passed.path)?;
            hooks.on_event(Event::SetAside {
                from: &passed.path,
                to: &to,
            });
        }
    }
    let mut metrics_file = if lead {
        Some(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&metrics_path)
                .map_err(|e| Error::io(&metrics_path, e))?,
        )
    } else {
        None
    };

    let mut source = batches.into_iter();
    let mut last_batch: Option<Batch> = None;
    let mut last_metrics = None;
    let mut saved_step = resume.as_ref().map(|r| r.step);
    let (mut wait_s, mut compute_s) = (0.0f64, 0.0f64);
    let mut source_exhausted = false;
    let save = |trainer: &Trainer<B>, batch: &Batch, hooks: &mut dyn RunHooks| -> Result<PathBuf> {
        let checkpoint = Checkpoint {
            step: trainer.step(),
            config: config.clone(),
            model: if lead {
                params::export(trainer.model())
            } else {
                Vec::new()
            },
            optimizer: vec![trainer.optimizer().state()],
            caller: hooks.caller_state(batch),
            loss_scale: trainer.loss_scale(),
        };
        checkpointer.save_ranked(&checkpoint, trainer.collective(), &inner_device)
    };
    let sync_metrics = |file: &Option<std::fs::File>| -> Result<()> {
        match file {
            Some(f) => f.sync_data().map_err(|e| Error::io(&metrics_path, e)),
            None => Ok(()),
        }
    };

    let checkpoint_interval = (config.train.checkpoint_every_minutes > 0.0)
        .then(|| Duration::from_secs_f64(config.train.checkpoint_every_minutes * 60.0));
    let mut last_save = Instant::now();
    let mut stopped = None;
    'steps: while trainer.step() < config.train.steps {
        let waited = Instant::now();
        let stop_here = stop.requested();
        let mut micro = Vec::with_capacity(config.train.grad_accum);
        while stop_here.is_none() && micro.len() < config.train.grad_accum {
            match source.next() {
                Some(Ok(batch)) => micro.push(batch),
                Some(Err(e)) => {
                    return Err(Error::Data {
                        step: trainer.step(),
                        source: e.into(),
                    });
                }
                None => {
                    source_exhausted = true;
                    break;
                }
            }
        }
        let time_due = checkpoint_interval.is_some_and(|every| last_save.elapsed() >= every);
        // The ranks decide together: all stop when any rank's source ends or any rank
        // is asked to stop, and all save when any rank's clock says so.
        let [ended, stopping, save_now] = any_rank(
            trainer.collective(),
            [source_exhausted, stop_here.is_some(), time_due],
            &inner_device,
        )?;
        if ended {
            source_exhausted = true;
            break 'steps;
        }
        if stopping {
            // A rank asked by a signal other ranks did not get reports it as cause -1.
            stopped = Some(stop_here.unwrap_or(-1));
            break 'steps;
        }
        wait_s += waited.elapsed().as_secs_f64();
        let mut metrics = match trainer.train_step(&micro) {
            Ok(m) => m,
            Err(Error::NonFinite {
                step, what, value, ..
            }) => {
                return Err(Error::NonFinite {
                    step,
                    what,
                    value,
                    last_checkpoint,
                });
            }
            Err(e) => return Err(e),
        };
        compute_s += metrics.step_ms / 1e3;
        let step = trainer.step();
        let last = step == config.train.steps;
        let eval_now = eval
            .as_ref()
            .filter(|e| lead && (step % e.every.max(1) == 0 || last));
        if let Some(e) = eval_now {
            metrics.eval = Some(trainer.evaluate(&e.batches)?);
        }
        if step % config.train.log_every == 0 || last || eval_now.is_some() {
            metrics.data_wait_fraction = Some(wait_s / (wait_s + compute_s).max(f64::MIN_POSITIVE));
            metrics.data = hooks.data_metrics();
            (wait_s, compute_s) = (0.0, 0.0);
            if let Some(file) = &mut metrics_file {
                let mut line = serde_json::to_string(&metrics).map_err(|e| Error::Json {
                    path: metrics_path.clone(),
                    message: e.to_string(),
                })?;
                line.push('\n');
                file.write_all(line.as_bytes())
                    .map_err(|e| Error::io(&metrics_path, e))?;
            }
            hooks.on_event(Event::Step(&metrics));
        }
        let batch = micro.pop().expect("grad_accum ≥ 1 batches per step");
        if save_now
            || (config.train.checkpoint_every > 0 && step % config.train.checkpoint_every == 0)
        {
            sync_metrics(&metrics_file)?;
            let path = save(&trainer, &batch, hooks)?;
            last_save = Instant::now();
            hooks.on_event(Event::Checkpoint { step, path: &path });
            last_checkpoint = Some(path);
            saved_step = Some(step);
        }
        last_batch = Some(batch);
        last_metrics = Some(metrics);
    }
    if let Some(batch) = &last_batch
        && saved_step != Some(trainer.step())
    {
        sync_metrics(&metrics_file)?;
        let path = save(&trainer, batch, hooks)?;
        hooks.on_event(Event::Checkpoint {
            step: trainer.step(),
            path: &path,
        });
        last_checkpoint = Some(path);
    }
    Ok(RunSummary {
        step: trainer.step(),
        last_checkpoint,
        last_metrics,
        source_exhausted,
        stopped,
    })
}

/// Drop the lines of `metrics.jsonl` logged after `step` (written by an interrupted run
/// past its last checkpoint), atomically. A last line cut short by the interruption (a
/// kill, a full disk) is dropped too; an unreadable line before it is an error.
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
            return Ok(());
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut kept = String::new();
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        match serde_json::from_str::<StepMetrics>(line) {
            Ok(logged) if logged.step <= step => {
                kept.push_str(line.trim_end_matches('\n'));
                kept.push('\n');
            }
            Ok(_) => {}
            Err(_) if last => {}
            Err(e) => {
                return Err(Error::Json {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        }
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, kept).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
