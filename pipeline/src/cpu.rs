//! CPU time of the process and of the calling thread, so reports can tell work from
//! waiting and from time a thread spent descheduled (wall time inside a stage counts
//! both).

use std::sync::atomic::{AtomicU64, Ordering};

/// CPU time the calling thread has used, in nanoseconds; `None` where the platform does
/// not say (only Linux is asked).
pub fn thread_ns() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `clock_gettime` writes one `timespec` into the value we own.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
        ok.then(|| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// CPU time this process has used so far, user and system, over all its threads, in
/// seconds (0 where `getrusage` is not available).
pub fn process_seconds() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: `getrusage` writes one `rusage` into the zeroed value we own.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
                return 0.0;
            }
            usage
        };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
    #[cfg(not(unix))]
    {
        0.0
    }
}

/// Run `f`, adding the CPU time it used on this thread to `total` (nothing where
/// [`thread_ns`] is `None`).
pub fn charge<T>(total: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let start = thread_ns();
    let out = f();
    if let (Some(start), Some(end)) = (start, thread_ns()) {
        total.fetch_add(end.saturating_sub(start), Ordering::Relaxed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_charged_and_sleep_is_not() {
        if thread_ns().is_none() {
            eprintln!("skipped: no thread CPU clock on this platform");
            return;
        }
        let (busy, idle) = (AtomicU64::new(0), AtomicU64::new(0));
        let process = process_seconds();
        // Spin until this thread's clock shows 20 ms of work (however long that takes
        // on a loaded machine).
        charge(&busy, || {
            let start = thread_ns().unwrap();
            while thread_ns().unwrap() - start < 20_000_000 {}
        });
        charge(&idle, || {
            std::thread::sleep(std::time::Duration::from_millis(30))
        });
        let process = process_seconds() - process;
        let (busy, idle) = (busy.into_inner(), idle.into_inner());
        assert!(
            process >= 0.02,
            "the process clock saw {process} s of the spin"
        );
        assert!(busy >= 20_000_000, "20 ms of spinning charged {busy} ns");
        assert!(idle < 10_000_000, "30 ms of sleep charged {idle} ns");
    }
}
