//! One module per subcommand: turn validated arguments into library calls.

pub mod bench;
mod check;
mod checkpoint;
#[cfg(feature = "cuda")]
mod cuda;
mod data;
mod demo;
mod export_hf;
mod finetune;
mod launch;
mod prepare;
mod tokenizer;
pub mod train;

pub use train::data::SourceSpec;

use crate::cli::{
    BenchCommand, CheckCommand, CheckpointCommand, Cli, Command, LaunchCommand, TokenizerCommand,
};
use anyhow::Result;

/// The error for a CUDA request in a binary built without the `cuda` feature; `what`
/// names the request (`train.device = "cuda"`, `--device cuda`).
#[cfg(not(feature = "cuda"))]
fn needs_cuda_build(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs a build with CUDA support: `cargo build --release --features cuda` (this binary was built without it)"
    )
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Tokenizer(TokenizerCommand::Train(args)) => tokenizer::train(&args),
        Command::Prepare(args) => prepare::run(&args).map(|_| ()),
        Command::Merge(args) => prepare::merge(&args),
        Command::Stats(args) => data::stats(&args),
        Command::Export(args) => data::export(&args),
        Command::Train(args) => train::run(&args).map(|_| ()),
        Command::Finetune(args) => finetune::run(&args),
        Command::ExportHf(args) => export_hf::run(&args),
        Command::Plot(args) => {
            let out = args.out.unwrap_or_else(|| args.run.join("loss.svg"));
            let series = crate::plot::plot_run(&args.run.join("metrics.jsonl"), &out)?;
            println!("wrote {} ({})", out.display(), series.join(", "));
            Ok(())
        }
        Command::Bench(BenchCommand::Prepare(args)) => bench::prepare(&args),
        Command::Bench(BenchCommand::Loader(args)) => bench::loader(&args),
        Command::Bench(BenchCommand::Train(args)) => bench::train(&args),
        Command::Bench(BenchCommand::DataVsCompute(args)) => bench::data_vs_compute::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Launch(LaunchCommand::Check(args)) => launch::check(&args),
        Command::Check(CheckCommand::Electra(args)) => check::electra(&args),
        Command::Checkpoint(CheckpointCommand::Verify(args)) => checkpoint::verify(&args),
    }
}
