//! Telling a local path from an object URL.
//!
//! URLs travel as `Path`s. Code that rebuilds a path from `components()` turns `s3://b/k` into
//! `s3:/b/k` (the empty component between the slashes is dropped), so [`Location::parse`]
//! accepts both spellings and [`RemoteUrl::to_path`] gives the canonical one back.

use std::path::{Path, PathBuf};

/// The object stores ckpt reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Amazon S3 and S3-compatible stores (`s3://bucket/key`).
    S3,
    /// Google Cloud Storage (`gs://bucket/key`).
    Gs,
    /// Azure Blob Storage (`az://container/key`).
    Az,
}

impl Scheme {
    /// The URL scheme, without `://`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gs => "gs",
            Scheme::Az => "az",
        }
    }
}

/// An object or prefix in a bucket. `key` has no leading slash; a prefix (a "folder") has no
/// trailing slash either: `s3://b/run` names the folder `run/` as well as an object `run`, as a
/// local path names a file or a directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteUrl {
    pub scheme: Scheme,
    pub bucket: String,
    pub key: String,
}

impl RemoteUrl {
    /// The canonical spelling, `s3://bucket/key` (`s3://bucket` for the bucket's root).
    pub fn to_path(&self) -> PathBuf {
        PathBuf::from(self.to_string())
    }

    /// The URL of `name` inside this prefix.
    pub fn child(&self, name: &str) -> RemoteUrl {
        let key = if self.key.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.key)
        };
        RemoteUrl {
            scheme: self.scheme,
            bucket: self.bucket.clone(),
            key,
        }
    }

    /// The enclosing prefix; `None` at the bucket's root.
    pub fn parent(&self) -> Option<RemoteUrl> {
        if self.key.is_empty() {
            return None;
        }
        let key = match self.key.rfind('/') {
            Some(i) => self.key[..i].to_owned(),
            None => String::new(),
        };
        Some(RemoteUrl {
            scheme: self.scheme,
            bucket: self.bucket.clone(),
            key,
        })
    }

    /// The last segment of the key (empty at the bucket's root).
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or("")
    }
}

impl std::fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}://{}", self.scheme.as_str(), self.bucket)
        } else {
            write!(f, "{}://{}/{}", self.scheme.as_str(), self.bucket, self.key)
        }
    }
}

/// Where a path's bytes live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Remote(RemoteUrl),
}

impl Location {
    /// `s3://`, `gs://` and `az://` (also as `s3:/…`, see the module docs) are remote, with
    /// empty segments and `.` segments dropped; anything else is a local path, unchanged. A
    /// URL without a bucket (`s3://`) is local, so opening it fails as a missing file would.
    pub fn parse(path: &Path) -> Location {
        let Some(s) = path.to_str() else {
            return Location::Local(path.to_path_buf());
        };
        for (prefix, scheme) in [
            ("s3:", Scheme::S3),
            ("gs:", Scheme::Gs),
            ("az:", Scheme::Az),
        ] {
            let Some(rest) = s.strip_prefix(prefix) else {
                continue;
            };
            if !rest.starts_with('/') {
                continue;
            }
            let mut segs = rest.split('/').filter(|x| !x.is_empty() && *x != ".");
            let Some(bucket) = segs.next() else {
                return Location::Local(path.to_path_buf());
            };
            let key: Vec<&str> = segs.collect();
            return Location::Remote(RemoteUrl {
                scheme,
                bucket: bucket.to_owned(),
                key: key.join("/"),
            });
        }
        Location::Local(path.to_path_buf())
    }
}

/// Whether `path` names an object in a bucket.
pub fn is_remote(path: &Path) -> bool {
    matches!(Location::parse(path), Location::Remote(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_survive_path_operations() {
        let p = Path::new("s3://bucket/run/last.ckpt");
        let Location::Remote(u) = Location::parse(p) else {
            panic!("remote")
        };
        assert_eq!(u.bucket, "bucket");
        assert_eq!(u.key, "run/last.ckpt");
        assert_eq!(u.to_path(), p);
        let parent = p.parent().unwrap();
        assert_eq!(
            Location::parse(parent),
            Location::Remote(u.parent().unwrap())
        );
        let joined = parent.join("hparams.yaml");
        assert_eq!(
            Location::parse(&joined),
            Location::Remote(u.parent().unwrap().child("hparams.yaml"))
        );
        // Rebuilt from components: `s3:/bucket/run/last.ckpt`.
        let rebuilt: PathBuf = p.components().collect();
        assert_eq!(rebuilt, Path::new("s3:/bucket/run/last.ckpt"));
        assert_eq!(Location::parse(&rebuilt), Location::Remote(u.clone()));
        assert_eq!(u.name(), "last.ckpt");
        let root = Location::parse(Path::new("gs://b/"));
        assert_eq!(
            root,
            Location::Remote(RemoteUrl {
                scheme: Scheme::Gs,
                bucket: "b".into(),
                key: String::new()
            })
        );
    }

    #[test]
    fn local_paths_stay_local() {
        for p in [
            "s3",
            "s3:",
            "s3://",
            "./s3://x",
            "runs/s3:/x",
            "/tmp/x",
            "s3:x",
        ] {
            assert_eq!(
                Location::parse(Path::new(p)),
                Location::Local(PathBuf::from(p)),
                "{p}"
            );
        }
        assert!(is_remote(Path::new("az://container/k")));
    }
}
