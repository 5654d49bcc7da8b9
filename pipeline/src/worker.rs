//! Worker threads report panics as errors instead of taking the process down or leaving
//! their consumer waiting.
//!
//! A panic inside a worker becomes [`Error::WorkerPanicked`], naming the thread (whose
//! name names the stage: `cocolm-read`, `cocolm-encode-N`, `cocolm-loader-N`) and carrying
//! the panic message. Used by [`crate::queue`] (the loader's workers) and
//! [`crate::prepare`] (the reader, the tokenizer workers and the thread writing a fresh
//! job's opening files).
//!
//! Unwind safety: a panicking worker stops, and the error it reports stops the job, so
//! state it may have left half-updated is not used to produce results afterwards.

use crate::{Error, Result};
use crossbeam_channel::Sender;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Run `body` on this thread; a panic in it becomes [`Error::WorkerPanicked`].
pub(crate) fn catch_panic<T>(body: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(panicked(payload)))
}

/// Run the body of a worker that reports through `report`: if it panics, the panic is
/// sent there as [`Error::WorkerPanicked`] (ignored if the consumer has gone).
pub(crate) fn report_panic<T>(report: &Sender<Result<T>>, body: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(body)) {
        let _ = report.send(Err(panicked(payload)));
    }
}

/// Join a thread spawned to run [`catch_panic`]: its result, or, should a panic escape
/// anyway, [`Error::WorkerPanicked`] naming `thread`.
pub(crate) fn join_worker<T>(
    handle: std::thread::ScopedJoinHandle<'_, Result<T>>,
    thread: &str,
) -> Result<T> {
    handle.join().unwrap_or_else(|payload| {
        Err(Error::WorkerPanicked {
            thread: thread.into(),
            message: panic_message(payload.as_ref()),
        })
    })
}

/// The error for a panic of the current thread with `payload`.
fn panicked(payload: Box<dyn Any + Send>) -> Error {
    Error::WorkerPanicked {
        thread: std::thread::current()
            .name()
            .unwrap_or("<unnamed>")
            .to_string(),
        message: panic_message(payload.as_ref()),
    }
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_thread<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_panic_becomes_an_error_naming_thread_and_message() {
        let err = on_thread("cocolm-read", || {
            catch_panic::<()>(|| panic!("input {} vanished", 3)).unwrap_err()
        });
        match err {
            Error::WorkerPanicked { thread, message } => {
                assert_eq!(
                    (thread.as_str(), message.as_str()),
                    ("cocolm-read", "input 3 vanished")
                );
            }
            other => panic!("{other}"),
        }
        assert_eq!(catch_panic(|| Ok(7)).unwrap(), 7);
    }

    #[test]
    fn a_reporting_worker_sends_its_panic() {
        let (tx, rx) = crossbeam_channel::bounded::<Result<u32>>(1);
        on_thread("cocolm-encode-1", move || {
            report_panic(&tx, || std::panic::panic_any(42u32));
        });
        let err = rx.recv().unwrap().unwrap_err().to_string();
        assert_eq!(
            err,
            "thread cocolm-encode-1 panicked: <non-string panic payload>"
        );
    }
}
