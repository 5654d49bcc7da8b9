//! Inputs in object stores: `s3://`, `gs://`, `az://` (and the other Azure schemes) and
//! `http(s)://` URLs, through the `object_store` crate (`file://` URLs are read as local
//! paths, [`super::discover`]).
//!
//! - **Credentials** come from the environment as each store's builder reads it
//!   (`AWS_*`, `GOOGLE_*`, `AZURE_*`; `AWS_ENDPOINT_URL` + `AWS_ALLOW_HTTP=true` for an
//!   S3-compatible server).
//! - **Listing**: a URL naming an object is that object; otherwise it is a prefix, listed
//!   recursively and sorted by key (hidden keys — a segment starting with `.` — skipped).
//!   Plain HTTP servers cannot list: name each object.
//! - **Retries**: requests and interrupted response bodies are retried with exponential
//!   back-off ([`Retry`]; the body resumes from the byte it stopped at, guarded by the
//!   ETag); what still fails is an [`Error::Remote`] naming the object, which stops the
//!   job — the same command resumes from the last committed shard. Every request the
//!   built stores send, and every one that fails, is counted ([`Stores::requests`]).
//! - **Bounded memory**: an object is streamed through a channel of
//!   [`STREAM_CHUNKS`] chunks as the store delivers them (tens of KiB each over HTTP);
//!   [`PREFETCH_OBJECTS`] objects ahead are opened so that many small objects do not
//!   pay one round trip each in turn. Parquet objects are read by ranged requests.
//! - **Changes**: an object whose ETag or size differs from its listing is an error.

use crate::{Error, Result};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt,
    ObjectStoreScheme, RetryConfig,
};
use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

mod requests;
use requests::CountingConnector;
pub use requests::RequestCounts;

/// Chunks of one object buffered ahead of its reader.
pub const STREAM_CHUNKS: usize = 16;
/// Objects opened ahead of the one being read.
pub const PREFETCH_OBJECTS: usize = 8;

/// How network failures are retried (HTTP-based stores: S3, GCS, Azure, HTTP).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Retries of one request before it fails (0: none).
    pub max_retries: usize,
    /// No retry starts later than this after a request's first attempt.
    pub timeout: Duration,
    /// The first back-off; it doubles (with jitter) up to 15 s.
    pub initial_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: 10,
            timeout: Duration::from_secs(180),
            initial_backoff: Duration::from_millis(100),
        }
    }
}

impl Retry {
    fn config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: self.initial_backoff,
                max_backoff: Duration::from_secs(15).max(self.initial_backoff),
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.timeout,
        }
    }
}

/// The object stores of a job: built from URLs on first use (credentials from the
/// environment), or registered by the caller, and the runtime their requests run on.
/// Cheap to clone; clones share stores and runtime.
#[derive(Clone, Default)]
pub struct Stores {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Registry {
    registered: HashMap<String, Arc<dyn ObjectStore>>,
    built: HashMap<String, Arc<dyn ObjectStore>>,
}

#[derive(Default)]
struct Inner {
    retry: Retry,
    /// By `scheme://authority`: stores the caller registered (the URL's path is the
    /// object's path in them) and stores built from URLs.
    stores: Mutex<Registry>,
    runtime: Mutex<Option<Arc<tokio::runtime::Runtime>>>,
    /// Requests of the stores built from URLs (not of registered ones).
    requests: Arc<RequestCounts>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stores = self.lock_stores();
        let mut keys: Vec<_> = stores
            .registered
            .keys()
            .chain(stores.built.keys())
            .collect();
        keys.sort();
        f.debug_struct("Stores")
            .field("retry", &self.inner.retry)
            .field("stores", &keys)
            .finish()
    }
}

impl Stores {
    /// Stores built on demand with this retry policy.
    pub fn new(retry: Retry) -> Self {
        Stores {
            inner: Arc::new(Inner {
                retry,
                ..Inner::default()
            }),
        }
    }

    /// Use `store` for URLs of `base`'s scheme and authority (e.g. `memory://corpus` or
    /// `s3://bucket` with credentials of the caller's choosing).
    pub fn register(&self, base: &str, store: Arc<dyn ObjectStore>) -> Result<()> {
        let url = parse(base)?;
        self.lock_stores().registered.insert(store_key(&url), store);
        Ok(())
    }

    /// The requests the stores built from URLs have sent so far, and their failures.
    pub fn requests(&self) -> &RequestCounts {
        &self.inner.requests
    }

    fn lock_stores(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.stores.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn runtime(&self) -> Result<Arc<tokio::runtime::Runtime>> {
        let mut runtime = self.inner.runtime.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rt) = runtime.as_ref() {
            return Ok(rt.clone());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cocolm-fetch")
            .enable_all()
            .build()
            .map_err(|e| Error::Remote {
                url: "object store".into(),
                message: format!("cannot start the I/O runtime: {e}"),
            })?;
        let rt = Arc::new(rt);
        *runtime = Some(rt.clone());
        Ok(rt)
    }

    /// The store of `url` and the object path it names.
    fn resolve(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        let key = store_key(url);
        if let Some(store) = self.lock_stores().registered.get(&key) {
            let path = ObjectPath::from_url_path(url.path().trim_start_matches('/'))
                .map_err(|e| remote(url.as_str(), e))?;
            return Ok((store.clone(), path));
        }
        let (scheme, path) = ObjectStoreScheme::parse(url).map_err(|e| remote(url.as_str(), e))?;
        if let Some(store) = self.lock_stores().built.get(&key) {
            return Ok((store.clone(), path));
        }
        let retry = self.inner.retry.config();
        let counting = || CountingConnector(self.inner.requests.clone());
        let built: object_store::Result<Arc<dyn ObjectStore>> = match scheme {
            ObjectStoreScheme::AmazonS3 => object_store::aws::AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .with_retry(retry)
                .with_http_connector(counting())
                .build()
                .map(|s| Arc::new(s) as _),
            ObjectStoreScheme::GoogleCloudStorage => {
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry)
                    .with_http_connector(counting())
                    .build()
                    .map(|s| Arc::new(s) as _)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry)
                    .with_http_connector(counting())
                    .build()
                    .map(|s| Arc::new(s) as _)
            }
            ObjectStoreScheme::Http => object_store::http::HttpBuilder::new()
                .with_url(&url[..url::Position::BeforePath])
                .with_client_options(ClientOptions::new().with_allow_http(true))
                .with_retry(retry)
                .with_http_connector(counting())
                .build()
                .map(|s| Arc::new(s) as _),
            _ => {
                return Err(remote(
                    url.as_str(),
                    "this kind of store exists only inside a process that registers it",
                ));
            }
        };
        let store = built.map_err(|e| remote(url.as_str(), e))?;
        self.lock_stores().built.insert(key, store.clone());
        Ok((store, path))
    }

    /// The objects each of `urls` names, in order: itself when it is an object, else
    /// every object under it (sorted by key, hidden keys left out). Objects whose name
    /// has an unknown format go to `skipped` when listed, and are an error when named.
    /// [`DISCOVER_AT_ONCE`] URLs are looked up at a time.
    pub(super) fn discover(
        &self,
        urls: &[Url],
        files: &mut Vec<super::InputFile>,
        skipped: &mut Vec<String>,
    ) -> Result<()> {
        if urls.is_empty() {
            return Ok(());
        }
        let runtime = self.runtime()?;
        let resolved = urls
            .iter()
            .map(|url| Ok((url, self.resolve(url)?)))
            .collect::<Result<Vec<_>>>()?;
        let found: Vec<Found> = runtime.block_on(
            futures_util::stream::iter(resolved)
                .map(|(url, (store, path))| find(url, store, path))
                .buffered(DISCOVER_AT_ONCE)
                .try_collect(),
        )?;
        for (url, (store, _), metas) in found {
            let base = &url[..url::Position::BeforePath];
            let named = metas.len() == 1 && metas[0].0;
            let before = files.len();
            for (_, meta) in metas {
                let file = super::InputFile::object(
                    format!("{base}/{}", meta.location),
                    Object {
                        listed: Listed {
                            store: store.clone(),
                            location: meta.location,
                            size: meta.size,
                            e_tag: meta.e_tag,
                        },
                        runtime: runtime.clone(),
                    },
                );
                match super::Format::of_name(&file.name) {
                    Some(_) => files.push(file),
                    None if named => return Err(remote(&file.name, super::UNKNOWN_FORMAT)),
                    None => skipped.push(file.name),
                }
            }
            if files.len() == before {
                return Err(remote(
                    url.as_str(),
                    format!("no input objects found there{}", http_hint(url)),
                ));
            }
        }
        Ok(())
    }
}

/// URLs looked up at once by [`Stores::discover`].
pub const DISCOVER_AT_ONCE: usize = 32;

/// A URL, its store and path, and the objects found: `(named, meta)` — the object the
/// URL names, or those listed under it.
type Found<'a> = (
    &'a Url,
    (Arc<dyn ObjectStore>, ObjectPath),
    Vec<(bool, ObjectMeta)>,
);

/// What `url` names: the object at `path` (HEAD), or, when there is none, the objects
/// under it (sorted by key, hidden keys left out).
async fn find(url: &Url, store: Arc<dyn ObjectStore>, path: ObjectPath) -> Result<Found<'_>> {
    if !url.path().ends_with('/') && !path.as_ref().is_empty() {
        match store.head(&path).await {
            Ok(meta) => return Ok((url, (store, path), vec![(true, meta)])),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(remote(url.as_str(), e)),
        }
    }
    let prefix = (!path.as_ref().is_empty()).then_some(&path);
    let mut metas: Vec<ObjectMeta> = store.list(prefix).try_collect().await.map_err(|e| {
        remote(
            url.as_str(),
            format!("listing failed: {e}{}", http_hint(url)),
        )
    })?;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    metas.retain(|meta| !meta.location.parts().any(|p| p.as_ref().starts_with('.')));
    let listed = metas.into_iter().map(|meta| (false, meta)).collect();
    Ok((url, (store, path), listed))
}

fn http_hint(url: &Url) -> &'static str {
    if url.scheme().starts_with("http") {
        " (plain HTTP servers cannot list a prefix: name each object)"
    } else {
        ""
    }
}

/// `url` as a URL when it is one (`scheme://…`), `None` for a plain path.
pub fn as_url(arg: &std::path::Path) -> Option<Url> {
    let s = arg.to_str()?;
    let (scheme, _) = s.split_once("://")?;
    let is_scheme = scheme.len() >= 2
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !is_scheme {
        return None;
    }
    Url::parse(s).ok()
}

fn parse(url: &str) -> Result<Url> {
    Url::parse(url).map_err(|e| remote(url, format!("not a URL: {e}")))
}

fn store_key(url: &Url) -> String {
    url[..url::Position::BeforePath].to_string()
}

fn remote(url: &str, message: impl std::fmt::Display) -> Error {
    Error::Remote {
        url: url.to_string(),
        message: message.to_string(),
    }
}

/// One object of a store, as listed, and the runtime its requests run on.
#[derive(Clone)]
pub struct Object {
    listed: Listed,
    runtime: Arc<tokio::runtime::Runtime>,
}

/// What a fetching task holds of an object: not the runtime, which must never be
/// dropped by one of its own tasks.
#[derive(Clone)]
struct Listed {
    store: Arc<dyn ObjectStore>,
    location: ObjectPath,
    size: u64,
    e_tag: Option<String>,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("store", &self.listed.store.to_string())
            .field("location", &self.listed.location)
            .field("size", &self.listed.size)
            .field("e_tag", &self.listed.e_tag)
            .finish()
    }
}

/// What the fetching task hands the reader.
enum Piece {
    Data(Bytes),
    /// The object ended with the listed size.
    End,
    Failed(String),
}

impl Object {
    /// The listed size in bytes.
    pub fn size(&self) -> u64 {
        self.listed.size
    }

    /// Start streaming the object from byte `start` in the background; the reader
    /// blocks only when the channel of [`STREAM_CHUNKS`] chunks runs dry.
    pub fn stream(&self, start: u64) -> ObjectStream {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS);
        let object = self.listed.clone();
        self.runtime.spawn(async move {
            let last = match object.send_body(start, &tx).await {
                Ok(()) => Piece::End,
                Err(message) => Piece::Failed(message),
            };
            let _ = tx.send(last).await;
        });
        ObjectStream {
            rx,
            current: Bytes::new(),
            ended: false,
        }
    }

    /// Bytes `start..start + length`, in one ranged request (retried by the store).
    fn range(&self, start: u64, length: usize) -> std::result::Result<Bytes, String> {
        let end = start + length as u64;
        if end > self.listed.size {
            return Err(format!(
                "read of bytes {start}..{end} past the listed size {}",
                self.listed.size
            ));
        }
        let bytes = self
            .runtime
            .block_on(
                self.listed
                    .store
                    .get_range(&self.listed.location, start..end),
            )
            .map_err(|e| e.to_string())?;
        if bytes.len() != length {
            return Err(format!(
                "asked for {length} bytes at {start}, got {}",
                bytes.len()
            ));
        }
        Ok(bytes)
    }
}

impl Listed {
    async fn send_body(
        &self,
        start: u64,
        tx: &tokio::sync::mpsc::Sender<Piece>,
    ) -> std::result::Result<(), String> {
        if start >= self.size {
            return Ok(());
        }
        // No range from the start: servers without range support can serve it.
        let options = GetOptions {
            range: (start > 0).then_some(GetRange::Offset(start)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.location, options)
            .await
            .map_err(|e| e.to_string())?;
        self.check_unchanged(&got.meta)?;
        let mut body = got.into_stream();
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            received += chunk.len() as u64;
            if tx.send(Piece::Data(chunk)).await.is_err() {
                return Ok(()); // the reader is gone
            }
        }
        if start + received != self.size {
            return Err(format!(
                "the body ended after {} of {} bytes",
                start + received,
                self.size
            ));
        }
        Ok(())
    }

    fn check_unchanged(&self, now: &ObjectMeta) -> std::result::Result<(), String> {
        let etag_changed = matches!((&self.e_tag, &now.e_tag), (Some(a), Some(b)) if a != b);
        if etag_changed || now.size != self.size {
            return Err(format!(
                "changed since it was listed ({} bytes, ETag {:?}; now {} bytes, ETag {:?})",
                self.size, self.e_tag, now.size, now.e_tag
            ));
        }
        Ok(())
    }
}

/// A blocking reader of an object streamed in the background ([`Object::stream`]).
/// A failure after the store's retries is an [`io::Error`] with the store's message.
pub struct ObjectStream {
    rx: tokio::sync::mpsc::Receiver<Piece>,
    current: Bytes,
    ended: bool,
}

impl std::fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStream")
            .field("buffered", &self.current.len())
            .finish()
    }
}

impl Read for ObjectStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Data(chunk)) => self.current = chunk,
                Some(Piece::End) => self.ended = true,
                Some(Piece::Failed(message)) => return Err(io::Error::other(message)),
                None => return Err(io::Error::other("the fetching task stopped early")),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A Parquet file in an object store, read by ranged requests. A request that still
/// fails after retries is kept ([`ObjectChunks::failure`]) so that the reader reports
/// it as a failure to read the object, not as a corrupt file.
pub struct ObjectChunks {
    object: Object,
    failure: Arc<Mutex<Option<String>>>,
}

impl ObjectChunks {
    /// Ranged reads of `object`.
    pub fn new(object: Object) -> Self {
        ObjectChunks {
            object,
            failure: Arc::default(),
        }
    }

    /// The first request that failed, if any.
    pub fn failure(&self) -> Arc<Mutex<Option<String>>> {
        self.failure.clone()
    }

    fn note(&self, message: String) -> parquet::errors::ParquetError {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert_with(|| message.clone());
        parquet::errors::ParquetError::External(message.into())
    }
}

impl parquet::file::reader::Length for ObjectChunks {
    fn len(&self) -> u64 {
        self.object.size()
    }
}

impl parquet::file::reader::ChunkReader for ObjectChunks {
    type T = FailureNoting;

    fn get_read(&self, start: u64) -> parquet::errors::Result<FailureNoting> {
        Ok(FailureNoting {
            stream: self.object.stream(start),
            failure: self.failure.clone(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.object
            .range(start, length)
            .map_err(|message| self.note(message))
    }
}

/// An [`ObjectStream`] that records its failure in the [`ObjectChunks`] it came from.
pub struct FailureNoting {
    stream: ObjectStream,
    failure: Arc<Mutex<Option<String>>>,
}

impl Read for FailureNoting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf).inspect_err(|e| {
            let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            failure.get_or_insert_with(|| e.to_string());
        })
    }
}

#[cfg(test)]
mod loopback;
#[cfg(test)]
mod tests;
