//! One writer per folder: an advisory lock on a job's output directory.
//!
//! `prepare` and `train` hold [`DirLock`] on their output folder for as long as they
//! write to it. The lock is the operating system's (`flock` on Unix, `LockFileEx` on
//! Windows, through [`std::fs::File::try_lock`]) on the file [`LOCK_FILE`] in the
//! folder, so it goes away with the process however that ends — a `kill -9` leaves no
//! stale lock. The file itself stays (removing it would let a third job lock a fresh
//! file while a second still holds the old one); it holds the holder's pid and command
//! line, which a refused job names.
//!
//! Network file systems differ in how they honour such locks; on a node-local or
//! shared POSIX file system they work across processes and machines that support them.

use crate::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a locked folder.
pub const LOCK_FILE: &str = ".cocolm.lock";

/// An exclusive lock on a folder, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    _file: File,
}

impl DirLock {
    /// Lock `dir` (created if missing) for this process, recording its pid and command
    /// line; refuses with [`Error::Locked`] when another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder writes its line right after locking; an empty file means it
                // has not yet.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "a process that has not yet recorded its pid".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let command: Vec<String> = std::env::args().collect();
        let line = format!("pid {}: {}\n", std::process::id(), command.join(" "));
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(line.as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(DirLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let first = DirLock::acquire(&out).unwrap();
        let err = DirLock::acquire(&out).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("out"), "{err}");
        drop(first);
        let again = DirLock::acquire(&out).unwrap();
        assert!(again.path().ends_with(LOCK_FILE));
    }
}
