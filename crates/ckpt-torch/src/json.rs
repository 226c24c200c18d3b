//! The decoded object as JSON, in the corpus mapping (what `torch.load` returns, mapped the way
//! `corpus/README.md` describes). Iterative, so depth costs heap, not stack; budgeted, because a
//! few hundred bytes of pickle can describe 2^60 shared leaves and JSON has no sharing.
//! Streaming: [`write_json`] writes while it walks, holding one small buffer and one work item
//! per open container (never one per child, never the whole text), so dumping a list of
//! millions of values costs what the document already costs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;

use crate::doc::{Doc, NodeId, TensorRef, View};
use crate::pyrepr::{float_repr, key_str};
use crate::tensor::sha256_hex;

/// Bounds on the expansion of a document into JSON.
#[derive(Debug, Clone, Copy)]
pub struct JsonOptions {
    /// Values written, counting every repetition of a shared value.
    pub max_nodes: u64,
    /// Nesting depth.
    pub max_depth: usize,
    /// Output size in bytes.
    pub max_bytes: u64,
    /// Pretty-print with this many spaces per level; `None` for compact output.
    pub indent: Option<usize>,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            max_nodes: 5_000_000,
            max_depth: 2_000,
            max_bytes: 512 << 20,
            indent: Some(1),
        }
    }
}

/// Why JSON output stopped.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error(
        "expansion limit of {limit} values exceeded (shared references are written out in full at each place they occur)"
    )]
    ExpansionLimit { limit: u64 },
    #[error("nesting deeper than {limit} levels")]
    DepthLimit { limit: usize },
    #[error("output larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Tensor(String),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Computes a tensor's hash when asked; `None` leaves it out.
pub type TensorHasher<'a> = dyn FnMut(&TensorRef) -> Result<Option<String>, String> + 'a;

enum Work {
    Node(NodeId, usize),
    Key(NodeId),
    Sep(usize),
    Close(&'static str, usize),
    Leave(NodeId),
    /// `"args": [` followed by a newline at this depth.
    ArgsOpen(usize),
    StateKey,
    /// The items of a list, tuple (or an object's args) from `next` on, each at `depth`:
    /// one work item per open container, not one per child.
    Items {
        id: NodeId,
        next: usize,
        depth: usize,
    },
    /// The entries of a dict from `next` on, each at `depth`.
    Entries {
        id: NodeId,
        next: usize,
        depth: usize,
    },
}

/// Bytes held before they are handed to the sink.
const FLUSH_AT: usize = 64 << 10;

struct Writer<'d, 'h, 's> {
    doc: &'d Doc,
    opts: JsonOptions,
    out: String,
    /// Where `out` goes when it fills up; `None` to keep everything in `out`.
    sink: Option<&'s mut dyn io::Write>,
    /// Bytes already handed to the sink.
    written: u64,
    /// Inside [`Writer::render_python_style`]: `out` is a scratch buffer, never flushed.
    nested: u32,
    nodes: u64,
    /// Containers on the path from the root to the value being written (one bit per
    /// node: a container is never open twice, its second visit is a cycle marker).
    on_path: Bits,
    hasher: &'h mut TensorHasher<'h>,
    hash_cache: HashMap<u32, Option<String>>,
    python_style: bool,
}

/// Write `root` of `doc` as JSON, into a string.
pub fn to_json(
    doc: &Doc,
    root: NodeId,
    opts: &JsonOptions,
    hasher: &mut TensorHasher<'_>,
) -> Result<String, JsonError> {
    run(doc, root, opts, hasher, None)
}

/// Write `root` of `doc` as JSON into `sink` as it is produced (the same bytes as
/// [`to_json`]). Every budget is checked before the first byte is written except the output
/// size and tensor hashing, which can only fail part way (the sink then holds a prefix).
pub fn write_json(
    doc: &Doc,
    root: NodeId,
    opts: &JsonOptions,
    hasher: &mut TensorHasher<'_>,
    sink: &mut dyn io::Write,
) -> Result<(), JsonError> {
    run(doc, root, opts, hasher, Some(sink)).map(|_| ())
}

fn run(
    doc: &Doc,
    root: NodeId,
    opts: &JsonOptions,
    hasher: &mut TensorHasher<'_>,
    sink: Option<&mut dyn io::Write>,
) -> Result<String, JsonError> {
    // Re-borrow with a single lifetime for the writer.
    let mut h = |t: &TensorRef| hasher(t);
    let mut w = Writer {
        doc,
        opts: *opts,
        out: String::new(),
        sink,
        written: 0,
        nested: 0,
        nodes: 0,
        on_path: Bits::new(doc.len()),
        hasher: &mut h,
        hash_cache: HashMap::new(),
        python_style: false,
    };
    precheck(doc, root, opts)?;
    w.write(root, 0)?;
    if w.opts.indent.is_some() {
        w.out.push('\n');
    }
    if let Some(sink) = w.sink.as_mut() {
        sink.write_all(w.out.as_bytes())?;
        sink.flush()?;
        w.out.clear();
    }
    Ok(w.out)
}

fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

impl Writer<'_, '_, '_> {
    fn newline(&mut self, depth: usize) {
        if let Some(n) = self.opts.indent {
            self.out.push('\n');
            for _ in 0..depth * n {
                self.out.push(' ');
            }
        }
    }

    fn sep(&mut self, depth: usize) {
        self.out.push(',');
        if self.opts.indent.is_some() {
            self.newline(depth);
        } else if self.python_style {
            self.out.push(' ');
        }
    }

    fn colon(&mut self) {
        if self.opts.indent.is_some() || self.python_style {
            self.out.push_str(": ");
        } else {
            self.out.push(':');
        }
    }

    fn write(&mut self, root: NodeId, base_depth: usize) -> Result<(), JsonError> {
        let mut work = vec![Work::Node(root, base_depth)];
        while let Some(w) = work.pop() {
            let size = if self.nested == 0 {
                self.written + self.out.len() as u64
            } else {
                self.out.len() as u64
            };
            if size > self.opts.max_bytes {
                return Err(JsonError::TooLarge {
                    limit: self.opts.max_bytes,
                });
            }
            if self.nested == 0
                && self.out.len() >= FLUSH_AT
                && let Some(sink) = self.sink.as_mut()
            {
                sink.write_all(self.out.as_bytes())?;
                self.written += self.out.len() as u64;
                self.out.clear();
            }
            match w {
                Work::StateKey => {
                    self.out.push_str("\"state\"");
                    self.colon();
                }
                Work::ArgsOpen(d) => {
                    self.out.push_str("\"args\"");
                    self.colon();
                    self.out.push('[');
                    self.newline(d);
                }
                Work::Sep(d) => self.sep(d),
                Work::Close(t, d) => {
                    self.newline(d);
                    self.out.push_str(t);
                }
                Work::Leave(id) => self.on_path.set(id.index(), false),
                Work::Items { id, next, depth } => {
                    let item = match self.doc.view(id) {
                        View::List(items) | View::Tuple(items) => items.get(next).copied(),
                        View::Object(o) => o.args.get(next).copied(),
                        _ => None,
                    };
                    if let Some(item) = item {
                        work.push(Work::Items {
                            id,
                            next: next + 1,
                            depth,
                        });
                        work.push(Work::Node(item, depth));
                        if next > 0 {
                            work.push(Work::Sep(depth));
                        }
                    }
                }
                Work::Entries { id, next, depth } => {
                    if let View::Dict(items) = self.doc.view(id)
                        && let Some((k, v)) = items.get(next).copied()
                    {
                        work.push(Work::Entries {
                            id,
                            next: next + 1,
                            depth,
                        });
                        work.push(Work::Node(v, depth));
                        work.push(Work::Key(k));
                        if next > 0 {
                            work.push(Work::Sep(depth));
                        }
                    }
                }
                Work::Key(k) => {
                    let s = key_str(self.doc, k);
                    escape_into(&mut self.out, &s);
                    self.colon();
                }
                Work::Node(id, depth) => self.node(id, depth, &mut work)?,
            }
        }
        Ok(())
    }

    /// Push the items of the list or tuple `id`: `open item, item close`.
    fn seq(&mut self, id: NodeId, empty: bool, depth: usize, work: &mut Vec<Work>) {
        if empty {
            self.out.push_str("[]");
            return;
        }
        self.out.push('[');
        self.newline(depth + 1);
        work.push(Work::Close("]", depth));
        work.push(Work::Items {
            id,
            next: 0,
            depth: depth + 1,
        });
    }

    fn node(&mut self, id: NodeId, depth: usize, work: &mut Vec<Work>) -> Result<(), JsonError> {
        self.nodes += 1;
        if self.nodes > self.opts.max_nodes {
            return Err(JsonError::ExpansionLimit {
                limit: self.opts.max_nodes,
            });
        }
        if depth > self.opts.max_depth {
            return Err(JsonError::DepthLimit {
                limit: self.opts.max_depth,
            });
        }
        let rid = self.doc.resolve(id);
        let doc = self.doc;
        let view = doc.view(rid);
        let is_container = matches!(
            view,
            View::List(_) | View::Tuple(_) | View::Dict(_) | View::Set(_) | View::Object(_)
        );
        if is_container {
            if self.on_path.get(rid.index()) {
                self.lit("{\"__cycle__\": true}");
                return Ok(());
            }
            self.on_path.set(rid.index(), true);
            work.push(Work::Leave(rid));
        }
        match view {
            View::None => self.out.push_str("null"),
            View::Bool(b) => self.out.push_str(if b { "true" } else { "false" }),
            View::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            View::BigInt(b) => {
                let _ = write!(self.out, "{b}");
            }
            View::Float(f) => self.float(f),
            View::Complex(r, i) => {
                self.lit("{\"__complex__\": [");
                self.float(r);
                self.lit(", ");
                self.float(i);
                self.lit("]}");
            }
            View::Str(s) => escape_into(&mut self.out, s),
            View::Bytes(b) => {
                self.lit("{\"__bytes__\": \"");
                self.out.push_str(&hex(b));
                self.lit("\"}");
            }
            View::List(items) | View::Tuple(items) => self.seq(rid, items.is_empty(), depth, work),
            View::Dict(items) => {
                if items.is_empty() {
                    self.lit("{}");
                } else {
                    self.out.push('{');
                    self.newline(depth + 1);
                    work.push(Work::Close("}", depth));
                    work.push(Work::Entries {
                        id: rid,
                        next: 0,
                        depth: depth + 1,
                    });
                }
            }
            View::Set(items) => {
                // Sorted by each element's JSON text, as Python's json.dumps writes it.
                let mut rendered: Vec<String> = Vec::with_capacity(items.len());
                for it in items {
                    rendered.push(self.render_python_style(*it, depth + 1)?);
                }
                rendered.sort();
                self.out.push('[');
                for (i, r) in rendered.iter().enumerate() {
                    if i > 0 {
                        self.sep(depth + 1);
                    } else {
                        self.newline(depth + 1);
                    }
                    self.out.push_str(r);
                }
                if rendered.is_empty() {
                    self.out.push(']');
                } else {
                    self.newline(depth);
                    self.out.push(']');
                }
            }
            View::Tensor(t) => {
                let hash = match self.hash_cache.get(&rid.0) {
                    Some(h) => h.clone(),
                    None => {
                        let h = (self.hasher)(t).map_err(JsonError::Tensor)?;
                        self.hash_cache.insert(rid.0, h.clone());
                        h
                    }
                };
                self.lit("{\"__tensor__\": {\"dtype\": ");
                escape_into(&mut self.out, t.dtype.name());
                self.lit(", \"shape\": ");
                self.shape(&t.shape);
                if let Some(h) = hash {
                    self.lit(", \"sha256\": \"");
                    self.out.push_str(&h);
                    self.out.push('"');
                }
                self.lit("}}");
            }
            View::NdArray(a) => {
                self.lit("{\"__ndarray__\": {\"dtype\": ");
                escape_into(&mut self.out, &a.dtype);
                self.lit(", \"shape\": ");
                self.shape(&a.shape);
                if let Some(data) = &a.data {
                    let bytes = if a.fortran_order {
                        fortran_to_c(data, &a.shape, a.itemsize)
                    } else {
                        data.clone()
                    };
                    self.lit(", \"sha256\": \"");
                    self.out.push_str(&sha256_hex(&bytes));
                    self.out.push('"');
                }
                self.lit("}}");
            }
            View::Object(o) => {
                self.out.push('{');
                self.newline(depth + 1);
                self.lit("\"__object__\"");
                self.colon();
                escape_into(&mut self.out, &o.class);
                work.push(Work::Close("}", depth));
                if let Some(s) = o.state {
                    work.push(Work::Node(s, depth + 1));
                    work.push(Work::StateKey);
                    work.push(Work::Sep(depth + 1));
                }
                if !o.args.is_empty() {
                    work.push(Work::Close("]", depth + 1));
                    work.push(Work::Items {
                        id: rid,
                        next: 0,
                        depth: depth + 2,
                    });
                    work.push(Work::ArgsOpen(depth + 2));
                    work.push(Work::Sep(depth + 1));
                }
            }
            View::Class(g) => g.with_qualname(|c| {
                self.lit("{\"__object__\": ");
                escape_into(&mut self.out, metaclass_of(c));
                self.lit(", \"name\": ");
                escape_into(&mut self.out, c);
                self.out.push('}');
            }),
            View::Storage(s) => {
                self.lit("{\"__storage__\": {\"dtype\": ");
                escape_into(&mut self.out, s.dtype.name());
                self.lit(", \"numel\": ");
                let _ = write!(self.out, "{}", s.numel);
                self.lit(", \"key\": ");
                escape_into(&mut self.out, &s.key);
                self.lit("}}");
            }
            View::Opaque(what) => {
                self.lit("{\"__opaque__\": ");
                escape_into(&mut self.out, what);
                self.out.push('}');
            }
        }
        Ok(())
    }

    /// Fixed JSON punctuation written in Python's style (`", "`, `": "`), squeezed in compact
    /// mode. Never used for user text.
    fn lit(&mut self, s: &str) {
        if self.opts.indent.is_none() && !self.python_style {
            for c in s.chars() {
                if c != ' ' {
                    self.out.push(c);
                }
            }
        } else {
            self.out.push_str(s);
        }
    }

    fn float(&mut self, f: f64) {
        if f.is_finite() {
            self.out.push_str(&float_repr(f));
        } else {
            self.lit("{\"__float__\": \"");
            self.out.push_str(&float_repr(f));
            self.lit("\"}");
        }
    }

    fn shape(&mut self, shape: &[u64]) {
        self.out.push('[');
        for (i, d) in shape.iter().enumerate() {
            if i > 0 {
                self.lit(", ");
            }
            let _ = write!(self.out, "{d}");
        }
        self.out.push(']');
    }

    /// Render one node compactly in Python's `json.dumps` style, for sorting set elements.
    fn render_python_style(&mut self, id: NodeId, depth: usize) -> Result<String, JsonError> {
        let saved_out = std::mem::take(&mut self.out);
        let saved_opts = self.opts;
        let saved_style = self.python_style;
        self.opts.indent = None;
        self.python_style = true;
        self.nested += 1;
        let r = self.write(id, depth);
        self.nested -= 1;
        let rendered = std::mem::replace(&mut self.out, saved_out);
        self.opts = saved_opts;
        self.python_style = saved_style;
        r.map(|_| rendered)
    }
}

/// The `i`-th child written for a node (dict keys are written as strings, not counted):
/// items, dict values, an object's args then its state.
fn child(doc: &Doc, id: NodeId, i: usize) -> Option<NodeId> {
    match doc.view(id) {
        View::List(items) | View::Tuple(items) | View::Set(items) => items.get(i).copied(),
        View::Dict(items) => items.get(i).map(|(_, v)| *v),
        View::Object(o) => match o.args.get(i) {
            Some(a) => Some(*a),
            None if i == o.args.len() => o.state,
            None => None,
        },
        _ => None,
    }
}

/// One bit per node.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn set(&mut self, i: usize, on: bool) {
        if let Some(w) = self.0.get_mut(i / 64) {
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }
}

/// Size and depth of the JSON a document expands to, computed over the shared graph in
/// linear time, so a memo bomb is refused before anything is written (not after writing
/// millions of values). Back edges (cycles) count as one value, as the writer prints them.
///
/// Two passes over what `root` reaches, each visiting a node once: the first counts how many
/// edges reach each node (a byte per node, saturating); the second computes sizes depth
/// first and remembers them only for nodes reached more than once — the only ones whose
/// size is asked for twice. A tree (every plain checkpoint) is then checked with a few bits
/// and a byte per node and a stack as deep as the tree, whatever its width.
fn precheck(doc: &Doc, root: NodeId, opts: &JsonOptions) -> Result<(), JsonError> {
    let n = doc.len();
    let root = doc.resolve(root);
    if root.index() >= n {
        return Ok(());
    }
    let depth_err = || JsonError::DepthLimit {
        limit: opts.max_depth,
    };
    // Pass 1: in-degrees of everything reachable (each node expanded once).
    let mut indeg: Vec<u8> = vec![0; n];
    let mut seen = Bits::new(n);
    seen.set(root.index(), true);
    let mut stack: Vec<(NodeId, usize)> = vec![(root, 0)];
    while let Some((id, i)) = stack.last_mut() {
        let Some(c) = child(doc, *id, *i) else {
            stack.pop();
            continue;
        };
        *i += 1;
        let c = doc.resolve(c);
        if c.index() >= n {
            continue;
        }
        if let Some(d) = indeg.get_mut(c.index()) {
            *d = d.saturating_add(1);
        }
        if !seen.get(c.index()) {
            seen.set(c.index(), true);
            if stack.len() > opts.max_depth {
                return Err(depth_err());
            }
            stack.push((c, 0));
        }
    }
    drop(seen);
    // Pass 2: sizes, depth first; `on_path` marks the open nodes (a child on the path is a
    // cycle, written as one marker), `done` the shared nodes already measured.
    struct Frame {
        id: NodeId,
        next: usize,
        size: u64,
        depth: u32,
    }
    let mut on_path = Bits::new(n);
    let mut done: HashMap<u32, (u64, u32)> = HashMap::new();
    let mut frames: Vec<Frame> = vec![Frame {
        id: root,
        next: 0,
        size: 1,
        depth: 0,
    }];
    on_path.set(root.index(), true);
    while let Some(f) = frames.last_mut() {
        if let Some(c) = child(doc, f.id, f.next) {
            f.next += 1;
            let c = doc.resolve(c);
            if c.index() >= n || on_path.get(c.index()) {
                // out of range, or a cycle (written as a marker)
                f.size = f.size.saturating_add(1);
            } else if let Some(&(size, depth)) = done.get(&c.0) {
                f.size = f.size.saturating_add(size);
                f.depth = f.depth.max(depth);
            } else {
                if frames.len() > opts.max_depth {
                    return Err(depth_err());
                }
                on_path.set(c.index(), true);
                frames.push(Frame {
                    id: c,
                    next: 0,
                    size: 1,
                    depth: 0,
                });
            }
            continue;
        }
        let (id, size) = (f.id, f.size);
        let depth = f.depth.saturating_add(1);
        frames.pop();
        on_path.set(id.index(), false);
        if size > opts.max_nodes {
            return Err(JsonError::ExpansionLimit {
                limit: opts.max_nodes,
            });
        }
        if depth as usize > opts.max_depth {
            return Err(depth_err());
        }
        if indeg.get(id.index()).is_some_and(|d| *d > 1) {
            done.insert(id.0, (size, depth));
        }
        if let Some(parent) = frames.last_mut() {
            parent.size = parent.size.saturating_add(size);
            parent.depth = parent.depth.max(depth);
        }
    }
    Ok(())
}

/// `type(cls)` for a class used as a value: what the corpus mapping records for it.
fn metaclass_of(qualname: &str) -> &'static str {
    const ABC: &[&str] = &[
        "omegaconf.dictconfig.DictConfig",
        "omegaconf.listconfig.ListConfig",
        "omegaconf.basecontainer.BaseContainer",
        "omegaconf.base.Container",
        "omegaconf.base.Node",
        "collections.abc.Mapping",
        "collections.abc.Sequence",
    ];
    if ABC.contains(&qualname) {
        return "abc.ABCMeta";
    }
    let last = qualname.rsplit('.').next().unwrap_or(qualname);
    if last.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
        "builtins.type"
    } else {
        "builtins.function"
    }
}

/// Reorder a Fortran-order array's bytes into C order.
fn fortran_to_c(data: &[u8], shape: &[u64], itemsize: u64) -> Vec<u8> {
    let n: u64 = shape.iter().product();
    let es = itemsize as usize;
    if shape.len() < 2 || data.len() as u64 != n.saturating_mul(itemsize) {
        return data.to_vec();
    }
    let nd = shape.len();
    // Fortran strides (in elements): first dimension fastest.
    let mut fstride = vec![1u64; nd];
    for k in 1..nd {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0u64; nd];
    for _ in 0..n {
        let off: u64 = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        let b = off as usize * es;
        out.extend_from_slice(&data[b..b + es]);
        let mut k = nd;
        while k > 0 {
            k -= 1;
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}
