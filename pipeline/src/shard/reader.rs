//! Reading shards: memory-mapped, decoded zero-copy, verified against the manifest.
//!
//! Two layers, as in arrow-rs: [`decode_shard`] turns bytes into record batches with
//! no I/O, and [`ShardSet::open`] owns the files, maps them and checks them.

use super::{DOCUMENT_COLUMN, IDS_COLUMN, schema};
use crate::{Error, Result};
use arrow::array::{Array, AsArray};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::UInt32Type;
use arrow::ipc::reader::StreamDecoder;
use arrow::record_batch::RecordBatch;
use cocolm_shared::{Manifest, ShardRecord};
use memmap2::Mmap;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

/// How much checking [`ShardSet::open`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Structure, sizes and row counts only (cheap).
    Structure,
    /// Also every shard's SHA-256 and that every id is below the vocabulary size.
    Full,
}

/// One decoded record batch of a shard: offsets and values borrowed from the map.
#[derive(Debug, Clone)]
struct Chunk {
    offsets: OffsetBuffer<i32>,
    values: ScalarBuffer<u32>,
    documents: ScalarBuffer<u64>,
}

/// All shards of a directory, memory-mapped. Example `i` of the set is row `i` in
/// shard order. Cloning is cheap (the maps are shared).
#[derive(Debug, Clone)]
pub struct ShardSet {
    dir: PathBuf,
    manifest: Arc<Manifest>,
    chunks: Arc<Vec<Chunk>>,
    /// First global example of every chunk, plus the total at the end.
    starts: Arc<Vec<u64>>,
    batches: Arc<Vec<RecordBatch>>,
    /// Shard of every chunk.
    chunk_shard: Arc<Vec<usize>>,
    /// First global example of every shard.
    shard_starts: Arc<Vec<u64>>,
}

impl ShardSet {
    /// Open the shard set in `dir` through its manifest, map every shard and check it.
    /// An incomplete set (an interrupted `prepare`) is refused.
    pub fn open(dir: &Path, verify: Verify) -> Result<Self> {
        let manifest = Manifest::read_dir(dir)?;
        if !manifest.state.is_complete() {
            return Err(Error::Output {
                path: dir.to_path_buf(),
                message: "the shard set is incomplete (an interrupted prepare); run `cocolm prepare` again with the same arguments to finish it".into(),
            });
        }
        let vocab = manifest.tokenizer.vocab_size as u64;
        let mut chunks = Vec::new();
        let mut batches = Vec::new();
        let mut starts = vec![0u64];
        let mut chunk_shard = Vec::new();
        let mut shard_starts = Vec::new();
        for (shard, record) in manifest.shards.iter().enumerate() {
            shard_starts.push(*starts.last().unwrap());
            let path = dir.join(&record.file);
            let map = map_shard(&path, record)?;
            if verify == Verify::Full {
                let digest = cocolm_shared::hash::sha256_hex(&map);
                if digest != record.sha256 {
                    return Err(Error::shard(
                        &path,
                        format!(
                            "checksum mismatch: manifest says {}, file has {digest}",
                            record.sha256
                        ),
                    ));
                }
            }
            let decoded = decode_shard(&path, map, record)?;
            for (k, batch) in decoded.into_iter().enumerate() {
                // One offset per batch: decode_shard checked the count against the manifest.
                let offset = record.batch_offsets.get(k).copied();
                let chunk = chunk_of(&path, offset, &batch)?;
                if verify == Verify::Full
                    && let Some(bad) = chunk.values.iter().find(|&&id| u64::from(id) >= vocab)
                {
                    return Err(Error::Shard {
                        path,
                        offset,
                        message: format!("id {bad} is not below the vocabulary size {vocab}"),
                    });
                }
                starts.push(starts.last().unwrap() + batch.num_rows() as u64);
                chunks.push(chunk);
                chunk_shard.push(shard);
                batches.push(batch);
            }
        }
        Ok(ShardSet {
            dir: dir.to_path_buf(),
            manifest: Arc::new(manifest),
            chunks: Arc::new(chunks),
            starts: Arc::new(starts),
            batches: Arc::new(batches),
            chunk_shard: Arc::new(chunk_shard),
            shard_starts: Arc::new(shard_starts),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of examples.
    pub fn len(&self) -> u64 {
        *self.starts.last().unwrap()
    }

    /// Whether the set holds no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of example `index`, borrowed from the memory map.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn example(&self, index: u64) -> &[u32] {
        let (chunk, row) = self.locate(index);
        let c = &self.chunks[chunk];
        let (start, end) = (c.offsets[row] as usize, c.offsets[row + 1] as usize);
        &c.values[start..end]
    }

    /// The ordinal of the document where example `index` starts.
    pub fn document(&self, index: u64) -> u64 {
        let (chunk, row) = self.locate(index);
        let shard = &self.manifest.shards[self.chunk_shard[chunk]];
        self.chunks[chunk].documents[row] + shard.document_offset
    }

    /// The shard file holding example `index`, and the example's row in it.
    pub fn shard_of(&self, index: u64) -> (&str, u64) {
        let (chunk, row) = self.locate(index);
        let shard = self.chunk_shard[chunk];
        let first = self.shard_starts[shard];
        (
            &self.manifest.shards[shard].file,
            self.starts[chunk] + row as u64 - first,
        )
    }

    /// Byte offset, in its shard file, of the record batch holding example `index` (from
    /// the manifest).
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn batch_offset(&self, index: u64) -> Option<u64> {
        let (chunk, _) = self.locate(index);
        let shard = self.chunk_shard[chunk];
        let first_chunk = self.chunk_shard.partition_point(|&s| s < shard);
        self.manifest.shards[shard]
            .batch_offsets
            .get(chunk - first_chunk)
            .copied()
    }

    /// The record batches of all shards, in order (zero-copy views of the maps).
    pub fn record_batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    fn locate(&self, index: u64) -> (usize, usize) {
        assert!(index < self.len(), "example {index} of {}", self.len());
        let chunk = self.starts.partition_point(|&s| s <= index) - 1;
        (chunk, (index - self.starts[chunk]) as usize)
    }
}

/// Map a shard after checking that it exists and has the size the manifest says.
fn map_shard(path: &Path, record: &ShardRecord) -> Result<Buffer> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::shard(path, "missing (listed in the manifest)"),
        _ => Error::io(path, e),
    })?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len != record.bytes {
        return Err(Error::shard(
            path,
            format!(
                "{len} bytes, the manifest says {} (truncated or replaced?)",
                record.bytes
            ),
        ));
    }
    if len == 0 {
        return Err(Error::shard(path, "empty file"));
    }
    // SAFETY: shards are immutable once listed in a complete manifest: `prepare` writes
    // them under a temporary name and renames them, and nothing in cocolm writes to a
    // listed shard again. Modifying a shard while it is mapped is outside the contract
    // (like modifying any memory-mapped file), and the size check above plus the
    // decoder's validation guard against files replaced before opening.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let ptr = NonNull::new(map.as_ptr() as *mut u8).expect("a non-empty map has a pointer");
    // SAFETY: `ptr` and `len` describe the mapping, which the `Arc` keeps alive for as
    // long as any buffer sliced from it.
    Ok(unsafe { Buffer::from_custom_allocation(ptr, map.len(), Arc::new(map)) })
}

/// Decode a whole shard stream held in `bytes`, zero-copy, and check it against its
/// manifest record. No I/O: `path` only names the shard in errors.
pub fn decode_shard(
    path: &Path,
    mut bytes: Buffer,
    record: &ShardRecord,
) -> Result<Vec<RecordBatch>> {
    let total = bytes.len() as u64;
    let mut decoder = StreamDecoder::new().with_require_alignment(true);
    let mut batches = Vec::new();
    while !bytes.is_empty() {
        let before = total - bytes.len() as u64;
        let decoded = decoder
            .decode(&mut bytes)
            .map_err(|e| Error::shard_at(path, before, e.to_string()))?;
        if let Some(batch) = decoded {
            let k = batches.len();
            if k > 0 && record.batch_offsets.get(k) != Some(&before) {
                return Err(Error::shard_at(
                    path,
                    before,
                    format!(
                        "record batch {k} starts here, the manifest says {:?}",
                        record.batch_offsets.get(k)
                    ),
                ));
            }
            batches.push(batch);
        }
    }
    decoder
        .finish()
        .map_err(|e| Error::shard_at(path, total, format!("stream ends early: {e}")))?;
    if let Some(found) = decoder.schema()
        && found.fields() != schema().fields()
    {
        // The schema is the stream's first message.
        return Err(Error::shard_at(
            path,
            0,
            format!("unexpected schema {found:?}"),
        ));
    }
    let rows: Vec<u64> = batches.iter().map(|b| b.num_rows() as u64).collect();
    if rows != record.batch_rows {
        return Err(Error::shard(
            path,
            format!(
                "record batch rows {rows:?} differ from the manifest's {:?}",
                record.batch_rows
            ),
        ));
    }
    Ok(batches)
}

/// The buffers of one record batch, which starts at byte `offset` of `path` (for errors).
fn chunk_of(path: &Path, offset: Option<u64>, batch: &RecordBatch) -> Result<Chunk> {
    let bad = |message: String| Error::Shard {
        path: path.to_path_buf(),
        offset,
        message,
    };
    let ids = batch
        .column_by_name(IDS_COLUMN)
        .and_then(|c| c.as_list_opt::<i32>())
        .ok_or_else(|| bad(format!("no list column {IDS_COLUMN:?}")))?;
    let values = ids
        .values()
        .as_primitive_opt::<UInt32Type>()
        .ok_or_else(|| bad("ids are not UInt32".into()))?;
    if ids.null_count() > 0 || values.null_count() > 0 {
        return Err(bad("null ids".into()));
    }
    let documents = batch
        .column_by_name(DOCUMENT_COLUMN)
        .and_then(|c| c.as_primitive_opt::<arrow::datatypes::UInt64Type>())
        .ok_or_else(|| bad(format!("no UInt64 column {DOCUMENT_COLUMN:?}")))?;
    Ok(Chunk {
        offsets: ids.offsets().clone(),
        values: values.values().clone(),
        documents: documents.values().clone(),
    })
}
