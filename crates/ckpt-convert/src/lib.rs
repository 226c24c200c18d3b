//! Exporters: a torch checkpoint (FSDP, DDP, `torch.compile`d, plain) into a Hugging Face
//! folder (`model.safetensors` + config and tokenizer from a base model) or a bare
//! `.safetensors` file — streaming tensor bytes from the source file, never loading the model.
//!
//! What happens to a checkpoint:
//! 1. its state dict is found (`--key`, else the rule `inspect` and the catalog share,
//!    [`ckpt_model::state_dict`]: the top level, `model`, `state_dict`, `model_state_dict`,
//!    `module`, …, else the largest mapping that is not an EMA copy);
//! 2. flattened FSDP parameters (`_flat_param`) stop the conversion: they cannot be split
//!    without FSDP's own metadata;
//! 3. names lose wrapper prefixes wherever they occur (`_fsdp_wrapped_module.`, `_fpw_module.`,
//!    `_checkpoint_wrapped_module.`, `_orig_mod.`, a leading `module.`), then explicit
//!    `--strip-prefix`/`--add-prefix`;
//! 4. tied weights (names viewing the same bytes of one storage, or an output head equal to
//!    the input embedding) are written once, under the name transformers keeps (`untie`);
//! 5. with a base model, the tensors must fit it (`check_fit`: names and shapes of its own
//!    weights, embedding and layer sizes from its config), or the file fails;
//! 6. tensors are written sorted by name into a temporary folder beside the target, which is
//!    renamed into place when complete.

mod cast;
mod dcp;

pub use dcp::convert_dcp;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use ckpt_model::state_dict::NotFound;
use ckpt_model::wrappers::strip_wrappers;
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

impl ConvertOptions {
    /// Plain safetensors output: no base model, no renaming, no fsync, no progress; shards
    /// above `max_shard_size` bytes, floating-point tensors cast to `dtype` when given.
    pub fn safetensors(max_shard_size: u64, dtype: Option<DType>) -> ConvertOptions {
        ConvertOptions {
            target: Target::Safetensors,
            base_model: None,
            key: None,
            strip_prefix: Vec::new(),
            add_prefix: None,
            force: false,
            sync: false,
            dry_run: false,
            max_shard_size,
            dtype,
            progress: None,
        }
    }
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
    #[error("{path}: not replaced, even with --force: {detail}")]
    NotReplaced { path: PathBuf, detail: String },
    #[error("{path}: base model: {detail}")]
    Base { path: PathBuf, detail: String },
    #[error("{path}: DCP checkpoint: {detail}")]
    Dcp { path: PathBuf, detail: String },
    /// The checkpoint is not the model the base folder describes: writing it would give a
    /// folder transformers loads with random or mismatched weights.
    #[error("{path}: does not fit the base model {base}: {detail}")]
    Misfit {
        path: PathBuf,
        base: PathBuf,
        detail: String,
    },
    /// What the tensors claim cannot be written: more bytes than a file can hold, or views
    /// that repeat their storage into far more bytes than the checkpoint has.
    #[error("{path}: {detail}")]
    Size { path: PathBuf, detail: String },
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

/// The state dict: (dotted key, entries as (name, value node)), by the rule `inspect` and the
/// catalog use too ([`ckpt_model::state_dict`]). A TorchScript archive's entries are what
/// `torch.jit.load(f).state_dict()` returns, or an error saying why ckpt cannot name them.
fn find_state_dict(ck: &Checkpoint, key: Option<&str>) -> Result<(String, Vec<(String, NodeId)>)> {
    if ck.torchscript.is_some() && key.is_none() {
        return ckpt_torch::torchscript::export_state_dict(ck)
            .map(|e| (String::new(), e))
            .map_err(|detail| ConvertError::TorchScript {
                path: ck.path.clone(),
                detail,
            });
    }
    match ckpt_model::locate(&ck.doc, key) {
        Ok(l) => {
            let entries = l.entries(&ck.doc);
            Ok((l.path, entries))
        }
        Err(NotFound::Key(key)) => Err(ConvertError::NoKey {
            path: ck.path.clone(),
            key,
        }),
        Err(NotFound::NoStateDict) => Err(ConvertError::NoStateDict {
            path: ck.path.clone(),
        }),
    }
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

/// The most a base model's JSON file (config, weight index) may hold: the index of a large
/// sharded model is a few MB; anything bigger is not one, and is not read into memory.
const BASE_JSON_LIMIT: u64 = 64 << 20;

/// A small text file of the base model folder: regular files only (a FIFO there would block
/// forever), at most `limit` bytes.
fn read_base_text(p: &Path, limit: u64) -> Option<String> {
    ckpt_torch::open::read_small_text(p, limit).ok()
}

fn read_base_config(base: Option<&Path>) -> Option<Value> {
    let text = read_base_text(&base?.join("config.json"), BASE_JSON_LIMIT)?;
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
    let tied = untie(&mut out, cks, tie);
    Ok((out.into_values().collect(), tied))
}

/// Whether transformers re-ties this name to another on load (the names its models list in
/// `_tied_weights_keys`: output embeddings, BERT/RoBERTa decoder weights and biases, T5/BART
/// encoder and decoder token embeddings tied to `shared`): of a tied group, the name left out.
fn is_tied_alias(name: &str) -> bool {
    let ends = |s: &str| name == s || name.ends_with(&format!(".{s}"));
    ends("lm_head.weight")
        || ends("predictions.decoder.weight")
        || ends("predictions.decoder.bias")
        || ends("lm_head.decoder.weight")
        || ends("lm_head.decoder.bias")
        || ends("encoder.embed_tokens.weight")
        || ends("decoder.embed_tokens.weight")
}

/// Whether this is an input token embedding (GPT-2's `wte`, Llama's `embed_tokens`, BERT's
/// `word_embeddings`, T5's `shared`, …).
fn is_embedding(name: &str) -> bool {
    EMBEDDINGS.iter().any(|e| name.ends_with(e))
}

/// Which name of a tied group is written: not one transformers re-ties (`is_tied_alias`),
/// then an input embedding (the shortest path: T5's `shared.weight` before
/// `encoder.embed_tokens.weight`), then — as `safetensors.torch.save_model` decides — the
/// first in sorted order. The smallest key is kept.
fn keep_rank(name: &str) -> (bool, bool, usize, &str) {
    let emb = is_embedding(name);
    let depth = if emb { name.split('.').count() } else { 0 };
    (is_tied_alias(name), !emb, depth, name)
}

/// Tied weights are written once. Names that view the same bytes of one storage (same
/// storage, offset, shape, strides and dtype: `model.state_dict()` of a model with tied
/// parameters) are one tensor, kept under the name `keep_rank` picks; so is a tied-alias
/// weight (an `lm_head.weight`, a BERT decoder) whose bytes equal an input embedding's, as
/// FSDP full state dicts and DCP saves store it (one clone per name). With `tie` false (the
/// base config says `tie_word_embeddings: false`) groups that hold an input embedding are
/// written in full: that model has two matrices. Returns the names left out, sorted.
fn untie(out: &mut BTreeMap<String, Planned>, cks: &[Checkpoint], tie: bool) -> Vec<String> {
    let mut tied = Vec::new();
    let mut views: BTreeMap<(usize, ViewKey), Vec<&str>> = BTreeMap::new();
    for (name, p) in out.iter() {
        if let From::One(src) = p.from
            && let Some(k) = view_key(&p.t)
        {
            views.entry((src, k)).or_default().push(name);
        }
    }
    for names in views.values().filter(|g| g.len() > 1) {
        if !tie && names.iter().any(|n| is_embedding(n)) {
            continue;
        }
        let keep = names.iter().min_by_key(|n| keep_rank(n)).copied();
        tied.extend(
            names
                .iter()
                .filter(|n| Some(**n) != keep)
                .map(|n| (*n).to_owned()),
        );
    }
    for n in &tied {
        out.remove(n);
    }
    if tie {
        // Copies: an alias weight equal to an input embedding, a decoder bias equal to its
        // head's `bias`. A name is only ever dropped for one `keep_rank` prefers, so the best
        // of a group of equal copies stays.
        let embeddings: Vec<String> = out.keys().filter(|n| is_embedding(n)).cloned().collect();
        let mut copies: Vec<String> = Vec::new();
        for (name, p) in out.iter() {
            if !is_tied_alias(name) {
                continue;
            }
            let better = |other: &str| {
                keep_rank(other) < keep_rank(name) && !copies.iter().any(|c| c == other)
            };
            let same = if let Some(head) = name.strip_suffix("decoder.bias") {
                let b = format!("{head}bias");
                better(&b) && out.get(&b).is_some_and(|b| same_bytes(cks, p, b))
            } else {
                embeddings
                    .iter()
                    .any(|e| better(e) && out.get(e).is_some_and(|emb| same_bytes(cks, p, emb)))
            };
            if same {
                copies.push(name.clone());
            }
        }
        for n in &copies {
            out.remove(n);
        }
        tied.extend(copies);
    }
    tied.sort();
    tied
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
    ckpt_torch::bug::failpoint(path);
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

/// The base folder's own weights: each name with its shape when the file holding it could be
/// read (an index whose shards are absent gives names only). `None` when it has none.
fn base_weights(base: &Path) -> Option<BTreeMap<String, Option<Vec<u64>>>> {
    // Names and shapes of the tensors at the top level of a weights file.
    let read = |p: &Path| -> Option<Vec<(String, Vec<u64>)>> {
        let ck = Checkpoint::open(p).ok()?;
        let items = ck.doc.dict(ck.doc.root())?;
        Some(
            items
                .iter()
                .filter_map(|(k, v)| match ck.doc.view(*v) {
                    View::Tensor(t) => {
                        Some((ckpt_torch::pyrepr::key_str(&ck.doc, *k), t.shape.clone()))
                    }
                    _ => None,
                })
                .collect(),
        )
    };
    for idx in [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ] {
        if let Some(text) = read_base_text(&base.join(idx), BASE_JSON_LIMIT)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && let Some(m) = v.get("weight_map").and_then(Value::as_object)
        {
            let mut names: BTreeMap<String, Option<Vec<u64>>> =
                m.keys().map(|k| (k.clone(), None)).collect();
            let shards: std::collections::BTreeSet<&str> =
                m.values().filter_map(Value::as_str).collect();
            for shard in shards {
                // Only a plain file name inside the folder.
                if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
                    continue;
                }
                for (n, shape) in read(&base.join(shard)).unwrap_or_default() {
                    if let Some(slot) = names.get_mut(&n) {
                        *slot = Some(shape);
                    }
                }
            }
            return Some(names);
        }
    }
    for file in ["model.safetensors", "pytorch_model.bin"] {
        let p = base.join(file);
        if p.is_file() {
            return read(&p).map(|v| v.into_iter().map(|(n, s)| (n, Some(s))).collect());
        }
    }
    None
}

/// How a known `model_type` names its input embedding and its layers, and which config keys
/// give the sizes the tensors must have.
struct Arch {
    /// The embedding's name ends with this; its shape is [vocab_size, hidden].
    embedding: &'static str,
    /// Other names it may have in a checkpoint that transformers still loads (T5 without
    /// `shared.weight`: its encoder's `embed_tokens`, which it ties to `shared`).
    also: &'static [&'static str],
    /// Config keys for the embedding width, the first present wins.
    hidden: &'static [&'static str],
    /// Layers are `…<segment>.<N>.…`; `None`: not checked (T5 counts encoder and decoder
    /// blocks separately).
    layers: Option<(&'static str, &'static [&'static str])>,
}

fn arch(model_type: &str) -> Option<Arch> {
    const LAYERS: Option<(&str, &[&str])> = Some(("layers", &["num_hidden_layers"]));
    Some(match model_type {
        "gpt2" => Arch {
            embedding: "wte.weight",
            also: &[],
            hidden: &["n_embd", "hidden_size"],
            layers: Some(("h", &["n_layer", "num_hidden_layers"])),
        },
        "llama" | "mistral" | "mixtral" | "qwen2" | "qwen3" | "gemma" | "gemma2" | "phi"
        | "phi3" => Arch {
            embedding: "embed_tokens.weight",
            also: &[],
            hidden: &["hidden_size"],
            layers: LAYERS,
        },
        "opt" => Arch {
            embedding: "embed_tokens.weight",
            also: &[],
            hidden: &["word_embed_proj_dim", "hidden_size"],
            layers: LAYERS,
        },
        "gpt_neox" => Arch {
            embedding: "embed_in.weight",
            also: &[],
            hidden: &["hidden_size"],
            layers: LAYERS,
        },
        "bert" | "roberta" => Arch {
            embedding: "word_embeddings.weight",
            also: &[],
            hidden: &["hidden_size"],
            layers: Some(("layer", &["num_hidden_layers"])),
        },
        "t5" => Arch {
            embedding: "shared.weight",
            also: &["encoder.embed_tokens.weight"],
            hidden: &["d_model"],
            layers: None,
        },
        _ => return None,
    })
}

/// The model types whose embedding name `name` has, to say what a checkpoint looks like.
fn looks_like(name: &str) -> Option<&'static str> {
    [
        ("wte.weight", "gpt2"),
        ("word_embeddings.weight", "bert"),
        ("embed_in.weight", "gpt_neox"),
        ("shared.weight", "t5"),
        ("embed_tokens.weight", "llama"),
    ]
    .into_iter()
    .find(|(e, _)| name.ends_with(e))
    .map(|(_, t)| t)
}

/// Reasons the tensors cannot be the model `cfg` describes, from what a config can check for
/// a known `model_type`: the input embedding is there under that architecture's name, its
/// shape is [vocab_size, hidden size], and the layers counted in the names are as many as the
/// config says. Nothing is checked for other model types.
fn config_misfits(cfg: &Value, tensors: &[Planned], tied: &[String]) -> Vec<String> {
    let mut why = Vec::new();
    let Some(mt) = cfg.get("model_type").and_then(Value::as_str) else {
        return why;
    };
    let Some(a) = arch(mt) else {
        return why;
    };
    let names = || {
        tensors
            .iter()
            .map(|p| (p.name.as_str(), Some(&p.t.shape)))
            .chain(tied.iter().map(|n| (n.as_str(), None)))
    };
    let emb = tensors
        .iter()
        .find(|p| p.name.ends_with(a.embedding) && !is_tied_alias(&p.name))
        .or_else(|| {
            tensors
                .iter()
                .find(|p| a.also.iter().any(|e| p.name.ends_with(e)))
        });
    match emb {
        None => {
            let other = names().find_map(|(n, _)| looks_like(n).map(|t| (n, t)));
            why.push(match other {
                Some((n, t)) if t != mt => format!(
                    "config.json says model_type {mt:?} but no tensor is named *{}; its input embedding is {n}, as {t} names it",
                    a.embedding
                ),
                _ => format!(
                    "config.json says model_type {mt:?} but no tensor is named *{}",
                    a.embedding
                ),
            });
        }
        Some(p) => {
            let want_vocab = cfg.get("vocab_size").and_then(Value::as_u64);
            let want_hidden = a
                .hidden
                .iter()
                .find_map(|k| cfg.get(*k).and_then(Value::as_u64).map(|v| (*k, v)));
            let shape = &p.t.shape;
            if let (Some(v), Some(rows)) = (want_vocab, shape.first())
                && *rows != v
            {
                why.push(format!(
                    "{} has {rows} rows but config.json says vocab_size {v}",
                    p.name
                ));
            }
            if let (Some((k, h)), Some(cols)) = (want_hidden, shape.get(1))
                && *cols != h
            {
                why.push(format!(
                    "{} is {cols} wide but config.json says {k} {h}",
                    p.name
                ));
            }
        }
    }
    if let Some((segment, keys)) = a.layers
        && let Some((k, want)) = keys
            .iter()
            .find_map(|k| cfg.get(*k).and_then(Value::as_u64).map(|v| (*k, v)))
    {
        let seg = format!("{segment}.");
        let mut count: Option<u64> = None;
        for (n, _) in names() {
            for (i, _) in n.match_indices(&seg) {
                if i > 0 && n.as_bytes().get(i - 1) != Some(&b'.') {
                    continue;
                }
                let rest = n.get(i + seg.len()..).unwrap_or("");
                if let Some(idx) = rest.split('.').next().and_then(|x| x.parse::<u64>().ok()) {
                    count = Some(count.unwrap_or(0).max(idx.saturating_add(1)));
                }
            }
        }
        match count {
            Some(c) if c != want => why.push(format!(
                "the checkpoint has {c} layers (…{seg}N.…) but config.json says {k} {want}"
            )),
            None if emb.is_some() => why.push(format!(
                "config.json says {k} {want} but no tensor name has …{seg}N.…"
            )),
            _ => {}
        }
    }
    why
}

/// Compare the planned tensors with the base model: its config (`config_misfits`) and, when
/// the folder has weights of its own, their names and shapes. Ok: the names the base has that
/// the output lacks, and the reverse (tied names, left out on purpose, count as present).
/// Err: why the checkpoint does not fit — no name in common, a common name with another shape,
/// or what the config contradicts.
#[allow(clippy::type_complexity)]
fn check_fit(
    base: &Path,
    cfg: Option<&Value>,
    tensors: &[Planned],
    tied: &[String],
) -> std::result::Result<(Vec<String>, Vec<String>, Option<String>), String> {
    let mut why = cfg.map_or_else(Vec::new, |c| config_misfits(c, tensors, tied));
    let (mut missing, mut unexpected, mut hint) = (Vec::new(), Vec::new(), None);
    if let Some(want) = base_weights(base) {
        let have: BTreeMap<&str, &[u64]> = tensors
            .iter()
            .map(|p| (p.name.as_str(), p.t.shape.as_slice()))
            .collect();
        missing = want
            .keys()
            .filter(|n| !have.contains_key(n.as_str()) && !tied.contains(n))
            .cloned()
            .collect();
        unexpected = have
            .keys()
            .filter(|n| !want.contains_key(**n))
            .map(|n| (*n).to_owned())
            .collect();
        hint = prefix_hint(&missing, &unexpected);
        let common = have.keys().filter(|n| want.contains_key(**n)).count();
        if common == 0 && !have.is_empty() {
            let first = |v: &[String]| v.iter().take(2).cloned().collect::<Vec<_>>().join(", ");
            why.insert(
                0,
                format!(
                    "none of its {} tensor names is among the base model's {} (it has {}, …; the base model has {}, …){}",
                    have.len(),
                    want.len(),
                    first(&unexpected),
                    first(&missing),
                    hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default()
                ),
            );
        }
        let mut differ = Vec::new();
        for (n, shape) in &have {
            if let Some(Some(w)) = want.get(*n)
                && w.as_slice() != *shape
            {
                differ.push(format!("{n} is {shape:?} here, {w:?} in the base model"));
            }
        }
        if !differ.is_empty() {
            let n = differ.len();
            let more = if n > 3 { ", …" } else { "" };
            differ.truncate(3);
            why.push(format!(
                "{n} tensor{} differ in shape from the base model's: {}{more}",
                if n == 1 { "" } else { "s" },
                differ.join("; ")
            ));
        }
    }
    if why.is_empty() {
        Ok((missing, unexpected, hint))
    } else {
        Err(why.join("; "))
    }
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
    if output.symlink_metadata().is_ok() {
        if !opts.force {
            return Err(ConvertError::Exists {
                path: output.to_path_buf(),
            });
        }
        replaceable(output)?;
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
        // Bare safetensors: the base model is only compared with, when it has a config.
        (Target::Safetensors, Some(b)) => read_base_config(Some(b)),
        (Target::Safetensors, None) => None,
    };
    let tie = base_cfg
        .as_ref()
        .and_then(|c| c.get("tie_word_embeddings"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok((base_cfg, tie))
}

/// Whether `--force` may replace `output`: only a folder holding nothing but what a conversion
/// writes (weights, index, config, generation config, tokenizer files). Anything else — a
/// file, a symlink, a folder with a checkpoint or a DCP save in it (`--output-dir` pointed at
/// the input's own folder) — is the user's, and `--force` does not reach it.
fn replaceable(output: &Path) -> Result<()> {
    let refuse = |detail: String| ConvertError::NotReplaced {
        path: output.to_path_buf(),
        detail,
    };
    let meta = output
        .symlink_metadata()
        .map_err(|source| ConvertError::Io {
            path: output.to_path_buf(),
            source,
        })?;
    if !meta.is_dir() {
        return Err(refuse(
            "it is not a folder; only a folder written by ckpt convert is replaced".into(),
        ));
    }
    let entries = std::fs::read_dir(output).map_err(|source| ConvertError::Io {
        path: output.to_path_buf(),
        source,
    })?;
    for e in entries {
        let e = e.map_err(|source| ConvertError::Io {
            path: output.to_path_buf(),
            source,
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = e.file_type().is_ok_and(|t| t.is_file())
            && (name == "model.safetensors"
                || name == "model.safetensors.index.json"
                || name == "config.json"
                || BASE_FILES.contains(&name.as_str())
                || (name.starts_with("model-") && name.ends_with(".safetensors")));
        if !ours {
            return Err(refuse(format!(
                "it holds {name}, which ckpt convert does not write"
            )));
        }
    }
    Ok(())
}

/// The wrapper prefixes `rename` removes from these names, in the order first seen.
fn stripped_prefixes<'n>(names: impl Iterator<Item = &'n str>) -> Vec<String> {
    let mut stripped: Vec<String> = Vec::new();
    for n in names {
        ckpt_model::wrappers::strip_wrappers_noting(n, &mut |p| {
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

/// Bytes a conversion may write beyond those its tensors' storages hold. A view saved with
/// its storage is written in full, and an expanded one (stride 0: `x.expand(…)`) repeats its
/// storage; real checkpoints hold a few small ones (`position_ids`), a crafted file can claim
/// terabytes from a few bytes.
const MAX_REPEATED_BYTES: u64 = 1 << 30;

/// Refuse tensors whose output size overflows, or whose views repeat their storage into more
/// than `MAX_REPEATED_BYTES` in all: checked before anything is written.
fn check_sizes(tensors: &[Planned], path: &Path, cast: Option<DType>) -> Result<()> {
    let err = |detail: String| ConvertError::Size {
        path: path.to_path_buf(),
        detail,
    };
    let mut total: u64 = 0;
    let mut repeated: u64 = 0;
    for p in tensors {
        let n =
            p.t.shape
                .iter()
                .try_fold(1u64, |a, d| a.checked_mul(*d))
                .and_then(|n| n.checked_mul(cast::target_dtype(p.t.dtype, cast).size()))
                .ok_or_else(|| err(format!("{}: shape {:?} is too large", p.name, p.t.shape)))?;
        total = total
            .checked_add(n)
            .ok_or_else(|| err("the tensors' sizes add up to more than 2^64 bytes".into()))?;
        let views: Vec<&TensorRef> = match &p.from {
            From::One(_) => vec![&p.t],
            From::Chunks(chunks) => chunks.iter().map(|c| &c.t).collect(),
        };
        for t in views {
            let span = ckpt_torch::tensor_span(t, u64::MAX).map_or(0, |(_, len)| len);
            repeated = repeated.saturating_add(t.nbytes().saturating_sub(span));
        }
        if repeated > MAX_REPEATED_BYTES {
            return Err(err(format!(
                "{}: views repeat their storage into {repeated} bytes more than the checkpoint holds (at most {MAX_REPEATED_BYTES} are written)",
                p.name
            )));
        }
    }
    Ok(())
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
    check_sizes(&tensors, src.input, opts.dtype)?;
    let (missing_keys, unexpected_keys, hint) = match &opts.base_model {
        Some(b) => {
            check_fit(b, base_cfg, &tensors, &tied).map_err(|detail| ConvertError::Misfit {
                path: src.input.to_path_buf(),
                base: b.clone(),
                detail,
            })?
        }
        None => (Vec::new(), Vec::new(), None),
    };
    let report = Converted {
        input: src.input.display().to_string(),
        output: output.display().to_string(),
        state_dict_key: src.state_dict_key,
        tensors: tensors.len(),
        bytes: 0, // filled by `emit` (it depends on --dtype)
        tied,
        stripped_prefixes: stripped,
        other_keys: src.other,
        missing_keys,
        unexpected_keys,
        hint,
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
    // A fresh temporary folder of our own: whatever already has such a name is left alone.
    let tmp = fresh_name(parent, &name, "tmp", |p| std::fs::create_dir(p)).map_err(|source| {
        ConvertError::Io {
            path: output.to_path_buf(),
            source,
        }
    })?;
    // Removed on every way out but success — including a panic unwinding through here (a bug,
    // caught and reported per checkpoint by the binary): no `.name.tmp-PID` folder is left.
    let mut guard = RemoveDirOnDrop {
        path: &tmp,
        armed: true,
    };
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
            // (rename(2) would replace an empty folder of that name: the name must be free.)
            let old = fresh_name(parent, &name, "old", |p| {
                if p.symlink_metadata().is_ok() {
                    return Err(std::io::ErrorKind::AlreadyExists.into());
                }
                std::fs::rename(output, p)
            })
            .map_err(|source| ConvertError::Io {
                path: output.to_path_buf(),
                source,
            })?;
            if let Err(source) = std::fs::rename(&tmp, output) {
                // Put the old folder back: the user never ends up with neither.
                let _ = std::fs::rename(&old, output);
                return Err(ConvertError::Io {
                    path: output.to_path_buf(),
                    source,
                });
            }
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
    match result {
        Ok(()) => {
            guard.armed = false;
            Ok(report)
        }
        Err(e) => Err(relabel(e, &tmp, output)),
    }
}

/// Removes a temporary folder of ours when dropped, unless disarmed.
struct RemoveDirOnDrop<'a> {
    path: &'a Path,
    armed: bool,
}

impl Drop for RemoveDirOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(self.path);
        }
    }
}

/// `parent/.{name}.{what}-{pid}` (then `-{pid}-1`, `-{pid}-2` …): the first name `make`
/// succeeds with, skipping names that exist already.
fn fresh_name(
    parent: &Path,
    name: &str,
    what: &str,
    mut make: impl FnMut(&Path) -> std::io::Result<()>,
) -> std::io::Result<PathBuf> {
    let pid = std::process::id();
    for n in 0..1000u32 {
        let p = if n == 0 {
            parent.join(format!(".{name}.{what}-{pid}"))
        } else {
            parent.join(format!(".{name}.{what}-{pid}-{n}"))
        };
        match make(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::ErrorKind::AlreadyExists.into())
}

/// An error met while writing the temporary folder, naming the output the user asked for
/// instead (`out/epoch-001/model.safetensors`, not `out/.epoch-001.tmp-4242/…`).
fn relabel(e: ConvertError, tmp: &Path, output: &Path) -> ConvertError {
    let fix = |p: PathBuf| match p.strip_prefix(tmp) {
        Ok(rest) if rest.as_os_str().is_empty() => output.to_path_buf(),
        Ok(rest) => output.join(rest),
        Err(_) => p,
    };
    use ckpt_torch::Error as T;
    match e {
        ConvertError::Io { path, source } => ConvertError::Io {
            path: fix(path),
            source,
        },
        ConvertError::Read(T::Output { path, detail }) => ConvertError::Read(T::Output {
            path: fix(path),
            detail,
        }),
        ConvertError::Read(T::Io { path, source }) => ConvertError::Read(T::Io {
            path: fix(path),
            source,
        }),
        ConvertError::Read(T::Tensor { path, at, detail }) => ConvertError::Read(T::Tensor {
            path: fix(path),
            at,
            detail,
        }),
        ConvertError::Dcp { path, detail } => ConvertError::Dcp {
            path: fix(path),
            detail,
        },
        other => other,
    }
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

/// The Hugging Face hub cache, found as `huggingface_hub` finds it: `$HF_HUB_CACHE`, else
/// (its older name) `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. Empty variables count as
/// unset.
pub fn hub_cache() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HF_HUB_CACHE")
        .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
}

/// A base model given as a folder, or a model id found in the local Hugging Face cache
/// (`hub_cache`: `models--org--name/snapshots/<revision>/`, the revision `refs/main` names
/// when present).
/// Never the network.
pub fn resolve_base_model(spec: &str, relative_to: Option<&Path>) -> Option<PathBuf> {
    let direct = match relative_to {
        Some(d) => d.join(spec),
        None => PathBuf::from(spec),
    };
    if direct.join("config.json").is_file() {
        return Some(direct);
    }
    let hub = hub_cache()?;
    let repo = hub.join(format!("models--{}", spec.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Some(rev) = read_base_text(&repo.join("refs/main"), 4096) {
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
    fn of_a_tied_group_the_name_transformers_keeps_is_written() {
        fn keep<'a>(names: &[&'a str]) -> &'a str {
            names.iter().copied().min_by_key(|n| keep_rank(n)).unwrap()
        }
        // GPT-2, BERT (weight and bias), RoBERTa, OPT, T5, BART: transformers'
        // `_tied_weights_keys` name the other members.
        assert_eq!(
            keep(&["lm_head.weight", "transformer.wte.weight"]),
            "transformer.wte.weight"
        );
        assert_eq!(
            keep(&[
                "cls.predictions.decoder.weight",
                "bert.embeddings.word_embeddings.weight"
            ]),
            "bert.embeddings.word_embeddings.weight"
        );
        assert_eq!(
            keep(&["cls.predictions.decoder.bias", "cls.predictions.bias"]),
            "cls.predictions.bias"
        );
        assert_eq!(
            keep(&["lm_head.decoder.bias", "lm_head.bias"]),
            "lm_head.bias"
        );
        assert_eq!(
            keep(&["lm_head.weight", "model.decoder.embed_tokens.weight"]),
            "model.decoder.embed_tokens.weight"
        );
        assert_eq!(
            keep(&[
                "decoder.embed_tokens.weight",
                "encoder.embed_tokens.weight",
                "lm_head.weight",
                "shared.weight"
            ]),
            "shared.weight"
        );
        assert_eq!(
            keep(&[
                "model.decoder.embed_tokens.weight",
                "model.encoder.embed_tokens.weight",
                "model.shared.weight"
            ]),
            "model.shared.weight"
        );
        // Names no model lists: the first in sorted order, as safetensors' save_model keeps.
        assert_eq!(keep(&["head.weight", "emb.weight"]), "emb.weight");
        assert_eq!(keep(&["z.weight", "a.b.c.weight"]), "a.b.c.weight");
    }

    fn planned(name: &str, shape: &[u64]) -> Planned {
        Planned {
            name: name.to_owned(),
            t: TensorRef {
                dtype: DType::F32,
                shape: shape.to_vec(),
                stride: vec![1; shape.len()],
                offset: 0,
                storage: None,
                requires_grad: false,
                kind: ckpt_torch::TensorKind::Tensor,
            },
            from: From::Chunks(Vec::new()),
        }
    }

    #[test]
    fn a_config_is_checked_for_the_architectures_it_names() {
        let llama = json!({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
                           "num_hidden_layers": 2});
        let mut t = vec![
            planned("model.embed_tokens.weight", &[10, 8]),
            planned("model.layers.0.mlp.up_proj.weight", &[16, 8]),
            planned("model.layers.1.mlp.up_proj.weight", &[16, 8]),
            planned("lm_head.weight", &[10, 8]),
        ];
        assert!(config_misfits(&llama, &t, &[]).is_empty());
        t.push(planned("model.layers.2.mlp.up_proj.weight", &[16, 8]));
        assert_eq!(
            config_misfits(&llama, &t, &[]),
            ["the checkpoint has 3 layers (…layers.N.…) but config.json says num_hidden_layers 2"]
        );
        // An `lm_head.weight` is not the input embedding, even when nothing else is.
        let heads = vec![planned("lm_head.weight", &[10, 8])];
        assert!(config_misfits(&llama, &heads, &[])[0].contains("no tensor is named"));
        // T5 without `shared.weight`: its encoder's token embedding stands in.
        let t5 = json!({"model_type": "t5", "vocab_size": 12, "d_model": 4});
        let t = vec![
            planned("encoder.embed_tokens.weight", &[12, 4]),
            planned("encoder.block.0.layer.0.SelfAttention.q.weight", &[4, 4]),
        ];
        assert!(config_misfits(&t5, &t, &[]).is_empty());
        let t = vec![planned("encoder.embed_tokens.weight", &[12, 6])];
        assert_eq!(
            config_misfits(&t5, &t, &[]),
            ["encoder.embed_tokens.weight is 6 wide but config.json says d_model 4"]
        );
        // Unknown model types: nothing is checked.
        let other = json!({"model_type": "mamba", "vocab_size": 1});
        assert!(config_misfits(&other, &t, &[]).is_empty());
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
