//! What `ckpt inspect` shows: a checkpoint's shape at a glance, computed from the pickle plus
//! at most a few 0-d tensor reads (callback scores). Which of its mappings are state dicts,
//! and what their names say, is model knowledge: `ckpt-model` finds them and summarizes each
//! ([`StateDictSummary`]), and its `Summarize::summary` is what callers use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::container::{Checkpoint, Format};
use crate::doc::{Doc, NodeId, TensorRef, View};
use crate::pyrepr::key_str;

/// Top-level key and the kind of value under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyKind {
    pub key: String,
    pub kind: String,
}

/// A Lightning callback's state, in short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CallbackSummary {
    /// The key in `callbacks` (`ModelCheckpoint{'monitor': 'val/hmean', 'mode': 'max', ...}`).
    pub key: String,
    /// The class name part of the key (`ModelCheckpoint`, `EarlyStopping`).
    pub kind: String,
    pub monitor: Option<String>,
    pub mode: Option<String>,
    pub best_model_score: Option<f64>,
    pub current_score: Option<f64>,
    pub best_model_path: Option<String>,
    pub last_model_path: Option<String>,
    pub best_k_models: Option<usize>,
    /// Other scalar fields (EarlyStopping's `wait_count`, `patience` …).
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// Tensors of one dtype.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DTypeTotal {
    pub dtype: String,
    pub tensors: usize,
    pub elements: u64,
    pub bytes: u64,
}

/// A group of parameters sharing a name prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub prefix: String,
    pub tensors: usize,
    pub elements: u64,
}

/// A string → tensor mapping found in the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StateDictSummary {
    /// Dotted path from the top (`state_dict`, `model`; empty for the top level).
    pub path: String,
    pub tensors: usize,
    /// Elements, counting a storage shared by several names (tied weights) once.
    pub elements: u64,
    /// Bytes of tensor data, shared storages once.
    pub bytes: u64,
    pub by_dtype: Vec<DTypeTotal>,
    pub groups: Vec<Group>,
    /// Wrapper prefixes seen in names (`_fsdp_wrapped_module.`, `module.` …).
    pub wrapper_prefixes: Vec<String>,
    /// Names that share a storage with an earlier name (tied weights, views).
    pub shared: Vec<String>,
    /// Flattened FSDP parameters (`_flat_param`) present: not splittable without FSDP.
    pub flat_params: bool,
    /// Non-tensor entries in the mapping.
    pub other_entries: usize,
}

/// Optimizer and scheduler state, in short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OptimizerSummary {
    pub key: String,
    pub optimizers: usize,
    /// Per-parameter state fields seen (`exp_avg`, `momentum_buffer` …).
    pub state_fields: Vec<String>,
    pub param_groups: usize,
    pub lr: Vec<f64>,
}

/// A top-level `argparse.Namespace` or Lightning `AttributeDict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NamespaceSummary {
    pub key: String,
    /// `argparse.Namespace` or `AttributeDict`.
    pub class: String,
    pub fields: serde_json::Value,
}

/// One named tensor, without its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NamedTensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
}

/// What a TorchScript archive holds (see `crate::torchscript`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TorchScriptSummary {
    /// `__torch__.M` (as `data.pkl` names the root module's class) and its short name.
    pub qualified_name: Option<String>,
    pub original_name: Option<String>,
    /// Modules in the tree (depth first, as `state_dict()` walks it).
    pub modules: usize,
    /// Distinct module classes in the tree, in first-seen order.
    pub module_classes: Vec<String>,
    pub code_files: Vec<crate::torchscript::CodeFile>,
    pub code_bytes: u64,
    /// Classes that define a TorchScript `__setstate__`: `torch.jit.load` runs it while loading.
    pub setstate_classes: Vec<String>,
    /// Values in `constants.pkl` (what the code calls `CONSTANTS.cN`), and the tensors among
    /// them (shapes and dtypes; stored under `constants/`).
    pub constants: usize,
    pub constant_tensors: Vec<NamedTensor>,
    /// `named_parameters()` and `named_buffers()`, as `torch.jit.load` would return them;
    /// `None` when some module's state is set by TorchScript `__setstate__` (not known
    /// without running it).
    pub parameters: Option<Vec<NamedTensor>>,
    pub buffers: Option<Vec<NamedTensor>>,
    /// Other pickles in the archive (`traced_inputs.pkl` …).
    pub other_pickles: Vec<String>,
    /// `extra/…` files (`torch.jit.save(..., _extra_files=...)`), with stored sizes.
    pub extra_files: Vec<crate::torchscript::CodeFile>,
    /// Modules whose attributes TorchScript `__setstate__` sets at load (not run by ckpt, so
    /// their parameters are not listed).
    pub set_by_setstate: Vec<String>,
}

/// Everything `inspect` prints about a checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub path: String,
    pub format: String,
    pub zip_root: Option<String>,
    pub size_bytes: u64,
    pub pickle_protocol: u8,
    pub pickle_bytes: u64,
    /// Zip `version` record / legacy protocol version.
    pub format_version: Option<String>,
    pub byteorder: String,
    pub lightning_version: Option<String>,
    pub top_level: String,
    pub keys: Vec<KeyKind>,
    pub epoch: Option<i64>,
    pub global_step: Option<i64>,
    pub hparams_name: Option<String>,
    pub hyper_parameters: Option<serde_json::Value>,
    pub datamodule_hyper_parameters: Option<serde_json::Value>,
    pub callbacks: Vec<CallbackSummary>,
    pub state_dicts: Vec<StateDictSummary>,
    pub optimizers: Vec<OptimizerSummary>,
    pub lr_schedulers: Option<usize>,
    pub safetensors_metadata: BTreeMap<String, String>,
    /// Top-level `argparse.Namespace` / `AttributeDict` values (training args saved beside the
    /// weights), with their fields as `dump` maps them. `hyper_parameters` is shown on its own.
    pub namespaces: Vec<NamespaceSummary>,
    /// A TorchScript archive's module, code, constants, parameters and buffers.
    pub torchscript: Option<TorchScriptSummary>,
    /// Problems found while summarizing (a score that could not be read …).
    pub warnings: Vec<String>,
}

/// One element of `ckpt inspect --format json` (a list, one per input in the order given): a
/// checkpoint file's `Summary`, or a DCP directory's `DcpSummary`. Untagged: a reader tells
/// them apart by `format` (`dcp` for a directory). A stable contract: fields are only added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum InspectItem {
    File(Box<Summary>),
    Dcp(Box<DcpSummary>),
}

/// A `torch.distributed.checkpoint` directory, from its `.metadata` alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DcpSummary {
    pub path: String,
    /// Always `dcp`.
    pub format: String,
    pub version: Option<String>,
    /// Integer `epoch` / `step` entries saved beside the tensors, read in place.
    pub epoch: Option<i64>,
    pub global_step: Option<i64>,
    pub files: Vec<String>,
    pub tensors: usize,
    pub chunks: usize,
    /// Tensors stored in more than one chunk (sharded across ranks).
    pub sharded_tensors: usize,
    pub elements: u64,
    pub bytes: u64,
    pub by_dtype: Vec<DTypeTotal>,
    pub other_keys: Vec<String>,
}

impl DcpSummary {
    /// The summary of the DCP directory `dir` (reads its `.metadata`, and the few integer
    /// entries saved beside the tensors).
    pub fn open(dir: &std::path::Path) -> Result<DcpSummary, crate::Error> {
        let index = crate::dcp::DcpIndex::open(dir)?;
        let (elements, bytes) = index.totals();
        Ok(DcpSummary {
            path: dir.display().to_string(),
            format: "dcp".to_owned(),
            version: index.version.clone(),
            epoch: index.read_int("epoch"),
            global_step: index.step(),
            files: index.files.iter().cloned().collect(),
            tensors: index.tensors.len(),
            chunks: index.tensors.iter().map(|t| t.chunks.len()).sum(),
            sharded_tensors: index.tensors.iter().filter(|t| t.chunks.len() > 1).count(),
            elements,
            bytes,
            by_dtype: index.by_dtype(),
            other_keys: index.other.clone(),
        })
    }
}

/// A short human name for a node's kind.
pub fn kind_of(doc: &Doc, id: NodeId) -> String {
    // argparse.Namespace / AttributeDict: a dict to every reader, but say what it was.
    if let Some(class) = doc.mapping_class(id)
        && let Some(items) = doc.dict(id)
    {
        return format!("{class}[{}]", items.len());
    }
    match doc.view(id) {
        View::None => "None".into(),
        View::Bool(_) => "bool".into(),
        View::Int(_) | View::BigInt(_) => "int".into(),
        View::Float(_) => "float".into(),
        View::Complex(..) => "complex".into(),
        View::Str(_) => "str".into(),
        View::Bytes(b) => format!("bytes[{}]", b.len()),
        View::List(items) => format!("list[{}]", items.len()),
        View::Tuple(items) => format!("tuple[{}]", items.len()),
        View::Set(items) => format!("set[{}]", items.len()),
        View::Dict(items) => {
            let tensors = items
                .iter()
                .filter(|(_, v)| matches!(doc.view(*v), View::Tensor(_)))
                .count();
            if tensors > 0 && tensors * 2 >= items.len() {
                format!("state dict ({tensors} tensors)")
            } else {
                format!("dict[{}]", items.len())
            }
        }
        View::Tensor(t) => format!("tensor {} {:?}", t.dtype, t.shape),
        View::NdArray(a) => format!("ndarray {} {:?}", a.dtype, a.shape),
        View::Object(o) => format!("object {}", o.class),
        View::Class(c) => format!("class {c}"),
        View::Storage(_) => "storage".into(),
        View::Opaque(w) => w.into(),
    }
}

/// Small JSON rendering of a node for summaries (bounded; no tensor reads).
pub fn to_value(doc: &Doc, id: NodeId) -> serde_json::Value {
    let opts = crate::json::JsonOptions {
        max_nodes: 100_000,
        max_depth: 64,
        max_bytes: 8 << 20,
        indent: None,
    };
    let mut no_hash = |_: &TensorRef| Ok(None);
    match crate::json::to_json(doc, id, &opts, &mut no_hash) {
        Ok(s) => serde_json::from_str(&s).unwrap_or(serde_json::Value::Null),
        Err(e) => serde_json::Value::String(format!("<{e}>")),
    }
}

impl Checkpoint {
    /// Summarize this checkpoint (reads at most the callback scores' few bytes), with the state
    /// dicts `ckpt-model` found in it, the model's first. Call `ckpt_model::Summarize::summary`,
    /// which finds them.
    pub fn summary_with(&self, state_dicts: Vec<StateDictSummary>) -> Summary {
        let doc = &self.doc;
        let root = doc.root();
        let mut warnings = Vec::new();
        let get = |k: &str| doc.get(root, k);
        let keys: Vec<KeyKind> = doc
            .dict(root)
            .map(|items| {
                items
                    .iter()
                    .map(|(k, v)| KeyKind {
                        key: key_str(doc, *k),
                        kind: kind_of(doc, *v),
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.prefetch_scalars();
        let callbacks = get("callbacks")
            .map(|cb| self.callbacks(cb, &mut warnings))
            .unwrap_or_default();
        let optimizers = self.optimizers();
        let namespaces = doc
            .dict(root)
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, v)| {
                let key = key_str(doc, *k);
                let class = match doc.mapping_class(*v)? {
                    "Namespace" => "argparse.Namespace",
                    other => other,
                };
                (key != "hyper_parameters" && key != "datamodule_hyper_parameters").then(|| {
                    NamespaceSummary {
                        key,
                        class: class.to_owned(),
                        fields: to_value(doc, *v),
                    }
                })
            })
            .collect();
        let torchscript = self.torchscript_summary(&mut warnings);
        Summary {
            path: self.path.display().to_string(),
            format: self.format_name().to_owned(),
            zip_root: match &self.format {
                Format::Zip { root } => Some(root.clone()),
                _ => None,
            },
            size_bytes: self.size,
            pickle_protocol: doc.pickle.protocol,
            pickle_bytes: self.pickle_bytes,
            format_version: self.version.clone(),
            byteorder: match self.byteorder {
                crate::ByteOrder::Little => "little".into(),
                crate::ByteOrder::Big => "big".into(),
            },
            lightning_version: get("pytorch-lightning_version")
                .and_then(|v| doc.as_str(v))
                .map(str::to_owned),
            top_level: kind_of(doc, doc.loaded_root()),
            keys,
            epoch: get("epoch").and_then(|v| doc.as_i64(v)),
            global_step: get("global_step")
                .or_else(|| get("step"))
                .and_then(|v| doc.as_i64(v)),
            hparams_name: get("hparams_name")
                .and_then(|v| doc.as_str(v))
                .map(str::to_owned),
            hyper_parameters: get("hyper_parameters").map(|v| to_value(doc, v)),
            datamodule_hyper_parameters: get("datamodule_hyper_parameters")
                .map(|v| to_value(doc, v)),
            callbacks,
            state_dicts,
            optimizers,
            lr_schedulers: get("lr_schedulers").and_then(|v| match doc.view(v) {
                View::List(l) | View::Tuple(l) => Some(l.len()),
                _ => None,
            }),
            safetensors_metadata: self.safetensors_metadata.iter().cloned().collect(),
            namespaces,
            torchscript,
            warnings,
        }
    }

    fn torchscript_summary(&self, warnings: &mut Vec<String>) -> Option<TorchScriptSummary> {
        let ts = self.torchscript.as_deref()?;
        let doc = &self.doc;
        let root = doc.root();
        warnings.extend(ts.warnings.iter().cloned());
        let named = |items: Vec<(String, NodeId)>| -> Vec<NamedTensor> {
            items
                .into_iter()
                .filter_map(|(name, v)| match doc.view(v) {
                    View::Tensor(t) => Some(NamedTensor {
                        name,
                        dtype: t.dtype.name().to_owned(),
                        shape: t.shape.clone(),
                    }),
                    _ => None,
                })
                .collect()
        };
        let mods = crate::torchscript::modules(doc, root).unwrap_or_default();
        let mut module_classes: Vec<String> = Vec::new();
        for m in &mods {
            if !module_classes.contains(&m.class) {
                module_classes.push(m.class.clone());
            }
        }
        let set_by_setstate: Vec<String> = mods
            .iter()
            .filter(|m| !m.resolved)
            .map(|m| {
                if m.path.is_empty() {
                    "(root)".to_owned()
                } else {
                    m.path.clone()
                }
            })
            .collect();
        if !set_by_setstate.is_empty() {
            warnings.push(format!(
                "TorchScript __setstate__ sets the state of {} when torch.jit.load runs it; ckpt does not run code, so their parameters and buffers are not listed",
                set_by_setstate.join(", ")
            ));
        }
        let (mut constants, mut constant_tensors) = (0, Vec::new());
        if let Some(c) = &ts.constants {
            let items: Vec<NodeId> = match c.view(c.root()) {
                View::Tuple(items) | View::List(items) => items.to_vec(),
                _ => Vec::new(),
            };
            constants = items.len();
            for (i, v) in items.iter().enumerate() {
                if let View::Tensor(t) = c.view(*v) {
                    constant_tensors.push(NamedTensor {
                        name: format!("c{i}"),
                        dtype: t.dtype.name().to_owned(),
                        shape: t.shape.clone(),
                    });
                }
            }
        }
        let qualified_name = mods.first().map(|m| m.class.clone());
        let known = set_by_setstate.is_empty();
        Some(TorchScriptSummary {
            original_name: qualified_name
                .as_deref()
                .map(|q| crate::torchscript::original_name(q).to_owned()),
            qualified_name,
            modules: mods.len(),
            module_classes,
            code_bytes: ts.code_files.iter().map(|f| f.bytes).sum(),
            code_files: ts.code_files.clone(),
            setstate_classes: ts
                .classes
                .sorted()
                .into_iter()
                .filter(|c| c.has_setstate)
                .map(|c| c.qualname.clone())
                .collect(),
            constants,
            constant_tensors,
            parameters: known.then(|| named(crate::torchscript::named_parameters(doc, root))),
            buffers: known.then(|| named(crate::torchscript::named_buffers(doc, root))),
            other_pickles: ts.other_pickles.clone(),
            extra_files: ts.extra_files.clone(),
            set_by_setstate,
        })
    }

    /// A number at `id`: a Python int/float, or a one-element tensor (read: a few bytes).
    pub fn number(&self, id: NodeId) -> Result<Option<f64>, crate::Error> {
        match self.doc.view(id) {
            View::Tensor(t) if t.numel() == 1 => self.read_scalar(t, "scalar").map(Some),
            _ => Ok(self.doc.as_f64(id)),
        }
    }

    fn scalar(&self, doc: &Doc, id: NodeId, what: &str, warnings: &mut Vec<String>) -> Option<f64> {
        match doc.view(id) {
            View::Tensor(t) => match self.read_scalar(t, what) {
                Ok(v) => Some(v),
                Err(e) => {
                    warnings.push(e.to_string());
                    None
                }
            },
            _ => doc.as_f64(id),
        }
    }

    /// A hint for a remote source (nothing is done for a local file): the one-element
    /// tensors about to be read, the callbacks' scores (`best_model_score`, `current_score`,
    /// `kth_value` …) and the catalog's `cleval_metrics`, asked for at once. torch stores
    /// them mid-file, usually next to each other, so they cost one request instead of one
    /// each (issue 15's request plan: head, tail, scalars).
    fn prefetch_scalars(&self) {
        if !self.wants_hints() {
            return;
        }
        let doc = &self.doc;
        let root = doc.root();
        let mut ranges = Vec::new();
        let mut add = |id: NodeId| {
            if let View::Tensor(t) = doc.view(id)
                && t.numel() == 1
                && let Some(r) = t.storage.as_ref().and_then(|s| self.storage_hint(s))
            {
                ranges.push(r);
            }
        };
        if let Some(cb) = doc.get(root, "callbacks").and_then(|cb| doc.dict(cb)) {
            for (_, v) in cb {
                for (_, f) in doc.dict(*v).unwrap_or(&[]) {
                    add(*f);
                }
            }
        }
        for (_, v) in doc
            .get(root, "cleval_metrics")
            .and_then(|m| doc.dict(m))
            .unwrap_or(&[])
        {
            add(*v);
        }
        self.prefetch(&ranges);
    }

    fn callbacks(&self, cb: NodeId, warnings: &mut Vec<String>) -> Vec<CallbackSummary> {
        let doc = &self.doc;
        let Some(items) = doc.dict(cb) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in items {
            let key = key_str(doc, *k);
            let kind = key.split('{').next().unwrap_or(&key).to_owned();
            let field = |name: &str| doc.get(*v, name);
            let text = |name: &str| field(name).and_then(|x| doc.as_str(x)).map(str::to_owned);
            let mode = key
                .split("'mode': '")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .map(str::to_owned)
                .or_else(|| text("mode"));
            let best_k_models = field("best_k_models")
                .and_then(|x| doc.dict(x))
                .map(<[_]>::len);
            let mut fields = BTreeMap::new();
            const SHOWN: &[&str] = &[
                "monitor",
                "mode",
                "best_model_score",
                "current_score",
                "best_model_path",
                "last_model_path",
                "best_k_models",
            ];
            if let Some(fs) = doc.dict(*v) {
                for (fk, fv) in fs {
                    let name = key_str(doc, *fk);
                    if SHOWN.contains(&name.as_str()) {
                        continue;
                    }
                    let val = match doc.view(*fv) {
                        View::Tensor(t) if t.numel() == 1 => self
                            .scalar(doc, *fv, &format!("callbacks.{kind}.{name}"), warnings)
                            .map(serde_json::Value::from),
                        View::Str(s) => Some(serde_json::Value::from(s)),
                        View::Int(i) => Some(serde_json::Value::from(i)),
                        View::Float(f) => Some(serde_json::Value::from(f)),
                        View::Bool(b) => Some(serde_json::Value::from(b)),
                        View::None => Some(serde_json::Value::Null),
                        _ => None,
                    };
                    if let Some(val) = val {
                        fields.insert(name, val);
                    }
                }
            }
            out.push(CallbackSummary {
                monitor: text("monitor"),
                mode,
                best_model_score: field("best_model_score")
                    .and_then(|x| self.scalar(doc, x, "callbacks.best_model_score", warnings)),
                current_score: field("current_score")
                    .and_then(|x| self.scalar(doc, x, "callbacks.current_score", warnings)),
                best_model_path: text("best_model_path"),
                last_model_path: text("last_model_path"),
                best_k_models,
                fields,
                key,
                kind,
            });
        }
        out
    }

    fn optimizers(&self) -> Vec<OptimizerSummary> {
        let doc = &self.doc;
        let root = doc.root();
        let mut out = Vec::new();
        for key in [
            "optimizer_states",
            "optimizer",
            "optimizer_state_dict",
            "optim",
            "optimizer_state",
        ] {
            let Some(v) = doc.get(root, key) else {
                continue;
            };
            let list: Vec<NodeId> = match doc.view(v) {
                View::List(l) | View::Tuple(l) => l.to_vec(),
                View::Dict(_) => vec![v],
                _ => continue,
            };
            let mut fields: Vec<String> = Vec::new();
            let mut groups = 0;
            let mut lr = Vec::new();
            for o in &list {
                if let Some(state) = doc.get(*o, "state")
                    && let Some(per_param) = doc.dict(state)
                    && let Some((_, first)) = per_param.first()
                    && let Some(fs) = doc.dict(*first)
                {
                    for (fk, _) in fs {
                        let n = key_str(doc, *fk);
                        if !fields.contains(&n) {
                            fields.push(n);
                        }
                    }
                }
                if let Some(pg) = doc.get(*o, "param_groups")
                    && let View::List(gs) | View::Tuple(gs) = doc.view(pg)
                {
                    groups += gs.len();
                    for g in gs {
                        if let Some(x) = doc.get(*g, "lr").and_then(|x| doc.as_f64(x)) {
                            lr.push(x);
                        }
                    }
                }
            }
            out.push(OptimizerSummary {
                key: key.to_owned(),
                optimizers: list.len(),
                state_fields: fields,
                param_groups: groups,
                lr,
            });
        }
        out
    }
}
