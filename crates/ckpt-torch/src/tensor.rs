//! Reading tensor bytes on demand: only the span a tensor covers, by positioned reads.

use sha2::{Digest, Sha256};

use crate::container::Checkpoint;
use crate::doc::TensorRef;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gather::{Budget, Sink, gather};

/// Contiguous tensors are hashed in pieces of this size, so hashing a 2 GB tensor does not
/// hold 2 GB.
const CHUNK: u64 = 8 << 20;

/// The storage byte range a tensor touches: (first byte, byte length) relative to its storage.
/// Validates shape/stride/offset against the storage size with checked arithmetic.
pub fn tensor_span(t: &TensorRef, storage_bytes: u64) -> std::result::Result<(u64, u64), String> {
    let esize = t.dtype.size();
    if t.numel() == 0 {
        return Ok((0, 0));
    }
    if t.shape.len() != t.stride.len() {
        return Err("shape and stride differ in length".into());
    }
    let per = t.dtype.elems_per_byte();
    if per > 1 {
        // Packed sub-byte elements: only contiguous, byte-aligned tensors are meaningful.
        if !is_contiguous(t) || !t.offset.is_multiple_of(per) {
            return Err(format!(
                "{} tensor is not contiguous and byte-aligned",
                t.dtype
            ));
        }
        let first = t.offset / per;
        let len = t.numel().div_ceil(per);
        if first.checked_add(len).is_none_or(|e| e > storage_bytes) {
            return Err(format!(
                "needs {len} bytes at {first} but the storage has {storage_bytes}"
            ));
        }
        return Ok((first, len));
    }
    let mut max_index: u64 = t.offset;
    for (d, s) in t.shape.iter().zip(&t.stride) {
        let s = u64::try_from(*s).map_err(|_| format!("negative stride {s}"))?;
        let step = (d - 1).checked_mul(s).ok_or("stride overflow")?;
        max_index = max_index.checked_add(step).ok_or("stride overflow")?;
    }
    let first = t.offset.checked_mul(esize).ok_or("offset overflow")?;
    let end = max_index
        .checked_add(1)
        .and_then(|n| n.checked_mul(esize))
        .ok_or("size overflow")?;
    if end > storage_bytes {
        return Err(format!(
            "needs storage bytes {first}..{end} but the storage has {storage_bytes}"
        ));
    }
    Ok((first, end - first))
}

fn is_contiguous(t: &TensorRef) -> bool {
    let mut expect: i64 = 1;
    for (d, s) in t.shape.iter().zip(&t.stride).rev() {
        if *d != 1 && *s != expect {
            return false;
        }
        expect = expect.saturating_mul(i64::try_from(*d).unwrap_or(i64::MAX));
    }
    true
}

fn swap_in_place(buf: &mut [u8], dtype: DType) {
    let unit = dtype.swap_unit() as usize;
    if unit > 1 {
        for c in buf.chunks_exact_mut(unit) {
            c.reverse();
        }
    }
}

impl Checkpoint {
    fn tensor_err(&self, at: &str, detail: impl Into<String>) -> Error {
        Error::Tensor {
            path: self.path.clone(),
            at: at.to_owned(),
            detail: detail.into(),
        }
    }

    /// Absolute file range of the bytes a tensor covers.
    fn tensor_range(&self, t: &TensorRef, at: &str) -> Result<(u64, u64)> {
        let Some(s) = &t.storage else {
            return Err(self.tensor_err(at, "tensor has no storage (meta tensor)"));
        };
        let ext = self.storage_extent(s)?;
        let claimed = s.numel.checked_mul(s.dtype.size());
        // The archive entry may be larger than what the pickle claims (legacy views) but never
        // smaller.
        if claimed.is_some_and(|c| c > ext.len.saturating_add(s.view_offset_bytes))
            && s.view_offset_bytes == 0
        {
            return Err(Error::BadStorage {
                path: self.path.clone(),
                key: s.key.clone(),
                detail: format!(
                    "pickle says {} elements of {} but the archive holds {} bytes",
                    s.numel, s.dtype, ext.len
                ),
            });
        }
        let (first, len) = tensor_span(t, ext.len).map_err(|d| self.tensor_err(at, d))?;
        Ok((ext.offset + first, len))
    }

    /// The tensor's logical elements in row-major order, little-endian: the bytes of
    /// `t.contiguous()`. Reads only the span the tensor covers.
    pub fn read_tensor(&self, t: &TensorRef, at: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.stream_tensor(t, at, &mut |c| {
            out.extend_from_slice(c);
            Ok(())
        })?;
        Ok(out)
    }

    /// sha256 (hex) of the tensor's logical row-major little-endian bytes.
    pub fn tensor_sha256(&self, t: &TensorRef, at: &str) -> Result<String> {
        let mut h = Sha256::new();
        self.stream_tensor(t, at, &mut |c| {
            h.update(c);
            Ok(())
        })?;
        Ok(hex(&h.finalize()))
    }

    /// A 0-d (or one-element) numeric tensor's value, e.g. Lightning's `best_model_score`:
    /// one read of at most 16 bytes.
    pub fn read_scalar(&self, t: &TensorRef, at: &str) -> Result<f64> {
        if t.numel() != 1 {
            return Err(self.tensor_err(at, format!("expected one element, has {}", t.numel())));
        }
        let b = self.read_tensor(t, at)?;
        scalar_from_le(&b, t.dtype)
            .ok_or_else(|| self.tensor_err(at, format!("{} is not a real number type", t.dtype)))
    }

    /// Append the tensor's logical row-major little-endian bytes to `out` (at its current
    /// position); returns the byte count. A contiguous little-endian tensor is one byte range
    /// of the file: on Linux it is copied by `copy_file_range` with an explicit source offset
    /// (no bytes pass through user space, and nothing depends on a file position another
    /// thread could move, so one checkpoint can feed several writers at once); elsewhere, or
    /// when the kernel cannot copy between these files, by positioned reads in bounded chunks.
    /// Anything else goes through `stream_tensor`'s bounded chunks. `out_path` names `out` in
    /// errors: a full disk is the output's problem, not the checkpoint's.
    pub fn copy_tensor(
        &self,
        t: &TensorRef,
        at: &str,
        out: &mut std::fs::File,
        out_path: &std::path::Path,
    ) -> Result<u64> {
        use std::io::Write;
        let (start, len) = self.tensor_range(t, at)?;
        let contiguous = is_contiguous(t) || t.dtype.elems_per_byte() > 1;
        let out_err = |e: std::io::Error| Error::Output {
            path: out_path.to_path_buf(),
            detail: format!("writing {at} from {}: {e}", self.path.display()),
        };
        if contiguous && self.byteorder == crate::container::ByteOrder::Little {
            // A local file is copied by the kernel; memory or an object by reads.
            let copied = match self.src.0.as_file() {
                Some(file) => kernel_copy(file, self.base + start, len, out).map_err(out_err)?,
                None => 0,
            };
            // What the kernel did not copy goes through positioned reads.
            self.read_pieces(start + copied, len - copied, &mut |c| {
                out.write_all(c).map_err(out_err)
            })?;
            return Ok(len);
        }
        let mut n = 0u64;
        self.stream_tensor(t, at, &mut |c| {
            n += c.len() as u64;
            out.write_all(c).map_err(out_err)
        })?;
        Ok(n)
    }

    /// Positioned reads of `len` bytes from `start`, handed on in pieces of at most `CHUNK`.
    fn read_pieces(
        &self,
        start: u64,
        len: u64,
        f: &mut dyn FnMut(&mut [u8]) -> Result<()>,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        // One buffer for all the pieces (no allocation per read).
        let cap = usize::try_from(CHUNK.min(len)).map_err(|_| Error::Zip {
            path: self.path.clone(),
            detail: "range too large for memory".into(),
        })?;
        let mut buf = vec![0u8; cap];
        let mut pos = 0;
        while pos < len {
            let n = CHUNK.min(len - pos) as usize;
            let piece = &mut buf[..n];
            self.read_into(piece, start + pos)?;
            f(piece)?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Hand the tensor's logical row-major little-endian bytes to `f` in pieces of a few MB
    /// (each a whole number of elements), whatever the tensor's size or layout: the memory a
    /// cast or a hash needs stays bounded.
    pub fn stream_tensor(
        &self,
        t: &TensorRef,
        at: &str,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let (start, len) = self.tensor_range(t, at)?;
        if len == 0 {
            return Ok(());
        }
        let big = self.byteorder == crate::container::ByteOrder::Big;
        if is_contiguous(t) || t.dtype.elems_per_byte() > 1 {
            return self.read_pieces(start, len, &mut |buf| {
                if big {
                    swap_in_place(buf, t.dtype);
                }
                f(buf)
            });
        }
        // Strided: gather in row-major order, in bounded memory (`gather`).
        let budget = Budget::DEFAULT;
        let dtype = t.dtype;
        let mut emit = |b: &mut [u8]| {
            if big {
                swap_in_place(b, dtype);
            }
            f(b)
        };
        let mut sink = Sink::new(budget.chunk, &mut emit);
        let strides: Vec<u64> = t.stride.iter().map(|s| *s as u64).collect();
        let esize = t.dtype.size();
        if len <= budget.span_at_once {
            // Small enough: read the covered span once and gather from memory.
            let span = self.read_range(start, len)?;
            let mut read = |off: u64, n: u64| {
                let lo = usize::try_from(off - start).unwrap_or(usize::MAX);
                let hi = usize::try_from(n).ok().and_then(|n| lo.checked_add(n));
                hi.and_then(|hi| span.get(lo..hi))
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| self.tensor_err(at, "element outside its span"))
            };
            gather(
                &mut read, start, &t.shape, &strides, esize, budget, &mut sink,
            )?;
        } else {
            let mut read = |off: u64, n: u64| self.read_range(off, n);
            gather(
                &mut read, start, &t.shape, &strides, esize, budget, &mut sink,
            )?;
        }
        sink.flush()
    }
}

/// Copy `len` bytes at `offset` of `src` to `out`'s position with `copy_file_range`; returns
/// how many were copied before the kernel declined (0 when it cannot copy between these
/// files at all: another filesystem on an older kernel, a special file). A real I/O error
/// is an error.
#[cfg(target_os = "linux")]
fn kernel_copy(
    src: &std::fs::File,
    offset: u64,
    len: u64,
    out: &mut std::fs::File,
) -> std::io::Result<u64> {
    use rustix::io::Errno;
    let mut off = offset;
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(src, Some(&mut off), &*out, None, want) {
            Ok(0) => break, // end of the source: the caller's reads will say so
            Ok(n) => done += n as u64,
            Err(Errno::INTR) => continue,
            Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL | Errno::PERM)
                if done == 0 =>
            {
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

#[cfg(not(target_os = "linux"))]
fn kernel_copy(
    _src: &std::fs::File,
    _offset: u64,
    _len: u64,
    _out: &mut std::fs::File,
) -> std::io::Result<u64> {
    Ok(0)
}

/// Value of one little-endian element of a real-number dtype.
pub fn scalar_from_le(b: &[u8], dtype: DType) -> Option<f64> {
    Some(match dtype {
        DType::F64 => f64::from_le_bytes(b.get(..8)?.try_into().ok()?),
        DType::F32 => f64::from(f32::from_le_bytes(b.get(..4)?.try_into().ok()?)),
        DType::F16 => half_to_f64(u16::from_le_bytes(b.get(..2)?.try_into().ok()?)),
        DType::BF16 => {
            let bits = u32::from(u16::from_le_bytes(b.get(..2)?.try_into().ok()?)) << 16;
            f64::from(f32::from_bits(bits))
        }
        DType::I8 => f64::from(*b.first()? as i8),
        DType::U8 => f64::from(*b.first()?),
        DType::Bool => f64::from(u8::from(*b.first()? != 0)),
        DType::I16 => f64::from(i16::from_le_bytes(b.get(..2)?.try_into().ok()?)),
        DType::U16 => f64::from(u16::from_le_bytes(b.get(..2)?.try_into().ok()?)),
        DType::I32 => f64::from(i32::from_le_bytes(b.get(..4)?.try_into().ok()?)),
        DType::U32 => f64::from(u32::from_le_bytes(b.get(..4)?.try_into().ok()?)),
        DType::I64 => i64::from_le_bytes(b.get(..8)?.try_into().ok()?) as f64,
        DType::U64 => u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as f64,
        _ => return None,
    })
}

fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(H[usize::from(x >> 4)]));
        s.push(char::from(H[usize::from(x & 15)]));
    }
    s
}

/// sha256 hex of a byte slice (numpy arrays inside pickles).
pub fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{StorageRef, TensorKind};

    fn t(shape: &[u64], stride: &[i64], offset: u64) -> TensorRef {
        TensorRef {
            dtype: DType::F32,
            shape: shape.to_vec(),
            stride: stride.to_vec(),
            offset,
            storage: Some(StorageRef {
                key: "0".into(),
                dtype: DType::F32,
                numel: 24,
                location: "cpu".into(),
                view_offset_bytes: 0,
            }),
            requires_grad: false,
            kind: TensorKind::Tensor,
        }
    }

    #[test]
    fn spans() {
        assert_eq!(tensor_span(&t(&[4, 6], &[6, 1], 0), 96), Ok((0, 96)));
        assert_eq!(tensor_span(&t(&[4], &[6], 2), 96), Ok((8, 76)));
        assert_eq!(tensor_span(&t(&[0, 3], &[3, 1], 0), 0), Ok((0, 0)));
        assert!(tensor_span(&t(&[4, 6], &[6, 1], 1), 96).is_err());
        assert!(tensor_span(&t(&[u64::MAX, 2], &[i64::MAX, 1], 0), 96).is_err());
        assert!(tensor_span(&t(&[2], &[-1], 0), 96).is_err());
    }

    #[test]
    fn contiguity() {
        assert!(is_contiguous(&t(&[4, 6], &[6, 1], 0)));
        assert!(!is_contiguous(&t(&[6, 4], &[1, 6], 0)));
        assert!(is_contiguous(&t(&[1, 3], &[0, 1], 0)));
        assert!(!is_contiguous(&t(&[4, 3], &[0, 1], 0)));
    }

    #[test]
    fn scalars() {
        assert_eq!(scalar_from_le(&1.5f32.to_le_bytes(), DType::F32), Some(1.5));
        assert_eq!(scalar_from_le(&[0x80, 0x3f], DType::BF16), Some(1.0));
        assert_eq!(scalar_from_le(&[0x00, 0x3c], DType::F16), Some(1.0));
        assert_eq!(scalar_from_le(&[1], DType::C64), None);
    }
}
