//! Finding checkpoints in output trees: files, DCP directories, sharded Hugging Face folders.
//! The walk is breadth-first with each level's folders read in parallel; symlinked folders are
//! followed once (a loop is a warning, not a hang); the result is sorted, so output never
//! depends on thread timing.
//!
//! A root in a bucket (`s3://b/prefix`) is walked the same way, prefix by prefix: each level's
//! prefixes are listed in parallel, as many at once as requests may be in flight
//! ([`io_width`]), and a folder means what it means locally (DCP folders, sharded Hugging Face
//! folders, sidecars beside checkpoints). Each object's size, time and ETag come from its
//! listing ([`Listed`]), so keys and fingerprints cost no request of their own. A listing that
//! failed or is partial is a warning, and its root is marked incomplete ([`Seen::incomplete`]):
//! what was not seen must not be taken for gone.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use ckpt_meta::consulted::{self, Fingerprint};

/// File extensions that hold checkpoints (one list for every command).
pub use ckpt_torch::names::CHECKPOINT_EXTENSIONS as EXTENSIONS;

/// What kind of thing a catalog entry is (the readers of the metadata crate decide what to
/// read by it).
pub use ckpt_meta::sources::Kind;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Candidate {
    pub path: PathBuf,
    pub kind: Kind,
    /// The root (as given) it was found under.
    pub root: PathBuf,
    /// A file's `stat` taken while its folder was listed (relative to the open folder: no
    /// walk of the whole path; an object's from its prefix's listing), when it was; the
    /// catalog's cache key is made from it.
    pub meta: Option<Listed>,
}

/// A `stat` taken while listing (an object's size, Last-Modified and ETag, as the listing
/// gave them): carried along, never part of what a candidate is (two candidates compare, sort
/// and hash by path, kind and root only).
#[derive(Debug, Clone)]
pub struct Listed(pub ckpt_io::Stat);

impl Listed {
    /// A local file's, from its metadata.
    pub fn of_metadata(m: &std::fs::Metadata) -> Listed {
        Listed(stat_of_metadata(m))
    }

    /// The identity (for [`ckpt_io::open_known`] and the cache key).
    pub fn identity(&self) -> &ckpt_io::Identity {
        &self.0.identity
    }
}

/// A [`ckpt_io::Stat`] from local metadata (what [`ckpt_io::stat`] gives, without asking again).
pub fn stat_of_metadata(m: &std::fs::Metadata) -> ckpt_io::Stat {
    let kind = if m.is_file() {
        ckpt_io::Kind::File
    } else if m.is_dir() {
        ckpt_io::Kind::Dir
    } else {
        ckpt_io::Kind::Other(ckpt_torch::open::kind_of(m.file_type()))
    };
    ckpt_io::Stat {
        kind,
        identity: ckpt_io::Identity::of_metadata(m),
    }
}

/// How many objects or prefixes are read at once: `CKPT_IO_MAX_IN_FLIGHT` (default 16), the
/// bound the byte layer puts on requests in flight (the work waits on the network, not on the
/// cores). Read once per process.
pub fn io_width() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("CKPT_IO_MAX_IN_FLIGHT")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(16)
    })
}

impl PartialEq for Listed {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Listed {}

impl PartialOrd for Listed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Listed {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl std::hash::Hash for Listed {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

#[derive(Debug, Clone, Copy)]
pub struct WalkOptions {
    pub recursive: bool,
    pub max_depth: Option<usize>,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            recursive: true,
            max_depth: None,
        }
    }
}

/// By name (`model_best.pth.tar` included), else by content for names that do not say.
fn is_checkpoint_file(p: &Path) -> bool {
    ckpt_torch::names::is_checkpoint_file(p)
}

/// By name only: for what must never be opened (a FIFO named `x.ckpt` is worth a warning).
fn named_like_a_checkpoint(p: &Path) -> bool {
    ckpt_torch::names::has_checkpoint_extension(p, EXTENSIONS)
}

/// A file's identity on its device.
fn dev_ino(m: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        (m.dev(), m.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        (0, 0)
    }
}

/// What one folder holds.
struct Listing {
    dir: PathBuf,
    /// The folder's fingerprint, taken before it was listed.
    fingerprint: Fingerprint,
    /// Files that are symbolic links (their target can change without the folder changing).
    links: Vec<PathBuf>,
    /// The `stat` of the checkpoint-named regular files (of every object, remotely), taken
    /// while listing.
    metas: HashMap<PathBuf, Listed>,
    /// Remote: which files are checkpoints, judged in the listing's worker (a judgement by
    /// content is a request); `None` locally (judged as the folder is taken in).
    checkpoints: Option<HashSet<PathBuf>>,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    /// FIFOs, sockets and devices: never opened (a FIFO would block the read forever).
    special: Vec<(PathBuf, &'static str)>,
    error: Option<String>,
    /// Remote: why the listing is not all there is (it failed, or a page of it did).
    incomplete: Option<String>,
}

/// Does a folder with these file names hold one checkpoint as a whole: a DCP folder, or a
/// sharded Hugging Face folder? (The rule the walk applies to each folder.)
fn folder_kind(names: &[&[u8]]) -> Option<Kind> {
    if names.iter().any(|n| *n == b".metadata") && names.iter().any(|n| n.ends_with(b".distcp")) {
        return Some(Kind::Dcp);
    }
    names
        .iter()
        .any(|n| *n == b"model.safetensors.index.json" || *n == b"pytorch_model.bin.index.json")
        .then_some(Kind::HfSharded)
}

/// What the walk of a bucket asks of the byte layer ([`ByteLayer`]; a fake in tests).
trait Lister: Sync {
    fn stat(&self, p: &Path) -> std::io::Result<ckpt_io::Stat>;
    fn read_dir(&self, p: &Path) -> std::io::Result<ckpt_io::Listing>;
}

/// [`ckpt_io::stat`] and [`ckpt_io::read_dir`]: memoized listings of prefixes.
struct ByteLayer;

impl Lister for ByteLayer {
    fn stat(&self, p: &Path) -> std::io::Result<ckpt_io::Stat> {
        ckpt_io::stat(p)
    }
    fn read_dir(&self, p: &Path) -> std::io::Result<ckpt_io::Listing> {
        ckpt_io::read_dir(p)
    }
}

impl Listing {
    /// Nothing found yet in `dir`, whose fingerprint is `fingerprint`.
    fn empty(dir: &Path, fingerprint: consulted::Fingerprint) -> Listing {
        Listing {
            dir: dir.to_path_buf(),
            fingerprint,
            links: Vec::new(),
            metas: HashMap::new(),
            checkpoints: None,
            files: Vec::new(),
            dirs: Vec::new(),
            special: Vec::new(),
            error: None,
            incomplete: None,
        }
    }
}

/// The listing of a prefix in a bucket (memoized by the byte layer, so a later `stat` or
/// fingerprint of anything in it costs no request). The fingerprint is the prefix's, from
/// this very listing ([`consulted::prefix_fingerprint`]).
fn list_remote(dir: &Path, io: &dyn Lister) -> Listing {
    let mut l = Listing::empty(dir, consulted::CHANGING);
    let listing = match io.read_dir(dir) {
        Ok(x) => x,
        Err(e) => {
            l.incomplete = Some(e.to_string());
            return l;
        }
    };
    l.fingerprint = consulted::prefix_fingerprint(&listing);
    if !listing.complete {
        l.incomplete = Some("a page of the listing failed".into());
    }
    for e in listing.entries {
        match e.kind {
            ckpt_io::Kind::Dir => l.dirs.push(e.path),
            ckpt_io::Kind::File => {
                if let Some(id) = e.identity {
                    l.metas.insert(
                        e.path.clone(),
                        Listed(ckpt_io::Stat {
                            kind: ckpt_io::Kind::File,
                            identity: id,
                        }),
                    );
                }
                l.files.push(e.path);
            }
            ckpt_io::Kind::Other(what) => l.special.push((e.path, what)),
        }
    }
    let names: Vec<&[u8]> = l
        .files
        .iter()
        .filter_map(|f| f.file_name().map(std::ffi::OsStr::as_encoded_bytes))
        .collect();
    if folder_kind(&names).is_none() {
        l.checkpoints = Some(
            l.files
                .iter()
                .filter(|f| is_checkpoint_file(f))
                .cloned()
                .collect(),
        );
    }
    l
}

fn list(dir: &Path) -> Listing {
    let mut l = Listing::empty(dir, consulted::fingerprint(dir));
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                let p = e.path();
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    l.dirs.push(p);
                } else if ft.is_symlink() {
                    // Follow the link to see what it is; a dangling link is skipped.
                    match std::fs::metadata(&p) {
                        Ok(m) if m.is_dir() => l.dirs.push(p),
                        Ok(m) if m.is_file() => {
                            l.links.push(p.clone());
                            l.files.push(p);
                        }
                        Ok(m) => l
                            .special
                            .push((p, ckpt_torch::open::kind_of(m.file_type()))),
                        Err(_) => {}
                    }
                } else if ft.is_file() {
                    // Checkpoint-named files are stat-ed here, through the folder just read
                    // (a fifth of an unchanged catalog went to walking full paths to stat).
                    if named_like_a_checkpoint(&p)
                        && let Ok(m) = e.metadata()
                    {
                        l.metas.insert(p.clone(), Listed::of_metadata(&m));
                    }
                    l.files.push(p);
                } else {
                    l.special.push((p, ckpt_torch::open::kind_of(ft)));
                }
            }
        }
        Err(e) => l.error = Some(format!("{}: cannot read folder: {e}", dir.display())),
    }
    l
}

/// What the walk saw: every file in every folder it listed, so later existence checks
/// (sidecars, config files beside checkpoints) are set lookups instead of system calls.
/// Paths are kept as raw OS strings: hashing a `Path` walks its components, hashing the
/// bytes does not, and these sets are consulted several times per checkpoint.
///
/// Each folder keeps the fingerprint it had when listed: an answer from the listing depends
/// on the folder's entries, and a cached entry that asked is served again only while the
/// folder is unchanged ([`ckpt_meta::consulted`]).
#[derive(Debug, Default)]
pub struct Seen {
    pub dirs: HashMap<std::ffi::OsString, Fingerprint>,
    pub files: HashSet<std::ffi::OsString>,
    /// Files that are symbolic links.
    pub links: HashSet<std::ffi::OsString>,
    /// Roots in a bucket some listing under which failed or is partial: the catalog keeps
    /// what its cache has under them (not seen is not gone) and reports the run incomplete.
    pub incomplete: Vec<PathBuf>,
}

impl Seen {
    /// Is `p` an existing file? Answered from the listing when its folder was walked.
    pub fn is_file(&self, p: &Path) -> bool {
        match p.parent() {
            Some(d) if let Some(fp) = self.dirs.get(d.as_os_str()) => {
                consulted::note(d, *fp);
                let found = self.files.contains(p.as_os_str());
                if found && self.links.contains(p.as_os_str()) {
                    // A link's target may vanish while the folder stays as it was.
                    consulted::is_file(p)
                } else {
                    found
                }
            }
            _ => consulted::is_file(p),
        }
    }
}

/// Checkpoints under `roots` (files are taken as given), sorted, and warnings.
pub fn discover(roots: &[PathBuf], opts: &WalkOptions) -> (Vec<Candidate>, Vec<String>) {
    let (c, w, _) = discover_with_listing(roots, opts);
    (c, w)
}

/// [`discover`], also returning the listing of every folder walked.
pub fn discover_with_listing(
    roots: &[PathBuf],
    opts: &WalkOptions,
) -> (Vec<Candidate>, Vec<String>, Seen) {
    let mut seen = Seen::default();
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    // Folders already walked, by (device, inode): a symlink back up the tree names a folder
    // walked before. (One `stat` a folder; resolving whole paths cost more than the walk.)
    let mut seen_dirs: HashSet<(u64, u64)> = HashSet::new();
    for root in roots {
        if ckpt_io::is_remote(root) {
            walk_remote(root, opts, &ByteLayer, &mut out, &mut warnings, &mut seen);
            continue;
        }
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                warnings.push(format!("{}: {e}", root.display()));
                continue;
            }
        };
        if !meta.is_dir() && !meta.is_file() {
            warnings.push(format!(
                "{}: {}, not a regular file; skipped",
                root.display(),
                ckpt_torch::open::kind_of(meta.file_type())
            ));
            continue;
        }
        if !meta.is_dir() {
            out.push(Candidate {
                path: root.clone(),
                kind: Kind::File,
                root: root.parent().map(Path::to_path_buf).unwrap_or_default(),
                meta: Some(Listed::of_metadata(&meta)),
            });
            continue;
        }
        let mut level = vec![root.clone()];
        let mut depth = 0usize;
        while !level.is_empty() {
            // Guard against symlink loops: each real folder once.
            level.retain(|d| {
                let id = std::fs::metadata(d).map(|m| dev_ino(&m)).ok();
                if id.is_none_or(|id| seen_dirs.insert(id)) {
                    true
                } else {
                    warnings.push(format!(
                        "{}: already visited (symlink loop?), skipped",
                        d.display()
                    ));
                    false
                }
            });
            let listings = crate::par::map(&level, |d| list(d));
            level = take_level(
                listings,
                root,
                opts,
                depth,
                &mut out,
                &mut warnings,
                &mut seen,
            );
            depth += 1;
        }
    }
    // By folder, then name: a folder's checkpoints are adjacent, so the catalog can finish
    // (and print) one folder at a time.
    out.sort_by_cached_key(|c| {
        (
            c.path.parent().map(|p| p.as_os_str().to_owned()),
            c.path.file_name().map(|n| n.to_owned()),
            c.kind,
        )
    });
    out.dedup_by(|a, b| a.path == b.path);
    (out, warnings, seen)
}

/// Walk a root in a bucket: an object is one candidate; a prefix is walked breadth-first,
/// each level's prefixes listed [`io_width`] at a time. A root that is neither is a warning.
fn walk_remote(
    root: &Path,
    opts: &WalkOptions,
    io: &dyn Lister,
    out: &mut Vec<Candidate>,
    warnings: &mut Vec<String>,
    seen: &mut Seen,
) {
    // The canonical spelling (`s3://b/p/` and `s3:/b/p` walk as `s3://b/p`): the listings
    // name what they hold that way.
    let start = match ckpt_io::Location::parse(root) {
        ckpt_io::Location::Remote(url) => url.to_path(),
        ckpt_io::Location::Local(p) => p,
    };
    let st = match io.stat(&start) {
        Ok(st) => st,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            warnings.push(format!("{}: no such object or prefix", root.display()));
            return;
        }
        Err(e) => {
            // Not knowing what the root is, nothing under it is known to be gone.
            warnings.push(format!("{}: {e}", root.display()));
            seen.incomplete.push(root.to_path_buf());
            return;
        }
    };
    match st.kind {
        ckpt_io::Kind::File => {
            out.push(Candidate {
                path: start.clone(),
                kind: Kind::File,
                root: start.parent().map(Path::to_path_buf).unwrap_or_default(),
                meta: Some(Listed(st)),
            });
            return;
        }
        ckpt_io::Kind::Other(what) => {
            warnings.push(format!(
                "{}: {what}, not a regular file; skipped",
                root.display()
            ));
            return;
        }
        ckpt_io::Kind::Dir => {}
    }
    let mut level = vec![start];
    let mut depth = 0usize;
    let mut incomplete = false;
    while !level.is_empty() {
        let listings = crate::par::map_n(&level, io_width(), |d| list_remote(d, io));
        for l in &listings {
            if let Some(why) = &l.incomplete {
                warnings.push(format!("listing of {}/ incomplete: {why}", l.dir.display()));
                incomplete = true;
            }
        }
        level = take_level(listings, root, opts, depth, out, warnings, seen);
        depth += 1;
    }
    if incomplete {
        seen.incomplete.push(root.to_path_buf());
    }
}

/// Take in one level's listings: the candidates they hold, what they show (into `seen`), and
/// the folders of the next level.
fn take_level(
    listings: Vec<Listing>,
    root: &Path,
    opts: &WalkOptions,
    depth: usize,
    out: &mut Vec<Candidate>,
    warnings: &mut Vec<String>,
    seen: &mut Seen,
) -> Vec<PathBuf> {
    let mut next = Vec::new();
    for l in listings {
        if let Some(e) = l.error {
            warnings.push(e);
            continue;
        }
        for (p, what) in &l.special {
            if named_like_a_checkpoint(p) {
                warnings.push(format!(
                    "{}: {what}, not a regular file; skipped",
                    p.display()
                ));
            }
        }
        seen.dirs
            .insert(l.dir.as_os_str().to_owned(), l.fingerprint);
        seen.links
            .extend(l.links.iter().map(|f| f.as_os_str().to_owned()));
        seen.files
            .extend(l.files.iter().map(|f| f.as_os_str().to_owned()));
        // The names, borrowed (a folder of 10,000 checkpoints made 10,000 strings
        // here only to look for three names).
        let names = || {
            l.files
                .iter()
                .filter_map(|f| f.file_name().map(std::ffi::OsStr::as_encoded_bytes))
        };
        // A DCP directory is one checkpoint.
        if names().any(|n| n == b".metadata") && names().any(|n| n.ends_with(b".distcp")) {
            out.push(Candidate {
                path: l.dir.clone(),
                kind: Kind::Dcp,
                root: root.to_path_buf(),
                meta: None,
            });
            continue;
        }
        // A sharded HF folder is one model; its shards are not separate entries.
        let sharded = names()
            .any(|n| n == b"model.safetensors.index.json" || n == b"pytorch_model.bin.index.json");
        if sharded {
            out.push(Candidate {
                path: l.dir.clone(),
                kind: Kind::HfSharded,
                root: root.to_path_buf(),
                meta: None,
            });
        } else {
            let mut metas = l.metas;
            for f in l.files {
                let is_checkpoint = match &l.checkpoints {
                    Some(judged) => judged.contains(&f),
                    None => is_checkpoint_file(&f),
                };
                if is_checkpoint {
                    let meta = metas.remove(&f);
                    out.push(Candidate {
                        path: f,
                        meta,
                        kind: Kind::File,
                        root: root.to_path_buf(),
                    });
                }
            }
        }
        let deeper = opts.recursive && opts.max_depth.is_none_or(|m| depth < m);
        if deeper {
            for d in l.dirs {
                let hidden = d
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                if !hidden {
                    next.push(d);
                }
            }
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_dcp_and_sharded_folders() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/checkpoints")).unwrap();
        std::fs::write(r.join("a/checkpoints/x.ckpt"), b"").unwrap();
        std::fs::write(r.join("a/notes.txt"), b"").unwrap();
        std::fs::create_dir_all(r.join("dcp/step_1")).unwrap();
        std::fs::write(r.join("dcp/step_1/.metadata"), b"").unwrap();
        std::fs::write(r.join("dcp/step_1/__0_0.distcp"), b"").unwrap();
        std::fs::create_dir_all(r.join("hf")).unwrap();
        std::fs::write(r.join("hf/model.safetensors.index.json"), b"{}").unwrap();
        std::fs::write(r.join("hf/model-00001-of-00002.safetensors"), b"").unwrap();
        std::fs::create_dir_all(r.join(".hidden")).unwrap();
        std::fs::write(r.join(".hidden/y.ckpt"), b"").unwrap();
        let (c, w) = discover(&[r.to_path_buf()], &WalkOptions::default());
        assert!(w.is_empty(), "{w:?}");
        let kinds: Vec<(String, Kind)> = c
            .iter()
            .map(|c| {
                (
                    c.path.strip_prefix(r).unwrap().display().to_string(),
                    c.kind,
                )
            })
            .collect();
        assert_eq!(
            kinds,
            // by folder, then name
            vec![
                ("hf".into(), Kind::HfSharded),
                ("a/checkpoints/x.ckpt".into(), Kind::File),
                ("dcp/step_1".into(), Kind::Dcp),
            ]
        );
        let (c, _) = discover(
            &[r.to_path_buf()],
            &WalkOptions {
                recursive: false,
                max_depth: None,
            },
        );
        assert!(c.is_empty());
        let (c, _) = discover(
            &[r.to_path_buf()],
            &WalkOptions {
                recursive: true,
                max_depth: Some(1),
            },
        );
        assert_eq!(c.len(), 1, "{c:?}"); // only hf/ is one folder below the root
    }

    /// A bucket in memory: each prefix's listing, or the error its LIST gives.
    struct FakeBucket(HashMap<PathBuf, Result<ckpt_io::Listing, String>>);

    impl FakeBucket {
        /// Objects (key, size) under `s3://b`; `failing`: prefixes whose LIST fails.
        fn new(objects: &[(&str, u64)], failing: &[&str]) -> FakeBucket {
            let mut m: HashMap<PathBuf, Vec<ckpt_io::DirEntry>> = HashMap::new();
            for (key, size) in objects {
                let mut parent = PathBuf::from("s3://b");
                let parts: Vec<&str> = key.split('/').collect();
                for (i, part) in parts.iter().enumerate() {
                    let path = parent.join(part);
                    let last = i + 1 == parts.len();
                    let e = ckpt_io::DirEntry {
                        path: path.clone(),
                        kind: if last {
                            ckpt_io::Kind::File
                        } else {
                            ckpt_io::Kind::Dir
                        },
                        symlink: false,
                        identity: last.then(|| ckpt_io::Identity {
                            size: *size,
                            mtime_ns: 1_700_000_000_000_000_000,
                            version: 42,
                            etag: Some(format!("\"{key}\"")),
                        }),
                    };
                    let l = m.entry(parent.clone()).or_default();
                    if !l.contains(&e) {
                        l.push(e);
                    }
                    parent = path;
                }
            }
            let mut out: HashMap<PathBuf, Result<ckpt_io::Listing, String>> = m
                .into_iter()
                .map(|(k, mut entries)| {
                    entries.sort_by(|a, b| a.path.cmp(&b.path));
                    (
                        k,
                        Ok(ckpt_io::Listing {
                            entries,
                            complete: true,
                        }),
                    )
                })
                .collect();
            for f in failing {
                out.insert(
                    PathBuf::from(f),
                    Err("LIST: 503 Service Unavailable (SlowDown)".into()),
                );
            }
            FakeBucket(out)
        }
    }

    impl Lister for FakeBucket {
        fn stat(&self, p: &Path) -> std::io::Result<ckpt_io::Stat> {
            let parent = p.parent().unwrap();
            let l = self.read_dir(parent)?;
            l.entries
                .iter()
                .find(|e| e.path == p)
                .map(|e| ckpt_io::Stat {
                    kind: e.kind,
                    identity: e.identity.clone().unwrap_or_default(),
                })
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        }
        fn read_dir(&self, p: &Path) -> std::io::Result<ckpt_io::Listing> {
            match self.0.get(p) {
                Some(Ok(l)) => Ok(l.clone()),
                Some(Err(e)) => Err(std::io::Error::other(e.clone())),
                None => Ok(ckpt_io::Listing {
                    entries: Vec::new(),
                    complete: true,
                }),
            }
        }
    }

    fn walk(bucket: &FakeBucket, root: &str) -> (Vec<Candidate>, Vec<String>, Seen) {
        let (mut out, mut warnings, mut seen) = (Vec::new(), Vec::new(), Seen::default());
        walk_remote(
            Path::new(root),
            &WalkOptions::default(),
            bucket,
            &mut out,
            &mut warnings,
            &mut seen,
        );
        out.sort();
        (out, warnings, seen)
    }

    #[test]
    fn a_bucket_is_walked_by_prefix_with_the_folder_rules_of_a_disk() {
        let bucket = FakeBucket::new(
            &[
                ("runs/a/checkpoints/x.ckpt", 100),
                ("runs/a/checkpoints/x.metadata.yaml", 5),
                ("runs/a/hparams.yaml", 3),
                ("runs/dcp/step_1/.metadata", 9),
                ("runs/dcp/step_1/__0_0.distcp", 9),
                ("runs/hf/model.safetensors.index.json", 2),
                ("runs/hf/model-00001-of-00002.safetensors", 7),
                ("runs/.hidden/y.ckpt", 1),
                ("runs/notes.txt", 1),
                ("other/z.ckpt", 1),
            ],
            &[],
        );
        // The root as typed, with a trailing slash: walked as `s3://b/runs`.
        let (c, w, seen) = walk(&bucket, "s3://b/runs/");
        assert!(w.is_empty(), "{w:?}");
        assert!(seen.incomplete.is_empty());
        let got: Vec<(String, Kind)> = c
            .iter()
            .map(|c| (c.path.display().to_string(), c.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("s3://b/runs/a/checkpoints/x.ckpt".into(), Kind::File),
                ("s3://b/runs/dcp/step_1".into(), Kind::Dcp),
                ("s3://b/runs/hf".into(), Kind::HfSharded),
            ]
        );
        // The object's key comes from its listing: no request of its own.
        let listed = c[0].meta.as_ref().unwrap();
        assert_eq!(listed.0.kind, ckpt_io::Kind::File);
        assert_eq!(listed.identity().size, 100);
        assert_eq!(
            listed.identity().etag.as_deref(),
            Some("\"runs/a/checkpoints/x.ckpt\"")
        );
        assert_eq!(c[0].root, Path::new("s3://b/runs/"));
        // Sidecars beside it are answered from the listing, and each folder keeps the
        // fingerprint of the listing it was answered from.
        assert!(seen.is_file(Path::new("s3://b/runs/a/checkpoints/x.metadata.yaml")));
        let dir = std::ffi::OsString::from("s3://b/runs/a/checkpoints");
        let l = bucket
            .read_dir(Path::new("s3://b/runs/a/checkpoints"))
            .unwrap();
        assert_eq!(seen.dirs[&dir], consulted::prefix_fingerprint(&l));
        // An object as the root is one candidate; a root that is nowhere is a warning.
        let (c, w, _) = walk(&bucket, "s3://b/other/z.ckpt");
        assert_eq!(c.len(), 1, "{w:?}");
        assert_eq!(c[0].meta.as_ref().unwrap().identity().size, 1);
        let (c, w, seen) = walk(&bucket, "s3://b/nowhere");
        assert!(c.is_empty());
        assert_eq!(
            w,
            vec!["s3://b/nowhere: no such object or prefix".to_owned()]
        );
        assert!(seen.incomplete.is_empty());
    }

    #[test]
    fn a_failed_listing_is_a_warning_and_marks_its_root_incomplete() {
        let bucket = FakeBucket::new(
            &[
                ("runs/a/x.ckpt", 10),
                ("runs/bad/y.ckpt", 10),
                ("runs/bad/deeper/z.ckpt", 10),
            ],
            &["s3://b/runs/bad"],
        );
        let (c, w, seen) = walk(&bucket, "s3://b/runs");
        // What could be listed is found; what could not is said, not taken for gone.
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, Path::new("s3://b/runs/a/x.ckpt"));
        assert_eq!(
            w,
            vec![
                "listing of s3://b/runs/bad/ incomplete: LIST: 503 Service Unavailable (SlowDown)"
                    .to_owned()
            ]
        );
        assert_eq!(seen.incomplete, vec![PathBuf::from("s3://b/runs")]);
        // A root whose own parent cannot be listed is incomplete too.
        let bucket = FakeBucket::new(&[("runs/a/x.ckpt", 10)], &["s3://b"]);
        let (c, w, seen) = walk(&bucket, "s3://b/runs");
        assert!(c.is_empty());
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(seen.incomplete, vec![PathBuf::from("s3://b/runs")]);
    }

    #[test]
    fn listed_carries_the_stat_of_a_local_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.ckpt");
        std::fs::write(&f, b"12345").unwrap();
        let (c, _) = discover(&[d.path().to_path_buf()], &WalkOptions::default());
        let m = std::fs::metadata(&f).unwrap();
        let listed = c[0].meta.as_ref().unwrap();
        assert_eq!(listed.0.kind, ckpt_io::Kind::File);
        assert_eq!(listed.identity(), &ckpt_io::Identity::of_metadata(&m));
        assert_eq!(listed.0, ckpt_io::stat(&f).unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_warnings() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a")).unwrap();
        std::fs::write(r.join("a/x.pt"), b"").unwrap();
        std::os::unix::fs::symlink(r, r.join("a/loop")).unwrap();
        let (c, w) = discover(&[r.to_path_buf()], &WalkOptions::default());
        assert_eq!(c.len(), 1);
        assert!(w.iter().any(|w| w.contains("symlink loop")), "{w:?}");
    }
}
