//! Command-line arguments. Each flag is documented where it is defined.

use clap::{Args, Parser, Subcommand, ValueEnum};
use cocolm_shared::{Device, Precision};
use std::path::PathBuf;

/// Prepare pretraining corpora and pretrain COCO-LM-style language models.
#[derive(Debug, Parser)]
#[command(name = "cocolm", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train or inspect a tokenizer.
    #[command(subcommand)]
    Tokenizer(TokenizerCommand),
    /// Tokenize a corpus and pack it into memory-mapped Arrow shards.
    Prepare(PrepareArgs),
    /// Join the folders of `prepare --part K/N` (all N parts) into one shard set,
    /// linking the shards instead of copying them.
    Merge(MergeArgs),
    /// Report on a shard directory, or run SQL over it.
    Stats(StatsArgs),
    /// Export shards to another format.
    Export(ExportArgs),
    /// Pretrain a model on a shard directory.
    Train(TrainArgs),
    /// Plot the losses of a run as SVG.
    Plot(PlotArgs),
    /// Export a run's model in Hugging Face's ELECTRA layout.
    ExportHf(ExportHfArgs),
    /// Fine-tune a pretrained model (or the same architecture from scratch) for sequence
    /// classification on TSV files.
    Finetune(FinetuneArgs),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The embedded default: bundled corpus → tokenizer → shards → a short training run.
    Demo(DemoArgs),
    /// Check a multi-process launch before a long job.
    #[command(subcommand)]
    Launch(LaunchCommand),
    /// Check the model's numerics on a device against reference outputs.
    #[command(subcommand)]
    Check(CheckCommand),
    /// Inspect a run's checkpoints.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
}

/// `cocolm checkpoint` subcommands.
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Verify every checkpoint of a run against the sizes and SHA-256 sums its
    /// `state.json` records; list incomplete and set-aside ones. Exits with 1 when a
    /// complete checkpoint is damaged.
    Verify(CheckpointVerifyArgs),
}

/// `cocolm checkpoint verify`.
#[derive(Debug, Args)]
pub struct CheckpointVerifyArgs {
    /// Run directory (holding `checkpoints/`), or the checkpoints directory itself.
    pub run: PathBuf,
}

/// `cocolm check` subcommands.
#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Load the Hugging Face ELECTRA fixture into the encoder on the chosen device and
    /// precision, and compare its outputs with the ones `transformers` computed.
    Electra(CheckElectraArgs),
}

/// `cocolm check electra`.
#[derive(Debug, Args)]
pub struct CheckElectraArgs {
    /// The fixture directory (weights and `io.safetensors`).
    #[arg(long, default_value = "trainer/tests/data/electra-tiny")]
    pub fixture: PathBuf,
    /// Where to run: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// fp32, bf16 or fp16.
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
    /// Fail when a relative error exceeds this.
    #[arg(long, default_value_t = 1e-4)]
    pub max_error: f64,
}

/// `cocolm launch` subcommands.
#[derive(Debug, Subcommand)]
pub enum LaunchCommand {
    /// Print this process's rank as the launch variables describe it (torchrun's or
    /// Slurm's), meet the other ranks at MASTER_ADDR:MASTER_PORT as `train` would, and
    /// print the token rank 0 handed out (every rank prints the same one).
    Check(LaunchCheckArgs),
}

/// `cocolm launch check`.
#[derive(Debug, Args)]
pub struct LaunchCheckArgs {
    /// Seconds to wait for the other ranks.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

impl Command {
    /// Whether the command is a long job that stops cleanly on the first SIGINT/SIGTERM/
    /// SIGUSR1 (`crate::signals`); the others (the demo, which starts over anyway,
    /// included) keep the default behaviour.
    pub fn stops_cleanly(&self) -> bool {
        matches!(self, Command::Prepare(_) | Command::Train(_))
    }

    /// Whether the command trains a model on the CPU (and wants the allocator tuned for
    /// it, [`cocolm_trainer::backend::tune_allocator`]).
    pub fn trains(&self) -> bool {
        matches!(
            self,
            Command::Train(_)
                | Command::Demo(_)
                | Command::Bench(BenchCommand::Train(_) | BenchCommand::DataVsCompute(_))
        )
    }
}

/// Tokenizer subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Train a tokenizer on a corpus.
    Train(TokenizerTrainArgs),
}

/// How documents are read from the inputs (shared by `prepare` and `tokenizer train`).
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// JSON field or Parquet column holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Split `.txt` files into one document per block of lines separated by blank lines
    /// (default: one document per file).
    #[arg(long)]
    pub split_blank_lines: bool,
    /// Reject documents longer than this many bytes (they are counted, never truncated).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_doc_bytes: u64,
    /// Object-store inputs: retries of a failed request or interrupted download, with
    /// exponential back-off, before the job stops naming the object.
    #[arg(long, default_value_t = 10)]
    pub retries: usize,
    /// Object-store inputs: no retry starts later than this many seconds after a
    /// request's first attempt.
    #[arg(long, default_value_t = 180)]
    pub retry_timeout: u64,
}

/// Tokenizer models.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TokenizerModel {
    /// Byte-level BPE (GPT-2/RoBERTa style).
    Bpe,
    /// WordPiece (BERT style).
    Wordpiece,
    /// Unigram (SentencePiece style).
    Unigram,
}

/// `cocolm tokenizer train`.
#[derive(Debug, Args)]
pub struct TokenizerTrainArgs {
    /// Input files or directories (.txt, .txt.zst, .jsonl, .jsonl.zst, .parquet), or
    /// URLs of objects or prefixes (s3://, gs://, az://, http(s)://, file://).
    #[arg(long = "input", required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Vocabulary size, special tokens included.
    #[arg(long, default_value_t = 32_000)]
    pub vocab_size: usize,
    /// Where to write tokenizer.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Tokenizer model.
    #[arg(long, value_enum, default_value = "bpe")]
    pub model: TokenizerModel,
    /// How documents are read.
    #[command(flatten)]
    pub read: ReadArgs,
}

/// `cocolm prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Input files or directories (.txt, .txt.zst, .jsonl, .jsonl.zst, .parquet), or
    /// URLs of objects or prefixes (s3://, gs://, az://, http(s)://, file://).
    #[arg(long = "input", required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// tokenizer.json (plain or .zst).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Output directory; re-running the same command resumes an interrupted job.
    #[arg(long)]
    pub out: PathBuf,
    /// Tokens per example, [CLS] and [SEP] included.
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Tokenizer threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Target shard size (bytes, or with a K/M/G suffix: 512M, 64K).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    pub shard_size: u64,
    /// Fail on the first document rejected as bad input instead of counting it
    /// (duplicates dropped by --dedup are counted, never fatal).
    #[arg(long)]
    pub strict: bool,
    /// Drop duplicate documents: `exact` rejects a document whose text (Unicode NFC,
    /// whitespace runs collapsed) equals an earlier one's, as `duplicate`, naming the
    /// first; 38–75 bytes of memory per distinct document (113 at the peak of a table
    /// growth). `near` also rejects a document similar to an earlier one (MinHash over
    /// word 5-grams, 16 bands of 8 rows: Jaccard ≈ 0.7 and above; 16× the memory).
    #[arg(long, default_value = "none", value_name = "none|exact|near")]
    pub dedup: cocolm_shared::manifest::Dedup,
    /// Prepare only the K-th (0-based) of N parts of the inputs (contiguous runs of
    /// files balanced by size), for many machines; `cocolm merge` joins the parts.
    #[arg(long, value_name = "K/N")]
    pub part: Option<cocolm_pipeline::prepare::part::Part>,
    /// How documents are read.
    #[command(flatten)]
    pub read: ReadArgs,
}

/// `cocolm merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The merged shard set's folder (new or empty).
    pub out: PathBuf,
    /// The part folders, in any order: every K of N once.
    #[arg(required = true, num_args = 1..)]
    pub parts: Vec<PathBuf>,
}

/// `cocolm stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Shard directory (not with --plan).
    #[arg(required_unless_present = "plan")]
    pub dir: Option<PathBuf>,
    /// Plan a blended run instead: per source, its examples and tokens, what the run
    /// will draw from it and how many times it will be repeated.
    #[arg(long, conflicts_with_all = ["dir", "sql"])]
    pub plan: bool,
    /// With --plan: a source and its weight (repeatable; default: the configuration's
    /// `[[data.sources]]`).
    #[arg(long, value_name = "DIR[:WEIGHT]", requires = "plan")]
    pub data: Vec<crate::commands::SourceSpec>,
    /// With --plan: the run configuration (batch size, accumulation, steps, sources).
    #[arg(long, requires = "plan")]
    pub config: Option<PathBuf>,
    /// With --plan: override the configuration's number of steps.
    #[arg(long, requires = "plan")]
    pub steps: Option<u64>,
    /// With --plan: data-parallel ranks (the global batch is batch size × accumulation ×
    /// ranks).
    #[arg(long, default_value_t = 1, requires = "plan")]
    pub world: u64,
    /// Run this SQL instead of the default report (tables: examples, shards, inputs).
    #[arg(long)]
    pub sql: Option<String>,
    /// Print the default report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Most frequent ids to list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Skip checksum verification of the shards.
    #[arg(long)]
    pub no_verify: bool,
}

/// `cocolm export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Shard directory.
    pub dir: PathBuf,
    /// Write zstd-compressed Parquet files into this directory.
    #[arg(long)]
    pub parquet: PathBuf,
}

/// `cocolm train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Shard directory, with an optional weight: `--data web:0.6 --data books:0.4` blends
    /// them by examples (repeatable; default: the configuration's `[[data.sources]]`).
    #[arg(long, value_name = "DIR[:WEIGHT]")]
    pub data: Vec<crate::commands::SourceSpec>,
    /// Run configuration (TOML; see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Run directory (config copy, metrics.jsonl, checkpoints, loss plot).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from the newest intact checkpoint in --out (damaged ones are passed over,
    /// with a warning); with none there yet, start from step 0 — so one command line
    /// serves the first start and every restart of a pre-empted job.
    #[arg(long)]
    pub resume: bool,
    /// Override the configuration's number of steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Skip checksum verification of the shards.
    #[arg(long)]
    pub no_verify: bool,
    /// Held-out shards (prepared with the same tokenizer): every --eval-every steps the
    /// model is evaluated on their first --eval-batches batches, without dropout, and
    /// `eval` (generator masked-token accuracy, copy and CLM accuracy) goes into
    /// metrics.jsonl and the plot.
    #[arg(long, value_name = "DIR")]
    pub eval_data: Option<PathBuf>,
    /// Steps between evaluations on --eval-data (and the last step).
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub eval_every: u64,
    /// Batches of --eval-data evaluated each time (fewer when it holds fewer; each example
    /// at most once).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub eval_batches: usize,
    /// Start from the weights of a Hugging Face export (`cocolm export-hf`, or an ELECTRA
    /// pair of the same shape in that layout) instead of a random draw; the model
    /// configuration must match it (a differing field is named). Ignored on --resume once
    /// a checkpoint exists.
    #[arg(long, value_name = "DIR")]
    pub init_from_hf: Option<PathBuf>,
    /// Overrides of the configuration file.
    #[command(flatten)]
    pub overrides: ConfigOverrides,
}

/// `cocolm export-hf`.
#[derive(Debug, Args)]
pub struct ExportHfArgs {
    /// A run directory (its newest intact checkpoint) or one checkpoint directory.
    pub run: PathBuf,
    /// The export directory: the corrector as ELECTRA (config.json, model.safetensors,
    /// tokenizer.json), the generator in generator/ as ElectraForMaskedLM, and
    /// cocolm_extra.safetensors.
    pub out: PathBuf,
    /// The tokenizer (default: the run's tokenizer.json).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// `cocolm finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// A run directory (its newest intact checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "RUN_OR_DIR")]
    pub checkpoint: PathBuf,
    /// Training examples: `text<TAB>label` a line; a first line `text<TAB>label` is a
    /// header; labels are strings.
    #[arg(long)]
    pub train: PathBuf,
    /// Development examples (early stopping and model choice).
    #[arg(long)]
    pub dev: PathBuf,
    /// Test examples, scored once with the chosen model.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// The same architecture from random initialisation (the baseline), not the
    /// checkpoint's weights.
    #[arg(long)]
    pub from_scratch: bool,
    /// Keep only N training examples of each label (a fixed subset drawn with --seed).
    #[arg(long, value_name = "N")]
    pub train_per_label: Option<usize>,
    /// Most passes over the training examples.
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    /// Peak learning rate (linear warm-up over the first 10 % of updates, then linear
    /// decay to 0).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Sequences per update.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Stop after this many epochs without a better development accuracy.
    #[arg(long, default_value_t = 2)]
    pub patience: usize,
    /// Longest input in tokens, `[CLS]` and `[SEP]` included (at most the model's
    /// positions; default 128 or the model's positions when fewer); longer texts are cut.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Seed of the head, the subset, the order of examples and dropout.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The tokenizer (default: `tokenizer.json` of the run directory, which `cocolm
    /// train` copies there from the shards).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Where results.json goes (default: RUN/finetune/<train file>-<pretrained|scratch>
    /// [-N-per-label]).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Where and how to train, over what the configuration file says.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigOverrides {
    /// Where to train: cpu or cuda (sets train.device).
    #[arg(long)]
    pub device: Option<Device>,
    /// fp32, bf16 or fp16 (sets train.precision).
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Override any configuration value, `section.key=value` (repeatable):
    /// `--set model.num_layers=4 --set train.batch_size=16`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigOverrides {
    /// Every override as `section.key=value`, the flags first.
    pub fn assignments(&self) -> Vec<String> {
        let device = self.device.map(|d| format!("train.device=\"{d}\""));
        let precision = self.precision.map(|p| format!("train.precision=\"{p}\""));
        device
            .into_iter()
            .chain(precision)
            .chain(self.set.iter().cloned())
            .collect()
    }
}

/// `cocolm plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run directory (holding metrics.jsonl).
    pub run: PathBuf,
    /// Output SVG (default: RUN/loss.svg).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Bare tokenizer encoding versus the whole prepare job, on the same text.
    Prepare(BenchPrepareArgs),
    /// Loader throughput (with corruption) versus a plain memcpy of the same bytes.
    Loader(BenchLoaderArgs),
    /// Trainer step time and tokens/s on synthetic batches.
    Train(BenchTrainArgs),
    /// Is a run data-bound or compute-bound? The loader alone for each worker count, the
    /// consumer alone, then both through the queue, with a verdict.
    DataVsCompute(BenchDataVsComputeArgs),
}

/// `cocolm bench data-vs-compute`.
#[derive(Debug, Args)]
pub struct BenchDataVsComputeArgs {
    /// Shard directory with an optional weight (repeatable: a blend).
    #[arg(long, required = true, value_name = "DIR[:WEIGHT]")]
    pub data: Vec<crate::commands::SourceSpec>,
    /// Run configuration: batch shape, accumulation, masking, the model.
    #[arg(long)]
    pub config: PathBuf,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Loader worker counts to try.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub workers: Vec<usize>,
    /// The consumer: the real trainer (on the configured device and precision), or a
    /// simulated one consuming at a target rate (implied by --target-tokens-per-s and
    /// --target).
    #[arg(long, value_enum, default_value_t = ConsumerKind::Real)]
    pub consumer: ConsumerKind,
    /// Simulated consumer: this many tokens (batch positions) per second.
    #[arg(long, conflicts_with = "target")]
    pub target_tokens_per_s: Option<f64>,
    /// Simulated consumer: the rate of this accelerator running the configured model at
    /// --utilisation of its peak (h200: 790 TFLOP/s dense bf16).
    #[arg(long, value_enum)]
    pub target: Option<Accelerator>,
    /// With --target: accelerators fed by this machine's loader.
    #[arg(long, default_value_t = 1)]
    pub gpus: u32,
    /// With --target: model FLOP utilisation assumed.
    #[arg(long, default_value_t = 0.45)]
    pub utilisation: f64,
    /// Directory for the JSON report and the SVG chart.
    #[arg(long, default_value = "bench-data-vs-compute")]
    pub out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The real consumer's device, precision and other configuration values.
    #[command(flatten)]
    pub overrides: ConfigOverrides,
}

/// What consumes the batches in `bench data-vs-compute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsumerKind {
    /// The trainer, on the configured device and precision.
    Real,
    /// A consumer that takes each batch's time at a target rate.
    Simulated,
}

/// Accelerators `--target` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accelerator {
    /// NVIDIA H200: 790 TFLOP/s dense bf16 (989 TFLOP/s is the sparse figure).
    H200,
}

impl Accelerator {
    /// Peak dense FLOP/s in bf16.
    pub fn peak_flops(self) -> f64 {
        match self {
            Accelerator::H200 => 790e12,
        }
    }
}

/// `cocolm bench prepare`.
#[derive(Debug, Args)]
pub struct BenchPrepareArgs {
    /// Input files or directories, or URLs of objects or prefixes.
    #[arg(long = "input", required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// tokenizer.json (plain or .zst).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Threads for both measurements (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Tokens per example.
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Rounds, each the bare encoding then the whole job; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// How documents are read.
    #[command(flatten)]
    pub read: ReadArgs,
}

/// `cocolm bench loader`.
#[derive(Debug, Args)]
pub struct BenchLoaderArgs {
    /// Shard directories, each with an optional weight (several: a blend).
    #[arg(required = true, value_name = "DIR[:WEIGHT]")]
    pub sources: Vec<crate::commands::SourceSpec>,
    /// Rows per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Batches to time (default: one full pass over the set).
    #[arg(long)]
    pub batches: Option<u64>,
    /// Also build the SCL crop.
    #[arg(long)]
    pub crop: bool,
}

/// `cocolm bench train`.
#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Run configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Vocabulary size of the synthetic batches (when the config says 0).
    #[arg(long, default_value_t = 30_522)]
    pub vocab_size: usize,
    /// Sequence length of the synthetic batches.
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Timed steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: u64,
    /// Untimed warm-up steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Run ZeRO-1 (the sharded optimiser and its collective) even on one rank: on CUDA
    /// through a one-rank NCCL communicator, the NCCL path itself.
    #[arg(long)]
    pub zero: bool,
    /// The device's peak dense throughput in the run's precision (TFLOP/s), to report
    /// the model FLOP utilisation.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Overrides of the configuration file.
    #[command(flatten)]
    pub overrides: ConfigOverrides,
}

/// `cocolm demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to put the tokenizer, shards and run.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// A fast version for tests: a small tokenizer and a few dozen steps.
    #[arg(long)]
    pub quick: bool,
}

/// Parse `123`, `64K`, `256M`, `1G` (binary multiples; an optional trailing `B`/`iB`).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().trim_end_matches("iB").trim_end_matches('B');
    let (digits, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 256M"))?;
    n.checked_shl(shift)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{text:?} is not a positive size"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("256M"), Ok(256 << 20));
        assert_eq!(super::parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(super::parse_size("1000"), Ok(1000));
        assert!(super::parse_size("lots").is_err());
        assert!(super::parse_size("0").is_err());
    }
}
