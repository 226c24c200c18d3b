//! Sidecar files on disk: where they are, reading them, writing them atomically, and telling
//! whether one still describes its checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};

use ckpt_torch::Checkpoint;
use serde_json::{Map, Value};

use crate::yaml;

/// Why a sidecar could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: YAML does not parse: {message}")]
    Yaml {
        path: PathBuf,
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
    #[error("{path}: JSON does not parse: {message} (line {line}, column {column})")]
    Json {
        path: PathBuf,
        message: String,
        line: usize,
        column: usize,
    },
    #[error("{path}: larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: usize },
    #[error("{path}: not a regular file ({what})")]
    NotAFile { path: PathBuf, what: &'static str },
}

impl SidecarError {
    /// Line and column of a parse error, when known.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            SidecarError::Yaml {
                line: Some(l),
                column: Some(c),
                ..
            } => Some((*l, *c)),
            SidecarError::Json { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }
}

/// A parsed sidecar.
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub path: PathBuf,
    pub value: Value,
}

/// `<dir>/<stem>.metadata.yaml` for a checkpoint (`best.ckpt` → `best.metadata.yaml`).
pub fn yaml_path(checkpoint: &Path) -> PathBuf {
    with_suffix(checkpoint, ".metadata.yaml")
}

/// `<dir>/<stem>.metadata.json`.
pub fn json_path(checkpoint: &Path) -> PathBuf {
    with_suffix(checkpoint, ".metadata.json")
}

/// `<dir>/<stem><suffix>`.
pub fn with_suffix(checkpoint: &Path, suffix: &str) -> PathBuf {
    let stem = checkpoint
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    checkpoint.with_file_name(format!("{stem}{suffix}"))
}

/// The sidecar that exists for a checkpoint (YAML first, then JSON).
pub fn find(checkpoint: &Path) -> Option<PathBuf> {
    [yaml_path(checkpoint), json_path(checkpoint)]
        .into_iter()
        .find(|p| crate::consulted::is_file(p))
}

impl Sidecar {
    /// Read and parse a `.metadata.yaml` or `.metadata.json` file (not validated).
    pub fn read(path: &Path) -> Result<Sidecar, SidecarError> {
        use crate::consulted::read_small_text;
        use ckpt_torch::open::OpenError;
        // A regular file of bounded size, checked on the opened descriptor before reading
        // (a FIFO named `x.metadata.yaml` must not block the catalog).
        let text = read_small_text(path, yaml::MAX_YAML_BYTES as u64).map_err(|e| match e {
            OpenError::Io(source) => SidecarError::Io {
                path: path.to_path_buf(),
                source,
            },
            OpenError::NotAFile { what } => SidecarError::NotAFile {
                path: path.to_path_buf(),
                what,
            },
            OpenError::TooLarge { .. } => SidecarError::TooLarge {
                path: path.to_path_buf(),
                limit: yaml::MAX_YAML_BYTES,
            },
        })?;
        let value = if path.extension().is_some_and(|e| e == "json") {
            yaml::parse_json(&text).map_err(|e| SidecarError::Json {
                path: path.to_path_buf(),
                message: e.message,
                line: e.line.unwrap_or(0),
                column: e.column.unwrap_or(0),
            })?
        } else {
            yaml::parse(&text).map_err(|e| SidecarError::Yaml {
                path: path.to_path_buf(),
                message: e.message,
                line: e.line,
                column: e.column,
            })?
        };
        Ok(Sidecar {
            path: path.to_path_buf(),
            value,
        })
    }
}

/// Whether a sidecar still describes its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    /// The fingerprint matches (or, without one, epoch and step agree).
    Fresh,
    /// It describes something else now; the reason says what differs.
    Stale(String),
    /// Nothing to compare (no fingerprint, and the checkpoint records no epoch/step).
    Unknown,
}

/// Compare a sidecar with the checkpoint it sits beside. Size and pickle hash decide when the
/// sidecar has a fingerprint (mtime alone never does: copies change it); older sidecars are
/// compared on `training.epoch` and `training.global_step`.
pub fn staleness(sidecar: &Value, ck: &Checkpoint) -> Staleness {
    if let Some(fp) = sidecar.get("fingerprint").and_then(Value::as_object) {
        if let Some(size) = fp.get("size_bytes").and_then(Value::as_u64)
            && size != ck.size
        {
            return Staleness::Stale(format!(
                "checkpoint is {} bytes, the sidecar describes {size}",
                ck.size
            ));
        }
        if let Some(h) = fp.get("pickle_sha256").and_then(Value::as_str) {
            if h != ck.pickle_sha256 {
                return Staleness::Stale(
                    "checkpoint content (pickle hash) changed since the sidecar was written".into(),
                );
            }
            return Staleness::Fresh;
        }
    }
    let doc = &ck.doc;
    let root = doc.root();
    let mut compared = false;
    for (field, keys) in [
        ("epoch", &["epoch"][..]),
        ("global_step", &["global_step", "step"][..]),
    ] {
        let actual = keys
            .iter()
            .find_map(|k| doc.get(root, k).and_then(|v| doc.as_i64(v)));
        let claimed = sidecar
            .get("training")
            .and_then(|t| t.get(field))
            .and_then(Value::as_i64);
        if let (Some(a), Some(c)) = (actual, claimed) {
            compared = true;
            if a != c {
                return Staleness::Stale(format!(
                    "sidecar says training.{field} {c}, the checkpoint has {a}"
                ));
            }
        }
    }
    if compared {
        Staleness::Fresh
    } else {
        Staleness::Unknown
    }
}

/// Keep what an old sidecar had that the new one does not (unknown keys survive a rewrite).
pub fn merge_unknown(new: &mut Value, old: &Value) {
    if let (Some(n), Some(o)) = (new.as_object_mut(), old.as_object()) {
        for (k, ov) in o {
            match n.get_mut(k) {
                Some(nv) => {
                    if nv.is_object() && ov.is_object() {
                        merge_unknown(nv, ov);
                    }
                }
                None => {
                    n.insert(k.clone(), ov.clone());
                }
            }
        }
    }
}

/// The text of a sidecar: YAML for `.yaml`, pretty JSON for `.json`.
pub fn render(path: &Path, v: &Value) -> String {
    if path.extension().is_some_and(|e| e == "json") {
        let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
        s.push('\n');
        s
    } else {
        yaml::to_yaml(v)
    }
}

/// Write `text` to `path` atomically: a temporary file in the same folder, fsync, then into
/// place. Without `overwrite`, an existing file is never replaced (the final step is a hard
/// link, which fails if the name exists), so a concurrent writer cannot be clobbered either.
pub fn write_atomic(path: &Path, text: &str, overwrite: bool) -> std::io::Result<()> {
    write_atomic_bytes(path, text.as_bytes(), overwrite)
}

/// [`write_atomic`] for any bytes (`ckpt catalog --output`, a Parquet file).
pub fn write_atomic_bytes(path: &Path, bytes: &[u8], overwrite: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut attempt = 0u32;
    let (tmp, mut f) = loop {
        let tmp = dir.join(format!(".{name}.tmp-{}-{attempt}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1
            }
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        if overwrite {
            std::fs::rename(&tmp, path)
        } else {
            std::fs::hard_link(&tmp, path).and_then(|()| std::fs::remove_file(&tmp))
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether ckpt wrote this sidecar (its `generator.tool` says `ckpt …`): only such a file may
/// be replaced or removed on ckpt's own initiative; a hand-written one is left as it is.
pub fn written_by_ckpt(v: &Value) -> bool {
    v.get("generator")
        .and_then(|g| g.get("tool"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "ckpt" || t.starts_with("ckpt "))
}

/// What [`remove_own`] did about the sidecars of a removed checkpoint.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removal {
    /// Sidecars ckpt wrote, now removed.
    pub removed: Vec<PathBuf>,
    /// Sidecars left in place: not written by ckpt (or unreadable, so not provably ckpt's).
    pub kept: Vec<PathBuf>,
}

/// The checkpoint is gone (a training run rotated it out): remove the `.metadata.yaml|json`
/// sidecars ckpt wrote for it, keep — and report — any other.
pub fn remove_own(checkpoint: &Path) -> std::io::Result<Removal> {
    let mut out = Removal::default();
    for p in [yaml_path(checkpoint), json_path(checkpoint)] {
        if !crate::consulted::is_file(&p) {
            continue;
        }
        match Sidecar::read(&p) {
            Ok(sc) if written_by_ckpt(&sc.value) => match std::fs::remove_file(&p) {
                Ok(()) => out.removed.push(p),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            _ => out.kept.push(p),
        }
    }
    Ok(out)
}

/// Field order for a rewritten sidecar: the schema's keys first, then ckpt's sections, then
/// whatever else was there.
pub fn ordered(v: Value) -> Value {
    let Value::Object(m) = v else { return v };
    let mut out = Map::new();
    let mut rest = m;
    for k in crate::schema::TOP_LEVEL
        .iter()
        .chain(crate::schema::EXTENSIONS)
    {
        if let Some(x) = rest.shift_remove(*k) {
            out.insert((*k).to_owned(), x);
        }
    }
    for (k, x) in rest {
        out.insert(k, x);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sidecar_names() {
        assert_eq!(
            yaml_path(Path::new("a/best.ckpt")),
            Path::new("a/best.metadata.yaml")
        );
        assert_eq!(
            yaml_path(Path::new("a/epoch=01-step=4-hmean=0.7445.ckpt")),
            Path::new("a/epoch=01-step=4-hmean=0.7445.metadata.yaml")
        );
        assert_eq!(
            json_path(Path::new("epoch=10.ckpt")),
            Path::new("epoch=10.metadata.json")
        );
    }

    #[test]
    fn atomic_writes_never_clobber_without_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.metadata.yaml");
        write_atomic(&p, "a: 1\n", false).unwrap();
        let e = write_atomic(&p, "a: 2\n", false).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a: 1\n");
        write_atomic(&p, "a: 3\n", true).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a: 3\n");
        let leftovers: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");
    }

    #[test]
    fn only_sidecars_ckpt_wrote_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let ours = d.path().join("a.ckpt");
        std::fs::write(
            yaml_path(&ours),
            "schema_version: '1.0'\ngenerator:\n  tool: ckpt 0.1.0\n",
        )
        .unwrap();
        let theirs = d.path().join("b.ckpt");
        std::fs::write(
            yaml_path(&theirs),
            "schema_version: '1.0'\nexp_name: mine\n",
        )
        .unwrap();
        std::fs::write(json_path(&theirs), "{not json").unwrap();
        let r = remove_own(&ours).unwrap();
        assert_eq!(r.removed, vec![yaml_path(&ours)]);
        assert!(r.kept.is_empty() && !yaml_path(&ours).exists());
        let r = remove_own(&theirs).unwrap();
        assert!(r.removed.is_empty());
        assert_eq!(r.kept, vec![yaml_path(&theirs), json_path(&theirs)]);
        assert!(yaml_path(&theirs).exists() && json_path(&theirs).exists());
        assert_eq!(
            remove_own(&d.path().join("none.ckpt")).unwrap(),
            Removal::default()
        );
        assert!(written_by_ckpt(&json!({"generator": {"tool": "ckpt"}})));
        assert!(!written_by_ckpt(&json!({"generator": {"tool": "ckptx 1"}})));
    }

    #[test]
    fn unknown_keys_survive_a_rewrite() {
        let mut new = json!({"schema_version": "1.0", "metrics": {"hmean": 0.5}});
        let old = json!({"schema_version": "1.0", "custom_notes": "keep me", "metrics": {"hmean": 0.4, "team_score": 3}});
        merge_unknown(&mut new, &old);
        assert_eq!(new["custom_notes"], "keep me");
        assert_eq!(new["metrics"]["team_score"], 3);
        assert_eq!(new["metrics"]["hmean"], 0.5);
    }
}
