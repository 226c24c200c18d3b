//! `ckpt.open(path)`: a checkpoint read lazily, like safetensors' `safe_open`. Opening
//! decodes the pickle (milliseconds, no tensor bytes); a key, a sub-mapping or one tensor is
//! rebuilt when asked for, from the same copy-on-write map of the file, and what was rebuilt
//! is kept so that a value reached twice is one object.

use std::sync::Mutex;

use ckpt_torch::{Checkpoint, NodeId, View};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::build::{Builder, State, TensorMode};

/// A checkpoint opened lazily (`ckpt.open`).
#[pyclass(name = "Checkpoint", module = "ckpt", frozen)]
pub(crate) struct Open {
    ck: Checkpoint,
    /// The scan made on opening (a dangerous file never gets this far).
    scan: ckpt_torch::scan_file::FileScan,
    shown: String,
    /// `tensors=` as given: decided (torch imported or not) when the first value is built.
    tensors: Option<String>,
    allow: Vec<String>,
    state: Mutex<State>,
}

impl Open {
    /// Rebuild node `id` (building on what earlier calls made).
    fn build(&self, py: Python<'_>, id: NodeId) -> PyResult<Py<PyAny>> {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mode = TensorMode::choose(py, self.tensors.as_deref())?;
        let state = std::mem::take(&mut *guard);
        let mut b = Builder::new(
            py,
            &self.ck,
            mode,
            true,
            self.allow.clone(),
            self.shown.clone(),
        )?
        .with_state(state);
        let r = b.build(id, 0);
        *guard = b.into_state();
        r
    }

    /// The (key, value) pairs of a mapping node, keys as text (`None` when not a mapping).
    fn pairs(&self, id: NodeId) -> Option<Vec<(String, NodeId)>> {
        let doc = &self.ck.doc;
        doc.dict(id).map(|p| {
            p.iter()
                .map(|(k, v)| {
                    let key = match doc.view(*k) {
                        View::Str(s) => s.to_owned(),
                        View::Int(i) => i.to_string(),
                        _ => format!("<{}>", k.0),
                    };
                    (key, *v)
                })
                .collect()
        })
    }

    /// Is node `id` a dict or an `OrderedDict` (kept lazy), rather than an object that reads
    /// as a mapping (a config, a Namespace: rebuilt whole)?
    fn plain_mapping(&self, id: NodeId) -> bool {
        let p = &self.ck.doc.pickle;
        if !matches!(self.ck.doc.view(id), View::Dict(_)) {
            return false;
        }
        if id.index() >= p.len() {
            return true;
        }
        match p.get(id) {
            ckpt_pickle::Value::Dict(_) => true,
            ckpt_pickle::Value::Object(o) => p
                .as_global(o.callee)
                .is_some_and(|g| g.qualname() == "collections.OrderedDict"),
            _ => false,
        }
    }

    /// A value: a mapping stays lazy, anything else is rebuilt now.
    fn value(slf: &Bound<'_, Self>, id: NodeId) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let me = slf.get();
        if me.plain_mapping(id) {
            return Ok(Py::new(
                py,
                Lazy {
                    owner: slf.clone().unbind(),
                    id,
                },
            )?
            .into_any());
        }
        me.build(py, id)
    }

    /// The parameters and persistent buffers of the module at `id` and its submodules, as
    /// (`prefix.name`, tensor node). `false` when `id` is not a module (no `_parameters`).
    fn module_entries(
        &self,
        id: NodeId,
        prefix: &str,
        out: &mut Vec<(String, NodeId)>,
        depth: usize,
    ) -> bool {
        const MAX_MODULE_DEPTH: usize = 256;
        let doc = &self.ck.doc;
        let View::Object(o) = doc.view(id) else {
            return false;
        };
        let Some(state) = o.state else {
            return false;
        };
        let Some(fields) = self.pairs(state) else {
            return false;
        };
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let Some(params) = field("_parameters") else {
            return false;
        };
        let skipped: Vec<String> = match field("_non_persistent_buffers_set").map(|s| doc.view(s)) {
            Some(View::Set(items) | View::List(items) | View::Tuple(items)) => items
                .iter()
                .filter_map(|i| doc.as_str(*i).map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        for (k, v) in self.pairs(params).unwrap_or_default() {
            if !matches!(doc.view(v), View::None) {
                out.push((format!("{prefix}{k}"), v));
            }
        }
        if let Some(buffers) = field("_buffers") {
            for (k, v) in self.pairs(buffers).unwrap_or_default() {
                if !matches!(doc.view(v), View::None) && !skipped.contains(&k) {
                    out.push((format!("{prefix}{k}"), v));
                }
            }
        }
        if depth < MAX_MODULE_DEPTH
            && let Some(modules) = field("_modules")
        {
            for (k, v) in self.pairs(modules).unwrap_or_default() {
                if !matches!(doc.view(v), View::None) {
                    self.module_entries(v, &format!("{prefix}{k}."), out, depth + 1);
                }
            }
        }
        true
    }

    /// A TorchScript archive's state dict, as `torch.jit.load(p).state_dict()` gives it:
    /// walked over the module tree of its `data.pkl` (module by module, depth first, each
    /// module's parameters then its buffers, a tensor tied to two modules under both
    /// names), with what a `__setstate__` that only unpacks its state puts where. `Ok(None)`
    /// when the file is not a TorchScript archive; an error when some module's state is
    /// computed by its TorchScript code (ckpt would have to run it).
    fn script_entries(&self, py: Python<'_>) -> PyResult<Option<Vec<(String, NodeId)>>> {
        use ckpt_torch::torchscript;
        let doc = &self.ck.doc;
        let root = doc.root();
        if self.ck.torchscript.is_none() || !torchscript::is_script_module(doc, root) {
            return Ok(None);
        }
        if let Some(entries) = torchscript::state_dict(doc, root) {
            return Ok(Some(entries));
        }
        let modules: Vec<String> = torchscript::unresolved_modules(doc, root)
            .into_iter()
            .map(|p| {
                if p.is_empty() {
                    "the root module".into()
                } else {
                    p
                }
            })
            .collect();
        Err(crate::error(
            py,
            "CkptError",
            (
                format!(
                    "{}: the state of {} is computed by its TorchScript __setstate__ while torch.jit.load runs it; ckpt never runs code, so its tensors cannot be named (load it with torch.jit.load if you trust it)",
                    self.shown,
                    modules.join(", ")
                ),
                self.shown.clone(),
            ),
        ))
    }

    /// The node at a dotted name (`state_dict.encoder.weight`): at each level the longest
    /// key that the rest of the name starts with (state-dict keys hold dots themselves).
    fn find(&self, id: NodeId, name: &str) -> Option<NodeId> {
        let pairs = self.pairs(id)?;
        if let Some((_, v)) = pairs.iter().find(|(k, _)| k == name) {
            return Some(*v);
        }
        let mut best: Option<(usize, NodeId)> = None;
        for (k, v) in &pairs {
            if name.len() > k.len()
                && name.starts_with(k.as_str())
                && name.as_bytes().get(k.len()) == Some(&b'.')
                && best.is_none_or(|(n, _)| k.len() > n)
            {
                best = Some((k.len(), *v));
            }
        }
        let (n, v) = best?;
        self.find(v, &name[n + 1..])
    }
}

#[pymethods]
impl Open {
    /// The top-level keys.
    fn keys(&self) -> Vec<String> {
        self.pairs(self.ck.doc.loaded_root())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    fn __contains__(&self, key: &str) -> bool {
        self.keys().iter().any(|k| k == key)
    }

    fn __len__(&self) -> usize {
        self.keys().len()
    }

    fn __iter__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let keys = PyList::new(slf.py(), slf.get().keys())?;
        Ok(keys.call_method0("__iter__")?.unbind())
    }

    /// A top-level value: a mapping (a state dict, hyperparameters) stays lazy.
    fn __getitem__(slf: &Bound<'_, Self>, key: &str) -> PyResult<Py<PyAny>> {
        let me = slf.get();
        let root = me.ck.doc.loaded_root();
        match me
            .pairs(root)
            .and_then(|p| p.into_iter().find(|(k, _)| k == key))
        {
            Some((_, v)) => Open::value(slf, v),
            None => Err(pyo3::exceptions::PyKeyError::new_err(key.to_owned())),
        }
    }

    /// One tensor (or any value) by dotted name, reading only its bytes:
    /// `ck.tensor("state_dict.encoder.weight")`.
    fn tensor(&self, py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
        match self.find(self.ck.doc.loaded_root(), name) {
            Some(id) => self.build(py, id),
            None => Err(pyo3::exceptions::PyKeyError::new_err(name.to_owned())),
        }
    }

    /// Everything, as `ckpt.load` returns it.
    fn load(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.build(py, self.ck.doc.loaded_root())
    }

    /// The weights as `model.state_dict()` would give them: for a pickled whole module
    /// (`torch.save(model)`, which `ckpt.load` refuses since rebuilding it means running its
    /// classes) its parameters and persistent buffers, named by their module paths, read from
    /// the module tree the pickle records; for a TorchScript archive (which `ckpt.load` refuses:
    /// `torch.jit.load` runs its code) what `torch.jit.load(p).state_dict()` gives, read from
    /// its pickles and code as data; for a Lightning checkpoint its `state_dict`; for a plain
    /// state dict, itself.
    fn state_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let doc = &self.ck.doc;
        let root = doc.loaded_root();
        if let View::Dict(_) = doc.view(root) {
            let id = self.find(root, "state_dict").unwrap_or(root);
            return self.build(py, id);
        }
        let mut entries = Vec::new();
        if let Some(script) = self.script_entries(py)? {
            entries = script;
        } else if !self.module_entries(root, "", &mut entries, 0) {
            return Err(crate::error(
                py,
                "FormatError",
                (
                    format!("{}: no module tree or state dict in it", self.shown),
                    self.shown.clone(),
                    None,
                ),
            ));
        }
        let out = py.import("collections")?.getattr("OrderedDict")?.call0()?;
        for (name, id) in entries {
            let t = self.build(py, id)?.into_bound(py);
            // state_dict() gives tensors detached from autograd, not Parameters.
            let t = if t.hasattr("detach")? {
                t.call_method0("detach")?
            } else {
                t
            };
            out.set_item(name, t)?;
        }
        Ok(out.unbind())
    }

    /// What `ckpt inspect` says about the file, as a dict (its `--format json`), from the
    /// pickle already decoded.
    fn summary(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        use ckpt_model::Summarize as _;
        let text = serde_json::to_string(&self.ck.summary())
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
    }

    /// What `ckpt scan` says about the file, as a dict (its `--format json` entry), from the
    /// scan made when the file was opened.
    fn scan(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let record = ckpt_torch::scan::ScanRecord::new(&self.ck.path, &self.scan);
        let text = serde_json::to_string(&record)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
    }

    /// The path as given.
    #[getter]
    fn path(&self) -> String {
        self.shown.clone()
    }

    /// `zip`, `legacy`, `pickle`, `torchscript`, `safetensors`.
    #[getter]
    fn format(&self) -> &'static str {
        self.ck.format_name()
    }

    fn __repr__(&self) -> String {
        format!(
            "<ckpt.Checkpoint {} ({})>",
            self.shown,
            self.ck.format_name()
        )
    }
}

/// A mapping inside a lazily opened checkpoint: its values are rebuilt when asked for.
#[pyclass(name = "LazyMapping", module = "ckpt", frozen)]
pub(crate) struct Lazy {
    owner: Py<Open>,
    id: NodeId,
}

#[pymethods]
impl Lazy {
    fn keys(&self, py: Python<'_>) -> Vec<String> {
        self.owner
            .bind(py)
            .get()
            .pairs(self.id)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.keys(py).len()
    }

    fn __contains__(&self, py: Python<'_>, key: &str) -> bool {
        self.keys(py).iter().any(|k| k == key)
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(PyList::new(py, self.keys(py))?
            .call_method0("__iter__")?
            .unbind())
    }

    fn __getitem__(&self, py: Python<'_>, key: &str) -> PyResult<Py<PyAny>> {
        let owner = self.owner.bind(py);
        match owner
            .get()
            .pairs(self.id)
            .and_then(|p| p.into_iter().find(|(k, _)| k == key))
        {
            Some((_, v)) => Open::value(owner, v),
            None => Err(pyo3::exceptions::PyKeyError::new_err(key.to_owned())),
        }
    }

    /// The (key, value) pairs, each value rebuilt as it is reached.
    fn items(&self, py: Python<'_>) -> PyResult<Vec<(String, Py<PyAny>)>> {
        let owner = self.owner.bind(py);
        let pairs = owner.get().pairs(self.id).unwrap_or_default();
        let mut out = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            out.push((k, Open::value(owner, v)?));
        }
        Ok(out)
    }

    /// The whole mapping rebuilt, as `ckpt.load` would give it.
    fn load(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.owner.bind(py).get().build(py, self.id)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<ckpt.LazyMapping of {} keys>", self.__len__(py))
    }
}

/// `ckpt.open(path, *, tensors=None, allow=())`.
#[pyfunction]
#[pyo3(signature = (path, *, tensors=None, allow=Vec::new()))]
pub(crate) fn open(
    py: Python<'_>,
    path: std::path::PathBuf,
    tensors: Option<String>,
    allow: Vec<String>,
) -> PyResult<Open> {
    let shown = path.display().to_string();
    let (ck, scan) = crate::open_and_scan(py, &path, &shown)?;
    if let Some(t) = tensors.as_deref()
        && t != "torch"
        && t != "numpy"
    {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "tensors={t:?}: expected \"torch\", \"numpy\" or None"
        )));
    }
    Ok(Open {
        ck,
        scan,
        tensors,
        allow,
        shown,
        state: Mutex::new(State::default()),
    })
}
