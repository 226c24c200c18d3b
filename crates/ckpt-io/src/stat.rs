//! What a path is and what a folder holds, for local paths and for prefixes in a bucket.
//!
//! A bucket has no folders: a "folder" is a prefix that some key continues with `/`. Its
//! listing is one paginated LIST with `/` as delimiter; if any page fails the listing is
//! reported incomplete ([`Listing::complete`]), never passed off as all there is.

use std::io;
use std::path::{Path, PathBuf};

use crate::{Identity, Location};

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A FIFO, socket or device, in words for messages ("a FIFO (named pipe)").
    Other(&'static str),
}

/// [`stat`]'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    /// For a prefix, size 0 and no version.
    pub identity: Identity,
}

/// One entry of a folder or prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub path: PathBuf,
    /// What the entry is (after following a symlink locally; `Other("a broken symbolic link")`
    /// when it points nowhere).
    pub kind: Kind,
    /// Whether the entry itself is a symbolic link (never, remotely).
    pub symlink: bool,
    /// The identity, when the listing gave it (always for objects).
    pub identity: Option<Identity>,
}

/// A folder's entries, sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<DirEntry>,
    /// False when some page of a remote listing failed: what is here is not all there is.
    pub complete: bool,
}

/// What `path` is, following symlinks. Remote: a lookup in the memoized listing of its parent
/// prefix (one LIST per prefix per process, shared with [`read_dir`]); a key that is both an
/// object and a prefix is the object.
pub fn stat(path: &Path) -> io::Result<Stat> {
    match Location::parse(path) {
        Location::Local(p) => {
            let m = std::fs::metadata(&p)?;
            let kind = if m.is_file() {
                Kind::File
            } else if m.is_dir() {
                Kind::Dir
            } else {
                Kind::Other(crate::kind_of(m.file_type()))
            };
            Ok(Stat {
                kind,
                identity: Identity::of_metadata(&m),
            })
        }
        Location::Remote(url) => crate::remote::stat(&url),
    }
}

/// The entries of a folder or prefix, sorted by path.
pub fn read_dir(path: &Path) -> io::Result<Listing> {
    match Location::parse(path) {
        Location::Local(p) => {
            let mut entries = Vec::new();
            for e in std::fs::read_dir(&p)? {
                let e = e?;
                let path = e.path();
                let ft = e.file_type()?;
                let symlink = ft.is_symlink();
                let (kind, identity) = match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => (Kind::File, Some(Identity::of_metadata(&m))),
                    Ok(m) if m.is_dir() => (Kind::Dir, Some(Identity::of_metadata(&m))),
                    Ok(m) => (Kind::Other(crate::kind_of(m.file_type())), None),
                    Err(_) if symlink => (Kind::Other("a broken symbolic link"), None),
                    Err(e) => return Err(e),
                };
                entries.push(DirEntry {
                    path,
                    kind,
                    symlink,
                    identity,
                });
            }
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(Listing {
                entries,
                complete: true,
            })
        }
        Location::Remote(url) => crate::remote::read_dir(&url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_stat_and_listing() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b"), b"xy").unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(d.path().join("nowhere"), d.path().join("c")).unwrap();
        let l = read_dir(d.path()).unwrap();
        assert!(l.complete);
        let names: Vec<_> = l
            .entries
            .iter()
            .map(|e| e.path.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names[..2], ["a", "b"]);
        assert_eq!(l.entries[0].kind, Kind::Dir);
        assert_eq!(l.entries[1].kind, Kind::File);
        assert_eq!(l.entries[1].identity.as_ref().unwrap().size, 2);
        #[cfg(unix)]
        assert_eq!(l.entries[2].kind, Kind::Other("a broken symbolic link"));
        let s = stat(&d.path().join("b")).unwrap();
        assert_eq!((s.kind, s.identity.size), (Kind::File, 2));
        assert_eq!(
            stat(&d.path().join("zz")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
