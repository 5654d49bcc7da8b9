//! Training end to end on synthetic batches: learning, exact resume, failure modes.

use crate::{StopAt, motifs, rng_lock, tiny};
use cocolm_shared::{Batch, LoaderCursor, RunConfig};
use cocolm_trainer::step::DataParallel;
use cocolm_trainer::step::StepMetrics;
use cocolm_trainer::synthetic::Synthetic;
use cocolm_trainer::train::{DefaultHooks, Evaluation, RunOptions, find_resume, run};
use cocolm_trainer::{CpuBackend, CpuInner, Error, tensor_file};
use std::convert::Infallible;
use std::path::Path;

fn corpus(config: &RunConfig, ragged: bool) -> Synthetic {
    motifs(config, 3, ragged)
}

fn ok(batches: impl Iterator<Item = Batch>) -> impl Iterator<Item = Result<Batch, Infallible>> {
    batches.map(Ok)
}

fn metrics(dir: &Path) -> Vec<StepMetrics> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn options<'a>(config: &'a RunConfig, dir: &'a Path) -> RunOptions<'a, CpuInner> {
    RunOptions {
        config,
        out_dir: dir,
        resume: None,
        topology: DataParallel::Single,
        stop: Default::default(),
        eval: None,
        init: None,
    }
}

#[test]
fn loss_decreases_on_a_learnable_corpus() {
    let _guard = rng_lock();
    let mut config = tiny();
    config.train.batch_size = 16;
    config.train.steps = 150;
    config.train.lr = 5e-3;
    config.train.log_every = 1;
    config.train.checkpoint_every = 0;
    config.data.mask_prob = 0.3;
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(&config, true);
    let device = Default::default();
    let summary = run::<CpuBackend, _, _>(
        options(&config, dir.path()),
        &device,
        ok(data.from_index(0)),
        &mut DefaultHooks,
    )
    .unwrap();
    assert_eq!(summary.step, 150);
    let m = metrics(dir.path());
    assert_eq!(m.len(), 150);
    let mean = |xs: &[StepMetrics], f: fn(&StepMetrics) -> f64| {
        xs.iter().map(f).sum::<f64>() / xs.len() as f64
    };
    let (first, last) = (&m[..20], &m[130..]);
    let report = format!(
        "loss {:.3} → {:.3}, mlm {:.3} → {:.3}, mlm acc {:.3} → {:.3}",
        mean(first, |s| s.loss),
        mean(last, |s| s.loss),
        mean(first, |s| s.mlm_loss),
        mean(last, |s| s.mlm_loss),
        mean(first, |s| s.mlm_accuracy),
        mean(last, |s| s.mlm_accuracy),
    );
    eprintln!("{report}");
    assert!(
        mean(last, |s| s.loss) < 0.9 * mean(first, |s| s.loss),
        "{report}"
    );
    assert!(
        mean(last, |s| s.mlm_loss) < 0.8 * mean(first, |s| s.mlm_loss),
        "{report}"
    );
    assert!(
        mean(last, |s| s.mlm_accuracy) > mean(first, |s| s.mlm_accuracy) + 0.3,
        "{report}"
    );
    for s in &m {
        assert!(
            s.data_wait_fraction
                .is_some_and(|f| (0.0..=1.0).contains(&f))
        );
        assert!(s.tokens > 0 && s.lr > 0.0 && s.grad_norm.is_finite());
    }
}

/// The training-relevant fields of a metrics line (timings differ between runs).
fn losses(m: &StepMetrics) -> [f64; 12] {
    [
        m.step as f64,
        m.loss,
        m.mlm_loss,
        m.mlm_accuracy,
        m.copy_loss,
        m.copy_accuracy,
        m.clm_loss,
        m.clm_accuracy,
        m.replaced_fraction,
        m.scl_loss.unwrap_or(-1.0),
        m.lr,
        m.grad_norm,
    ]
}

#[test]
fn resumed_run_is_bit_identical() {
    let _guard = rng_lock();
    let mut config = tiny();
    config.model.scl = true;
    config.train.steps = 6;
    config.train.grad_accum = 2;
    config.train.log_every = 1;
    config.train.checkpoint_every = 2;
    config.train.keep_checkpoints = 1;
    let data = corpus(&config, true);
    let device = Default::default();

    let straight = tempfile::tempdir().unwrap();
    run::<CpuBackend, _, _>(
        options(&config, straight.path()),
        &device,
        ok(data.from_index(0)),
        &mut DefaultHooks,
    )
    .unwrap();

    // Interrupted: the source runs dry after 3 steps (6 micro-batches); the last
    // checkpoint is then written at step 3, and step 4 is resumed from it.
    let resumed = tempfile::tempdir().unwrap();
    let first = run::<CpuBackend, _, _>(
        options(&config, resumed.path()),
        &device,
        ok(data.from_index(0).take(6)),
        &mut DefaultHooks,
    )
    .unwrap();
    assert!(first.source_exhausted);
    assert_eq!(first.step, 3);
    let point = find_resume(resumed.path()).unwrap().unwrap();
    assert_eq!(point.step, 3);
    let cursor: LoaderCursor = serde_json::from_value(point.caller.clone()).unwrap();
    assert_eq!(cursor.consumed, 6);
    let second = run::<CpuBackend, _, _>(
        RunOptions {
            resume: Some(point),
            ..options(&config, resumed.path())
        },
        &device,
        ok(data.from_index(cursor.consumed)),
        &mut DefaultHooks,
    )
    .unwrap();
    assert_eq!(second.step, 6);

    let a: Vec<_> = metrics(straight.path()).iter().map(losses).collect();
    let b: Vec<_> = metrics(resumed.path()).iter().map(losses).collect();
    assert_eq!(a.len(), 6);
    assert_eq!(
        a, b,
        "losses of a resumed run differ from an uninterrupted one"
    );
    let weights = |dir: &Path| {
        tensor_file::read(&dir.join("checkpoints/step-00000006/model.safetensors")).unwrap()
    };
    assert!(
        weights(straight.path()) == weights(resumed.path()),
        "final weights differ"
    );
}

#[test]
fn non_finite_loss_stops_with_the_last_checkpoint_intact() {
    let _guard = rng_lock();
    let mut config = tiny();
    config.train.steps = 20;
    config.train.lr = 1e30;
    config.train.warmup_steps = 0;
    config.train.clip_norm = 0.0;
    config.train.checkpoint_every = 1;
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(&config, false);
    let err = run::<CpuBackend, _, _>(
        options(&config, dir.path()),
        &Default::default(),
        ok(data.from_index(0)),
        &mut DefaultHooks,
    )
    .unwrap_err();
    let Error::NonFinite {
        step,
        last_checkpoint: Some(last),
        ..
    } = &err
    else {
        panic!("expected a non-finite error with a checkpoint, got {err}");
    };
    assert!(*step >= 1);
    assert!(err.to_string().contains("step-"), "{err}");
    let point = find_resume(dir.path()).unwrap().unwrap();
    assert_eq!(&point.path, last);
    assert_eq!(point.step, *step);
}

#[test]
fn a_fresh_run_refuses_a_directory_with_checkpoints() {
    let _guard = rng_lock();
    let mut config = tiny();
    config.train.steps = 1;
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(&config, false);
    let device = Default::default();
    run::<CpuBackend, _, _>(
        options(&config, dir.path()),
        &device,
        ok(data.from_index(0)),
        &mut DefaultHooks,
    )
    .unwrap();
    let err = run::<CpuBackend, _, _>(
        options(&config, dir.path()),
        &device,
        ok(data.from_index(0)),
        &mut DefaultHooks,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
}

#[test]
fn source_errors_are_reported_with_the_step() {
    let _guard = rng_lock();
    let config = tiny();
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(&config, false);
    let source = data
        .from_index(0)
        .take(2)
        .map(Ok)
        .chain(std::iter::once(Err(std::io::Error::other(
            "shard 7 is truncated",
        ))));
    let err = run::<CpuBackend, _, _>(
        options(&config, dir.path()),
        &Default::default(),
        source,
        &mut DefaultHooks,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Data { step: 2, .. }), "{err}");
    assert!(err.to_string().contains("shard 7"), "{err}");
}

#[test]
fn a_stop_request_ends_the_run_after_the_step_with_a_checkpoint() {
    let _guard = rng_lock();
    let mut config = tiny();
    config.train.steps = 10;
    config.train.log_every = 1;
    config.train.checkpoint_every = 0;
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(&config, false);
    let stop = cocolm_shared::Stop::new();
    let summary = run::<CpuBackend, _, _>(
        RunOptions {
            stop: stop.clone(),
            ..options(&config, dir.path())
        },
        &Default::default(),
        ok(data.from_index(0)),
        &mut StopAt { stop, at: 3 },
    )
    .unwrap();
    assert_eq!(summary.stopped, Some(15));
    assert_eq!(summary.step, 3);
    let point = find_resume(dir.path()).unwrap().unwrap();
    assert_eq!(point.step, 3);
    assert_eq!(summary.last_checkpoint, Some(point.path));
    assert_eq!(metrics(dir.path()).len(), 3);
}

#[test]
fn time_based_checkpoints_are_written_between_step_intervals() {
    let _guard = rng_lock();
    let mut config = tiny();
    config.train.steps = 4;
    config.train.checkpoint_every = 0;
    // Due at every step: any positive interval shorter than a step.
    config.train.checkpoint_every_minutes = 1e-9;
    config.train.keep_checkpoints = 10;
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(&config, false);
    run::<CpuBackend, _, _>(
        options(&config, dir.path()),
        &Default::default(),
        ok(data.from_index(0)),
        &mut DefaultHooks,
    )
    .unwrap();
    let mut saved: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    saved.sort();
    assert_eq!(
        saved,
        (1..=4).map(|s| format!("step-{s:08}")).collect::<Vec<_>>()
    );
}

#[test]
fn evaluation_reports_held_out_scores_without_changing_training() {
    let _guard = rng_lock();
    let mut config = tiny();
    config.train.steps = 6;
    config.train.log_every = 1;
    let data = corpus(&config, true);
    let device = Default::default();
    let plain = tempfile::tempdir().unwrap();
    run::<CpuBackend, _, _>(
        options(&config, plain.path()),
        &device,
        ok(data.from_index(0)),
        &mut DefaultHooks,
    )
    .unwrap();

    config.train.log_every = 5;
    let evaluated = tempfile::tempdir().unwrap();
    let held_out: Vec<Batch> = data.from_index(1000).take(2).collect();
    let sequences: usize = held_out.iter().map(|b| b.batch_size).sum();
    run::<CpuBackend, _, _>(
        RunOptions {
            eval: Some(Evaluation {
                batches: held_out,
                every: 2,
            }),
            ..options(&config, evaluated.path())
        },
        &device,
        ok(data.from_index(0)),
        &mut DefaultHooks,
    )
    .unwrap();
    let lines = metrics(evaluated.path());
    let steps: Vec<u64> = lines.iter().map(|m| m.step).collect();
    assert_eq!(
        steps,
        [2, 4, 5, 6],
        "evaluated steps are logged, and log_every's"
    );
    for m in &lines {
        assert_eq!(m.eval.is_some(), m.step != 5, "step {}", m.step);
        if let Some(e) = m.eval {
            assert_eq!(e.sequences, sequences as u64);
            for v in [e.mlm_accuracy, e.copy_accuracy, e.clm_accuracy] {
                assert!((0.0..=1.0).contains(&v), "{e:?}");
            }
            assert!(e.mlm_loss > 0.0);
        }
    }
    // Training is the same as without evaluation, step by step.
    let plain = metrics(plain.path());
    for m in &lines {
        let same = plain.iter().find(|p| p.step == m.step).unwrap();
        assert_eq!(losses(m), losses(same), "step {}", m.step);
    }
}
