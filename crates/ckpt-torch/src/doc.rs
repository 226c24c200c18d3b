//! What a decoded pickle *means* to torch: the known-type table.
//!
//! A [`Doc`] sits beside the raw pickle arena with one [`Node`] per pickle value (same index),
//! plus nodes synthesized for other containers (safetensors headers). Each node is classified
//! locally — from its own value and a few levels below — so classification is one linear pass,
//! sharing is kept (a value memoized once is one node), and cycles cost nothing.
//! Readers use [`Doc::view`], which follows aliases (`DictConfig` → its `_content`, an omegaconf
//! `AnyNode` → its `_val`, `argparse.Namespace` → its attribute dict).

use std::borrow::Cow;

use ckpt_pickle::{BigInt, Construct, Global, Pickle, Value, ValueId};

use crate::dtype::DType;

/// Node ids are pickle value ids: node `i` interprets value `i`.
pub use ckpt_pickle::ValueId as NodeId;

/// Where a tensor's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    /// The storage key (`data/<key>` in a zip archive, the legacy stream's key).
    pub key: String,
    /// Element type of the storage as saved (`UntypedStorage` counts bytes: `U8`).
    pub dtype: DType,
    /// Elements of `dtype` the pickle says the storage holds.
    pub numel: u64,
    /// Device it was saved from (`cpu`, `cuda:0`). Borrowed when it is a constant: a
    /// safetensors header's 170,000 tensors would otherwise hold 170,000 copies of "cpu".
    pub location: Cow<'static, str>,
    /// Legacy view storages: byte offset of the view inside its root storage.
    pub view_offset_bytes: u64,
}

/// How the tensor was wrapped when saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorKind {
    Tensor,
    Parameter,
    /// A tensor subclass rebuilt through `_rebuild_from_type_v2`.
    Subclass(String),
}

/// A tensor, without its data: where the data is and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub stride: Vec<i64>,
    /// Storage offset, in elements of `dtype`.
    pub offset: u64,
    /// `None` for meta tensors (saved without data).
    pub storage: Option<StorageRef>,
    pub requires_grad: bool,
    pub kind: TensorKind,
}

impl TensorRef {
    /// Number of elements (`numel()`), saturating for hostile shapes.
    pub fn numel(&self) -> u64 {
        self.shape
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .unwrap_or(u64::MAX)
    }

    /// Logical size in bytes.
    pub fn nbytes(&self) -> u64 {
        self.numel().saturating_mul(self.dtype.size())
    }
}

/// A numpy array held inside the pickle (bytes are in the pickle itself).
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// numpy's name (`float32`, `int64`, `<U5` …).
    pub dtype: String,
    pub itemsize: u64,
    pub shape: Vec<u64>,
    pub fortran_order: bool,
    /// The raw element bytes, when the array holds plain data (not Python objects).
    pub data: Option<Vec<u8>>,
}

/// An object the table does not know: kept as its class, constructor arguments and state.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectNode {
    /// `module.Qualname` of what was called, or a description when the callee is not a global.
    pub class: String,
    pub args: Vec<NodeId>,
    pub state: Option<NodeId>,
    pub construct: Construct,
}

/// The meaning of one value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Read the pickle value with the same id as-is (scalars and plain containers).
    Plain,
    /// Same as another node (unwrapped containers and nodes).
    Alias(NodeId),
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Complex(f64, f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<NodeId>),
    Dict(Vec<(NodeId, NodeId)>),
    Set(Vec<NodeId>),
    Tensor(Box<TensorRef>),
    NdArray(Box<NdArray>),
    Object(Box<ObjectNode>),
    /// A bare storage object (a persistent id outside a tensor).
    Storage(Box<StorageRef>),
}

/// A borrowed, alias-free view of a node.
#[derive(Debug, Clone, Copy)]
pub enum View<'a> {
    None,
    Bool(bool),
    Int(i64),
    BigInt(&'a BigInt),
    Float(f64),
    Complex(f64, f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    List(&'a [NodeId]),
    Tuple(&'a [NodeId]),
    Dict(&'a [(NodeId, NodeId)]),
    Set(&'a [NodeId]),
    Tensor(&'a TensorRef),
    NdArray(&'a NdArray),
    Object(&'a ObjectNode),
    /// A class or function used as a value (not called): `hparams_type`, say. Read from the
    /// pickle when viewed: a checkpoint names thousands of globals (every tensor repeats
    /// its rebuild function), and only the rare one used as a value is ever shown.
    Class(&'a ckpt_pickle::Global),
    Storage(&'a StorageRef),
    /// A persistent id the container did not understand, or an extension code.
    Opaque(&'static str),
}

/// A classification failure: which value, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyError {
    /// Byte offset in the pickle of the opcode that built the value.
    pub offset: u64,
    pub what: &'static str,
    pub detail: String,
}

/// How storages are named by persistent ids in this container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersIdStyle {
    /// `('storage', type, key, location, numel)`.
    Zip,
    /// `('storage', type, root_key, location, size, view_metadata)`.
    Legacy,
}

/// One node per pickle value, then the synthesized ones. Most values of a checkpoint (and all
/// of a flood of plain containers) are [`Node::Plain`]: those are not stored at all, only one
/// bit saying so, so the meaning of 5 million plain values costs under 1 MB (a slot per
/// value, 4 bytes, cost 20 MB; a whole `Node`, 32). The other nodes are kept in id order, and
/// a node's place among them is the number of set bits before it: `ranks` holds that count
/// at the start of each 64-bit word, so a lookup is two reads and a popcount.
#[derive(Debug, Clone, Default)]
struct Nodes {
    /// Nodes pushed.
    len: usize,
    /// Bit `i` set: node `i` is in `other`.
    bits: Vec<u64>,
    /// Set bits before each word of `bits`.
    ranks: Vec<u32>,
    /// Set bits in all of `bits` (the length of `other` once it is filled).
    set: usize,
    other: Vec<Node>,
}

/// What a `Plain` slot reads as.
static PLAIN_NODE: Node = Node::Plain;

impl Nodes {
    fn with_capacity(n: usize) -> Nodes {
        let words = n.div_ceil(64);
        Nodes {
            len: 0,
            bits: Vec::with_capacity(words),
            ranks: Vec::with_capacity(words),
            set: 0,
            other: Vec::new(),
        }
    }

    /// Count one more node, stored in `other` by the caller when `stored`.
    fn push_flag(&mut self, stored: bool) {
        let i = self.len;
        if i.is_multiple_of(64) {
            self.bits.push(0);
            self.ranks.push(u32::try_from(self.set).unwrap_or(u32::MAX));
        }
        self.len += 1;
        if stored {
            self.set += 1;
            if let Some(w) = self.bits.last_mut() {
                *w |= 1u64 << (i % 64);
            }
        }
    }

    fn push(&mut self, node: Node) {
        let i = self.len;
        if i.is_multiple_of(64) {
            self.bits.push(0);
            // More than 4G special nodes cannot happen (values are counted in u32 already);
            // saturate rather than wrap if it ever did.
            self.ranks.push(u32::try_from(self.set).unwrap_or(u32::MAX));
        }
        self.len += 1;
        if matches!(node, Node::Plain) {
            return;
        }
        if let Some(w) = self.bits.last_mut() {
            *w |= 1u64 << (i % 64);
        }
        self.set += 1;
        self.other.push(node);
    }

    fn get(&self, i: usize) -> Option<&Node> {
        if i >= self.len {
            return None;
        }
        let word = *self.bits.get(i / 64)?;
        let bit = 1u64 << (i % 64);
        if word & bit == 0 {
            return Some(&PLAIN_NODE);
        }
        let before = (word & (bit - 1)).count_ones() as usize;
        let at = *self.ranks.get(i / 64)? as usize + before;
        self.other.get(at)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether node `i` is stored (not plain): a plain node reads as a pickle value, never a
    /// tensor or storage.
    fn stored(&self, i: usize) -> bool {
        i < self.len
            && self
                .bits
                .get(i / 64)
                .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }
}

/// The pickle plus its meaning.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    pub pickle: Pickle,
    nodes: Nodes,
    root: NodeId,
    /// A TorchScript archive's class table (from its `code/`): which `__torch__.*` objects are
    /// modules and which of their attributes are parameters and buffers.
    script: Option<std::sync::Arc<crate::torchscript::ScriptClasses>>,
    /// What `torch.load` returns when that is not the pickle's root: for a TorchScript archive,
    /// a synthesized `torch.jit._script.RecursiveScriptModule` node.
    loaded_root: Option<NodeId>,
}

impl Doc {
    /// Classify every value of `pickle`.
    pub fn classify(pickle: Pickle, style: PersIdStyle) -> Result<Doc, ClassifyError> {
        let mut nodes = Nodes::with_capacity(pickle.len());
        let c = Classifier { p: &pickle, style };
        for i in 0..pickle.len() {
            let id = ValueId(i as u32);
            // Plain values (most of a checkpoint's) keep their pickle meaning: not built here.
            if pickle.is_name_call_or_pid(id) {
                nodes.push(c.classify(id)?);
            } else {
                nodes.push(Node::Plain);
            }
        }
        let root = pickle.root();
        Ok(Doc {
            pickle,
            nodes,
            root,
            script: None,
            loaded_root: None,
        })
    }

    /// A document whose values keep their raw pickle meaning (for security scans).
    pub fn unclassified(pickle: Pickle) -> Doc {
        let mut nodes = Nodes::with_capacity(pickle.len());
        for _ in 0..pickle.len() {
            nodes.push(Node::Plain);
        }
        let root = pickle.root();
        Doc {
            pickle,
            nodes,
            root,
            script: None,
            loaded_root: None,
        }
    }

    /// A document built by hand (safetensors headers, tests): nodes only, no pickle. The
    /// vector becomes the document's store in place (plain nodes removed), never copied.
    pub fn from_nodes(mut nodes: Vec<Node>, root: NodeId) -> Doc {
        let mut stored = Nodes::with_capacity(nodes.len());
        for n in &nodes {
            stored.push_flag(!matches!(n, Node::Plain));
        }
        nodes.retain(|n| !matches!(n, Node::Plain));
        stored.other = nodes;
        Doc {
            pickle: Pickle::new(),
            nodes: stored,
            root,
            script: None,
            loaded_root: None,
        }
    }

    pub fn root(&self) -> NodeId {
        self.root
    }

    /// The value `torch.load` returns: the pickle's root, except for a TorchScript archive,
    /// where it is the `RecursiveScriptModule` that `torch.jit.load` builds (a node
    /// synthesized by [`Doc::set_loaded_root`]).
    pub fn loaded_root(&self) -> NodeId {
        self.loaded_root.unwrap_or(self.root)
    }

    /// Record what `torch.load` returns (see [`Doc::loaded_root`]).
    pub fn set_loaded_root(&mut self, id: NodeId) {
        self.loaded_root = Some(id);
    }

    /// Make `id` the root (a document synthesized with [`Doc::push_node`], such as a
    /// safetensors header's).
    pub(crate) fn set_root(&mut self, id: NodeId) {
        self.root = id;
    }

    /// Room for `n` more synthesized nodes, exactly (a safetensors header knows how many it
    /// makes; doubling would leave up to half the node table unused).
    pub(crate) fn reserve_nodes(&mut self, n: usize) {
        self.nodes.other.reserve_exact(n);
        let words = (self.nodes.len + n).div_ceil(64);
        self.nodes
            .bits
            .reserve_exact(words.saturating_sub(self.nodes.bits.len()));
        self.nodes
            .ranks
            .reserve_exact(words.saturating_sub(self.nodes.ranks.len()));
    }

    /// Append a synthesized node (one that no pickle value stands for) and return its id.
    pub fn push_node(&mut self, node: Node) -> NodeId {
        let id = NodeId(u32::try_from(self.nodes.len()).unwrap_or(u32::MAX));
        self.nodes.push(node);
        id
    }

    /// The TorchScript class table, when this document is a TorchScript archive's `data.pkl`.
    pub fn script(&self) -> Option<&crate::torchscript::ScriptClasses> {
        self.script.as_deref()
    }

    pub(crate) fn set_script(
        &mut self,
        classes: std::sync::Arc<crate::torchscript::ScriptClasses>,
    ) {
        self.script = Some(classes);
    }

    /// The class of a dict-like object that [`Doc::view`] shows as its attribute dict:
    /// `argparse.Namespace` or a Lightning `AttributeDict` (short names), so summaries can say
    /// `Namespace[45]` instead of `dict[45]`. Reads the pickle value itself, before aliases.
    pub fn mapping_class(&self, id: NodeId) -> Option<&'static str> {
        let Value::Object(o) = self.pickle.get(id) else {
            return None;
        };
        let callee = match self.pickle.get(o.callee) {
            Value::Global(g) => g,
            _ => return None,
        };
        if callee.is("argparse", "Namespace") {
            return Some("Namespace");
        }
        if callee.name == "AttributeDict" && DICT_CLASSES.contains(&callee.qualname().as_str()) {
            return Some("AttributeDict");
        }
        // Protocol 0/1: copyreg._reconstructor(cls, object, None) + BUILD.
        if callee.is("copyreg", "_reconstructor")
            && let Some(cls) = self.pickle.as_seq(o.args).and_then(|a| a.first())
            && let Value::Global(g) = self.pickle.get(*cls)
        {
            if g.is("argparse", "Namespace") {
                return Some("Namespace");
            }
            if g.name == "AttributeDict" && DICT_CLASSES.contains(&g.qualname().as_str()) {
                return Some("AttributeDict");
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node of `id` as classified, aliases not followed (`None` past the end).
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id.index())
    }

    /// Follow aliases (bounded: a hostile pickle can make an alias loop).
    pub fn resolve(&self, mut id: NodeId) -> NodeId {
        for _ in 0..64 {
            match self.nodes.get(id.index()) {
                Some(Node::Alias(next)) => id = *next,
                _ => return id,
            }
        }
        id
    }

    /// The storage of every node, in node order, as `view` shows it (a tensor's, or the
    /// storage itself; an alias gives its target's again): what `view` of each id in
    /// `0..len` would give, without reading the plain values, which hold none.
    pub(crate) fn storages(&self) -> impl Iterator<Item = &StorageRef> + '_ {
        (0..self.nodes.len())
            .filter(|i| self.nodes.stored(*i))
            .filter_map(|i| match self.view(NodeId(i as u32)) {
                View::Tensor(t) => t.storage.as_ref(),
                View::Storage(s) => Some(s),
                _ => None,
            })
    }

    /// What node `id` is, aliases followed.
    pub fn view(&self, id: NodeId) -> View<'_> {
        let id = self.resolve(id);
        match self.nodes.get(id.index()) {
            None => View::None,
            Some(Node::Plain) => match self.pickle.get(id) {
                Value::None => View::None,
                Value::Bool(b) => View::Bool(b),
                Value::Int(i) => View::Int(i),
                Value::BigInt(b) => View::BigInt(b),
                Value::Float(f) => View::Float(f),
                Value::Str(s) => View::Str(s),
                Value::Bytes(b) | Value::ByteArray(b) => View::Bytes(b),
                Value::Tuple(t) => View::Tuple(t),
                Value::List(l) => View::List(l),
                Value::Dict(d) => View::Dict(d),
                Value::Set(s) | Value::FrozenSet(s) => View::Set(s),
                Value::PersId(_) => View::Opaque("persistent id"),
                Value::Extension(_) => View::Opaque("extension code"),
                Value::Global(g) => View::Class(g),
                // Objects are always classified into other nodes.
                Value::Object(_) => View::Opaque("object"),
            },
            Some(Node::Alias(_)) => View::Opaque("alias loop"),
            Some(Node::None) => View::None,
            Some(Node::Bool(b)) => View::Bool(*b),
            Some(Node::Int(i)) => View::Int(*i),
            Some(Node::Float(f)) => View::Float(*f),
            Some(Node::Complex(r, i)) => View::Complex(*r, *i),
            Some(Node::Str(s)) => View::Str(s),
            Some(Node::Bytes(b)) => View::Bytes(b),
            Some(Node::List(l)) => View::List(l),
            Some(Node::Dict(d)) => View::Dict(d),
            Some(Node::Set(s)) => View::Set(s),
            Some(Node::Tensor(t)) => View::Tensor(t),
            Some(Node::NdArray(a)) => View::NdArray(a),
            Some(Node::Object(o)) => View::Object(o),
            Some(Node::Storage(s)) => View::Storage(s),
        }
    }

    /// The string at `id`, if it is one.
    pub fn as_str(&self, id: NodeId) -> Option<&str> {
        match self.view(id) {
            View::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Entries of a dict-like node.
    pub fn dict(&self, id: NodeId) -> Option<&[(NodeId, NodeId)]> {
        match self.view(id) {
            View::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Value of a string key in a dict-like node.
    pub fn get(&self, id: NodeId, key: &str) -> Option<NodeId> {
        self.dict(id)?
            .iter()
            .find(|(k, _)| self.as_str(*k) == Some(key))
            .map(|(_, v)| *v)
    }

    /// Follow a dotted path of string keys (and list indices) from `id`.
    pub fn at_path(&self, id: NodeId, path: &str) -> Option<NodeId> {
        let mut cur = id;
        if path.is_empty() {
            return Some(cur);
        }
        for part in path.split('.') {
            cur = match self.view(cur) {
                View::Dict(items) => items
                    .iter()
                    .find(|(k, _)| self.key_matches(*k, part))
                    .map(|(_, v)| *v)?,
                View::List(items) | View::Tuple(items) => {
                    let i: usize = part.parse().ok()?;
                    *items.get(i)?
                }
                View::Object(o) => {
                    let s = o.state?;
                    self.get(s, part)?
                }
                _ => return None,
            };
        }
        Some(cur)
    }

    fn key_matches(&self, k: NodeId, part: &str) -> bool {
        match self.view(k) {
            View::Str(s) => s == part,
            View::Int(i) => part.parse::<i64>().ok() == Some(i),
            _ => false,
        }
    }

    /// Numeric value of a scalar node (ints, floats, bools).
    pub fn as_f64(&self, id: NodeId) -> Option<f64> {
        match self.view(id) {
            View::Int(i) => Some(i as f64),
            View::Float(f) => Some(f),
            View::Bool(b) => Some(f64::from(u8::from(b))),
            View::BigInt(b) => Some(b.to_f64()),
            _ => None,
        }
    }

    /// Integer value of a node.
    pub fn as_i64(&self, id: NodeId) -> Option<i64> {
        match self.view(id) {
            View::Int(i) => Some(i),
            View::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }
}

struct Classifier<'p> {
    p: &'p Pickle,
    style: PersIdStyle,
}

type CResult<T> = Result<T, ClassifyError>;

fn torch_module(module: &str) -> bool {
    module == "torch" || module.starts_with("torch.")
}

fn is_numpy_multiarray(g: &Global) -> bool {
    matches!(
        g.module.as_str(),
        "numpy.core.multiarray" | "numpy._core.multiarray"
    )
}

const DICT_CLASSES: &[&str] = &[
    "collections.OrderedDict",
    "collections.defaultdict",
    "collections.Counter",
    "builtins.dict",
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
];

impl Classifier<'_> {
    fn err(&self, offset: u64, what: &'static str, detail: impl Into<String>) -> ClassifyError {
        ClassifyError {
            offset,
            what,
            detail: detail.into(),
        }
    }

    fn classify(&self, id: ValueId) -> CResult<Node> {
        Ok(match self.p.get(id) {
            Value::Global(g) => self.global_value(g),
            Value::Object(o) => self.object(id, o)?,
            Value::PersId(pid) => match self.storage_from_pid(*pid, 0)? {
                Some(s) => Node::Storage(Box::new(s)),
                None => Node::Plain,
            },
            _ => Node::Plain,
        })
    }

    /// A global used as a value. torch dtypes become their names (`torch.float16` →
    /// "float16", as `str(dtype)` minus the prefix); anything else stays plain and is viewed
    /// as a class reference ([`View::Class`]).
    fn global_value(&self, g: &Global) -> Node {
        if g.module == "torch"
            && let Some(dt) = DType::from_name(&g.name)
        {
            return Node::Str(dt.name().to_owned());
        }
        Node::Plain
    }

    fn args_of(&self, o: &ckpt_pickle::Object) -> &[ValueId] {
        self.p.as_seq(o.args).unwrap_or(&[])
    }

    fn object(&self, id: ValueId, o: &ckpt_pickle::Object) -> CResult<Node> {
        let args = self.args_of(o);
        let Some(g) = self.p.as_global(o.callee) else {
            // e.g. getattr(module, "eval")(...): name what computed the callee.
            let what = match self.p.get(o.callee) {
                Value::Object(inner) => match self.p.as_global(inner.callee) {
                    Some(ig) => format!("<result of {}(...)>", ig.qualname()),
                    None => "<result of a call>".to_owned(),
                },
                other => format!("<{}>", other.kind()),
            };
            return Ok(self.generic(o, what));
        };
        // ---- tensors (before the name is formatted: most calls of a checkpoint are these)
        if torch_module(&g.module)
            && let Some(t) = self.tensor_call(g, args, o.offset, 0)?
        {
            return Ok(Node::Tensor(Box::new(t)));
        }
        // `collections.OrderedDict()`: every tensor's backward hooks, hundreds of calls a
        // checkpoint, a dict whatever else the name would be matched against.
        if g.is("collections", "OrderedDict") {
            return Ok(self.dict_call(o, args, "collections.OrderedDict"));
        }
        g.with_qualname(|qn| self.named_object(id, o, g, args, qn))
    }

    /// [`Classifier::object`] for a call of a named global, `qn` its qualified name.
    fn named_object(
        &self,
        id: ValueId,
        o: &ckpt_pickle::Object,
        g: &Global,
        args: &[ValueId],
        qn: &str,
    ) -> CResult<Node> {
        match qn {
            "torch.Size" => {
                if let Some(first) = args.first() {
                    return Ok(Node::Alias(*first));
                }
                return Ok(Node::List(Vec::new()));
            }
            "torch.device" => {
                let ty = args
                    .first()
                    .and_then(|a| self.p.as_str(*a))
                    .unwrap_or("cpu");
                let s = match args.get(1).and_then(|a| self.p.as_i64(*a)) {
                    Some(i) => format!("{ty}:{i}"),
                    None => ty.to_owned(),
                };
                return Ok(Node::Str(s));
            }
            "_codecs.encode" => {
                if let Some(b) = self.codecs_encode(args) {
                    return Ok(Node::Bytes(b));
                }
            }
            "builtins.bytearray" | "builtins.bytes" => match args.first().map(|a| self.p.get(*a)) {
                Some(Value::Bytes(b)) => return Ok(Node::Bytes(b.to_vec())),
                None => return Ok(Node::Bytes(Vec::new())),
                Some(Value::Object(inner)) => {
                    if let Some(b) = self.p.as_global(inner.callee).and_then(|ig| {
                        ig.is("_codecs", "encode")
                            .then(|| self.codecs_encode(self.args_of(inner)))
                            .flatten()
                    }) {
                        return Ok(Node::Bytes(b));
                    }
                }
                Some(Value::Str(s)) if args.len() >= 2 => {
                    return Ok(Node::Bytes(s.as_bytes().to_vec()));
                }
                _ => {}
            },
            "builtins.set" | "builtins.frozenset" => {
                return Ok(match args.first() {
                    Some(a) => match self.p.get(*a) {
                        Value::List(v) | Value::Tuple(v) | Value::Set(v) | Value::FrozenSet(v) => {
                            Node::Set(v.to_vec())
                        }
                        _ => self.generic(o, qn.to_owned()),
                    },
                    None => Node::Set(Vec::new()),
                });
            }
            "builtins.complex" => {
                let re = args.first().and_then(|a| self.num(*a)).unwrap_or(0.0);
                let im = args.get(1).and_then(|a| self.num(*a)).unwrap_or(0.0);
                return Ok(Node::Complex(re, im));
            }
            "argparse.Namespace" => {
                if let Some(s) = o.state
                    && matches!(self.p.get(s), Value::Dict(_))
                {
                    return Ok(Node::Alias(s));
                }
                return Ok(Node::Dict(o.dict_items.clone()));
            }
            // TorchScript's list and type tags (`torch/jit/_pickle.py`): each returns its
            // first argument unchanged (the tag only matters to the C++ unpickler's types).
            "torch.jit._pickle.build_intlist"
            | "torch.jit._pickle.build_tensorlist"
            | "torch.jit._pickle.build_doublelist"
            | "torch.jit._pickle.build_boollist"
            | "torch.jit._pickle.restore_type_tag" => {
                if let Some(first) = args.first() {
                    return Ok(Node::Alias(*first));
                }
            }
            "copyreg._reconstructor" => {
                // Protocol 0/1 objects: _reconstructor(cls, base, state) + BUILD.
                let class = args
                    .first()
                    .and_then(|a| self.p.as_global(*a))
                    .map(|g| g.qualname())
                    .unwrap_or_else(|| "<unknown>".into());
                if DICT_CLASSES.contains(&class.as_str()) || !o.dict_items.is_empty() {
                    return Ok(Node::Dict(o.dict_items.clone()));
                }
                return Ok(Node::Object(Box::new(ObjectNode {
                    class,
                    args: Vec::new(),
                    state: o.state,
                    construct: o.construct,
                })));
            }
            _ => {}
        }

        // ---- numpy
        if is_numpy_multiarray(g) {
            if g.name == "scalar"
                && let Some(n) = self.numpy_scalar(args)
            {
                return Ok(n);
            }
            if g.name == "_reconstruct"
                && let Some(n) = self.numpy_array(o)
            {
                return Ok(n);
            }
        }
        if matches!(
            g.module.as_str(),
            "numpy.core.numeric" | "numpy._core.numeric"
        ) && g.name == "_frombuffer"
            && let Some(n) = self.numpy_frombuffer(args)
        {
            return Ok(n);
        }

        // ---- omegaconf containers and value nodes: unwrap to their content
        if g.module.starts_with("omegaconf")
            && let Some(state) = o.state
        {
            if let Some(content) = self.p.dict_get(state, "_content") {
                return Ok(Node::Alias(content));
            }
            if let Some(val) = self.p.dict_get(state, "_val") {
                return Ok(Node::Alias(val));
            }
        }

        // ---- dict and list subclasses
        if DICT_CLASSES.contains(&qn) || (!o.dict_items.is_empty() && o.list_items.is_empty()) {
            let _ = id;
            return Ok(self.dict_call(o, args, qn));
        }
        if !o.list_items.is_empty() && o.dict_items.is_empty() {
            return Ok(Node::List(o.list_items.clone()));
        }

        Ok(self.generic(o, qn.to_owned()))
    }

    /// A call of a dict class (`qn`) as a dict: its items from the arguments the class takes
    /// them in and from SETITEMS.
    fn dict_call(&self, o: &ckpt_pickle::Object, args: &[ValueId], qn: &str) -> Node {
        {
            let mut items: Vec<(ValueId, ValueId)> = Vec::new();
            // Old OrderedDict pickles pass the items as a list of pairs.
            if qn != "collections.defaultdict"
                && let Some(first) = args.first()
                && let Some(pairs) = self.p.as_seq(*first)
            {
                for pair in pairs {
                    if let Some([k, v]) = self
                        .p
                        .as_seq(*pair)
                        .and_then(|s| s.get(..2))
                        .map(|s| [s[0], s[1]])
                    {
                        items.push((k, v));
                    }
                }
            }
            if qn == "builtins.dict"
                && let Some(first) = args.first()
                && let Value::Dict(d) = self.p.get(*first)
            {
                items.extend(d.iter().copied());
            }
            if qn == "collections.Counter"
                && let Some(first) = args.first()
                && let Value::Dict(d) = self.p.get(*first)
            {
                items.extend(d.iter().copied());
            }
            items.extend(o.dict_items.iter().copied());
            Node::Dict(items)
        }
    }

    fn generic(&self, o: &ckpt_pickle::Object, class: String) -> Node {
        Node::Object(Box::new(ObjectNode {
            class,
            args: self.args_of(o).to_vec(),
            state: o.state,
            construct: o.construct,
        }))
    }

    fn num(&self, id: ValueId) -> Option<f64> {
        match self.p.get(id) {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            Value::Bool(b) => Some(f64::from(u8::from(b))),
            _ => None,
        }
    }

    /// `_codecs.encode(text, 'latin1')`: how protocol 2 spells bytes.
    fn codecs_encode(&self, args: &[ValueId]) -> Option<Vec<u8>> {
        let text = self.p.as_str(*args.first()?)?;
        let enc = args
            .get(1)
            .and_then(|a| self.p.as_str(*a))
            .unwrap_or("utf-8")
            .to_ascii_lowercase()
            .replace(['-', '_'], "");
        match enc.as_str() {
            "latin1" | "latin" | "iso88591" | "l1" => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect(),
            "utf8" => Some(text.as_bytes().to_vec()),
            "ascii" => text.is_ascii().then(|| text.as_bytes().to_vec()),
            _ => None,
        }
    }

    /// Raw bytes of a value that is bytes or `_codecs.encode(...)`.
    fn bytes_of(&self, id: ValueId) -> Option<Cow<'_, [u8]>> {
        match self.p.get(id) {
            Value::Bytes(b) | Value::ByteArray(b) => Some(Cow::Borrowed(b)),
            Value::Object(o) => {
                let g = self.p.as_global(o.callee)?;
                if g.is("_codecs", "encode") {
                    self.codecs_encode(self.args_of(o)).map(Cow::Owned)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn ints(&self, id: ValueId) -> Option<Vec<i64>> {
        let seq: &[ValueId] = match self.p.get(id) {
            Value::Tuple(s) | Value::List(s) => s,
            Value::Object(o) => {
                // torch.Size((2, 3))
                let g = self.p.as_global(o.callee)?;
                if g.is("torch", "Size") {
                    return self.ints(*self.args_of(o).first()?);
                }
                return None;
            }
            _ => return None,
        };
        seq.iter().map(|v| self.p.as_i64(*v)).collect()
    }

    fn dtype_of(&self, id: ValueId) -> Option<DType> {
        let g = self.p.as_global(id)?;
        if g.module == "torch" {
            DType::from_name(&g.name)
        } else {
            None
        }
    }

    /// Recognize torch's tensor rebuild functions. `depth` bounds nesting of wrappers
    /// (`_rebuild_parameter(_rebuild_tensor_v2(...))`).
    fn tensor_call(
        &self,
        g: &Global,
        args: &[ValueId],
        offset: u64,
        depth: u32,
    ) -> CResult<Option<TensorRef>> {
        if depth > 8 {
            return Err(self.err(offset, "tensor", "tensor wrappers nested too deeply"));
        }
        let bad = |detail: &str| self.err(offset, "tensor", format!("{}: {detail}", g.name));
        match g.name.as_str() {
            "_rebuild_tensor" | "_rebuild_tensor_v2" | "_rebuild_tensor_v3"
            | "_rebuild_qtensor" => {
                // _rebuild_qtensor(storage, offset, size, stride, quantizer_params, …): the
                // data is the integer representation, typed by the storage class.
                let need = if g.name == "_rebuild_tensor_v2" || g.name == "_rebuild_tensor_v3" {
                    6
                } else {
                    4
                };
                if args.len() < need {
                    return Err(bad(&format!(
                        "expected at least {need} arguments, got {}",
                        args.len()
                    )));
                }
                let Value::PersId(pid) = self.p.get(args[0]) else {
                    return Err(bad("first argument is not a storage"));
                };
                let explicit = if g.name == "_rebuild_tensor_v3" {
                    Some(
                        args.get(6)
                            .and_then(|a| self.dtype_of(*a))
                            .ok_or_else(|| bad("missing dtype"))?,
                    )
                } else {
                    None
                };
                let storage = self
                    .storage_from_pid(*pid, offset)?
                    .ok_or_else(|| bad("unrecognized storage persistent id"))?;
                let dtype = explicit.unwrap_or(storage.dtype);
                let off = self
                    .p
                    .as_i64(args[1])
                    .and_then(|v| u64::try_from(v).ok())
                    .ok_or_else(|| bad("storage offset is not a non-negative int"))?;
                let shape = self
                    .ints(args[2])
                    .ok_or_else(|| bad("size is not a tuple of ints"))?;
                let stride = self
                    .ints(args[3])
                    .ok_or_else(|| bad("stride is not a tuple of ints"))?;
                if shape.len() != stride.len() {
                    return Err(bad("size and stride differ in length"));
                }
                let shape: Vec<u64> = shape
                    .into_iter()
                    .map(u64::try_from)
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("negative dimension"))?;
                let grad_arg = if g.name == "_rebuild_qtensor" { 5 } else { 4 };
                let requires_grad = args
                    .get(grad_arg)
                    .is_some_and(|a| matches!(self.p.get(*a), Value::Bool(true)));
                // Storage view offsets (legacy) are in bytes of the root storage.
                let extra = storage.view_offset_bytes / dtype.size().max(1);
                Ok(Some(TensorRef {
                    dtype,
                    shape,
                    stride,
                    offset: off.saturating_add(extra),
                    storage: Some(storage),
                    requires_grad,
                    kind: TensorKind::Tensor,
                }))
            }
            "_rebuild_parameter" | "_rebuild_parameter_with_state" => {
                let Some(data) = args.first() else {
                    return Err(bad("missing data"));
                };
                let Some(mut t) = self.tensor_of(*data, offset, depth + 1)? else {
                    return Err(bad("data is not a tensor"));
                };
                t.requires_grad = args
                    .get(1)
                    .is_some_and(|a| matches!(self.p.get(*a), Value::Bool(true)));
                t.kind = TensorKind::Parameter;
                Ok(Some(t))
            }
            "_rebuild_from_type_v2" | "_rebuild_from_type" => {
                // (func, new_type, args, state)
                let (Some(func), Some(new_type), Some(inner_args)) =
                    (args.first(), args.get(1), args.get(2))
                else {
                    return Err(bad("expected (func, type, args, state)"));
                };
                let Some(fg) = self.p.as_global(*func) else {
                    return Ok(None);
                };
                let inner = self.p.as_seq(*inner_args).unwrap_or(&[]);
                let Some(mut t) = self.tensor_call(fg, inner, offset, depth + 1)? else {
                    return Ok(None);
                };
                if let Some(nt) = self.p.as_global(*new_type) {
                    let name = nt.qualname();
                    t.kind = match name.as_str() {
                        "torch.Tensor" => t.kind,
                        "torch.nn.parameter.Parameter" => TensorKind::Parameter,
                        _ => TensorKind::Subclass(name),
                    };
                }
                Ok(Some(t))
            }
            "_rebuild_meta_tensor_no_storage" => {
                // (dtype, size, stride, requires_grad)
                let dtype = args
                    .first()
                    .and_then(|a| self.dtype_of(*a))
                    .ok_or_else(|| bad("missing dtype"))?;
                let shape = args
                    .get(1)
                    .and_then(|a| self.ints(*a))
                    .ok_or_else(|| bad("missing size"))?;
                let stride = args.get(2).and_then(|a| self.ints(*a)).unwrap_or_default();
                let shape: Vec<u64> = shape
                    .into_iter()
                    .map(u64::try_from)
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad("negative dimension"))?;
                Ok(Some(TensorRef {
                    dtype,
                    stride,
                    shape,
                    offset: 0,
                    storage: None,
                    requires_grad: false,
                    kind: TensorKind::Tensor,
                }))
            }
            _ => Ok(None),
        }
    }

    fn tensor_of(&self, id: ValueId, offset: u64, depth: u32) -> CResult<Option<TensorRef>> {
        let Value::Object(o) = self.p.get(id) else {
            return Ok(None);
        };
        let Some(g) = self.p.as_global(o.callee) else {
            return Ok(None);
        };
        if !torch_module(&g.module) {
            return Ok(None);
        }
        let _ = offset;
        self.tensor_call(g, self.args_of(o), o.offset, depth)
    }

    /// Parse a storage persistent id. `Ok(None)` when it is not a storage tuple at all.
    fn storage_from_pid(&self, pid: ValueId, offset: u64) -> CResult<Option<StorageRef>> {
        let Some(t) = self.p.as_seq(pid) else {
            return Ok(None);
        };
        if t.first().and_then(|v| self.p.as_str(*v)) != Some("storage") {
            return Ok(None);
        }
        let bad = |d: &str| self.err(offset, "storage id", d.to_owned());
        let need = match self.style {
            PersIdStyle::Zip => 5,
            PersIdStyle::Legacy => 6,
        };
        if t.len() < need.min(5) {
            return Err(bad("too few fields"));
        }
        let ty = self
            .p
            .as_global(t[1])
            .ok_or_else(|| bad("storage type is not a class"))?;
        let dtype = if ty.name == "UntypedStorage" {
            DType::U8
        } else if let Some(d) = DType::from_storage_class(&ty.name) {
            d
        } else {
            return Err(bad(&format!("unknown storage type {}", ty.qualname())));
        };
        let key = match self.p.get(t[2]) {
            Value::Str(s) => s.to_owned(),
            Value::Int(i) => i.to_string(),
            _ => return Err(bad("storage key is not a string")),
        };
        let location = match self.p.as_str(t[3]) {
            None | Some("cpu") => Cow::Borrowed("cpu"),
            Some(other) => Cow::Owned(other.to_owned()),
        };
        let numel = self
            .p
            .as_i64(t[4])
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| bad("storage size is not a non-negative int"))?;
        let mut view_offset_bytes = 0;
        if self.style == PersIdStyle::Legacy
            && let Some(view) = t.get(5)
            && let Some(vm) = self.p.as_seq(*view)
        {
            // (view_key, offset, view_size): offset in elements of the root storage.
            let off = vm
                .get(1)
                .and_then(|v| self.p.as_i64(*v))
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| bad("view offset is not an int"))?;
            view_offset_bytes = off.saturating_mul(dtype.size());
        }
        Ok(Some(StorageRef {
            key,
            dtype,
            numel,
            location,
            view_offset_bytes,
        }))
    }

    /// numpy dtype from a `numpy.dtype('f8', False, True)` object with BUILD state
    /// `(3, '<', …)`: (name, itemsize, kind char, little endian?).
    fn numpy_dtype(&self, id: ValueId) -> Option<(String, u64, char, bool)> {
        let Value::Object(o) = self.p.get(id) else {
            return None;
        };
        let g = self.p.as_global(o.callee)?;
        if g.name != "dtype" || !g.module.starts_with("numpy") {
            return None;
        }
        let code = self.p.as_str(*self.args_of(o).first()?)?;
        let order = o
            .state
            .and_then(|s| self.p.as_seq(s))
            .and_then(|s| s.get(1).copied())
            .and_then(|v| self.p.as_str(v))
            .unwrap_or("<");
        let little = order != ">";
        let kind = code.chars().next()?;
        // `kind` may be any character in a hostile file: slice after it, not after byte 1.
        let size: u64 = code.get(kind.len_utf8()..)?.parse().ok()?;
        let (name, itemsize) = match kind {
            'f' => (format!("float{}", size * 8), size),
            'i' => (format!("int{}", size * 8), size),
            'u' => (format!("uint{}", size * 8), size),
            'c' => (format!("complex{}", size * 8), size),
            'b' => ("bool".to_owned(), size),
            'U' => (format!("<U{size}"), size * 4),
            'S' => (format!("|S{size}"), size),
            'V' => (format!("|V{size}"), size),
            'M' => ("datetime64".to_owned(), size),
            'm' => ("timedelta64".to_owned(), size),
            _ => return None,
        };
        Some((name, itemsize, kind, little))
    }

    fn numpy_scalar(&self, args: &[ValueId]) -> Option<Node> {
        let (_, size, kind, little) = self.numpy_dtype(*args.first()?)?;
        let raw = self.bytes_of(*args.get(1)?)?;
        let raw: &[u8] = &raw;
        if raw.len() as u64 != size {
            return None;
        }
        let mut b = raw.to_vec();
        if !little {
            b.reverse();
        }
        let int = |b: &[u8], signed: bool| -> Option<i64> {
            let mut buf = [0u8; 8];
            let n = b.len().min(8);
            buf[..n].copy_from_slice(&b[..n]);
            if signed && b.last().is_some_and(|x| x & 0x80 != 0) {
                for x in buf.iter_mut().skip(n) {
                    *x = 0xff;
                }
            }
            let v = i64::from_le_bytes(buf);
            if !signed && n == 8 && v < 0 {
                return None;
            }
            Some(v)
        };
        Some(match (kind, size) {
            ('f', 8) => Node::Float(f64::from_le_bytes(b.try_into().ok()?)),
            ('f', 4) => Node::Float(f64::from(f32::from_le_bytes(b.try_into().ok()?))),
            ('f', 2) => Node::Float(f16_to_f64(u16::from_le_bytes(b.try_into().ok()?))),
            ('i', _) => Node::Int(int(&b, true)?),
            ('u', _) => Node::Int(int(&b, false)?),
            ('b', 1) => Node::Bool(b[0] != 0),
            ('c', 16) => Node::Complex(
                f64::from_le_bytes(b[..8].try_into().ok()?),
                f64::from_le_bytes(b[8..].try_into().ok()?),
            ),
            ('c', 8) => Node::Complex(
                f64::from(f32::from_le_bytes(b[..4].try_into().ok()?)),
                f64::from(f32::from_le_bytes(b[4..].try_into().ok()?)),
            ),
            _ => return None,
        })
    }

    /// `numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`: numpy's protocol-5
    /// array pickling.
    fn numpy_frombuffer(&self, args: &[ValueId]) -> Option<Node> {
        let data = self.bytes_of(*args.first()?)?.into_owned();
        let (dtype, itemsize, _, _) = self.numpy_dtype(*args.get(1)?)?;
        let shape: Vec<u64> = self
            .ints(*args.get(2)?)?
            .into_iter()
            .map(u64::try_from)
            .collect::<Result<_, _>>()
            .ok()?;
        let fortran_order = args.get(3).and_then(|a| self.p.as_str(*a)) == Some("F");
        Some(Node::NdArray(Box::new(NdArray {
            dtype,
            itemsize,
            shape,
            fortran_order,
            data: Some(data),
        })))
    }

    /// `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` + BUILD
    /// `(version, shape, dtype, is_fortran, data)`.
    fn numpy_array(&self, o: &ckpt_pickle::Object) -> Option<Node> {
        let state = self.p.as_seq(o.state?)?;
        let (shape_id, dtype_id, fortran_id, data_id) = match state.len() {
            5 => (state[1], state[2], state[3], state[4]),
            4 => (state[0], state[1], state[2], state[3]),
            _ => return None,
        };
        let shape: Vec<u64> = self
            .ints(shape_id)?
            .into_iter()
            .map(u64::try_from)
            .collect::<Result<_, _>>()
            .ok()?;
        let (dtype, itemsize, _, _) = self.numpy_dtype(dtype_id)?;
        let fortran_order = matches!(self.p.get(fortran_id), Value::Bool(true));
        let data = self.bytes_of(data_id).map(|c| c.into_owned());
        Some(Node::NdArray(Box::new(NdArray {
            dtype,
            itemsize,
            shape,
            fortran_order,
            data,
        })))
    }
}

/// IEEE half to double, for numpy float16 scalars.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 => {
            if frac == 0.0 {
                sign * f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

#[cfg(test)]
mod nodes_tests {
    use super::*;

    /// Plain nodes cost a bit each; the others are found by rank, across word boundaries.
    #[test]
    fn sparse_nodes_are_found_by_rank() {
        let mut n = Nodes::default();
        for i in 0..1000u32 {
            if i % 7 == 0 || i == 63 || i == 64 {
                n.push(Node::Int(i64::from(i)));
            } else {
                n.push(Node::Plain);
            }
        }
        assert_eq!(n.len(), 1000);
        for i in 0..1000u32 {
            let want = if i % 7 == 0 || i == 63 || i == 64 {
                Node::Int(i64::from(i))
            } else {
                Node::Plain
            };
            assert_eq!(n.get(i as usize), Some(&want), "node {i}");
        }
        assert_eq!(n.get(1000), None);
        let special = (0..1000u32)
            .filter(|i| i % 7 == 0 || *i == 63 || *i == 64)
            .count();
        assert_eq!(n.other.len(), special);
    }

    /// A hand-built document keeps its vector as the store; plain nodes still read as plain
    /// and nodes pushed afterwards are found after them.
    #[test]
    fn from_nodes_keeps_order_around_plain_nodes() {
        let nodes: Vec<Node> = (0..200)
            .map(|i| {
                if i % 3 == 0 {
                    Node::Plain
                } else {
                    Node::Int(i)
                }
            })
            .collect();
        let mut d = Doc::from_nodes(nodes, NodeId(199));
        let extra = d.push_node(Node::Str("x".into()));
        assert_eq!(extra, NodeId(200));
        for i in 0..200u32 {
            let want = if i % 3 == 0 {
                Some(&Node::Plain)
            } else {
                Some(&Node::Int(i64::from(i)))
            };
            assert_eq!(d.nodes.get(i as usize), want, "node {i}");
        }
        assert_eq!(d.as_str(extra), Some("x"));
    }
}
