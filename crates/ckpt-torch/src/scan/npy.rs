//! A `.npy` file or zip member: `numpy.load(allow_pickle=True)` unpickles the payload of an
//! array whose header declares an object dtype.

use super::file::{Back, ScanLimits, Source, scan_stream};
use super::report::FileScan;

pub(super) const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// A `.npy` at `offset` (a file or a zip member's bytes): when its header declares an object
/// dtype (or its payload starts like a pickle), the payload is a pickle `numpy.load` runs.
pub(super) fn scan_npy(
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
    let mut sub = Source {
        back: src.back,
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

/// An npy held in memory (a zip member).
pub(super) fn scan_npy_bytes(bytes: &[u8], out: &mut FileScan, limits: &ScanLimits, prefix: &str) {
    let size = bytes.len() as u64;
    let mut src = Source {
        back: Back::Mem(bytes),
        size,
    };
    scan_npy(&mut src, 0, size, out, limits, prefix);
}
