//! `cocolm`: prepare pretraining corpora and pretrain COCO-LM-style language models.
//!
//! This binary only parses arguments and calls the library crates; see `commands/`.

mod cli;
mod commands;
mod memory;
mod plot;
mod progress;
mod signals;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    signals::ignore_file_size_limit_signal();
    if args.command.stops_cleanly() {
        signals::install();
    }
    if args.command.trains() {
        // SAFETY: called once, first thing in `main`, before any thread exists; the
        // process-wide setting is what training on the CPU wants (freed tensor buffers
        // stay in the heap for the next step).
        unsafe { cocolm_trainer::backend::tune_allocator() };
    }
    match commands::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(stopped) = err.downcast_ref::<signals::Resumable>() {
                if !stopped.0.is_empty() {
                    eprintln!("{stopped}");
                }
                return ExitCode::from(signals::EXIT_RESUMABLE);
            }
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message
/// already holds (the library errors print their source in their own message).
fn describe(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// `cocolm stats … | head` is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
