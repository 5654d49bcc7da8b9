//! A shard's SHA-256, computed on a thread of its own from the file as written.
//!
//! Every byte of a `prepare` job passes through one packer thread; hashing there made
//! the shard's SHA-256 (1.6 GB/s with SHA-NI on the VM of BENCHMARKS.md) more than half
//! of that thread's work, and so the ceiling of one job on a host with many cores. A
//! [`BackgroundDigest`] reads back what the packer has written (from the page cache,
//! through a descriptor of its own) and hashes it while the packer goes on.

use super::background::Background;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::AtomicU64;

/// Bytes read back at a time.
const READ_BLOCK: usize = 1 << 20;

/// A thread hashing one file as it grows; see the module docs.
pub(super) struct BackgroundDigest {
    thread: Background<u64, Hashed>,
}

/// What the thread hashed: the state, how many bytes, and its own CPU time.
struct Hashed {
    hasher: Sha256,
    bytes: u64,
    cpu_ns: u64,
}

/// A finished digest.
pub(super) struct FileDigest {
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// CPU time the hashing thread used, in nanoseconds (0 where not known).
    pub cpu_ns: u64,
}

impl BackgroundDigest {
    /// A hashing thread for the file at `path`, opened for reading here.
    pub(super) fn start(path: &Path) -> io::Result<Self> {
        let mut file = File::open(path)?;
        // A few lengths in flight; a later one covers an earlier one that did not fit.
        let thread = Background::start("cocolm-digest", 4, move |queue| {
            let cpu_ns = AtomicU64::new(0);
            let (hasher, bytes) = crate::cpu::charge(&cpu_ns, || {
                let mut hasher = Sha256::new();
                let mut bytes = 0u64;
                let mut block = vec![0u8; READ_BLOCK];
                for upto in queue {
                    while bytes < upto {
                        let n = (upto - bytes).min(READ_BLOCK as u64) as usize;
                        file.read_exact(&mut block[..n])?;
                        hasher.update(&block[..n]);
                        bytes += n as u64;
                    }
                }
                io::Result::Ok((hasher, bytes))
            })?;
            Ok(Hashed {
                hasher,
                bytes,
                cpu_ns: cpu_ns.into_inner(),
            })
        })?;
        Ok(BackgroundDigest { thread })
    }

    /// The file holds at least `len` bytes: hash up to there, in the background.
    pub(super) fn written(&mut self, len: u64) {
        self.thread.request(len);
    }

    /// The SHA-256 of the whole file, which holds `len` bytes and no more.
    pub(super) fn finish(self, len: u64) -> io::Result<FileDigest> {
        let hashed = self.thread.finish(Some(len))?;
        if hashed.bytes != len {
            return Err(io::Error::other(format!(
                "hashed {} bytes of a {len}-byte file",
                hashed.bytes
            )));
        }
        Ok(FileDigest {
            sha256: format!("{:x}", hashed.hasher.finalize()),
            cpu_ns: hashed.cpu_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The digest of a file hashed while written equals its SHA-256 read at the end.
    #[test]
    fn hashes_the_file_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        let mut digest = BackgroundDigest::start(&path).unwrap();
        let mut len = 0u64;
        for i in 0..40u32 {
            // Blocks of uneven sizes, some larger than the read block.
            let block: Vec<u8> = (0..(i as usize * 77_777 % 1_500_001))
                .map(|j| (j as u32 ^ i) as u8)
                .collect();
            file.write_all(&block).unwrap();
            len += block.len() as u64;
            digest.written(len);
        }
        drop(file);
        let got = digest.finish(len).unwrap();
        let want = cocolm_shared::hash::sha256_hex(&std::fs::read(&path).unwrap());
        assert_eq!(got.sha256, want);
    }

    /// A file shorter than it was said to be is an error, not a digest of less.
    #[test]
    fn a_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let digest = BackgroundDigest::start(&path).unwrap();
        let error = digest.finish(10).err().expect("5 bytes, 10 asked");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
    }
}
