//! A zip's central directory read as torch's reader (miniz) reads it: every record,
//! duplicates included, looked up the way `PyTorchStreamReader` looks names up, and deflated
//! members inflated within a budget. Shared by the container reader and the scan, so both see
//! the same entries.

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

pub(crate) fn le(b: &[u8], i: usize, n: usize) -> u64 {
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
            .ok_or_else(|| format!("central directory record {k} is cut short"))?;
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
            .ok_or_else(|| format!("central directory record {k} is cut short"))?
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

/// The central directory index of the `data.pkl` torch reads from an archive whose entries
/// are `names` (in directory order): `<first entry's folder>/data.pkl`, found as miniz finds
/// it ([`torch_zip_lookup`]). Shared by the container reader and the scan, so the copy the scan
/// hands over for reuse is the copy the reader opens.
pub(crate) fn torch_data_pkl(names: &[&[u8]]) -> Option<usize> {
    let first = names.first()?;
    let slash = first.iter().position(|b| *b == b'/')?;
    let mut want = first.get(..slash)?.to_vec();
    want.extend_from_slice(b"/data.pkl");
    torch_zip_lookup(names, &want)
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
    // One name (ASCII case folded) equal to the target — the usual case — is what any sorted
    // order finds: no sort needed. Only duplicates make the sort order matter.
    let mut equal = names
        .iter()
        .enumerate()
        .filter(|(_, n)| compare(n, target) == std::cmp::Ordering::Equal);
    match (equal.next(), equal.next()) {
        (None, _) => return None,
        (Some((i, _)), None) => return Some(i),
        _ => {}
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
