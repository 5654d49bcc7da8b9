//! Checksums of a checkpoint's files, recorded in its `state.json` and verified on resume.
//!
//! SHA-256, for two reasons: anyone can check a file by hand with `sha256sum` against
//! `state.json`, and with the SHA extensions of current x86 and Arm CPUs (which the `sha2`
//! crate detects at run time) it hashes at 2.2 GB/s (measured on a 2-core EPYC, see
//! BENCHMARKS.md), so a base-size checkpoint (1.3 GB of weights and moments) costs about
//! 0.6 s on top of writing and fsyncing it, and as much to verify. The
//! files are hashed as read back from the file system after every rank wrote its own,
//! so the record describes what is on disk, whoever wrote it.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Size and SHA-256 of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// Length in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

/// Digests of the files of `dir` except `skip` (the state file), by name.
pub fn digest_dir(dir: &Path, skip: &str) -> Result<BTreeMap<String, FileDigest>> {
    let mut digests = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == skip {
            continue;
        }
        digests.insert(name, digest_file(&entry.path())?);
    }
    Ok(digests)
}

fn digest_file(path: &Path) -> Result<FileDigest> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let sha256 = cocolm_shared::hash::sha256_file(path).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(FileDigest { bytes, sha256 })
}

/// Check the files of `dir` against `expected`: each present, of its size, with its
/// SHA-256. Returns what is wrong with the first file that fails, or `None`.
pub fn damage(dir: &Path, expected: &BTreeMap<String, FileDigest>) -> Option<String> {
    for (name, want) in expected {
        let path = dir.join(name);
        let bytes = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) => return Some(format!("{name}: {e}")),
        };
        if bytes != want.bytes {
            return Some(format!(
                "{name}: {bytes} bytes where state.json records {} (truncated or overwritten)",
                want.bytes
            ));
        }
        match cocolm_shared::hash::sha256_file(&path) {
            Ok(sha) if sha == want.sha256 => {}
            Ok(_) => {
                return Some(format!(
                    "{name}: SHA-256 differs from the one state.json records (the file was damaged after it was written)"
                ));
            }
            Err(e) => return Some(e.to_string()),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_a_truncation_and_a_missing_file_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![7u8; 4096]).unwrap();
        std::fs::write(dir.path().join("b"), b"bee").unwrap();
        std::fs::write(dir.path().join("state.json"), b"{}").unwrap();
        let digests = digest_dir(dir.path(), "state.json").unwrap();
        assert_eq!(digests.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(damage(dir.path(), &digests), None);

        let mut bytes = std::fs::read(dir.path().join("a")).unwrap();
        bytes[1000] ^= 0x10;
        std::fs::write(dir.path().join("a"), &bytes).unwrap();
        assert!(damage(dir.path(), &digests).unwrap().contains("a: SHA-256"));
        bytes[1000] ^= 0x10;
        std::fs::write(dir.path().join("a"), &bytes[..100]).unwrap();
        assert!(damage(dir.path(), &digests).unwrap().contains("100 bytes"));
        std::fs::write(dir.path().join("a"), &bytes).unwrap();
        std::fs::remove_file(dir.path().join("b")).unwrap();
        assert!(damage(dir.path(), &digests).unwrap().starts_with("b: "));
    }
}
