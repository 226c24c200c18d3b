//! Python objects from a decoded checkpoint, by a fixed table of safe constructions.
//!
//! Every value of the pickle is rebuilt from what ckpt's VM recorded (the callee's name, its
//! arguments, its state), never by calling the callee: a dict subclass becomes that class
//! built empty and filled, a Namespace gets its attributes set, a tensor is made over a
//! copy-on-write map of the file. Shared values stay shared (one Python object per pickle
//! value, looked up by id), so two names for one tensor are one tensor and a dict referenced
//! twice is one dict. A callee outside the table is refused (`UnsafeError`), unless the
//! caller allowed its name, and even then it is rebuilt only as an enum member by value, a
//! dataclass by its fields, or a `ckpt.Opaque` record.

use std::collections::{HashMap, HashSet};

use ckpt_pickle::{Global, Object, Value};
use ckpt_torch::{
    ByteOrder, Checkpoint, DType, NdArray, NodeId, StorageRef, TensorKind, TensorRef, View,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PySet, PyTuple};

use crate::error;

/// Deepest nesting rebuilt (the builder recurses once per level).
const MAX_DEPTH: usize = 2000;

/// What tensors become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TensorMode {
    Torch,
    Numpy,
}

impl TensorMode {
    /// `tensors=` as given: `"torch"`, `"numpy"`, or `None` (torch when it can be imported).
    pub(crate) fn choose(py: Python<'_>, asked: Option<&str>) -> PyResult<TensorMode> {
        match asked {
            Some("torch") => {
                py.import("torch")?;
                Ok(TensorMode::Torch)
            }
            Some("numpy") => Ok(TensorMode::Numpy),
            None => Ok(if py.import("torch").is_ok() {
                TensorMode::Torch
            } else {
                TensorMode::Numpy
            }),
            Some(other) => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "tensors={other:?}: expected \"torch\", \"numpy\" or None"
            ))),
        }
    }
}

/// Dict subclasses rebuilt as the class itself (Lightning's `AttributeDict` under each of its
/// import paths), falling back to a plain dict when the package is not installed.
const ATTRIBUTE_DICTS: &[&str] = &[
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
];

/// Classes whose instances the table rebuilds, which may also appear as values.
const KNOWN_CLASSES: &[&str] = &[
    "collections.OrderedDict",
    "collections.defaultdict",
    "argparse.Namespace",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
];

/// Builtin types that may appear as values (a `defaultdict`'s factory, a type recorded in
/// hyperparameters).
const BUILTIN_TYPES: &[&str] = &[
    "int",
    "float",
    "str",
    "bytes",
    "bool",
    "list",
    "dict",
    "set",
    "frozenset",
    "tuple",
    "complex",
    "bytearray",
    "object",
];

/// What a builder made so far: kept by a lazily read checkpoint (`ckpt.open`) between calls,
/// so a value reached twice is one object however it was reached.
#[derive(Default)]
pub(crate) struct State {
    /// One Python object per pickle value (or synthesized node).
    memo: HashMap<u32, Py<PyAny>>,
    /// Storages by key: a torch `UntypedStorage` or a numpy `uint8` array, shared by every
    /// tensor viewing it.
    storages: HashMap<String, Py<PyAny>>,
    /// The whole file, mapped copy-on-write, once.
    file_map: Option<Py<PyAny>>,
}

pub(crate) struct Builder<'py, 'a> {
    py: Python<'py>,
    ck: &'a Checkpoint,
    mode: TensorMode,
    mmap: bool,
    allow: HashSet<String>,
    path: String,
    state: State,
    /// Where tensors go (`map_location`), when not the CPU.
    device: Option<Py<PyAny>>,
}

impl<'py, 'a> Builder<'py, 'a> {
    pub(crate) fn new(
        py: Python<'py>,
        ck: &'a Checkpoint,
        mode: TensorMode,
        mmap: bool,
        allow: Vec<String>,
        path: String,
    ) -> PyResult<Builder<'py, 'a>> {
        Ok(Builder {
            py,
            ck,
            mode,
            mmap,
            allow: allow.into_iter().collect(),
            path,
            state: State::default(),
            device: None,
        })
    }

    /// Go on from what an earlier builder of the same checkpoint made.
    pub(crate) fn with_state(mut self, state: State) -> Self {
        self.state = state;
        self
    }

    /// What this builder made, for the next one.
    pub(crate) fn into_state(self) -> State {
        self.state
    }

    /// Send tensors to `loc` (what `torch.load`'s `map_location` takes: a device, a string;
    /// the CPU is where they already are).
    pub(crate) fn set_map_location(&mut self, loc: &Bound<'py, PyAny>) -> PyResult<()> {
        if self.mode != TensorMode::Torch {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "map_location needs tensors=\"torch\"",
            ));
        }
        let torch = self.py.import("torch")?;
        let dev = torch.getattr("device")?.call1((loc,))?;
        if dev.getattr("type")?.extract::<String>()? != "cpu" {
            self.device = Some(dev.unbind());
        }
        Ok(())
    }

    fn format_error(&self, what: String, offset: Option<u64>) -> PyErr {
        error(
            self.py,
            "FormatError",
            (format!("{}: {what}", self.path), self.path.clone(), offset),
        )
    }

    /// A TorchScript archive: `torch.load` hands it to `torch.jit.load`, which compiles and
    /// runs the archive's code. Refused whatever `allow` says; its weights are one call away.
    fn torchscript_error(&self, class: String) -> PyErr {
        error(
            self.py,
            "UnsafeError",
            (
                format!(
                    "{}: a TorchScript archive; torch.load would hand it to torch.jit.load, which \
                     compiles and runs the code inside it, so ckpt.load refuses it (nothing was \
                     run). Its parameters and buffers, as torch.jit.load(p).state_dict() gives \
                     them, are read without running anything by ckpt.open(p).state_dict()",
                    self.path
                ),
                self.path.clone(),
                vec![class],
            ),
        )
    }

    fn unsafe_error(&self, names: Vec<String>) -> PyErr {
        error(
            self.py,
            "UnsafeError",
            (
                format!(
                    "{}: loading it would import or call {}, which ckpt does not rebuild; \
                     refused, nothing was run (allow=[...] names the ones to rebuild safely)",
                    self.path,
                    names.join(", ")
                ),
                self.path.clone(),
                names,
            ),
        )
    }

    /// The Python object of node `id`.
    pub(crate) fn build(&mut self, id: NodeId, depth: usize) -> PyResult<Py<PyAny>> {
        if let Some(o) = self.state.memo.get(&id.0) {
            return Ok(o.clone_ref(self.py));
        }
        if depth > MAX_DEPTH {
            return Err(self.format_error(
                format!("values nested deeper than {MAX_DEPTH} levels"),
                None,
            ));
        }
        let pickle = &self.ck.doc.pickle;
        let raw = (id.index() < pickle.len()).then(|| pickle.get(id));
        let obj = match raw {
            Some(Value::Object(o)) => self.object(id, o, depth)?,
            Some(Value::Global(g)) => self.global_value(g)?,
            _ => self.view(id, depth)?,
        };
        self.state.memo.insert(id.0, obj.clone_ref(self.py));
        Ok(obj)
    }

    /// The callee of an object, as a global.
    fn callee(&self, o: &Object) -> Option<&'a Global> {
        self.ck.doc.pickle.as_global(o.callee)
    }

    fn object(&mut self, id: NodeId, o: &Object, depth: usize) -> PyResult<Py<PyAny>> {
        let py = self.py;
        if self.mode == TensorMode::Torch
            && self
                .callee(o)
                .is_some_and(|g| g.qualname() == "torch._utils._rebuild_qtensor")
            && let View::Tensor(t) = self.ck.doc.view(id)
        {
            let t = t.clone();
            return self.qtensor(&t, o, depth);
        }
        // What the classifier recognized (tensors, arrays, storages, complex numbers) is
        // built from its reading of the call.
        match self.ck.doc.view(id) {
            View::Tensor(_) | View::NdArray(_) | View::Storage(_) | View::Complex(..) => {
                return self.view(id, depth);
            }
            _ => {}
        }
        let Some(g) = self.callee(o) else {
            return Err(self.unsafe_error(vec!["<a call of a computed value>".into()]));
        };
        let q = g.qualname();
        match q.as_str() {
            "collections.OrderedDict" => {
                let d = py.import("collections")?.getattr("OrderedDict")?.call0()?;
                self.fill_mapping(id, &d, depth)
            }
            "collections.defaultdict" => {
                let factory = match o.args_first(&self.ck.doc.pickle) {
                    Some(f) => self.build(f, depth + 1)?.into_bound(py),
                    None => py.None().into_bound(py),
                };
                let d = py
                    .import("collections")?
                    .getattr("defaultdict")?
                    .call1((factory,))?;
                self.fill_mapping(id, &d, depth)
            }
            "argparse.Namespace" => {
                let ns = py.import("argparse")?.getattr("Namespace")?.call0()?;
                self.state.memo.insert(id.0, ns.clone().unbind());
                for (k, v) in self.pairs(id)? {
                    let key = self.build(k, depth + 1)?;
                    let val = self.build(v, depth + 1)?;
                    let name: String = key.extract(py).unwrap_or_else(|_| key.to_string());
                    ns.setattr(name.as_str(), val)?;
                }
                Ok(ns.unbind())
            }
            q if ATTRIBUTE_DICTS.contains(&q) => {
                let (module, name) = q.rsplit_once('.').unwrap_or(("", q));
                let d = match py.import(module).and_then(|m| m.getattr(name)) {
                    Ok(class) => class.call0()?,
                    Err(_) => PyDict::new(py).into_any(),
                };
                self.fill_mapping(id, &d, depth)
            }
            "omegaconf.dictconfig.DictConfig" | "omegaconf.listconfig.ListConfig" => {
                // The classifier reads the config's content (nodes unwrapped, interpolations
                // kept as written); OmegaConf builds the config from it through its public API.
                let content = self.view(id, depth)?;
                match py.import("omegaconf") {
                    Ok(m) => Ok(m
                        .getattr("OmegaConf")?
                        .call_method1("create", (content,))?
                        .unbind()),
                    Err(_) => Ok(content),
                }
            }
            "torch.Size" => {
                let inner = self.view(id, depth)?;
                match self.mode {
                    TensorMode::Torch => Ok(py
                        .import("torch")?
                        .getattr("Size")?
                        .call1((inner,))?
                        .unbind()),
                    TensorMode::Numpy => Ok(inner),
                }
            }
            "torch.device" => {
                let args = self.args(o, depth)?;
                match py.import("torch") {
                    Ok(t) => Ok(t.getattr("device")?.call1(args)?.unbind()),
                    Err(_) => Ok(args.get_item(0)?.unbind()),
                }
            }
            "numpy.dtype" => {
                let args = self.args(o, depth)?;
                let np = numpy(py)?;
                let mut dt = np.getattr("dtype")?.call1((args.get_item(0)?,))?;
                // state (3, '<', ...): the byte order.
                if let Some(state) = o.state
                    && let Some(items) = self.ck.doc.pickle.as_seq(state)
                    && let Some(order) = items.get(1).and_then(|i| self.ck.doc.pickle.as_str(*i))
                    && (order == "<" || order == ">")
                {
                    dt = dt.call_method1("newbyteorder", (order,))?;
                }
                Ok(dt.unbind())
            }
            "numpy.core.multiarray.scalar" | "numpy._core.multiarray.scalar" => {
                let args = self.args(o, depth)?;
                let np = numpy(py)?;
                let arr = np
                    .getattr("frombuffer")?
                    .call1((args.get_item(1)?, args.get_item(0)?))?;
                Ok(arr.get_item(0)?.unbind())
            }
            "builtins.slice" => {
                let args = self.args(o, depth)?;
                Ok(py
                    .import("builtins")?
                    .getattr("slice")?
                    .call1(args)?
                    .unbind())
            }
            "builtins.set" | "builtins.frozenset" | "builtins.bytearray" | "builtins.complex"
            | "_codecs.encode" | "builtins.bytes" => self.view(id, depth),
            // A config's value nodes: the classifier reads each as its value.
            q if q.starts_with("omegaconf.nodes.") => self.view(id, depth),
            q if self.allow.contains(q) => self.allowed(id, g, o, depth),
            q => Err(self.unsafe_error(vec![q.to_owned()])),
        }
    }

    /// The (key, value) pairs the classifier read for a mapping-like object.
    fn pairs(&self, id: NodeId) -> PyResult<Vec<(NodeId, NodeId)>> {
        match self.ck.doc.view(id) {
            View::Dict(p) => Ok(p.to_vec()),
            View::None => Ok(Vec::new()),
            other => {
                Err(self.format_error(format!("a mapping read as {}", view_kind(&other)), None))
            }
        }
    }

    /// Fill an empty mapping `d` (already the object for `id`) with the pairs read for `id`.
    fn fill_mapping(
        &mut self,
        id: NodeId,
        d: &Bound<'py, PyAny>,
        depth: usize,
    ) -> PyResult<Py<PyAny>> {
        self.state.memo.insert(id.0, d.clone().unbind());
        for (k, v) in self.pairs(id)? {
            let key = self.build(k, depth + 1)?;
            let val = self.build(v, depth + 1)?;
            d.set_item(key, val)?;
        }
        Ok(d.clone().unbind())
    }

    fn args(&mut self, o: &Object, depth: usize) -> PyResult<Bound<'py, PyTuple>> {
        let ids: Vec<NodeId> = self
            .ck
            .doc
            .pickle
            .as_seq(o.args)
            .map(<[NodeId]>::to_vec)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        for a in ids {
            out.push(self.build(a, depth + 1)?);
        }
        PyTuple::new(self.py, out)
    }

    /// A callee the caller allowed by name: an enum member by value, a dataclass by its
    /// fields, anything else a `ckpt.Opaque(cls, args, state)` record. Importing the class
    /// runs its module, which is what naming it in `allow` consents to; the class itself is
    /// never called with the pickle's arguments.
    fn allowed(&mut self, id: NodeId, g: &Global, o: &Object, depth: usize) -> PyResult<Py<PyAny>> {
        let py = self.py;
        let class = py
            .import(ckpt_pickle::normalize_module(&g.module))?
            .getattr(g.name.as_str())?;
        let args = self.args(o, depth)?;
        let is_enum = py
            .import("enum")?
            .getattr("EnumMeta")
            .and_then(|m| class.is_instance(&m))
            .unwrap_or(false);
        if is_enum && args.len() == 1 {
            return Ok(class.call1((args.get_item(0)?,))?.unbind());
        }
        let state = match o.state {
            Some(s) => self.build(s, depth + 1)?,
            None => py.None(),
        };
        let dataclasses = py.import("dataclasses")?;
        let is_dataclass = dataclasses
            .call_method1("is_dataclass", (&class,))?
            .is_truthy()?;
        if is_dataclass && state.bind(py).is_instance_of::<PyDict>() {
            let obj = py
                .import("builtins")?
                .getattr("object")?
                .call_method1("__new__", (&class,))?;
            self.state.memo.insert(id.0, obj.clone().unbind());
            let setattr = py
                .import("builtins")?
                .getattr("object")?
                .getattr("__setattr__")?;
            for (k, v) in state.bind(py).cast::<PyDict>()?.iter() {
                setattr.call1((&obj, k, v))?;
            }
            return Ok(obj.unbind());
        }
        Ok(py
            .import("ckpt")?
            .getattr("Opaque")?
            .call1((class, args, state))?
            .unbind())
    }

    /// A global used as a value (not called): torch dtypes, builtin types, allowed names.
    fn global_value(&mut self, g: &Global) -> PyResult<Py<PyAny>> {
        let py = self.py;
        let q = g.qualname();
        let module = ckpt_pickle::normalize_module(&g.module);
        if module == "torch" && DType::from_name(&g.name).is_some() {
            if let Ok(t) = py.import("torch") {
                return Ok(t.getattr(g.name.as_str())?.unbind());
            }
            return Ok(pyo3::types::PyString::new(py, &q).into_any().unbind());
        }
        if module == "torch"
            && matches!(
                g.name.as_str(),
                "per_tensor_affine" | "per_channel_affine" | "per_channel_affine_float_qparams"
            )
        {
            return Ok(py.import("torch")?.getattr(g.name.as_str())?.unbind());
        }
        if module == "builtins" && BUILTIN_TYPES.contains(&g.name.as_str()) {
            return Ok(py.import("builtins")?.getattr(g.name.as_str())?.unbind());
        }
        // Classes ckpt rebuilds instances of may also be values (Lightning records
        // `hparams_type`): returned when their package imports, as their name otherwise.
        let known = KNOWN_CLASSES.contains(&q.as_str()) || ATTRIBUTE_DICTS.contains(&q.as_str());
        if known || self.allow.contains(&q) {
            return match py.import(module).and_then(|m| m.getattr(g.name.as_str())) {
                Ok(c) => Ok(c.unbind()),
                Err(e) if known => {
                    drop(e);
                    Ok(pyo3::types::PyString::new(py, &q).into_any().unbind())
                }
                Err(e) => Err(e),
            };
        }
        Err(self.unsafe_error(vec![q]))
    }

    /// A plain value or a node the classifier made.
    fn view(&mut self, id: NodeId, depth: usize) -> PyResult<Py<PyAny>> {
        let py = self.py;
        let doc = &self.ck.doc;
        let target = doc.resolve(id);
        let raw = (target.index() < doc.pickle.len()).then(|| doc.pickle.get(target));
        Ok(match doc.view(id) {
            View::None => py.None(),
            View::Bool(b) => pyo3::types::PyBool::new(py, b)
                .to_owned()
                .into_any()
                .unbind(),
            View::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
            View::BigInt(b) => {
                let mut le: Vec<u8> = b.magnitude.iter().flat_map(|l| l.to_le_bytes()).collect();
                if le.is_empty() {
                    le.push(0);
                }
                let int = py.import("builtins")?.getattr("int")?;
                let mag = int.call_method1("from_bytes", (PyBytes::new(py, &le), "little"))?;
                if b.negative {
                    mag.neg()?.unbind()
                } else {
                    mag.unbind()
                }
            }
            View::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
            View::Complex(r, i) => py
                .import("builtins")?
                .getattr("complex")?
                .call1((r, i))?
                .unbind(),
            View::Str(s) => pyo3::types::PyString::new(py, s).into_any().unbind(),
            View::Bytes(b) => {
                if matches!(raw, Some(Value::ByteArray(_)))
                    || self.is_call_of(target, "builtins.bytearray")
                {
                    pyo3::types::PyByteArray::new(py, b).into_any().unbind()
                } else {
                    PyBytes::new(py, b).into_any().unbind()
                }
            }
            View::List(items) => {
                let items = items.to_vec();
                let l = PyList::empty(py);
                self.state.memo.insert(id.0, l.clone().into_any().unbind());
                for i in items {
                    l.append(self.build(i, depth + 1)?)?;
                }
                l.into_any().unbind()
            }
            View::Tuple(items) => {
                let items = items.to_vec();
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.build(i, depth + 1)?);
                }
                PyTuple::new(py, out)?.into_any().unbind()
            }
            View::Dict(pairs) => {
                let pairs = pairs.to_vec();
                let d = PyDict::new(py);
                self.state.memo.insert(id.0, d.clone().into_any().unbind());
                for (k, v) in pairs {
                    let key = self.build(k, depth + 1)?;
                    let val = self.build(v, depth + 1)?;
                    d.set_item(key, val)?;
                }
                d.into_any().unbind()
            }
            View::Set(items) => {
                let items = items.to_vec();
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.build(i, depth + 1)?);
                }
                if matches!(raw, Some(Value::FrozenSet(_)))
                    || self.is_call_of(target, "builtins.frozenset")
                {
                    pyo3::types::PyFrozenSet::new(py, &out)?.into_any().unbind()
                } else {
                    PySet::new(py, &out)?.into_any().unbind()
                }
            }
            View::Tensor(t) => {
                let t = t.clone();
                self.tensor(&t)?
            }
            View::NdArray(a) => {
                let a = a.clone();
                self.ndarray(&a)?
            }
            View::Storage(s) => {
                let s = s.clone();
                self.storage(&s)?
            }
            View::Class(g) => {
                let g = g.clone();
                self.global_value(&g)?
            }
            View::Object(o) => {
                let class = o.class.clone();
                if class == ckpt_torch::torchscript::RECURSIVE_SCRIPT_MODULE
                    && self.ck.torchscript.is_some()
                {
                    return Err(self.torchscript_error(class));
                }
                return Err(self.unsafe_error(vec![class]));
            }
            View::Opaque(what) => {
                return Err(self.format_error(format!("cannot rebuild {what}"), None));
            }
        })
    }

    fn is_call_of(&self, id: NodeId, qualname: &str) -> bool {
        match self.ck.doc.pickle.get(id) {
            Value::Object(o) => self.callee(o).is_some_and(|g| g.qualname() == qualname),
            _ => false,
        }
    }

    /// The whole file mapped copy-on-write (a torch `UntypedStorage` or a numpy memmap).
    fn file_map(&mut self) -> PyResult<Bound<'py, PyAny>> {
        if let Some(m) = &self.state.file_map {
            return Ok(m.bind(self.py).clone());
        }
        let py = self.py;
        let path = self.ck.path.display().to_string();
        let m = match self.mode {
            TensorMode::Torch => py
                .import("torch")?
                .getattr("UntypedStorage")?
                .call_method1("from_file", (path, false, self.ck.size))?,
            TensorMode::Numpy => {
                let kw = PyDict::new(py);
                kw.set_item("dtype", "uint8")?;
                kw.set_item("mode", "c")?;
                numpy(py)?.getattr("memmap")?.call((path,), Some(&kw))?
            }
        };
        self.state.file_map = Some(m.clone().unbind());
        Ok(m)
    }

    /// A storage's bytes as the tensors over it see them: a slice of the file's map, or (no
    /// map asked, or a big-endian file) a private copy.
    fn storage(&mut self, s: &StorageRef) -> PyResult<Py<PyAny>> {
        let py = self.py;
        let key = format!("{}@{}", s.key, s.view_offset_bytes);
        if let Some(st) = self.state.storages.get(&key) {
            return Ok(st.clone_ref(py));
        }
        let nbytes = s
            .numel
            .checked_mul(s.dtype.size())
            .and_then(|n| s.view_offset_bytes.checked_add(n).map(|end| (n, end)));
        let Some((nbytes, end)) = nbytes else {
            return Err(self.format_error(
                format!("storage {} claims more bytes than can exist", s.key),
                None,
            ));
        };
        let short = |len: u64| {
            format!(
                "storage {} claims {} elements of {} but holds {len} bytes",
                s.key,
                s.numel,
                s.dtype.name()
            )
        };
        let swap = self.ck.byteorder == ByteOrder::Big && s.dtype.swap_unit() > 1;
        let ck = self.ck;
        // Where the bytes are: a span of the file, or (a deflated zip member, which torch
        // inflates and nothing can map) the inflated member.
        let copied: Option<Vec<u8>> = match ck.storage_span(s) {
            Ok((offset, len)) => {
                if end > len {
                    return Err(self.format_error(short(len), None));
                }
                let start = offset + s.view_offset_bytes;
                // An object in a bucket cannot be mapped: its storages are read by ranges.
                if self.mmap && !swap && !ckpt_io::is_remote(&ck.path) {
                    let map = self.file_map()?;
                    let slice = pyo3::types::PySlice::new(
                        py,
                        isize::try_from(start).unwrap_or(isize::MAX),
                        isize::try_from(start + nbytes).unwrap_or(isize::MAX),
                        1,
                    );
                    let st = map.get_item(slice)?;
                    self.state.storages.insert(key, st.clone().unbind());
                    return Ok(st.unbind());
                }
                Some(
                    py.detach(|| ck.read_range(start, nbytes))
                        .map_err(|e| self.format_error(e.to_string(), None))?,
                )
            }
            Err(ckpt_torch::Error::Compressed { .. }) => {
                let all = py
                    .detach(|| ck.storage_inflated(s, end))
                    .map_err(|e| self.format_error(e.to_string(), None))?;
                if (all.len() as u64) < end {
                    return Err(self.format_error(short(all.len() as u64), None));
                }
                let from = usize::try_from(s.view_offset_bytes).unwrap_or(usize::MAX);
                all.get(from..).map(<[u8]>::to_vec)
            }
            Err(e) => return Err(self.format_error(e.to_string(), None)),
        };
        let mut bytes = copied.unwrap_or_default();
        bytes.truncate(usize::try_from(nbytes).unwrap_or(usize::MAX));
        if swap {
            let unit = usize::try_from(s.dtype.swap_unit()).unwrap_or(1);
            for chunk in bytes.chunks_exact_mut(unit) {
                chunk.reverse();
            }
        }
        let buf = pyo3::types::PyByteArray::new(py, &bytes);
        let st = match self.mode {
            TensorMode::Torch => {
                let torch = py.import("torch")?;
                let kw = PyDict::new(py);
                kw.set_item("dtype", torch.getattr("uint8")?)?;
                torch
                    .getattr("frombuffer")?
                    .call((buf,), Some(&kw))?
                    .call_method0("untyped_storage")?
            }
            TensorMode::Numpy => numpy(py)?.getattr("frombuffer")?.call1((buf, "uint8"))?,
        };
        self.state.storages.insert(key, st.clone().unbind());
        Ok(st.unbind())
    }

    fn tensor(&mut self, t: &TensorRef) -> PyResult<Py<PyAny>> {
        let py = self.py;
        if let TensorKind::Subclass(name) = &t.kind
            && !self.allow.contains(name)
        {
            return Err(self.unsafe_error(vec![name.clone()]));
        }
        if matches!(
            t.dtype,
            DType::QInt8 | DType::QUInt8 | DType::QInt32 | DType::QUInt4x2 | DType::QUInt2x4
        ) {
            return Err(error(
                py,
                "CkptError",
                (
                    format!("{}: quantized tensors are not rebuilt yet", self.path),
                    self.path.clone(),
                ),
            ));
        }
        match self.mode {
            TensorMode::Torch => self.torch_tensor(t),
            TensorMode::Numpy => self.numpy_tensor(t),
        }
    }

    /// A quantized tensor (`torch._utils._rebuild_qtensor`): an empty quantized tensor of the
    /// recorded scheme, scale(s) and zero point(s), set over the storage — torch's own public
    /// constructors, never the pickle's callee.
    fn qtensor(&mut self, t: &TensorRef, o: &Object, depth: usize) -> PyResult<Py<PyAny>> {
        let py = self.py;
        let torch = py.import("torch")?;
        let p = &self.ck.doc.pickle;
        let params: Vec<NodeId> = p
            .as_seq(o.args)
            .and_then(|a| a.get(4).copied())
            .and_then(|q| p.as_seq(q))
            .map(<[NodeId]>::to_vec)
            .unwrap_or_default();
        let scheme = params
            .first()
            .and_then(|s| p.as_global(*s))
            .map(|g| g.name.clone())
            .unwrap_or_default();
        let dtype = torch.getattr(t.dtype.name())?;
        let shape = PyTuple::new(py, &t.shape)?;
        let kw = PyDict::new(py);
        kw.set_item("dtype", &dtype)?;
        let empty = match (scheme.as_str(), params.as_slice()) {
            ("per_tensor_affine", [_, scale, zero_point]) => {
                kw.set_item("scale", self.build(*scale, depth + 1)?)?;
                kw.set_item("zero_point", self.build(*zero_point, depth + 1)?)?;
                torch
                    .getattr("_empty_affine_quantized")?
                    .call((shape.clone(),), Some(&kw))?
            }
            (
                "per_channel_affine" | "per_channel_affine_float_qparams",
                [_, scales, zero_points, axis],
            ) => {
                kw.set_item("scales", self.build(*scales, depth + 1)?)?;
                kw.set_item("zero_points", self.build(*zero_points, depth + 1)?)?;
                kw.set_item("axis", self.build(*axis, depth + 1)?)?;
                torch
                    .getattr("_empty_per_channel_affine_quantized")?
                    .call((shape.clone(),), Some(&kw))?
            }
            _ => {
                return Err(self.format_error(
                    format!("a quantized tensor with scheme {scheme:?} ckpt does not rebuild"),
                    Some(o.offset),
                ));
            }
        };
        let Some(s) = &t.storage else {
            return Ok(empty.unbind());
        };
        let storage = self.storage(s)?;
        let stride = PyTuple::new(py, &t.stride)?;
        Ok(empty
            .call_method1("set_", (storage, t.offset, shape, stride))?
            .unbind())
    }

    fn torch_tensor(&mut self, t: &TensorRef) -> PyResult<Py<PyAny>> {
        let py = self.py;
        let torch = py.import("torch")?;
        let dtype = torch.getattr(t.dtype.name())?;
        let shape = PyTuple::new(py, &t.shape)?;
        let stride = PyTuple::new(py, &t.stride)?;
        let tensor = match &t.storage {
            None => {
                let kw = PyDict::new(py);
                kw.set_item("dtype", &dtype)?;
                kw.set_item("device", "meta")?;
                torch
                    .getattr("empty_strided")?
                    .call((shape, stride), Some(&kw))?
            }
            Some(s) => {
                let storage = self.storage(s)?;
                let kw = PyDict::new(py);
                kw.set_item("dtype", &dtype)?;
                let empty = torch.getattr("empty")?.call(((0,),), Some(&kw))?;
                empty.call_method1("set_", (storage, t.offset, shape, stride))?
            }
        };
        let tensor = match &self.device {
            Some(d) => tensor.call_method1("to", (d.bind(py),))?,
            None => tensor,
        };
        let tensor = match t.kind {
            TensorKind::Parameter => torch
                .getattr("nn")?
                .getattr("Parameter")?
                .call1((tensor, t.requires_grad))?,
            _ if t.requires_grad => tensor.call_method1("requires_grad_", (true,))?,
            _ => tensor,
        };
        Ok(tensor.unbind())
    }

    fn numpy_tensor(&mut self, t: &TensorRef) -> PyResult<Py<PyAny>> {
        let py = self.py;
        let np = numpy(py)?;
        let dtype = numpy_dtype(py, t.dtype).map_err(|what| {
            error(
                py,
                "CkptError",
                (format!("{}: {what}", self.path), self.path.clone()),
            )
        })?;
        let item = t.dtype.size();
        let strides: Vec<i64> = t
            .stride
            .iter()
            .map(|s| s.saturating_mul(i64::try_from(item).unwrap_or(1)))
            .collect();
        let Some(s) = &t.storage else {
            return Ok(np
                .getattr("empty")?
                .call1((PyTuple::new(py, &t.shape)?, dtype))?
                .unbind());
        };
        let storage = self.storage(s)?;
        let kw = PyDict::new(py);
        kw.set_item("dtype", dtype)?;
        kw.set_item("buffer", storage)?;
        kw.set_item("offset", t.offset.saturating_mul(item))?;
        kw.set_item("strides", PyTuple::new(py, strides)?)?;
        Ok(np
            .getattr("ndarray")?
            .call((PyTuple::new(py, &t.shape)?,), Some(&kw))?
            .unbind())
    }

    /// A numpy array pickled inside the checkpoint (its bytes are in the pickle).
    fn ndarray(&mut self, a: &NdArray) -> PyResult<Py<PyAny>> {
        let py = self.py;
        let Some(data) = &a.data else {
            return Err(self.unsafe_error(vec![format!("numpy.ndarray of {}", a.dtype)]));
        };
        let np = numpy(py)?;
        let buf = pyo3::types::PyByteArray::new(py, data);
        let flat = np.getattr("frombuffer")?.call1((buf, a.dtype.as_str()))?;
        let kw = PyDict::new(py);
        kw.set_item("order", if a.fortran_order { "F" } else { "C" })?;
        Ok(flat
            .call_method("reshape", (PyTuple::new(py, &a.shape)?,), Some(&kw))?
            .unbind())
    }
}

/// numpy, or an error that says what to install: without torch, tensors are numpy arrays.
fn numpy(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("numpy").map_err(|_| {
        error(
            py,
            "CkptError",
            (
                "this checkpoint holds tensors or arrays: reading them needs torch or numpy \
                 (pip install numpy)"
                    .to_owned(),
                String::new(),
            ),
        )
    })
}

/// numpy's dtype for a torch dtype (bf16 and the float8 kinds through `ml_dtypes` when it is
/// installed).
fn numpy_dtype(py: Python<'_>, d: DType) -> Result<Bound<'_, PyAny>, String> {
    let np = numpy(py).map_err(|e| e.to_string())?;
    let plain = match d {
        DType::F64 => Some("float64"),
        DType::F32 => Some("float32"),
        DType::F16 => Some("float16"),
        DType::C64 => Some("complex64"),
        DType::C128 => Some("complex128"),
        DType::I8 => Some("int8"),
        DType::I16 => Some("int16"),
        DType::I32 => Some("int32"),
        DType::I64 => Some("int64"),
        DType::U8 => Some("uint8"),
        DType::U16 => Some("uint16"),
        DType::U32 => Some("uint32"),
        DType::U64 => Some("uint64"),
        DType::Bool => Some("bool"),
        _ => None,
    };
    if let Some(name) = plain {
        return np
            .getattr("dtype")
            .and_then(|f| f.call1((name,)))
            .map_err(|e| e.to_string());
    }
    let ml = match d {
        DType::BF16 => Some("bfloat16"),
        DType::F8E4M3FN => Some("float8_e4m3fn"),
        DType::F8E4M3FNUZ => Some("float8_e4m3fnuz"),
        DType::F8E5M2 => Some("float8_e5m2"),
        DType::F8E5M2FNUZ => Some("float8_e5m2fnuz"),
        _ => None,
    };
    match ml {
        Some(name) => py
            .import("ml_dtypes")
            .and_then(|m| m.getattr(name))
            .and_then(|t| np.getattr("dtype")?.call1((t,)))
            .map_err(|_| {
                format!(
                    "{} tensors as numpy arrays need ml_dtypes (or torch)",
                    d.name()
                )
            }),
        None => Err(format!("{} tensors have no numpy dtype", d.name())),
    }
}

fn view_kind(v: &View<'_>) -> &'static str {
    match v {
        View::None => "None",
        View::Bool(_) => "a bool",
        View::Int(_) | View::BigInt(_) => "an int",
        View::Float(_) => "a float",
        View::Complex(..) => "a complex",
        View::Str(_) => "a str",
        View::Bytes(_) => "bytes",
        View::List(_) => "a list",
        View::Tuple(_) => "a tuple",
        View::Dict(_) => "a dict",
        View::Set(_) => "a set",
        View::Tensor(_) => "a tensor",
        View::NdArray(_) => "an array",
        View::Object(_) => "an object",
        View::Class(_) => "a class",
        View::Storage(_) => "a storage",
        View::Opaque(_) => "something opaque",
    }
}

/// The first constructor argument of an object, if any.
trait FirstArg {
    fn args_first(&self, p: &ckpt_pickle::Pickle) -> Option<NodeId>;
}

impl FirstArg for Object {
    fn args_first(&self, p: &ckpt_pickle::Pickle) -> Option<NodeId> {
        p.as_seq(self.args).and_then(|a| a.first().copied())
    }
}
