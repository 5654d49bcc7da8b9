//! Half precision on the CPU: the portable code path (the one CUDA runs) on burn-flex, in
//! bf16 and fp16 with fp32 master weights, and fp16's dynamic loss scaling.

use crate::{motifs, rng_lock, tiny};
use cocolm_shared::{Batch, Precision, RunConfig};
use cocolm_trainer::CpuBackend;
use cocolm_trainer::backend::FlexBackend;
use cocolm_trainer::params;
use cocolm_trainer::step::{StepMetrics, Trainer};
use cocolm_trainer::synthetic::Synthetic;
use std::path::Path;

fn config(precision: Precision) -> RunConfig {
    let mut c = tiny();
    c.train.batch_size = 16;
    c.train.steps = 40;
    c.train.warmup_steps = 4;
    c.train.lr = 3e-3;
    c.train.precision = precision;
    c
}

fn corpus(config: &RunConfig) -> Synthetic {
    motifs(config, 3, true)
}

fn steps<B: cocolm_trainer::kernels::TrainBackend>(
    trainer: &mut Trainer<B>,
    data: &Synthetic,
    n: usize,
) -> Vec<StepMetrics> {
    (0..n)
        .map(|i| {
            let batch: Batch = data.batch(trainer.step());
            let _ = i;
            trainer.train_step(&[batch]).unwrap()
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn bf16_and_fp16_runs_lower_the_loss() {
    let _guard = rng_lock();
    for precision in [Precision::Bf16, Precision::Fp16] {
        let config = config(precision);
        let data = corpus(&config);
        let mut trainer = Trainer::<FlexBackend>::new(&config, &Default::default()).unwrap();
        let m = steps(&mut trainer, &data, config.train.steps as usize);
        assert!(m.iter().all(|m| m.loss.is_finite()), "{precision:?}");
        // fp16 starts at a scale of 2^16, too high for this model: the first steps
        // overflow and are skipped while the scale falls, then every step applies.
        let skipped = m.iter().take_while(|m| m.skipped).count();
        assert!(m[skipped..].iter().all(|m| !m.skipped), "{precision:?}");
        assert!(skipped < 10, "{precision:?}: {skipped} steps skipped");
        if precision == Precision::Bf16 {
            assert_eq!(skipped, 0);
        }
        let m: Vec<&StepMetrics> = m[skipped..].iter().collect();
        let first = mean(m[..5].iter().map(|m| m.loss));
        let last = mean(m[m.len() - 5..].iter().map(|m| m.loss));
        assert!(
            last < 0.8 * first,
            "{precision:?}: loss {first:.3} → {last:.3}"
        );
        assert_eq!(
            m[0].loss_scale.is_some(),
            precision == Precision::Fp16,
            "only fp16 scales"
        );
    }
}

/// The first step's loss in each precision, against fp32 on the same backend; and the
/// portable fp32 path against the fused CPU kernels.
#[test]
fn first_step_losses_agree_across_precisions() {
    let _guard = rng_lock();
    let device = Default::default();
    let first = |precision: Precision| {
        let config = config(precision);
        let mut trainer = Trainer::<FlexBackend>::new(&config, &device).unwrap();
        steps(&mut trainer, &corpus(&config), 1)[0].clone()
    };
    let fp32 = first(Precision::Fp32);
    let fused = {
        let config = config(Precision::Fp32);
        let mut trainer = Trainer::<CpuBackend>::new(&config, &Default::default()).unwrap();
        steps(&mut trainer, &corpus(&config), 1)[0].clone()
    };
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    assert!(
        rel(fused.loss, fp32.loss) < 1e-4,
        "fused {} vs portable {}",
        fused.loss,
        fp32.loss
    );
    // Tolerances: bf16 keeps 8 significant bits, fp16 11.
    for (precision, tolerance) in [(Precision::Bf16, 5e-3), (Precision::Fp16, 1e-3)] {
        let m = first(precision);
        assert!(
            rel(m.loss, fp32.loss) < tolerance,
            "{precision:?}: loss {} vs fp32 {}",
            m.loss,
            fp32.loss
        );
        assert!(rel(m.copy_loss, fp32.copy_loss) < tolerance);
        assert!(rel(m.mlm_loss, fp32.mlm_loss) < tolerance);
    }
}

#[test]
fn an_infinite_gradient_skips_the_step_halves_the_scale_and_keeps_the_parameters() {
    let _guard = rng_lock();
    let mut config = config(Precision::Fp16);
    // Far beyond fp16's range: every gradient overflows.
    config.train.loss_scale_initial = 1e30;
    config.train.loss_scale_hysteresis = 1;
    let data = corpus(&config);
    let mut trainer = Trainer::<FlexBackend>::new(&config, &Default::default()).unwrap();
    let before = params::export(trainer.model());
    let m = steps(&mut trainer, &data, 1).remove(0);
    assert!(m.skipped, "{m:?}");
    assert!(!m.grad_norm.is_finite());
    assert_eq!(m.loss_scale, Some(1e30));
    assert_eq!(trainer.loss_scale().unwrap().scale, 5e29);
    assert_eq!(trainer.loss_scale().unwrap().skipped_steps, 1);
    assert!(
        params::export(trainer.model()) == before,
        "the parameters changed"
    );
    assert_eq!(
        cocolm_trainer::optim::Optimizer::state(trainer.optimizer()).step,
        0,
        "the optimiser advanced"
    );
    assert_eq!(trainer.step(), 1, "a skipped step still counts");
}

/// An fp16 run interrupted and resumed produces the losses and loss scales of an
/// uninterrupted one: the scale and its counters are in the checkpoint.
#[test]
fn fp16_resume_restores_the_loss_scale_exactly() {
    use cocolm_trainer::train::{DefaultHooks, RunOptions, find_resume, run};
    let _guard = rng_lock();
    let mut config = config(Precision::Fp16);
    config.train.steps = 10;
    config.train.log_every = 1;
    config.train.checkpoint_every = 5;
    config.train.loss_scale_window = 3;
    let data = corpus(&config);
    let device = Default::default();
    let ok = |from: u64| (from..).map(|i| Ok::<_, std::convert::Infallible>(data.batch(i)));
    let options = |dir| RunOptions {
        config: &config,
        out_dir: dir,
        resume: None,
        topology: cocolm_trainer::step::DataParallel::Single,
        stop: Default::default(),
        eval: None,
        init: None,
    };
    let metrics = |dir: &Path| -> Vec<(u64, Option<f64>, bool)> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<StepMetrics>(l).unwrap())
            .map(|m| (m.loss.to_bits(), m.loss_scale, m.skipped))
            .collect()
    };
    let straight = tempfile::tempdir().unwrap();
    run::<FlexBackend, _, _>(options(straight.path()), &device, ok(0), &mut DefaultHooks).unwrap();
    let resumed = tempfile::tempdir().unwrap();
    run::<FlexBackend, _, _>(
        options(resumed.path()),
        &device,
        ok(0).take(7),
        &mut DefaultHooks,
    )
    .unwrap();
    let point = find_resume(resumed.path()).unwrap().unwrap();
    assert_eq!(point.step, 7);
    run::<FlexBackend, _, _>(
        RunOptions {
            resume: Some(point),
            ..options(resumed.path())
        },
        &device,
        ok(7),
        &mut DefaultHooks,
    )
    .unwrap();
    let (a, b) = (metrics(straight.path()), metrics(resumed.path()));
    assert_eq!(a, b);
    assert!(a.iter().any(|m| m.2), "some steps were skipped");
    let scales: Vec<f64> = a.iter().filter_map(|m| m.1).collect();
    assert!(
        scales.windows(2).any(|w| w[1] > w[0]),
        "the scale grew: {scales:?}"
    );
}
