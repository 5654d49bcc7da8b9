//! [`AppendLog`]: the mechanism behind `prepare`'s side files (`dedup.bin`,
//! `inputs.jsonl`): appended to, synced before each manifest update, and cut back on
//! resume to the length that manifest counted, so debris of a killed job is dropped.

use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An append-only file whose valid length a manifest records.
#[derive(Debug)]
pub struct AppendLog {
    file: BufWriter<File>,
    path: PathBuf,
    len: u64,
}

impl AppendLog {
    /// `path` cut to its first `valid` bytes and positioned at the end; created (or
    /// emptied) when `valid` is 0. A file shorter than `valid` is refused, naming it.
    pub fn open(path: PathBuf, valid: u64) -> Result<Self> {
        let mut file = OpenOptions::new()
            .create(valid == 0)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        if len < valid {
            return Err(Error::Output {
                path,
                message: format!(
                    "holds {len} bytes, the manifest counts {valid}; prepare again into a new --out"
                ),
            });
        }
        file.set_len(valid).map_err(|e| Error::io(&path, e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| Error::io(&path, e))?;
        Ok(AppendLog {
            file: BufWriter::new(file),
            path,
            len: valid,
        })
    }

    /// Append `bytes` (buffered until [`AppendLog::sync`]).
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Write what is buffered and sync it to disk; returns the length a manifest written
    /// next may count.
    pub fn sync(&mut self) -> Result<u64> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        self.file
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(self.len)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
