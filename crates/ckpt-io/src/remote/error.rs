//! What went wrong with a request, in words a user can act on.
//!
//! object_store's own errors say "Error performing GET http://… in 1.2s, after 4 retries … -
//! Server returned non-2xx status code: 503 …" and drop the response headers, so the request id
//! a storage provider's support asks for is lost. Every request ckpt makes runs inside a
//! [`Trace`](super::http::Trace) that the counting HTTP layer fills in (status, the provider's
//! error code, the request id, how many attempts), and a failure becomes a [`RemoteError`]:
//!
//! `s3://b/run/last.ckpt: GET bytes=0-65535: 503 Service Unavailable (SlowDown), request id X, after 2 retries`
//!
//! It travels as the payload of an `io::Error`, so every layer above that wraps I/O errors with
//! a path (`ckpt_torch::Error::Io{path, source}`) shows it unchanged.

use std::fmt;
use std::io;

/// The `io::ErrorKind` of [`RemoteErrorKind::Changed`]: an object replaced while it was being
/// read (its ETag no longer matches). `StaleNetworkFileHandle` is what NFS says for the same
/// thing (ESTALE); callers test [`is_changed`] rather than the kind.
pub const CHANGED_KIND: io::ErrorKind = io::ErrorKind::StaleNetworkFileHandle;

/// Why a remote request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// The object's ETag changed since it was listed or first read (HTTP 412 to `If-Match`, or
    /// two responses of one open disagreeing). `etag` is the one we expected.
    Changed { etag: String },
    /// No such object, prefix or bucket.
    NotFound,
    /// 401/403: `chain` lists where credentials were looked for.
    Denied { chain: &'static str },
    /// Anything else: a status the store answered with, or a transport failure.
    Other,
}

/// A failed request to an object store; see the module docs. Carried inside `io::Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteError {
    /// The object or prefix, `s3://bucket/key`.
    pub url: String,
    /// The request in short, `GET bytes=0-65535` or `LIST run/`.
    pub request: String,
    pub kind: RemoteErrorKind,
    /// The HTTP status of the last response, when there was one.
    pub status: Option<u16>,
    /// The provider's error code (`SlowDown`, `AccessDenied`), from the response body.
    pub code: Option<String>,
    /// `x-amz-request-id`, `x-ms-request-id` or `x-guploader-uploadid` (or `<RequestId>`).
    pub request_id: Option<String>,
    /// Attempts beyond the first.
    pub retries: u32,
    /// object_store's message, when the trace had no status (transport errors, bad responses).
    pub detail: Option<String>,
}

impl RemoteError {
    /// The `io::ErrorKind` this error travels as.
    pub fn io_kind(&self) -> io::ErrorKind {
        match &self.kind {
            RemoteErrorKind::Changed { .. } => CHANGED_KIND,
            RemoteErrorKind::NotFound => io::ErrorKind::NotFound,
            RemoteErrorKind::Denied { .. } => io::ErrorKind::PermissionDenied,
            RemoteErrorKind::Other => match self.status {
                Some(408) => io::ErrorKind::TimedOut,
                Some(400) | Some(416) => io::ErrorKind::InvalidInput,
                _ if self.detail.as_deref().is_some_and(is_timeout_text) => io::ErrorKind::TimedOut,
                _ => io::ErrorKind::Other,
            },
        }
    }

    /// This error as an `io::Error` of [`RemoteError::io_kind`].
    pub fn into_io(self) -> io::Error {
        io::Error::new(self.io_kind(), self)
    }
}

fn is_timeout_text(s: &str) -> bool {
    s.contains("timed out") || s.contains("Timeout")
}

/// Whether `e` reports an object that changed while it was being read.
pub fn is_changed(e: &io::Error) -> bool {
    remote_error(e).is_some_and(|r| matches!(r.kind, RemoteErrorKind::Changed { .. }))
}

/// The [`RemoteError`] inside `e`, if it is one.
pub fn remote_error(e: &io::Error) -> Option<&RemoteError> {
    e.get_ref()?.downcast_ref::<RemoteError>()
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let RemoteErrorKind::Changed { etag } = &self.kind {
            return write!(
                f,
                "{} changed while it was being read (listed with ETag {etag}); run again",
                self.url
            );
        }
        write!(f, "{}: {}: ", self.url, self.request)?;
        match self.status {
            Some(s) => {
                write!(f, "{s}")?;
                let r = reason(s);
                if !r.is_empty() {
                    write!(f, " {r}")?;
                }
                if let Some(c) = &self.code {
                    write!(f, " ({c})")?;
                }
            }
            None => match (&self.kind, &self.detail) {
                (RemoteErrorKind::NotFound, _) => f.write_str("not found")?,
                (_, Some(d)) => f.write_str(d)?,
                (_, None) => f.write_str("failed")?,
            },
        }
        if let Some(id) = &self.request_id {
            write!(f, ", request id {id}")?;
        }
        match self.retries {
            0 => {}
            1 => f.write_str(", after 1 retry")?,
            n => write!(f, ", after {n} retries")?,
        }
        if let RemoteErrorKind::Denied { chain } = &self.kind {
            write!(f, "; credentials were looked for in: {chain}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_url_request_status_code_request_id_and_retries() {
        let e = RemoteError {
            url: "s3://b/run/last.ckpt".into(),
            request: "GET bytes=0-65535".into(),
            kind: RemoteErrorKind::Other,
            status: Some(503),
            code: Some("SlowDown".into()),
            request_id: Some("CKPTFAULT3".into()),
            retries: 2,
            detail: None,
        };
        assert_eq!(
            e.to_string(),
            "s3://b/run/last.ckpt: GET bytes=0-65535: 503 Service Unavailable (SlowDown), \
             request id CKPTFAULT3, after 2 retries"
        );
        let io = e.into_io();
        assert_eq!(io.kind(), io::ErrorKind::Other);
        assert!(remote_error(&io).is_some());
        assert!(!is_changed(&io));
        let c = RemoteError {
            url: "s3://b/k".into(),
            request: "GET bytes=0-9".into(),
            kind: RemoteErrorKind::Changed {
                etag: "\"abc\"".into(),
            },
            status: Some(412),
            code: None,
            request_id: None,
            retries: 0,
            detail: None,
        };
        assert_eq!(
            c.to_string(),
            "s3://b/k changed while it was being read (listed with ETag \"abc\"); run again"
        );
        let io = c.into_io();
        assert_eq!(io.kind(), CHANGED_KIND);
        assert!(is_changed(&io));
    }
}
