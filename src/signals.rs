//! Signals: the first SIGINT, SIGTERM or SIGUSR1 asks the running job to stop at its next
//! consistent point (the [`Stop`] of [`stop`]); a second one ends the process at once.
//!
//! SIGTERM is what Slurm and Kubernetes send before SIGKILL, SIGUSR1 what Slurm's
//! `--signal=USR1@<seconds>` sends ahead of the time limit, SIGINT is Ctrl-C. A job that
//! stopped cleanly exits with [`EXIT_RESUMABLE`]; one aborted by a second signal exits
//! with 128 + the signal number, as a shell reports a killed process.
//!
//! SIGXFSZ is ignored, so exceeding a file-size limit (`ulimit -f`) is a write error
//! that names the file, like a full disk, instead of killing the process.

use cocolm_shared::Stop;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Exit status of a job that stopped cleanly on a signal and resumes with the same
/// command (`EX_TEMPFAIL` of `sysexits.h`: "try again later").
pub const EXIT_RESUMABLE: u8 = 75;

/// The flag the handler raises.
static STOP: OnceLock<Stop> = OnceLock::new();
/// Signals received so far.
static RECEIVED: AtomicU32 = AtomicU32::new(0);

/// The stop request of this process: raised by the first signal once [`install`] ran.
pub fn stop() -> Stop {
    STOP.get_or_init(Stop::new).clone()
}

/// Install the handlers (once, before the job starts).
#[cfg(unix)]
pub fn install() {
    let _ = stop();
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: `on_signal` only does async-signal-safe work (atomics, write(2),
        // _exit(2)); the sigaction struct is fully initialised.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Signals are not handled on this platform: the default behaviour stays.
#[cfg(not(unix))]
pub fn install() {}

/// Make exceeding the file-size limit a write error (`EFBIG`) instead of a kill.
#[cfg(unix)]
pub fn ignore_file_size_limit_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// No SIGXFSZ on this platform.
#[cfg(not(unix))]
pub fn ignore_file_size_limit_signal() {}

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    if RECEIVED.fetch_add(1, Ordering::SeqCst) > 0 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + signal) };
    }
    if let Some(stop) = STOP.get() {
        stop.request(signal);
    }
    let message: &[u8] = b"\ncocolm: signal received: stopping at the next consistent point (send it again to abort at once)\n";
    // SAFETY: write(2) is async-signal-safe; the buffer outlives the call.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
    }
}

/// A job that stopped cleanly on a signal: `main` prints the message (what was kept and
/// how to resume) and exits with [`EXIT_RESUMABLE`].
#[derive(Debug)]
pub struct Resumable(pub String);

impl std::fmt::Display for Resumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Resumable {}

/// This process's command line as a shell would take it back, with `extra` appended
/// when it is not already there (`--resume`).
pub fn command_line(extra: &str) -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if !extra.is_empty() && !args.iter().any(|a| a == extra) {
        args.push(extra.to_string());
    }
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_plain_words_and_protects_the_rest() {
        assert_eq!(shell_quote("--out=runs/a"), "--out=runs/a");
        assert_eq!(shell_quote("my run"), "'my run'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
