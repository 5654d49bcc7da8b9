//! Counting the HTTP requests the object stores send and the ones that fail (which
//! `object_store` retries), so that a job can tell its user how flaky the store was: the
//! retries themselves are invisible otherwise.

use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests sent to the object stores of a job, and how many failed.
#[derive(Debug, Default)]
pub struct RequestCounts {
    sent: AtomicU64,
    failed: AtomicU64,
}

impl RequestCounts {
    /// HTTP requests sent: listings, HEADs, GETs, their retries, and the ranged GETs that
    /// resume a download cut short.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Requests that failed: no response (connection refused, reset, timed out), a server
    /// error (5xx) or "too many requests" (429). A download cut short after its response
    /// began is not counted here; its resumption is a request of its own.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Builds `object_store`'s usual HTTP client, wrapped to count into `0`.
#[derive(Debug)]
pub(super) struct CountingConnector(pub Arc<RequestCounts>);

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Counted {
            inner,
            counts: self.0.clone(),
        }))
    }
}

#[derive(Debug)]
struct Counted {
    inner: HttpClient,
    counts: Arc<RequestCounts>,
}

#[async_trait::async_trait]
impl HttpService for Counted {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.counts.sent.fetch_add(1, Ordering::Relaxed);
        let response = self.inner.execute(request).await;
        let failed = match &response {
            Err(_) => true,
            Ok(r) => r.status().is_server_error() || r.status().as_u16() == 429,
        };
        if failed {
            self.counts.failed.fetch_add(1, Ordering::Relaxed);
        }
        response
    }
}
