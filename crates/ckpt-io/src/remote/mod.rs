//! Objects in buckets, read by byte ranges.
//!
//! STEP-0 STUB: the contract slice A fills in (behind the `remote` feature). Without the
//! feature every call answers `Unsupported` with a message naming the URL.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::{ByteSource, Identity, Listing, RemoteUrl, Stat};

/// Settings the CLI gives once, before the first remote request.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `--endpoint URL` for S3-compatible stores; overrides `AWS_ENDPOINT_URL`. An `http://`
    /// endpoint given here allows plain HTTP.
    pub endpoint: Option<String>,
}

/// Install `cfg` (the last call before the first request wins).
pub fn configure(cfg: Config) {
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

/// The requests made so far by this process.
pub fn stats() -> Stats {
    Stats::default()
}

fn unsupported(url: &RemoteUrl) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{url}: this build of ckpt cannot read object storage (feature `remote`)"),
    )
}

/// Open the object `url` (named `path` in messages). `known`: its identity from a listing, so
/// no request is needed to learn it and every read carries `If-Match`.
pub fn open(
    url: &RemoteUrl,
    path: &Path,
    known: Option<&Identity>,
) -> io::Result<Arc<dyn ByteSource>> {
    let _ = (path, known);
    Err(unsupported(url))
}

/// What `url` is: an object, a prefix, or neither (`NotFound`).
pub fn stat(url: &RemoteUrl) -> io::Result<Stat> {
    Err(unsupported(url))
}

/// The objects and sub-prefixes directly under the prefix `url`.
pub fn read_dir(url: &RemoteUrl) -> io::Result<Listing> {
    Err(unsupported(url))
}

/// Forget memoized listings (see [`crate::forget_listings`]).
pub fn forget_listings() {}
