//! The input files of a job: local paths and objects in stores ([`super::store`]),
//! found in a deterministic order, with their sizes.

use super::Format;
use super::store::{Object, ObjectStream, PREFETCH_OBJECTS, Stores, as_url};
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What an input's name must end with.
pub(super) const UNKNOWN_FORMAT: &str =
    "unknown input format (expected .txt, .txt.zst, .jsonl, .jsonl.zst or .parquet)";

/// One input file: a local path or an object in a store.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The path as given (joined with the directory it was found under), or the
    /// object's URL: what manifests and messages call it.
    pub name: String,
    /// Its size in bytes when it was found.
    pub bytes: u64,
    storage: Storage,
}

#[derive(Debug, Clone)]
enum Storage {
    Local(PathBuf),
    Object(Arc<Remote>),
}

/// Where an input's bytes are ([`InputFile::place`]).
pub(super) enum Place<'a> {
    Path(&'a Path),
    Object(&'a Object),
}

/// An object, and its stream when it was opened ahead of its turn.
#[derive(Debug)]
struct Remote {
    object: Object,
    prefetched: Mutex<Option<ObjectStream>>,
}

impl InputFile {
    /// A local file of `bytes` bytes.
    pub fn local(path: PathBuf, bytes: u64) -> Self {
        InputFile {
            name: path.display().to_string(),
            bytes,
            storage: Storage::Local(path),
        }
    }

    pub(super) fn object(name: String, object: Object) -> Self {
        InputFile {
            name,
            bytes: object.size(),
            storage: Storage::Object(Arc::new(Remote {
                object,
                prefetched: Mutex::new(None),
            })),
        }
    }

    /// The local path, `None` for an object in a store.
    pub fn path(&self) -> Option<&Path> {
        match &self.storage {
            Storage::Local(path) => Some(path),
            Storage::Object(_) => None,
        }
    }

    /// Where its bytes are.
    pub(super) fn place(&self) -> Place<'_> {
        match &self.storage {
            Storage::Local(path) => Place::Path(path),
            Storage::Object(remote) => Place::Object(&remote.object),
        }
    }

    /// Its bytes from the start, as a stream.
    pub(super) fn open_bytes(&self) -> Result<Box<dyn Read + Send>> {
        match &self.storage {
            Storage::Local(path) => {
                let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                Ok(Box::new(file))
            }
            Storage::Object(remote) => {
                let prefetched = remote
                    .prefetched
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                Ok(Box::new(
                    prefetched.unwrap_or_else(|| remote.object.stream(0)),
                ))
            }
        }
    }

    /// Start streaming an object that will be read soon (nothing for local files, and
    /// for Parquet, which is read by ranges).
    fn prefetch(&self) {
        if let Storage::Object(remote) = &self.storage
            && !matches!(Format::of_name(&self.name), Some(Format::Parquet))
        {
            let mut slot = remote.prefetched.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(remote.object.stream(0));
            }
        }
    }

    /// The error for a failure to read this input.
    pub fn read_error(&self, e: std::io::Error) -> Error {
        match &self.storage {
            Storage::Local(path) => Error::io(path, e),
            Storage::Object(_) => Error::Remote {
                url: self.name.clone(),
                message: e.to_string(),
            },
        }
    }
}

/// Opens objects [`PREFETCH_OBJECTS`] ahead of the one a reader asks for, so that the
/// round trips of many small objects overlap. Local files are opened when asked for.
pub fn prefetch_after(inputs: &[InputFile], index: usize) {
    let ahead = inputs.iter().skip(index + 1).take(PREFETCH_OBJECTS);
    for input in ahead {
        input.prefetch();
    }
}

/// The input files named by `args`, in a deterministic order: each argument in the order
/// given; a directory or a URL prefix contributes its readable files recursively,
/// sorted by path (or key). Returns the files and, separately, the names of files under
/// directories or prefixes skipped because their format is unknown (hidden files are
/// ignored).
pub fn discover(args: &[PathBuf], stores: &Stores) -> Result<(Vec<InputFile>, Vec<String>)> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    // Runs of URLs are looked up together (concurrently, in order).
    let mut urls = Vec::new();
    for arg in args {
        match as_url(arg) {
            // Local files are read as paths, not through a store (8 KiB blocking reads).
            Some(url) if url.scheme() == "file" => {
                stores.discover(&std::mem::take(&mut urls), &mut files, &mut skipped)?;
                let path = url.to_file_path().map_err(|()| Error::Input {
                    path: arg.clone(),
                    message: "not a local file URL (file:///absolute/path)".into(),
                })?;
                discover_path(&path, &mut files, &mut skipped)?;
            }
            Some(url) => urls.push(url),
            None => {
                stores.discover(&std::mem::take(&mut urls), &mut files, &mut skipped)?;
                discover_path(arg, &mut files, &mut skipped)?;
            }
        }
    }
    stores.discover(&urls, &mut files, &mut skipped)?;
    if files.is_empty() {
        return Err(Error::Input {
            path: args.first().cloned().unwrap_or_default(),
            message: "no input files found".into(),
        });
    }
    Ok((files, skipped))
}

/// A file, or the files under a directory.
fn discover_path(path: &Path, files: &mut Vec<InputFile>, skipped: &mut Vec<String>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        walk(path, files, skipped)
    } else if Format::of(path).is_some() {
        files.push(InputFile::local(path.to_path_buf(), meta.len()));
        Ok(())
    } else {
        Err(Error::Input {
            path: path.to_path_buf(),
            message: UNKNOWN_FORMAT.into(),
        })
    }
}

fn walk(dir: &Path, files: &mut Vec<InputFile>, skipped: &mut Vec<String>) -> Result<()> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        entries.push(entry.path());
    }
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            walk(&path, files, skipped)?;
        } else if Format::of(&path).is_some() {
            files.push(InputFile::local(path, meta.len()));
        } else {
            skipped.push(path.display().to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_sorts_and_reports_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for name in ["b.txt", "a.jsonl", "sub/c.txt", "notes.md", ".hidden.txt"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let (files, skipped) = discover(&[dir.path().to_path_buf()], &Stores::default()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| {
                f.path()
                    .unwrap()
                    .strip_prefix(dir.path())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["a.jsonl", "b.txt", "sub/c.txt"]);
        assert!(files.iter().all(|f| f.bytes == 1));
        assert_eq!(skipped, [dir.path().join("notes.md").display().to_string()]);
    }

    #[test]
    fn missing_input_names_the_path() {
        let err = discover(&[PathBuf::from("/no/such/input")], &Stores::default()).unwrap_err();
        assert!(err.to_string().contains("/no/such/input"), "{err}");
    }

    #[test]
    fn file_urls_are_read_as_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a b.txt"), "x").unwrap();
        let url = format!("file://{}/", dir.path().display());
        let (files, _) = discover(&[PathBuf::from(url)], &Stores::default()).unwrap();
        assert_eq!(files[0].path(), Some(dir.path().join("a b.txt").as_path()));
        let url = PathBuf::from("file://host/x.txt");
        let err = discover(&[url], &Stores::default()).unwrap_err();
        assert!(err.to_string().contains("not a local file URL"), "{err}");
    }

    #[test]
    fn urls_are_told_from_paths() {
        for url in [
            "s3://b/k",
            "gs://b/",
            "az://c/p",
            "https://h/x.txt",
            "file:///tmp/a",
        ] {
            assert!(as_url(Path::new(url)).is_some(), "{url}");
        }
        for path in ["a/b.txt", "/abs/c.txt", "./s3:/x", "C:\\corpus", "weird:/x"] {
            assert!(as_url(Path::new(path)).is_none(), "{path}");
        }
    }
}
