//! Bytes by range: a local file, bytes already in memory, a window of either, or an object.

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What identifies one version of a file or object, for cache keys and change detection.
/// Local: (length, modification time, inode). Remote: (size, Last-Modified, a hash of the
/// ETag or version id, the ETag itself); an object rewritten with new content gets a new ETag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    pub size: u64,
    /// Nanoseconds since the Unix epoch (Last-Modified has whole seconds).
    pub mtime_ns: i64,
    /// The inode locally; FNV-1a of the ETag (or version id) remotely; 0 when unknown.
    pub version: u64,
    /// The ETag as the store sent it (quotes included), remote only.
    pub etag: Option<String>,
}

impl Identity {
    /// A local file's identity from its metadata.
    pub fn of_metadata(m: &std::fs::Metadata) -> Identity {
        Identity {
            size: m.len(),
            mtime_ns: mtime_ns(m),
            version: inode(m),
            etag: None,
        }
    }
}

#[cfg(unix)]
fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    m.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec())
}

#[cfg(not(unix))]
fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    let Ok(t) = m.modified() else { return 0 };
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_m: &std::fs::Metadata) -> u64 {
    0
}

/// Random access to one file's or object's bytes.
///
/// Readers call [`ByteSource::read_exact_at`] as they would `pread`; a remote source serves
/// it from blocks it has fetched, fetching what is missing. [`ByteSource::prefetch`] tells a
/// remote source which ranges are about to be read so it can fetch them in one round of
/// parallel, coalesced requests: correctness never depends on it, only the request count.
pub trait ByteSource: Send + Sync + Debug {
    /// The path or URL, for messages.
    fn path(&self) -> &Path;
    /// The length in bytes, fixed when the source was opened.
    fn len(&self) -> u64 {
        self.identity().size
    }
    /// Whether the source has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The version this source reads.
    fn identity(&self) -> &Identity;
    /// Fill `buf` from `offset`; a range past the end is `UnexpectedEof`, as `pread` is.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Ranges about to be read (a hint; a no-op for local files and memory).
    fn prefetch(&self, _ranges: &[Range<u64>]) {}
    /// The open local file, for kernel copies (`copy_file_range`); `None` otherwise.
    fn as_file(&self) -> Option<&File> {
        None
    }
    /// All the bytes, when they are already in memory (a small file read whole).
    fn as_bytes(&self) -> Option<&Arc<[u8]>> {
        None
    }
    /// How many reads so far failed for a reason that says nothing about the bytes (a
    /// request that failed, an object replaced since it was listed): a caller that saw a
    /// problem while reading asks this to tell "damaged" (remember it) from "try again"
    /// (remember nothing). Always 0 for local files and memory, whose failures are the file's.
    fn failed_reads(&self) -> u64 {
        0
    }
}

/// A local regular file, opened by [`crate::open::open_regular`] and read with `pread`.
#[derive(Debug)]
pub struct LocalFile {
    path: PathBuf,
    file: Arc<File>,
    id: Identity,
}

impl LocalFile {
    /// Open `path` with [`crate::open::open_regular`]'s checks.
    pub fn open(path: &Path) -> Result<LocalFile, crate::OpenError> {
        let file = crate::open::open_regular(path)?;
        let m = file.metadata()?;
        Ok(LocalFile {
            path: path.to_path_buf(),
            file: Arc::new(file),
            id: Identity::of_metadata(&m),
        })
    }

    /// A file already open (its identity from `fstat`).
    pub fn from_file(path: &Path, file: Arc<File>) -> io::Result<LocalFile> {
        let m = file.metadata()?;
        Ok(LocalFile {
            path: path.to_path_buf(),
            file,
            id: Identity::of_metadata(&m),
        })
    }

    /// The shared descriptor.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }
}

impl ByteSource for LocalFile {
    fn path(&self) -> &Path {
        &self.path
    }
    fn identity(&self) -> &Identity {
        &self.id
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        pread_exact(&self.file, buf, offset)
    }
    fn as_file(&self) -> Option<&File> {
        Some(&self.file)
    }
}

#[cfg(unix)]
fn pread_exact(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn pread_exact(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

/// Bytes already in memory (a small file read whole, once, for both the scan and the reader).
#[derive(Debug)]
struct Mem {
    path: PathBuf,
    bytes: Arc<[u8]>,
    id: Identity,
}

/// A source over `bytes`, which are all of `path` (identity `id`, its size taken from the bytes).
pub fn mem(path: &Path, bytes: Arc<[u8]>, id: Identity) -> Arc<dyn ByteSource> {
    let id = Identity {
        size: bytes.len() as u64,
        ..id
    };
    Arc::new(Mem {
        path: path.to_path_buf(),
        bytes,
        id,
    })
}

impl ByteSource for Mem {
    fn path(&self) -> &Path {
        &self.path
    }
    fn identity(&self) -> &Identity {
        &self.id
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        copy_at(&self.bytes, buf, offset)
    }
    fn as_bytes(&self) -> Option<&Arc<[u8]>> {
        Some(&self.bytes)
    }
}

/// `read_exact_at` on bytes in memory: the same error past the end.
pub(crate) fn copy_at(bytes: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let src = usize::try_from(offset)
        .ok()
        .and_then(|s| bytes.get(s..s.checked_add(buf.len())?));
    match src {
        Some(src) => {
            buf.copy_from_slice(src);
            Ok(())
        }
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "failed to fill whole buffer",
        )),
    }
}

/// `len` bytes of `inner` from `offset`, as a source of their own (each chunk of a DCP
/// `.distcp` file is a whole torch.save archive). Its identity is the inner one with the
/// window's size.
#[derive(Debug)]
struct Window {
    inner: Arc<dyn ByteSource>,
    offset: u64,
    id: Identity,
}

/// A window of `inner`; `None` when `offset + len` runs past its end.
pub fn window(inner: Arc<dyn ByteSource>, offset: u64, len: u64) -> Option<Arc<dyn ByteSource>> {
    let end = offset.checked_add(len)?;
    if end > inner.len() {
        return None;
    }
    let id = Identity {
        size: len,
        ..inner.identity().clone()
    };
    Some(Arc::new(Window { inner, offset, id }))
}

impl ByteSource for Window {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn identity(&self) -> &Identity {
        &self.id
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.id.size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "failed to fill whole buffer",
            ));
        }
        self.inner.read_exact_at(buf, self.offset + offset)
    }
    fn prefetch(&self, ranges: &[Range<u64>]) {
        let shifted: Vec<Range<u64>> = ranges
            .iter()
            .filter_map(|r| {
                let s = r.start.checked_add(self.offset)?;
                let e = r.end.min(self.id.size).checked_add(self.offset)?;
                (s < e).then_some(s..e)
            })
            .collect();
        self.inner.prefetch(&shifted);
    }
    fn failed_reads(&self) -> u64 {
        self.inner.failed_reads()
    }
    fn as_file(&self) -> Option<&File> {
        // Offsets differ from the file's: callers of `as_file` use file offsets, so a window
        // offers no fast path (DCP chunks are copied through `read_exact_at`).
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_memory_and_windows_read_the_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        let f: Arc<dyn ByteSource> = Arc::new(LocalFile::open(&p).unwrap());
        assert_eq!(f.len(), 10);
        let m = mem(&p, Arc::from(&b"0123456789"[..]), f.identity().clone());
        for src in [&f, &m] {
            let mut b = [0u8; 3];
            src.read_exact_at(&mut b, 7).unwrap();
            assert_eq!(&b, b"789");
            let e = src.read_exact_at(&mut b, 8).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            let w = window(src.clone(), 2, 5).unwrap();
            assert_eq!(w.len(), 5);
            w.read_exact_at(&mut b, 2).unwrap();
            assert_eq!(&b, b"456");
            assert!(w.read_exact_at(&mut b, 3).is_err(), "past the window");
            assert!(window(src.clone(), 8, 3).is_none());
        }
        assert!(f.as_file().is_some());
        assert!(m.as_bytes().is_some());
    }
}
