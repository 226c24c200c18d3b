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

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use ckpt_io::{ByteSource, OpenError};
use ckpt_pickle::{ErrorKind, FrameMode, Limits, Pickle, Value};

use super::npy::{NPY_MAGIC, scan_npy};
use super::pickle::scan_pickle;
use super::report::{FileScan, Finding, ScanFormat, ScanReport, Usage, Verdict};
use super::tar::{is_tar_header, scan_tar};
use super::zip::scan_zip;

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

/// Scan one file by content. Never fails: an unreadable file is a [`FileScan`] with a problem.
pub fn scan_path(path: &Path, limits: &ScanLimits) -> FileScan {
    scan_path_keeping(path, limits, false).0
}

/// The `data.pkl` a scan decoded, kept for the container reader so that a caller who scans and
/// then opens a file (the catalog) decodes it once: the bytes of the copy torch reads
/// ([`crate::zipdir::torch_data_pkl`]) of a single archive, and their decoding in torch's
/// frame mode, which ended without error within the scan's limits.
#[derive(Debug)]
pub(crate) struct Predecoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) pickle: Pickle,
    /// The limits it was decoded within (`frames` is [`FrameMode::Stream`]).
    pub(crate) limits: Limits,
}

impl Predecoded {
    /// Is `self.pickle` exactly what `ckpt_pickle::decode_with(data, limits)` returns? Yes
    /// when the bytes are the same, the frame mode is the same and no limit is tighter than
    /// the ones it was decoded within without error: the decoder is a function of its input,
    /// and a limit only ever stops it (at the first value, entry or byte past it), never
    /// changes what it builds before that.
    pub(crate) fn fits(&self, data: &[u8], limits: &Limits) -> bool {
        // Every field named: a new limit must be judged here before this compiles.
        let Limits {
            max_values,
            max_stack,
            max_marks,
            max_memo,
            max_container_len,
            max_int_bytes,
            frames,
        } = *limits;
        let k = &self.limits;
        frames == k.frames
            && max_values >= k.max_values
            && max_stack >= k.max_stack
            && max_marks >= k.max_marks
            && max_memo >= k.max_memo
            && max_container_len >= k.max_container_len
            && max_int_bytes >= k.max_int_bytes
            && self.bytes.as_slice() == data
    }
}

/// [`scan_path`], and (when `keep`) the decoded `data.pkl` torch reads, when the scan decoded
/// it without error (see [`Predecoded`]). The scan itself is the same either way.
pub(crate) fn scan_path_keeping(
    path: &Path,
    limits: &ScanLimits,
    keep: bool,
) -> (FileScan, Option<Predecoded>) {
    let mut kept = None;
    let out = scan_path_inner(path, limits, keep.then_some(&mut kept));
    (out, kept)
}

fn scan_path_inner(
    path: &Path,
    limits: &ScanLimits,
    keep: Option<&mut Option<Predecoded>>,
) -> FileScan {
    crate::bug::failpoint(path);
    match ckpt_io::open(path) {
        Ok(src) => scan_opened(&src, limits, keep),
        Err(e) => scan_of_open_error(path, &e),
    }
}

/// The scan of a path that could not be opened: its one problem.
pub(crate) fn scan_of_open_error(path: &Path, e: &OpenError) -> FileScan {
    let mut out = FileScan {
        format: ScanFormat::Other,
        ..FileScan::default()
    };
    let shown = path.display();
    match e {
        OpenError::NotAFile { .. } => out.problem(format!("{shown}: not a regular file")),
        OpenError::Io(e) => out.problem(format!("{shown}: {e}")),
        e @ OpenError::TooLarge { .. } => out.problem(format!("{shown}: {e}")),
    }
    out
}

/// [`scan_path_keeping`] of a source already open (`src.path()` names it in messages): the
/// same scan, reading `src` only (a TorchScript archive's judgement too opens nothing).
pub(crate) fn scan_source_keeping(
    src: &Arc<dyn ByteSource>,
    limits: &ScanLimits,
    keep: bool,
) -> (FileScan, Option<Predecoded>) {
    let mut kept = None;
    let out = scan_opened(src, limits, keep.then_some(&mut kept));
    (out, kept)
}

fn scan_opened(
    src: &Arc<dyn ByteSource>,
    limits: &ScanLimits,
    keep: Option<&mut Option<Predecoded>>,
) -> FileScan {
    let mut out = FileScan {
        format: ScanFormat::Other,
        ..FileScan::default()
    };
    let size = src.len();
    if size == 0 {
        out.format = ScanFormat::Empty;
        out.note = Some("empty file".into());
        return out;
    }
    // Bytes already in memory are sliced where they are.
    let back = match src.as_bytes() {
        Some(b) => Back::Mem(b),
        None => Back::Src(&**src),
    };
    scan_source(src, Source { back, size }, out, limits, keep)
}

/// The scan of a non-empty file's content, `src`.
fn scan_source(
    whole: &Arc<dyn ByteSource>,
    mut src: Source<'_>,
    mut out: FileScan,
    limits: &ScanLimits,
    keep: Option<&mut Option<Predecoded>>,
) -> FileScan {
    let shown = whole.path().display();
    let size = src.size;
    // The head and the tail (a zip's directory) first, in one round (see the container's
    // `first_reads`); a no-op for a local file.
    if src.wants_hints() {
        src.prefetch(&crate::container::first_reads(size));
    }
    let head = match src.read(0, size.min(512)) {
        Ok(h) => h,
        Err(e) => {
            out.problem(format!("{shown}: {e}"));
            return out;
        }
    };
    if head.starts_with(b"PK\x03\x04") {
        out.format = ScanFormat::Zip;
        scan_zip(&mut src, &mut out, limits, keep);
        judge_torchscript(whole, &mut out);
        return out;
    }
    if looks_like_safetensors(&head, size) {
        out.format = ScanFormat::Safetensors;
    } else if head.starts_with(NPY_MAGIC) {
        out.format = ScanFormat::Npy;
    } else if is_tar_header(&head) {
        out.format = ScanFormat::Tar;
    }
    // What torch.load's legacy path does with anything that is not a zip.
    scan_stream(&mut src, 0, &mut out, limits, "");
    if out.format == ScanFormat::Npy {
        scan_npy(&mut src, 0, size, &mut out, limits, "");
    }
    if out.format == ScanFormat::Tar {
        scan_tar(&mut src, &mut out, limits);
    }
    if out.pickles.is_empty() && out.note.is_none() {
        out.note = Some(match out.format {
            ScanFormat::Safetensors => "safetensors file (no pickle)".into(),
            ScanFormat::Npy => "numpy array without objects (no pickle)".into(),
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
fn judge_torchscript(src: &Arc<dyn ByteSource>, out: &mut FileScan) {
    let ts_member = out.pickles.iter().any(|p| {
        let lower = p.to_ascii_lowercase();
        lower.ends_with("/constants.pkl") && lower.matches('/').count() == 1
    });
    if out.format != ScanFormat::Zip || !ts_member {
        return;
    }
    let opts = crate::Options {
        classify: false,
        ..crate::Options::default()
    };
    if let Ok(ck) = crate::Checkpoint::open_source(src.clone(), &opts) {
        crate::torchscript::judge_as_torchscript(&ck, &mut out.report);
    }
}

const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// Pickles in a legacy torch stream: magic, protocol, sys_info, the data, storage keys.
const LEGACY_PICKLES: usize = 5;
/// Pickles decoded one after the other in a bare file before we stop looking.
pub(super) const MAX_SEQUENCE: usize = 64;

fn looks_like_safetensors(head: &[u8], size: u64) -> bool {
    if head.len() < 10 {
        return false;
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&head[..8]);
    let n = u64::from_le_bytes(n);
    n >= 2 && n.saturating_add(8) <= size && head[8] == b'{'
}

/// A file or object read by ranges, or bytes already in memory (a small file read whole, a
/// zip member), up to `size`.
pub(super) struct Source<'a> {
    pub(super) back: Back<'a>,
    pub(super) size: u64,
}

#[derive(Clone, Copy)]
pub(super) enum Back<'a> {
    Src(&'a dyn ByteSource),
    Mem(&'a [u8]),
}

impl Source<'_> {
    /// Whether hints mean anything here (not for memory or a local file): callers skip
    /// building them otherwise.
    pub(super) fn wants_hints(&self) -> bool {
        match self.back {
            Back::Src(s) => crate::container::wants_hints(s),
            Back::Mem(_) => false,
        }
    }

    /// Ranges about to be read (clipped to `size`), as a hint to a remote source; nothing
    /// for memory or a local file.
    pub(super) fn prefetch(&self, ranges: &[Range<u64>]) {
        let Back::Src(s) = self.back else { return };
        if !crate::container::wants_hints(s) {
            return;
        }
        let clipped: Vec<Range<u64>> = ranges
            .iter()
            .filter_map(|r| {
                let (a, b) = (r.start.min(self.size), r.end.min(self.size));
                (a < b).then_some(a..b)
            })
            .collect();
        if !clipped.is_empty() {
            s.prefetch(&clipped);
        }
    }

    pub(super) fn read(&mut self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let end = offset.checked_add(len).filter(|e| *e <= self.size);
        let Some(_) = end else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("range {offset}+{len} runs past the end of the file"),
            ));
        };
        let n = usize::try_from(len)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::OutOfMemory, "range too large"))?;
        match self.back {
            Back::Src(s) => {
                let mut buf = vec![0u8; n];
                s.read_exact_at(&mut buf, offset)?;
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
pub(super) fn cpython_fails_too(kind: &ErrorKind) -> bool {
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

/// The limits a scan decodes a pickle within as torch.load reads it.
pub(super) fn stream_limits(limits: &Limits) -> Limits {
    Limits {
        frames: FrameMode::Stream,
        ..*limits
    }
}

/// One pickle decoded from a byte buffer: in torch.load's reading, plus the `pickle.loads`
/// reading when they differ. Returns (report, error, end, named, torch.load's reading).
pub(super) fn decode_one(
    data: &[u8],
    limits: &Limits,
    entry: &str,
) -> (ScanReport, Option<ckpt_pickle::Error>, u64, bool, Pickle) {
    let stream = stream_limits(limits);
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
            usage: Usage::Referenced,
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
    let named = named || is_legacy_magic(&p);
    (report, err, end, named, p)
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
pub(super) struct Decoded {
    pub(super) report: ScanReport,
    /// Why decoding stopped early, if it did.
    pub(super) msg: Option<String>,
    pub(super) kind: Option<ErrorKind>,
    /// Length of the pickle (0 when it did not end).
    pub(super) end: u64,
    /// Whether it named an importable global (or is torch's legacy magic number).
    pub(super) named: bool,
}

/// Decode the pickle at `offset` of the file, reading a growing window (never the whole file
/// unless the pickle needs it, never past the budget).
pub(super) fn decode_at(
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
        let (report, err, end, named, _) = decode_one(&buf, &limits.pickle, entry);
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
pub(super) fn scan_stream(
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
                if starts_proto && out.format == ScanFormat::Other {
                    // A protocol 2+ header, then garbage: a damaged pickle, not "no pickle".
                    out.pickles.push(entry.clone());
                    out.problem(format!("{entry}: {}", msg.unwrap_or_default()));
                } else if out.note.is_none() && out.format == ScanFormat::Other {
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
        if n == 1 && start == 0 && out.format == ScanFormat::Other {
            out.format = ScanFormat::Pickle;
        }
        if let Some(m) = msg {
            out.problem(format!("{entry}: {m}"));
            return;
        }
        if n == 1 && end > 0 && pos == start && !legacy {
            // Was it the magic number of a legacy stream?
            legacy = is_magic_at(src, pos, end, limits);
            if legacy && out.format == ScanFormat::Pickle {
                out.format = ScanFormat::Legacy;
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
