//! Hash-named experiment folders, `<...>/<exp_hash>/{model,hp,data}/` (weightslab's layout),
//! and the active-sample UID files in their `data/`: ONE reading of the layout, used by the
//! catalog's `hash_folder` source and by `ckpt hash` alike, so that the two never disagree on
//! which folder is an experiment, which files hold its hyperparameters or which UIDs it
//! trained on.
//!
//! # The layout
//!
//! A checkpoint belongs to an experiment folder `E` when its own folder is named `model` or
//! `models` and `E` (that folder's parent) has an `hp/` or a `data/` folder, or a hex-ish name
//! (6 or more hex digits, such as `0f9e8d7c6b5a`, or a version-prefixed identity hash such as
//! `v1-d2c97065e066bb16`, see [`named_hash`]). Its parts:
//!
//! - `hp/`: every regular file named `*.yaml`, `*.yml` or `*.json` (extension in any case),
//!   sorted by name, at most [`MAX_HP_FILES`];
//! - `data/`: the first of [`DATA_FILES`] that exists;
//! - `model/`: the checkpoints; the newest is the `checkpoint_step_<N>.pt` with the largest
//!   `N` ([`newest_checkpoint`]).
//!
//! # UID files ([`read_uids`])
//!
//! A `.json` file (or a file not named `.csv` whose first non-blank character is `[`) is a
//! JSON array of strings or numbers, or an object holding such an array under `active_uids`,
//! `uids` or `ids`, or an object keyed by UID. A `.csv` file (or any file when a UID column is
//! named) is RFC 4180 CSV with a header row, and the UIDs are the named column (exact name,
//! else ignoring ASCII case), or by default the first of [`UID_COLUMNS`]. Anything else is
//! one UID per line. A leading byte-order mark is dropped; UIDs are trimmed, empty ones
//! dropped, sorted and de-duplicated.
//!
//! Before this module the catalog counted UIDs by its own rules (first CSV column whatever its
//! header, `#` lines skipped, a `.txt` starting with `[` read as lines, a file it could not
//! read silently replaced by the next one) and `ckpt hash` by the rules above: the same folder
//! had one set of UIDs in the catalog and another in the hash. The rules kept are `ckpt
//! hash`'s, because hashes computed with them (identity algorithm `v1`) must stay valid; the
//! JSON object forms the catalog also read are added, since `ckpt hash` refused them before
//! and no existing hash can change.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::consulted::{is_dir, is_file, read_dir};
use ckpt_torch::pyrepr::float_repr;

/// Column names taken as the UID column of a CSV file when none is named, by preference.
pub const UID_COLUMNS: &[&str] = &["uid", "uids", "sample_uid", "sample_id", "id"];

/// Files in an experiment folder's `data/` holding the active UIDs, by preference.
pub const DATA_FILES: &[&str] = &["active_uids.txt", "active_uids.json", "active_uids.csv"];

/// Keys of a JSON object that hold the UID list.
pub const UID_LIST_KEYS: &[&str] = &["active_uids", "uids", "ids"];

/// Most `hp/` files read: more is refused by `ckpt hash` (it cannot hash a partial config)
/// and cut by the catalog.
pub const MAX_HP_FILES: usize = 256;

/// Most entries of one folder looked at (a `model/` with millions of files must not stall).
const MAX_DIR_ENTRIES: usize = 1 << 16;

/// Largest UID file read (tens of millions of UIDs).
pub const MAX_UID_FILE_BYTES: u64 = 1 << 30;

/// Why an experiment folder's files could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot list {}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a UID file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UidError {
    #[error("cannot read UID file {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{}: {detail}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Format {
        path: PathBuf,
        /// 1-based line (CSV, text, JSON) when known.
        line: Option<usize>,
        detail: String,
    },
    #[error("{}: no column named {column:?} (columns: {})", path.display(), header.join(", "))]
    ColumnMissing {
        path: PathBuf,
        column: String,
        header: Vec<String>,
    },
    #[error(
        "{}: no UID column (looked for {}; columns: {}); name one with --uid-column",
        path.display(), UID_COLUMNS.join(", "), header.join(", ")
    )]
    ColumnUnknown { path: PathBuf, header: Vec<String> },
}

/// The name of the folder holding a checkpoint in an experiment folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelDir {
    /// `model/` (weightslab).
    Model,
    /// `models/`.
    Models,
}

/// An experiment folder `<...>/<name>/{model,hp,data}/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashFolder {
    /// The experiment folder.
    pub dir: PathBuf,
    /// Its name (`0f9e8d7c6b5a`).
    pub name: String,
    /// The folder the checkpoint is in.
    pub model_dir: ModelDir,
}

/// `hp/`'s files, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HpFiles {
    pub files: Vec<PathBuf>,
    /// More than [`MAX_HP_FILES`] were there; `files` holds the first by name.
    pub truncated: bool,
}

/// A hex-ish folder name: 6 or more hex digits.
pub fn hexish(name: &str) -> bool {
    name.len() >= 6 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The identity-algorithm version a folder is named by, and its hex digits: `v1-d2c9…`,
/// `v2_…` or `v1:…` (where the file system allows it) → `("v1", "d2c9…")`. A bare hex name
/// names no version.
pub fn named_hash(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix('v')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let sep = rest.as_bytes().get(digits)?;
    if !matches!(sep, b'-' | b'_' | b':') {
        return None;
    }
    let hex = rest.get(digits + 1..)?;
    hexish(hex).then(|| (&name[..=digits], hex))
}

fn name_of(p: &Path) -> Option<&str> {
    p.file_name().and_then(|n| n.to_str())
}

impl HashFolder {
    /// The experiment folder `ckpt` belongs to, if any (see the module doc). Looks at the
    /// path and at most two `stat`s.
    pub fn of_checkpoint(ckpt: &Path) -> Option<HashFolder> {
        let (model_dir, dir) = model_dir_of(ckpt)?;
        Some(HashFolder {
            dir: dir.to_path_buf(),
            name: experiment_name(dir)?,
            model_dir,
        })
    }

    /// The experiment folder of a checkpoint, for identity algorithm `v1`, which read `hp/`
    /// and `data/` beside any folder named `model` (and only `model`). Any folder that has
    /// neither gives nothing to read, so this is [`HashFolder::of_checkpoint`] limited to
    /// `model/`.
    pub fn of_checkpoint_v1(ckpt: &Path) -> Option<HashFolder> {
        HashFolder::of_checkpoint(ckpt).filter(|h| h.model_dir == ModelDir::Model)
    }

    /// `hp/`'s files: see [`hp_files`].
    pub fn hp_files(&self) -> Result<HpFiles, LayoutError> {
        hp_files(&self.dir)
    }

    /// `data/`'s UID file: see [`data_file`].
    pub fn data_file(&self) -> Option<PathBuf> {
        data_file(&self.dir)
    }

    /// The newest checkpoint of the experiment: see [`newest_checkpoint`] on its `model/`.
    pub fn newest_checkpoint(&self) -> Result<Option<PathBuf>, LayoutError> {
        let m = self.dir.join(match self.model_dir {
            ModelDir::Model => "model",
            ModelDir::Models => "models",
        });
        newest_checkpoint(&m)
    }
}

/// The folder a checkpoint is in, when it is named `model` or `models`, and that folder's
/// parent (the experiment folder, if [`experiment_name`] says it is one). Looks at the path
/// only.
pub fn model_dir_of(ckpt: &Path) -> Option<(ModelDir, &Path)> {
    let model = ckpt.parent()?;
    let model_dir = match name_of(model)? {
        "model" => ModelDir::Model,
        "models" => ModelDir::Models,
        _ => return None,
    };
    Some((model_dir, model.parent()?))
}

/// The name of `dir` when it is an experiment folder: a hex-ish or version-named name, or any
/// name (UTF-8 or not) when it has `hp/` or `data/` (at most two `stat`s; the catalog
/// memoizes this per folder).
pub fn experiment_name(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_string_lossy();
    let named = hexish(&name) || named_hash(&name).is_some();
    if !named && !is_dir(&dir.join("hp")) && !is_dir(&dir.join("data")) {
        return None;
    }
    Some(name.into_owned())
}

/// An experiment folder's `hp/*.yaml|*.yml|*.json`, sorted by name (none when `hp/` does not exist).
pub fn hp_files(experiment: &Path) -> Result<HpFiles, LayoutError> {
    let hp = experiment.join("hp");
    if !is_dir(&hp) {
        return Ok(HpFiles::default());
    }
    let entries = read_dir(&hp).map_err(|source| LayoutError::Dir {
        path: hp.clone(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .entries
        .into_iter()
        .take(MAX_DIR_ENTRIES)
        .map(|e| e.path)
        .filter(|p| (has_ext(p, "yaml") || has_ext(p, "yml") || has_ext(p, "json")) && is_file(p))
        .collect();
    files.sort();
    let truncated = files.len() > MAX_HP_FILES;
    files.truncate(MAX_HP_FILES);
    Ok(HpFiles { files, truncated })
}

/// An experiment folder's UID file in `data/`: the first of [`DATA_FILES`] that is a file (one that cannot be
/// read or parsed is an error for its reader, never skipped for the next one).
pub fn data_file(experiment: &Path) -> Option<PathBuf> {
    let data = experiment.join("data");
    DATA_FILES.iter().map(|n| data.join(n)).find(|p| is_file(p))
}

/// The `checkpoint_step_<N>.pt` in `dir` with the largest `N` (files whose `N` is not a number
/// rank below all numbered ones; ties by file name).
pub fn newest_checkpoint(dir: &Path) -> Result<Option<PathBuf>, LayoutError> {
    let entries = read_dir(dir).map_err(|source| LayoutError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut best: Option<((Option<u64>, String), PathBuf)> = None;
    for e in entries.entries.into_iter().take(MAX_DIR_ENTRIES) {
        let name = crate::consulted::entry_name(&e);
        let Some(step) = name
            .strip_prefix("checkpoint_step_")
            .and_then(|r| r.strip_suffix(".pt"))
        else {
            continue;
        };
        if !is_file(&e.path) {
            continue;
        }
        let key = (step.parse::<u64>().ok(), name.clone());
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, e.path));
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// Does `path` end in `.ext` (any case)?
pub fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Read a UID file (see the module doc), of at most [`MAX_UID_FILE_BYTES`]. Returns the UIDs
/// sorted and de-duplicated.
pub fn read_uids(path: &Path, column: Option<&str>) -> Result<Vec<String>, UidError> {
    read_uids_within(path, column, MAX_UID_FILE_BYTES)
}

/// [`read_uids`] of a file no larger than `limit` bytes (a larger one is an error before
/// anything is read): the catalog reads with its own, smaller, limit on every file it opens.
pub fn read_uids_within(
    path: &Path,
    column: Option<&str>,
    limit: u64,
) -> Result<Vec<String>, UidError> {
    // A regular file only (a FIFO must not block), of bounded size.
    let bytes = crate::consulted::read_small(path, limit).map_err(|e| UidError::File {
        path: path.to_path_buf(),
        source: match e {
            ckpt_torch::open::OpenError::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        },
    })?;
    let text = String::from_utf8(bytes).map_err(|e| UidError::Format {
        path: path.to_path_buf(),
        line: None,
        detail: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let csv = has_ext(path, "csv");
    let first = text.trim_start().chars().next();
    let raw: Vec<String> = if has_ext(path, "json") || (!csv && first == Some('[')) {
        uids_from_json(path, text)?
    } else if csv || column.is_some() {
        uids_from_csv(path, text, column)?
    } else {
        text.lines().map(str::to_owned).collect()
    };
    let mut out: Vec<String> = raw
        .into_iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn uids_from_json(path: &Path, text: &str) -> Result<Vec<String>, UidError> {
    let bad = |line: Option<usize>, detail: String| UidError::Format {
        path: path.to_path_buf(),
        line,
        detail,
    };
    let v: Value = serde_json::from_str(text)
        .map_err(|e| bad(Some(e.line()), format!("invalid JSON: {e}")))?;
    let items = match v {
        Value::Array(items) => items,
        Value::Object(mut m) => {
            match UID_LIST_KEYS
                .iter()
                .find(|k| m.get(**k).is_some_and(Value::is_array))
            {
                Some(k) => match m.shift_remove(*k) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                },
                // An object keyed by UID (`{"s1": {...}, "s2": {...}}`).
                None => return Ok(m.into_iter().map(|(k, _)| k).collect()),
            }
        }
        _ => {
            return Err(bad(
                None,
                "expected a JSON array of UIDs (or an object of them)".into(),
            ));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, x)| match x {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(number_text(&n)),
            other => Err(bad(
                None,
                format!("item {i} is not a string or a number: {other}"),
            )),
        })
        .collect()
}

fn uids_from_csv(path: &Path, text: &str, column: Option<&str>) -> Result<Vec<String>, UidError> {
    let records = parse_csv(text).map_err(|(line, detail)| UidError::Format {
        path: path.to_path_buf(),
        line: Some(line),
        detail,
    })?;
    let mut rows = records.into_iter();
    let Some((_, header)) = rows.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    let index = match column {
        Some(c) => header
            .iter()
            .position(|h| h == c)
            .or_else(|| header.iter().position(|h| h.eq_ignore_ascii_case(c)))
            .ok_or_else(|| UidError::ColumnMissing {
                path: path.to_path_buf(),
                column: c.to_owned(),
                header: header.clone(),
            })?,
        None => UID_COLUMNS
            .iter()
            .find_map(|want| header.iter().position(|h| h.eq_ignore_ascii_case(want)))
            .ok_or_else(|| UidError::ColumnUnknown {
                path: path.to_path_buf(),
                header: header.clone(),
            })?,
    };
    rows.map(|(line, mut cells)| {
        if index < cells.len() {
            Ok(cells.swap_remove(index))
        } else {
            Err(UidError::Format {
                path: path.to_path_buf(),
                line: Some(line),
                detail: format!(
                    "{} fields, no value for column {:?}",
                    cells.len(),
                    header.get(index).map(String::as_str).unwrap_or("")
                ),
            })
        }
    })
    .collect()
}

/// One CSV record: the 1-based line it starts on, and its fields.
type CsvRecord = (usize, Vec<String>);

/// CSV records (RFC 4180: `"` quotes, `""` inside quotes, CRLF or LF), each with the 1-based
/// line it starts on. Blank lines are skipped.
fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, (usize, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut quoted_cell = false;
        loop {
            match chars.next() {
                None => break,
                Some('"') if cell.is_empty() && !quoted_cell => {
                    quoted_cell = true;
                    loop {
                        match chars.next() {
                            None => return Err((start, "unterminated quoted field".into())),
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                cell.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                cell.push(c);
                            }
                        }
                    }
                }
                Some(',') => {
                    cells.push(std::mem::take(&mut cell));
                    quoted_cell = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') => {
                    line += 1;
                    break;
                }
                Some(c) => cell.push(c),
            }
        }
        cells.push(cell);
        let blank = cells.len() == 1 && cells[0].trim().is_empty() && !quoted_cell;
        if !blank {
            out.push((start, cells));
        }
    }
    Ok(out)
}

/// A number's text as the identity's canonical JSON writes it: integers in decimal, floats as
/// Python's `repr(float)`.
pub fn number_text(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        float_repr(n.as_f64().unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn uid_formats() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str| write(dir.path(), name, text);
        let want = vec!["10".to_owned(), "7".to_owned(), "a b".to_owned()];
        let p = w("u.json", r#"[7, "a b", " 10 ", 7, ""]"#);
        assert_eq!(read_uids(&p, None).unwrap(), want);
        let p = w("u", "\u{feff}[7, \"a b\", 10]");
        assert_eq!(read_uids(&p, None).unwrap(), want);
        let p = w(
            "u.csv",
            "n,Sample_ID,x\r\n1,7,q\r\n\r\n2,\"a b\",\"q,\"\"r\"\"\"\n3,10,z\n",
        );
        assert_eq!(read_uids(&p, None).unwrap(), want);
        assert_eq!(read_uids(&p, Some("x")).unwrap(), vec!["q", "q,\"r\"", "z"]);
        assert!(matches!(
            read_uids(&p, Some("nope")),
            Err(UidError::ColumnMissing { .. })
        ));
        let p = w("v.csv", "a,b\n1,2\n");
        let e = read_uids(&p, None).unwrap_err();
        assert!(matches!(e, UidError::ColumnUnknown { .. }));
        assert!(e.to_string().contains("--uid-column"), "{e}");
        let p = w("short.csv", "idx,uid\n1,a\n2\n");
        assert!(matches!(
            read_uids(&p, None),
            Err(UidError::Format { line: Some(3), .. })
        ));
        let p = w("bad.json", r#"[1, {"a": 2}]"#);
        assert!(matches!(read_uids(&p, None), Err(UidError::Format { .. })));
        let p = w("q.csv", "uid\n\"open\n");
        assert!(matches!(
            read_uids(&p, None),
            Err(UidError::Format { line: Some(2), .. })
        ));
        assert!(matches!(
            read_uids(&dir.path().join("missing.txt"), None),
            Err(UidError::File { .. })
        ));
    }

    #[test]
    fn a_uid_file_over_the_limit_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "u.txt", "a\nb\n");
        assert_eq!(read_uids_within(&p, None, 4).unwrap(), vec!["a", "b"]);
        assert!(matches!(
            read_uids_within(&p, None, 3),
            Err(UidError::File { .. })
        ));
    }

    /// The JSON object forms the catalog read before the layout was shared.
    #[test]
    fn uid_json_objects() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.json", r#"{"uids": ["b", "a", "b"], "n": 3}"#);
        assert_eq!(read_uids(&p, None).unwrap(), vec!["a", "b"]);
        let p = write(dir.path(), "b.json", r#"{"s2": {"w": 1}, "s1": {"w": 2}}"#);
        assert_eq!(read_uids(&p, None).unwrap(), vec!["s1", "s2"]);
        let p = write(dir.path(), "c.json", "3");
        assert!(matches!(read_uids(&p, None), Err(UidError::Format { .. })));
    }

    #[test]
    fn layout() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        // hex name, no hp/ or data/
        let ck = write(r, "x/abcdef12/model/checkpoint_step_000200.pt", "");
        let h = HashFolder::of_checkpoint(&ck).unwrap();
        assert_eq!(h.name, "abcdef12");
        assert_eq!(h.model_dir, ModelDir::Model);
        assert_eq!(h.hp_files().unwrap(), HpFiles::default());
        assert_eq!(h.data_file(), None);
        assert_eq!(h.newest_checkpoint().unwrap(), Some(ck.clone()));
        // any name with data/
        write(r, "exps/run/data/active_uids.json", "[]");
        let ck = write(r, "exps/run/models/a.pt", "");
        let h = HashFolder::of_checkpoint(&ck).unwrap();
        assert_eq!(h.model_dir, ModelDir::Models);
        assert!(HashFolder::of_checkpoint_v1(&ck).is_none());
        assert_eq!(
            h.data_file(),
            Some(r.join("exps/run/data/active_uids.json"))
        );
        // hp files: extensions in any case, sorted, others skipped
        write(r, "exps/run/hp/b.YAML", "a: 1");
        write(r, "exps/run/hp/a.json", "{}");
        write(r, "exps/run/hp/notes.txt", "");
        let hp = h.hp_files().unwrap();
        assert_eq!(
            hp.files,
            vec![r.join("exps/run/hp/a.json"), r.join("exps/run/hp/b.YAML")]
        );
        // version-named folder
        let ck = write(r, "c/v1-d2c97065e066bb16/model/x.pt", "");
        assert_eq!(
            HashFolder::of_checkpoint(&ck).unwrap().name,
            "v1-d2c97065e066bb16"
        );
        assert_eq!(
            named_hash("v1-d2c97065e066bb16"),
            Some(("v1", "d2c97065e066bb16"))
        );
        assert_eq!(named_hash("v12_abcdef"), Some(("v12", "abcdef")));
        assert_eq!(named_hash("v1-xyz"), None);
        assert_eq!(named_hash("version_0"), None);
        // not experiment folders
        let ck = write(r, "outputs/exp/model/last.pt", "");
        assert!(HashFolder::of_checkpoint(&ck).is_none());
        let ck = write(r, "x/abcdef12/weights/a.pt", "");
        assert!(HashFolder::of_checkpoint(&ck).is_none());
        assert!(HashFolder::of_checkpoint(Path::new("model/a.pt")).is_none());
        assert!(HashFolder::of_checkpoint(Path::new("/")).is_none());
    }

    #[test]
    fn newest_step_ranks_numbers_above_names() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "m/checkpoint_step_9.pt", "");
        write(r, "m/checkpoint_step_10.pt", "");
        write(r, "m/checkpoint_step_zz.pt", "");
        write(r, "m/other.pt", "");
        assert_eq!(
            newest_checkpoint(&r.join("m")).unwrap(),
            Some(r.join("m/checkpoint_step_10.pt"))
        );
        assert!(newest_checkpoint(&r.join("nope")).is_err());
    }
}
