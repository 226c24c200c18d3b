//! Is a checkpoint done being written? Judged from its own structure, never from a pause:
//! a writer may stop between chunks for any time, so a file is final only when its format
//! says it ends there.
//!
//! - zip (`torch.save`, TorchScript): the end-of-central-directory record is the last thing a
//!   zip writer writes; it must be at the end, parse, and point at a central directory inside
//!   the file (ZIP64 records followed).
//! - safetensors: the header's length, then its JSON, then every tensor's declared byte range
//!   inside the file.
//! - DCP directory: `.metadata` is written after every shard, and must parse.
//! - a pickle or a legacy `torch.save` stream has no table at its end: it is final when ckpt
//!   can open it (the pickle reaches STOP, every storage's bytes are present).
//!
//! Stability (the same size and mtime across two checks) is the caller's part.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Why a checkpoint is not final yet (one phrase).
pub type Incomplete = String;

/// Largest safetensors header read to check it (the format's own readers cap it at 100 MB).
const MAX_SAFETENSORS_HEADER: u64 = 100 << 20;

/// Is the checkpoint file at `path` complete? `Err` with the reason when it is not (or cannot
/// be read).
pub fn file(path: &Path) -> Result<(), Incomplete> {
    let mut f = ckpt_torch::open::open_regular(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut head = [0u8; 16];
    let n = read_up_to(&mut f, &mut head)?;
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return zip(&mut f, len);
    }
    if n >= 9 && head[8] == b'{' {
        return safetensors(&mut f, len, head);
    }
    if len == 0 {
        return Err("empty".into());
    }
    // A pickle or a legacy stream: final when it opens whole. One that ends early (the
    // pickle, or the storages after it) is still being written; one broken otherwise is as
    // final as it gets, and the sidecar writer says what is wrong with it.
    use ckpt_pickle::ErrorKind as K;
    use ckpt_torch::Error as E;
    match ckpt_torch::Checkpoint::open(path) {
        Ok(ck) => ck.check_storages().map_err(|e| e.to_string()),
        Err(
            e @ (E::Pickle {
                source:
                    ckpt_pickle::Error {
                        kind: K::Truncated | K::LengthPastEnd { .. },
                        ..
                    },
                ..
            }
            | E::Legacy { .. }),
        ) => Err(e.to_string()),
        Err(_) => Ok(()),
    }
}

/// A DCP directory is complete when its `.metadata` (written last) parses.
pub fn dcp(dir: &Path) -> Result<(), Incomplete> {
    if !dir.join(".metadata").is_file() {
        return Err("no .metadata yet".into());
    }
    ckpt_torch::dcp::DcpIndex::open(dir)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> Result<usize, Incomplete> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(n)
}

fn read_at(f: &mut File, offset: u64, buf: &mut [u8]) -> Result<(), Incomplete> {
    f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    f.read_exact(buf).map_err(|e| e.to_string())
}

fn u16_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from(u16::from_le_bytes(
        b.get(i..i + 2)?.try_into().ok()?,
    )))
}

fn u32_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from(u32::from_le_bytes(
        b.get(i..i + 4)?.try_into().ok()?,
    )))
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

const NOT_YET: &str = "no end-of-central-directory record yet (the zip is still being written)";

fn zip(f: &mut File, len: u64) -> Result<(), Incomplete> {
    // The EOCD is 22 bytes plus a comment of at most 65,535.
    let tail_len = len.min(22 + 65_535);
    let tail_start = len - tail_len;
    let mut tail = vec![0u8; usize::try_from(tail_len).map_err(|e| e.to_string())?];
    read_at(f, tail_start, &mut tail)?;
    // The last signature whose comment length reaches exactly the end of the file.
    let eocd = (0..tail.len().saturating_sub(21)).rev().find(|&i| {
        tail[i..].starts_with(b"PK\x05\x06")
            && u16_at(&tail, i + 20).is_some_and(|c| i as u64 + 22 + c == tail_len)
    });
    let Some(i) = eocd else {
        return Err(NOT_YET.into());
    };
    let eocd_pos = tail_start + i as u64;
    let entries = u16_at(&tail, i + 10).unwrap_or(0);
    let mut cd_size = u32_at(&tail, i + 12).unwrap_or(0);
    let mut cd_offset = u32_at(&tail, i + 16).unwrap_or(0);
    let mut cd_end_limit = eocd_pos;
    if entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        // ZIP64: the locator is the 20 bytes before the EOCD.
        let loc = eocd_pos.checked_sub(20).ok_or(NOT_YET)?;
        let mut l = [0u8; 20];
        read_at(f, loc, &mut l)?;
        if !l.starts_with(b"PK\x06\x07") {
            return Err("a ZIP64 archive without its locator".into());
        }
        let z64 = u64_at(&l, 8).ok_or(NOT_YET)?;
        if z64.checked_add(56).is_none_or(|e| e > loc) {
            return Err("the ZIP64 end record is outside the file".into());
        }
        let mut r = [0u8; 56];
        read_at(f, z64, &mut r)?;
        if !r.starts_with(b"PK\x06\x06") {
            return Err("no ZIP64 end record where the locator points".into());
        }
        cd_size = u64_at(&r, 40).ok_or(NOT_YET)?;
        cd_offset = u64_at(&r, 48).ok_or(NOT_YET)?;
        cd_end_limit = z64;
    }
    if cd_offset
        .checked_add(cd_size)
        .is_none_or(|end| end > cd_end_limit)
    {
        return Err("the central directory it points to is not in the file".into());
    }
    if cd_size > 0 {
        let mut sig = [0u8; 4];
        read_at(f, cd_offset, &mut sig)?;
        if &sig != b"PK\x01\x02" {
            return Err("no central directory where the end record points".into());
        }
    }
    Ok(())
}

fn safetensors(f: &mut File, len: u64, head: &[u8]) -> Result<(), Incomplete> {
    let n = u64_at(head, 0).ok_or("too short")?;
    if n > MAX_SAFETENSORS_HEADER {
        return Err(format!("a header of {n} bytes claimed"));
    }
    let header_end = n.checked_add(8).ok_or("header length overflows")?;
    if header_end > len {
        return Err(format!(
            "header of {n} bytes not all written ({len} bytes so far)"
        ));
    }
    let mut h = vec![0u8; usize::try_from(n).map_err(|e| e.to_string())?];
    read_at(f, 8, &mut h)?;
    let v: serde_json::Value =
        serde_json::from_slice(&h).map_err(|e| format!("header is not JSON yet: {e}"))?;
    let mut data_end = 0u64;
    for (name, t) in v.as_object().ok_or("header is not an object")? {
        if name == "__metadata__" {
            continue;
        }
        let end = t
            .get("data_offsets")
            .and_then(|o| o.get(1))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("tensor {name} has no data_offsets"))?;
        data_end = data_end.max(end);
    }
    let want = header_end
        .checked_add(data_end)
        .ok_or("data length overflows")?;
    if len < want {
        return Err(format!(
            "{len} of the {want} bytes its header declares are written"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zip_is_complete_only_with_its_end_record() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.ckpt");
        let mut w = ckpt_test_support::ZipWriter::new(std::fs::File::create(&p).unwrap());
        w.add("a/data.pkl", b"\x80\x02}q\x00.").unwrap();
        w.finish().unwrap();
        assert_eq!(file(&p), Ok(()));
        let full = std::fs::read(&p).unwrap();
        for cut in [1, 10, 22, full.len() / 2] {
            std::fs::write(&p, &full[..full.len() - cut]).unwrap();
            assert!(file(&p).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn safetensors_is_complete_when_its_declared_data_is_there() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.safetensors");
        let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header);
        b.extend_from_slice(&[0u8; 8]);
        std::fs::write(&p, &b).unwrap();
        assert_eq!(file(&p), Ok(()));
        std::fs::write(&p, &b[..b.len() - 3]).unwrap();
        assert!(file(&p).unwrap_err().contains("bytes its header declares"));
        std::fs::write(&p, &b[..20]).unwrap();
        assert!(file(&p).is_err());
    }
}
