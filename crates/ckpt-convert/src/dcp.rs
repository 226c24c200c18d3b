//! `torch.distributed.checkpoint` directories: `.metadata` (a pickle of DCP's `Metadata`) and
//! `__<rank>_<n>.distcp` files in which every saved chunk is a complete torch.save archive at an
//! offset `.metadata` records.
//!
//! `.metadata` (read by `ckpt_torch::dcp::DcpIndex`) says, per tensor, its global shape and
//! dtype, and per chunk its offsets in the global tensor and where its archive lies. A tensor
//! saved by one rank (or replicated) has
//! one chunk covering it; one sharded across ranks has several, which must tile it exactly.
//! Chunks are opened in place, one shared source per `.distcp` file, and written into the
//! output at their global positions: a chunk that is contiguous in the global tensor (a dim-0
//! shard, as FSDP makes) is one byte-range copy; any other (a column shard) is streamed and
//! written run by run.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use ckpt_io::ByteSource;

use ckpt_torch::dcp::DcpIndex;
use ckpt_torch::{Checkpoint, DType, TensorKind, TensorRef, View};

use crate::error::{ConvertError, Result};
use crate::options::ConvertOptions;
use crate::output::prepare;
use crate::plan::{From, Planned};
use crate::report::Converted;
use crate::safetensors::write_one;
use crate::{Source, cast, plan_and_emit};

/// Tensors sharded into more chunks than this are refused: checking that chunks do not overlap
/// is quadratic in their number unless they only split dimension 0.
const MAX_CHUNKS_ANY_LAYOUT: usize = 4096;

/// Where a chunk's torch.save archive lies: opened when its bytes are needed and dropped
/// after, so a save from many ranks (thousands of chunks) costs a few hundred bytes per chunk
/// between planning and writing, not a parsed archive each.
#[derive(Debug, Clone)]
pub(crate) struct ChunkFile {
    /// The `.distcp` file (or object), shared by its chunks.
    pub src: Arc<dyn ByteSource>,
    pub path: std::path::PathBuf,
    pub offset: u64,
    pub len: u64,
}

impl ChunkFile {
    pub(crate) fn open(&self, fqn: &str) -> Result<Checkpoint> {
        Checkpoint::open_range_in(
            self.src.clone(),
            self.offset,
            self.len,
            &ckpt_torch::Options::default(),
        )
        .map_err(|e| ConvertError::Dcp {
            path: self.path.clone(),
            detail: format!(
                "the chunk of {fqn} at bytes {}..{}: {}",
                self.offset,
                self.offset.saturating_add(self.len),
                without_path(&e.to_string(), &self.path)
            ),
        })
    }
}

/// One saved piece of a sharded tensor.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    /// Its archive.
    pub at: ChunkFile,
    /// The piece as saved: its shape is the chunk's size in every dimension.
    pub t: TensorRef,
    /// Where the piece starts in the global tensor, per dimension.
    pub offsets: Vec<u64>,
}

/// An error's text without its leading `path: ` (the chunk's own error names the file we
/// name already).
fn without_path(text: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    text.strip_prefix(&prefix).unwrap_or(text).to_owned()
}

/// Convert a DCP directory into the folder `output`.
pub fn convert_dcp(dir: &Path, output: &Path, opts: &ConvertOptions) -> Result<Converted> {
    let (base_cfg, tie) = prepare(output, opts)?;
    let index = DcpIndex::open(dir)?;
    let bad = |detail: String| ConvertError::Dcp {
        path: index.metadata.clone(),
        detail,
    };
    let mut files: HashMap<String, Arc<dyn ByteSource>> = HashMap::new();
    let mut raw: Vec<Planned> = Vec::new();
    for t in &index.tensors {
        let fqn = t.fqn.as_str();
        let mut pieces = Vec::with_capacity(t.chunks.len());
        for c in &t.chunks {
            let path = dir.join(&c.file);
            let src = match files.get(&c.file) {
                Some(f) => f.clone(),
                None => {
                    // Regular files only: a `.distcp` that is a FIFO would block forever.
                    let f = ckpt_io::open(&path).map_err(|e| ConvertError::Io {
                        path: path.clone(),
                        source: match e {
                            ckpt_io::OpenError::Io(io) => io,
                            other => std::io::Error::other(other.to_string()),
                        },
                    })?;
                    files.insert(c.file.clone(), f.clone());
                    f
                }
            };
            let at = ChunkFile {
                src,
                path,
                offset: c.offset,
                len: c.len,
            };
            let ck = at.open(fqn)?;
            let View::Tensor(tr) = ck.doc.view(ck.doc.root()) else {
                return Err(bad(format!("{fqn}: a chunk does not hold a tensor")));
            };
            pieces.push(Chunk {
                at,
                t: tr.clone(),
                offsets: c.offsets.clone(),
            });
        }
        let planned = plan_tensor(fqn, &t.shape, pieces).map_err(bad)?;
        if let Some(d) = t.dtype
            && d != planned.t.dtype
        {
            return Err(bad(format!(
                "{fqn}: .metadata says {d} but its chunks hold {}",
                planned.t.dtype
            )));
        }
        raw.push(planned);
    }
    // `{"model": state_dict}` saves as `model.<name>`: drop that leading component.
    let first: Vec<&str> = raw
        .iter()
        .filter_map(|p| p.name.split('.').next())
        .collect();
    let mut sd_key = String::new();
    if let Some(f) = first.first()
        && first.iter().all(|x| x == f)
        && ckpt_model::state_dict::WELL_KNOWN_KEYS.contains(f)
    {
        sd_key = (*f).to_owned();
        let prefix = format!("{f}.");
        for p in &mut raw {
            if let Some(rest) = p.name.strip_prefix(&prefix) {
                p.name = rest.to_owned();
            }
        }
    }
    let source = Source {
        input: dir,
        cks: &[],
        raw,
        other: index.other.clone(),
        state_dict_key: sd_key,
    };
    plan_and_emit(source, output, opts, base_cfg.as_ref(), tie)
}

/// One tensor from its chunks: the chunk itself when it is the whole tensor, else the chunks,
/// checked to tile the global shape exactly (in bounds, same dtype, no overlap, nothing
/// missing) and sorted by position.
fn plan_tensor(
    fqn: &str,
    shape: &[u64],
    mut pieces: Vec<Chunk>,
) -> std::result::Result<Planned<'static>, String> {
    let nd = shape.len();
    let total = shape
        .iter()
        .try_fold(1u64, |a, d| a.checked_mul(*d))
        .ok_or_else(|| format!("{fqn}: size {shape:?} overflows"))?;
    let dtype = pieces.first().map_or(DType::F32, |c| c.t.dtype);
    let mut covered: u64 = 0;
    for c in &pieces {
        if c.t.dtype != dtype {
            return Err(format!(
                "{fqn}: chunks disagree on dtype ({} and {})",
                dtype, c.t.dtype
            ));
        }
        if c.offsets.len() != nd || c.t.shape.len() != nd {
            return Err(format!(
                "{fqn}: a chunk at {:?} of shape {:?} does not match the tensor's {nd} dimensions",
                c.offsets, c.t.shape
            ));
        }
        for ((o, s), d) in c.offsets.iter().zip(&c.t.shape).zip(shape) {
            if o.checked_add(*s).is_none_or(|e| e > *d) {
                return Err(format!(
                    "{fqn}: chunk at {:?} of shape {:?} lies outside the tensor's {shape:?}",
                    c.offsets, c.t.shape
                ));
            }
        }
        covered = covered.saturating_add(c.t.numel());
    }
    // Empty chunks (a rank with no rows) carry nothing.
    pieces.retain(|c| c.t.numel() > 0);
    if covered != total {
        return Err(format!(
            "{fqn}: its chunks hold {covered} elements but the tensor has {total}"
        ));
    }
    pieces.sort_by(|a, b| a.offsets.cmp(&b.offsets));
    // Equal element counts + no overlap = an exact tiling. Every chunk has `nd` offsets and
    // `nd` sizes (checked above), each inside the tensor, so the sums below cannot overflow;
    // a 0-d tensor (BatchNorm's `num_batches_tracked`) has none at all, and its one chunk is
    // the whole tensor.
    let (first, rest) = match shape.split_first() {
        Some((_, rest)) => (true, rest),
        None => (false, &[][..]),
    };
    let dim0_only = first
        && pieces.iter().all(|c| {
            c.offsets
                .get(1..)
                .is_some_and(|o| o.iter().all(|o| *o == 0))
                && c.t.shape.get(1..) == Some(rest)
        });
    if dim0_only {
        for w in pieces.windows(2) {
            let (Some(a0), Some(a_rows), Some(b0)) = (
                w[0].offsets.first(),
                w[0].t.shape.first(),
                w[1].offsets.first(),
            ) else {
                continue;
            };
            if a0.saturating_add(*a_rows) > *b0 {
                return Err(format!("{fqn}: chunks at rows {a0} and {b0} overlap"));
            }
        }
    } else {
        if pieces.len() > MAX_CHUNKS_ANY_LAYOUT {
            return Err(format!(
                "{fqn}: {} chunks split more than the first dimension; at most {MAX_CHUNKS_ANY_LAYOUT} are supported",
                pieces.len()
            ));
        }
        for (i, a) in pieces.iter().enumerate() {
            for b in pieces.get(i + 1..).unwrap_or(&[]) {
                // Overlap in every dimension = the boxes intersect (a 0-d tensor's chunks
                // always do: there is one element to hold).
                let overlap = a
                    .offsets
                    .iter()
                    .zip(&a.t.shape)
                    .zip(b.offsets.iter().zip(&b.t.shape))
                    .all(|((ao, asz), (bo, bsz))| {
                        *ao < bo.saturating_add(*bsz) && *bo < ao.saturating_add(*asz)
                    });
                if overlap {
                    return Err(format!(
                        "{fqn}: chunks at {:?} and {:?} overlap",
                        a.offsets, b.offsets
                    ));
                }
            }
        }
    }
    let t = contiguous(dtype, shape);
    Ok(Planned {
        name: fqn.to_owned(),
        t: crate::plan::Tref::Owned(Box::new(t)),
        from: From::Chunks(pieces),
    })
}

/// A row-major tensor of this dtype and shape, with no storage: what a reassembled tensor is.
fn contiguous(dtype: DType, shape: &[u64]) -> TensorRef {
    let mut stride = vec![0i64; shape.len()];
    let mut acc: i64 = 1;
    for d in (0..shape.len()).rev() {
        stride[d] = acc;
        acc = acc.saturating_mul(i64::try_from(shape[d]).unwrap_or(i64::MAX));
    }
    TensorRef {
        dtype,
        shape: shape.to_vec(),
        stride,
        offset: 0,
        storage: None,
        requires_grad: false,
        kind: TensorKind::Tensor,
    }
}

/// Write a sharded tensor at the current position of `f` (which is left just after it), cast
/// to `to`: each chunk's row-major bytes go to their global positions. Returns bytes written.
pub(crate) fn write_chunks(
    global: &TensorRef,
    chunks: &[Chunk],
    name: &str,
    to: DType,
    f: &mut File,
    path: &Path,
) -> Result<u64> {
    let io = |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let base = f.stream_position().map_err(io)?;
    let es = to.size();
    let shape = &global.shape;
    let nd = shape.len();
    // Planning checked that every chunk has `nd` offsets and sizes inside the tensor and that
    // the tensor's element count fits in u64; its byte count may still not.
    let total = global
        .numel()
        .checked_mul(es)
        .and_then(|n| n.checked_add(base))
        .ok_or_else(|| ConvertError::Dcp {
            path: path.to_path_buf(),
            detail: format!("{name}: {:?} elements of {es} bytes overflow", shape),
        })?;
    // Row-major element strides of the global tensor (each at most its element count).
    let mut gstride = vec![1u64; nd];
    for d in (0..nd.saturating_sub(1)).rev() {
        gstride[d] = gstride[d + 1].saturating_mul(shape[d + 1]);
    }
    for c in chunks {
        if c.offsets.len() != nd || c.t.shape.len() != nd {
            return Err(ConvertError::Dcp {
                path: path.to_path_buf(),
                detail: format!("{name}: a chunk does not have the tensor's {nd} dimensions"),
            });
        }
        let ck = c.at.open(name)?;
        let ck = &ck;
        let start: u64 = c.offsets.iter().zip(&gstride).map(|(o, s)| o * s).sum();
        // Dimensions from `j` on are whole in the chunk; a run of consecutive global elements
        // is one index of the dimensions before `j - 1` × the chunk's extent of `j - 1` × all
        // of the whole ones. (A 0-d tensor has no dimensions: its chunk is one run.)
        let mut j = nd;
        while j > 0 && c.t.shape[j - 1] == shape[j - 1] {
            j -= 1;
        }
        if j <= 1 {
            // The chunk is one run: copy it in place.
            f.seek(SeekFrom::Start(base + start * es)).map_err(io)?;
            write_one(ck, &c.t, name, to, f, path)?;
            continue;
        }
        let run_len: u64 = c.t.shape[j - 1..].iter().product();
        let outer = &c.t.shape[..j - 1];
        // Global element offset of run `r` (row-major over the chunk's outer dimensions).
        let run_start = |mut r: u64| {
            let mut off = start;
            for d in (0..outer.len()).rev() {
                off += (r % outer[d]) * gstride[d];
                r /= outer[d];
            }
            off
        };
        let in_es = c.t.dtype.size();
        let (mut run, mut pos) = (0u64, 0u64); // current run, elements written into it
        ck.stream_tensor(&c.t, name, &mut |piece| {
            let mut piece = piece;
            while !piece.is_empty() {
                let n = ((piece.len() as u64) / in_es).min(run_len - pos);
                if n == 0 {
                    return Err(ckpt_torch::Error::Tensor {
                        path: path.to_path_buf(),
                        at: name.to_owned(),
                        detail: "a piece of a chunk is not whole elements".into(),
                    });
                }
                let (now, rest) = piece.split_at(usize::try_from(n * in_es).unwrap_or(0));
                let at = base + (run_start(run) + pos) * es;
                let wrote = if to == c.t.dtype {
                    f.seek(SeekFrom::Start(at)).and_then(|_| f.write_all(now))
                } else {
                    let out = cast::convert(now, c.t.dtype, to);
                    f.seek(SeekFrom::Start(at)).and_then(|_| f.write_all(&out))
                };
                wrote.map_err(|source| ckpt_torch::Error::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                pos += n;
                if pos == run_len {
                    run += 1;
                    pos = 0;
                }
                piece = rest;
            }
            Ok(())
        })?;
    }
    f.seek(SeekFrom::Start(total)).map_err(io)?;
    Ok(total - base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offsets: &[u64], shape: &[u64], dtype: DType) -> Chunk {
        // Planning does not read the chunk: any open file will do.
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        Chunk {
            at: ChunkFile {
                src: ckpt_io::open(&path).unwrap(),
                path,
                offset: 0,
                len: 0,
            },
            t: contiguous(dtype, shape),
            offsets: offsets.to_vec(),
        }
    }

    #[test]
    fn row_and_column_shards_tile_their_tensor() {
        let f = DType::F32;
        // FSDP: uneven rows, a rank with none, given out of order.
        let p = plan_tensor(
            "w",
            &[11, 8],
            vec![
                chunk(&[6, 0], &[5, 8], f),
                chunk(&[0, 0], &[6, 8], f),
                chunk(&[11, 0], &[0, 8], f),
            ],
        )
        .unwrap();
        let From::Chunks(c) = &p.from else {
            panic!("{p:?}")
        };
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].offsets, [0, 0]);
        assert_eq!(p.t.shape, [11, 8]);
        assert_eq!(p.t.stride, [8, 1]);
        // Columns.
        let p = plan_tensor(
            "w",
            &[6, 10],
            vec![chunk(&[0, 5], &[6, 5], f), chunk(&[0, 0], &[6, 5], f)],
        )
        .unwrap();
        assert!(matches!(p.from, From::Chunks(ref c) if c.len() == 2));
        // One chunk that is the whole tensor (saved by one rank, or replicated).
        let p = plan_tensor("b", &[5], vec![chunk(&[0], &[5], f)]).unwrap();
        assert!(matches!(p.from, From::Chunks(ref c) if c.len() == 1));
    }

    #[test]
    fn a_0d_tensor_is_its_one_chunk() {
        // BatchNorm's `num_batches_tracked`: no dimensions, no offsets, one element.
        let i = DType::I64;
        let p = plan_tensor("bn.num_batches_tracked", &[], vec![chunk(&[], &[], i)]).unwrap();
        assert!(matches!(p.from, From::Chunks(ref c) if c.len() == 1));
        assert_eq!(p.t.shape, Vec::<u64>::new());
        // Two chunks of a 0-d tensor hold two elements: refused, not a panic.
        let e = plan_tensor("x", &[], vec![chunk(&[], &[], i), chunk(&[], &[], i)]).unwrap_err();
        assert!(e.contains("hold 2 elements"), "{e}");
        // Offsets or sizes of another rank than the tensor's: refused.
        let e = plan_tensor("x", &[], vec![chunk(&[0], &[1], i)]).unwrap_err();
        assert!(e.contains("dimensions"), "{e}");
        let e = plan_tensor("x", &[3], vec![chunk(&[], &[], i)]).unwrap_err();
        assert!(e.contains("dimensions"), "{e}");
    }

    #[test]
    fn chunks_that_do_not_tile_are_refused() {
        let f = DType::F32;
        for (chunks, want) in [
            (
                vec![chunk(&[0, 0], &[6, 8], f), chunk(&[6, 0], &[6, 8], f)],
                "outside",
            ),
            (
                vec![chunk(&[0, 0], &[6, 8], f), chunk(&[4, 0], &[5, 8], f)],
                "overlap",
            ),
            (vec![chunk(&[0, 0], &[6, 8], f)], "hold 48 elements"),
            (
                vec![
                    chunk(&[0, 0], &[6, 8], f),
                    chunk(&[6, 0], &[5, 8], DType::BF16),
                ],
                "disagree on dtype",
            ),
            (
                vec![
                    chunk(&[0, 0], &[11, 4], f),
                    chunk(&[0, 3], &[11, 4], f),
                    chunk(&[0, 7], &[0, 1], f),
                ],
                "overlap",
            ),
            (vec![chunk(&[0], &[11], f)], "dimensions"),
        ] {
            let e = plan_tensor("w", &[11, 8], chunks).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
