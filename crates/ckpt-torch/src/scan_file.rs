//! `ckpt scan` for one file: decide by content what `torch.load`, `pickle.load` or
//! `numpy.load` would unpickle from it, decode every such pickle, and report.
//!
//! The rule is "never say safe by saying nothing": every file gets a [`FileScan`], whose
//! verdict is `safe` only when every pickle in it was decoded to the end and every global it
//! names is on the allowlist, and `no-pickle` only when no loader would unpickle anything from
//! it. What is looked at, by content and never by name:
//! - a file starting `PK\x03\x04` is what `torch.load` opens as a zip (its `_is_zipfile` looks
//!   at those four bytes only): every member named `*.pkl` (any case: torch's miniz looks
//!   names up case-insensitively) is decoded, every copy of a duplicated name, deflated
//!   members inflated within a budget, and object-dtype `.npy` members;
//! - any other file is what `torch.load` hands to `pickle.load` (its legacy path unpickles
//!   before checking anything): the pickle at byte 0 is decoded, then the ones after it
//!   (a legacy stream has five; a bare file may hold several). A file whose first pickle
//!   fails before naming any global in a way CPython fails too holds no pickle;
//! - a `.npy` file (`\x93NUMPY`) whose header declares an object dtype holds a pickle after
//!   its header (`numpy.load(allow_pickle=True)` unpickles it).
//!
//! Pickles are decoded as `torch.load` reads them ([`FrameMode::Stream`]); when an opcode
//! crosses a FRAME end (only a crafted file does that) they are decoded the `pickle.loads`
//! way too, both readings are reported, and the straddle itself is a dangerous finding.
//! Findings made before a decoding error are kept: a truncated hostile pickle is dangerous.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use std::path::Path;

use ckpt_pickle::{ErrorKind, FrameMode, Limits, Pickle, Value};

use crate::scan::{Finding, ScanReport, Verdict, scan_pickle};

/// Most bytes a deflated pickle may inflate to (torch never compresses; a pickle this large
/// inflated from a small member is a zip bomb).
pub const MAX_INFLATED: u64 = 32 << 20;

/// Budgets for one file. Defaults bound a scan to a few hundred MiB of memory whatever the
/// file claims.
#[derive(Debug, Clone)]
pub struct ScanLimits {
    pub pickle: Limits,
    /// Largest pickle (or inflated zip member) decoded.
    pub max_pickle_bytes: u64,
    /// Most pickles decoded from one file (zip members + pickles in sequence).
    pub max_pickles: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            // A scan reads every file of a tree, so a 10 MB file of `N` opcodes must not cost
            // gigabytes: 1M values (32 MB) are ten times what a Lightning checkpoint of a
            // model with thousands of tensors and their optimizer state holds.
            pickle: Limits {
                max_values: 1 << 20,
                max_stack: 256 << 10,
                max_memo: 1 << 20,
                max_container_len: 1 << 20,
                ..Limits::default()
            },
            max_pickle_bytes: MAX_INFLATED,
            max_pickles: 4096,
        }
    }
}

/// The verdict of one file. Order matters: the worst of a batch is the max.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// What one file holds and what its pickles reference.
#[derive(Debug, Clone, Default)]
pub struct FileScan {
    /// `zip`, `legacy`, `pickle`, `npy`, `safetensors`, `empty` or `other`.
    pub format: &'static str,
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

    fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }
}

/// Scan one file by content. Never fails: an unreadable file is a [`FileScan`] with a problem.
pub fn scan_path(path: &Path, limits: &ScanLimits) -> FileScan {
    let mut out = FileScan {
        format: "other",
        ..FileScan::default()
    };
    crate::bug::failpoint(path);
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            out.problem(format!("{shown}: {e}"));
            return out;
        }
    };
    if !meta.is_file() {
        out.problem(format!("{shown}: not a regular file"));
        return out;
    }
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            out.problem(format!("{shown}: {e}"));
            return out;
        }
    };
    let size = meta.len();
    if size == 0 {
        out.format = "empty";
        out.note = Some("empty file".into());
        return out;
    }
    let mut src = Source {
        back: Back::File(&mut file),
        size,
    };
    let head = match src.read(0, size.min(512)) {
        Ok(h) => h,
        Err(e) => {
            out.problem(format!("{shown}: {e}"));
            return out;
        }
    };
    if head.starts_with(b"PK\x03\x04") {
        out.format = "zip";
        scan_zip(&mut src, &mut out, limits);
        judge_torchscript(path, &mut out);
        return out;
    }
    if looks_like_safetensors(&head, size) {
        out.format = "safetensors";
    } else if head.starts_with(NPY_MAGIC) {
        out.format = "npy";
    } else if is_tar_header(&head) {
        out.format = "tar";
    }
    // What torch.load's legacy path does with anything that is not a zip.
    scan_stream(&mut src, 0, &mut out, limits, "");
    if out.format == "npy" {
        scan_npy(&mut src, 0, size, &mut out, limits, "");
    }
    if out.format == "tar" {
        scan_tar(&mut src, &mut out, limits);
    }
    if out.pickles.is_empty() && out.note.is_none() {
        out.note = Some(match out.format {
            "safetensors" => "safetensors file (no pickle)".into(),
            "npy" => "numpy array without objects (no pickle)".into(),
            _ => "no pickle".into(),
        });
    }
    out
}

/// A single archive with a `constants.pkl` member is what `torch.load` hands to
/// `torch.jit.load`: judge its names as that loader resolves them (list tags and the archive's
/// own `__torch__` classes are not Python imports) and add the `<TorchScript code>` finding.
/// Only when it opens as a TorchScript checkpoint; otherwise the findings stay as they are
/// (the stricter reading).
fn judge_torchscript(path: &Path, out: &mut FileScan) {
    let ts_member = out.pickles.iter().any(|p| {
        let lower = p.to_ascii_lowercase();
        lower.ends_with("/constants.pkl") && lower.matches('/').count() == 1
    });
    if out.format != "zip" || !ts_member {
        return;
    }
    let opts = crate::Options {
        classify: false,
        ..crate::Options::default()
    };
    if let Ok(ck) = crate::Checkpoint::open_with(path, &opts) {
        crate::torchscript::judge_as_torchscript(&ck, &mut out.report);
    }
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// Pickles in a legacy torch stream: magic, protocol, sys_info, the data, storage keys.
const LEGACY_PICKLES: usize = 5;
/// Pickles decoded one after the other in a bare file before we stop looking.
const MAX_SEQUENCE: usize = 64;

fn looks_like_safetensors(head: &[u8], size: u64) -> bool {
    if head.len() < 10 {
        return false;
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&head[..8]);
    let n = u64::from_le_bytes(n);
    n >= 2 && n.saturating_add(8) <= size && head[8] == b'{'
}

/// A file read by ranges (never whole), or a zip member already in memory.
struct Source<'a> {
    back: Back<'a>,
    size: u64,
}

enum Back<'a> {
    File(&'a mut File),
    Mem(&'a [u8]),
}

impl Source<'_> {
    fn read(&mut self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let end = offset.checked_add(len).filter(|e| *e <= self.size);
        let Some(_) = end else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("range {offset}+{len} runs past the end of the file"),
            ));
        };
        let n = usize::try_from(len)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::OutOfMemory, "range too large"))?;
        match &mut self.back {
            Back::File(f) => {
                let mut buf = vec![0u8; n];
                f.seek(SeekFrom::Start(offset))?;
                f.read_exact(&mut buf)?;
                Ok(buf)
            }
            Back::Mem(m) => {
                // offset + len <= size <= m.len()
                let start = offset as usize;
                Ok(m.get(start..start + n).unwrap_or_default().to_vec())
            }
        }
    }
}

/// Whether CPython's unpickler fails at this error too (so nothing after it runs). Where our
/// decoder is stricter than CPython (it refuses APPEND on a non-list, which CPython turns into
/// a method call) or hits one of our limits, CPython would go on: the rest is unseen.
fn cpython_fails_too(kind: &ErrorKind) -> bool {
    match kind {
        ErrorKind::WrongType { opcode, .. } => {
            matches!(*opcode, "STACK_GLOBAL" | "REDUCE" | "NEWOBJ" | "NEWOBJ_EX")
        }
        ErrorKind::LimitExceeded { .. } => false,
        // int('0x…', 0) succeeds in CPython; we only refuse the value's size
        ErrorKind::Unsupported(what) => !what.contains("integer literal"),
        _ => true,
    }
}

/// One pickle decoded from a byte buffer: in torch.load's reading, plus the `pickle.loads`
/// reading when they differ. Returns (report, error, end).
fn decode_one(
    data: &[u8],
    limits: &Limits,
    entry: &str,
) -> (ScanReport, Option<ckpt_pickle::Error>, u64, bool) {
    let stream = Limits {
        frames: FrameMode::Stream,
        ..*limits
    };
    let (p, err) = ckpt_pickle::decode_partial(data, &stream);
    // A text file such as a YAML config starting `callbacks:` reads as GLOBAL `allbacks:`:
    // a name no Python module can have, so pickle.load fails to import it and runs nothing.
    let named = !p.extensions.is_empty()
        || p.globals.iter().any(|site| match p.get(site.id) {
            Value::Global(g) => is_module_name(&g.module),
            _ => true,
        });
    let mut report = scan_pickle(&p, entry);
    if let Some(&first) = p.frame_straddles.first() {
        report.findings.push(Finding {
            name: "<opcode across a FRAME end>".into(),
            class: Verdict::Dangerous,
            offset: first,
            entry: entry.to_string(),
            usage: "referenced",
            reason: "an opcode crosses the end of a FRAME: CPython reads it one way from a \
                     stream (torch.load) and another from bytes (pickle.loads); pickle never \
                     writes this"
                .into(),
        });
        let buffer = Limits {
            frames: FrameMode::Buffer,
            ..*limits
        };
        let (q, _) = ckpt_pickle::decode_partial(data, &buffer);
        let other = scan_pickle(&q, entry);
        for f in other.findings {
            if !report.findings.iter().any(|g| g.name == f.name) {
                report.findings.push(f);
            }
        }
    }
    let end = if err.is_none() { p.end } else { 0 };
    (report, err, end, named || is_legacy_magic(&p))
}

/// A dotted Python identifier (what `import` can find without a planted oddly named file).
fn is_module_name(m: &str) -> bool {
    !m.is_empty()
        && m.split('.').all(|part| {
            let mut c = part.chars();
            c.next().is_some_and(|f| f == '_' || f.is_alphabetic())
                && c.all(|x| x == '_' || x.is_alphanumeric())
        })
}

/// Is this pickle the legacy torch stream's magic number (its first pickle)? Shared with the
/// container, so reading and scanning agree on what a legacy file is.
pub(crate) fn is_legacy_magic(p: &Pickle) -> bool {
    if p.end == 0 {
        return false;
    }
    match p.get(p.root()) {
        Value::BigInt(b) => {
            let mut bytes: Vec<u8> = b.magnitude.iter().flat_map(|l| l.to_le_bytes()).collect();
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            !b.negative && bytes == LEGACY_MAGIC
        }
        _ => false,
    }
}

/// One pickle of a file, decoded.
struct Decoded {
    report: ScanReport,
    /// Why decoding stopped early, if it did.
    msg: Option<String>,
    kind: Option<ErrorKind>,
    /// Length of the pickle (0 when it did not end).
    end: u64,
    /// Whether it named an importable global (or is torch's legacy magic number).
    named: bool,
}

/// Decode the pickle at `offset` of the file, reading a growing window (never the whole file
/// unless the pickle needs it, never past the budget).
fn decode_at(
    src: &mut Source<'_>,
    offset: u64,
    limits: &ScanLimits,
    entry: &str,
) -> std::io::Result<Decoded> {
    let avail = src.size.saturating_sub(offset);
    let mut window: u64 = 64 << 10;
    loop {
        let len = window.min(avail);
        let buf = src.read(offset, len)?;
        let (report, err, end, named) = decode_one(&buf, &limits.pickle, entry);
        let grow = match &err {
            Some(e) => matches!(
                e.kind,
                ErrorKind::Truncated | ErrorKind::LengthPastEnd { .. }
            ),
            None => false,
        };
        if grow && len < avail && len < limits.max_pickle_bytes {
            window = window
                .saturating_mul(4)
                .min(limits.max_pickle_bytes)
                .min(avail);
            continue;
        }
        let mut msg = err.as_ref().map(|e| e.to_string());
        if grow && len < avail {
            msg = Some(format!(
                "pickle runs past the {}-byte budget",
                limits.max_pickle_bytes
            ));
        }
        return Ok(Decoded {
            report,
            msg,
            kind: err.map(|e| e.kind),
            end,
            named,
        });
    }
}

/// The pickles of a non-zip file (or of an npy payload), from `start`, in sequence.
fn scan_stream(
    src: &mut Source<'_>,
    start: u64,
    out: &mut FileScan,
    limits: &ScanLimits,
    prefix: &str,
) {
    let mut pos = start;
    let mut legacy = false;
    let mut n = 0usize;
    while pos < src.size {
        if out.pickles.len() >= limits.max_pickles {
            out.problem(format!("more than {} pickles", limits.max_pickles));
            return;
        }
        n += 1;
        let entry = if legacy {
            format!("{prefix}legacy pickle {n}")
        } else if start == 0 && prefix.is_empty() {
            format!("pickle {n}")
        } else {
            format!("{prefix}pickle {n} at byte {pos}")
        };
        let Decoded {
            report,
            msg,
            kind,
            end,
            named,
        } = match decode_at(src, pos, limits, &entry) {
            Ok(r) => r,
            Err(e) => {
                out.problem(format!("{entry}: {e}"));
                return;
            }
        };
        let failed = msg.is_some();
        let benign_failure = kind.as_ref().is_some_and(cpython_fails_too) && !named;
        if failed && benign_failure && !legacy {
            // CPython stops here without having imported anything: no pickle (at the start),
            // or trailing bytes that are not one.
            if n == 1 && start == 0 {
                let starts_proto = src
                    .read(pos, 2.min(src.size - pos))
                    .is_ok_and(|h| h.len() == 2 && h[0] == 0x80 && (2..=5).contains(&h[1]));
                if starts_proto && out.format == "other" {
                    // A protocol 2+ header, then garbage: a damaged pickle, not "no pickle".
                    out.pickles.push(entry.clone());
                    out.problem(format!("{entry}: {}", msg.unwrap_or_default()));
                } else if out.note.is_none() && out.format == "other" {
                    out.note = Some(format!(
                        "no pickle: pickle.load fails at once ({})",
                        msg.unwrap_or_default()
                    ));
                }
            }
            return;
        }
        out.pickles.push(entry.clone());
        out.report.merge(report);
        if n == 1 && start == 0 && out.format == "other" {
            out.format = "pickle";
        }
        if let Some(m) = msg {
            out.problem(format!("{entry}: {m}"));
            return;
        }
        if n == 1 && end > 0 && pos == start && !legacy {
            // Was it the magic number of a legacy stream?
            legacy = is_magic_at(src, pos, end, limits);
            if legacy && out.format == "pickle" {
                out.format = "legacy";
            }
        }
        if end == 0 {
            return;
        }
        pos = pos.saturating_add(end);
        if legacy && n >= LEGACY_PICKLES {
            // The rest is raw storage bytes, which torch never unpickles.
            return;
        }
        if n >= MAX_SEQUENCE {
            return;
        }
    }
}

fn is_magic_at(src: &mut Source<'_>, pos: u64, end: u64, limits: &ScanLimits) -> bool {
    let Ok(buf) = src.read(pos, end) else {
        return false;
    };
    match ckpt_pickle::decode_with(&buf, &limits.pickle) {
        Ok(p) => is_legacy_magic(&p),
        Err(_) => false,
    }
}

/// A `.npy` at `offset` (a file or a zip member's bytes): when its header declares an object
/// dtype (or its payload starts like a pickle), the payload is a pickle `numpy.load` runs.
fn scan_npy(
    src: &mut Source<'_>,
    offset: u64,
    len: u64,
    out: &mut FileScan,
    limits: &ScanLimits,
    prefix: &str,
) {
    let Ok(head) = src.read(offset, len.min(12)) else {
        return;
    };
    if head.len() < 10 || !head.starts_with(NPY_MAGIC) {
        return;
    }
    let (hlen, hstart) = match head[6] {
        1 => (u64::from(u16::from_le_bytes([head[8], head[9]])), 10u64),
        2 | 3 if head.len() >= 12 => (
            u64::from(u32::from_le_bytes([head[8], head[9], head[10], head[11]])),
            12u64,
        ),
        v => {
            out.problem(format!("{prefix}npy: unknown format version {v}"));
            return;
        }
    };
    let payload = hstart.saturating_add(hlen);
    if payload > len || hlen > (1 << 20) {
        out.problem(format!("{prefix}npy: header runs past the end"));
        return;
    }
    let Ok(header) = src.read(offset + hstart, hlen) else {
        out.problem(format!("{prefix}npy: unreadable header"));
        return;
    };
    let header = String::from_utf8_lossy(&header);
    let object = ["'|O", "'O", "'<O", "'>O", "'=O", "\"|O", "\"O"]
        .iter()
        .any(|p| header.contains(p));
    let starts_pickle = payload < len
        && src
            .read(offset + payload, 1)
            .is_ok_and(|b| b.first() == Some(&0x80));
    if !object && !starts_pickle {
        return;
    }
    let before = out.pickles.len();
    let back = match &mut src.back {
        Back::File(f) => Back::File(f),
        Back::Mem(m) => Back::Mem(m),
    };
    let mut sub = Source {
        back,
        size: offset.saturating_add(len).min(src.size),
    };
    scan_stream(
        &mut sub,
        offset + payload,
        out,
        limits,
        &format!("{prefix}npy payload: "),
    );
    if out.pickles.len() == before {
        out.problem(format!(
            "{prefix}npy declares an object dtype but its payload is not a pickle"
        ));
    }
}

// ---------------------------------------------------------------------------- tar

/// A tar header block: its checksum (the sum of its bytes, the checksum field counted as
/// spaces) matches, as Python's `tarfile` checks before anything else.
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block[..512].iter().all(|b| *b == 0) {
        return false;
    }
    let Some(stored) = octal(&block[148..156]) else {
        return false;
    };
    let sum: u64 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    sum == stored
}

fn octal(field: &[u8]) -> Option<u64> {
    let t: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|b| *b != 0)
        .filter(|b| *b != b' ')
        .collect();
    if t.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for d in t {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

/// torch < 0.1.10 saved a tar holding `storages`, `tensors` and `pickle`, and `torch.load`
/// still unpickles them (its legacy path tries the tar format first). Every regular member is
/// scanned as pickles in sequence; `storages` and `tensors` interleave pickles with raw tensor
/// bytes, so when raw bytes stop the sequence before the member ends, the rest is unseen and
/// the file is not called safe.
fn scan_tar(src: &mut Source<'_>, out: &mut FileScan, limits: &ScanLimits) {
    let mut pos = 0u64;
    let mut long_name: Option<String> = None;
    let mut members = 0usize;
    while pos.saturating_add(512) <= src.size {
        let Ok(h) = src.read(pos, 512) else {
            out.problem("tar: unreadable header");
            return;
        };
        if h.iter().all(|b| *b == 0) {
            return;
        }
        if !is_tar_header(&h) {
            out.problem(format!("tar: bad header checksum at byte {pos}"));
            return;
        }
        let Some(size) = octal(&h[124..136]) else {
            out.problem(format!("tar: bad size field at byte {pos}"));
            return;
        };
        let data = pos + 512;
        if data.checked_add(size).is_none_or(|e| e > src.size) {
            out.problem(format!("tar: member at byte {pos} runs past the end"));
            return;
        }
        let field = |r: std::ops::Range<usize>| {
            let b: Vec<u8> = h[r].iter().copied().take_while(|b| *b != 0).collect();
            String::from_utf8_lossy(&b).into_owned()
        };
        let mut name = field(0..100);
        let prefix = field(345..500);
        if &h[257..262] == b"ustar" && !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        match h[156] {
            // GNU long name / PAX header: names the next member
            b'L' | b'x' => {
                if size <= 64 << 10
                    && let Ok(b) = src.read(data, size)
                {
                    let text = String::from_utf8_lossy(&b).into_owned();
                    long_name = if h[156] == b'L' {
                        Some(text.trim_end_matches('\0').to_string())
                    } else {
                        text.lines()
                            .find_map(|l| l.split_once(" path=").map(|(_, p)| p.to_string()))
                    };
                }
            }
            b'0' | 0 | b'7' => {
                let name = long_name.take().unwrap_or(name);
                members += 1;
                if members > limits.max_pickles {
                    out.problem("tar: too many members");
                    return;
                }
                let before = out.pickles.len();
                let mut sub = Source {
                    back: match &mut src.back {
                        Back::File(f) => Back::File(f),
                        Back::Mem(m) => Back::Mem(m),
                    },
                    size: data + size,
                };
                let last = scan_member_sequence(&mut sub, data, out, limits, &format!("{name}: "));
                if out.pickles.len() > before && last < data + size {
                    out.problem(format!(
                        "tar member {name}: raw bytes follow its pickles at byte {}; the \
                         pickles after them (torch's legacy tar format) are not read",
                        last - data
                    ));
                }
            }
            _ => {
                long_name = None;
            }
        }
        pos = data + size.div_ceil(512) * 512;
    }
}

/// Pickles in sequence from `start` (a tar member); returns where the last one ended.
fn scan_member_sequence(
    src: &mut Source<'_>,
    start: u64,
    out: &mut FileScan,
    limits: &ScanLimits,
    prefix: &str,
) -> u64 {
    let mut pos = start;
    let mut n = 0usize;
    while pos < src.size && n < MAX_SEQUENCE {
        n += 1;
        let entry = format!("{prefix}pickle {n}");
        let Ok(d) = decode_at(src, pos, limits, &entry) else {
            out.problem(format!("{entry}: unreadable"));
            return pos;
        };
        let benign_failure = d.kind.as_ref().is_some_and(cpython_fails_too) && !d.named;
        if d.msg.is_some() && benign_failure {
            return pos;
        }
        out.pickles.push(entry.clone());
        out.report.merge(d.report);
        if let Some(m) = d.msg {
            out.problem(format!("{entry}: {m}"));
            return src.size;
        }
        if d.end == 0 {
            return pos;
        }
        pos += d.end;
    }
    pos
}

// ---------------------------------------------------------------------------- zip

/// One central directory record.
pub(crate) struct Member {
    pub name: Vec<u8>,
    /// Offset of the local header, relative to the archive's start.
    pub header: u64,
    pub compressed: u64,
    pub size: u64,
    /// 0 stored, 8 deflate.
    pub method: u16,
}

/// A file starting `PK\x03\x04`: one archive, or (a DCP `*.distcp` file) several archives
/// one after the other, each a complete torch.save zip that DCP loads by its byte range.
fn scan_zip(src: &mut Source<'_>, out: &mut FileScan, limits: &ScanLimits) {
    let windows = archive_sequence(src).filter(|w| w.len() > 1);
    match windows {
        Some(ws) => {
            out.format = "zip sequence";
            for (start, end) in ws {
                scan_archive(
                    src,
                    start,
                    end - start,
                    out,
                    limits,
                    &format!("@{start} "),
                    0,
                );
            }
        }
        None => {
            let size = src.size;
            scan_archive(src, 0, size, out, limits, "", 0);
        }
    }
    if out.pickles.is_empty() && out.problems.is_empty() {
        out.note = Some("zip archive without pickle members".into());
    }
}

/// The archives a file holds back to back, found from the end: each archive's end record
/// (ZIP64 or not, without a comment) gives the size and relative offset of its central
/// directory, hence where that archive starts; the one before ends there. None when this does
/// not lead back exactly to byte 0 (the file is then read as one archive). torch writes local
/// headers with data descriptors, so walking forward is not possible.
fn archive_sequence(src: &mut Source<'_>) -> Option<Vec<(u64, u64)>> {
    fn le(b: &[u8], i: usize, n: usize) -> u64 {
        let mut v = 0u64;
        for k in (0..n).rev() {
            v = (v << 8) | u64::from(b[i + k]);
        }
        v
    }
    let mut out = Vec::new();
    let mut end = src.size;
    // Each step reads three small records; at most one step per 22 bytes of file.
    while end > 0 {
        let eocd = end.checked_sub(22)?;
        let e = src.read(eocd, 22).ok()?;
        if e[..4] != *b"PK\x05\x06" || le(&e, 20, 2) != 0 {
            return None;
        }
        let (mut cd_size, mut cd_off, mut cd_end) = (le(&e, 12, 4), le(&e, 16, 4), eocd);
        if let Some(loc) = eocd.checked_sub(20)
            && let Ok(l) = src.read(loc, 20)
            && l[..4] == *b"PK\x06\x07"
        {
            let rec = loc.checked_sub(56)?;
            let z = src.read(rec, 56).ok()?;
            if z[..4] != *b"PK\x06\x06" {
                return None;
            }
            cd_size = le(&z, 40, 8);
            cd_off = le(&z, 48, 8);
            cd_end = rec;
        }
        let start = cd_end.checked_sub(cd_size)?.checked_sub(cd_off)?;
        if src.read(start, 4).ok()? != b"PK\x03\x04" {
            return None;
        }
        out.push((start, end));
        end = start;
    }
    out.reverse();
    Some(out)
}

fn scan_archive(
    src: &mut Source<'_>,
    base: u64,
    len: u64,
    out: &mut FileScan,
    limits: &ScanLimits,
    label: &str,
    depth: u8,
) {
    let members = match read_directory(src, base, len) {
        Ok(m) => m,
        Err(e) => {
            out.problem(format!("{label}damaged zip archive: {e}"));
            return;
        }
    };
    let names: Vec<&[u8]> = members.iter().map(|m| m.name.as_slice()).collect();
    // Duplicates as torch's miniz sees names: ASCII case folded.
    let mut folded: Vec<(Vec<u8>, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_ascii_lowercase(), i))
        .collect();
    folded.sort();
    for w in folded.chunk_by(|a, b| a.0 == b.0) {
        if w.len() > 1 {
            let name = String::from_utf8_lossy(&w[0].0);
            let torch = torch_zip_lookup(&names, &w[0].0)
                .map(|i| format!("torch reads entry #{i}"))
                .unwrap_or_else(|| "torch finds none of them".into());
            out.problem(format!(
                "{label}{} entries are named {name} (ignoring case; {torch}); every copy was \
                 scanned",
                w.len()
            ));
        }
    }
    let mut scanned = 0usize;
    for (i, m) in members.iter().enumerate() {
        let lower = m.name.to_ascii_lowercase();
        let is_pkl = lower.ends_with(b".pkl");
        let is_npy = lower.ends_with(b".npy");
        if !is_pkl && !is_npy {
            // A zip inside the zip (an archive shipped inside another): scanned as well,
            // one level deep. Storages (`<root>/data/…`) are never read.
            let storage = lower.windows(6).any(|w| w == b"/data/");
            if depth == 0 && !storage && m.compressed <= limits.max_pickle_bytes {
                let shown = format!("{label}{}/", String::from_utf8_lossy(&m.name));
                if let Ok(Some(bytes)) = member_head_is_zip(src, base, m, limits) {
                    let n = bytes.len() as u64;
                    let mut inner = Source {
                        back: Back::Mem(&bytes),
                        size: n,
                    };
                    scan_archive(&mut inner, 0, n, out, limits, &shown, depth + 1);
                }
            }
            continue;
        }
        if scanned >= limits.max_pickles {
            out.problem(format!("more than {} pickle members", limits.max_pickles));
            return;
        }
        scanned += 1;
        let shown = format!("{label}{}", String::from_utf8_lossy(&m.name));
        let entry = if names
            .iter()
            .filter(|n| n.eq_ignore_ascii_case(&m.name))
            .count()
            > 1
        {
            format!("{shown} (entry #{i})")
        } else {
            shown
        };
        let bytes = match member_bytes(src, base, m, limits) {
            Ok(b) => b,
            Err(e) => {
                out.problem(format!("{entry}: {e}"));
                continue;
            }
        };
        if is_pkl {
            out.pickles.push(entry.clone());
            let (report, err, _, _) = decode_one(&bytes, &limits.pickle, &entry);
            out.report.merge(report);
            if let Some(e) = err {
                out.problem(format!("{entry}: {e}"));
            }
        } else {
            scan_npy_bytes(&bytes, out, limits, &format!("{entry}: "));
        }
    }
}

/// An npy held in memory (a zip member).
fn scan_npy_bytes(bytes: &[u8], out: &mut FileScan, limits: &ScanLimits, prefix: &str) {
    let size = bytes.len() as u64;
    let mut src = Source {
        back: Back::Mem(bytes),
        size,
    };
    scan_npy(&mut src, 0, size, out, limits, prefix);
}

fn read_directory(src: &mut Source<'_>, base: u64, len: u64) -> Result<Vec<Member>, String> {
    central_directory(&mut |off, n| src.read(base + off, n), len)
}

fn le(b: &[u8], i: usize, n: usize) -> u64 {
    let mut v = 0u64;
    for k in (0..n).rev() {
        v = (v << 8) | u64::from(b.get(i + k).copied().unwrap_or(0));
    }
    v
}

/// Every central directory record of the archive in `0..len` (read through `read(offset,
/// len)`), duplicates included, in directory order. The end record is the last signature in
/// the final 64 KiB, as miniz finds it; offsets are taken as written (relative to the
/// archive's start), as miniz takes them. Our own reader because the `zip` crate keeps one
/// entry per name and so cannot show a second `data.pkl`.
pub(crate) fn central_directory(
    read: &mut dyn FnMut(u64, u64) -> std::io::Result<Vec<u8>>,
    len: u64,
) -> Result<Vec<Member>, String> {
    let io = |e: std::io::Error| e.to_string();
    let tail_len = len.min(65535 + 22);
    let tail_start = len - tail_len;
    let tail = read(tail_start, tail_len).map_err(io)?;
    let i = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))
        .ok_or("no end of central directory record")?;
    let eocd = tail_start + i as u64;
    let e = &tail[i..];
    let (mut count, mut cd_size, mut cd_off) = (le(e, 10, 2), le(e, 12, 4), le(e, 16, 4));
    if let Some(loc) = eocd.checked_sub(20)
        && let Ok(l) = read(loc, 20)
        && l.starts_with(b"PK\x06\x07")
    {
        let rec = le(&l, 8, 8);
        if rec.checked_add(56).is_none_or(|e| e > len) {
            return Err("ZIP64 end record lies past the end".into());
        }
        let z = read(rec, 56).map_err(io)?;
        if !z.starts_with(b"PK\x06\x06") {
            return Err("bad ZIP64 end record signature".into());
        }
        count = le(&z, 32, 8);
        cd_size = le(&z, 40, 8);
        cd_off = le(&z, 48, 8);
    }
    if cd_off.checked_add(cd_size).is_none_or(|e| e > len) {
        return Err(format!(
            "central directory ({cd_size} bytes at {cd_off}) lies past the end of the archive"
        ));
    }
    if count.saturating_mul(46) > cd_size {
        return Err(format!(
            "{count} entries cannot fit in a {cd_size}-byte central directory"
        ));
    }
    let cd = read(cd_off, cd_size).map_err(io)?;
    let mut out = Vec::with_capacity(count as usize);
    let mut p = 0usize;
    for k in 0..count {
        let h = cd
            .get(p..p + 46)
            .ok_or(format!("central directory record {k} is cut short"))?;
        if !h.starts_with(b"PK\x01\x02") {
            return Err(format!("bad signature of central directory record {k}"));
        }
        let (nl, xl, cl) = (
            le(h, 28, 2) as usize,
            le(h, 30, 2) as usize,
            le(h, 32, 2) as usize,
        );
        let name = cd
            .get(p + 46..p + 46 + nl)
            .ok_or(format!("central directory record {k} is cut short"))?
            .to_vec();
        let extra = cd.get(p + 46 + nl..p + 46 + nl + xl).unwrap_or_default();
        let (mut size, mut compressed, mut header) = (le(h, 24, 4), le(h, 20, 4), le(h, 42, 4));
        let mut x = 0usize;
        while x + 4 <= extra.len() {
            let (id, n) = (le(extra, x, 2), le(extra, x + 2, 2) as usize);
            if id == 1 {
                let mut f = x + 4;
                for v in [&mut size, &mut compressed, &mut header] {
                    if *v == 0xFFFF_FFFF && f + 8 <= x + 4 + n {
                        *v = le(extra, f, 8);
                        f += 8;
                    }
                }
            }
            x += 4 + n;
        }
        out.push(Member {
            name,
            header,
            compressed,
            size,
            method: le(h, 10, 2) as u16,
        });
        p += 46 + nl + xl + cl;
    }
    Ok(out)
}

/// A member's bytes when they are themselves a zip archive (its first four bytes are looked at
/// before anything else is read or inflated).
fn member_head_is_zip(
    src: &mut Source<'_>,
    base: u64,
    m: &Member,
    limits: &ScanLimits,
) -> Result<Option<Vec<u8>>, String> {
    if m.compressed < 4 {
        return Ok(None);
    }
    if m.method == 0 {
        let header = base.checked_add(m.header).ok_or("offset overflows")?;
        let lh = src.read(header, 30).map_err(|e| e.to_string())?;
        let data = header + 30 + le(&lh, 26, 2) + le(&lh, 28, 2);
        if src.read(data, 4).map_err(|e| e.to_string())? != b"PK\x03\x04" {
            return Ok(None);
        }
    } else if m.compressed > (1 << 20) {
        return Ok(None);
    }
    let bytes = member_bytes(src, base, m, limits)?;
    Ok(bytes.starts_with(b"PK\x03\x04").then_some(bytes))
}

/// A member's bytes: stored ones read at their data offset, deflated ones inflated with the
/// budget as a hard ceiling (a zip bomb stops at the budget and is refused).
fn member_bytes(
    src: &mut Source<'_>,
    base: u64,
    m: &Member,
    limits: &ScanLimits,
) -> Result<Vec<u8>, String> {
    let header = base
        .checked_add(m.header)
        .ok_or("local header offset overflows")?;
    let lh = src.read(header, 30).map_err(|e| e.to_string())?;
    if lh[..4] != *b"PK\x03\x04" {
        return Err("bad local header signature".into());
    }
    let name_len = u64::from(u16::from_le_bytes([lh[26], lh[27]]));
    let extra_len = u64::from(u16::from_le_bytes([lh[28], lh[29]]));
    let data = header + 30 + name_len + extra_len;
    if m.compressed > limits.max_pickle_bytes {
        return Err(format!(
            "{} bytes, over the {}-byte budget for a pickle",
            m.compressed, limits.max_pickle_bytes
        ));
    }
    let raw = src.read(data, m.compressed).map_err(|e| e.to_string())?;
    match m.method {
        0 => Ok(raw),
        8 => inflate(&raw, limits.max_pickle_bytes, Some(m.size)),
        other => Err(format!(
            "compressed with method {other}, which torch cannot read and ckpt cannot scan"
        )),
    }
}

/// Inflate raw deflate data, refusing to produce more than `budget` bytes.
pub fn inflate(raw: &[u8], budget: u64, claimed: Option<u64>) -> Result<Vec<u8>, String> {
    let past = || match claimed {
        Some(c) => {
            format!("inflates past the {budget}-byte budget (claims {c} bytes; a zip bomb?)")
        }
        None => format!("inflates past the {budget}-byte budget (a zip bomb?)"),
    };
    if claimed.is_some_and(|c| c > budget) {
        // Refused before inflating anything.
        return Err(past());
    }
    let limit = usize::try_from(budget).unwrap_or(usize::MAX);
    match miniz_oxide::inflate::decompress_to_vec_with_limit(raw, limit) {
        Ok(v) => Ok(v),
        Err(e) if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput => Err(past()),
        Err(e) => Err(format!("bad deflate data: {:?}", e.status)),
    }
}

/// The central directory index of the entry named `target` as torch's reader finds it:
/// PyTorchStreamReader looks records up with miniz's `mz_zip_reader_locate_file`, a binary
/// search (ASCII case folded) over the names heap-sorted when the archive was opened. With
/// duplicate names the copy found depends on the sort, not on the order in the archive.
pub fn torch_zip_lookup(names: &[&[u8]], target: &[u8]) -> Option<usize> {
    fn lower(c: u8) -> u8 {
        c.to_ascii_lowercase()
    }
    fn less(a: &[u8], b: &[u8]) -> bool {
        for (x, y) in a.iter().zip(b) {
            let (l, r) = (lower(*x), lower(*y));
            if l != r {
                return l < r;
            }
        }
        a.len() < b.len()
    }
    fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        for (x, y) in a.iter().zip(b) {
            let (l, r) = (lower(*x), lower(*y));
            if l != r {
                return l.cmp(&r);
            }
        }
        a.len().cmp(&b.len())
    }
    let size = names.len();
    let mut idx: Vec<usize> = (0..size).collect();
    let name = |i: usize| names.get(i).copied().unwrap_or_default();
    if size > 1 {
        let sift = |idx: &mut Vec<usize>, mut root: usize, end: usize| {
            loop {
                let mut child = 2 * root + 1;
                if child >= end {
                    break;
                }
                if child + 1 < end && less(name(idx[child]), name(idx[child + 1])) {
                    child += 1;
                }
                if !less(name(idx[root]), name(idx[child])) {
                    break;
                }
                idx.swap(root, child);
                root = child;
            }
        };
        let mut start = (size - 2) >> 1;
        loop {
            sift(&mut idx, start, size);
            if start == 0 {
                break;
            }
            start -= 1;
        }
        let mut end = size - 1;
        while end > 0 {
            idx.swap(end, 0);
            sift(&mut idx, 0, end);
            end -= 1;
        }
    }
    let (mut l, mut h) = (0i64, size as i64 - 1);
    while l <= h {
        let m = l + ((h - l) >> 1);
        let fi = idx[m as usize];
        match compare(name(fi), target) {
            std::cmp::Ordering::Equal => return Some(fi),
            std::cmp::Ordering::Less => l = m + 1,
            std::cmp::Ordering::Greater => h = m - 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_unique_names_case_insensitively() {
        let names: Vec<&[u8]> = vec![b"a/version", b"a/data.pkl", b"a/data/0", b"a/byteorder"];
        assert_eq!(torch_zip_lookup(&names, b"a/data.pkl"), Some(1));
        assert_eq!(torch_zip_lookup(&names, b"A/DATA.PKL"), Some(1));
        assert_eq!(torch_zip_lookup(&names, b"a/missing"), None);
    }
    /// Which copy of a duplicated `archive/data.pkl` torch 2.x's `torch.load` returned, for
    /// archives laid out by scripts/make_hostile_fixtures.py's probe (v = version,
    /// d = data.pkl, eN = extraN, b = byteorder, in central directory order).
    #[test]
    fn lookup_picks_the_duplicate_torch_picks() {
        let cases: &[(&str, usize)] = &[
            ("v,d,d,b", 2),
            ("v,d,d,d,b", 3),
            ("v,d,d,e0,b", 1),
            ("v,d,d,d,e0,b", 3),
            ("v,d,e0,d,e1,b", 3),
            ("v,d,d,d,e0,e1,b", 1),
            ("v,d,e0,d,e1,e2,b", 1),
            ("v,d,d,e0,e1,d,e2,b", 1),
            ("v,d,e0,e1,d,e2,e3,b", 4),
            ("v,d,e0,d,e1,d,e2,e3,b", 5),
            ("v,d,e0,e1,d,e2,e3,e4,b", 4),
            ("v,d,e0,d,e1,d,e2,e3,e4,b", 5),
            ("v,d,e0,e1,e2,d,e3,e4,e5,b", 5),
            ("v,d,e0,d,e1,e2,e3,d,e4,e5,b", 7),
            ("v,d,e0,e1,e2,d,e3,e4,e5,e6,b", 5),
            ("v,d,e0,e1,d,e2,e3,d,e4,e5,e6,b", 7),
            ("v,d,e0,e1,e2,e3,d,e4,e5,e6,e7,b", 6),
            ("v,d,e0,e1,d,e2,e3,d,e4,e5,e6,e7,b", 1),
            ("v,d,e0,e1,e2,e3,d,e4,e5,e6,e7,e8,b", 6),
            ("v,d,e0,e1,d,e2,e3,e4,e5,d,e6,e7,e8,b", 4),
            ("v,d,e0,e1,e2,e3,e4,d,e5,e6,e7,e8,e9,b", 7),
            ("v,d,e0,e1,e2,d,e3,e4,e5,d,e6,e7,e8,e9,b", 9),
            ("v,d,e0,e1,e2,e3,e4,d,e5,e6,e7,e8,e9,e10,b", 1),
            ("v,d,e0,e1,e2,d,e3,e4,e5,d,e6,e7,e8,e9,e10,b", 1),
        ];
        for (layout, torch_index) in cases {
            let names: Vec<String> = layout
                .split(',')
                .map(|c| match c {
                    "v" => "archive/version".to_string(),
                    "d" => "archive/data.pkl".to_string(),
                    "b" => "archive/byteorder".to_string(),
                    e => format!("archive/extra{}", &e[1..]),
                })
                .collect();
            let refs: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
            assert_eq!(
                torch_zip_lookup(&refs, b"archive/data.pkl"),
                Some(*torch_index),
                "{layout}"
            );
        }
    }
}
