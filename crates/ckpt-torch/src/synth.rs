//! Writing torch-format checkpoints without torch: a stored-zip writer laid out the way
//! `torch.save` lays it out (`<root>/data.pkl`, `<root>/data/<key>`, 64-byte aligned records,
//! ZIP64 when needed) and a builder for Lightning-shaped checkpoints of any size.
//!
//! Why it exists: benchmarks need 500 MB checkpoints and tests need hostile variations of real
//! ones, and neither may depend on torch.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use ckpt_pickle::write::Writer;

use crate::dtype::DType;

struct Entry {
    name: String,
    offset: u64,
    size: u64,
    crc: u32,
}

/// A minimal zip writer for stored (uncompressed) entries, data aligned to 64 bytes like
/// torch's `PyTorchFileWriter`.
pub struct ZipWriter<W: Write> {
    out: W,
    pos: u64,
    entries: Vec<Entry>,
}

const ALIGN: u64 = 64;

fn crc32(data: &[u8], mut crc: u32) -> u32 {
    crc = !crc;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

impl<W: Write> ZipWriter<W> {
    pub fn new(out: W) -> Self {
        ZipWriter {
            out,
            pos: 0,
            entries: Vec::new(),
        }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Add an entry whose bytes come from `fill`, called with a sink; `size` must be exact.
    /// CRCs are computed only for small entries (torch readers do not require them).
    pub fn add_with(
        &mut self,
        name: &str,
        size: u64,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        let offset = self.pos;
        let name_b = name.as_bytes();
        let base = offset + 30 + name_b.len() as u64 + 4;
        let pad = (ALIGN - base % ALIGN) % ALIGN;
        let zip64 = size >= 0xFFFF_FFFF;
        let z64_len: u64 = if zip64 { 20 } else { 0 };
        let pad = if zip64 {
            (ALIGN - (base + z64_len) % ALIGN) % ALIGN
        } else {
            pad
        };
        let extra_len = 4 + pad + z64_len;
        let mut h = Vec::with_capacity(64 + name_b.len());
        h.extend_from_slice(b"PK\x03\x04");
        h.extend_from_slice(&(if zip64 { 45u16 } else { 20u16 }).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes()); // flags
        h.extend_from_slice(&0u16.to_le_bytes()); // stored
        h.extend_from_slice(&0u32.to_le_bytes()); // time/date
        h.extend_from_slice(&0u32.to_le_bytes()); // crc (not computed for the local header)
        let s32 = if zip64 { 0xFFFF_FFFF } else { size as u32 };
        h.extend_from_slice(&s32.to_le_bytes());
        h.extend_from_slice(&s32.to_le_bytes());
        h.extend_from_slice(&(name_b.len() as u16).to_le_bytes());
        h.extend_from_slice(&(extra_len as u16).to_le_bytes());
        h.extend_from_slice(name_b);
        if zip64 {
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
        }
        // Padding extra field ("FB", as torch names it).
        h.extend_from_slice(&0x4246u16.to_le_bytes());
        h.extend_from_slice(&(pad as u16).to_le_bytes());
        h.resize(h.len() + pad as usize, b'Z');
        self.put(&h)?;
        let start = self.pos;
        let mut counter = CountingWriter {
            inner: &mut self.out,
            n: 0,
        };
        fill(&mut counter)?;
        let written = counter.n;
        self.pos += written;
        if written != size {
            return Err(io::Error::other(format!(
                "entry {name}: wrote {written} bytes, declared {size}"
            )));
        }
        debug_assert_eq!(start % ALIGN, 0);
        self.entries.push(Entry {
            name: name.to_owned(),
            offset,
            size,
            crc: 0,
        });
        Ok(())
    }

    /// Add a small entry from memory (with a CRC).
    pub fn add(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut d = Some(data);
        self.add_with(name, data.len() as u64, &mut |w| {
            if let Some(b) = d.take() {
                w.write_all(b)?;
            }
            Ok(())
        })?;
        if let Some(e) = self.entries.last_mut() {
            e.crc = crc32(data, 0);
        }
        Ok(())
    }

    /// Write the central directory (ZIP64 records when needed); return the sink and the
    /// archive's length (it never seeks: an archive can be written into the middle of a file,
    /// as DCP does).
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        let cd_start = self.pos;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let big = e.size >= 0xFFFF_FFFF || e.offset >= 0xFFFF_FFFF;
            let mut c = Vec::new();
            c.extend_from_slice(b"PK\x01\x02");
            c.extend_from_slice(&(if big { 45u16 } else { 20u16 }).to_le_bytes());
            c.extend_from_slice(&(if big { 45u16 } else { 20u16 }).to_le_bytes());
            c.extend_from_slice(&0u16.to_le_bytes());
            c.extend_from_slice(&0u16.to_le_bytes());
            c.extend_from_slice(&0u32.to_le_bytes());
            c.extend_from_slice(&e.crc.to_le_bytes());
            let s32 = if big { 0xFFFF_FFFF } else { e.size as u32 };
            c.extend_from_slice(&s32.to_le_bytes());
            c.extend_from_slice(&s32.to_le_bytes());
            c.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            let extra: Vec<u8> = if big {
                let mut x = Vec::new();
                x.extend_from_slice(&1u16.to_le_bytes());
                x.extend_from_slice(&24u16.to_le_bytes());
                x.extend_from_slice(&e.size.to_le_bytes());
                x.extend_from_slice(&e.size.to_le_bytes());
                x.extend_from_slice(&e.offset.to_le_bytes());
                x
            } else {
                Vec::new()
            };
            c.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            c.extend_from_slice(&0u16.to_le_bytes()); // comment
            c.extend_from_slice(&0u16.to_le_bytes()); // disk
            c.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
            c.extend_from_slice(&0u32.to_le_bytes()); // external attrs
            let o32 = if big { 0xFFFF_FFFF } else { e.offset as u32 };
            c.extend_from_slice(&o32.to_le_bytes());
            c.extend_from_slice(e.name.as_bytes());
            c.extend_from_slice(&extra);
            self.put(&c)?;
        }
        let cd_size = self.pos - cd_start;
        let n = entries.len() as u64;
        let need64 = cd_start >= 0xFFFF_FFFF || n >= 0xFFFF;
        if need64 {
            let z64_start = self.pos;
            let mut z = Vec::new();
            z.extend_from_slice(b"PK\x06\x06");
            z.extend_from_slice(&44u64.to_le_bytes());
            z.extend_from_slice(&45u16.to_le_bytes());
            z.extend_from_slice(&45u16.to_le_bytes());
            z.extend_from_slice(&0u32.to_le_bytes());
            z.extend_from_slice(&0u32.to_le_bytes());
            z.extend_from_slice(&n.to_le_bytes());
            z.extend_from_slice(&n.to_le_bytes());
            z.extend_from_slice(&cd_size.to_le_bytes());
            z.extend_from_slice(&cd_start.to_le_bytes());
            z.extend_from_slice(b"PK\x06\x07");
            z.extend_from_slice(&0u32.to_le_bytes());
            z.extend_from_slice(&z64_start.to_le_bytes());
            z.extend_from_slice(&1u32.to_le_bytes());
            self.put(&z)?;
        }
        let mut eocd = Vec::new();
        eocd.extend_from_slice(b"PK\x05\x06");
        eocd.extend_from_slice(&0u16.to_le_bytes());
        eocd.extend_from_slice(&0u16.to_le_bytes());
        let n16 = if need64 { 0xFFFF } else { n as u16 };
        eocd.extend_from_slice(&n16.to_le_bytes());
        eocd.extend_from_slice(&n16.to_le_bytes());
        let cs = if need64 { 0xFFFF_FFFF } else { cd_size as u32 };
        let co = if need64 { 0xFFFF_FFFF } else { cd_start as u32 };
        eocd.extend_from_slice(&cs.to_le_bytes());
        eocd.extend_from_slice(&co.to_le_bytes());
        eocd.extend_from_slice(&0u16.to_le_bytes());
        self.put(&eocd)?;
        self.out.flush()?;
        Ok((self.out, self.pos))
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One tensor to write: name, dtype and shape; data is generated deterministically.
#[derive(Debug, Clone)]
pub struct SynthTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
}

impl SynthTensor {
    fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// Write `t` as `_rebuild_tensor_v2(persid, 0, shape, stride, False, OrderedDict())`.
fn tensor_pickle(w: &mut Writer, key: &str, t: &SynthTensor) {
    w.global("torch._utils", "_rebuild_tensor_v2");
    w.mark();
    w.mark();
    w.str("storage");
    let class = match t.dtype {
        DType::F32 => "FloatStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::I64 => "LongStorage",
        DType::F64 => "DoubleStorage",
        _ => "ByteStorage",
    };
    w.global("torch", class);
    w.str(key);
    w.str("cpu");
    w.int(t.numel() as i64);
    w.tuple_from_mark();
    w.binpersid();
    w.int(0);
    w.mark();
    for d in &t.shape {
        w.int(*d as i64);
    }
    w.tuple_from_mark();
    w.mark();
    let mut acc = 1u64;
    let mut strides = vec![0u64; t.shape.len()];
    for (i, d) in t.shape.iter().enumerate().rev() {
        strides[i] = acc;
        acc *= d;
    }
    for s in strides {
        w.int(s as i64);
    }
    w.tuple_from_mark();
    w.bool(false);
    w.global("collections", "OrderedDict");
    w.empty_tuple();
    w.reduce();
    w.tuple_from_mark();
    w.reduce();
}

/// Write a torch.save-style archive: `<root>/data.pkl`, `byteorder`, one `data/<i>` entry per
/// storage filled with a cheap deterministic pattern, `version`. Returns pickle + data bytes.
fn write_archive(
    path: &Path,
    root: &str,
    pickle: &[u8],
    storages: &[SynthTensor],
) -> io::Result<u64> {
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let starts = vec![0; storages.len()];
    let (mut file, total, _) = write_archive_to(file, root, pickle, storages, &starts)?;
    file.flush()?;
    Ok(total)
}

/// Byte `i` of every synthetic storage's pattern (a storage's byte `k` is `PATTERN[k % 2^20]`).
fn pattern() -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..(1u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect()
    })
}

/// `write_archive` into any sink, storage `i` holding the pattern from byte `starts[i]` on (a
/// DCP chunk holds the bytes its rows have in the whole tensor). Returns the sink, pickle +
/// data bytes, and the archive's length.
fn write_archive_to<W: Write>(
    out: W,
    root: &str,
    pickle: &[u8],
    storages: &[SynthTensor],
    starts: &[u64],
) -> io::Result<(W, u64, u64)> {
    let mut z = ZipWriter::new(out);
    z.add(&format!("{root}/data.pkl"), pickle)?;
    z.add(&format!("{root}/byteorder"), b"little")?;
    let mut total = pickle.len() as u64;
    let chunk = pattern();
    let period = chunk.len() as u64;
    for (i, t) in storages.iter().enumerate() {
        let size = t.numel() * t.dtype.size();
        total += size;
        let mut at = starts.get(i).copied().unwrap_or(0) % period;
        z.add_with(&format!("{root}/data/{i}"), size, &mut |w| {
            let mut left = size;
            while left > 0 {
                let n = left.min(period - at);
                w.write_all(&chunk[at as usize..(at + n) as usize])?;
                left -= n;
                at = (at + n) % period;
            }
            Ok(())
        })?;
    }
    z.add(&format!("{root}/version"), b"3\n")?;
    z.add(&format!("{root}/.data/serialization_id"), b"1234567890")?;
    let (out, len) = z.finish()?;
    Ok((out, total, len))
}

/// Write `tensors` as a `torch.distributed.checkpoint` directory saved by `ranks` ranks the way
/// FSDP2 shards: every tensor split along dimension 0 into `ceil(rows / ranks)`-row chunks (the
/// last ranks may get fewer rows, or none), rank `r`'s chunks in `__r_0.distcp`, each chunk a
/// torch.save archive; `.metadata` as DCP pickles it, with `step: 100` as a non-tensor entry
/// (stored by rank 0). Chunk bytes are the bytes the whole tensor has in
/// `write_state_dict_checkpoint`, so both convert to the same tensors. Returns data bytes.
pub fn write_dcp_checkpoint(dir: &Path, tensors: &[SynthTensor], ranks: u64) -> io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let ranks = ranks.max(1);
    let mut stored: Vec<StoredChunk> = Vec::new();
    let mut total = 0u64;
    for r in 0..ranks {
        let path = dir.join(format!("__{r}_0.distcp"));
        let mut f = io::BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let mut pos = 0u64;
        for t in tensors {
            let rows = t.shape.first().copied().unwrap_or(1);
            let per = rows.div_ceil(ranks);
            let lo = (r * per).min(rows);
            let hi = ((r + 1) * per).min(rows);
            let mut shape = t.shape.clone();
            if let Some(d0) = shape.first_mut() {
                *d0 = hi - lo;
            } else if r > 0 {
                continue; // a 0-d tensor is saved once
            }
            let row_bytes: u64 = t.shape.iter().skip(1).product::<u64>() * t.dtype.size();
            let piece = SynthTensor {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: shape.clone(),
            };
            let mut w = Writer::new(2);
            tensor_pickle(&mut w, "0", &piece);
            let pickle = w.finish();
            let start_pos = pos;
            let (_, n, len) = write_archive_to(
                &mut f,
                "archive",
                &pickle,
                std::slice::from_ref(&piece),
                &[lo * row_bytes],
            )?;
            total += n - pickle.len() as u64;
            pos += len;
            let mut offsets = vec![0u64; t.shape.len()];
            if let Some(o) = offsets.first_mut() {
                *o = lo;
            }
            stored.push(StoredChunk {
                fqn: t.name.clone(),
                offsets,
                sizes: shape,
                rank: r,
                offset: start_pos,
                length: pos - start_pos,
            });
        }
        if r == 0 {
            let mut w = Writer::new(2);
            w.int(100);
            let pickle = w.finish();
            let (_, _, n) = write_archive_to(&mut f, "archive", &pickle, &[], &[])?;
            stored.push(StoredChunk {
                fqn: "step".into(),
                offsets: Vec::new(),
                sizes: Vec::new(),
                rank: 0,
                offset: pos,
                length: n,
            });
        }
        f.flush()?;
    }
    std::fs::write(dir.join(".metadata"), dcp_metadata(tensors, &stored))?;
    Ok(total)
}

/// One entry of a synthetic DCP checkpoint's storage: which tensor part, where it lies.
struct StoredChunk {
    fqn: String,
    offsets: Vec<u64>,
    sizes: Vec<u64>,
    rank: u64,
    offset: u64,
    length: u64,
}

/// DCP's `.metadata` pickle: `Metadata(state_dict_metadata, planner_data, storage_data,
/// storage_meta, version)` built with NEWOBJ + BUILD as `pickle.dump` writes dataclasses.
fn dcp_metadata(tensors: &[SynthTensor], stored: &[StoredChunk]) -> Vec<u8> {
    const M: &str = "torch.distributed.checkpoint.metadata";
    let obj = |w: &mut Writer, module: &str, class: &str| {
        w.global(module, class);
        w.empty_tuple();
        w.newobj();
    };
    let size = |w: &mut Writer, v: &[u64]| {
        w.global("torch", "Size");
        w.mark();
        for x in v {
            w.int(*x as i64);
        }
        w.tuple_from_mark();
        w.tuple_n(1);
        w.reduce();
    };
    let mut w = Writer::new(4);
    obj(&mut w, M, "Metadata");
    w.empty_dict();
    w.mark();
    w.str("state_dict_metadata");
    w.empty_dict();
    w.mark();
    for t in tensors {
        w.str(&t.name);
        obj(&mut w, M, "TensorStorageMetadata");
        w.empty_dict();
        w.mark();
        w.str("properties");
        obj(&mut w, M, "TensorProperties");
        w.mark();
        w.global("torch", t.dtype.name());
        w.none(); // layout
        w.bool(false);
        w.int(0);
        w.bool(false);
        w.tuple_from_mark();
        w.build();
        w.str("size");
        size(&mut w, &t.shape);
        w.str("chunks");
        w.empty_list();
        w.mark();
        for c in stored.iter().filter(|c| c.fqn == t.name) {
            obj(&mut w, M, "ChunkStorageMetadata");
            w.empty_dict();
            w.mark();
            w.str("offsets");
            size(&mut w, &c.offsets);
            w.str("sizes");
            size(&mut w, &c.sizes);
            w.setitems();
            w.build();
        }
        w.appends();
        w.setitems();
        w.build();
    }
    w.str("step");
    obj(&mut w, M, "BytesStorageMetadata");
    w.setitems();
    w.str("storage_data");
    w.empty_dict();
    w.mark();
    let mut index: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for StoredChunk {
        fqn,
        offsets,
        rank,
        offset: off,
        length: len,
        ..
    } in stored
    {
        obj(&mut w, M, "MetadataIndex");
        w.empty_dict();
        w.mark();
        w.str("fqn");
        w.str(fqn);
        w.str("offset");
        let i = index.entry(fqn.as_str()).or_insert(0);
        if fqn == "step" {
            w.none();
            w.str("index");
            w.none();
        } else {
            size(&mut w, offsets);
            w.str("index");
            w.int(*i);
            *i += 1;
        }
        w.setitems();
        w.build();
        obj(
            &mut w,
            "torch.distributed.checkpoint.filesystem",
            "_StorageInfo",
        );
        w.empty_dict();
        w.mark();
        w.str("relative_path");
        w.str(&format!("__{rank}_0.distcp"));
        w.str("offset");
        w.int(*off as i64);
        w.str("length");
        w.int(*len as i64);
        w.setitems();
        w.build();
    }
    w.setitems();
    w.str("storage_meta");
    w.none();
    w.str("version");
    w.str("1.0.0");
    w.setitems();
    w.build();
    w.finish()
}

/// Tensors of a model whose state dict has `n` weight tensors totalling about `bytes` bytes of
/// float32 (plus small biases), named like a conv net's layers.
pub fn model_tensors(n: usize, bytes: u64) -> Vec<SynthTensor> {
    let per = (bytes / 4 / n.max(1) as u64).max(1);
    let width = (per as f64).sqrt().max(1.0) as u64;
    let rows = (per / width).max(1);
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        let group = ["encoder", "decoder", "head"][i % 3];
        out.push(SynthTensor {
            name: format!("model.{group}.layer{i}.weight"),
            dtype: DType::F32,
            shape: vec![rows, width],
        });
        out.push(SynthTensor {
            name: format!("model.{group}.layer{i}.bias"),
            dtype: DType::F32,
            shape: vec![rows],
        });
    }
    out
}

/// Write a Lightning-shaped checkpoint: `epoch`, `global_step`, `state_dict` (the given
/// tensors), AdamW `optimizer_states` (`exp_avg`/`exp_avg_sq` per parameter, so the file is
/// about three times the weights), a `ModelCheckpoint` callback with 0-d scores,
/// `hyper_parameters`. Data bytes are a cheap deterministic pattern.
pub fn write_lightning_checkpoint(path: &Path, tensors: &[SynthTensor]) -> io::Result<u64> {
    let root = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let mut w = Writer::new(2);
    let mut storages: Vec<SynthTensor> = Vec::new();
    let next_key = |t: &SynthTensor, storages: &mut Vec<SynthTensor>| -> String {
        storages.push(t.clone());
        (storages.len() - 1).to_string()
    };
    w.empty_dict();
    w.mark();
    w.str("epoch");
    w.int(3);
    w.str("global_step");
    w.int(400);
    w.str("pytorch-lightning_version");
    w.str("2.6.6");
    // state_dict
    w.str("state_dict");
    w.global("collections", "OrderedDict");
    w.empty_tuple();
    w.reduce();
    w.mark();
    for t in tensors {
        w.str(&t.name);
        let key = next_key(t, &mut storages);
        tensor_pickle(&mut w, &key, t);
    }
    w.setitems();
    // callbacks
    w.str("callbacks");
    w.empty_dict();
    w.mark();
    w.str("ModelCheckpoint{'monitor': 'val/hmean', 'mode': 'max', 'every_n_train_steps': 0, 'every_n_epochs': 1, 'train_time_interval': None}");
    w.empty_dict();
    w.mark();
    w.str("monitor");
    w.str("val/hmean");
    for name in ["best_model_score", "current_score"] {
        w.str(name);
        let t = SynthTensor {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![],
        };
        let key = next_key(&t, &mut storages);
        tensor_pickle(&mut w, &key, &t);
    }
    w.str("best_model_path");
    w.str("/train/outputs/run/checkpoints/epoch=03-step=400.ckpt");
    w.str("last_model_path");
    w.str("/train/outputs/run/checkpoints/last.ckpt");
    w.setitems();
    w.setitems();
    // optimizer_states
    w.str("optimizer_states");
    w.empty_list();
    w.empty_dict();
    w.mark();
    w.str("state");
    w.empty_dict();
    w.mark();
    for (i, t) in tensors.iter().enumerate() {
        w.int(i as i64);
        w.empty_dict();
        w.mark();
        w.str("step");
        let step = SynthTensor {
            name: "step".into(),
            dtype: DType::F32,
            shape: vec![],
        };
        let key = next_key(&step, &mut storages);
        tensor_pickle(&mut w, &key, &step);
        for f in ["exp_avg", "exp_avg_sq"] {
            w.str(f);
            let key = next_key(t, &mut storages);
            tensor_pickle(&mut w, &key, t);
        }
        w.setitems();
    }
    w.setitems();
    w.str("param_groups");
    w.empty_list();
    w.empty_dict();
    w.mark();
    w.str("lr");
    w.float(0.001);
    w.str("params");
    w.empty_list();
    w.mark();
    for i in 0..tensors.len() {
        w.int(i as i64);
    }
    w.appends();
    w.setitems();
    w.append();
    w.setitems();
    w.append();
    // hyper_parameters
    w.str("hparams_name");
    w.str("kwargs");
    w.str("hyper_parameters");
    w.empty_dict();
    w.mark();
    w.str("architecture_name");
    w.str("dbnet");
    w.str("lr");
    w.float(0.001);
    w.setitems();
    w.setitems();
    let pickle = w.finish();

    write_archive(path, &root, &pickle, &storages)
}

/// The tensors of a GPT-2 language model (`transformer.wte/wpe`, `h.N.{ln_1,attn,ln_2,mlp}`,
/// `ln_f`) of the given size, each name wrapped the way FSDP (`use_orig_params=True`) names
/// them (`_fsdp_wrapped_module.` at the root and per block).
pub fn gpt2_fsdp_tensors(
    layers: usize,
    hidden: u64,
    vocab: u64,
    positions: u64,
) -> Vec<SynthTensor> {
    let w = "_fsdp_wrapped_module.";
    let t = |name: String, shape: Vec<u64>| SynthTensor {
        name,
        dtype: DType::F32,
        shape,
    };
    let mut out = vec![
        t(format!("{w}transformer.wte.weight"), vec![vocab, hidden]),
        t(
            format!("{w}transformer.wpe.weight"),
            vec![positions, hidden],
        ),
    ];
    for i in 0..layers {
        let b = format!("{w}transformer.h.{i}.{w}");
        out.push(t(format!("{b}ln_1.weight"), vec![hidden]));
        out.push(t(format!("{b}ln_1.bias"), vec![hidden]));
        out.push(t(
            format!("{b}attn.c_attn.weight"),
            vec![hidden, 3 * hidden],
        ));
        out.push(t(format!("{b}attn.c_attn.bias"), vec![3 * hidden]));
        out.push(t(format!("{b}attn.c_proj.weight"), vec![hidden, hidden]));
        out.push(t(format!("{b}attn.c_proj.bias"), vec![hidden]));
        out.push(t(format!("{b}ln_2.weight"), vec![hidden]));
        out.push(t(format!("{b}ln_2.bias"), vec![hidden]));
        out.push(t(format!("{b}mlp.c_fc.weight"), vec![hidden, 4 * hidden]));
        out.push(t(format!("{b}mlp.c_fc.bias"), vec![4 * hidden]));
        out.push(t(format!("{b}mlp.c_proj.weight"), vec![4 * hidden, hidden]));
        out.push(t(format!("{b}mlp.c_proj.bias"), vec![hidden]));
    }
    out.push(t(format!("{w}transformer.ln_f.weight"), vec![hidden]));
    out.push(t(format!("{w}transformer.ln_f.bias"), vec![hidden]));
    out
}

/// Write `{"model": OrderedDict(tensors), "epoch": 1, "step": 100}` as torch.save would: the
/// shape of an FSDP training checkpoint.
pub fn write_state_dict_checkpoint(path: &Path, tensors: &[SynthTensor]) -> io::Result<u64> {
    let root = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let mut w = Writer::new(2);
    w.empty_dict();
    w.mark();
    w.str("model");
    w.global("collections", "OrderedDict");
    w.empty_tuple();
    w.reduce();
    w.mark();
    for (i, t) in tensors.iter().enumerate() {
        w.str(&t.name);
        tensor_pickle(&mut w, &i.to_string(), t);
    }
    w.setitems();
    w.str("epoch");
    w.int(1);
    w.str("step");
    w.int(100);
    w.setitems();
    let pickle = w.finish();
    write_archive(path, &root, &pickle, tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Checkpoint;

    #[test]
    fn crc_matches_known_value() {
        assert_eq!(crc32(b"123456789", 0), 0xCBF4_3926);
    }

    #[test]
    fn synthetic_checkpoint_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("synth.ckpt");
        let tensors = model_tensors(6, 60_000);
        write_lightning_checkpoint(&p, &tensors).unwrap();
        let ck = Checkpoint::open(&p).unwrap();
        assert_eq!(
            ck.format,
            crate::Format::Zip {
                root: "synth".into()
            }
        );
        // No state dicts here: finding them is ckpt-model's (its tests summarize this file).
        let s = ck.summary_with(Vec::new());
        assert_eq!(s.epoch, Some(3));
        assert_eq!(s.global_step, Some(400));
        assert_eq!(
            ck.doc
                .dict(ck.doc.get(ck.doc.root(), "state_dict").unwrap())
                .unwrap()
                .len(),
            12
        );
        assert_eq!(s.callbacks.len(), 1);
        assert!(s.callbacks[0].best_model_score.is_some());
        ck.check_storages().unwrap();
    }
}
