//! Where ckpt's bytes come from.
//!
//! Every reader above this crate asks for bytes by range ([`ByteSource::read_exact_at`]), for
//! whole small files ([`read_small`]), for what a path is ([`stat`]) and for what a folder holds
//! ([`read_dir`]). A path is either a local file or an object in a bucket (`s3://bucket/key`,
//! `gs://…`, `az://container/key`): the same `&Path` carries both, because
//! `Path::new("s3://b/run/x.ckpt")` survives `join`, `parent`, `file_name` and `display`, so no
//! API above needs a second signature. Only these primitives branch on [`Location::parse`].
//!
//! Objects are read by byte ranges (the `remote` feature, through the object_store crate):
//! a checkpoint's metadata is a few tens of kilobytes at the start and end of a file of
//! gigabytes, and downloading the file to read them is the waste ckpt exists to remove.
//! Without the feature, a URL is refused with a clear message.

pub mod location;
pub mod open;
pub mod remote;
mod source;
mod stat;

pub use location::{Location, RemoteUrl, Scheme, is_remote};
pub use open::{OpenError, kind_of};
pub use remote::{RemoteError, RemoteErrorKind, is_changed};
pub use source::{ByteSource, Identity, LocalFile, mem, window};
pub use stat::{DirEntry, Kind, Listing, Stat, read_dir, stat};

use std::path::Path;
use std::sync::Arc;

/// Open `path` for reading by ranges: a local regular file ([`open::open_regular`]'s checks),
/// or an object (its size and identity from one request, or from a listing already made).
pub fn open(path: &Path) -> Result<Arc<dyn ByteSource>, OpenError> {
    match Location::parse(path) {
        Location::Local(p) => Ok(Arc::new(LocalFile::open(&p)?)),
        Location::Remote(url) => remote::open(&url, path, None).map_err(remote_open_error),
    }
}

/// A prefix opened as an object is "not a regular file", as a local directory is.
fn remote_open_error(e: std::io::Error) -> OpenError {
    if e.kind() == std::io::ErrorKind::IsADirectory {
        OpenError::NotAFile {
            what: "a prefix (folder)",
        }
    } else {
        OpenError::Io(e)
    }
}

/// [`open`] when the caller already knows the object's identity (from a listing): no request
/// is made to learn it, and every read is conditional on it (an object replaced meanwhile is
/// reported as changed, never read half old, half new). For a local path, `id` is ignored.
pub fn open_known(path: &Path, id: &Identity) -> Result<Arc<dyn ByteSource>, OpenError> {
    match Location::parse(path) {
        Location::Local(p) => Ok(Arc::new(LocalFile::open(&p)?)),
        Location::Remote(url) => remote::open(&url, path, Some(id)).map_err(remote_open_error),
    }
}

/// A whole small file as bytes, its size checked against `limit` before anything is
/// allocated. Local: [`open::read_small`]. Remote: one GET of the whole object.
pub fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, OpenError> {
    match Location::parse(path) {
        Location::Local(p) => open::read_small(&p, limit),
        Location::Remote(url) => remote::read_small(&url, limit),
    }
}

/// [`read_small`] as UTF-8 text (invalid UTF-8 is an `InvalidData` I/O error).
pub fn read_small_text(path: &Path, limit: u64) -> Result<String, OpenError> {
    open::utf8(read_small(path, limit)?)
}

/// Forget the memoized listings of prefixes (a long-running process, such as `ckpt serve`,
/// calls it before each new catalog so a bucket is listed afresh). Local paths memoize nothing.
pub fn forget_listings() {
    remote::forget_listings();
}
