//! The typed catalog entry: what `ckpt catalog --format json` prints for each checkpoint
//! (`ckpt schema catalog`), what queries, retention, experiments and the printers read.

use std::collections::BTreeMap;

use ckpt_meta::engine::{Conflict, Resolution};
use ckpt_meta::fact::{Field, Source};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A part of an entry that the checkpoints of one run usually share whole (the model, the
/// hyperparameters, the data, the sources): held once in memory however many entries
/// carry it, and stored once in the catalog's cache.
pub type Shared<T> = std::sync::Arc<T>;

/// One checkpoint, resolved: every field with the source it came from and the sources that
/// disagreed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct CatalogEntry {
    /// As discovered (the root the user named, joined with the path below it).
    pub path: String,
    /// The experiment: a Hydra `exp_name`, a logger's experiment, the experiment folder.
    pub experiment: Option<String>,
    /// The run within the experiment: a Hydra job folder, a Lightning `version_N`, a logger
    /// run, a timestamped or hash-named folder; else the experiment folder.
    pub run: Option<String>,
    /// The task of a hierarchical layout (`checkpoints/<task>/<run>/`).
    pub task: Option<String>,
    /// `zip`, `legacy`, `pickle`, `torchscript`, `safetensors`, `dcp`, `hf-sharded`.
    pub format: Option<String>,
    pub epoch: Option<i64>,
    pub global_step: Option<i64>,
    /// `training`, unless a sidecar says otherwise.
    pub training_phase: Option<String>,
    /// Metrics by the name they were logged under.
    pub metrics: BTreeMap<String, f64>,
    pub monitor: Option<String>,
    pub mode: Option<String>,
    pub save_top_k: Option<i64>,
    pub save_last: Option<bool>,
    /// `architecture`, `family`, `encoder`/`decoder`/`head`/`loss` (objects), inferred sizes.
    #[serde(serialize_with = "crate::pretty::shared")]
    pub model: Shared<BTreeMap<String, Value>>,
    /// Top-level hyperparameters (the checkpoint's, Lightning's `hparams.yaml`, a logger's).
    #[serde(serialize_with = "crate::pretty::shared")]
    pub hparams: Shared<BTreeMap<String, Value>>,
    /// What is known about the training data (`active_uids`).
    #[serde(serialize_with = "crate::pretty::shared")]
    pub data: Shared<BTreeMap<String, Value>>,
    /// Elements of the state dict's tensors.
    pub params: Option<u64>,
    pub tensors: Option<u64>,
    pub size_bytes: u64,
    pub modified: String,
    pub is_best: bool,
    pub is_last: bool,
    /// `safe`, `unknown`, `dangerous` (what loading it would run), or `error`.
    pub security: Option<String>,
    pub lightning_version: Option<String>,
    /// Field path → the source its value came from.
    #[serde(serialize_with = "crate::pretty::shared")]
    pub sources: Shared<BTreeMap<String, String>>,
    /// Fields on which sources disagree, every source's value listed.
    pub conflicts: Vec<Conflict>,
    pub error: Option<String>,
}

/// What `ckpt catalog --format json` prints: every entry, and the warnings of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CatalogOutput {
    pub checkpoints: Vec<CatalogEntry>,
    pub warnings: Vec<String>,
}

/// The names of the entry's top-level fields, in the order JSON prints them.
pub const TOP_FIELDS: &[&str] = &[
    "path",
    "experiment",
    "run",
    "task",
    "format",
    "epoch",
    "global_step",
    "training_phase",
    "metrics",
    "monitor",
    "mode",
    "save_top_k",
    "save_last",
    "model",
    "hparams",
    "data",
    "params",
    "tensors",
    "size_bytes",
    "modified",
    "is_best",
    "is_last",
    "security",
    "lightning_version",
    "sources",
    "conflicts",
    "error",
];

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

impl CatalogEntry {
    /// The entry of a resolution (size, mtime and the flags derived across files are set by
    /// the caller).
    pub fn from_resolution(path: String, r: Resolution) -> CatalogEntry {
        let mut e = CatalogEntry {
            path,
            ..CatalogEntry::default()
        };
        let mut model = BTreeMap::new();
        let mut hparams = BTreeMap::new();
        let mut data = BTreeMap::new();
        let mut sources = BTreeMap::new();
        // The resolution is consumed: its values move into the entry, never cloned.
        for (field, c) in r.chosen {
            if field.is_internal() {
                continue;
            }
            let source = c.source;
            let v = &c.value;
            let mut kept = true;
            match field {
                Field::Experiment => e.experiment = s(v),
                Field::Run => e.run = s(v),
                Field::Task => e.task = s(v),
                Field::Format => e.format = s(v),
                Field::Epoch => e.epoch = v.as_i64(),
                Field::GlobalStep => e.global_step = v.as_i64(),
                Field::TrainingPhase => e.training_phase = s(v),
                Field::Monitor => e.monitor = s(v),
                Field::Mode => e.mode = s(v),
                Field::SaveTopK => e.save_top_k = v.as_i64(),
                Field::SaveLast => e.save_last = v.as_bool(),
                Field::Params => e.params = v.as_u64(),
                Field::Tensors => e.tensors = v.as_u64(),
                Field::Security => e.security = s(v),
                Field::LightningVersion => e.lightning_version = s(v),
                Field::IsBest => e.is_best = v.as_bool().unwrap_or(false),
                Field::SizeBytes => e.size_bytes = v.as_u64().unwrap_or(0),
                Field::Modified => e.modified = s(v).unwrap_or_default(),
                Field::Error => e.error = s(v),
                Field::Metric(k) => {
                    // A metric that is not a finite number is not kept (nor its source).
                    if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
                        sources.insert(format!("metrics.{k}"), source.as_str().to_owned());
                        e.metrics.insert(k, x);
                    }
                    continue;
                }
                Field::Model(k) => {
                    sources.insert(format!("model.{k}"), source.as_str().to_owned());
                    model.insert(k, c.value);
                    continue;
                }
                Field::Hparam(k) => {
                    sources.insert(format!("hparams.{k}"), source.as_str().to_owned());
                    hparams.insert(k, c.value);
                    continue;
                }
                Field::Data(k) => {
                    sources.insert(format!("data.{k}"), source.as_str().to_owned());
                    data.insert(k, c.value);
                    continue;
                }
                Field::BestName | Field::LastName | Field::PickleSha256 | Field::Warning => {
                    kept = false
                }
            }
            if kept && !matches!(field, Field::Error) {
                sources.insert(field.path(), source.as_str().to_owned());
            }
        }
        e.conflicts = r.conflicts;
        e.model = Shared::new(model);
        e.hparams = Shared::new(hparams);
        e.data = Shared::new(data);
        e.sources = Shared::new(sources);
        e
    }

    /// The entry as JSON (the `--format json` contract).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A field by its dotted name (`epoch`, `metrics.val_loss`, `model.encoder.model_name`,
    /// `hparams.lr`) as the filter language and the column picker spell it. Metrics are also
    /// found by their short name (`val/hmean` → `hmean`).
    pub fn get(&self, name: &str) -> Option<Value> {
        let (head, rest) = match name.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (name, None),
        };
        let map_get = |m: &BTreeMap<String, Value>, rest: &str| -> Option<Value> {
            if let Some(v) = m.get(rest) {
                return Some(v.clone());
            }
            // `model.encoder.model_name`: a key, then a path inside its value.
            let (k, inner) = rest.split_once('.')?;
            let mut cur = m.get(k)?;
            for p in inner.split('.') {
                cur = cur.get(p)?;
            }
            Some(cur.clone())
        };
        let v = match (head, rest) {
            ("metrics", Some(r)) => self.metric(r).map(Value::from),
            ("model", Some(r)) => map_get(&self.model, r),
            ("hparams", Some(r)) => map_get(&self.hparams, r),
            ("data", Some(r)) => map_get(&self.data, r),
            ("sources", Some(r)) => self.sources.get(r).cloned().map(Value::from),
            (_, Some(_)) => None,
            (top, None) => self.top(top),
        };
        v.filter(|v| !v.is_null())
    }

    fn top(&self, name: &str) -> Option<Value> {
        fn o<T: Into<Value> + Clone>(v: &Option<T>) -> Option<Value> {
            v.clone().map(Into::into)
        }
        Some(match name {
            "path" => Value::from(self.path.clone()),
            "experiment" => return o(&self.experiment),
            "run" => return o(&self.run),
            "task" => return o(&self.task),
            "format" => return o(&self.format),
            "epoch" => return o(&self.epoch),
            "global_step" => return o(&self.global_step),
            "training_phase" => return o(&self.training_phase),
            "monitor" => return o(&self.monitor),
            "mode" => return o(&self.mode),
            "save_top_k" => return o(&self.save_top_k),
            "save_last" => return o(&self.save_last),
            "params" => return o(&self.params),
            "tensors" => return o(&self.tensors),
            "size_bytes" => Value::from(self.size_bytes),
            "modified" => Value::from(self.modified.clone()),
            "is_best" => Value::from(self.is_best),
            "is_last" => Value::from(self.is_last),
            "security" => return o(&self.security),
            "lightning_version" => return o(&self.lightning_version),
            "error" => return o(&self.error),
            "metrics" => serde_json::to_value(&self.metrics).ok()?,
            "model" => serde_json::to_value(&self.model).ok()?,
            "hparams" => serde_json::to_value(&self.hparams).ok()?,
            "data" => serde_json::to_value(&self.data).ok()?,
            "sources" => serde_json::to_value(&self.sources).ok()?,
            "conflicts" => serde_json::to_value(&self.conflicts).ok()?,
            _ => return None,
        })
    }

    /// A metric by name, or by its short name (`val/hmean` → `hmean`).
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied().or_else(|| {
            let short = ckpt_meta::sources::names::metric_short_name(name);
            self.metrics
                .iter()
                .find(|(k, _)| ckpt_meta::sources::names::metric_short_name(k) == short)
                .map(|(_, v)| *v)
        })
    }

    /// Every dotted field name this entry has (for "unknown field" suggestions and the
    /// column picker).
    pub fn field_names(&self, into: &mut std::collections::BTreeSet<String>) {
        for f in TOP_FIELDS {
            into.insert((*f).to_owned());
        }
        for k in self.metrics.keys() {
            into.insert(format!("metrics.{k}"));
        }
        for (k, v) in self.model.iter() {
            into.insert(format!("model.{k}"));
            if let Some(m) = v.as_object() {
                for kk in m.keys() {
                    into.insert(format!("model.{k}.{kk}"));
                }
            }
        }
        for k in self.hparams.keys() {
            into.insert(format!("hparams.{k}"));
        }
        for k in self.data.keys() {
            into.insert(format!("data.{k}"));
        }
    }

    /// The source a field's value came from.
    pub fn source_of(&self, field: &str) -> Option<Source> {
        self.sources.get(field).and_then(|s| Source::parse(s))
    }

    /// The folder the file is in (checkpoints of one folder share a ModelCheckpoint).
    pub fn folder(&self) -> &str {
        match self.path.rfind(['/', '\\']) {
            Some(i) => &self.path[..i],
            None => "",
        }
    }

    /// The file name.
    pub fn file_name(&self) -> &str {
        match self.path.rfind(['/', '\\']) {
            Some(i) => &self.path[i + 1..],
            None => &self.path,
        }
    }
}
