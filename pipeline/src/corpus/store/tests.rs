//! Object-store inputs against the in-memory store and a loopback HTTP server with
//! planned faults.

use super::loopback::{Fault, Server};
use super::*;
use crate::corpus::{self, Documents, InputFile, ReadOptions, Record};
use crate::prepare::{PrepareOptions, PrepareReport, prepare};
use crate::shard::reader::{ShardSet, Verify};
use crate::testutil::{artifact, corpus as small_corpus, toy, with_duplicates};
use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, PutPayload};
use std::path::{Path, PathBuf};

/// Retries quick enough for tests.
fn quick_retry(max_retries: usize) -> Stores {
    Stores::new(Retry {
        max_retries,
        timeout: Duration::from_secs(30),
        initial_backoff: Duration::from_millis(5),
    })
}

/// Every record of `files`, read in order.
fn records(files: &[InputFile]) -> Result<Vec<Record>> {
    let mut all = Vec::new();
    for file in files {
        let mut reader = corpus::open(file, &ReadOptions::default(), Arc::default())?;
        while let Some(record) = reader.next_record()? {
            all.push(record);
        }
    }
    Ok(all)
}

/// Every file under `dir`, by path relative to it.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let (files, _) = corpus::discover(&[dir.to_path_buf()], &Stores::default()).unwrap();
    files
        .iter()
        .map(|f| {
            let path = f.path().unwrap();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            (rel, std::fs::read(path).unwrap())
        })
        .collect()
}

fn memory_with(files: &[(String, Vec<u8>)], prefix: &str) -> Arc<InMemory> {
    let store = Arc::new(InMemory::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (name, bytes) in files {
        let path = ObjectPath::from(format!("{prefix}{name}"));
        rt.block_on(store.put(&path, PutPayload::from(bytes.clone())))
            .unwrap();
    }
    store
}

fn parquet_bytes(texts: &[Option<&str>]) -> Vec<u8> {
    use arrow::array::StringArray;
    use arrow::record_batch::RecordBatch;
    let column = Arc::new(StringArray::from(texts.to_vec()));
    let batch = RecordBatch::try_from_iter([("text", column as _)]).unwrap();
    let mut out = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(7))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

#[test]
fn a_prefix_in_a_store_reads_like_the_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let local = small_corpus(dir.path());
    let mut files = files_under(&local);
    files.push(("notes.md".into(), b"not an input".to_vec()));
    files.push((".hidden/x.txt".into(), b"hidden".to_vec()));
    files.push(("sub/.y.txt".into(), b"hidden too".to_vec()));
    let store = memory_with(&files, "corpus/");
    let stores = Stores::default();
    stores.register("memory://bucket", store).unwrap();

    let (objects, skipped) =
        corpus::discover(&[PathBuf::from("memory://bucket/corpus")], &stores).unwrap();
    let (locals, _) = corpus::discover(&[local], &Stores::default()).unwrap();
    let names: Vec<_> = objects.iter().map(|f| f.name.as_str()).collect();
    let expected: Vec<_> = files_under(&dir.path().join("in"))
        .iter()
        .map(|(rel, _)| format!("memory://bucket/corpus/{rel}"))
        .collect();
    assert_eq!(names, expected);
    assert_eq!(skipped, ["memory://bucket/corpus/notes.md"]);
    let sizes = |f: &[InputFile]| f.iter().map(|f| f.bytes).collect::<Vec<_>>();
    assert_eq!(sizes(&objects), sizes(&locals));
    assert_eq!(records(&objects).unwrap(), records(&locals).unwrap());

    // One object by its URL; an object of an unknown format named directly; nothing.
    let one = PathBuf::from("memory://bucket/corpus/sub/a.jsonl");
    let (single, _) = corpus::discover(&[one], &stores).unwrap();
    assert_eq!(single.len(), 1);
    let err =
        corpus::discover(&[PathBuf::from("memory://bucket/corpus/notes.md")], &stores).unwrap_err();
    assert!(
        err.to_string().contains("notes.md: unknown input format"),
        "{err}"
    );
    let err = corpus::discover(&[PathBuf::from("memory://bucket/none/")], &stores).unwrap_err();
    assert!(
        err.to_string()
            .contains("memory://bucket/none/: no input objects"),
        "{err}"
    );
    let err = corpus::discover(&[PathBuf::from("memory://elsewhere/x")], &stores).unwrap_err();
    assert!(
        err.to_string().starts_with("memory://elsewhere/x: "),
        "{err}"
    );
}

#[test]
fn an_object_changed_since_listing_is_an_error() {
    let files = vec![("a.jsonl".to_string(), b"{\"text\": \"one\"}\n".to_vec())];
    let store = memory_with(&files, "");
    let stores = Stores::default();
    stores.register("memory://changing", store.clone()).unwrap();
    let (objects, _) = corpus::discover(&[PathBuf::from("memory://changing/")], &stores).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let payload = PutPayload::from(b"{\"text\": \"two, longer\"}\n".to_vec());
    rt.block_on(store.put(&ObjectPath::from("a.jsonl"), payload))
        .unwrap();
    let mut documents = Documents::new(objects, ReadOptions::default(), Arc::default());
    assert_eq!(documents.by_ref().count(), 0);
    let err = documents.finish().unwrap_err().to_string();
    assert!(
        err.starts_with("memory://changing/a.jsonl: changed since it was listed"),
        "{err}"
    );
}

#[test]
fn parquet_objects_are_read_by_ranges_and_failures_are_errors() {
    let texts: Vec<Option<&str>> = (0..40)
        .map(|i| {
            if i % 9 == 4 {
                None
            } else {
                Some(["alpha", "beta gamma", "delta"][i % 3])
            }
        })
        .collect();
    let bytes = parquet_bytes(&texts);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("t.parquet");
    std::fs::write(&local, &bytes).unwrap();
    let server = Server::start();
    server.put("/t.parquet", bytes);
    let stores = quick_retry(2);
    let url = PathBuf::from(format!("{}/t.parquet", server.base));
    let (objects, _) = corpus::discover(std::slice::from_ref(&url), &stores).unwrap();
    let (locals, _) = corpus::discover(&[local], &Stores::default()).unwrap();
    assert_eq!(records(&objects).unwrap(), records(&locals).unwrap());

    // A server that keeps failing: an error naming the object, not a rejected file.
    let (objects, _) = corpus::discover(&[url], &stores).unwrap();
    server.set_down("/t.parquet", Some(500));
    let err = records(&objects).unwrap_err();
    assert!(matches!(err, Error::Remote { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}/t.parquet: ", server.base)),
        "{err}"
    );
}

/// Serves the three JSON-lines files of [`with_duplicates`] (1,200 documents, several
/// work chunks); returns their local paths and URLs.
fn served_corpus(dir: &Path, server: &Server) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let input = with_duplicates(dir);
    let (mut paths, mut urls) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let path = input.join(format!("part{i}.jsonl"));
        server.put(&format!("/c/part{i}.jsonl"), std::fs::read(&path).unwrap());
        urls.push(PathBuf::from(format!("{}/c/part{i}.jsonl", server.base)));
        paths.push(path);
    }
    (paths, urls)
}

fn job(inputs: Vec<PathBuf>, out: &Path, stores: &Stores) -> PrepareOptions {
    PrepareOptions {
        seq_len: 16,
        threads: 1,
        shard_bytes: 40 * (16 * 4 + 16),
        rows_per_batch: 8,
        stores: stores.clone(),
        ..PrepareOptions::new(inputs, out.to_path_buf())
    }
}

fn run(options: &PrepareOptions) -> Result<PrepareReport> {
    prepare(options, &artifact(), toy(None), &mut |_| {})
}

/// The shard files of a complete set, by name.
fn shards(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let set = ShardSet::open(dir, Verify::Full).unwrap();
    set.manifest()
        .shards
        .iter()
        .map(|s| (s.file.clone(), std::fs::read(dir.join(&s.file)).unwrap()))
        .collect()
}

#[test]
fn http_inputs_survive_failed_and_cut_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let (paths, urls) = served_corpus(dir.path(), &server);
    server.plan(
        "/c/part0.jsonl",
        &[Fault::Status(503), Fault::Truncate(1000)],
    );
    server.plan("/c/part1.jsonl", &[Fault::Truncate(10), Fault::Status(500)]);
    server.plan("/c/part2.jsonl", &[Fault::Status(429)]);

    let stores = quick_retry(3);
    let remote = run(&job(urls.clone(), &dir.path().join("remote"), &stores)).unwrap();
    let local = run(&job(paths, &dir.path().join("local"), &stores)).unwrap();
    assert_eq!(
        shards(&dir.path().join("remote")),
        shards(&dir.path().join("local"))
    );
    let names: Vec<_> = remote
        .manifest
        .inputs
        .iter()
        .map(|i| i.path.clone())
        .collect();
    let urls: Vec<_> = urls.iter().map(|u| u.display().to_string()).collect();
    assert_eq!(names, urls);
    for (r, l) in remote.manifest.inputs.iter().zip(&local.manifest.inputs) {
        let renamed = cocolm_shared::InputFileRecord {
            path: l.path.clone(),
            ..r.clone()
        };
        assert_eq!(&renamed, l);
    }
    assert_eq!(remote.bytes_read, local.bytes_read);
    // A HEAD, the planned failures, and the GET that succeeded (resuming the cut body
    // from where it stopped: a ranged GET).
    assert_eq!(server.requests("/c/part0.jsonl"), 4);
    assert_eq!(server.requests("/c/part1.jsonl"), 4);
    assert_eq!(server.requests("/c/part2.jsonl"), 3);
    // The job's own count: those 11 requests, of which the 503, the 500 and the 429 failed.
    assert_eq!(stores.requests().sent(), 11);
    assert_eq!(stores.requests().failed(), 3);
}

#[test]
fn an_object_that_keeps_failing_stops_the_job_and_the_same_job_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start();
    let (paths, urls) = served_corpus(dir.path(), &server);
    let out = dir.path().join("remote");
    let stores = quick_retry(2);
    server.set_down("/c/part2.jsonl", Some(503));
    let err = run(&job(urls.clone(), &out, &stores)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}/c/part2.jsonl: ", server.base)),
        "{text}"
    );
    assert_eq!(
        server.requests("/c/part2.jsonl"),
        1 + 3,
        "a HEAD, a GET and 2 retries"
    );
    assert_eq!(stores.requests().failed(), 3, "the GET and its 2 retries");
    let partial = cocolm_shared::Manifest::read_dir(&out).unwrap();
    assert!(
        !partial.shards.is_empty(),
        "the first two inputs were committed"
    );

    server.set_down("/c/part2.jsonl", None);
    let resumed = run(&job(urls, &out, &stores)).unwrap();
    assert!(resumed.resumed);
    run(&job(paths, &dir.path().join("local"), &stores)).unwrap();
    assert_eq!(shards(&out), shards(&dir.path().join("local")));
}

#[test]
fn plain_http_servers_cannot_list() {
    let server = Server::start();
    let url = PathBuf::from(format!("{}/c/", server.base));
    let err = corpus::discover(&[url], &quick_retry(0)).unwrap_err();
    assert!(err.to_string().contains("name each object"), "{err}");
}
