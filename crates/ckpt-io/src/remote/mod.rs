//! Objects in buckets, read by byte ranges (`s3://`, `gs://`, `az://`).
//!
//! With the `remote` feature this is object_store underneath: stores built from the
//! environment ([`store`](self) docs: credentials, `--endpoint`, AWS profiles, region), one
//! runtime for all I/O called from synchronous code, per-object block caches with read-ahead
//! and prefetch hints, `If-Match` on every read of a known version, memoized listings, and
//! errors that name the object, the request, the status and the request id. Without the
//! feature every call answers `Unsupported` with a message naming the URL.
//!
//! Environment: `CKPT_IO_MAX_IN_FLIGHT` (requests in flight, default 16), `CKPT_IO_RETRIES`
//! (default 4), `CKPT_IO_RETRY_TIMEOUT_MS` (default 60000), `CKPT_IO_BACKOFF_MS` (first
//! backoff, default 100), `CKPT_IO_STATS=1` (the CLI prints [`stats_line`] on stderr),
//! `CKPT_IO_TRACE=1` (each HTTP exchange on stderr, for debugging).

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::{ByteSource, Identity, Listing, OpenError, RemoteUrl, Stat};

mod error;
pub use error::{CHANGED_KIND, RemoteError, RemoteErrorKind, is_changed, remote_error};

#[cfg(feature = "remote")]
mod aws_profile;
#[cfg(feature = "remote")]
mod http;
#[cfg(feature = "remote")]
mod listing;
#[cfg(feature = "remote")]
mod object;
#[cfg(feature = "remote")]
pub mod rt;
#[cfg(feature = "remote")]
mod store;
#[cfg(feature = "remote")]
#[doc(hidden)]
pub mod testing;

/// Settings the CLI gives once, before the first remote request.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `--endpoint URL` for S3-compatible stores; overrides `AWS_ENDPOINT_URL`. An `http://`
    /// endpoint given here allows plain HTTP.
    pub endpoint: Option<String>,
}

/// Install `cfg` (the last call before the first request wins: stores are built once per
/// bucket and endpoint).
pub fn configure(cfg: Config) {
    #[cfg(feature = "remote")]
    store::set_config(cfg);
    #[cfg(not(feature = "remote"))]
    let _ = cfg;
}

/// Counts of requests made so far (for `CKPT_IO_STATS=1` and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub get: u64,
    pub list: u64,
    pub head: u64,
    pub bytes: u64,
}

/// The HTTP requests made so far by this process (retries count; response body bytes).
pub fn stats() -> Stats {
    #[cfg(feature = "remote")]
    {
        let (get, list, head, bytes) = http::counters();
        Stats {
            get,
            list,
            head,
            bytes,
        }
    }
    #[cfg(not(feature = "remote"))]
    Stats::default()
}

/// `ckpt-io: 3 requests (3 GET, 0 LIST, 0 HEAD), 135168 bytes` when `CKPT_IO_STATS=1` (the CLI
/// prints it on stderr at exit), else `None`.
pub fn stats_line() -> Option<String> {
    if std::env::var("CKPT_IO_STATS").ok().as_deref() != Some("1") {
        return None;
    }
    Some(format_stats(stats()))
}

/// The text of [`stats_line`].
pub fn format_stats(s: Stats) -> String {
    let n = s.get + s.list + s.head;
    format!(
        "ckpt-io: {n} request{} ({} GET, {} LIST, {} HEAD), {} bytes",
        if n == 1 { "" } else { "s" },
        s.get,
        s.list,
        s.head,
        s.bytes
    )
}

/// Requests in flight at most, process-wide: `CKPT_IO_MAX_IN_FLIGHT`, default 16 (the width
/// for walking and cataloguing remote trees).
pub fn max_in_flight() -> usize {
    std::env::var("CKPT_IO_MAX_IN_FLIGHT")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(16)
}

#[cfg(not(feature = "remote"))]
fn unsupported(url: &RemoteUrl) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{url}: this build of ckpt cannot read object storage (feature `remote`)"),
    )
}

/// Open the object `url` (`path` is how the caller spelled it; messages and
/// [`ByteSource::path`] use the canonical `s3://bucket/key`). `known`: its identity from a
/// listing, so no request is made until the first read and every read carries `If-Match`.
/// Without `known`, the identity comes from the memoized parent listing if there is one,
/// else from one round of two parallel GETs (the object's last 64 KiB + 22 and first 64 KiB).
/// An object open already (same URL, same ETag when `known`) is reused with its cached
/// blocks. A prefix is `IsADirectory`; a missing object `NotFound`.
pub fn open(
    url: &RemoteUrl,
    path: &Path,
    known: Option<&Identity>,
) -> io::Result<Arc<dyn ByteSource>> {
    let _ = path;
    #[cfg(feature = "remote")]
    {
        let o: Arc<dyn ByteSource> = object::open(url, known)?;
        Ok(o)
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = known;
        Err(unsupported(url))
    }
}

/// A whole small object in one GET (with `If-Match` when its listing is memoized), its size
/// checked against `limit` before the body is read; a listed object larger than `limit` is
/// refused without a request.
pub fn read_small(url: &RemoteUrl, limit: u64) -> Result<Vec<u8>, OpenError> {
    #[cfg(feature = "remote")]
    {
        object::read_small(url, limit)
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = limit;
        Err(OpenError::Io(unsupported(url)))
    }
}

/// What `url` is: an object, a prefix, or neither (`NotFound`), from its parent's memoized
/// listing (one LIST per prefix per process). The bucket's root is a prefix.
pub fn stat(url: &RemoteUrl) -> io::Result<Stat> {
    #[cfg(feature = "remote")]
    {
        listing::stat(url)
    }
    #[cfg(not(feature = "remote"))]
    Err(unsupported(url))
}

/// The objects and sub-prefixes directly under the prefix `url`, sorted, memoized until
/// [`forget_listings`]. A listing that fails (any page) is an error naming the prefix;
/// `complete` is always true in what is returned.
pub fn read_dir(url: &RemoteUrl) -> io::Result<Listing> {
    #[cfg(feature = "remote")]
    {
        listing::read_dir(url)
    }
    #[cfg(not(feature = "remote"))]
    Err(unsupported(url))
}

/// Forget memoized listings and the open objects' cached blocks (see
/// [`crate::forget_listings`]).
pub fn forget_listings() {
    #[cfg(feature = "remote")]
    {
        listing::forget();
        object::forget_open();
    }
}

/// Serve every URL of `scheme://bucket` from `store` (tests without a server: wrap
/// `object_store::memory::InMemory` in [`testing::CountingStore`]).
#[cfg(feature = "remote")]
#[doc(hidden)]
pub fn register_store_for_tests(
    scheme: crate::Scheme,
    bucket: &str,
    store: Arc<dyn object_store::ObjectStore>,
) {
    store::register_for_tests(scheme, bucket, store);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_line_text() {
        let s = Stats {
            get: 3,
            list: 0,
            head: 0,
            bytes: 135_168,
        };
        assert_eq!(
            format_stats(s),
            "ckpt-io: 3 requests (3 GET, 0 LIST, 0 HEAD), 135168 bytes"
        );
    }
}

#[cfg(test)]
#[cfg(feature = "remote")]
mod remote_tests;
