//! What the filesystem says about a checkpoint at planning time: below which given path it
//! is, through which symlink, whether it is a regular file, its size, mtime and canonical
//! folder, and which sidecars go with it.

use std::path::{Component, Path, PathBuf};

/// The filesystem as planning sees it: the real one ([`RealFs`]), or a made-up one in tests.
pub trait Filesystem {
    /// A root as given: absolute (lexically) and canonical.
    fn root(&self, given: &Path) -> Root;
    /// What deciding about `path` needs to know.
    fn probe(&self, path: &Path, roots: &[Root]) -> Probe;
    /// The sidecars beside `path` that exist as regular files.
    fn sidecars_of(&self, path: &Path) -> Vec<String>;
}

/// The real filesystem.
pub struct RealFs;

impl Filesystem for RealFs {
    fn root(&self, given: &Path) -> Root {
        Root {
            abs: abs_path(given),
            canon: std::fs::canonicalize(given).ok(),
        }
    }

    fn probe(&self, path: &Path, roots: &[Root]) -> Probe {
        probe(path, roots)
    }

    fn sidecars_of(&self, path: &Path) -> Vec<String> {
        sidecars_of(path)
    }
}

/// A root as given, absolute (lexically) and canonical.
pub struct Root {
    pub abs: PathBuf,
    pub canon: Option<PathBuf>,
}

/// What the filesystem says about one entry at planning time.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// Reasons from the filesystem that forbid deletion.
    pub blockers: Vec<String>,
    /// The file's canonical path.
    pub canon: Option<PathBuf>,
    /// Its folder, canonical.
    pub dir: Option<PathBuf>,
    pub size: u64,
    pub mtime_ns: i64,
}

pub fn abs_path(p: &Path) -> PathBuf {
    let a = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    // Drop `.` components (absolute() keeps `..`, which is left for canonicalize to judge).
    a.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Nanoseconds since the epoch (negative before it).
pub(crate) fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    match m.modified() {
        Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_nanos())
                .map(|n| -n)
                .unwrap_or(i64::MIN),
        },
        Err(_) => 0,
    }
}

/// The first symlink met going down from `base` along `rel` (each component below `base`,
/// the last one being the file itself). `rel` is made of plain names only.
fn symlink_below(base: &Path, rel: &Path) -> Result<Option<PathBuf>, String> {
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Ok(Some(cur)),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        }
    }
    Ok(None)
}

fn probe(path: &Path, roots: &[Root]) -> Probe {
    let mut p = Probe::default();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            p.blockers
                .push(format!("unreadable: {}: {e}", path.display()));
            return p;
        }
    };
    p.size = meta.len();
    p.mtime_ns = mtime_ns(&meta);
    p.canon = std::fs::canonicalize(path).ok();
    p.dir = path.parent().and_then(|d| {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        std::fs::canonicalize(d).ok()
    });
    let abs = abs_path(path);
    // Below which roots is it, lexically (as given or as the root resolves)?
    let mut under_any = false;
    let mut clean_under_any = false;
    let mut through: Option<String> = None;
    let mut unreadable: Option<String> = None;
    for r in roots {
        for base in std::iter::once(&r.abs).chain(r.canon.as_ref()) {
            // `..` below a root is not under it (canonically it may be anywhere).
            let Some(rel) = abs
                .strip_prefix(base)
                .ok()
                .filter(|rel| rel.components().all(|c| matches!(c, Component::Normal(_))))
            else {
                continue;
            };
            under_any = true;
            match symlink_below(base, rel) {
                Ok(None) => clean_under_any = true,
                Ok(Some(link)) => {
                    if link != abs {
                        through.get_or_insert_with(|| link.display().to_string());
                    }
                }
                Err(e) => unreadable = Some(e),
            }
        }
    }
    // The canonical path must be under a canonical root too.
    let canon_under = p.canon.as_ref().is_some_and(|c| {
        roots
            .iter()
            .filter_map(|r| r.canon.as_ref())
            .any(|r| c.starts_with(r))
    });
    let is_link = meta.file_type().is_symlink();
    if !under_any || (!canon_under && !is_link) {
        p.blockers.push("outside the given paths".into());
    }
    if let Some(e) = unreadable
        && !clean_under_any
    {
        p.blockers.push(format!("unreadable: {e}"));
    }
    if is_link {
        p.blockers.push("symlink".into());
    } else if under_any
        && !clean_under_any
        && let Some(t) = through
    {
        p.blockers.push(format!("reached through a symlink ({t})"));
    }
    if meta.is_dir() {
        p.blockers
            .push("directory checkpoints are not pruned".into());
    } else if !is_link && !meta.is_file() {
        p.blockers.push("not a regular file".into());
    }
    p
}

/// `<stem>.metadata.*` and `<stem>.config.*` beside a checkpoint that exist as regular files.
fn sidecars_of(path: &Path) -> Vec<String> {
    [
        ".metadata.yaml",
        ".metadata.json",
        ".config.yaml",
        ".config.yml",
        ".config.json",
    ]
    .iter()
    .map(|s| ckpt_meta::sidecar::with_suffix(path, s))
    .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file()))
    .map(|p| p.display().to_string())
    .collect()
}
