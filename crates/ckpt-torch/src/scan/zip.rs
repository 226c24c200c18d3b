//! A file starting `PK\x03\x04`: every pickle member of the archive (or of each archive of a
//! DCP `*.distcp` sequence), every copy of a duplicated name, inflated within a budget, and
//! zips nested one level deep.

use std::ops::Range;

use super::file::{Back, Predecoded, ScanLimits, Source, decode_one, stream_limits};
use super::npy::scan_npy_bytes;
use super::report::{FileScan, ScanFormat};
use crate::container::member_span;
use crate::zipdir::{Member, central_directory, inflate, le, torch_data_pkl, torch_zip_lookup};

/// A file starting `PK\x03\x04`: one archive, or (a DCP `*.distcp` file) several archives
/// one after the other, each a complete torch.save zip that DCP loads by its byte range.
/// `keep` receives the decoded `data.pkl` torch reads from a single archive (see
/// [`Predecoded`]); nothing from a sequence, whose archives the reader opens one by one.
pub(super) fn scan_zip(
    src: &mut Source<'_>,
    out: &mut FileScan,
    limits: &ScanLimits,
    keep: Option<&mut Option<Predecoded>>,
) {
    let windows = archive_sequence(src).filter(|w| w.len() > 1);
    match windows {
        Some(ws) => {
            out.format = ScanFormat::ZipSequence;
            for (start, end) in ws {
                scan_archive(
                    src,
                    start,
                    end - start,
                    out,
                    limits,
                    &format!("@{start} "),
                    0,
                    None,
                );
            }
        }
        None => {
            let size = src.size;
            scan_archive(src, 0, size, out, limits, "", 0, keep);
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

#[allow(clippy::too_many_arguments)]
fn scan_archive(
    src: &mut Source<'_>,
    base: u64,
    len: u64,
    out: &mut FileScan,
    limits: &ScanLimits,
    label: &str,
    depth: u8,
    mut keep: Option<&mut Option<Predecoded>>,
) {
    let members = match read_directory(src, base, len) {
        Ok(m) => m,
        Err(e) => {
            out.problem(format!("{label}damaged zip archive: {e}"));
            return;
        }
    };
    if src.wants_hints() {
        src.prefetch(&planned_reads(&members, base, depth, limits));
    }
    let names: Vec<&[u8]> = members.iter().map(|m| m.name.as_slice()).collect();
    // The copy torch reads, when the caller keeps its decoding.
    let torch_pkl = keep.as_ref().and_then(|_| torch_data_pkl(&names));
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
                    scan_archive(&mut inner, 0, n, out, limits, &shown, depth + 1, None);
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
            let (report, err, _, _, pickle) = decode_one(&bytes, &limits.pickle, &entry);
            out.report.merge(report);
            match err {
                Some(e) => out.problem(format!("{entry}: {e}")),
                None if torch_pkl == Some(i) => {
                    if let Some(slot) = keep.as_deref_mut() {
                        *slot = Some(Predecoded {
                            bytes,
                            pickle,
                            limits: stream_limits(&limits.pickle),
                        });
                    }
                }
                None => {}
            }
        } else {
            scan_npy_bytes(&bytes, out, limits, &format!("{entry}: "));
        }
    }
}

/// Where the members this scan reads lie (see the loop of [`scan_archive`]): every pickle
/// and npy member whole, and the head of every other member that is not a storage (whole
/// when deflated and small), so a remote source fetches them in one round.
fn planned_reads(members: &[Member], base: u64, depth: u8, limits: &ScanLimits) -> Vec<Range<u64>> {
    members
        .iter()
        .filter_map(|m| {
            let lower = m.name.to_ascii_lowercase();
            let data = if lower.ends_with(b".pkl") || lower.ends_with(b".npy") {
                m.compressed.min(limits.max_pickle_bytes)
            } else if depth == 0
                && !lower.windows(6).any(|w| w == b"/data/")
                && m.compressed <= limits.max_pickle_bytes
            {
                if m.method == 0 {
                    4.min(m.compressed)
                } else if m.compressed <= 1 << 20 {
                    m.compressed
                } else {
                    0
                }
            } else {
                return None;
            };
            let r = member_span(base.checked_add(m.header)?, m.name.len(), data);
            Some(r)
        })
        .collect()
}

fn read_directory(src: &mut Source<'_>, base: u64, len: u64) -> Result<Vec<Member>, String> {
    central_directory(&mut |off, n| src.read(base + off, n), len)
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
