//! Writing shards: examples in, complete renamed shard files and their records out.

use super::digest::BackgroundDigest;
use super::sync::BackgroundSync;
use super::{schema, shard_file_name};
use crate::{Error, Result};
use arrow::array::{ArrayRef, ListArray, UInt32Array, UInt64Array};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{ArrowNativeType, DataType, Field};
use arrow::error::ArrowError;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::record_batch::RecordBatch;
use cocolm_shared::ShardRecord;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Counts every byte written through it.
struct CountingWriter {
    inner: BufWriter<File>,
    written: u64,
}

impl CountingWriter {
    /// Bytes that have reached the file (the rest is still in the buffer).
    fn in_file(&self) -> u64 {
        self.written - self.inner.buffer().len() as u64
    }
}

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Capacity of the buffer between the IPC writer and a shard file.
const WRITE_BUFFER: usize = 64 << 10;

struct OpenShard {
    index: usize,
    tmp: PathBuf,
    writer: StreamWriter<CountingWriter>,
    sync: Option<BackgroundSync>,
    digest: BackgroundDigest,
    rows: u64,
    tokens: u64,
    batch_offsets: Vec<u64>,
    batch_rows: Vec<u64>,
}

/// Writes examples into shards of `rows_per_shard` rows, in record batches of
/// `rows_per_batch` rows. Each shard is written to `*.arrow.tmp` and renamed when
/// complete; [`ShardWriter::push`] returns its [`ShardRecord`] at that moment. A writer
/// dropped with a shard open (an error, a stop) removes its temporary file, so a full
/// disk gets the space back. Each shard's SHA-256 is computed on a thread of its own
/// ([`super::digest`]).
pub struct ShardWriter {
    dir: PathBuf,
    rows_per_shard: u64,
    rows_per_batch: usize,
    next_index: usize,
    open: Option<OpenShard>,
    values: Vec<u32>,
    offsets: Vec<i32>,
    documents: Vec<u64>,
    digest_cpu_ns: u64,
}

impl ShardWriter {
    /// A writer into `dir` whose first shard is number `first_index`.
    pub fn new(dir: &Path, first_index: usize, rows_per_shard: u64, rows_per_batch: usize) -> Self {
        assert!(rows_per_shard > 0 && rows_per_batch > 0);
        ShardWriter {
            dir: dir.to_path_buf(),
            rows_per_shard,
            rows_per_batch,
            next_index: first_index,
            open: None,
            values: Vec::new(),
            offsets: vec![0],
            documents: Vec::new(),
            digest_cpu_ns: 0,
        }
    }

    /// Append one example. Returns the record of the shard this example completed.
    pub fn push(&mut self, ids: &[u32], document: u64) -> Result<Option<ShardRecord>> {
        self.values.extend_from_slice(ids);
        self.offsets.push(self.values.len() as i32);
        self.documents.push(document);
        let pending = self.documents.len();
        let shard_rows = self.open.as_ref().map_or(0, |s| s.rows) + pending as u64;
        if shard_rows == self.rows_per_shard {
            self.flush_batch()?;
            return self.close_shard().map(Some);
        }
        if pending == self.rows_per_batch {
            self.flush_batch()?;
        }
        Ok(None)
    }

    /// CPU time the shards' hashing threads have used so far (nanoseconds; 0 where the
    /// platform does not tell, see [`crate::cpu::thread_ns`]).
    pub fn digest_cpu_ns(&self) -> u64 {
        self.digest_cpu_ns
    }

    /// Write what is pending and close the last shard; `None` if it would be empty.
    pub fn finish(&mut self) -> Result<Option<ShardRecord>> {
        if !self.documents.is_empty() {
            self.flush_batch()?;
        }
        if self.open.is_some() {
            self.close_shard().map(Some)
        } else {
            Ok(None)
        }
    }

    fn open_shard(&mut self) -> Result<OpenShard> {
        let index = self.next_index;
        let tmp = self.dir.join(format!("{}.tmp", shard_file_name(index)));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let sync = BackgroundSync::start(&file);
        let digest = BackgroundDigest::start(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let sink = CountingWriter {
            // Small: it gathers the IPC messages' headers and padding, while a column's
            // values (larger than this) go to the file without a copy (`BufWriter`
            // writes a slice larger than its buffer directly).
            inner: BufWriter::with_capacity(WRITE_BUFFER, file),
            written: 0,
        };
        let options = IpcWriteOptions::default();
        let writer = StreamWriter::try_new_with_options(sink, &schema(), options)
            .map_err(|e| Error::format(&tmp, e))?;
        Ok(OpenShard {
            index,
            tmp,
            writer,
            sync,
            digest,
            rows: 0,
            tokens: 0,
            batch_offsets: Vec::new(),
            batch_rows: Vec::new(),
        })
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.open.is_none() {
            self.open = Some(self.open_shard()?);
        }
        let shard = self.open.as_mut().expect("opened above");
        // The columns' buffers are shared with the batch, and taken back as this
        // writer's vectors once it is written: no allocation and no page faults per
        // batch, and no growth by doubling (a copy of every token) to refill them.
        let values = ScalarBuffer::from(std::mem::take(&mut self.values));
        let offsets = ScalarBuffer::from(std::mem::take(&mut self.offsets));
        let documents = ScalarBuffer::from(std::mem::take(&mut self.documents));
        let rows = documents.len() as u64;
        let tokens = values.len() as u64;
        let batch = record_batch(values.clone(), offsets.clone(), documents.clone())
            .map_err(|e| Error::format(&shard.tmp, e))?;
        shard.batch_offsets.push(shard.writer.get_ref().written);
        shard
            .writer
            .write(&batch)
            .map_err(|e| Error::format(&shard.tmp, e))?;
        drop(batch);
        self.values = reclaim(values);
        self.offsets = reclaim(offsets);
        self.offsets.push(0);
        self.documents = reclaim(documents);
        let in_file = shard.writer.get_ref().in_file();
        shard.digest.written(in_file);
        if let Some(sync) = &mut shard.sync {
            sync.written(in_file);
        }
        shard.batch_rows.push(rows);
        shard.rows += rows;
        shard.tokens += tokens;
        Ok(())
    }

    fn close_shard(&mut self) -> Result<ShardRecord> {
        let shard = self.open.take().expect("a shard is open");
        let tmp = shard.tmp.clone();
        let closed = self.commit_shard(shard);
        if closed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        closed
    }

    /// Finish, sync and rename an open shard.
    fn commit_shard(&mut self, mut shard: OpenShard) -> Result<ShardRecord> {
        shard
            .writer
            .finish()
            .map_err(|e| Error::format(&shard.tmp, e))?;
        let sink = shard
            .writer
            .into_inner()
            .map_err(|e| Error::format(&shard.tmp, e))?;
        let CountingWriter { inner, written } = sink;
        let file = inner
            .into_inner()
            .map_err(|e| Error::io(&shard.tmp, e.into_error()))?;
        let digest = shard
            .digest
            .finish(written)
            .map_err(|e| Error::io(&shard.tmp, e))?;
        self.digest_cpu_ns += digest.cpu_ns;
        if let Some(sync) = shard.sync.take() {
            sync.finish().map_err(|e| Error::io(&shard.tmp, e))?;
        }
        file.sync_all().map_err(|e| Error::io(&shard.tmp, e))?;
        drop(file);
        let name = shard_file_name(shard.index);
        let path = self.dir.join(&name);
        std::fs::rename(&shard.tmp, &path).map_err(|e| Error::io(&path, e))?;
        cocolm_shared::manifest::sync_parent(&path)?;
        self.next_index += 1;
        Ok(ShardRecord {
            file: name,
            rows: shard.rows,
            tokens: shard.tokens,
            bytes: written,
            sha256: digest.sha256,
            batch_offsets: shard.batch_offsets,
            batch_rows: shard.batch_rows,
            document_offset: 0,
        })
    }
}

/// A record batch of the shard schema over these buffers (shared, not copied).
fn record_batch(
    values: ScalarBuffer<u32>,
    offsets: ScalarBuffer<i32>,
    documents: ScalarBuffer<u64>,
) -> std::result::Result<RecordBatch, ArrowError> {
    let item = Arc::new(Field::new("item", DataType::UInt32, true));
    let values = UInt32Array::new(values, None);
    let ids = ListArray::try_new(item, OffsetBuffer::new(offsets), Arc::new(values), None)?;
    let documents = UInt64Array::new(documents, None);
    RecordBatch::try_new(
        schema(),
        vec![Arc::new(ids) as ArrayRef, Arc::new(documents)],
    )
}

/// A buffer's vector back, emptied, once nothing else holds it (a new one otherwise).
fn reclaim<T: ArrowNativeType>(buffer: ScalarBuffer<T>) -> Vec<T> {
    let mut vec = buffer.into_inner().into_vec().unwrap_or_default();
    vec.clear();
    vec
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if let Some(shard) = self.open.take() {
            drop(shard.writer);
            drop(shard.digest);
            // Best effort: a leftover is also removed by the next run (`prepare::output`).
            let _ = std::fs::remove_file(&shard.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_buffers_are_taken_back_after_each_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ShardWriter::new(dir.path(), 0, 1000, 4);
        for doc in 0..4u64 {
            writer.push(&[1, 2, 3, doc as u32], doc).unwrap();
        }
        // The batch of 4 rows was written: its vectors are this writer's again, empty.
        assert!(writer.values.is_empty() && writer.values.capacity() >= 16);
        assert_eq!(writer.offsets, [0]);
        assert!(writer.offsets.capacity() >= 5);
        assert!(writer.documents.is_empty() && writer.documents.capacity() >= 4);
        writer.push(&[9, 9], 4).unwrap();
        let record = writer.finish().unwrap().expect("a shard");
        assert_eq!((record.rows, record.tokens), (5, 18));
        assert_eq!(record.batch_rows, [4, 1]);
    }
}
