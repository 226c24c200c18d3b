//! `ckpt validate` for one checkpoint: is each of its sidecars readable, valid against the
//! schema, and still describing the checkpoint? The result is typed ([`SidecarCheck`]) because
//! it is also the record `ckpt validate --format json` prints: its JSON Schema (`ckpt schema
//! validate`, with the `schema` feature) is derived from these types and cannot drift.

use std::path::Path;

use ckpt_torch::Checkpoint;
use serde::{Deserialize, Serialize};

use crate::sidecar::{self, Sidecar, Staleness};

/// What a checkpoint's sidecars are worth. In `--format json`: `valid`, `invalid`, `stale` or
/// `missing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum SidecarStatus {
    /// Every sidecar parses, follows the schema and matches the checkpoint.
    Valid,
    /// A sidecar does not parse or breaks the schema, or the checkpoint cannot be read.
    Invalid,
    /// The sidecars are valid but no longer describe the checkpoint (its size or pickle
    /// changed since they were written).
    Stale,
    /// The checkpoint has no sidecar.
    Missing,
}

impl SidecarStatus {
    /// `"valid"`, `"invalid"`, `"stale"` or `"missing"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SidecarStatus::Valid => "valid",
            SidecarStatus::Invalid => "invalid",
            SidecarStatus::Stale => "stale",
            SidecarStatus::Missing => "missing",
        }
    }
}

impl std::fmt::Display for SidecarStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One checkpoint's record in `ckpt validate --format json` (the output is a list of them, in
/// path order). A stable contract: fields are only ever added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SidecarCheck {
    /// The checkpoint file.
    pub checkpoint: String,
    /// Its first sidecar found (`.metadata.yaml`, else `.metadata.json`); `null` when none.
    pub sidecar: Option<String>,
    pub status: SidecarStatus,
    /// Why it is not valid, one entry per problem, every sidecar of the checkpoint judged.
    pub problems: Vec<SidecarProblem>,
}

/// One thing wrong with a sidecar (or with reading its checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum SidecarProblem {
    /// A problem at a field path (`path` empty for the whole file: stale, checkpoint
    /// unreadable).
    Field(FieldProblem),
    /// The sidecar could not be read or parsed; the parser's position when it knows one.
    Unreadable(UnreadableProblem),
}

/// A problem at a dotted field path of a sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FieldProblem {
    /// The sidecar's file name (or the checkpoint's path when ckpt itself failed on it).
    pub file: String,
    /// Dotted field path (`training.epoch`); empty when the problem is the whole file.
    pub path: String,
    pub message: String,
}

/// A sidecar that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UnreadableProblem {
    /// The sidecar's file name.
    pub file: String,
    /// Always empty (no field path: the file as a whole).
    pub path: String,
    pub message: String,
    /// 1-based line and column of a parse error; `null` when the error has no position (an
    /// unreadable file, a budget exceeded).
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl SidecarProblem {
    /// A problem with the whole of `file` (no field path).
    pub fn whole(file: impl Into<String>, message: impl Into<String>) -> SidecarProblem {
        SidecarProblem::Field(FieldProblem {
            file: file.into(),
            path: String::new(),
            message: message.into(),
        })
    }

    pub fn file(&self) -> &str {
        match self {
            SidecarProblem::Field(p) => &p.file,
            SidecarProblem::Unreadable(p) => &p.file,
        }
    }

    pub fn path(&self) -> &str {
        match self {
            SidecarProblem::Field(p) => &p.path,
            SidecarProblem::Unreadable(p) => &p.path,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            SidecarProblem::Field(p) => &p.message,
            SidecarProblem::Unreadable(p) => &p.message,
        }
    }
}

/// Judge every sidecar of the checkpoint at `ckpt`. Every sidecar that exists is judged (a
/// partial `.metadata.json` beside a good YAML one is still reported); one that is not a
/// regular file (a FIFO, a folder) is invalid, not missing, and is never opened.
pub fn check_sidecars(ckpt: &Path) -> SidecarCheck {
    let mut v = SidecarCheck {
        checkpoint: ckpt.display().to_string(),
        sidecar: None,
        status: SidecarStatus::Valid,
        problems: Vec::new(),
    };
    let paths: Vec<std::path::PathBuf> = [sidecar::yaml_path(ckpt), sidecar::json_path(ckpt)]
        .into_iter()
        // Local or remote alike (`Path::exists` would ask the local disk about a URL).
        .filter(|p| ckpt_io::stat(p).is_ok())
        .collect();
    if paths.is_empty() {
        v.status = SidecarStatus::Missing;
        return v;
    }
    v.sidecar = paths.first().map(|p| p.display().to_string());
    let mut opened: Option<Result<Checkpoint, String>> = None;
    for sc_path in &paths {
        let name = sc_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sc = match Sidecar::read(sc_path) {
            Ok(sc) => sc,
            Err(e) => {
                v.status = SidecarStatus::Invalid;
                let (line, column) = e.position().unzip();
                v.problems
                    .push(SidecarProblem::Unreadable(UnreadableProblem {
                        file: name,
                        path: String::new(),
                        message: e.to_string(),
                        line,
                        column,
                    }));
                continue;
            }
        };
        let problems = crate::schema::validate(&sc.value);
        if !problems.is_empty() {
            v.status = SidecarStatus::Invalid;
            v.problems.extend(problems.into_iter().map(|p| {
                SidecarProblem::Field(FieldProblem {
                    file: name.clone(),
                    path: p.path,
                    message: p.message,
                })
            }));
            continue;
        }
        let ck = opened.get_or_insert_with(|| Checkpoint::open(ckpt).map_err(|e| e.to_string()));
        match ck {
            Ok(ck) => {
                if let Staleness::Stale(reason) = sidecar::staleness(&sc.value, ck) {
                    if v.status == SidecarStatus::Valid {
                        v.status = SidecarStatus::Stale;
                    }
                    v.problems.push(SidecarProblem::whole(name, reason));
                }
            }
            Err(e) => {
                v.status = SidecarStatus::Invalid;
                v.problems.push(SidecarProblem::whole(
                    name,
                    format!("checkpoint unreadable: {e}"),
                ));
            }
        }
    }
    v
}
