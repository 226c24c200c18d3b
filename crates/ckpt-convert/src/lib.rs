//! Exporters: a torch checkpoint (FSDP, DDP, `torch.compile`d, plain) into a Hugging Face
//! folder (`model.safetensors` + config and tokenizer from a base model) or a bare
//! `.safetensors` file — streaming tensor bytes from the source file, never loading the model.
//!
//! What happens to a checkpoint:
//! 1. its state dict is found (`--key`, else the top level, `model`, `state_dict`,
//!    `model_state_dict`, `module`, …, else the largest string → tensor mapping);
//! 2. flattened FSDP parameters (`_flat_param`) stop the conversion: they cannot be split
//!    without FSDP's own metadata;
//! 3. names lose wrapper prefixes wherever they occur (`_fsdp_wrapped_module.`, `_fpw_module.`,
//!    `_checkpoint_wrapped_module.`, `_orig_mod.`, a leading `module.`), then explicit
//!    `--strip-prefix`/`--add-prefix`;
//! 4. a tied output embedding (`lm_head.weight` sharing its storage with the input embedding)
//!    is written once, under the embedding's name, unless the base config says
//!    `tie_word_embeddings: false`;
//! 5. tensors are written sorted by name into a temporary folder beside the target, which is
//!    renamed into place when complete.

mod cast;
mod dcp;

pub use dcp::convert_dcp;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use ckpt_torch::summary::{find_state_dicts, strip_wrappers};
use ckpt_torch::{Checkpoint, DType, NodeId, TensorRef, View};
use serde_json::{Value, json};

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A folder transformers loads: weights, config, tokenizer.
    HuggingFace,
    /// Just the tensors, as `model.safetensors` in the output folder.
    Safetensors,
}

/// Called as tensor bytes are written: (bytes written, bytes to write) for the current file.
pub type Progress = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;

#[derive(Clone)]
pub struct ConvertOptions {
    pub target: Target,
    /// The base model folder (config, tokenizer, generation config).
    pub base_model: Option<PathBuf>,
    /// Dotted path of the state dict inside the checkpoint.
    pub key: Option<String>,
    pub strip_prefix: Vec<String>,
    pub add_prefix: Option<String>,
    pub force: bool,
    /// Flush the output to disk (files, the folder, its parent) before and after the rename
    /// into place. Without it the rename still makes an interrupted *process* leave no half
    /// folder, as `cp`, `save_file` and `save_pretrained` do; with it the folder also survives a
    /// power loss. Replacing an existing folder (`force`) always flushes, since the old folder
    /// is removed right after.
    pub sync: bool,
    pub dry_run: bool,
    /// Largest shard in bytes; above it, `model-0000N-of-0000M.safetensors` + an index.
    pub max_shard_size: u64,
    /// Cast floating-point tensors to this dtype (`--dtype bf16|fp16|fp32`); `None` keeps.
    pub dtype: Option<DType>,
    /// Progress reports (the CLI draws a bar in bytes on a terminal).
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for ConvertOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvertOptions")
            .field("target", &self.target)
            .field("base_model", &self.base_model)
            .field("key", &self.key)
            .field("max_shard_size", &self.max_shard_size)
            .field("dtype", &self.dtype)
            .field("force", &self.force)
            .field("sync", &self.sync)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// Parse `5GB`, `500MB`, `10KB`, `1024` (decimal units, as Hugging Face writes them; `GiB`
/// and friends are binary).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 1.0).then_some(v as u64)
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Read(#[from] ckpt_torch::Error),
    #[error("{path}: no state dict found (give --key)")]
    NoStateDict { path: PathBuf },
    #[error("{path}: no state dict at --key {key}")]
    NoKey { path: PathBuf, key: String },
    #[error("{path}: TorchScript archive: {detail}")]
    TorchScript { path: PathBuf, detail: String },
    #[error(
        "{path}: holds flattened FSDP parameters ({name}); they cannot be split into named tensors without FSDP's metadata. Save a full state dict instead: FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT) before model.state_dict(), or use_orig_params=True, or a sharded DCP checkpoint"
    )]
    FlatParam { path: PathBuf, name: String },
    #[error("{path}: two tensors would both be named {name}")]
    Collision { path: PathBuf, name: String },
    #[error("{path}: {dtype} tensors cannot be written to safetensors")]
    Dtype { path: PathBuf, dtype: String },
    #[error("{path}: already exists (use --force to replace it)")]
    Exists { path: PathBuf },
    #[error("{path}: base model: {detail}")]
    Base { path: PathBuf, detail: String },
    #[error("{path}: DCP checkpoint: {detail}")]
    Dcp { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = ConvertError> = std::result::Result<T, E>;

/// The outcome of one conversion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Converted {
    pub input: String,
    pub output: String,
    pub state_dict_key: String,
    pub tensors: usize,
    pub bytes: u64,
    /// Names not written because their storage is written under another name.
    pub tied: Vec<String>,
    /// Prefixes removed.
    pub stripped_prefixes: Vec<String>,
    /// Entries next to the state dict that are not tensors (epoch, step, optimizer …).
    pub other_keys: Vec<String>,
    /// Compared with the base folder's own weights, when it has some: names it has that the
    /// output lacks, and the reverse.
    pub missing_keys: Vec<String>,
    pub unexpected_keys: Vec<String>,
    /// When missing and unexpected names differ by a prefix: the flag that would fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// When the output's names and the base model's differ by a leading prefix (a Lightning
/// module's `model.` attribute, a wrapper we do not know), the `--strip-prefix` or
/// `--add-prefix` that maps most of the unexpected names onto missing ones.
fn prefix_hint(missing: &[String], unexpected: &[String]) -> Option<String> {
    if missing.is_empty() || unexpected.is_empty() {
        return None;
    }
    let miss: std::collections::HashSet<&str> = missing.iter().map(String::as_str).collect();
    let unexp: std::collections::HashSet<&str> = unexpected.iter().map(String::as_str).collect();
    // (prefix, strip?) -> names it explains
    let mut counts: HashMap<(&str, bool), usize> = HashMap::new();
    for (names, other, strip) in [(unexpected, &miss, true), (missing, &unexp, false)] {
        for n in names {
            for (i, _) in n.match_indices('.') {
                let (prefix, rest) = n.split_at(i + 1);
                if other.contains(rest) {
                    *counts.entry((prefix, strip)).or_default() += 1;
                }
            }
        }
    }
    let ((prefix, strip), n) = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.0.len().cmp(&a.0.0.len())))?;
    let (flag, of) = if strip {
        ("--strip-prefix", unexpected.len())
    } else {
        ("--add-prefix", missing.len())
    };
    // Only a prefix that explains most of them is worth saying.
    (n * 2 > of).then(|| {
        format!(
            "{n} of the {of} {} names match the base model's with {flag} {prefix}",
            if strip { "unexpected" } else { "missing" }
        )
    })
}

/// safetensors' name for a dtype.
fn st_dtype(d: DType) -> Option<&'static str> {
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

/// Names of input embeddings an output head can be tied to.
const EMBEDDINGS: &[&str] = &[
    "wte.weight",
    "embed_tokens.weight",
    "word_embeddings.weight",
    "shared.weight",
    "embed_in.weight",
    "tok_embeddings.weight",
];

const CANDIDATE_KEYS: &[&str] = &[
    "model",
    "state_dict",
    "model_state_dict",
    "module",
    "net",
    "network",
    "weights",
];

/// The state dict: (dotted key, entries as (name, value node)). A dict of tensors, or a
/// pickled `nn.Module` (`torch.save(model)`), flattened as `state_dict()` names it.
fn find_state_dict(ck: &Checkpoint, key: Option<&str>) -> Result<(String, Vec<(String, NodeId)>)> {
    // A TorchScript archive: its parameters and buffers, as torch.jit.load(f).state_dict().
    if ck.torchscript.is_some() && key.is_none() {
        return ckpt_torch::torchscript::export_state_dict(ck)
            .map(|e| (String::new(), e))
            .map_err(|detail| ConvertError::TorchScript {
                path: ck.path.clone(),
                detail,
            });
    }
    let doc = &ck.doc;
    let root = doc.root();
    let entries = |id: NodeId| -> Vec<(String, NodeId)> {
        if let Some(m) = ckpt_torch::summary::module_state_dict(doc, id) {
            return m;
        }
        doc.dict(id)
            .unwrap_or(&[])
            .iter()
            .map(|(k, v)| (ckpt_torch::pyrepr::key_str(doc, *k), *v))
            .collect()
    };
    let is_sd = |id: NodeId| {
        doc.dict(id).is_some_and(|items| {
            let t = items
                .iter()
                .filter(|(_, v)| matches!(doc.view(*v), View::Tensor(_)))
                .count();
            t > 0 && t * 2 >= items.len()
        })
    };
    let usable = |id: NodeId| is_sd(id) || ckpt_torch::summary::is_module(doc, id);
    if let Some(k) = key {
        return doc
            .at_path(root, k)
            .filter(|id| doc.dict(*id).is_some() || ckpt_torch::summary::is_module(doc, *id))
            .map(|id| (k.to_owned(), entries(id)))
            .ok_or_else(|| ConvertError::NoKey {
                path: ck.path.clone(),
                key: k.to_owned(),
            });
    }
    if usable(root) {
        return Ok((String::new(), entries(root)));
    }
    for k in CANDIDATE_KEYS {
        if let Some(id) = doc.get(root, k)
            && usable(id)
        {
            return Ok(((*k).to_owned(), entries(id)));
        }
    }
    find_state_dicts(doc, root)
        .into_iter()
        .max_by_key(|(_, id)| doc.dict(*id).map_or(0, <[_]>::len))
        .map(|(k, id)| (k, entries(id)))
        .ok_or_else(|| ConvertError::NoStateDict {
            path: ck.path.clone(),
        })
}

fn rename(name: &str, opts: &ConvertOptions) -> String {
    let mut n = strip_wrappers(name);
    for p in &opts.strip_prefix {
        if let Some(rest) = n.strip_prefix(p.as_str()) {
            n = rest.to_owned();
        }
    }
    if let Some(p) = &opts.add_prefix {
        n = format!("{p}{n}");
    }
    n
}

/// Identity of the bytes a tensor views: same storage, offset, shape and strides.
/// (storage key, offset, shape, strides, dtype): equal keys view the same bytes.
type ViewKey = (String, u64, Vec<u64>, Vec<i64>, DType);

fn view_key(t: &TensorRef) -> Option<ViewKey> {
    t.storage.as_ref().map(|s| {
        (
            s.key.clone(),
            t.offset,
            t.shape.clone(),
            t.stride.clone(),
            t.dtype,
        )
    })
}

fn read_base_config(base: Option<&Path>) -> Option<Value> {
    let p = base?.join("config.json");
    let text = std::fs::read_to_string(p).ok()?;
    serde_json::from_str(&text).ok()
}

/// A tensor to write: its output name, its dtype and shape (`t`), and where its bytes are.
#[derive(Debug, Clone)]
struct Planned {
    name: String,
    t: TensorRef,
    from: From,
}

/// Where a planned tensor's bytes come from.
#[derive(Debug, Clone)]
enum From {
    /// `t` itself, in the source checkpoint with this index.
    One(usize),
    /// A DCP tensor sharded across ranks: its chunks, which tile it exactly; `t` only carries
    /// the global shape and dtype.
    Chunks(Vec<dcp::Chunk>),
}

impl Planned {
    fn one(name: String, src: usize, t: TensorRef) -> Self {
        Planned {
            name,
            t,
            from: From::One(src),
        }
    }
}

/// The state dict's entries: tensors as (name, source 0, tensor) and the non-tensor names.
fn collect_file(ck: &Checkpoint, entries: Vec<(String, NodeId)>) -> (Vec<Planned>, Vec<String>) {
    let mut raw = Vec::new();
    let mut other = Vec::new();
    for (name, v) in entries {
        match ck.doc.view(v) {
            View::Tensor(t) => raw.push(Planned::one(name, 0, t.clone())),
            _ => other.push(name),
        }
    }
    (raw, other)
}

/// Check, rename, de-duplicate tied heads, sort: the tensors to write and the tied names left
/// out.
fn finish_plan(
    raw: Vec<Planned>,
    cks: &[Checkpoint],
    path: &Path,
    opts: &ConvertOptions,
    tie: bool,
) -> Result<(Vec<Planned>, Vec<String>)> {
    let mut out: BTreeMap<String, Planned> = BTreeMap::new();
    for Planned { name, t, from } in raw {
        if name.ends_with("_flat_param") || name.contains("_flat_param.") {
            return Err(ConvertError::FlatParam {
                path: path.to_path_buf(),
                name,
            });
        }
        if st_dtype(t.dtype).is_none() {
            return Err(ConvertError::Dtype {
                path: path.to_path_buf(),
                dtype: t.dtype.name().to_owned(),
            });
        }
        let new = rename(&name, opts);
        let planned = Planned {
            name: new.clone(),
            t,
            from,
        };
        if out.insert(new.clone(), planned).is_some() {
            return Err(ConvertError::Collision {
                path: path.to_path_buf(),
                name: new,
            });
        }
    }
    // Tied output embeddings: written once, under the input embedding's name. Tied means one
    // storage under two names, or (FSDP full state dicts and DCP clone it) the same shape,
    // dtype and bytes as the input embedding.
    let mut tied = Vec::new();
    if tie {
        let heads: Vec<String> = out
            .keys()
            .filter(|n| *n == "lm_head.weight" || n.ends_with(".lm_head.weight"))
            .cloned()
            .collect();
        let embeddings: Vec<String> = out
            .keys()
            .filter(|n| EMBEDDINGS.iter().any(|e| n.ends_with(e)))
            .cloned()
            .collect();
        for h in heads {
            let Some(head) = out.get(&h) else {
                continue;
            };
            let same = embeddings
                .iter()
                .any(|e| out.get(e).is_some_and(|emb| same_bytes(cks, head, emb)));
            if same {
                tied.push(h);
            }
        }
        for n in &tied {
            out.remove(n);
        }
    }
    tied.sort();
    Ok((out.into_values().collect(), tied))
}

/// Whether two planned tensors hold the same values: one storage viewed alike, or equal
/// shape, dtype and bytes (chunk by chunk for sharded DCP tensors, which must then be
/// sharded alike).
fn same_bytes(cks: &[Checkpoint], a: &Planned, b: &Planned) -> bool {
    if a.t.shape != b.t.shape || a.t.dtype != b.t.dtype {
        return false;
    }
    let sha =
        |src: usize, t: &TensorRef, n: &str| cks.get(src).and_then(|c| c.tensor_sha256(t, n).ok());
    match (&a.from, &b.from) {
        (From::One(x), From::One(y)) => {
            if x == y && view_key(&a.t).is_some() && view_key(&a.t) == view_key(&b.t) {
                return true;
            }
            let ha = sha(*x, &a.t, &a.name);
            ha.is_some() && ha == sha(*y, &b.t, &b.name)
        }
        (From::Chunks(ca), From::Chunks(cb)) => {
            ca.len() == cb.len()
                && ca.iter().zip(cb).all(|(p, q)| {
                    let sha = |c: &dcp::Chunk, n: &str| {
                        c.at.open(n)
                            .ok()
                            .and_then(|ck| ck.tensor_sha256(&c.t, n).ok())
                    };
                    p.offsets == q.offsets && p.t.shape == q.t.shape && {
                        let hp = sha(p, &a.name);
                        hp.is_some() && hp == sha(q, &b.name)
                    }
                })
        }
        _ => false,
    }
}

/// Write `tensors` as a safetensors file (header padded to 8 bytes, metadata
/// `{"format": "pt"}`), streaming each tensor's bytes from the checkpoint.
fn out_nbytes(t: &TensorRef, cast: Option<DType>) -> u64 {
    t.numel()
        .saturating_mul(cast::target_dtype(t.dtype, cast).size())
}

fn write_safetensors(
    cks: &[Checkpoint],
    tensors: &[Planned],
    path: &Path,
    cast: Option<DType>,
    progress: &(dyn Fn(u64) + Sync),
    flush: bool,
) -> Result<u64> {
    let io = |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset: u64 = 0;
    for Planned { name, t, .. } in tensors {
        let n = out_nbytes(t, cast);
        header.insert(
            name.clone(),
            json!({
                "dtype": st_dtype(cast::target_dtype(t.dtype, cast)).unwrap_or("F32"),
                "shape": t.shape,
                "data_offsets": [offset, offset + n],
            }),
        );
        offset += n;
    }
    let mut text = serde_json::to_string(&Value::Object(header)).map_err(|e| io(e.into()))?;
    while text.len() % 8 != 0 {
        text.push(' ');
    }
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
                let to = cast::target_dtype(p.t.dtype, cast);
                total += match &p.from {
                    From::One(src) => {
                        let ck = cks.get(*src).ok_or_else(|| ConvertError::Io {
                            path: path.to_path_buf(),
                            source: std::io::Error::other("internal: no such source checkpoint"),
                        })?;
                        write_one(ck, &p.t, &p.name, to, &mut f, path)?
                    }
                    From::Chunks(chunks) => {
                        dcp::write_chunks(&p.t, chunks, &p.name, to, &mut f, path)?
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
fn write_one(
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
        let out = cast::convert(chunk, t.dtype, to);
        total += out.len() as u64;
        f.write_all(&out).map_err(|source| ckpt_torch::Error::Io {
            path: path.to_path_buf(),
            source,
        })
    })?;
    Ok(total)
}

/// Split tensors (already sorted by name) into shards of at most `max` bytes; a tensor larger
/// than `max` gets a shard of its own.
fn shard(tensors: &[Planned], max: u64, cast: Option<DType>) -> Vec<Vec<Planned>> {
    let mut out: Vec<Vec<Planned>> = Vec::new();
    let mut cur: Vec<Planned> = Vec::new();
    let mut size = 0u64;
    for t in tensors {
        let n = out_nbytes(&t.t, cast);
        if !cur.is_empty() && size.saturating_add(n) > max {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size = size.saturating_add(n);
        cur.push(t.clone());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Tensor names a base folder's own weights have (its index or safetensors header), to
/// report missing and unexpected keys.
fn base_weight_names(base: &Path) -> Option<Vec<String>> {
    for idx in [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ] {
        if let Ok(text) = std::fs::read_to_string(base.join(idx))
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && let Some(m) = v.get("weight_map").and_then(Value::as_object)
        {
            return Some(m.keys().cloned().collect());
        }
    }
    let st = base.join("model.safetensors");
    let ck = Checkpoint::open(st).ok()?;
    let items = ck.doc.dict(ck.doc.root())?;
    Some(
        items
            .iter()
            .filter_map(|(k, _)| ck.doc.as_str(*k).map(str::to_owned))
            .collect(),
    )
}

/// Files copied from the base model folder when present.
const BASE_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
];

/// `architectures` for a config that lacks it, by `model_type`.
fn default_architecture(model_type: &str) -> Option<&'static str> {
    Some(match model_type {
        "gpt2" => "GPT2LMHeadModel",
        "llama" => "LlamaForCausalLM",
        "mistral" => "MistralForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        "gemma" => "GemmaForCausalLM",
        "opt" => "OPTForCausalLM",
        "gpt_neox" => "GPTNeoXForCausalLM",
        "phi" => "PhiForCausalLM",
        "bert" => "BertModel",
        "t5" => "T5ForConditionalGeneration",
        _ => return None,
    })
}

fn write_hf_files(base: &Path, out: &Path, cfg: Option<&Value>, dtype: Option<&str>) -> Result<()> {
    let io = |p: &Path, source| ConvertError::Io {
        path: p.to_path_buf(),
        source,
    };
    if let Some(cfg) = cfg {
        let mut cfg = cfg.clone();
        if let Some(m) = cfg.as_object_mut() {
            if !m.contains_key("architectures")
                && let Some(a) = m
                    .get("model_type")
                    .and_then(Value::as_str)
                    .and_then(default_architecture)
            {
                m.insert("architectures".into(), json!([a]));
            }
            if let Some(d) = dtype {
                m.insert("dtype".into(), json!(d));
            }
        }
        let p = out.join("config.json");
        let mut text = serde_json::to_string_pretty(&cfg).map_err(|e| io(&p, e.into()))?;
        text.push('\n');
        std::fs::write(&p, text).map_err(|e| io(&p, e))?;
        // transformers writes a generation config from the model config; do the same when the
        // base has none.
        if !base.join("generation_config.json").is_file() {
            let mut g = serde_json::Map::new();
            g.insert("_from_model_config".into(), json!(true));
            for k in [
                "bos_token_id",
                "eos_token_id",
                "pad_token_id",
                "decoder_start_token_id",
            ] {
                if let Some(v) = cfg.get(k).filter(|v| !v.is_null()) {
                    g.insert(k.into(), v.clone());
                }
            }
            if let Some(v) = cfg.get("transformers_version") {
                g.insert("transformers_version".into(), v.clone());
            }
            g.insert("output_attentions".into(), json!(false));
            g.insert("output_hidden_states".into(), json!(false));
            g.insert(
                "use_cache".into(),
                cfg.get("use_cache").cloned().unwrap_or(json!(true)),
            );
            let p = out.join("generation_config.json");
            let mut text =
                serde_json::to_string_pretty(&Value::Object(g)).map_err(|e| io(&p, e.into()))?;
            text.push('\n');
            std::fs::write(&p, text).map_err(|e| io(&p, e))?;
        }
    }
    for f in BASE_FILES {
        let src = base.join(f);
        if src.is_file() {
            std::fs::copy(&src, out.join(f)).map_err(|e| io(&src, e))?;
        }
    }
    Ok(())
}

/// The dtype transformers records for the weights: the one holding most elements.
fn dominant_dtype(tensors: &[Planned]) -> Option<&'static str> {
    let mut by: HashMap<DType, u64> = HashMap::new();
    for Planned { t, .. } in tensors {
        *by.entry(t.dtype).or_default() += t.numel();
    }
    by.into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(d, _)| d.name())
}

/// Refuse an existing output, read the base config, and say whether heads are tied.
fn prepare(output: &Path, opts: &ConvertOptions) -> Result<(Option<Value>, bool)> {
    if output.exists() && !opts.force {
        return Err(ConvertError::Exists {
            path: output.to_path_buf(),
        });
    }
    let base_cfg = match (&opts.target, &opts.base_model) {
        (Target::HuggingFace, Some(b)) => {
            Some(read_base_config(Some(b)).ok_or_else(|| ConvertError::Base {
                path: b.clone(),
                detail: "no readable config.json".into(),
            })?)
        }
        (Target::HuggingFace, None) => {
            return Err(ConvertError::Base {
                path: output.to_path_buf(),
                detail: "a Hugging Face folder needs --base-model (or use --to safetensors)".into(),
            });
        }
        _ => None,
    };
    let tie = base_cfg
        .as_ref()
        .and_then(|c| c.get("tie_word_embeddings"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok((base_cfg, tie))
}

/// The wrapper prefixes `rename` removes from these names, in the order first seen.
fn stripped_prefixes<'n>(names: impl Iterator<Item = &'n str>) -> Vec<String> {
    let mut stripped: Vec<String> = Vec::new();
    for n in names {
        ckpt_torch::summary::strip_wrappers_noting(n, &mut |p| {
            if !stripped.iter().any(|s| s == p) {
                stripped.push(p.to_owned());
            }
        });
    }
    stripped
}

/// Convert one checkpoint file into the folder `output`.
pub fn convert_file(input: &Path, output: &Path, opts: &ConvertOptions) -> Result<Converted> {
    let (base_cfg, tie) = prepare(output, opts)?;
    let ck = Checkpoint::open(input)?;
    let (sd_key, entries) = find_state_dict(&ck, opts.key.as_deref())?;
    let (raw, mut other) = collect_file(&ck, entries);
    // What sits beside the state dict (epoch, step, optimizer, config …): reported, not
    // converted. Non-tensor entries inside it are in `other` already.
    if let Some(top) = sd_key.split('.').next().filter(|k| !k.is_empty())
        && let Some(items) = ck.doc.dict(ck.doc.root())
    {
        let beside = items
            .iter()
            .map(|(k, _)| ckpt_torch::pyrepr::key_str(&ck.doc, *k))
            .filter(|k| k != top);
        other.splice(0..0, beside);
    }
    let source = Source {
        input,
        cks: vec![ck],
        raw,
        other,
        state_dict_key: sd_key,
    };
    plan_and_emit(source, output, opts, base_cfg.as_ref(), tie)
}

/// What one conversion reads: the checkpoints tensors come from, the tensors as found, the
/// non-tensor entries.
struct Source<'p> {
    input: &'p Path,
    cks: Vec<Checkpoint>,
    raw: Vec<Planned>,
    other: Vec<String>,
    state_dict_key: String,
}

/// Shared by files and DCP directories: plan the tensors, report, write.
fn plan_and_emit(
    src: Source<'_>,
    output: &Path,
    opts: &ConvertOptions,
    base_cfg: Option<&Value>,
    tie: bool,
) -> Result<Converted> {
    let stripped = stripped_prefixes(src.raw.iter().map(|p| p.name.as_str()));
    let (tensors, tied) = finish_plan(src.raw, &src.cks, src.input, opts, tie)?;
    let report = Converted {
        input: src.input.display().to_string(),
        output: output.display().to_string(),
        state_dict_key: src.state_dict_key,
        tensors: tensors.len(),
        bytes: 0, // filled by `emit` (it depends on --dtype)
        tied,
        stripped_prefixes: stripped,
        other_keys: src.other,
        missing_keys: Vec::new(),
        unexpected_keys: Vec::new(),
        hint: None,
    };
    emit(&src.cks, &tensors, output, opts, base_cfg, report)
}

/// Write the output folder: into a temporary folder beside the target, renamed into place
/// when complete (an existing target is replaced only with --force, and only then).
fn emit(
    cks: &[Checkpoint],
    tensors: &[Planned],
    output: &Path,
    opts: &ConvertOptions,
    base_cfg: Option<&Value>,
    report: Converted,
) -> Result<Converted> {
    let mut report = report;
    report.bytes = tensors.iter().map(|p| out_nbytes(&p.t, opts.dtype)).sum();
    if let Some(b) = &opts.base_model
        && let Some(names) = base_weight_names(b)
    {
        let have: std::collections::BTreeSet<&str> =
            tensors.iter().map(|p| p.name.as_str()).collect();
        let want: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
        report.missing_keys = want.difference(&have).map(|s| (*s).to_owned()).collect();
        report.unexpected_keys = have.difference(&want).map(|s| (*s).to_owned()).collect();
        report.hint = prefix_hint(&report.missing_keys, &report.unexpected_keys);
    }
    if opts.dry_run {
        return Ok(report);
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|source| ConvertError::Io {
        path: parent.to_path_buf(),
        source,
    })?;
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "converted".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|source| ConvertError::Io {
        path: tmp.clone(),
        source,
    })?;
    let all: u64 = tensors.iter().map(|p| out_nbytes(&p.t, opts.dtype)).sum();
    let written = std::sync::atomic::AtomicU64::new(0);
    let tick = |n: u64| {
        let now = written.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        if let Some(p) = &opts.progress {
            p(now, all);
        }
    };
    let result = (|| {
        let shards = shard(tensors, opts.max_shard_size, opts.dtype);
        // Flushed now or later (before the rename): flushing as we go overlaps it with the copy.
        let flush = opts.sync || output.exists();
        if shards.len() <= 1 {
            write_safetensors(
                cks,
                tensors,
                &tmp.join("model.safetensors"),
                opts.dtype,
                &tick,
                flush,
            )?;
        } else {
            // Shards are separate files, written in parallel: one file's writes serialize on
            // its inode, two files' do not (on 2 cores, 2 shards take the time of one).
            let n = shards.len();
            let files: Vec<String> = (1..=n)
                .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
                .collect();
            let jobs: Vec<(&Vec<Planned>, &String)> = shards.iter().zip(&files).collect();
            let failed = std::sync::atomic::AtomicBool::new(false);
            let results = ckpt_torch::par::map(&jobs, |(part, file)| {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(0); // another shard failed: the folder is discarded anyway
                }
                let r = write_safetensors(cks, part, &tmp.join(file), opts.dtype, &tick, flush);
                if r.is_err() {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                r
            });
            for r in results {
                r?;
            }
            let mut weight_map = serde_json::Map::new();
            let mut total: u64 = 0;
            for (part, file) in &jobs {
                for p in part.iter() {
                    weight_map.insert(p.name.clone(), json!(file));
                    total += out_nbytes(&p.t, opts.dtype);
                }
            }
            let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
            let p = tmp.join("model.safetensors.index.json");
            let mut text = serde_json::to_string_pretty(&index).map_err(|e| ConvertError::Io {
                path: p.clone(),
                source: e.into(),
            })?;
            text.push('\n');
            std::fs::write(&p, text).map_err(|source| ConvertError::Io {
                path: p.clone(),
                source,
            })?;
        }
        if opts.target == Target::HuggingFace
            && let Some(b) = &opts.base_model
        {
            let dt = opts
                .dtype
                .map(DType::name)
                .or_else(|| dominant_dtype(tensors));
            write_hf_files(b, &tmp, base_cfg, dt)?;
        }
        let replacing = output.exists();
        if opts.sync || replacing {
            // The old folder is removed right after the rename: the new one must be on disk
            // first, or a power loss in between would leave the user with neither.
            sync_folder(&tmp)?;
        }
        if replacing {
            // --force: the old folder goes only once the new one is complete.
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            std::fs::rename(output, &old).map_err(|source| ConvertError::Io {
                path: output.to_path_buf(),
                source,
            })?;
            std::fs::rename(&tmp, output).map_err(|source| ConvertError::Io {
                path: output.to_path_buf(),
                source,
            })?;
            sync_dir(parent)?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&tmp, output).map_err(|source| ConvertError::Io {
                path: output.to_path_buf(),
                source,
            })?;
            if opts.sync {
                sync_dir(parent)?;
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| report)
}

/// Flush every file of a freshly written (flat) folder and then the folder itself.
fn sync_folder(dir: &Path) -> Result<()> {
    let io = |path: &Path, source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    };
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let p = e.map_err(|e| io(dir, e))?.path();
        if p.is_file() {
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&p, e))?;
        }
    }
    sync_dir(dir)
}

/// Flush a folder's entries (a rename into it, a file created in it).
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|source| ConvertError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// A base model given as a folder, or a model id found in the local Hugging Face cache
/// (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`:
/// `models--org--name/snapshots/<revision>/`, the revision `refs/main` names when present).
/// Never the network.
pub fn resolve_base_model(spec: &str, relative_to: Option<&Path>) -> Option<PathBuf> {
    let direct = match relative_to {
        Some(d) => d.join(spec),
        None => PathBuf::from(spec),
    };
    if direct.join("config.json").is_file() {
        return Some(direct);
    }
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        })?;
    let repo = hub.join(format!("models--{}", spec.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
        let p = snapshots.join(rev.trim());
        if p.join("config.json").is_file() {
            return Some(p);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_between_output_and_base_names_is_pointed_out() {
        let v = |xs: &[&str]| xs.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        // A LightningModule's `model.` attribute in front of every name.
        let h = prefix_hint(
            &v(&[
                "transformer.wte.weight",
                "transformer.h.0.attn.c_attn.weight",
                "lm_head.weight",
            ]),
            &v(&[
                "model.transformer.wte.weight",
                "model.transformer.h.0.attn.c_attn.weight",
            ]),
        );
        assert_eq!(
            h.as_deref(),
            Some("2 of the 2 unexpected names match the base model's with --strip-prefix model.")
        );
        // The other way: the base wants `transformer.`.
        let h = prefix_hint(
            &v(&["transformer.wte.weight", "transformer.ln_f.weight"]),
            &v(&["wte.weight", "ln_f.weight", "extra.bias"]),
        );
        assert_eq!(
            h.as_deref(),
            Some("2 of the 2 missing names match the base model's with --add-prefix transformer.")
        );
        // Unrelated differences: nothing to say.
        assert_eq!(prefix_hint(&v(&["a.weight"]), &v(&["b.weight"])), None);
        assert_eq!(prefix_hint(&[], &v(&["b.weight"])), None);
    }

    #[test]
    fn names_lose_wrappers_and_prefixes() {
        let o = ConvertOptions {
            target: Target::Safetensors,
            base_model: None,
            key: None,
            strip_prefix: vec!["model.".into()],
            add_prefix: Some("x.".into()),
            force: false,
            sync: false,
            dry_run: false,
            max_shard_size: 5_000_000_000,
            dtype: None,
            progress: None,
        };
        assert_eq!(
            rename(
                "_fsdp_wrapped_module.model._fsdp_wrapped_module.fc.weight",
                &o
            ),
            "x.fc.weight"
        );
        assert_eq!(rename("module._orig_mod.fc.weight", &o), "x.fc.weight");
    }

    #[test]
    fn a_folder_with_config_is_a_base_model() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), "{}").unwrap();
        assert_eq!(
            resolve_base_model(d.path().to_str().unwrap(), None),
            Some(d.path().to_path_buf())
        );
        assert_eq!(resolve_base_model("config.json-less", Some(d.path())), None);
    }
}

#[cfg(test)]
mod flat_param_tests {
    use super::*;
    use ckpt_torch::synth::{SynthTensor, write_lightning_checkpoint};

    #[test]
    fn flattened_fsdp_parameters_fail_clearly_and_write_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("flat.pth");
        let t = vec![SynthTensor {
            name: "_fsdp_wrapped_module._flat_param".into(),
            dtype: DType::F32,
            shape: vec![64],
        }];
        write_lightning_checkpoint(&p, &t).unwrap();
        let out = d.path().join("out");
        let opts = ConvertOptions {
            target: Target::Safetensors,
            base_model: None,
            key: None,
            strip_prefix: vec![],
            add_prefix: None,
            force: false,
            sync: false,
            dry_run: false,
            max_shard_size: 5_000_000_000,
            dtype: None,
            progress: None,
        };
        let e = convert_file(&p, &out, &opts).unwrap_err();
        assert!(e.to_string().contains("flattened FSDP parameters"), "{e}");
        assert!(!out.exists());
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "something was written");
    }
}
