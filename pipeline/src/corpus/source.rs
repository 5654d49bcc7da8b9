//! Byte sources under the readers: a file or an object, optionally zstd-decompressed,
//! that counts what it reads and tells decoding errors apart from read errors.

use super::InputFile;
use crate::Result;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Counters shared by every reader of a job: bytes read from disk and where the time
/// went. Updated with relaxed atomics; read by progress bars and benchmarks.
#[derive(Debug, Default)]
pub struct ReadStats {
    /// Bytes read from disk or the network (compressed bytes for `.zst`).
    pub disk_bytes: AtomicU64,
    /// Nanoseconds spent in file-system reads or waiting for the network.
    pub read_ns: AtomicU64,
    /// Nanoseconds spent decompressing (time in the decoder minus its file reads).
    pub decompress_ns: AtomicU64,
}

/// A file or object stream that counts its bytes and time, and remembers whether a
/// read failed.
struct Tracked {
    inner: Box<dyn Read + Send>,
    stats: Arc<ReadStats>,
    failed: Arc<AtomicBool>,
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let start = Instant::now();
        let result = self.inner.read(buf);
        self.stats
            .read_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match &result {
            Ok(n) => {
                self.stats
                    .disk_bytes
                    .fetch_add(*n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                self.failed.store(true, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        result
    }
}

/// A zstd decoder that books its time, less the file reads inside it, as decompression.
struct TimedDecoder<R: Read> {
    inner: R,
    stats: Arc<ReadStats>,
}

impl<R: Read> Read for TimedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read_before = self.stats.read_ns.load(Ordering::Relaxed);
        let start = Instant::now();
        let result = self.inner.read(buf);
        let total = start.elapsed().as_nanos() as u64;
        let reading = self.stats.read_ns.load(Ordering::Relaxed) - read_before;
        self.stats
            .decompress_ns
            .fetch_add(total.saturating_sub(reading), Ordering::Relaxed);
        result
    }
}

/// A buffered byte stream over one input file.
pub struct Source {
    reader: Box<dyn BufRead + Send>,
    input: InputFile,
    failed: Arc<AtomicBool>,
    compressed: bool,
}

/// What went wrong reading a [`Source`].
pub enum ReadFailure {
    /// The compressed data is truncated or corrupt (a property of the content).
    Corrupt(String),
    /// The file system or the network failed (stops the job).
    Fatal(crate::Error),
}

impl Source {
    /// Open `input`, decompressing zstd when `zstd` is set.
    pub fn open(input: &InputFile, zstd: bool, stats: Arc<ReadStats>) -> Result<Self> {
        let inner = input.open_bytes()?;
        let failed = Arc::new(AtomicBool::new(false));
        let tracked = Tracked {
            inner,
            stats: stats.clone(),
            failed: failed.clone(),
        };
        let reader: Box<dyn BufRead + Send> = if zstd {
            let decoder =
                zstd::stream::read::Decoder::new(tracked).map_err(|e| input.read_error(e))?;
            Box::new(BufReader::with_capacity(
                1 << 20,
                TimedDecoder {
                    inner: decoder,
                    stats,
                },
            ))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, tracked))
        };
        Ok(Source {
            reader,
            input: input.clone(),
            failed,
            compressed: zstd,
        })
    }

    /// Classify an I/O error from the stream.
    pub fn failure(&self, e: io::Error) -> ReadFailure {
        if self.compressed && !self.failed.load(Ordering::Relaxed) {
            ReadFailure::Corrupt(format!("zstd: {e}"))
        } else {
            ReadFailure::Fatal(self.input.read_error(e))
        }
    }

    /// Read the rest of the stream, keeping at most `cap` bytes in `buf`. Returns the
    /// total length of the rest (which exceeds `cap` when the content was too large).
    pub fn read_to_end_capped(&mut self, buf: &mut Vec<u8>, cap: u64) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(total);
            }
            let n = chunk.len();
            let room = cap.saturating_sub(total).min(n as u64) as usize;
            buf.extend_from_slice(&chunk[..room]);
            total += n as u64;
            self.reader.consume(n);
        }
    }

    /// Read the next line into `buf` (cleared first; the `\n` or `\r\n` is not kept),
    /// keeping at most `cap` bytes. Returns `None` at the end of the stream, otherwise
    /// the full length of the line, which exceeds `cap` when the line was too long.
    pub fn read_line_capped(&mut self, buf: &mut Vec<u8>, cap: u64) -> io::Result<Option<u64>> {
        buf.clear();
        let mut total = 0u64;
        let mut any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let room = cap.saturating_sub(total).min(take as u64) as usize;
            buf.extend_from_slice(&chunk[..room]);
            total += take as u64;
            self.reader.consume(take + usize::from(done));
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        if total <= cap && buf.last() == Some(&b'\r') {
            buf.pop();
            total -= 1;
        }
        Ok(Some(total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn source_of(bytes: &[u8], zstd: bool) -> (tempfile::NamedTempFile, Source) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let input = InputFile::local(f.path().to_path_buf(), bytes.len() as u64);
        let s = Source::open(&input, zstd, Arc::default()).unwrap();
        (f, s)
    }

    #[test]
    fn lines_strip_crlf_and_cap() {
        let (_f, mut s) = source_of(b"ab\r\ncdefgh\n\nlast", false);
        let mut buf = Vec::new();
        assert_eq!(s.read_line_capped(&mut buf, 4).unwrap(), Some(2));
        assert_eq!(buf, b"ab");
        assert_eq!(s.read_line_capped(&mut buf, 4).unwrap(), Some(6));
        assert_eq!(buf, b"cdef");
        assert_eq!(s.read_line_capped(&mut buf, 4).unwrap(), Some(0));
        assert_eq!(s.read_line_capped(&mut buf, 4).unwrap(), Some(4));
        assert_eq!(buf, b"last");
        assert_eq!(s.read_line_capped(&mut buf, 4).unwrap(), None);
    }

    #[test]
    fn truncated_zstd_is_corrupt_not_fatal() {
        let data = zstd::encode_all(&vec![b'x'; 100_000][..], 3).unwrap();
        let (_f, mut s) = source_of(&data[..data.len() / 2], true);
        let mut buf = Vec::new();
        let err = s.read_to_end_capped(&mut buf, u64::MAX).unwrap_err();
        assert!(matches!(s.failure(err), ReadFailure::Corrupt(_)));
    }
}
