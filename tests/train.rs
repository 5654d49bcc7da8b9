//! `cocolm train`, `plot` and `demo` end to end, and exact resume after kill -9.

use crate::prepare::{prepare_moby, small_tokenizer};
use crate::util::{cocolm, run_err, run_ok};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A tiny run configuration: fast enough for the dev profile.
pub fn tiny_config(dir: &Path, steps: u64, checkpoint_every: u64) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        format!(
            "[model]\nhidden_size = 32\nnum_layers = 2\nnum_heads = 2\nffn_size = 64\ngenerator_layers = 1\nmax_positions = 64\n\
             [train]\nbatch_size = 8\nsteps = {steps}\nwarmup_steps = 3\nlr = 1e-3\nlog_every = 1\ncheckpoint_every = {checkpoint_every}\nkeep_checkpoints = 5\n\
             [data]\nworkers = 2\n"
        ),
    )
    .unwrap();
    path
}

/// Shards of the bundled corpus with a small tokenizer.
pub fn shards(dir: &Path) -> PathBuf {
    let tokenizer = small_tokenizer(dir);
    let out = dir.join("shards");
    prepare_moby(&tokenizer, &out, &["--seq-len", "64"]);
    out
}

/// The arguments of `cocolm train --data … --config … --out …` plus `extra`.
pub fn train_args(data: &Path, config: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let paths = [data, config, out].map(|p| p.to_str().unwrap().to_string());
    let [data, config, out] = paths;
    ["train", "--data", &data, "--config", &config, "--out", &out]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

/// The loss fields of every metrics line (timings differ between runs).
pub fn losses(run: &Path) -> Vec<Vec<(String, serde_json::Value)>> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v.as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| {
                    !["step_ms", "tokens_per_s", "data_wait_fraction"].contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect()
}

#[test]
fn kill_9_after_a_checkpoint_then_resume_gives_identical_losses() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    let config = tiny_config(dir.path(), 24, 6);
    let args = |out: &Path| train_args(&data, &config, out, &[]);
    let reference = dir.path().join("reference");
    let out = cocolm().args(args(&reference)).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = dir.path().join("killed");
    let mut child = cocolm()
        .args(args(&run))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let checkpoint = run.join("checkpoints/step-00000012");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !checkpoint.exists() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let finished_early = child.try_wait().unwrap().is_some();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!finished_early, "the run ended before it could be killed");
    let resume = train_args(&data, &config, &run, &["--resume"]);
    let out = cocolm().args(&resume).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resumed at step"), "{stderr}");
    let (a, b) = (losses(&reference), losses(&run));
    assert_eq!(a.len(), 24);
    assert_eq!(a, b, "resumed losses differ from the uninterrupted run");
}

#[test]
fn training_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    let config = tiny_config(dir.path(), 4, 0);
    let out = dir.path().join("run");
    // Resume with nothing to resume starts afresh, and says so.
    let fresh = dir.path().join("fresh");
    let started = cocolm()
        .args(train_args(&data, &config, &fresh, &["--resume"]))
        .output()
        .unwrap();
    assert!(started.status.success());
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(
        stderr.contains("no checkpoint") && stderr.contains("starting from step 0"),
        "{stderr}"
    );
    // CUDA needs the CUDA build; positions shorter than the shards' examples; a typo in
    // the configuration (named with its file); an unknown precision.
    let text = std::fs::read_to_string(&config).unwrap();
    let cases = [
        (
            "cuda.toml",
            text.replace("[train]\n", "[train]\ndevice = \"cuda\"\n"),
            vec!["--features cuda"],
        ),
        (
            "fp8.toml",
            text.replace("[train]\n", "[train]\nprecision = \"fp8\"\n"),
            vec!["fp8.toml", "fp8"],
        ),
        (
            "short.toml",
            text.replace("max_positions = 64", "max_positions = 32"),
            vec!["max_positions 32"],
        ),
        (
            "typo.toml",
            "[model]\nhiden_size = 32\n".to_string(),
            vec!["typo.toml", "hiden_size"],
        ),
    ];
    for (name, content, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let err = run_err(&train_args(&data, &path, &out, &[]));
        assert!(expected.iter().all(|e| err.contains(e)), "{name}: {err}");
    }
    // The same through the flags.
    let err = run_err(&train_args(&data, &config, &out, &["--device", "cuda"]));
    assert!(err.contains("--features cuda"), "{err}");
    // Several processes on the CPU: refused, naming the launch.
    let out_of = cocolm()
        .args(train_args(&data, &config, &out, &[]))
        .env_remove("SLURM_NTASKS")
        .env("RANK", "1")
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .output()
        .unwrap();
    assert!(!out_of.status.success());
    let err = String::from_utf8_lossy(&out_of.stderr);
    assert!(err.contains("2 processes") && err.contains("CUDA"), "{err}");
}

/// Half precision on the CPU (burn-flex, the code path CUDA runs), chosen by flag.
#[test]
fn bf16_and_fp16_train_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    let config = tiny_config(dir.path(), 3, 0);
    for precision in ["bf16", "fp16"] {
        let out = dir.path().join(precision);
        run_ok(&train_args(
            &data,
            &config,
            &out,
            &["--precision", precision],
        ));
        let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
        assert!(
            saved.contains(&format!("precision = \"{precision}\"")),
            "{saved}"
        );
        let metrics = losses(&out);
        assert_eq!(metrics.len(), 3);
        let has_scale = metrics[0].iter().any(|(k, _)| k == "loss_scale");
        assert_eq!(has_scale, precision == "fp16");
    }
}

#[test]
fn demo_quick_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let stdout = run_ok(&["demo", "--quick", "--out", out.to_str().unwrap()]);
    for path in [
        "tokenizer.json",
        "shards/manifest.json",
        "run/metrics.jsonl",
        "run/loss.svg",
        "run/config.toml",
    ] {
        assert!(out.join(path).exists(), "{path} missing; output:\n{stdout}");
    }
    assert!(stdout.contains("what the losses did"), "{stdout}");
    let queue = std::fs::read_to_string(out.join("run/loader_metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(queue.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 30);
    assert!(last["queue"]["delivered"].as_u64().unwrap() >= 30, "{last}");
    let rows = losses(&out.join("run"));
    let total = |row: &Vec<(String, serde_json::Value)>| {
        row.iter()
            .find(|(k, _)| k == "loss")
            .unwrap()
            .1
            .as_f64()
            .unwrap()
    };
    assert!(
        total(rows.last().unwrap()) < total(&rows[0]),
        "the loss did not fall"
    );
    // Re-running reuses its own directory; a foreign directory is refused.
    run_ok(&["demo", "--quick", "--out", out.to_str().unwrap()]);
    let foreign = dir.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    assert!(
        run_err(&["demo", "--quick", "--out", foreign.to_str().unwrap()])
            .contains("not made by `cocolm demo`")
    );
    // The plot command on the run.
    let svg = dir.path().join("again.svg");
    let printed = run_ok(&[
        "plot",
        out.join("run").to_str().unwrap(),
        "--out",
        svg.to_str().unwrap(),
    ]);
    // Every panel the trainer's metrics feed is drawn, each with its line.
    for panel in [
        "total loss",
        "generator MLM loss",
        "copy loss",
        "CLM loss",
        "generator accuracy",
        "copy accuracy",
    ] {
        assert!(printed.contains(panel), "{panel}: {printed}");
    }
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.matches("<polyline").count() >= 6, "{svg}");
}

#[test]
fn a_blend_trains_reports_each_source_and_resumes_with_new_weights() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    let [web, books] = ["web", "books"].map(|name| {
        let out = dir.path().join(name);
        prepare_moby(&tokenizer, &out, &["--seq-len", "64"]);
        out
    });
    let config = tiny_config(dir.path(), 12, 6);
    let run = dir.path().join("run");
    let blend = |a: &str, b: &str| {
        [
            format!("--data={}:{a}", web.display()),
            format!("--data={}:{b}", books.display()),
        ]
    };
    let args = |weights: [String; 2], extra: &[&str]| {
        let config = config.to_str().unwrap().to_string();
        let out = run.to_str().unwrap().to_string();
        let mut args = vec![
            "train".to_string(),
            "--config".into(),
            config,
            "--out".into(),
            out,
        ];
        args.extend(weights);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    run_ok(&args(blend("0.7", "0.3"), &["--steps", "6"]));
    let out = cocolm()
        .args(args(blend("0.5", "0.5"), &["--resume"]))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("blend weights change from [0.7, 0.3] to [0.5, 0.5] at example 48"),
        "{said}"
    );
    let log = std::fs::read_to_string(run.join("loader_metrics.jsonl")).unwrap();
    assert!(
        log.contains(r#""step":6"#) && log.contains("blend weights change"),
        "{log}"
    );

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    let read = |step: usize| -> Vec<u64> {
        lines[step - 1]["data"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["examples_read"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        lines[5]["data"]["weights"],
        serde_json::json!(["0.7", "0.3"])
    );
    assert_eq!(
        lines[6]["data"]["weights"],
        serde_json::json!(["0.5", "0.5"])
    );
    // 8 examples a step: 48 by step 6 at 0.7/0.3, then 48 more at 0.5/0.5.
    assert_eq!(read(6), vec![34, 14]);
    assert_eq!(read(12), vec![34 + 24, 14 + 24]);
    assert!(lines[11]["data"]["sources"][0]["epochs"].as_f64().unwrap() > 0.0);

    // The plan of the same run: 12 steps × 8 examples at 0.7 / 0.3.
    let mut plan_args = vec!["stats".to_string(), "--plan".into(), "--json".into()];
    plan_args.extend(blend("0.7", "0.3"));
    plan_args.extend(["--config".into(), config.to_str().unwrap().into()]);
    let plan: serde_json::Value = serde_json::from_str(&run_ok(&plan_args)).unwrap();
    assert_eq!(plan["examples"], 96);
    let sources = plan["sources"].as_array().unwrap();
    let drawn: Vec<u64> = sources
        .iter()
        .map(|s| s["examples_drawn"].as_u64().unwrap())
        .collect();
    assert_eq!(drawn, vec![67, 29]);
    let examples = sources[0]["examples"].as_f64().unwrap();
    assert!((sources[0]["epochs"].as_f64().unwrap() - 67.0 / examples).abs() < 1e-9);

    // Sources must share the tokenizer: the odd one is named.
    let other_tokenizer = dir.path().join("other.json");
    run_ok(&[
        "tokenizer",
        "train",
        "--input",
        crate::prepare::moby().to_str().unwrap(),
        "--vocab-size",
        "1000",
        "--out",
        other_tokenizer.to_str().unwrap(),
    ]);
    let odd = dir.path().join("odd");
    prepare_moby(&other_tokenizer, &odd, &["--seq-len", "64"]);
    let err = run_err(&[
        "train".to_string(),
        format!("--data={}", web.display()),
        format!("--data={}:2", odd.display()),
        "--config".into(),
        config.to_str().unwrap().into(),
        "--out".into(),
        dir.path().join("odd-run").to_str().unwrap().into(),
    ]);
    assert!(err.contains("odd") && err.contains("tokenizer"), "{err}");
}

#[test]
fn eval_data_is_scored_during_training_and_plotted() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    let config = tiny_config(dir.path(), 4, 4);
    let run = dir.path().join("run");
    let mut args = train_args(&data, &config, &run, &["--eval-every", "2"]);
    args.extend(["--eval-data".into(), data.to_str().unwrap().into()]);
    args.extend(["--set".into(), "train.log_every=3".into()]);
    run_ok(&args);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let evaluated: Vec<u64> = lines
        .iter()
        .filter(|l| l.get("eval").is_some())
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(evaluated, [2, 4]);
    let eval = &lines.last().unwrap()["eval"];
    assert!(eval["sequences"].as_u64().unwrap() > 0, "{eval}");
    let svg = std::fs::read_to_string(run.join("loss.svg")).unwrap();
    assert!(svg.contains("held-out"), "the held-out lines are drawn");
}

#[test]
fn export_hf_then_init_from_hf_starts_from_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    let config = tiny_config(dir.path(), 2, 2);
    let run = dir.path().join("run");
    run_ok(&train_args(&data, &config, &run, &[]));
    let export = dir.path().join("hf");
    let printed = run_ok(&["export-hf", run.to_str().unwrap(), export.to_str().unwrap()]);
    assert!(printed.contains("ElectraModel"), "{printed}");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generator/config.json",
        "generator/model.safetensors",
        "cocolm_extra.safetensors",
    ] {
        assert!(export.join(file).is_file(), "{file}");
    }
    // One step at a learning rate of 1e-9 (the first of a million warm-up steps) leaves
    // the weights within 1e-8 of where they started.
    let again = dir.path().join("again");
    let extra = [
        "--init-from-hf",
        export.to_str().unwrap(),
        "--steps",
        "1",
        "--set",
        "train.warmup_steps=1000000",
    ];
    run_ok(&train_args(&data, &config, &again, &extra));
    let weights = |run: &Path, step: &str| {
        cocolm_trainer::tensor_file::read(
            &run.join("checkpoints").join(step).join("model.safetensors"),
        )
        .unwrap()
    };
    let (started, exported) = (
        weights(&again, "step-00000001"),
        weights(&run, "step-00000002"),
    );
    assert_eq!(started.len(), exported.len());
    for (a, b) in started.iter().zip(&exported) {
        assert_eq!((&a.name, &a.shape), (&b.name, &b.shape));
        let worst = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-8,
            "{}: the run did not start from the export ({worst})",
            a.name
        );
    }
    // Another shape is refused, naming the field.
    let mut wider = train_args(&data, &config, &dir.path().join("wider"), &extra);
    wider.extend(["--set".into(), "model.ffn_size=128".into()]);
    let err = run_err(&wider);
    assert!(err.contains("intermediate_size"), "{err}");
}
