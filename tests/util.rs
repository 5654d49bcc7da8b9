//! Helpers for the end-to-end tests: the binary, the Python clients, `../shared`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `cocolm` binary built for these tests, its tokenizer cache under `target/` (not
/// the user's).
pub fn cocolm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cocolm"));
    command.env(
        "COCOLM_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("cocolm-cache"),
    );
    command
}

/// Run `cocolm args…`, asserting success; returns stdout.
pub fn run_ok<S: AsRef<str>>(args: &[S]) -> String {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = cocolm().args(&args).output().expect("running cocolm");
    assert!(
        out.status.success(),
        "cocolm {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `cocolm args…`, asserting failure; returns stderr.
pub fn run_err<S: AsRef<str>>(args: &[S]) -> String {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = cocolm().args(&args).output().expect("running cocolm");
    assert!(!out.status.success(), "cocolm {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared`, or `None` with a printed reason.
pub fn shared() -> Option<PathBuf> {
    let dir = repo().join("../shared");
    if dir.join("data").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: ../shared is not present beside the repository");
        None
    }
}

/// A Python interpreter with all of `modules`. `COCOLM_PYTHON` names the interpreter
/// (CI sets it to the virtual environment it installs the modules into): then a missing
/// module fails the test. Without it, `python3` on the PATH, and `None` with a printed
/// reason when it lacks a module.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let required = std::env::var_os("COCOLM_PYTHON");
    let python = required
        .clone()
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let check = format!("import {}", modules.join(", "));
    let missing = match Command::new(&python).args(["-c", &check]).output() {
        Ok(out) if out.status.success() => return Some(python),
        Ok(out) => format!(
            "{} cannot import {modules:?} ({})",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ),
        Err(e) => format!("no Python interpreter {} ({e})", python.display()),
    };
    assert!(
        required.is_none(),
        "COCOLM_PYTHON is set, so the test needs it: {missing}"
    );
    eprintln!("skipping: {missing}; .ci/run installs the modules into .venv");
    None
}

/// A Python interpreter with heavy modules CI does not install (torch, transformers):
/// `COCOLM_TORCH_PYTHON`, else `COCOLM_PYTHON` or `python3`; `None` with a printed reason
/// when it lacks one of `modules`, whatever the variables say.
pub fn python_optional(modules: &[&str]) -> Option<PathBuf> {
    let python = std::env::var_os("COCOLM_TORCH_PYTHON")
        .or_else(|| std::env::var_os("COCOLM_PYTHON"))
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let check = format!("import {}", modules.join(", "));
    match Command::new(&python).args(["-c", &check]).output() {
        Ok(out) if out.status.success() => Some(python),
        _ => {
            eprintln!(
                "skipping: {} cannot import {modules:?}; set COCOLM_TORCH_PYTHON to an interpreter that can",
                python.display()
            );
            None
        }
    }
}

/// Run a Python script from `tests/python/` with arguments; returns stdout.
pub fn python_script(python: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(repo().join("tests/python").join(script))
        .args(args)
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
