//! One safetensors file: its header and each tensor's bytes, streamed from the checkpoint (cast
//! on the way when asked).

use std::io::Write;
use std::path::Path;

use ckpt_torch::{Checkpoint, DType, TensorRef};

use crate::error::{ConvertError, Result};
use crate::plan::{From, Planned};

/// safetensors' name for a dtype.
pub(crate) fn st_dtype(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F64 => "F64",
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::F8E4M3FN => "F8_E4M3",
        DType::F8E5M2 => "F8_E5M2",
        DType::F8E8M0FNU => "F8_E8M0",
        DType::C64 => "C64",
        DType::I8 => "I8",
        DType::I16 => "I16",
        DType::I32 => "I32",
        DType::I64 => "I64",
        DType::U8 => "U8",
        DType::U16 => "U16",
        DType::U32 => "U32",
        DType::U64 => "U64",
        DType::Bool => "BOOL",
        _ => return None,
    })
}

/// The bytes a tensor takes in the output, after the cast.
pub(crate) fn out_nbytes(t: &TensorRef, cast: Option<DType>) -> u64 {
    t.numel()
        .saturating_mul(crate::cast::target_dtype(t.dtype, cast).size())
}

/// The header of a file holding `tensors` in this order, padded with spaces to a multiple of
/// 8 bytes: `{"__metadata__":{"format":"pt"},"<name>":{"dtype":..,"shape":[..],
/// "data_offsets":[b,e]},..}`, compact, names escaped as serde_json escapes them. Written
/// straight into the text: a `serde_json::Value` of it cost ~700 bytes a tensor (a map per
/// record), 117 MB for 170,000 tensors. As in a JSON map, a tensor named `__metadata__`
/// takes the metadata's place.
pub(crate) fn header_text(tensors: &[Planned], cast: Option<DType>) -> std::io::Result<String> {
    let record = |out: &mut Vec<u8>, t: &ckpt_torch::TensorRef, begin: u64, n: u64| {
        let dtype = st_dtype(crate::cast::target_dtype(t.dtype, cast)).unwrap_or("F32");
        out.extend_from_slice(b"{\"dtype\":");
        serde_json::to_writer(&mut *out, dtype)?;
        out.extend_from_slice(b",\"shape\":[");
        for (i, d) in t.shape.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write!(out, "{d}")?;
        }
        let end = begin.saturating_add(n);
        write!(out, "],\"data_offsets\":[{begin},{end}]}}")
    };
    let mut out: Vec<u8> = Vec::with_capacity(64 * tensors.len() + 64);
    out.extend_from_slice(b"{\"__metadata__\":");
    // A tensor named `__metadata__` replaces the metadata in its place (its offsets are those
    // of its place in the data).
    let mut offset: u64 = 0;
    let mut meta_written = false;
    for p in tensors {
        let n = out_nbytes(&p.t, cast);
        if p.name == "__metadata__" {
            record(&mut out, &p.t, offset, n)?;
            meta_written = true;
        }
        offset = offset.saturating_add(n);
    }
    if !meta_written {
        out.extend_from_slice(b"{\"format\":\"pt\"}");
    }
    offset = 0;
    for p in tensors {
        let n = out_nbytes(&p.t, cast);
        if p.name != "__metadata__" {
            out.push(b',');
            serde_json::to_writer(&mut out, p.name.as_str())?;
            out.push(b':');
            record(&mut out, &p.t, offset, n)?;
        }
        offset = offset.saturating_add(n);
    }
    out.push(b'}');
    while !out.len().is_multiple_of(8) {
        out.push(b' ');
    }
    String::from_utf8(out).map_err(std::io::Error::other)
}

/// Write `tensors` as a safetensors file (header padded to 8 bytes, metadata
/// `{"format": "pt"}`), streaming each tensor's bytes from the checkpoint.
pub(crate) fn write_safetensors(
    cks: &[Checkpoint],
    tensors: &[Planned],
    path: &Path,
    cast: Option<DType>,
    progress: &(dyn Fn(u64) + Sync),
    flush: bool,
) -> Result<u64> {
    ckpt_torch::bug::failpoint(path);
    let io = |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = header_text(tensors, cast).map_err(io)?;
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(&(text.len() as u64).to_le_bytes())
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    // With `flush`, a second thread flushes what is written so far every FLUSH_EVERY bytes
    // while the copy goes on, so the final flush waits for the tail only: the disk writes
    // while the page cache fills, instead of after.
    const FLUSH_EVERY: u64 = 64 << 20;
    let flusher_file = if flush {
        Some(f.try_clone().map_err(io)?)
    } else {
        None
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let flusher = flusher_file.map(|file| {
            s.spawn(move || {
                let mut result = Ok(());
                while rx.recv().is_ok() {
                    while rx.try_recv().is_ok() {} // requests that piled up: one flush
                    if result.is_ok() {
                        result = file.sync_data();
                    }
                }
                result
            })
        });
        let mut total = 0;
        let mut since = 0u64;
        let copied: Result<u64> = (|| {
            for p in tensors {
                let to = crate::cast::target_dtype(p.t.dtype, cast);
                total += match &p.from {
                    From::One(src) => {
                        let ck = cks.get(*src).ok_or_else(|| ConvertError::Io {
                            path: path.to_path_buf(),
                            source: std::io::Error::other("internal: no such source checkpoint"),
                        })?;
                        write_one(ck, &p.t, &p.name, to, &mut f, path)?
                    }
                    From::Chunks(chunks) => {
                        crate::dcp::write_chunks(&p.t, chunks, &p.name, to, &mut f, path)?
                    }
                };
                let n = out_nbytes(&p.t, cast);
                progress(n);
                since += n;
                if flusher.is_some() && since >= FLUSH_EVERY {
                    since = 0;
                    let _ = tx.send(());
                }
            }
            Ok(total)
        })();
        drop(tx);
        let flushed = match flusher {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the flushing thread panicked"))),
            None => Ok(()),
        };
        let total = copied?;
        flushed.map_err(io)?;
        if flush {
            f.sync_all().map_err(io)?;
        }
        Ok(total)
    })
}

/// Append one tensor to `f` as `to`: a byte-range copy when no cast is needed (in-kernel for
/// contiguous tensors), else a streamed cast through a bounded buffer. Returns bytes written.
pub(crate) fn write_one(
    ck: &Checkpoint,
    t: &TensorRef,
    name: &str,
    to: DType,
    f: &mut std::fs::File,
    path: &Path,
) -> Result<u64> {
    if to == t.dtype {
        return Ok(ck.copy_tensor(t, name, f, path)?);
    }
    let mut total = 0u64;
    ck.stream_tensor(t, name, &mut |chunk| {
        let out = crate::cast::convert(chunk, t.dtype, to);
        total += out.len() as u64;
        f.write_all(&out).map_err(|source| ckpt_torch::Error::Io {
            path: path.to_path_buf(),
            source,
        })
    })?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Tref;
    use ckpt_torch::{TensorKind, TensorRef};
    use serde_json::{Value, json};

    /// The header as it was built before `header_text`: a `serde_json::Value` (insertion
    /// ordered), serialized compact and padded.
    fn reference(tensors: &[Planned], cast: Option<DType>) -> String {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        let mut offset: u64 = 0;
        for Planned { name, t, .. } in tensors {
            let n = out_nbytes(t, cast);
            header.insert(
                name.clone(),
                json!({
                    "dtype": st_dtype(crate::cast::target_dtype(t.dtype, cast)).unwrap_or("F32"),
                    "shape": t.shape,
                    "data_offsets": [offset, offset + n],
                }),
            );
            offset += n;
        }
        let mut text = serde_json::to_string(&Value::Object(header)).unwrap();
        while !text.len().is_multiple_of(8) {
            text.push(' ');
        }
        text
    }

    fn planned(name: &str, dtype: DType, shape: &[u64]) -> Planned<'static> {
        Planned {
            name: name.to_owned(),
            t: Tref::Owned(Box::new(TensorRef {
                dtype,
                shape: shape.to_vec(),
                stride: vec![1; shape.len()],
                offset: 0,
                storage: None,
                requires_grad: false,
                kind: TensorKind::Tensor,
            })),
            from: crate::plan::From::One(0),
        }
    }

    /// The header written straight as text is byte for byte what the JSON value gave: escaped
    /// names (quotes, backslashes, control characters, non-ASCII), scalars, casts, no tensors,
    /// and a tensor named `__metadata__` (which takes the metadata's place).
    #[test]
    fn header_text_is_the_json_value_serialized() {
        let cases: Vec<Vec<Planned>> = vec![
            vec![],
            vec![
                planned("a.weight", DType::F32, &[3, 4]),
                planned("b\"q\\s\n\u{1}é", DType::BF16, &[]),
                planned("c", DType::I64, &[0]),
                planned("z", DType::U8, &[7, 1, 2]),
            ],
            vec![
                planned("a", DType::F16, &[2]),
                planned("__metadata__", DType::F32, &[5]),
                planned("b", DType::F32, &[1, 1]),
            ],
        ];
        for tensors in &cases {
            for cast in [None, Some(DType::BF16)] {
                assert_eq!(
                    header_text(tensors, cast).unwrap(),
                    reference(tensors, cast)
                );
            }
        }
    }
}
