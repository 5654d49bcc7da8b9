//! `cocolm prepare`: raw corpus → tokenized, packed, checksummed Arrow shards.
//!
//! Threads: one reader walks the inputs in order and cuts their documents into chunks;
//! `threads` workers tokenize chunks; the calling thread puts results back in input
//! order, packs them ([`crate::pack`]) and writes shards ([`crate::shard::writer`]).
//! The output is therefore byte-identical whatever the thread count. A panic in the
//! reader or a worker ends the job with [`Error::WorkerPanicked`] (`worker.rs`).
//!
//! Resumability: after every completed shard the manifest is replaced atomically with
//! the shards so far, the accounting of every input up to the first token not yet in a
//! shard, and that position ([`ResumePoint`]). Re-running the same command after an
//! interruption (even `kill -9`) re-reads from that position and finishes with output
//! identical to an uninterrupted run. See [`output`] for what is accepted in `--out`.

pub mod accounting;
pub mod append_log;
pub mod dedup;
pub mod near;
pub mod output;
pub mod part;

use crate::corpus::{self, Content, InputFile, ReadOptions, ReadStats, Reject, Stores};
use crate::cpu;
use crate::pack::Packer;
use crate::shard::writer::ShardWriter;
use crate::worker::{catch_panic, join_worker, report_panic};
use crate::{Error, Result};
use accounting::{Accounting, InputLogWriter};
use cocolm_shared::manifest::{
    Dedup, FORMAT_NAME, FORMAT_VERSION, PrepareOptionsRecord, ResumePoint, Totals,
};
use cocolm_shared::{DirLock, Manifest, ManifestState, Stop, TokenizerRecord};
use crossbeam_channel::{Receiver, Sender, bounded};
use dedup::{Origin, Seen};
use part::Part;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Turns a document's text into token ids. Implemented by the tokenizer's encoder;
/// shared by all worker threads.
pub trait Encode: Send + Sync {
    /// Append the ids of `text` (no special tokens added) to `out`.
    fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()>;
}

impl Encode for crate::tokenizer::Encoder {
    fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        Ok(crate::tokenizer::Encoder::encode_into(self, text, out)?)
    }
}

/// Bytes of text per work chunk handed to a tokenizer worker.
const CHUNK_BYTES: usize = 256 << 10;
/// Documents per work chunk, at most.
const CHUNK_DOCS: usize = 256;
/// Chunks each queue (reader → workers, workers → packer) holds per worker: enough
/// (2 MiB of text per worker) that a reader or packer off the CPU for a few
/// milliseconds — a time slice, a shard commit — does not leave the workers idle. Two
/// per worker left the floor benchmark at 363–391 ms, eight gives 339–382.
const QUEUED_CHUNKS_PER_WORKER: usize = 8;
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What `prepare` does.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Input files and directories, or URLs of objects and prefixes, in order.
    pub inputs: Vec<PathBuf>,
    /// The object stores that URL inputs are read from.
    pub stores: Stores,
    /// Output directory.
    pub out: PathBuf,
    /// Tokens per example, `[CLS]` and `[SEP]` included.
    pub seq_len: usize,
    /// How documents are read.
    pub read: ReadOptions,
    /// Tokenizer worker threads (at least 1).
    pub threads: usize,
    /// Target size of a shard in bytes (rounded to whole examples).
    pub shard_bytes: u64,
    /// Examples per Arrow record batch.
    pub rows_per_batch: u64,
    /// Fail on the first document rejected as bad input (duplicates dropped by
    /// `dedup` are counted, not fatal).
    pub strict: bool,
    /// Which duplicate documents are dropped ([`dedup`]).
    pub dedup: Dedup,
    /// Prepare only this part of the inputs ([`part`]); `None`: all of them.
    pub part: Option<Part>,
    /// Stop early when requested: the job then ends with [`Error::Interrupted`], having
    /// committed only complete shards (the same job resumes from them).
    pub stop: Stop,
}

impl PrepareOptions {
    /// Options with the defaults of the command line for `inputs` → `out`.
    pub fn new(inputs: Vec<PathBuf>, out: PathBuf) -> Self {
        PrepareOptions {
            inputs,
            stores: Stores::default(),
            out,
            seq_len: 512,
            read: ReadOptions::default(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shard_bytes: 256 << 20,
            rows_per_batch: 1024,
            strict: false,
            dedup: Dedup::None,
            part: None,
            stop: Stop::new(),
        }
    }

    fn record(&self) -> PrepareOptionsRecord {
        let example_bytes = self.seq_len as u64 * 4 + 16;
        let rows_per_shard = (self.shard_bytes / example_bytes).max(1);
        PrepareOptionsRecord {
            text_field: self.read.text_field.clone(),
            split_blank_lines: self.read.split_blank_lines,
            max_doc_bytes: self.read.max_doc_bytes,
            rows_per_shard,
            rows_per_batch: self.rows_per_batch.clamp(1, rows_per_shard),
            dedup: self.dedup,
        }
    }
}

/// The tokenizer as the job records it: its manifest entry and the JSON to copy beside
/// the shards (`tokenizer.json`), so a shard directory is self-contained.
#[derive(Debug, Clone)]
pub struct TokenizerArtifact {
    /// The manifest's tokenizer entry.
    pub record: TokenizerRecord,
    /// The tokenizer JSON (special tokens included).
    pub json: Vec<u8>,
}

/// A progress snapshot, reported about every 100 ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Bytes read from disk so far (this run).
    pub bytes_read: u64,
    /// Bytes of all inputs on disk still to read at the start of this run.
    pub bytes_total: u64,
    /// Documents read (accepted + rejected), all runs.
    pub documents: u64,
    /// Tokens in completed examples, all runs.
    pub tokens: u64,
    /// Examples written, all runs.
    pub examples: u64,
}

/// Where the time of a run went (nanoseconds; worker times are summed over workers).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timings {
    /// Wall time of the run.
    pub wall_ns: u64,
    /// File-system reads.
    pub read_ns: u64,
    /// zstd / Parquet decoding.
    pub decompress_ns: u64,
    /// Splitting documents and parsing JSON (reader thread, less reads and decoding).
    pub parse_ns: u64,
    /// Tokenization, summed over workers.
    pub encode_ns: u64,
    /// Reordering, accounting and packing (writing excluded).
    pub pack_ns: u64,
    /// Building record batches, writing and syncing shards (and waiting for their
    /// hashes) and manifests.
    pub write_ns: u64,
    /// Time the packing thread waited for tokenized chunks.
    pub wait_ns: u64,
    /// CPU time of the tokenizer threads, summed (the times above are wall times, which
    /// also count a thread descheduled; these three are 0 where the platform does not
    /// tell, see [`crate::cpu::thread_ns`]).
    pub encode_cpu_ns: u64,
    /// CPU time of the reader thread.
    pub read_cpu_ns: u64,
    /// CPU time of the calling thread: reordering, accounting, packing, writing.
    pub pack_cpu_ns: u64,
    /// CPU time of the threads hashing the shards (one per shard, one after another).
    pub digest_cpu_ns: u64,
}

impl Timings {
    /// The single-threaded stage (`"reader"`, `"packer"`, or `"digest"`: the shards are
    /// hashed one after another) that was on the CPU for at least [`BOUND_FRACTION`] of a
    /// run of a second or more, and that fraction: such a run was bound by that thread,
    /// not by tokenization, and more `--threads` would not have sped it up (parts side by
    /// side would: each has its own).
    pub fn bound_by_one_thread(&self) -> Option<(&'static str, f64)> {
        if self.wall_ns < 1_000_000_000 {
            return None;
        }
        [
            ("reader", self.read_cpu_ns),
            ("packer", self.pack_cpu_ns),
            ("digest", self.digest_cpu_ns),
        ]
        .into_iter()
        .map(|(stage, cpu)| (stage, cpu as f64 / self.wall_ns as f64))
        .filter(|&(_, busy)| busy >= BOUND_FRACTION)
        .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// How much of a run a single thread must have been on the CPU for
/// [`Timings::bound_by_one_thread`] to name it.
pub const BOUND_FRACTION: f64 = 0.8;

/// The outcome of [`prepare`].
#[derive(Debug, Clone)]
pub struct PrepareReport {
    /// The final manifest.
    pub manifest: Manifest,
    /// The job continued an interrupted one.
    pub resumed: bool,
    /// The output was already complete; nothing was done.
    pub already_complete: bool,
    /// Files under input directories (or prefixes) skipped for an unknown format.
    pub skipped_files: Vec<String>,
    /// Input bytes read in this run.
    pub bytes_read: u64,
    /// Where the time went.
    pub timings: Timings,
}

/// One document on its way from the reader to the packer.
struct Item {
    input: usize,
    ordinal: u64,
    global: u64,
    location: Option<corpus::Location>,
    content: Content,
}

/// A document after tokenization.
struct Processed {
    input: usize,
    ordinal: u64,
    global: u64,
    location: Option<corpus::Location>,
    outcome: Outcome,
}

enum Outcome {
    /// Where the document's ids lie in its chunk's [`Tokenized::ids`], and its
    /// duplicate-detection keys.
    Tokens {
        ids: Range<usize>,
        keys: Keys,
    },
    Rejected {
        reason: Reject,
        detail: String,
    },
}

/// What identifies a document for `--dedup`: nothing, its [`dedup::fingerprint`], or
/// its [`near::band_keys`]. A document is a duplicate when one of its keys was recorded
/// for an earlier document.
enum Keys {
    None,
    Exact(u128),
    Near(Box<[u128; near::BANDS]>),
}

impl Keys {
    fn of(text: &str, dedup: Dedup) -> Keys {
        match dedup {
            Dedup::None => Keys::None,
            Dedup::Exact => Keys::Exact(dedup::fingerprint(text)),
            Dedup::Near => Keys::Near(Box::new(near::band_keys(text))),
        }
    }

    fn as_slice(&self) -> &[u128] {
        match self {
            Keys::None => &[],
            Keys::Exact(fingerprint) => std::slice::from_ref(fingerprint),
            Keys::Near(keys) => &keys[..],
        }
    }
}

/// Run (or resume, or confirm) the preparation of `options.out`.
///
/// The job holds the folder's [`DirLock`] while it runs: a second job on the same
/// `out` is refused with [`cocolm_shared::Error::Locked`], naming the holder.
pub fn prepare(
    options: &PrepareOptions,
    tokenizer: &TokenizerArtifact,
    encoder: Arc<dyn Encode>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<PrepareReport> {
    let started = Instant::now();
    if options.seq_len < 3 {
        return Err(Error::Output {
            path: options.out.clone(),
            message: format!(
                "seq_len {} leaves no room for [CLS], a token and [SEP] (at least 3)",
                options.seq_len
            ),
        });
    }
    let (files, skipped_files) = corpus::discover(&options.inputs, &options.stores)?;
    let inputs = accounting::input_records(&files);
    let (files, inputs, part) = match options.part {
        None => (files, inputs, None),
        Some(part) => {
            let range = part.select(&inputs);
            let record = part.record(&inputs);
            (
                files[range.clone()].to_vec(),
                inputs[range].to_vec(),
                Some(record),
            )
        }
    };
    let record = options.record();
    let _lock = DirLock::acquire(&options.out)?;
    let plan = output::plan(
        &options.out,
        options.seq_len,
        &tokenizer.record,
        &record,
        &inputs,
        part.as_ref(),
    )?;
    let (mut manifest, resume, resumed, (seen, log, logged), opening) = match plan {
        output::Plan::Complete(manifest) => {
            return Ok(PrepareReport {
                manifest,
                resumed: false,
                already_complete: true,
                skipped_files,
                bytes_read: 0,
                timings: Timings::default(),
            });
        }
        output::Plan::Resume {
            mut manifest,
            resume,
        } => {
            let seen = match options.dedup {
                Dedup::None => None,
                Dedup::Exact | Dedup::Near => {
                    Some(Seen::resume(&options.out, resume.dedup_entries)?)
                }
            };
            // With an input log, the manifest lists the inputs up to the resume point's
            // (plan checked the rest of the list by its hash).
            let (committed, logged) = match manifest.input_log.take() {
                Some(log) => (log.committed_bytes, resume.input as usize),
                None => (0, 0),
            };
            let mut all = inputs;
            let known = manifest.inputs.len();
            all[..known].clone_from_slice(&manifest.inputs);
            manifest.inputs = all;
            let log = InputLogWriter::open(&options.out, committed)?;
            (manifest, resume, true, (seen, log, logged), None)
        }
        output::Plan::Fresh => {
            // Before the first manifest: a manifest never refers to a missing side file.
            let seen = match options.dedup {
                Dedup::None => None,
                Dedup::Exact | Dedup::Near => Some(Seen::create(&options.out)?),
            };
            let log = InputLogWriter::open(&options.out, 0)?;
            let manifest = Manifest {
                format: FORMAT_NAME.into(),
                format_version: FORMAT_VERSION,
                created_by: concat!("cocolm ", env!("CARGO_PKG_VERSION")).into(),
                state: ManifestState::Partial(ResumePoint::START),
                seq_len: options.seq_len,
                tokenizer: tokenizer.record.clone(),
                options: record.clone(),
                shards: Vec::new(),
                inputs,
                totals: Totals::default(),
                part,
                input_log: None,
            };
            let opening = Opening {
                tokenizer: &tokenizer.json,
                manifest: manifest.to_json(),
            };
            (
                manifest,
                ResumePoint::START,
                false,
                (seen, log, 0),
                Some(opening),
            )
        }
    };
    let stats = Arc::new(ReadStats::default());
    // `resume.input` is below `inputs.len()` in a manifest that was read (checked there).
    let bytes_total: u64 = manifest
        .inputs
        .iter()
        .skip(resume.input as usize)
        .map(|i| i.bytes)
        .sum();
    let mut job = Job {
        options,
        files: &files,
        encoder,
        stats: stats.clone(),
        timings: Timings::default(),
        stages: StageTimes::default(),
        bytes_total,
    };
    job.run(
        &mut manifest,
        resume,
        seen,
        (log, logged),
        opening,
        progress,
    )?;
    let mut timings = job.timings;
    timings.wall_ns = started.elapsed().as_nanos() as u64;
    timings.read_ns = stats.read_ns.load(Ordering::Relaxed);
    timings.decompress_ns = stats.decompress_ns.load(Ordering::Relaxed);
    job.stages.fill(&mut timings);
    Ok(PrepareReport {
        manifest,
        resumed,
        already_complete: false,
        skipped_files,
        bytes_read: stats.disk_bytes.load(Ordering::Relaxed),
        timings,
    })
}

/// What a fresh job writes before its first manifest update: the tokenizer copy, then
/// the first manifest. They are written (and fsynced: ~50 ms for the 128K tokenizer's
/// 9 MB) on a thread of their own while tokenizing starts, and the packer waits for them
/// before it updates the manifest, so a manifest still never names a missing tokenizer
/// copy. A job killed in between leaves only files `output::plan` clears on the next run.
struct Opening<'a> {
    tokenizer: &'a [u8],
    manifest: Vec<u8>,
}

impl Opening<'_> {
    fn write(&self, out: &Path) -> Result<()> {
        output::write_tokenizer(out, self.tokenizer)?;
        Manifest::write_json_dir(out, &self.manifest)?;
        Ok(())
    }
}

/// The opening files' thread, while they are being written.
type Opened<'scope> = Option<std::thread::ScopedJoinHandle<'scope, Result<()>>>;

/// Wait for the opening files (nothing to wait for once they are written, or on resume).
fn wait_opened(opened: &mut Opened<'_>) -> Result<()> {
    opened
        .take()
        .map_or(Ok(()), |handle| join_worker(handle, "cocolm-open"))
}

/// What the packer writes besides the shards and the manifest.
struct SideFiles<'scope> {
    /// The table `--dedup` decides by.
    seen: Option<Seen>,
    /// The input log, and how many inputs it holds already.
    log: (InputLogWriter, usize),
    /// A fresh job's opening files, while their thread writes them.
    opened: Opened<'scope>,
}

struct Job<'a> {
    options: &'a PrepareOptions,
    files: &'a [InputFile],
    encoder: Arc<dyn Encode>,
    stats: Arc<ReadStats>,
    timings: Timings,
    stages: StageTimes,
    bytes_total: u64,
}

/// What the job's threads report of their time, in nanoseconds, as they go: wall time
/// in two stages, and each stage's CPU time ([`crate::cpu::charge`]).
#[derive(Default)]
struct StageTimes {
    encode_wall: AtomicU64,
    parse_wall: AtomicU64,
    encode_cpu: AtomicU64,
    read_cpu: AtomicU64,
    pack_cpu: AtomicU64,
}

impl StageTimes {
    /// Copy into the report's timings.
    fn fill(&self, timings: &mut Timings) {
        let get = |t: &AtomicU64| t.load(Ordering::Relaxed);
        timings.encode_ns = get(&self.encode_wall);
        timings.parse_ns = get(&self.parse_wall);
        timings.encode_cpu_ns = get(&self.encode_cpu);
        timings.read_cpu_ns = get(&self.read_cpu);
        timings.pack_cpu_ns = get(&self.pack_cpu);
    }
}

/// A chunk of work: its sequence number, its contents, and whether it is the last.
type Chunk<T> = (u64, T, bool);

/// A chunk of documents after tokenization. The ids of all its documents lie one after
/// another in one vector: a chunk costs one allocation, not one per document (the floor
/// benchmark's packer thread, which frees them, went from 69–89 to 62–65 ms of CPU).
struct Tokenized {
    docs: Vec<Processed>,
    ids: Vec<u32>,
}

impl Job<'_> {
    fn run(
        &mut self,
        manifest: &mut Manifest,
        resume: ResumePoint,
        seen: Option<Seen>,
        log: (InputLogWriter, usize),
        opening: Option<Opening<'_>>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<()> {
        let threads = self.options.threads.max(1);
        let queued = threads * QUEUED_CHUNKS_PER_WORKER;
        let (work_tx, work_rx) = bounded::<Chunk<Vec<Item>>>(queued);
        let (done_tx, done_rx) = bounded::<Result<Chunk<Tokenized>>>(queued);
        let this = &*self;
        let (read, packed) = std::thread::scope(|scope| {
            let opened = opening.map(|opening| {
                std::thread::Builder::new()
                    .name("cocolm-open".into())
                    .spawn_scoped(scope, move || {
                        catch_panic(|| opening.write(&this.options.out))
                    })
                    .expect("spawning the thread writing the opening files")
            });
            let reader = std::thread::Builder::new()
                .name("cocolm-read".into())
                .spawn_scoped(scope, move || {
                    cpu::charge(&this.stages.read_cpu, || {
                        catch_panic(|| this.read_inputs(resume, work_tx))
                    })
                })
                .expect("spawning the reader thread");
            for w in 0..threads {
                let work_rx = work_rx.clone();
                let done_tx = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("cocolm-encode-{w}"))
                    .spawn_scoped(scope, move || {
                        cpu::charge(&this.stages.encode_cpu, || {
                            report_panic(&done_tx, || {
                                tokenize_chunks(
                                    work_rx,
                                    &done_tx,
                                    &*this.encoder,
                                    this.options.dedup,
                                    &this.stages.encode_wall,
                                )
                            })
                        })
                    })
                    .expect("spawning a tokenizer thread");
            }
            drop(work_rx);
            drop(done_tx);
            let side = SideFiles { seen, log, opened };
            let packed = cpu::charge(&this.stages.pack_cpu, || {
                this.pack(manifest, resume, side, done_rx, progress)
            });
            let read = join_worker(reader, "cocolm-read");
            (read, packed)
        });
        // A reader failure is the root cause of whatever the packer saw.
        read?;
        let timings = packed?;
        self.timings = timings;
        Ok(())
    }

    /// The reader thread: every document from the resume point on, in order, in chunks.
    fn read_inputs(&self, resume: ResumePoint, work: Sender<Chunk<Vec<Item>>>) -> Result<()> {
        let started = Instant::now();
        let mut blocked = Duration::ZERO;
        let mut seq = 0u64;
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut global = resume.global_document;
        let mut send = |chunk: Vec<Item>, last: bool, seq: &mut u64| -> bool {
            let t = Instant::now();
            let ok = work.send((*seq, chunk, last)).is_ok();
            blocked += t.elapsed();
            *seq += 1;
            ok
        };
        for (input, file) in self.files.iter().enumerate().skip(resume.input as usize) {
            corpus::prefetch_after(self.files, input);
            let mut reader = corpus::open(file, &self.options.read, self.stats.clone())?;
            let mut ordinal = 0u64;
            while let Some(record) = reader.next_record()? {
                let skip = input == resume.input as usize && ordinal < resume.document;
                if !skip {
                    if let Content::Text(text) = &record.content {
                        chunk_bytes += text.len();
                    }
                    chunk.push(Item {
                        input,
                        ordinal,
                        global,
                        location: record.location,
                        content: record.content,
                    });
                    global += 1;
                    if chunk_bytes >= CHUNK_BYTES || chunk.len() >= CHUNK_DOCS {
                        chunk_bytes = 0;
                        if !send(std::mem::take(&mut chunk), false, &mut seq) {
                            return Ok(());
                        }
                    }
                }
                ordinal += 1;
            }
        }
        send(chunk, true, &mut seq);
        let busy = started.elapsed().saturating_sub(blocked).as_nanos() as u64;
        let io = self.stats.read_ns.load(Ordering::Relaxed)
            + self.stats.decompress_ns.load(Ordering::Relaxed);
        self.stages
            .parse_wall
            .store(busy.saturating_sub(io), Ordering::Relaxed);
        Ok(())
    }

    /// The calling thread: results back in order, duplicates, accounting, packing,
    /// shards, manifest.
    fn pack(
        &self,
        manifest: &mut Manifest,
        resume: ResumePoint,
        side: SideFiles<'_>,
        done: Receiver<Result<Chunk<Tokenized>>>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Timings> {
        let SideFiles {
            mut seen,
            log: (log, logged),
            mut opened,
        } = side;
        let mut timings = Timings::default();
        let special = manifest.tokenizer.special_tokens;
        let mut packer = Packer::new(manifest.seq_len, special.cls, special.sep);
        let mut writer = ShardWriter::new(
            &self.options.out,
            manifest.shards.len(),
            manifest.options.rows_per_shard,
            manifest.options.rows_per_batch as usize,
        );
        let mut accounting = Accounting::new(&manifest.inputs, &manifest.totals, log, logged);
        let mut pending: BTreeMap<u64, (Tokenized, bool)> = BTreeMap::new();
        let mut next = 0u64;
        let mut finished = false;
        let mut last_report = Instant::now();
        let mut examples = manifest.totals.examples;
        let mut tokens = manifest.totals.tokens;
        while !finished {
            let t = Instant::now();
            let Ok(message) = done.recv() else {
                return Err(Error::WorkersEnded { stage: "prepare" });
            };
            timings.wait_ns += t.elapsed().as_nanos() as u64;
            if let Some(signal) = self.options.stop.requested() {
                // The open shard's temporary file goes with the writer; the manifest
                // still describes the shards committed so far.
                return Err(Error::Interrupted {
                    out: self.options.out.clone(),
                    signal,
                    shards: manifest.shards.len(),
                });
            }
            let (seq, chunk, last) = message?;
            pending.insert(seq, (chunk, last));
            while let Some((chunk, last)) = pending.remove(&next) {
                next += 1;
                finished |= last;
                for item in chunk.docs {
                    accounting.finish_before(item.input)?;
                    match item.outcome {
                        Outcome::Rejected { reason, detail } => {
                            let detail = rejection_detail(item.location, reason, &detail);
                            if self.options.strict {
                                return Err(Error::Strict {
                                    input: self.files[item.input].name.clone(),
                                    detail,
                                });
                            }
                            accounting.reject(item.input, reason, detail);
                        }
                        Outcome::Tokens { ids, keys } => {
                            let ids = &chunk.ids[ids];
                            let keys = keys.as_slice();
                            let first_seen = seen
                                .as_ref()
                                .and_then(|seen| keys.iter().find_map(|&k| seen.first_seen(k)));
                            if let Some(origin) = first_seen {
                                let detail = self.duplicate_detail(item.location, origin);
                                accounting.reject(item.input, Reject::Duplicate, detail);
                                continue;
                            }
                            let skip = if item.global == resume.global_document {
                                resume.token_offset
                            } else {
                                0
                            };
                            let first = accounting.totals().documents_accepted == 0;
                            let mut write_ns = 0u64;
                            let pack_start = Instant::now();
                            packer.push_document(item.global, ids, first, skip, |example| {
                                let w = Instant::now();
                                let completed = writer.push(example.ids, example.first_document)?;
                                examples += 1;
                                tokens += example.ids.len() as u64;
                                if let Some(shard) = completed {
                                    manifest.shards.push(shard);
                                    let resume = ResumePoint {
                                        input: item.input as u64,
                                        document: item.ordinal,
                                        token_offset: example.consumed,
                                        global_document: item.global,
                                        // This document is recorded after it is packed.
                                        dedup_entries: match &mut seen {
                                            Some(seen) => seen.sync()?,
                                            None => 0,
                                        },
                                    };
                                    wait_opened(&mut opened)?;
                                    accounting.write_partial(
                                        manifest,
                                        resume,
                                        &self.options.out,
                                    )?;
                                }
                                write_ns += w.elapsed().as_nanos() as u64;
                                Ok::<(), Error>(())
                            })?;
                            timings.write_ns += write_ns;
                            timings.pack_ns +=
                                (pack_start.elapsed().as_nanos() as u64).saturating_sub(write_ns);
                            accounting.accept(item.input, ids.len() as u64);
                            if let Some(seen) = &mut seen {
                                let origin = Origin::new(item.input, item.location);
                                for &key in keys {
                                    seen.insert(key, origin)?;
                                }
                            }
                        }
                    }
                }
                if last_report.elapsed() >= PROGRESS_EVERY {
                    last_report = Instant::now();
                    progress(&Progress {
                        bytes_read: self.stats.disk_bytes.load(Ordering::Relaxed),
                        bytes_total: self.bytes_total,
                        documents: accounting.totals().documents_read,
                        tokens,
                        examples,
                    });
                }
            }
        }
        let w = Instant::now();
        // The last example may itself complete a shard; `finish` then has nothing left.
        packer.finish(|example| {
            if let Some(shard) = writer.push(example.ids, example.first_document)? {
                manifest.shards.push(shard);
            }
            Ok::<(), Error>(())
        })?;
        if let Some(shard) = writer.finish()? {
            manifest.shards.push(shard);
        }
        timings.digest_cpu_ns = writer.digest_cpu_ns();
        if let Some(seen) = &mut seen {
            seen.sync()?;
        }
        manifest.state = ManifestState::Complete;
        accounting.write_into(manifest);
        wait_opened(&mut opened)?;
        manifest.write_dir(&self.options.out)?;
        accounting.remove_log()?;
        timings.write_ns += w.elapsed().as_nanos() as u64;
        progress(&Progress {
            bytes_read: self.stats.disk_bytes.load(Ordering::Relaxed),
            bytes_total: self.bytes_total,
            documents: manifest.totals.documents_read,
            tokens: manifest.totals.tokens,
            examples: manifest.totals.examples,
        });
        Ok(timings)
    }
}

impl Job<'_> {
    /// `line 9: duplicate: same text as PATH line 2` (`similar text to` under `--dedup
    /// near`): a duplicate and the document it repeats.
    fn duplicate_detail(&self, location: Option<corpus::Location>, origin: Origin) -> String {
        let path = &self.files[origin.input as usize].name;
        let relation = dedup::relation(self.options.dedup);
        let first = match origin.location() {
            Some(location) => format!("{relation} {path} {location}"),
            None => format!("{relation} {path}"),
        };
        rejection_detail(location, Reject::Duplicate, &first)
    }
}

/// `LOCATION: REASON: DETAIL`, the form of a manifest's rejection examples.
fn rejection_detail(location: Option<corpus::Location>, reason: Reject, detail: &str) -> String {
    let where_ = location.map(|l| format!("{l}: ")).unwrap_or_default();
    format!("{where_}{reason}: {detail}")
}

/// A tokenizer worker: chunks of documents in, chunks of ids (or rejections) out, with
/// the keys `--dedup` decides by.
fn tokenize_chunks(
    work: Receiver<Chunk<Vec<Item>>>,
    done: &Sender<Result<Chunk<Tokenized>>>,
    encoder: &dyn Encode,
    dedup: Dedup,
    encode_ns: &AtomicU64,
) {
    for (seq, items, last) in work {
        let start = Instant::now();
        let text_bytes: usize = items
            .iter()
            .map(|item| match &item.content {
                Content::Text(text) => text.len(),
                Content::Rejected { .. } => 0,
            })
            .sum();
        let mut ids = Vec::with_capacity(text_bytes / 3 + 1);
        let docs: Result<Vec<Processed>> = items
            .into_iter()
            .map(|item| {
                let outcome = match item.content {
                    Content::Rejected { reason, detail } => Outcome::Rejected { reason, detail },
                    Content::Text(text) => {
                        let from = ids.len();
                        encoder.encode_into(&text, &mut ids)?;
                        if ids.len() == from {
                            Outcome::Rejected {
                                reason: Reject::Empty,
                                detail: "no tokens".into(),
                            }
                        } else {
                            let keys = Keys::of(&text, dedup);
                            Outcome::Tokens {
                                ids: from..ids.len(),
                                keys,
                            }
                        }
                    }
                };
                Ok(Processed {
                    input: item.input,
                    ordinal: item.ordinal,
                    global: item.global,
                    location: item.location,
                    outcome,
                })
            })
            .collect();
        encode_ns.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let chunk = docs.map(|docs| (seq, Tokenized { docs, ids }, last));
        if done.send(chunk).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
