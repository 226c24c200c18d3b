//! The HTTP layer under every store: counts requests and bytes, and keeps what a failure's
//! message needs.
//!
//! object_store lets a builder take an [`HttpConnector`]; ours wraps another connector's client
//! in [`Counting`], which sees every request (retries included) and response. It counts them
//! by kind for [`super::stats`] and adds up response body bytes as they stream. For a non-2xx
//! response it reads the (small) error body to keep the provider's error code and request id
//! (which object_store drops with the headers), then hands an identical response on. What it
//! saw goes into the [`Trace`] of the task that made the request ([`traced`]), so the caller can
//! build a [`super::RemoteError`] naming status, code, request id and attempts.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body::{Body, Frame, SizeHint};
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
};

static GET: AtomicU64 = AtomicU64::new(0);
static LIST: AtomicU64 = AtomicU64::new(0);
static HEAD: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// The process-wide counters: (GET, LIST, HEAD, body bytes received).
pub fn counters() -> (u64, u64, u64, u64) {
    (
        GET.load(Ordering::Relaxed),
        LIST.load(Ordering::Relaxed),
        HEAD.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

/// `CKPT_IO_TRACE=1`: print each HTTP exchange on stderr (method, path and query, range,
/// status, length), for debugging request plans.
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("CKPT_IO_TRACE").ok().as_deref() == Some("1"))
}

/// What the HTTP layer saw of one logical request (all its attempts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// HTTP exchanges made (1 + retries), transport failures included.
    pub attempts: u32,
    /// The last response's status.
    pub status: Option<u16>,
    /// From the last non-2xx response: the provider's error code and request id.
    pub code: Option<String>,
    pub request_id: Option<String>,
}

tokio::task_local! {
    static TRACE: Arc<Mutex<Trace>>;
}

/// Run `fut` with a fresh [`Trace`] the HTTP layer fills in; returns both.
pub async fn traced<F: std::future::Future>(fut: F) -> (F::Output, Trace) {
    let t = Arc::new(Mutex::new(Trace::default()));
    let out = TRACE.scope(t.clone(), fut).await;
    let trace = t.lock().map(|g| g.clone()).unwrap_or_default();
    (out, trace)
}

fn note(f: impl FnOnce(&mut Trace)) {
    let _ = TRACE.try_with(|t| {
        if let Ok(mut g) = t.lock() {
            f(&mut g);
        }
    });
}

/// What kind of request this is, for the counters: a listing is a GET on the bucket with
/// `list-type=2` (S3, GCS) or `comp=list` (Azure).
fn count(req: &HttpRequest) {
    let m = req.method();
    if m == http::Method::HEAD {
        HEAD.fetch_add(1, Ordering::Relaxed);
    } else if m == http::Method::GET {
        let q = req.uri().query().unwrap_or("");
        if q.split('&')
            .any(|p| p.starts_with("list-type=") || p == "comp=list")
        {
            LIST.fetch_add(1, Ordering::Relaxed);
        } else {
            GET.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The text of `<tag>…</tag>` in an XML error body.
fn xml_tag(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let s = body.find(&open)? + open.len();
    let e = s + body[s..].find(&close)?;
    let v = body[s..e].trim();
    (!v.is_empty()).then(|| v.to_owned())
}

const REQUEST_ID_HEADERS: [&str; 4] = [
    "x-amz-request-id",
    "x-ms-request-id",
    "x-guploader-uploadid",
    "x-request-id",
];

/// Error bodies are read whole to find the code; a body larger than this is not an S3 error.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// An [`HttpService`] that counts and traces (see the module docs).
#[derive(Debug)]
pub struct Counting {
    inner: HttpClient,
}

#[async_trait::async_trait]
impl HttpService for Counting {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        count(&req);
        let shown = tracing().then(|| {
            let range = req
                .headers()
                .get(http::header::RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let pq = req.uri().path_and_query().map_or("", |p| p.as_str());
            format!("{} {pq} {range}", req.method())
        });
        let r = self.inner.execute(req).await;
        if let Some(shown) = shown {
            match &r {
                Ok(resp) => {
                    let len = resp
                        .headers()
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("?");
                    eprintln!(
                        "ckpt-io: {shown} -> {} ({len} bytes)",
                        resp.status().as_u16()
                    );
                }
                Err(e) => eprintln!("ckpt-io: {shown} -> {e}"),
            }
        }
        let resp = match r {
            Ok(resp) => resp,
            Err(e) => {
                note(|t| t.attempts += 1);
                return Err(e);
            }
        };
        let status = resp.status();
        if status.is_success() || status.is_redirection() {
            note(|t| {
                t.attempts += 1;
                t.status = Some(status.as_u16());
            });
            let (parts, body) = resp.into_parts();
            let body = HttpResponseBody::new(CountingBody { inner: body });
            return Ok(HttpResponse::from_parts(parts, body));
        }
        let (parts, body) = resp.into_parts();
        let request_id = REQUEST_ID_HEADERS
            .iter()
            .find_map(|h| parts.headers.get(*h)?.to_str().ok().map(str::to_owned));
        let mut stream = body.bytes_stream();
        let mut buf = Vec::new();
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    BYTES.fetch_add(c.len() as u64, Ordering::Relaxed);
                    buf.extend_from_slice(&c);
                    if buf.len() > ERROR_BODY_LIMIT {
                        break;
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&buf);
        let code = xml_tag(&text, "Code");
        let request_id = request_id.or_else(|| xml_tag(&text, "RequestId"));
        note(|t| {
            t.attempts += 1;
            t.status = Some(status.as_u16());
            t.code = code;
            t.request_id = request_id;
        });
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(HttpResponse::from_parts(
            parts,
            HttpResponseBody::from(Bytes::from(buf)),
        ))
    }
}

/// A response body that adds the bytes it yields to the process-wide count.
struct CountingBody {
    inner: HttpResponseBody,
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            BYTES.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An [`HttpConnector`] whose clients are `C`'s, wrapped in [`Counting`].
#[derive(Debug, Default)]
pub struct CountingConnector<C>(pub C);

impl<C: HttpConnector> HttpConnector for CountingConnector<C> {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = self.0.connect(options)?;
        Ok(HttpClient::new(Counting { inner }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_code_and_request_id_in_an_s3_error_body() {
        let b = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>x</Message>\
                 <RequestId>R1</RequestId></Error>";
        assert_eq!(xml_tag(b, "Code").as_deref(), Some("SlowDown"));
        assert_eq!(xml_tag(b, "RequestId").as_deref(), Some("R1"));
        assert_eq!(xml_tag(b, "HostId"), None);
    }
}
