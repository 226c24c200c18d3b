//! torch's oldest format: a tar of `storages`, `tensors` and `pickle`, still unpickled by
//! `torch.load`'s legacy path.

use super::file::{MAX_SEQUENCE, ScanLimits, Source, cpython_fails_too, decode_at};
use super::report::FileScan;

/// A tar header block: its checksum (the sum of its bytes, the checksum field counted as
/// spaces) matches, as Python's `tarfile` checks before anything else.
pub(super) fn is_tar_header(block: &[u8]) -> bool {
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
pub(super) fn scan_tar(src: &mut Source<'_>, out: &mut FileScan, limits: &ScanLimits) {
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
                    back: src.back,
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
