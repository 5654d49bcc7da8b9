//! Long jobs survive: signals, a second writer, damaged checkpoints, full disks, and
//! SIGKILL at seeded random points (the crash-consistency suite).

use crate::prepare::{files_of, moby, prepare_args, small_tokenizer};
use crate::train::{losses, shards, tiny_config, train_args};
use crate::util::{cocolm, run_err, run_ok};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Send `signal` to a child process.
fn send(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we have not yet waited for.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({}, {signal})", child.id());
}

/// Poll `ready` until it holds; fails after a minute or when `child` ends first.
fn wait_for(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before {what}"
        );
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Lines in a run's metrics.jsonl (0 before it exists).
fn logged_steps(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

/// The checkpoint directories of a run, by name.
fn checkpoint_names(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn spawn(args: &[String]) -> Child {
    cocolm()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `cocolm args…` under a file-size limit of `kib` KiB (what a full disk looks like to
/// the writer: EFBIG on the write that crosses it).
fn under_file_size_limit(kib: u64, args: &[String]) -> Output {
    let binary = env!("CARGO_BIN_EXE_cocolm");
    std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -f {kib} && exec \"$0\" \"$@\""))
        .arg(binary)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn sigterm_finishes_the_step_checkpoints_and_the_same_command_resumes_identically() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    // Checkpoints only at the end: the one the signal writes is the only way back.
    let config = tiny_config(dir.path(), 60, 0);
    let reference = dir.path().join("reference");
    run_ok(&train_args(&data, &config, &reference, &[]));

    let run = dir.path().join("run");
    let args = train_args(&data, &config, &run, &["--resume"]);
    let mut child = spawn(&args);
    wait_for(&mut child, "step 5", || logged_steps(&run) >= 5);
    // A second job on the same run directory is refused, naming the holder.
    let refused = run_err(&args);
    assert!(
        refused.contains("another job") && refused.contains(&format!("pid {}", child.id())),
        "{refused}"
    );
    send(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{said}");
    assert!(
        said.contains("to resume:") && said.contains("--resume"),
        "{said}"
    );
    let saved = checkpoint_names(&run);
    assert_eq!(saved.len(), 1, "{saved:?}");
    let step: u64 = saved[0]["step-".len()..].parse().unwrap();
    assert!((5..60).contains(&step), "stopped at step {step}");
    assert_eq!(
        logged_steps(&run) as u64,
        step,
        "no step is logged past the checkpoint"
    );

    // The same command resumes (the killed holder left no lock behind).
    run_ok(&args);
    assert_eq!(losses(&reference), losses(&run));
}

#[test]
fn a_second_signal_aborts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    // Steps long enough (a wider model) that the second signal lands before the first
    // one's step and checkpoint are done.
    let config = dir.path().join("wide.toml");
    std::fs::write(
        &config,
        "[model]\nhidden_size = 256\nnum_layers = 4\nnum_heads = 4\nffn_size = 1024\ngenerator_layers = 1\nmax_positions = 64\n\
         [train]\nbatch_size = 32\nsteps = 100\nlog_every = 1\ncheckpoint_every = 0\n[data]\nworkers = 2\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let mut child = spawn(&train_args(&data, &config, &run, &[]));
    wait_for(&mut child, "step 1", || logged_steps(&run) >= 1);
    send(&child, libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(30));
    send(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(128 + libc::SIGINT),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("send it again to abort"));
}

#[test]
fn a_damaged_checkpoint_is_found_and_resume_falls_back_to_the_newest_intact_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    let config = tiny_config(dir.path(), 24, 6);
    let run = dir.path().join("run");
    let args = train_args(&data, &config, &run, &["--resume"]);
    run_ok(&args);
    let clean = losses(&run);
    let model = run.join("checkpoints/step-00000024/model.safetensors");
    let intact = std::fs::read(&model).unwrap();
    let run_dir = run.to_str().unwrap();
    assert!(run_ok(&["checkpoint", "verify", run_dir]).contains("4 checkpoints intact"));

    let mut flipped = intact.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&model, &flipped).unwrap();
    let out = cocolm()
        .args(["checkpoint", "verify", run_dir])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("step-00000024  DAMAGED") && report.contains("SHA-256"),
        "{report}"
    );
    assert!(report.contains("step-00000018  intact"), "{report}");

    let out = cocolm().args(&args).output().unwrap();
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("warning: passing over") && said.contains("step-00000024"),
        "{said}"
    );
    assert!(said.contains("resumed at step 18"), "{said}");
    assert!(said.contains("moved the damaged"), "{said}");
    assert_eq!(losses(&run), clean, "steps 19–24 again, identically");
    assert_eq!(std::fs::read(&model).unwrap(), intact);
    let report = run_ok(&["checkpoint", "verify", run_dir]);
    assert!(
        report.contains("step-00000024.damaged  set aside"),
        "{report}"
    );
}

#[test]
fn prepare_stops_cleanly_refuses_a_second_writer_and_leaves_no_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let args = slow_prepare(dir.path());
    let reference = dir.path().join("reference");
    run_ok(&args(&reference));

    let out = dir.path().join("out");
    let mut child = spawn(&args(&out));
    wait_for(&mut child, "the tenth shard", || {
        out.join("shard-00010.arrow").exists()
    });
    let refused = run_err(&args(&out));
    assert!(
        refused.contains("another job") && refused.contains(&format!("pid {}", child.id())),
        "{refused}"
    );
    send(&child, libc::SIGTERM);
    let stopped = child.wait_with_output().unwrap();
    let said = stderr(&stopped);
    assert_eq!(stopped.status.code(), Some(75), "{said}");
    assert!(said.contains("run the same command"), "{said}");
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "nothing partial stays: {leftovers:?}");

    // kill -9 of the next holder leaves no lock that blocks the rerun.
    let mut child = spawn(&args(&out));
    let next = out.join(format!("shard-{:05}.arrow", files_of(&out).len() + 3));
    wait_for(&mut child, "three more shards", || next.exists());
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = run_ok(&args(&out));
    assert!(resumed.contains("resumed an interrupted job"), "{resumed}");
    assert_eq!(files_of(&out), files_of(&reference));
}

#[test]
fn write_errors_name_the_file_keep_the_last_consistent_state_and_the_same_command_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = small_tokenizer(dir.path());
    // prepare: shards of ~1 MiB against a 256 KiB limit (the tokenizer copy and the
    // manifest fit under it).
    let args = |out: &Path| {
        prepare_args(
            &moby(),
            &tokenizer,
            out,
            &["--seq-len", "64", "--shard-size", "1M"],
        )
    };
    let reference = dir.path().join("reference");
    run_ok(&args(&reference));
    let out = dir.path().join("out");
    let failed = under_file_size_limit(256, &args(&out));
    let said = stderr(&failed);
    assert!(!failed.status.success());
    assert!(
        said.contains("shard-00000.arrow.tmp") && said.contains("File too large"),
        "{said}"
    );
    assert!(
        !out.join("shard-00000.arrow.tmp").exists(),
        "the partial shard is removed"
    );
    run_ok(&args(&out));
    assert_eq!(files_of(&out), files_of(&reference));

    // train: a checkpoint (~1.2 MB) against a 200 KiB limit, after an intact one.
    let data = dir.path().join("shards");
    crate::prepare::prepare_moby(&tokenizer, &data, &["--seq-len", "64"]);
    let config = tiny_config(dir.path(), 12, 6);
    let straight = dir.path().join("straight");
    run_ok(&train_args(&data, &config, &straight, &[]));
    let run = dir.path().join("run");
    let args = train_args(&data, &config, &run, &["--resume"]);
    let mut child = spawn(&args);
    let first = run.join("checkpoints/step-00000006");
    wait_for(&mut child, "the step-6 checkpoint", || first.exists());
    child.kill().unwrap();
    child.wait().unwrap();
    let failed = under_file_size_limit(200, &args);
    let said = stderr(&failed);
    assert!(!failed.status.success());
    assert!(
        said.contains("step-00000012.tmp") && said.contains("File too large"),
        "{said}"
    );
    assert_eq!(
        checkpoint_names(&run),
        ["step-00000006"],
        "step 6 intact, no partial step 12"
    );
    run_ok(&["checkpoint", "verify", run.to_str().unwrap()]);
    run_ok(&args);
    assert_eq!(losses(&run), losses(&straight));
}

/// A `prepare` job of about a second (the bundled book eight times over, small shards):
/// its arguments for an output folder.
fn slow_prepare(dir: &Path) -> impl Fn(&Path) -> Vec<String> {
    let tokenizer = small_tokenizer(dir);
    let corpus = dir.join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    for copy in 0..8 {
        std::fs::copy(moby(), corpus.join(format!("copy{copy}.jsonl.zst"))).unwrap();
    }
    move |out: &Path| {
        let extra = ["--seq-len", "64", "--shard-size", "40K", "--threads", "2"];
        prepare_args(&corpus, &tokenizer, out, &extra)
    }
}

/// What a crash-consistency run did.
#[derive(Debug, Default)]
struct Crashes {
    /// SIGKILLs that hit a running job.
    kills: usize,
    /// Runs after a kill (each one resumed the killed job).
    resumes: usize,
    /// Jobs carried to the end and compared with the uninterrupted one.
    completed: usize,
}

/// Start `args(out)`; SIGKILL it after a seeded random delay below `max_delay`; start the
/// same command again, and so on, until `kills` kills hit a running job. Whenever a job
/// completes, `check` compares its output with an uninterrupted run and the next job
/// starts in a new folder. The last job is carried to the end.
fn crash_loop(
    dir: &Path,
    kills: usize,
    seed: u64,
    max_delay: Duration,
    args: impl Fn(&Path) -> Vec<String>,
    check: impl Fn(&Path),
) -> Crashes {
    let mut report = Crashes::default();
    let mut attempt = 0u64;
    let mut out = dir.join("crash-0");
    let mut killed_last = false;
    while report.kills < kills {
        attempt += 1;
        assert!(
            attempt < 10 * kills as u64,
            "too few kills landed: {report:?}"
        );
        let draw = cocolm_shared::hash::mix64(seed ^ attempt.wrapping_mul(0x9E37));
        let delay = max_delay.mul_f64((draw >> 11) as f64 / (1u64 << 53) as f64);
        let mut child = cocolm()
            .args(args(&out))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        report.resumes += usize::from(killed_last);
        std::thread::sleep(delay);
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "attempt {attempt} failed: {status}");
            check(&out);
            report.completed += 1;
            out = dir.join(format!("crash-{}", report.completed));
            killed_last = false;
        } else {
            child.kill().unwrap();
            child.wait().unwrap();
            report.kills += 1;
            killed_last = true;
        }
    }
    report.resumes += 1;
    run_ok(&args(&out));
    check(&out);
    report.completed += 1;
    report
}

#[test]
fn crash_consistency_prepare_under_sigkill_at_24_seeded_points() {
    let dir = tempfile::tempdir().unwrap();
    let args = slow_prepare(dir.path());
    let reference = dir.path().join("reference");
    let started = Instant::now();
    run_ok(&args(&reference));
    let full = started.elapsed();
    let expected = files_of(&reference);
    let report = crash_loop(dir.path(), 24, 13, full.mul_f64(0.6), args, |out| {
        assert!(
            files_of(out) == expected,
            "{} differs from the uninterrupted run",
            out.display()
        );
    });
    eprintln!("crash consistency, prepare: {report:?}, every output byte-identical");
}

#[test]
fn crash_consistency_train_under_sigkill_at_24_seeded_points() {
    let dir = tempfile::tempdir().unwrap();
    let data = shards(dir.path());
    // A checkpoint every step: kills land in steps, in checkpoint writes and between.
    let config = tiny_config(dir.path(), 16, 1);
    let reference = dir.path().join("reference");
    let started = Instant::now();
    run_ok(&train_args(&data, &config, &reference, &[]));
    let full = started.elapsed();
    let last = |run: &Path| {
        let step = run.join("checkpoints/step-00000016");
        ["model.safetensors", "optimizer.safetensors"].map(|f| std::fs::read(step.join(f)).unwrap())
    };
    let (expected_losses, expected_state) = (losses(&reference), last(&reference));
    let args = |out: &Path| train_args(&data, &config, out, &["--resume"]);
    let report = crash_loop(dir.path(), 24, 7, full.mul_f64(0.5), args, |out| {
        assert!(
            losses(out) == expected_losses,
            "{}: losses differ",
            out.display()
        );
        assert!(
            last(out) == expected_state,
            "{}: final parameters or moments differ",
            out.display()
        );
    });
    eprintln!("crash consistency, train: {report:?}, every final state bit-identical");
}
