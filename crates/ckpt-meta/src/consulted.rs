//! What resolving a checkpoint looked at: every path consulted, with the fingerprint it had
//! when it was consulted — a file read, a file or folder whose existence was checked (and
//! found absent), a folder listed.
//!
//! Why: the catalog keeps resolved entries between runs, and an entry depends on far more
//! than the checkpoint (its run's Hydra config, `hparams.yaml`, `metrics.csv`, a logger's
//! files, whether a `last.ckpt` sits beside it). A cached entry is served only when every
//! path it consulted still has the fingerprint it had, so the set must be complete by
//! construction, not by a list someone keeps up to date: every reader of the places around a
//! checkpoint goes through the functions of this module (a test in `sources` refuses direct
//! `std::fs` reads there), and [`record`] collects what they touched on this thread. The
//! per-run memo of parsed folders ([`crate::sources::DirCache`]) replays what a load
//! consulted on every hit, so a checkpoint that reuses a parsed folder depends on its files
//! too.
//!
//! A fingerprint is taken *before* the read it guards: when a file changes between the two,
//! the stored fingerprint is the old one and the next run sees a change (the safe direction).

use std::cell::RefCell;
use std::fs::Metadata;
use std::io;
use std::path::Path;
use std::sync::Arc;

use ckpt_io::{ByteSource, DirEntry, Identity, Kind, Listing, OpenError, Stat};

/// A path's state as `stat` sees it: kind, size, modification time (ns), inode; [`ABSENT`]
/// when there is nothing there. For an object in a bucket: size, Last-Modified and ETag; for a
/// prefix, the names and kinds of what it holds (as a local folder's mtime tracks its entries).
pub type Fingerprint = u64;

/// The fingerprint of a path where nothing exists.
pub const ABSENT: Fingerprint = 0;

/// The fingerprint recorded for a path that changed while it was being read: no path ever
/// has it, so an entry that consulted one is resolved again next time.
pub const CHANGING: Fingerprint = u64::MAX;

/// One consulted path and its fingerprint then.
pub type Consult = (Arc<Path>, Fingerprint);

thread_local! {
    /// The open recordings of this thread, innermost last.
    static STACK: RefCell<Vec<Vec<Consult>>> = const { RefCell::new(Vec::new()) };
}

/// FNV-1a over `bytes`, continuing from `h`: stable across runs and builds (it keys rows of
/// a cache on disk), no dependency.
pub fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a's offset basis.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// How recent a modification time must be for the path to count as still changing: file
/// systems stamp times from a coarse clock (milliseconds), so a change made right after a
/// stat may leave the same time behind. A path modified this recently is
/// [`CHANGING`] (read again next time), as git treats "racily clean" files. Objects in a
/// bucket have no such window: a PUT replaces an object whole and its ETag follows the content.
pub const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// The fingerprint of what `stat` said about a local path.
pub fn fingerprint_of(m: &Metadata) -> Fingerprint {
    let kind = if m.is_dir() {
        Kind::Dir
    } else if m.is_file() {
        Kind::File
    } else {
        Kind::Other("")
    };
    local_fingerprint(kind, &Identity::of_metadata(m))
}

/// A local path's fingerprint from its kind and identity (mtime in ns, inode in `version`).
fn local_fingerprint(kind: Kind, id: &Identity) -> Fingerprint {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0i128, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    // Modified less than the window ago, or in the future.
    let racy = now_ns - i128::from(id.mtime_ns) < RACY_WINDOW.as_nanos() as i128;
    if racy {
        return CHANGING;
    }
    // Before the epoch counts as the epoch (as it always has: these fingerprints are stored).
    let mtime_ns = u128::try_from(id.mtime_ns).unwrap_or(0);
    let kind: u8 = match kind {
        Kind::Dir => 1,
        Kind::File => 2,
        Kind::Other(_) => 3,
    };
    let mut h = fnv(FNV_START, &[kind]);
    h = fnv(h, &id.size.to_le_bytes());
    h = fnv(h, &mtime_ns.to_le_bytes());
    h = fnv(h, &id.version.to_le_bytes());
    // Never ABSENT or CHANGING for something that exists.
    h.clamp(1, CHANGING - 1)
}

/// The fingerprint of an object in a bucket, from its listing: size, Last-Modified and ETag
/// (the version hash when the store gave no ETag). No racy window: an object is replaced
/// whole, and its ETag changes with its content.
pub fn object_fingerprint(id: &Identity) -> Fingerprint {
    let mut h = fnv(FNV_START, &[2]);
    h = fnv(h, &id.size.to_le_bytes());
    h = fnv(h, &id.mtime_ns.to_le_bytes());
    match &id.etag {
        Some(etag) => h = fnv(h, etag.as_bytes()),
        None => h = fnv(fnv(h, b"\0v"), &id.version.to_le_bytes()),
    }
    h.clamp(1, CHANGING - 1)
}

/// The fingerprint of a prefix from its listing: the names and kinds of its entries, sorted
/// (what a local folder's mtime tracks). A listing that is not complete is [`CHANGING`]: what
/// depends on it is resolved again, never served from what was only partly seen.
pub fn prefix_fingerprint(listing: &Listing) -> Fingerprint {
    if !listing.complete {
        return CHANGING;
    }
    let mut names: Vec<(&[u8], u8)> = listing
        .entries
        .iter()
        .map(|e| {
            let name = e.path.file_name().map_or(&[][..], |n| n.as_encoded_bytes());
            let kind = match e.kind {
                Kind::Dir => 1,
                Kind::File => 2,
                Kind::Other(_) => 3,
            };
            (name, kind)
        })
        .collect();
    names.sort_unstable();
    let mut h = fnv(FNV_START, &[1]);
    for (n, k) in names {
        h = fnv(h, n);
        h = fnv(h, &[0, k]);
    }
    h.clamp(1, CHANGING - 1)
}

/// The fingerprint of an error other than "not found" (permission denied, a loop, a failed
/// request): its own value, so a path that becomes readable again counts as changed.
fn error_fingerprint(e: &io::Error) -> Fingerprint {
    fnv(FNV_START, format!("error {:?}", e.kind()).as_bytes()).max(1)
}

/// The fingerprint of `path`, given what `stat` said about it. Remote: an object's from its
/// listing, a prefix's from its own (memoized) listing.
fn fingerprint_at(path: &Path, st: &io::Result<Stat>) -> Fingerprint {
    match st {
        Ok(s) if ckpt_io::is_remote(path) => match s.kind {
            Kind::Dir => match ckpt_io::read_dir(path) {
                Ok(l) => prefix_fingerprint(&l),
                Err(e) => error_fingerprint(&e),
            },
            Kind::File => object_fingerprint(&s.identity),
            Kind::Other(_) => local_fingerprint(s.kind, &s.identity),
        },
        Ok(s) => local_fingerprint(s.kind, &s.identity),
        Err(e) if e.kind() == io::ErrorKind::NotFound => ABSENT,
        Err(e) => error_fingerprint(e),
    }
}

/// Is `path` above every bucket: what `parent()` gives past a bucket's root (`s3://b` →
/// `s3:`, then `s3:/hparams.yaml` once joined)? Such a path names nothing (it is never asked
/// of a store, where it would name another bucket). Paths in buckets are spelled `s3://…` by
/// the walk and the byte layer; a folder lookup climbing from a checkpoint stops here.
pub fn beyond_buckets(path: &Path) -> bool {
    let Some(s) = path.to_str() else {
        return false;
    };
    ["s3:", "gs:", "az:"].iter().any(|scheme| {
        s.strip_prefix(scheme).is_some_and(|rest| {
            (rest.is_empty() || rest.starts_with('/')) && !rest.starts_with("//")
        })
    })
}

/// `stat` through the byte layer, with nothing beyond the buckets ([`beyond_buckets`]).
/// Remote: a path whose parent prefix does not exist is not there either, answered from the
/// grandparent's listing (memoized by the walk) instead of a LIST of a prefix that is not
/// there (`.hydra/`, `wandb/` beside every checkpoint folder cost one each).
fn stat(path: &Path) -> io::Result<Stat> {
    if beyond_buckets(path) {
        return Err(io::ErrorKind::NotFound.into());
    }
    if ckpt_io::is_remote(path)
        && let Some(parent) = path.parent()
        && ckpt_io::is_remote(parent)
        && !is_bucket_root(parent)
    {
        match stat(parent) {
            // (An object that is also a prefix is listed as the object: ask about the child.)
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    ckpt_io::stat(path)
}

/// Is `path` a bucket's root (`s3://b`), which always exists as a prefix?
fn is_bucket_root(path: &Path) -> bool {
    matches!(ckpt_io::Location::parse(path), ckpt_io::Location::Remote(u) if u.key.is_empty())
}

/// The fingerprint of `path` now (following symlinks, as every read here does). An error
/// other than "not found" (permission denied, a loop) gets its own fingerprint, so a path
/// that becomes readable again counts as changed. Remote paths are answered from the
/// memoized listings (no request for a prefix already listed in this process).
pub fn fingerprint(path: &Path) -> Fingerprint {
    fingerprint_at(path, &stat(path))
}

/// Run `f`, returning what it consulted on this thread (sorted by path, each path once).
/// Recordings nest: what the inner one saw is also seen by the outer ones.
pub fn record<R>(f: impl FnOnce() -> R) -> (R, Vec<Consult>) {
    STACK.with(|s| s.borrow_mut().push(Vec::new()));
    // Popped even when `f` unwinds (the catalog catches panics per checkpoint and goes on
    // on the same thread).
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            STACK.with(|s| {
                s.borrow_mut().pop();
            });
        }
    }
    let pop = Pop;
    let r = f();
    let mut seen = STACK
        .with(|s| s.borrow_mut().last_mut().map(std::mem::take))
        .unwrap_or_default();
    drop(pop);
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    // A path seen twice with two fingerprints changed while it was read: what was read is
    // of no known state, so the entry must not be served again as is.
    seen.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same && later.1 != first.1 {
            first.1 = CHANGING;
        }
        same
    });
    note_all(&seen);
    (r, seen)
}

/// Is a recording open on this thread? (Fingerprints cost a `stat`; none is taken when
/// nobody records.)
pub fn recording() -> bool {
    STACK.with(|s| !s.borrow().is_empty())
}

/// Add consulted paths to the innermost recording of this thread, if any.
pub fn note_all(items: &[Consult]) {
    if items.is_empty() {
        return;
    }
    STACK.with(|s| {
        if let Some(top) = s.borrow_mut().last_mut() {
            top.extend(items.iter().cloned());
        }
    });
}

/// Note `path` with a fingerprint already known (a folder listed by the caller).
pub fn note(path: &Path, fp: Fingerprint) {
    STACK.with(|s| {
        if let Some(top) = s.borrow_mut().last_mut() {
            top.push((Arc::from(path), fp));
        }
    });
}

/// Note `path` with its fingerprint now, when someone records.
fn note_now(path: &Path) {
    if recording() {
        note(path, fingerprint(path));
    }
}

/// `stat` of `path` (a local path, or an object or prefix in a bucket: from its parent's
/// memoized listing), noted.
pub fn metadata(path: &Path) -> io::Result<Stat> {
    let m = stat(path);
    if recording() {
        note(path, fingerprint_at(path, &m));
    }
    m
}

/// Is `path` a file (following symlinks)? Noted, found or not.
pub fn is_file(path: &Path) -> bool {
    metadata(path).is_ok_and(|m| m.kind == Kind::File)
}

/// Is `path` a folder (following symlinks)? Noted, found or not.
pub fn is_dir(path: &Path) -> bool {
    metadata(path).is_ok_and(|m| m.kind == Kind::Dir)
}

/// List a folder (or a prefix), sorted by path. The folder is noted: its modification time
/// changes when an entry is added, removed or renamed, which is what a listing depends on.
///
/// A local listing reads each entry's type from the folder itself (no `stat` per entry: the
/// identities are left out) and follows only symbolic links. A remote one is the memoized
/// listing of the prefix; one that is not complete is noted [`CHANGING`].
pub fn read_dir(path: &Path) -> io::Result<Listing> {
    if beyond_buckets(path) {
        note_now(path);
        return Err(io::ErrorKind::NotFound.into());
    }
    if ckpt_io::is_remote(path) {
        // A prefix its parent's listing does not show is not listed (`wandb/` is looked for
        // beside every run folder).
        let l = match stat(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
            _ => ckpt_io::read_dir(path),
        };
        note_now(path);
        return l;
    }
    note_now(path);
    local_listing(path)
}

/// A local folder's entries, sorted, with their kinds from the folder (`d_type`); symbolic
/// links are followed to say what they point at.
fn local_listing(path: &Path) -> io::Result<Listing> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(path)? {
        let Ok(e) = e else { continue };
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        let symlink = ft.is_symlink();
        let kind = if symlink {
            match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => Kind::File,
                Ok(m) if m.is_dir() => Kind::Dir,
                Ok(m) => Kind::Other(ckpt_io::kind_of(m.file_type())),
                Err(_) => Kind::Other("a broken symbolic link"),
            }
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other(ckpt_io::kind_of(ft))
        };
        entries.push(DirEntry {
            path: p,
            kind,
            symlink,
            identity: None,
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Listing {
        entries,
        complete: true,
    })
}

/// The name of a listed entry (its last path segment), lossily as text.
pub fn entry_name(e: &DirEntry) -> String {
    e.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// [`ckpt_io::read_small`], noted. Remote: one GET of the object as its listing gave it
/// (conditional on that ETag, so what is read is what was fingerprinted); a failed read is
/// noted [`CHANGING`] (a network failure or a replaced object says nothing to remember).
pub fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, OpenError> {
    if !ckpt_io::is_remote(path) && !beyond_buckets(path) {
        note_now(path);
        return ckpt_torch::open::read_small(path, limit);
    }
    let src = open(path)?;
    let len = src.len();
    if len > limit {
        return Err(OpenError::TooLarge { limit });
    }
    let n = usize::try_from(len).map_err(|_| OpenError::TooLarge { limit })?;
    let mut buf = vec![0u8; n];
    if let Err(e) = src.read_exact_at(&mut buf, 0) {
        note_failed(path);
        return Err(OpenError::Io(e));
    }
    Ok(buf)
}

/// [`read_small`] as UTF-8 text (invalid UTF-8 is an `InvalidData` I/O error).
pub fn read_small_text(path: &Path, limit: u64) -> Result<String, OpenError> {
    let buf = read_small(path, limit)?;
    String::from_utf8(buf).map_err(|e| {
        OpenError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {e}"),
        ))
    })
}

/// Open `path` for reading by ranges, noted: a local regular file
/// ([`ckpt_torch::open::open_regular`]'s checks), or an object opened with the identity its
/// listing gave (no request to learn it; every read conditional on it).
pub fn open(path: &Path) -> Result<Arc<dyn ByteSource>, OpenError> {
    if !ckpt_io::is_remote(path) && !beyond_buckets(path) {
        note_now(path);
        return Ok(Arc::new(ckpt_io::LocalFile::open(path)?));
    }
    let st = stat(path);
    if recording() {
        note(path, fingerprint_at(path, &st));
    }
    let st = st?;
    if st.kind != Kind::File {
        return Err(OpenError::NotAFile {
            what: match st.kind {
                Kind::Dir => "a directory",
                Kind::Other(w) => w,
                Kind::File => "a regular file",
            },
        });
    }
    ckpt_io::open_known(path, &st.identity).inspect_err(|_| note_failed(path))
}

/// A remote read failed: what was noted for `path` must not validate a cached entry.
fn note_failed(path: &Path) {
    if recording() {
        note(path, CHANGING);
    }
}

/// Do the consulted paths still have the fingerprints they had? `now` gives a path's
/// fingerprint (the caller memoizes: many checkpoints consult the same folders).
pub fn unchanged(consulted: &[(String, Fingerprint)], now: &dyn Fn(&str) -> Fingerprint) -> bool {
    consulted
        .iter()
        .all(|(p, fp)| *fp != CHANGING && now(p) == *fp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_sees_reads_checks_and_listings_once_each_sorted() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.yaml");
        std::fs::write(&a, "x: 1\n").unwrap();
        let missing = d.path().join("nope.yaml");
        write_old(&a, "x: 1\n");
        let ((), seen) = record(|| {
            assert!(is_file(&a));
            assert!(!is_file(&missing));
            assert_eq!(read_small_text(&a, 100).unwrap(), "x: 1\n");
            assert!(read_dir(d.path()).is_ok());
        });
        let paths: Vec<&Path> = seen.iter().map(|(p, _)| &**p).collect();
        assert_eq!(paths, vec![d.path(), a.as_path(), missing.as_path()]);
        assert_eq!(seen[2].1, ABSENT);
        assert_ne!(seen[1].1, ABSENT);
        assert_ne!(seen[0].1, ABSENT);
    }

    #[test]
    fn recordings_nest_and_nothing_is_kept_without_one() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::write(&a, "1").unwrap();
        assert!(is_file(&a));
        assert!(!recording());
        let (inner, outer) = record(|| {
            let ((), inner) = record(|| {
                is_file(&a);
            });
            inner
        });
        assert_eq!(inner.len(), 1);
        assert_eq!(outer, inner);
        assert!(!recording());
    }

    #[test]
    fn a_panic_inside_a_recording_closes_it() {
        let r = std::panic::catch_unwind(|| record(|| panic!("boom")));
        assert!(r.is_err());
        assert!(!recording());
    }

    /// Write `text` to `p` and date it an hour back (out of the racy window).
    fn write_old(p: &Path, text: &str) {
        std::fs::write(p, text).unwrap();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }

    #[test]
    fn fingerprints_change_with_content_and_existence() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        assert_eq!(fingerprint(&a), ABSENT);
        write_old(&a, "1");
        let one = fingerprint(&a);
        assert_ne!(one, ABSENT);
        assert_ne!(one, CHANGING);
        write_old(&a, "22");
        assert_ne!(fingerprint(&a), one);
        let table = [(a.display().to_string(), fingerprint(&a))];
        assert!(unchanged(&table, &|p| fingerprint(Path::new(p))));
        std::fs::remove_file(&a).unwrap();
        assert!(!unchanged(&table, &|p| fingerprint(Path::new(p))));
    }

    #[test]
    fn a_path_modified_just_now_is_changing_and_never_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::write(&a, "1").unwrap();
        assert_eq!(fingerprint(&a), CHANGING);
        let table = [(a.display().to_string(), CHANGING)];
        assert!(!unchanged(&table, &|p| fingerprint(Path::new(p))));
    }

    fn id(size: u64, mtime_ns: i64, etag: Option<&str>, version: u64) -> Identity {
        Identity {
            size,
            mtime_ns,
            version,
            etag: etag.map(str::to_owned),
        }
    }

    fn entry(path: &str, kind: Kind) -> DirEntry {
        DirEntry {
            path: Path::new(path).to_path_buf(),
            kind,
            symlink: false,
            identity: None,
        }
    }

    #[test]
    fn an_objects_fingerprint_follows_its_size_time_and_etag() {
        let base = id(10, 1_700_000_000_000_000_000, Some("\"abc\""), 7);
        let fp = object_fingerprint(&base);
        assert!(fp != ABSENT && fp != CHANGING);
        assert_eq!(object_fingerprint(&base.clone()), fp);
        for changed in [
            id(11, base.mtime_ns, Some("\"abc\""), 7),
            id(10, base.mtime_ns + 1_000_000_000, Some("\"abc\""), 7),
            id(10, base.mtime_ns, Some("\"abd\""), 7),
        ] {
            assert_ne!(object_fingerprint(&changed), fp, "{changed:?}");
        }
        // With an ETag, the version hash (derived from it) adds nothing; without one, the
        // version id is what tells two objects apart.
        assert_eq!(
            object_fingerprint(&id(10, base.mtime_ns, Some("\"abc\""), 8)),
            fp
        );
        let v1 = object_fingerprint(&id(10, 5, None, 1));
        assert_ne!(v1, object_fingerprint(&id(10, 5, None, 2)));
        assert!(v1 != ABSENT && v1 != CHANGING);
        // Recent objects are not "racy": a PUT is atomic.
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        assert_ne!(object_fingerprint(&id(1, now_ns, Some("e"), 0)), CHANGING);
    }

    #[test]
    fn a_prefixs_fingerprint_follows_the_names_and_kinds_it_holds() {
        let listing = |entries: Vec<DirEntry>, complete| Listing { entries, complete };
        let a = listing(
            vec![
                entry("s3://b/run/a.ckpt", Kind::File),
                entry("s3://b/run/logs", Kind::Dir),
            ],
            true,
        );
        let fp = prefix_fingerprint(&a);
        assert!(fp != ABSENT && fp != CHANGING);
        // Order does not matter; an object rewritten in place does not change its prefix
        // (as a local file rewritten leaves its folder's mtime alone).
        let mut b = a.clone();
        b.entries.reverse();
        b.entries[1].identity = Some(id(99, 1, Some("x"), 0));
        assert_eq!(prefix_fingerprint(&b), fp);
        // An entry added, removed, or turned from a prefix into an object changes it.
        let mut added = a.clone();
        added.entries.push(entry("s3://b/run/b.ckpt", Kind::File));
        assert_ne!(prefix_fingerprint(&added), fp);
        let removed = listing(vec![entry("s3://b/run/a.ckpt", Kind::File)], true);
        assert_ne!(prefix_fingerprint(&removed), fp);
        let mut kind = a.clone();
        kind.entries[1].kind = Kind::File;
        assert_ne!(prefix_fingerprint(&kind), fp);
        // Names, not paths: the same names under another spelling of the prefix are the same.
        let respelled = listing(
            vec![
                entry("s3:/b/run/a.ckpt", Kind::File),
                entry("s3:/b/run/logs", Kind::Dir),
            ],
            true,
        );
        assert_eq!(prefix_fingerprint(&respelled), fp);
        // What was seen only in part validates nothing.
        assert_eq!(
            prefix_fingerprint(&listing(a.entries.clone(), false)),
            CHANGING
        );
        // An empty prefix is not absent.
        assert_ne!(prefix_fingerprint(&listing(Vec::new(), true)), ABSENT);
    }

    /// The local fingerprints are stored in caches on disk: taking them through the byte
    /// layer's `Stat` must give the very values `std::fs::Metadata` gave.
    #[test]
    fn local_fingerprints_are_the_ones_metadata_gave() {
        fn before(m: &Metadata) -> Fingerprint {
            let mtime_ns = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let inode = std::os::unix::fs::MetadataExt::ino(m);
            let kind: u8 = if m.is_dir() {
                1
            } else if m.is_file() {
                2
            } else {
                3
            };
            let mut h = fnv(FNV_START, &[kind]);
            h = fnv(h, &m.len().to_le_bytes());
            h = fnv(h, &mtime_ns.to_le_bytes());
            h = fnv(h, &inode.to_le_bytes());
            h.clamp(1, CHANGING - 1)
        }
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        write_old(&a, "hello");
        let m = std::fs::metadata(&a).unwrap();
        assert_eq!(fingerprint_of(&m), before(&m));
        assert_eq!(fingerprint(&a), before(&m));
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::open(&sub)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        let m = std::fs::metadata(&sub).unwrap();
        assert_eq!(fingerprint(&sub), before(&m));
        let ((), seen) = record(|| {
            assert!(metadata(&a).is_ok_and(|s| s.kind == Kind::File));
        });
        assert_eq!(seen[0].1, fingerprint(&a));
    }

    #[test]
    fn a_local_listing_is_sorted_with_kinds_and_followed_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b.yaml"), "x").unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("c")).unwrap();
        std::os::unix::fs::symlink(d.path().join("none"), d.path().join("d")).unwrap();
        let (l, seen) = record(|| read_dir(d.path()).unwrap());
        assert!(l.complete);
        let got: Vec<(String, Kind, bool)> = l
            .entries
            .iter()
            .map(|e| (entry_name(e), e.kind, e.symlink))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".into(), Kind::Dir, false),
                ("b.yaml".into(), Kind::File, false),
                ("c".into(), Kind::Dir, true),
                ("d".into(), Kind::Other("a broken symbolic link"), true),
            ]
        );
        assert_eq!(seen.len(), 1);
        assert_eq!(&*seen[0].0, d.path());
        assert!(read_dir(&d.path().join("b.yaml")).is_err());
    }

    #[test]
    fn an_opened_file_is_noted_and_read_by_ranges() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("m.csv");
        write_old(&a, "step,loss\n1,0.5\n");
        let (src, seen) = record(|| open(&a).unwrap());
        assert_eq!(src.len(), 16);
        let mut buf = [0u8; 4];
        src.read_exact_at(&mut buf, 12).unwrap();
        assert_eq!(&buf, b"0.5\n");
        assert_eq!(seen, vec![(Arc::from(a.as_path()), fingerprint(&a))]);
        assert!(matches!(
            open(d.path()),
            Err(OpenError::NotAFile {
                what: "a directory"
            })
        ));
    }

    #[test]
    fn nothing_is_beyond_a_buckets_root() {
        let ck = Path::new("s3://b/x.ckpt");
        let above: Vec<&Path> = ck.ancestors().skip(2).collect();
        assert_eq!(above, [Path::new("s3:"), Path::new("")]);
        for p in [
            Path::new("s3:"),
            &Path::new("s3:").join("hparams.yaml"),
            &Path::new("gs:").join(".hydra/config.yaml"),
            Path::new("az:/wandb"),
        ] {
            assert!(beyond_buckets(p), "{}", p.display());
            let ((), seen) = record(|| {
                assert!(!is_file(p) && !is_dir(p));
                assert!(read_dir(p).is_err());
                assert!(read_small(p, 10).is_err());
            });
            assert!(seen.iter().all(|(_, fp)| *fp == ABSENT), "{seen:?}");
        }
        for p in ["s3://b", "s3://b/k", "/s3:/x", "s3", "s3x:/y", "./s3:"] {
            assert!(!beyond_buckets(Path::new(p)), "{p}");
        }
    }

    /// Every reader of the places around a checkpoint goes through this module, or the
    /// catalog could serve an entry whose inputs changed. Direct reads in those files (outside
    /// their tests) fail here with the line to change.
    #[test]
    fn readers_around_a_checkpoint_read_only_through_this_module() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![
            src.join("config.rs"),
            src.join("sidecar.rs"),
            src.join("hash_folder.rs"),
        ];
        let mut stack = vec![src.join("sources")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("tests.rs") {
                    files.push(p);
                }
            }
        }
        assert!(files.len() >= 10, "{files:?}");
        let forbidden = [
            "fs::read",
            "fs::metadata",
            "fs::symlink_metadata",
            "File::open",
            ".is_file()",
            ".is_dir()",
            ".exists()",
            "open::read_small",
            "open::open_regular",
            "canonicalize",
            // The byte layer reads without noting (local or remote alike).
            "ckpt_io::open",
            "ckpt_io::read",
            "ckpt_io::stat",
            "LocalFile",
            ".file_type()",
        ];
        let mut bad = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            // Up to the tests at the bottom of the file.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                let line = line.split("//").next().unwrap_or("");
                if forbidden.iter().any(|x| line.contains(x)) {
                    bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "read through ckpt_meta::consulted:\n{}",
            bad.join("\n")
        );
    }
}
