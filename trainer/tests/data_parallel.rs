//! ZeRO stage 1 across thread ranks: the same parameters as one rank on the same global
//! batch, exact resume from sharded checkpoints, and resume on another number of ranks.

use crate::{StopAt, motifs, rng_lock, tiny};
use cocolm_shared::{Batch, RunConfig};
use cocolm_trainer::checkpoint::{Checkpoint, Checkpointer, FileCheckpointer, Retention};
use cocolm_trainer::collective::threads::ThreadGroup;
use cocolm_trainer::params::{self, NamedTensor};
use cocolm_trainer::step::{DataParallel, StepMetrics, Trainer};
use cocolm_trainer::synthetic::Synthetic;
use cocolm_trainer::train::{DefaultHooks, RunOptions, find_resume, run};
use cocolm_trainer::{CpuBackend, CpuInner, tensor_file};
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

/// The tiny model without dropout (thread ranks share burn-ndarray's process-wide RNG,
/// so dropout masks would depend on thread timing), with small odd buckets.
fn config() -> RunConfig {
    let mut c = tiny();
    c.model.dropout = 0.0;
    c.train.batch_size = 4;
    c.train.warmup_steps = 1;
    c.train.zero_bucket = 997;
    c.data.mask_prob = 0.2;
    c
}

/// The global stream of micro-batches.
fn corpus(config: &RunConfig) -> Synthetic {
    motifs(config, 11, true)
}

/// Micro-batches of `rank` at `step` when each rank takes `accum` consecutive ones of a
/// global step of `world · accum`.
fn share(data: &Synthetic, step: usize, rank: usize, world: usize, accum: usize) -> Vec<Batch> {
    let first = (step * world + rank) * accum;
    (first..first + accum)
        .map(|i| data.batch(i as u64))
        .collect()
}

/// Run `f` on `world` thread ranks of one group, results in rank order.
fn on_ranks<T: Send>(
    world: usize,
    f: impl Fn(usize, DataParallel<CpuInner>) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = ThreadGroup::new(world)
            .into_iter()
            .enumerate()
            .map(|(rank, group)| {
                let f = &f;
                scope.spawn(move || {
                    let topology = DataParallel::Zero1 {
                        collective: Arc::new(group),
                        bucket: 997,
                    };
                    f(rank, topology)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// All values, tensors in name order.
fn flat(tensors: &[NamedTensor]) -> Vec<f32> {
    let mut sorted: Vec<&NamedTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted.iter().flat_map(|t| t.data.iter().copied()).collect()
}

/// ‖a − b‖ / ‖b‖.
fn relative_difference(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (diff / norm).sqrt()
}

/// `steps` steps of a trainer fed `batches(step)`; its final parameters and metrics.
fn train(
    mut trainer: Trainer<CpuBackend>,
    steps: usize,
    batches: impl Fn(usize) -> Vec<Batch>,
) -> (Vec<NamedTensor>, Vec<StepMetrics>) {
    let metrics = (0..steps)
        .map(|s| trainer.train_step(&batches(s)).unwrap())
        .collect();
    (params::export(trainer.model()), metrics)
}

#[test]
fn zero1_on_w_ranks_matches_one_rank_on_the_same_global_batch() {
    let _guard = rng_lock();
    let steps = 3;
    for world in [1, 2, 3] {
        let mut one_rank = config();
        one_rank.train.grad_accum = world;
        let data = corpus(&one_rank);
        let device = Default::default();
        let (want, want_metrics) = train(Trainer::new(&one_rank, &device).unwrap(), steps, |s| {
            share(&data, s, 0, 1, world)
        });

        let ranks = config();
        let results = on_ranks(world, |rank, topology| {
            let trainer = Trainer::with_topology(&ranks, &device, topology).unwrap();
            train(trainer, steps, |s| share(&data, s, rank, world, 1))
        });
        for (rank, (got, metrics)) in results.iter().enumerate() {
            let diff = relative_difference(&flat(got), &flat(&want));
            assert!(
                diff <= 1e-6,
                "W = {world}, rank {rank}: relative difference {diff}"
            );
            assert_eq!(
                got, &results[0].0,
                "rank {rank} holds other parameters than rank 0"
            );
            for (m, w) in metrics.iter().zip(&want_metrics) {
                assert!(
                    (m.loss - w.loss).abs() <= 1e-5 * w.loss.abs(),
                    "{} vs {}",
                    m.loss,
                    w.loss
                );
                assert_eq!(m.tokens, w.tokens);
                assert!((m.grad_norm - w.grad_norm).abs() <= 1e-5 * w.grad_norm);
            }
            // 12 bytes per parameter, split W ways (with a little padding).
            let parameters = flat(got).len() as f64;
            let per_rank = metrics[0].optimizer_state_bytes as f64;
            assert!(
                (per_rank / (12.0 * parameters / world as f64) - 1.0).abs() < 0.05,
                "W = {world}: {per_rank} bytes of optimiser state for {parameters} parameters"
            );
        }
    }
}

fn ok(batches: impl Iterator<Item = Batch>) -> impl Iterator<Item = Result<Batch, Infallible>> {
    batches.map(Ok)
}

/// Rank `rank`'s stream of micro-batches from global step `from` on.
fn stream(
    data: &Synthetic,
    rank: usize,
    world: usize,
    accum: usize,
    from: usize,
) -> impl Iterator<Item = Batch> + '_ {
    (from..).flat_map(move |s| share(data, s, rank, world, accum))
}

#[test]
fn sharded_checkpoints_resume_exactly() {
    let _guard = rng_lock();
    let mut config = config();
    config.train.steps = 4;
    config.train.log_every = 1;
    config.train.checkpoint_every = 2;
    config.train.keep_checkpoints = 1;
    let data = corpus(&config);
    let device = Default::default();
    let world = 2;
    let losses = |dir: &Path| -> Vec<f64> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<StepMetrics>(l).unwrap().loss)
            .collect()
    };

    let straight = tempfile::tempdir().unwrap();
    on_ranks(world, |rank, topology| {
        let options = RunOptions {
            config: &config,
            out_dir: straight.path(),
            resume: None,
            topology,
            stop: Default::default(),
            eval: None,
            init: None,
        };
        run::<CpuBackend, _, _>(
            options,
            &device,
            ok(stream(&data, rank, world, 1, 0)),
            &mut DefaultHooks,
        )
        .unwrap()
    });

    // Interrupted after two steps (each rank's source runs dry), then resumed.
    let resumed = tempfile::tempdir().unwrap();
    let first = on_ranks(world, |rank, topology| {
        let options = RunOptions {
            config: &config,
            out_dir: resumed.path(),
            resume: None,
            topology,
            stop: Default::default(),
            eval: None,
            init: None,
        };
        let source = stream(&data, rank, world, 1, 0).take(2);
        run::<CpuBackend, _, _>(options, &device, ok(source), &mut DefaultHooks).unwrap()
    });
    assert!(first.iter().all(|s| s.step == 2 && s.source_exhausted));
    let point = find_resume(resumed.path()).unwrap().unwrap();
    assert_eq!(point.step, 2);
    let files: Vec<String> = std::fs::read_dir(&point.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for rank in 0..world {
        let name = format!("optimizer-rank-{rank:05}-of-{world:05}.safetensors");
        assert!(files.contains(&name), "{files:?}");
    }
    on_ranks(world, |rank, topology| {
        let options = RunOptions {
            config: &config,
            out_dir: resumed.path(),
            resume: Some(point.clone()),
            topology,
            stop: Default::default(),
            eval: None,
            init: None,
        };
        run::<CpuBackend, _, _>(
            options,
            &device,
            ok(stream(&data, rank, world, 1, 2)),
            &mut DefaultHooks,
        )
        .unwrap()
    });
    assert_eq!(losses(straight.path()), losses(resumed.path()));
    assert_eq!(losses(straight.path()).len(), 4);
    let weights = |dir: &Path| {
        tensor_file::read(&dir.join("checkpoints/step-00000004/model.safetensors")).unwrap()
    };
    assert!(
        weights(straight.path()) == weights(resumed.path()),
        "final weights differ"
    );
}

/// A stop request that reaches one rank only stops both at the same step, with one
/// sharded checkpoint.
#[test]
fn a_stop_request_on_one_rank_stops_every_rank_at_the_same_step() {
    let _guard = rng_lock();
    let mut config = config();
    config.train.steps = 6;
    config.train.log_every = 1;
    config.train.checkpoint_every = 0;
    let data = corpus(&config);
    let device = Default::default();
    let world = 2;
    let dir = tempfile::tempdir().unwrap();
    let summaries = on_ranks(world, |rank, topology| {
        let stop = cocolm_shared::Stop::new();
        let options = RunOptions {
            config: &config,
            out_dir: dir.path(),
            resume: None,
            topology,
            stop: stop.clone(),
            eval: None,
            init: None,
        };
        let source = ok(stream(&data, rank, world, 1, 0));
        // Rank 1 is asked after its second step; rank 0 never is.
        if rank == 1 {
            let mut hooks = StopAt { stop, at: 2 };
            run::<CpuBackend, _, _>(options, &device, source, &mut hooks).unwrap()
        } else {
            run::<CpuBackend, _, _>(options, &device, source, &mut DefaultHooks).unwrap()
        }
    });
    assert_eq!(summaries[0].stopped, Some(-1), "rank 0 stops for rank 1");
    assert_eq!(summaries[1].stopped, Some(15));
    assert!(summaries.iter().all(|s| s.step == 2));
    let point = find_resume(dir.path()).unwrap().unwrap();
    assert_eq!(point.step, 2);
    for rank in 0..world {
        let shard = format!("optimizer-rank-{rank:05}-of-{world:05}.safetensors");
        assert!(point.path.join(shard).exists());
    }
}

/// A checkpoint of 2 ranks continues on 3 (and on 1) with the same parameters and
/// optimiser state: one more step on the same global batch gives what 2 ranks give.
#[test]
fn a_sharded_checkpoint_resumes_on_another_number_of_ranks() {
    let _guard = rng_lock();
    let config = config();
    let data = corpus(&config);
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let checkpointer = FileCheckpointer::new(dir.path(), Retention::KeepNewest(1));
    on_ranks(2, |rank, topology| {
        let mut trainer = Trainer::<CpuBackend>::with_topology(&config, &device, topology).unwrap();
        for s in 0..2 {
            trainer.train_step(&share(&data, s, rank, 2, 1)).unwrap();
        }
        let checkpoint = Checkpoint {
            step: trainer.step(),
            config: config.clone(),
            model: params::export(trainer.model()),
            optimizer: vec![cocolm_trainer::optim::Optimizer::state(trainer.optimizer())],
            caller: serde_json::Value::Null,
            loss_scale: trainer.loss_scale(),
        };
        checkpointer
            .save_ranked(&checkpoint, trainer.collective(), &device)
            .unwrap();
    });
    let saved = checkpointer
        .load(&checkpointer.latest().unwrap().unwrap())
        .unwrap();
    assert_eq!(saved.optimizer.len(), 2);

    // Step 2 on a global batch of 6 micro-batches, split 2 × 3, 3 × 2 and 1 × 6.
    let continue_on = |world: usize| {
        let mut c = config.clone();
        c.train.grad_accum = 6 / world;
        let results = on_ranks(world, |rank, topology| {
            let mut trainer = Trainer::<CpuBackend>::with_topology(&c, &device, topology).unwrap();
            trainer.restore(saved.clone(), dir.path()).unwrap();
            trainer
                .train_step(&share(&data, 2, rank, world, 6 / world))
                .unwrap();
            params::export(trainer.model())
        });
        flat(&results[0])
    };
    let two = continue_on(2);
    for world in [3, 1] {
        let diff = relative_difference(&continue_on(world), &two);
        assert!(
            diff <= 1e-6,
            "2 → {world} ranks: relative difference {diff}"
        );
    }
    // And the step did change the parameters.
    assert!(relative_difference(&flat(&saved.model), &two) > 1e-6);
}
