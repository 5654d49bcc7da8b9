//! A named thread serving one shard's requests from a small queue: what
//! [`super::sync`] and [`super::digest`] run beside the packer.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// A thread serving requests of type `T` and ending with a result `R`.
pub(super) struct Background<T, R> {
    requests: Option<SyncSender<T>>,
    thread: Option<JoinHandle<io::Result<R>>>,
}

impl<T: Send + 'static, R: Send + 'static> Background<T, R> {
    /// Start `serve` on a thread named `name`, with a queue of `slots` requests; it
    /// returns once the queue is closed ([`Background::finish`]) or on an error.
    pub(super) fn start(
        name: &str,
        slots: usize,
        serve: impl FnOnce(Receiver<T>) -> io::Result<R> + Send + 'static,
    ) -> io::Result<Self> {
        let (requests, queue) = sync_channel::<T>(slots);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(queue))?;
        Ok(Background {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// Ask without waiting. A full queue drops the request: callers send requests that
    /// a later one covers. A thread that stopped on an error reports it from `finish`.
    pub(super) fn request(&self, request: T) {
        if let Some(requests) = &self.requests {
            let _ = requests.try_send(request);
        }
    }

    /// Send `last` (waiting for room), close the queue, and return the thread's result
    /// once it has served everything.
    pub(super) fn finish(mut self, last: Option<T>) -> io::Result<R> {
        if let (Some(requests), Some(last)) = (self.requests.take(), last) {
            // Fails only if the thread has stopped, on an error the join returns.
            let _ = requests.send(last);
        }
        // The queue is closed now (the sender was taken above): the thread ends.
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other(
                "a background thread of the shard writer panicked",
            )),
            None => Err(io::Error::other("a background thread was already stopped")),
        }
    }
}

impl<T, R> Drop for Background<T, R> {
    /// A shard abandoned (an error, a stop): the thread ends after what it was asked.
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
