//! One checkpoint in depth: `GET /api/detail` (what `ckpt inspect`, `ckpt scan` and
//! `ckpt hash` print for it, and its state dict's tensors) and `GET /api/tensor` (one
//! tensor's leading values, the only place the server reads tensor data).
//!
//! - The values are the commands' own (`crate::inspect::item`, `crate::scan::records`,
//!   `crate::identity::hash_report`), so the page and the CLI cannot disagree.
//! - Each is computed on request, on the blocking pool, with at most [`HEAVY`] at once: a
//!   page of many tabs cannot starve the list endpoints of the event loop, nor make the
//!   server open hundreds of large files together. Nothing is cached across rebuilds.
//! - A part that fails (an unreadable or hostile file) is `{"error": …}` on its own; a panic
//!   in one is caught and reported the same way: the server never dies on a file.
//! - A `path=` is resolved by [`lookup`], the rule `/api/checkpoint` uses: only a catalog
//!   entry under the served roots is ever opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ckpt_catalog::CatalogEntry;
use ckpt_identity::HashOptions;
use ckpt_torch::scan::FileVerdict;
use ckpt_torch::{ByteOrder, Checkpoint, DType, NodeId, TensorRef, View};
use serde_json::{Value, json};

use super::{App, Snapshot, current, error};

/// Detail, tensor and compare computations running at once; more wait their turn.
const HEAVY: usize = 4;

/// `/api/tensor` reads this many bytes of a tensor's data unless `max_bytes` says otherwise…
const DEFAULT_TENSOR_BYTES: u64 = 64 << 10;
/// …and never more than this.
const MAX_TENSOR_BYTES: u64 = 16 << 20;

/// What the in-depth endpoints share: the bound on their concurrency and, with
/// `--allow-writes`, the pending write plans.
pub(super) struct Deep {
    heavy: Arc<tokio::sync::Semaphore>,
    pub(super) writes: Option<super::writes::Writes>,
}

impl Deep {
    pub(super) fn new(allow_writes: bool) -> Deep {
        Deep {
            heavy: Arc::new(tokio::sync::Semaphore::new(HEAVY)),
            writes: allow_writes.then(super::writes::Writes::default),
        }
    }
}

/// An answer that is an error: its status and its one line (`{"error": …}`). Small, so that
/// the helpers below can return it by value.
pub(super) struct Fail(pub(super) StatusCode, pub(super) String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn bad_request(msg: String) -> Fail {
    Fail(StatusCode::BAD_REQUEST, msg)
}

/// A query's parameters as (name, value) pairs, or the 400 a malformed query gets.
pub(super) type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The values of a query's parameters, by name, in order; a name not in `known` is a 400
/// (a typo must not silently do something else). `token` (the access token) is allowed
/// everywhere.
pub(super) fn params(pairs: Pairs, known: &[&str]) -> Result<Vec<(String, String)>, Fail> {
    let Query(pairs) = pairs.map_err(|e| bad_request(e.body_text()))?;
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        if k == "token" {
            continue;
        }
        if !known.contains(&k.as_str()) {
            return Err(bad_request(format!(
                "{k:?}: unknown parameter ({})",
                known.join(", ")
            )));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// The one value of parameter `name`: a 400 when it is missing, empty, or given twice.
pub(super) fn one<'a>(p: &'a [(String, String)], name: &str) -> Result<&'a str, Fail> {
    let mut values = p.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match (values.next(), values.next()) {
        (Some(v), None) if !v.is_empty() => Ok(v),
        (Some(_), Some(_)) => Err(bad_request(format!("{name}=: given more than once"))),
        _ => Err(bad_request(format!("{name}=: required"))),
    }
}

/// The value of an optional parameter given at most once.
pub(super) fn optional<'a>(p: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, Fail> {
    if p.iter().any(|(k, _)| k == name) {
        one(p, name).map(Some)
    } else {
        Ok(None)
    }
}

/// The catalog entry a `path=` names: the path exactly as the catalog prints it, or any
/// other spelling that resolves (`..`, symlinks) to an entry's file under a served root.
/// Only resolved, never opened; anything else is a 404.
pub(super) fn lookup(app: &App, snap: &Snapshot, path: &str) -> Result<CatalogEntry, Fail> {
    super::locate(app, snap, path)
        .map(|i| snap.entries[i].clone())
        .map_err(|(status, msg)| Fail(status, msg))
}

/// Run `f` on the blocking pool once one of the [`HEAVY`] slots is free. The slot goes with
/// the work, not with the request: a client that hangs up does not free it while `f` still
/// runs. A panic in `f` is a bug in ckpt: a 500 naming it, and the server goes on.
pub(super) async fn heavy<T: Send + 'static>(
    app: &App,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Fail> {
    let bug = |what: String| {
        Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("this is a bug in ckpt: {what}"),
        )
    };
    let slot = app
        .deep
        .heavy
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| bug(e.to_string()))?;
    let work = move || {
        let out = ckpt_torch::bug::catch(f);
        drop(slot);
        out
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => Err(bug(panic.to_string())),
        Err(e) => Err(bug(e.to_string())),
    }
}

/// `GET /api/detail?path=` → `{"entry", "inspect", "scan", "identity", "tensors"}`.
pub(super) async fn detail(State(app): State<Arc<App>>, pairs: Pairs) -> Result<Response, Fail> {
    let p = params(pairs, &["path"])?;
    let entry = lookup(&app, &current(&app), one(&p, "path")?)?;
    let file = entry.path.clone();
    let roots = app.real_roots.clone();
    let parts = heavy(&app, move || parts(Path::new(&file), &roots)).await?;
    let mut out = serde_json::Map::new();
    out.insert("entry".into(), entry.to_value());
    out.extend(parts);
    Ok(Json(Value::Object(out)).into_response())
}

/// One part of the detail: its value, or `{"error": …}` (a panic included).
fn part(f: impl FnOnce() -> Result<Value, String>) -> Value {
    match ckpt_torch::bug::catch(f) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => json!({ "error": e }),
        Err(panic) => json!({ "error": format!("this is a bug in ckpt: {panic}") }),
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| e.to_string())
}

/// The parts of `/api/detail` past the entry, each computed by the command that prints it.
fn parts(path: &Path, roots: &[PathBuf]) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert(
        "inspect".into(),
        part(|| {
            crate::inspect::item(path)
                .map_err(|e| e.to_string())
                .and_then(|i| to_json(&i))
        }),
    );
    out.insert("scan".into(), part(|| scan_value(path, roots)));
    out.insert(
        "identity".into(),
        part(|| {
            crate::identity::hash_report(path, &HashOptions::default())
                .map_err(|e| crate::one_line(&e))
                .and_then(|r| to_json(&r))
        }),
    );
    out.insert("tensors".into(), part(|| tensor_list(path)));
    out
}

/// `{"verdict": the worst, "files": ckpt scan --format json's records}`: one record for a
/// file, one per file of a DCP folder (a file in it that resolves outside the served roots
/// is an `error` record, not read).
fn scan_value(path: &Path, roots: &[PathBuf]) -> Result<Value, String> {
    let records = crate::scan::records(path, Some(roots));
    let worst = records
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(FileVerdict::NoPickle);
    Ok(json!({ "verdict": worst, "files": to_json(&records)? }))
}

/// The state dict's entries (`name` as `model.state_dict()` names them), by the rule
/// `inspect`, the catalog and `convert` share; a TorchScript archive's as `torch.jit.load`'s
/// `state_dict()` names them.
fn state_dict(ck: &Checkpoint) -> Result<(String, Vec<(String, NodeId)>), String> {
    if ck.torchscript.is_some() {
        return ckpt_torch::torchscript::export_state_dict(ck)
            .map(|e| (String::new(), e))
            .map_err(|e| format!("{}: {e}", ck.path.display()));
    }
    match ckpt_model::locate(&ck.doc, None) {
        Ok(l) => {
            let entries = l.entries(&ck.doc);
            Ok((l.path, entries))
        }
        Err(_) => Err(format!("{}: no state dict in it", ck.path.display())),
    }
}

/// `{"state_dict": its dotted path, "tensors": [{"name", "dtype", "shape"}…],
/// "other_entries": N}`: what the page groups by module and `/api/tensor` reads by name.
fn tensor_list(path: &Path) -> Result<Value, String> {
    if ckpt_torch::dcp::is_dcp_dir(path) {
        let idx = ckpt_torch::dcp::DcpIndex::open(path).map_err(|e| e.to_string())?;
        let tensors: Vec<Value> = idx
            .tensors
            .iter()
            .map(|t| json!({"name": t.fqn, "dtype": t.dtype.map(DType::name), "shape": t.shape}))
            .collect();
        return Ok(json!({
            "state_dict": "",
            "tensors": tensors,
            "other_entries": idx.other.len(),
        }));
    }
    let ck = Checkpoint::open(path).map_err(|e| e.to_string())?;
    let (sd, entries) = state_dict(&ck)?;
    let mut tensors = Vec::with_capacity(entries.len());
    let mut other = 0usize;
    for (name, id) in entries {
        match ck.doc.view(id) {
            View::Tensor(t) => tensors.push(json!({
                "name": name,
                "dtype": t.dtype.name(),
                "shape": t.shape,
            })),
            _ => other += 1,
        }
    }
    Ok(json!({ "state_dict": sd, "tensors": tensors, "other_entries": other }))
}

/// `GET /api/tensor?path=&name=&max_bytes=` → `{"name", "dtype", "shape", "values",
/// "truncated"}`.
pub(super) async fn tensor(State(app): State<Arc<App>>, pairs: Pairs) -> Result<Response, Fail> {
    let p = params(pairs, &["path", "name", "max_bytes"])?;
    let (path, name) = (one(&p, "path")?, one(&p, "name")?.to_owned());
    let max_bytes = match optional(&p, "max_bytes")? {
        None => DEFAULT_TENSOR_BYTES,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= MAX_TENSOR_BYTES => n,
            _ => {
                return Err(bad_request(format!(
                    "max_bytes={v:?}: a number of bytes, at most {MAX_TENSOR_BYTES}"
                )));
            }
        },
    };
    let file = lookup(&app, &current(&app), path)?.path;
    let body = heavy(&app, move || values(Path::new(&file), &name, max_bytes)).await??;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// One tensor's leading values, reading at most `max_bytes` of its data.
/// One tensor's leading values: the answer's JSON text.
fn values(path: &Path, name: &str, max_bytes: u64) -> Result<Vec<u8>, Fail> {
    let unprocessable = |msg: String| Fail(StatusCode::UNPROCESSABLE_ENTITY, msg);
    if ckpt_torch::dcp::is_dcp_dir(path) {
        return dcp_values(path, name, max_bytes);
    }
    let ck = Checkpoint::open(path).map_err(|e| unprocessable(e.to_string()))?;
    // A state dict entry's name first (what `/api/detail` lists), else a dotted path from
    // what torch.load returns (`ckpt dump --at`'s spelling: optimizer state, say).
    let by_entry = state_dict(&ck)
        .ok()
        .and_then(|(_, entries)| entries.into_iter().find(|(n, _)| n == name))
        .map(|(_, id)| id);
    let id = by_entry.or_else(|| crate::dump::find_path(&ck.doc, ck.doc.loaded_root(), name));
    let Some(View::Tensor(t)) = id.map(|id| ck.doc.view(id)) else {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            format!("{name}: no such tensor in {}", path.display()),
        ));
    };
    let mut values = Values::default();
    leading_values(&ck, t, name, max_bytes, &mut values)?;
    let truncated = values.count < t.numel();
    Ok(values.answer(name, Some(t.dtype), &t.shape, truncated))
}

/// One tensor of a DCP folder: its leading values in row-major order are those of its
/// chunks along the first dimension, in order (a tensor saved whole is one chunk; FSDP shards
/// rows). The chunks are read one after the other, at most `max_bytes` in all; a tensor
/// sharded along another dimension is refused (its leading values are spread over chunks).
fn dcp_values(dir: &Path, name: &str, max_bytes: u64) -> Result<Vec<u8>, Fail> {
    let unprocessable = |msg: String| Fail(StatusCode::UNPROCESSABLE_ENTITY, msg);
    let idx = ckpt_torch::dcp::DcpIndex::open(dir).map_err(|e| unprocessable(e.to_string()))?;
    let Some(t) = idx.tensors.iter().find(|t| t.fqn == name) else {
        return Err(Fail(
            StatusCode::NOT_FOUND,
            format!("{name}: no such tensor in {}", dir.display()),
        ));
    };
    let real_dir = super::resolve(dir).map_err(|e| unprocessable(e.to_string()))?;
    let mut rows: Vec<&ckpt_torch::dcp::DcpChunk> = t
        .chunks
        .iter()
        .filter(|c| c.offsets.iter().skip(1).all(|o| *o == 0))
        .collect();
    rows.sort_by_key(|c| c.offsets.first().copied().unwrap_or(0));
    let mut values = Values::default();
    let mut left = max_bytes;
    let mut next_row = 0u64;
    let mut dtype = t.dtype;
    for c in rows {
        if c.offsets.first().copied().unwrap_or(0) != next_row || left == 0 {
            break;
        }
        let file = dir.join(&c.file);
        // The chunk's file is inside the folder (`.metadata` was checked not to leave it;
        // a symlink out is not followed either).
        if !super::resolve(&file).is_ok_and(|f| f.starts_with(&real_dir)) {
            return Err(unprocessable(format!(
                "{name}: {}: not a file inside {}",
                file.display(),
                dir.display()
            )));
        }
        let ck = Checkpoint::open_range(&file, c.offset, c.len, &ckpt_torch::Options::default())
            .map_err(|e| unprocessable(format!("{name}: {e}")))?;
        let View::Tensor(piece) = ck.doc.view(ck.doc.root()) else {
            return Err(unprocessable(format!(
                "{name}: a chunk does not hold a tensor"
            )));
        };
        if piece.shape.get(1..) != t.shape.get(1..) {
            return Err(unprocessable(format!(
                "{name}: sharded along an inner dimension (a chunk of shape {:?} in {:?}): its \
                 leading values are not served",
                piece.shape, t.shape
            )));
        }
        let before = values.count;
        leading_values(&ck, piece, name, left, &mut values)?;
        let read = (values.count - before).saturating_mul(piece.dtype.size());
        left = left.saturating_sub(read);
        next_row = next_row.saturating_add(piece.shape.first().copied().unwrap_or(1));
        dtype = Some(piece.dtype);
    }
    let truncated = values.count < t.numel();
    Ok(values.answer(name, dtype, &t.shape, truncated))
}

/// Decoded values as JSON text (`1.5,-2,…`, no brackets): 4 M floats are some 40 MB of text,
/// not 4 M `Value`s on top of it.
#[derive(Default)]
struct Values {
    text: Vec<u8>,
    count: u64,
}

impl Values {
    /// Append the elements of `buf` (little-endian, whole elements of `dtype`).
    fn push(&mut self, buf: &[u8], dtype: DType) {
        let step = usize::try_from(dtype.size()).unwrap_or(1);
        for c in buf.chunks_exact(step) {
            if self.count > 0 {
                self.text.push(b',');
            }
            let v = element(c, dtype).unwrap_or(Value::Null);
            // Writing a `Value` to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.text, &v);
            self.count += 1;
        }
    }

    /// `{"name", "dtype", "shape", "values", "truncated"}` as JSON text.
    fn answer(self, name: &str, dtype: Option<DType>, shape: &[u64], truncated: bool) -> Vec<u8> {
        let head = json!({ "name": name, "dtype": dtype.map(DType::name), "shape": shape });
        let head = head.to_string();
        let mut out = Vec::with_capacity(head.len() + self.text.len() + 40);
        // `{"name":…,"dtype":…,"shape":[…]` then the values and the flag.
        out.extend_from_slice(head.strip_suffix('}').unwrap_or(&head).as_bytes());
        out.extend_from_slice(b",\"values\":[");
        out.extend_from_slice(&self.text);
        out.extend_from_slice(format!("],\"truncated\":{truncated}}}").as_bytes());
        out
    }
}

/// One element's JSON value, or `None` for a dtype that is not decoded. Floats that JSON
/// cannot spell are `{"__float__": "nan" | "inf" | "-inf"}`, as `ckpt dump` writes them;
/// integers are exact.
fn element(b: &[u8], dtype: DType) -> Option<Value> {
    let int = |n: usize| -> Option<[u8; 8]> {
        let mut w = [0u8; 8];
        w.get_mut(..n)?.copy_from_slice(b.get(..n)?);
        Some(w)
    };
    let sign_extend = |n: usize| -> Option<i64> {
        let raw = u64::from_le_bytes(int(n)?);
        let shift = 64 - 8 * u32::try_from(n).ok()?;
        Some(((raw << shift) as i64) >> shift)
    };
    Some(match dtype {
        DType::F16 | DType::BF16 | DType::F32 | DType::F64 => {
            let f = ckpt_torch::scalar_from_le(b, dtype)?;
            match serde_json::Number::from_f64(f) {
                Some(n) => Value::Number(n),
                None if f.is_nan() => json!({"__float__": "nan"}),
                None if f > 0.0 => json!({"__float__": "inf"}),
                None => json!({"__float__": "-inf"}),
            }
        }
        DType::Bool => Value::Bool(*b.first()? != 0),
        DType::U8 | DType::U16 | DType::U32 | DType::U64 => Value::from(u64::from_le_bytes(int(
            usize::try_from(dtype.size()).ok()?,
        )?)),
        DType::I8 | DType::I16 | DType::I32 | DType::I64 => {
            Value::from(sign_extend(usize::try_from(dtype.size()).ok()?)?)
        }
        _ => return None,
    })
}

/// The first elements of `t` in row-major order, as many as `max_bytes` of data hold: the
/// file ranges they occupy are computed from the shape, strides and offset (validated
/// against the storage first) and read by positioned reads, consecutive elements in one
/// read. Nothing outside those elements is read, whatever the tensor's size or layout.
fn leading_values(
    ck: &Checkpoint,
    t: &TensorRef,
    name: &str,
    max_bytes: u64,
    out: &mut Values,
) -> Result<(), Fail> {
    let unprocessable = |msg: String| Fail(StatusCode::UNPROCESSABLE_ENTITY, msg);
    let esize = t.dtype.size();
    if element(&[0u8; 8], t.dtype).is_none() || t.dtype.elems_per_byte() > 1 {
        return Err(unprocessable(format!(
            "{name}: dtype {}: its values are not decoded (float16, bfloat16, float32, \
             float64, integers and bool are)",
            t.dtype
        )));
    }
    let numel = t.numel();
    let want = numel.min(max_bytes / esize);
    let Some(storage) = &t.storage else {
        return Err(unprocessable(format!(
            "{name}: a meta tensor (saved without data)"
        )));
    };
    let at = |e: ckpt_torch::Error| unprocessable(format!("{name}: {e}"));
    let (base, storage_len) = ck.storage_span(storage).map_err(at)?;
    // Shape, strides and offset checked against the storage, with checked arithmetic: every
    // element computed below is inside it.
    ckpt_torch::tensor_span(t, storage_len).map_err(|d| unprocessable(format!("{name}: {d}")))?;
    let unit = usize::try_from(t.dtype.swap_unit()).unwrap_or(1);
    // Read a run of consecutive elements and decode it.
    let flush = |run: Option<(u64, u64)>, out: &mut Values| -> Result<(), Fail> {
        let Some((off, len)) = run else {
            return Ok(());
        };
        let mut buf = ck.read_range(off, len).map_err(at)?;
        if ck.byteorder == ByteOrder::Big && unit > 1 {
            for c in buf.chunks_exact_mut(unit) {
                c.reverse();
            }
        }
        out.push(&buf, t.dtype);
        Ok(())
    };
    let mut run: Option<(u64, u64)> = None;
    let mut index = vec![0u64; t.shape.len()];
    for _ in 0..want {
        let mut elem = t.offset;
        for (i, s) in index.iter().zip(&t.stride) {
            // Non-negative and in range: tensor_span said so.
            elem = elem.saturating_add(i.saturating_mul(u64::try_from(*s).unwrap_or(0)));
        }
        let off = base.saturating_add(elem.saturating_mul(esize));
        match &mut run {
            Some((start, len)) if start.saturating_add(*len) == off => *len += esize,
            _ => {
                flush(run.take(), out)?;
                run = Some((off, esize));
            }
        }
        for (i, d) in index.iter_mut().zip(&t.shape).rev() {
            *i += 1;
            if *i < *d {
                break;
            }
            *i = 0;
        }
    }
    flush(run, out)
}
