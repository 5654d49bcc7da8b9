//! Syncing a shard's bytes to disk while it is still being written.
//!
//! A shard is durable only after the fsync that commits it, and that fsync waits for
//! every byte written since the last one to reach stable storage. Left to the end, it
//! waits for the whole shard while the tokenizer threads have nothing left to do: 42–45
//! ms for a 54 MB shard on the 2-core VM of BENCHMARKS.md, even with the kernel's
//! writeback started after every record batch (a 100-byte file's fsync took 0.2 ms
//! there, so the cost was the data, not the journal commit). A [`BackgroundSync`]
//! thread calls `fdatasync` every [`SYNC_EVERY`] bytes instead, while the shard is
//! being written, so the commit's fsync finds at most the last few MiB still to sync
//! (~5 ms there).
//!
//! Durability still rests on the commit's fsync; these only move the disk's work
//! earlier. An error of a background sync is kept and returned by
//! [`BackgroundSync::finish`]: both descriptors share one open file, and the kernel
//! reports a writeback error once per open file, so the commit's fsync might not see it.

use super::background::Background;
use std::fs::File;
use std::io;

/// Bytes written between two background syncs.
pub(super) const SYNC_EVERY: u64 = 8 << 20;

/// A thread syncing one file's data on request; see the module docs.
pub(super) struct BackgroundSync {
    thread: Background<(), ()>,
    requested_at: u64,
}

impl BackgroundSync {
    /// A sync thread for `file` (a second descriptor of it). `None` if the descriptor or
    /// the thread cannot be had: the shard is then synced only at its commit, as before.
    pub(super) fn start(file: &File) -> Option<Self> {
        let file = file.try_clone().ok()?;
        // One slot: a request waiting in it is served after the sync in progress and
        // then covers everything written before it starts, so a full slot is enough.
        let thread = Background::start("cocolm-sync", 1, move |queue| {
            for () in queue {
                file.sync_data()?;
            }
            Ok(())
        })
        .ok()?;
        Some(BackgroundSync {
            thread,
            requested_at: 0,
        })
    }

    /// The file now holds `written` bytes: ask for a sync when [`SYNC_EVERY`] more
    /// have been written since the last request.
    pub(super) fn written(&mut self, written: u64) {
        if written < self.requested_at + SYNC_EVERY {
            return;
        }
        self.requested_at = written;
        // A full slot already covers these bytes.
        self.thread.request(());
    }

    /// Stop the thread once it has served what was asked; the first error of its syncs.
    pub(super) fn finish(self) -> io::Result<()> {
        self.thread.finish(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn syncs_on_request_and_finishes_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("f")).unwrap();
        let mut sync = BackgroundSync::start(&file).expect("a sync thread");
        let block = vec![7u8; 1 << 20];
        let mut written = 0;
        for _ in 0..20 {
            file.write_all(&block).unwrap();
            written += block.len() as u64;
            sync.written(written);
        }
        assert_eq!(
            sync.requested_at,
            16 << 20,
            "requests every SYNC_EVERY bytes"
        );
        sync.finish().unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn an_error_of_a_background_sync_is_returned() {
        // A pipe cannot be synced: fdatasync fails with EINVAL.
        let (reader, writer) = std::io::pipe().unwrap();
        let file = File::from(std::os::fd::OwnedFd::from(writer));
        let mut sync = BackgroundSync::start(&file).expect("a sync thread");
        sync.written(SYNC_EVERY);
        let error = sync.finish().expect_err("syncing a pipe fails");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        drop(reader);
    }
}
