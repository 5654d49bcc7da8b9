//! Time full COCO-LM training steps on synthetic batches (what `cocolm bench train` does).
//!
//! ```text
//! cargo run --release -p cocolm-trainer --example bench_step -- \
//!     --config configs/small.toml --vocab 30522 --layers 4 --gen-layers 1 \
//!     --batch 16 --accum 1 --seq 128 --warmup 2 --steps 5
//! ```
//!
//! The allocator is tuned first ([`cocolm_trainer::backend::tune_allocator`]) unless
//! `--tune-allocator off` is given.
//!
//! Every flag but `--config` is optional and overrides the configuration:
//! `--vocab`, `--layers`, `--gen-layers`, `--batch`, `--accum`, `--seq`, `--dropout`,
//! `--relpos on|off`, `--warmup`, `--steps`.

use cocolm_shared::RunConfig;
use cocolm_trainer::CpuBackend;
use cocolm_trainer::bench::{BenchOptions, bench_step};
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut config_path = None;
    let mut overrides = Vec::new();
    let mut tune = true;
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        if flag == "--config" {
            config_path = Some(PathBuf::from(value));
        } else if flag == "--tune-allocator" {
            tune = value != "off";
        } else {
            overrides.push((flag, value));
        }
    }
    let path = config_path.unwrap_or_else(|| fail("--config FILE is required"));
    let mut config = RunConfig::from_toml_file(&path).unwrap_or_else(|e| fail(&e.to_string()));
    let mut options = BenchOptions {
        seq_len: config.model.max_positions.min(128),
        warmup: 2,
        steps: 5,
    };
    for (flag, value) in overrides {
        let number = || {
            value
                .parse::<usize>()
                .unwrap_or_else(|_| fail(&format!("{flag}: not a number: {value}")))
        };
        match flag.as_str() {
            "--vocab" => config.model.vocab_size = number(),
            "--layers" => config.model.num_layers = number(),
            "--gen-layers" => config.model.generator_layers = number(),
            "--batch" => config.train.batch_size = number(),
            "--accum" => config.train.grad_accum = number(),
            "--seq" => options.seq_len = number(),
            "--warmup" => options.warmup = number(),
            "--steps" => options.steps = number(),
            "--dropout" => {
                config.model.dropout = value
                    .parse()
                    .unwrap_or_else(|_| fail("--dropout: not a number"))
            }
            "--relpos" => config.model.relative_position = value == "on",
            _ => fail(&format!("unknown flag {flag}")),
        }
    }
    config.model.max_positions = config.model.max_positions.max(options.seq_len);
    let tuned = tune && cocolm_trainer::backend::tune_allocator();
    let report = bench_step::<CpuBackend>(&config, &Default::default(), options)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let m = &config.model;
    println!(
        "{}L/{}H/{}heads/FFN{} gen {}L vocab {} relpos {} dropout {}: batch {} x seq {}, {} params, allocator tuned: {tuned}",
        m.num_layers,
        m.hidden_size,
        m.num_heads,
        m.ffn_size,
        m.generator_depth(),
        m.vocab_size,
        m.relative_position,
        m.dropout,
        report.sequences_per_step,
        report.seq_len,
        report.parameters
    );
    println!(
        "{:.1} ms/step (min {:.1}) over {} steps, {:.0} tokens/s",
        report.ms_per_step, report.min_ms_per_step, report.steps, report.tokens_per_s
    );
}

fn fail(message: &str) -> ! {
    eprintln!("bench_step: {message}");
    std::process::exit(2)
}
