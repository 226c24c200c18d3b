//! What a scan says: each global's [`Verdict`] and [`Finding`], a pickle's [`ScanReport`], a
//! file's [`FileScan`] and [`FileVerdict`], and the record `ckpt scan --format json` prints
//! for a file ([`ScanRecord`]): typed, so that its JSON Schema (`ckpt schema scan`, with the
//! `schema` feature) is derived from the same types and cannot drift from the output.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Verdict order matters: Safe < Unknown < Dangerous (the file's verdict is the max).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Safe,
    Unknown,
    Dangerous,
}

impl Verdict {
    /// `"safe"`, `"unknown"` or `"dangerous"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::Unknown => "unknown",
            Verdict::Dangerous => "dangerous",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a pickle uses a global; the order is the strength (the strongest use is reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Usage {
    /// Merely named (e.g. kept as a value, or only in a BUILD of something else).
    Referenced,
    /// Inside the args, kwargs, state or items of a call.
    Argument,
    /// The callee of REDUCE, NEWOBJ, NEWOBJ_EX, INST or OBJ.
    Called,
}

impl Usage {
    /// `"referenced"`, `"argument"` or `"called"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Usage::Referenced => "referenced",
            Usage::Argument => "argument",
            Usage::Called => "called",
        }
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Usage {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One global (or extension code) a pickle references; in `ckpt scan --format json`, one
/// element of a record's `globals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// `module.name` as written in the pickle (not normalized: `__builtin__.set` stays so).
    /// Control characters are escaped (`\u{1b}`) so a name cannot drive a terminal.
    pub name: String,
    pub class: Verdict,
    /// Byte offset of the (first) opcode naming it in its pickle.
    pub offset: u64,
    /// Which pickle inside the container (e.g. `best/data.pkl`).
    pub entry: String,
    /// `"called"` (callee of REDUCE/NEWOBJ/NEWOBJ_EX/INST/OBJ), `"argument"` (inside the
    /// args/kwargs/state/items of a call) or `"referenced"`; the strongest over all its uses.
    pub usage: Usage,
    /// One short reason.
    pub reason: String,
}

/// The findings of one or more pickles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub findings: Vec<Finding>,
}

impl ScanReport {
    /// The worst class over all findings; `Safe` when there are none.
    pub fn verdict(&self) -> Verdict {
        self.findings
            .iter()
            .map(|f| f.class)
            .max()
            .unwrap_or(Verdict::Safe)
    }

    /// Append another pickle's findings (e.g. the pickles of a legacy stream).
    pub fn merge(&mut self, other: ScanReport) {
        self.findings.extend(other.findings);
    }
}

/// The verdict of one file. Order matters: the worst of a batch is the max.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum FileVerdict {
    /// No loader would unpickle anything from this file (safetensors, a plain `.npy`, text…).
    NoPickle,
    /// Every pickle decoded completely; every global on the allowlist.
    Safe,
    /// Some global is not on the allowlist (loading would import its module).
    Unknown,
    /// Something could not be read or decoded completely; what was seen is reported.
    Error,
    /// Some global (or trick) would execute code, reach attributes, open files …
    Dangerous,
}

impl FileVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            FileVerdict::NoPickle => "no-pickle",
            FileVerdict::Safe => "safe",
            FileVerdict::Unknown => "unknown",
            FileVerdict::Error => "error",
            FileVerdict::Dangerous => "dangerous",
        }
    }
}

/// What a scanned file's content is (decided by its bytes, never its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ScanFormat {
    /// Not recognized (what a scan starts from, and what a file ckpt failed on stays).
    #[default]
    #[serde(rename = "other")]
    Other,
    /// An empty file.
    #[serde(rename = "empty")]
    Empty,
    /// A zip (`PK\x03\x04`): what `torch.load` opens as an archive.
    #[serde(rename = "zip")]
    Zip,
    /// Several complete zip archives back to back (a DCP `*.distcp` file).
    #[serde(rename = "zip sequence")]
    ZipSequence,
    #[serde(rename = "safetensors")]
    Safetensors,
    #[serde(rename = "npy")]
    Npy,
    /// torch < 0.1.10's tar checkpoint.
    #[serde(rename = "tar")]
    Tar,
    /// One or more bare pickles.
    #[serde(rename = "pickle")]
    Pickle,
    /// torch's legacy (pre-1.6) stream: magic number, protocol, sys_info, the data, keys.
    #[serde(rename = "legacy")]
    Legacy,
    /// Not a regular file (FIFO, socket, device): never opened.
    #[serde(rename = "special")]
    Special,
}

impl ScanFormat {
    /// The name `--format json` and the table print.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanFormat::Other => "other",
            ScanFormat::Empty => "empty",
            ScanFormat::Zip => "zip",
            ScanFormat::ZipSequence => "zip sequence",
            ScanFormat::Safetensors => "safetensors",
            ScanFormat::Npy => "npy",
            ScanFormat::Tar => "tar",
            ScanFormat::Pickle => "pickle",
            ScanFormat::Legacy => "legacy",
            ScanFormat::Special => "special",
        }
    }
}

impl std::fmt::Display for ScanFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one file holds and what its pickles reference.
#[derive(Debug, Clone, Default)]
pub struct FileScan {
    pub format: ScanFormat,
    pub report: ScanReport,
    /// The pickles decoded (zip member names, `pickle 1`, `legacy pickle` …).
    pub pickles: Vec<String>,
    /// Why the file could not be read or decoded completely (each makes it not safe).
    pub problems: Vec<String>,
    /// For a file without pickles: what it is and why no loader unpickles it.
    pub note: Option<String>,
}

impl FileScan {
    pub fn verdict(&self) -> FileVerdict {
        let worst = self.report.verdict();
        if worst == Verdict::Dangerous {
            return FileVerdict::Dangerous;
        }
        if !self.problems.is_empty() {
            return FileVerdict::Error;
        }
        if worst == Verdict::Unknown {
            return FileVerdict::Unknown;
        }
        if self.pickles.is_empty() {
            return FileVerdict::NoPickle;
        }
        FileVerdict::Safe
    }

    pub(super) fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }
}

/// One file's record in `ckpt scan --format json` (the output is a list of them, one per file,
/// in the order the walk found them). A stable contract: fields are only ever added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ScanRecord {
    /// The file, as named on the command line or found under a named directory.
    pub path: String,
    pub verdict: FileVerdict,
    /// Every distinct global (and extension code) the file's pickles reference, allowlisted
    /// ones included, per pickle in stream order.
    pub globals: Vec<Finding>,
    /// `null`, or `problems` joined with `"; "` (the first field of its kind; kept for
    /// readers written against it).
    pub error: Option<String>,
    /// What the content is.
    pub format: ScanFormat,
    /// The pickles decoded (zip member names, `pickle 1`, `legacy pickle 2` …).
    pub pickles: Vec<String>,
    /// Why the file could not be read or decoded completely (each makes it not safe).
    pub problems: Vec<String>,
    /// For a file without pickles: what it is and why no loader unpickles it.
    pub note: Option<String>,
}

impl ScanRecord {
    /// The record of `scan`, the scan of the file at `path`.
    pub fn new(path: &Path, scan: &FileScan) -> ScanRecord {
        ScanRecord {
            path: path.display().to_string(),
            verdict: scan.verdict(),
            globals: scan.report.findings.clone(),
            error: (!scan.problems.is_empty()).then(|| scan.problems.join("; ")),
            format: scan.format,
            pickles: scan.pickles.clone(),
            problems: scan.problems.clone(),
            note: scan.note.clone(),
        }
    }
}
