//! `cocolm bench data-vs-compute` end to end: its verdicts follow the consumer's rate.

use crate::train::{shards, tiny_config};
use crate::util::{run_err, run_ok};
use std::path::Path;

fn report(data: &Path, config: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "bench".to_string(),
        "data-vs-compute".into(),
        format!("--data={}", data.display()),
        format!("--config={}", config.display()),
        format!("--out={}", out.display()),
        "--seconds=0.3".into(),
        "--workers=1,2".into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    serde_json::from_str(run_ok(&args).trim()).unwrap()
}

#[test]
fn data_vs_compute_says_which_side_limits_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    let config = tiny_config(dir.path(), 10, 0);

    // A consumer far faster than any loader: data-bound, it waits most of the time.
    let out = dir.path().join("fast");
    let fast = report(&data, &config, &out, &["--target-tokens-per-s=1e13"]);
    assert_eq!(fast["verdict"], "data-bound", "{fast}");
    assert!(fast["fewest_workers"].is_null());
    assert!(
        fast["together"][0]["consumer_wait_fraction"]
            .as_f64()
            .unwrap()
            > 0.5
    );
    assert!(fast["headroom"].as_f64().unwrap() < 1.0);
    let svg = std::fs::read_to_string(out.join("timeline.svg")).unwrap();
    assert_eq!(
        svg.matches("<polyline").count(),
        4,
        "two panels × two worker counts"
    );
    assert!(out.join("report.json").exists());

    // A slow one: compute-bound from one worker, with headroom.
    let slow = report(
        &data,
        &config,
        &dir.path().join("slow"),
        &["--target-tokens-per-s=1e4"],
    );
    assert_eq!(slow["verdict"], "compute-bound", "{slow}");
    assert_eq!(slow["fewest_workers"], 1);
    assert!(slow["headroom"].as_f64().unwrap() > 10.0);
    let rate = slow["together"][1]["tokens_per_s"].as_f64().unwrap();
    assert!(
        (rate / 1e4 - 1.0).abs() < 0.2,
        "consumed at the target rate: {rate}"
    );

    // The real trainer as the consumer, in the configured precision, and a target
    // computed from an accelerator.
    let real = report(&data, &config, &dir.path().join("real"), &[]);
    assert_eq!(real["consumer"], "the trainer on the CPU in fp32");
    assert!(real["consumer_tokens_per_s"].as_f64().unwrap() > 0.0);
    let bf16 = report(
        &data,
        &config,
        &dir.path().join("bf16"),
        &["--precision=bf16"],
    );
    assert_eq!(
        bf16["consumer"],
        "the trainer on the CPU in bf16 (burn-flex)"
    );
    assert!(bf16["consumer_tokens_per_s"].as_f64().unwrap() > 0.0);
    if !cfg!(feature = "cuda") {
        let err = run_err(&[
            "bench".to_string(),
            "data-vs-compute".into(),
            format!("--data={}", data.display()),
            format!("--config={}", config.display()),
            format!("--out={}", dir.path().join("cuda").display()),
            "--device=cuda".into(),
        ]);
        assert!(
            err.contains("train.device = \"cuda\" needs a build with CUDA support"),
            "{err}"
        );
    }
    let h200 = report(
        &data,
        &config,
        &dir.path().join("h200"),
        &["--target=h200", "--gpus=8"],
    );
    assert!(
        h200["consumer"].as_str().unwrap().contains("8 × H200"),
        "{h200}"
    );
}

#[test]
fn bench_prepare_alternates_rounds_and_reports_medians() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = crate::prepare::small_tokenizer(dir.path());
    let out = run_ok(&[
        "bench".to_string(),
        "prepare".into(),
        format!("--input={}", crate::prepare::moby().display()),
        format!("--tokenizer={}", tokenizer.display()),
        "--threads=2".into(),
        "--rounds=3".into(),
    ]);
    assert_eq!(out.matches("\nround ").count(), 3, "{out}");
    let json: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    let rounds = json["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    let mut prepare_s: Vec<f64> = rounds
        .iter()
        .map(|r| r["prepare_s"].as_f64().unwrap())
        .collect();
    prepare_s.sort_by(f64::total_cmp);
    assert_eq!(
        json["prepare_s"].as_f64().unwrap(),
        prepare_s[1],
        "the median"
    );
    // Every round encodes the same text into the same tokens.
    assert!(rounds.iter().all(|r| r["tokens"] == rounds[0]["tokens"]));
    assert!(rounds[0]["tokens"].as_u64().unwrap() > 1000);
    assert!(json["ratio"].as_f64().unwrap() > 0.0);
    if cfg!(target_os = "linux") {
        // CPU by thread: the tokenizer threads, the reader and the packer each did work.
        let t = &rounds[0]["timings"];
        for stage in [
            "encode_cpu_ns",
            "read_cpu_ns",
            "pack_cpu_ns",
            "digest_cpu_ns",
        ] {
            assert!(t[stage].as_u64().unwrap() > 0, "{stage}: {t}");
        }
        assert!(rounds[0]["bare_threads_cpu_s"].as_f64().unwrap() > 0.0);
        assert!(out.contains("CPU by thread"), "{out}");
        // A single thread's ceiling is the text over its median CPU time.
        let text_mb = json["text_bytes"].as_f64().unwrap() / 1e6;
        for (stage, ceiling) in [
            ("read_cpu_ns", "reader_mb_per_s"),
            ("pack_cpu_ns", "packer_mb_per_s"),
            ("digest_cpu_ns", "digest_mb_per_s"),
            ("encode_cpu_ns", "tokenizer_thread_mb_per_s"),
        ] {
            let mut cpu: Vec<f64> = rounds
                .iter()
                .map(|r| r["timings"][stage].as_f64().unwrap() / 1e9)
                .collect();
            cpu.sort_by(f64::total_cmp);
            let got = json["ceilings"][ceiling].as_f64().unwrap();
            let want = text_mb / cpu[1];
            assert!(
                (got - want).abs() <= 1e-9 * want,
                "{ceiling}: {got} vs {want}"
            );
        }
        assert!(out.contains("one job's ceilings"), "{out}");
    }
}
