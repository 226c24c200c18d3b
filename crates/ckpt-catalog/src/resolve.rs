//! The resolution chain: for each checkpoint, every source in order, first value wins, and the
//! entry records which source that was.
//!
//! 1. a fresh `.metadata.yaml|json` sidecar
//! 2. `<stem>.config.yaml|json`
//! 3. the run's Hydra config
//! 4. Lightning `hparams.yaml`/`metrics.csv` (and logger metadata)
//! 5. hierarchical experiment folders
//! 6. hash-named experiment folders
//! 7. the checkpoint itself (cached)
//! 8. the file name
//! 9. state-dict signature inference

use std::path::Path;

use ckpt_meta::config;
use ckpt_meta::extract::{
    ExtraSources, Layout, build_sidecar_lenient, checkpointing_facts, iso_time, metric_short_name,
    model_facts, parse_file_name,
};
use ckpt_model::Summarize;
use ckpt_model::state_dict::{find_state_dicts, first_state_dict_entries};
use ckpt_torch::{Checkpoint, View};
use serde_json::{Map, Value, json};

use crate::Fact;
use crate::discover::{Candidate, Kind, Seen};
use crate::infer::{TensorSig, infer};
use crate::sources::{self, DirCache};

/// Version of the facts stored in the cache: bump when `checkpoint_facts` changes.
pub const FACTS_VERSION: i64 = 4;

/// Known source names, so cached facts come back with `&'static str` sources.
const SOURCES: &[&str] = &[
    "sidecar",
    "config_sidecar",
    "hydra",
    "hparams_yaml",
    "metrics_csv",
    "json_report",
    "folder_name",
    "hash_folder",
    "logger",
    "checkpoint",
    "hparams",
    "cleval",
    "callback",
    "file_name",
    "inferred",
    "filesystem",
];

fn intern(s: &str) -> &'static str {
    SOURCES
        .iter()
        .find(|x| **x == s)
        .copied()
        .unwrap_or("checkpoint")
}

/// Facts as cached: `[[path, value, source], ...]`.
pub fn facts_to_json(facts: &[Fact]) -> String {
    let arr: Vec<Value> = facts
        .iter()
        .map(|f| json!([f.path, f.value, f.source]))
        .collect();
    Value::Array(arr).to_string()
}

pub fn facts_from_json(text: &str) -> Option<Vec<Fact>> {
    let v: Value = serde_json::from_str(text).ok()?;
    v.as_array()?
        .iter()
        .map(|x| {
            let a = x.as_array()?;
            Some(Fact::new(
                a.first()?.as_str()?.to_owned(),
                a.get(1)?.clone(),
                intern(a.get(2)?.as_str()?),
            ))
        })
        .collect()
}

fn file_name_of(p: &str) -> Option<String> {
    p.rsplit(['/', '\\'])
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// What the checkpoint itself says (source 7, and the inference of source 9). This is what the
/// cache stores: reading it costs opening the file.
pub fn checkpoint_facts(c: &Candidate) -> Vec<Fact> {
    match c.kind {
        Kind::File => file_facts(&c.path, &c.root),
        Kind::Dcp => dcp_facts(&c.path),
        Kind::HfSharded => sharded_facts(&c.path),
    }
}

fn file_facts(path: &Path, root: &Path) -> Vec<Fact> {
    let mut f = Vec::new();
    // What loading it would run, judged exactly as `ckpt scan` judges the file (every pickle
    // member, every copy of a duplicated name, frames as torch reads them, TorchScript): a
    // checkpoint whose pickles call os.system is not one to list as a model.
    let scan =
        ckpt_torch::scan_file::scan_path(path, &ckpt_torch::scan_file::ScanLimits::default());
    let verdict = scan.verdict();
    f.push(Fact::new("security", json!(verdict.as_str()), "checkpoint"));
    let ck = match Checkpoint::open(path) {
        Ok(ck) => ck,
        Err(e) => {
            // Still judged: a hostile file that is not a readable checkpoint stays dangerous.
            f.push(Fact::new("error", json!(e.to_string()), "checkpoint"));
            return f;
        }
    };
    f.push(Fact::new("format", json!(ck.format_name()), "checkpoint"));
    f.push(Fact::new(
        "_pickle_sha256",
        json!(ck.pickle_sha256),
        "checkpoint",
    ));
    if verdict == ckpt_torch::scan_file::FileVerdict::Dangerous {
        let names: Vec<&str> = scan
            .report
            .findings
            .iter()
            .filter(|x| x.class == ckpt_torch::scan::Verdict::Dangerous)
            .map(|x| x.name.as_str())
            .collect();
        f.push(Fact::new(
            "error",
            json!(format!(
                "{}: dangerous pickle (would call {} when loaded); not a checkpoint",
                path.display(),
                names.join(", ")
            )),
            "checkpoint",
        ));
        return f;
    }
    let root_kind = match ck.doc.view(ck.doc.root()) {
        View::Dict(_) | View::Object(_) | View::Tensor(_) => None,
        View::List(_) => Some("a list"),
        View::Tuple(_) => Some("a tuple"),
        _ => Some("a plain value"),
    };
    if let Some(kind) = root_kind
        && find_state_dicts(&ck.doc, ck.doc.root()).is_empty()
    {
        f.push(Fact::new(
            "error",
            json!(format!(
                "{}: not a checkpoint: the pickle holds {kind}, with no state dict",
                path.display()
            )),
            "checkpoint",
        ));
        return f;
    }
    // The sidecar extractor already knows how to read epochs, hparams (dict, AttributeDict,
    // DictConfig), cleval metrics and callbacks; take what it got from the checkpoint.
    let layout = Layout::new(path, Some(root));
    let summary = ck.summary();
    let (sc, hp_err) = build_sidecar_lenient(&ck, &summary, &layout, &ExtraSources::default());
    if let Some(e) = hp_err {
        // Listed all the same, without what its hparams would have said.
        f.push(Fact::new(
            sources::WARNING,
            json!(format!("{}: {e}; hyper_parameters ignored", path.display())),
            "checkpoint",
        ));
    }
    if let Some(prov) = sc.get("provenance").and_then(Value::as_object) {
        for (field, src) in prov {
            let src = src.as_str().unwrap_or("");
            if !matches!(src, "checkpoint" | "hparams" | "cleval" | "callback") {
                continue;
            }
            let Some(v) = config::lookup(&sc, field).cloned() else {
                continue;
            };
            let target = match field.as_str() {
                "training.epoch" => "epoch".to_owned(),
                "training.global_step" => "global_step".to_owned(),
                "checkpointing.monitor" => "monitor".to_owned(),
                "checkpointing.mode" => "mode".to_owned(),
                "exp_name" => "experiment".to_owned(),
                other => {
                    if let Some(m) = other.strip_prefix("metrics.additional_metrics.") {
                        format!("metrics.{m}")
                    } else if other.starts_with("model.") {
                        other.to_owned()
                    } else if let Some(m) = other.strip_prefix("metrics.") {
                        format!("metrics.{m}")
                    } else {
                        continue;
                    }
                }
            };
            f.push(Fact::new(target, v, intern(src)));
        }
    }
    if let Some(v) = &summary.lightning_version {
        f.push(Fact::new("lightning_version", json!(v), "checkpoint"));
    }
    for cb in summary
        .callbacks
        .iter()
        .filter(|c| c.kind == "ModelCheckpoint")
    {
        if let Some(n) = cb.best_model_path.as_deref().and_then(file_name_of) {
            f.push(Fact::new("_best_name", json!(n), "callback"));
        }
        if let Some(n) = cb.last_model_path.as_deref().and_then(file_name_of) {
            f.push(Fact::new("_last_name", json!(n), "callback"));
        }
    }
    if let Some(sd) = summary.state_dicts.first() {
        f.push(Fact::new("params", json!(sd.elements), "checkpoint"));
        f.push(Fact::new("tensors", json!(sd.tensors), "checkpoint"));
        // Source 9: what the state dict's signature says.
        let doc = &ck.doc;
        if let Some((_, items)) = first_state_dict_entries(doc, doc.root()) {
            let mut owned: Vec<(String, Vec<u64>, &'static str)> = Vec::with_capacity(items.len());
            for (name, v) in items {
                if let View::Tensor(t) = doc.view(v) {
                    owned.push((name, t.shape.clone(), t.dtype.name()));
                }
            }
            infer_facts(&owned, &mut f);
        }
    }
    f
}

fn infer_facts(owned: &[(String, Vec<u64>, &str)], f: &mut Vec<Fact>) {
    let sigs: Vec<TensorSig<'_>> = owned
        .iter()
        .map(|(n, s, d)| TensorSig {
            name: n,
            shape: s,
            dtype: d,
        })
        .collect();
    let inf = infer(&sigs);
    if let Some(x) = inf.family {
        f.push(Fact::new("model.family", json!(x), "inferred"));
    }
    if let Some(x) = inf.encoder {
        f.push(Fact::new("model.encoder", json!(x), "inferred"));
    }
    if let Some(x) = inf.decoder {
        f.push(Fact::new("model.decoder", json!(x), "inferred"));
    }
    if let Some(x) = inf.head {
        f.push(Fact::new("model.head", json!(x), "inferred"));
    }
    for (k, v) in inf.details {
        f.push(Fact::new(format!("model.{k}"), v, "inferred"));
    }
    if inf.params > 0 {
        f.push(Fact::new("params", json!(inf.params), "inferred"));
    }
}

fn dcp_facts(dir: &Path) -> Vec<Fact> {
    let mut f = vec![Fact::new("format", json!("dcp"), "checkpoint")];
    let index = match ckpt_torch::dcp::DcpIndex::open(dir) {
        Ok(i) => i,
        Err(e) => {
            f.push(Fact::new("error", json!(e.to_string()), "checkpoint"));
            return f;
        }
    };
    // Each tensor's dtype is the one `.metadata` records (the first field of its
    // TensorProperties); float32 only when it records none.
    let owned: Vec<(String, Vec<u64>, &'static str)> = index
        .tensors
        .iter()
        .map(|t| {
            let dtype = t.dtype.map_or("float32", ckpt_torch::DType::name);
            (t.fqn.clone(), t.shape.clone(), dtype)
        })
        .collect();
    let (params, _) = index.totals();
    // `dcp.save({"model": …, "step": step, "epoch": epoch})`: small values, read in place.
    if let Some(e) = index.read_int("epoch") {
        f.push(Fact::new("epoch", json!(e), "checkpoint"));
    }
    if let Some(s) = index.step() {
        f.push(Fact::new("global_step", json!(s), "checkpoint"));
    }
    f.push(Fact::new("tensors", json!(owned.len()), "checkpoint"));
    f.push(Fact::new("params", json!(params), "checkpoint"));
    infer_facts(&owned, &mut f);
    f
}

fn sharded_facts(dir: &Path) -> Vec<Fact> {
    let mut f = vec![Fact::new("format", json!("hf-sharded"), "checkpoint")];
    if let Ok(cfg) = config::read_config(&dir.join("config.json")) {
        if let Some(t) = cfg.get("model_type").and_then(Value::as_str) {
            f.push(Fact::new("model.family", json!(t), "json_report"));
        }
        if let Some(a) = cfg
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            f.push(Fact::new("model.architecture", a.clone(), "json_report"));
        }
    }
    let mut owned: Vec<(String, Vec<u64>, &'static str)> = Vec::new();
    let index = [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ]
    .iter()
    .find_map(|n| config::read_config(&dir.join(n)).ok());
    let mut shards: Vec<String> = index
        .as_ref()
        .and_then(|i| i.get("weight_map"))
        .and_then(Value::as_object)
        .map(|m| {
            m.values()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    shards.sort();
    shards.dedup();
    for s in shards {
        // A shard is a file of this folder: an index naming `../x` or `/etc/x` is not read.
        let plain = std::path::Path::new(&s)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || s.is_empty() {
            f.push(Fact::new(
                "error",
                json!(format!(
                    "{}: weight_map names a shard outside the folder: {s:?}",
                    dir.display()
                )),
                "checkpoint",
            ));
            continue;
        }
        match Checkpoint::open(dir.join(&s)) {
            Ok(ck) => {
                let doc = &ck.doc;
                if let Some(items) = doc.dict(doc.root()) {
                    for (k, v) in items {
                        if let (Some(name), View::Tensor(t)) = (doc.as_str(*k), doc.view(*v)) {
                            owned.push((name.to_owned(), t.shape.clone(), t.dtype.name()));
                        }
                    }
                }
            }
            Err(e) => f.push(Fact::new("error", json!(e.to_string()), "checkpoint")),
        }
    }
    let params: u64 = owned
        .iter()
        .map(|(_, s, _)| s.iter().product::<u64>())
        .sum();
    f.push(Fact::new("tensors", json!(owned.len()), "checkpoint"));
    f.push(Fact::new("params", json!(params), "checkpoint"));
    infer_facts(&owned, &mut f);
    f
}

/// Facts from a sidecar (source 1).
fn sidecar_facts(sc: &Value) -> Vec<Fact> {
    let mut f = Vec::new();
    let map = [
        ("exp_name", "experiment"),
        ("training.epoch", "epoch"),
        ("training.global_step", "global_step"),
        ("checkpointing.monitor", "monitor"),
        ("checkpointing.mode", "mode"),
        ("model.architecture", "model.architecture"),
        ("model.encoder", "model.encoder"),
        ("model.decoder", "model.decoder"),
        ("model.head", "model.head"),
        ("model.loss", "model.loss"),
        ("state.parameters", "params"),
        ("state.format", "format"),
    ];
    for (from, to) in map {
        if let Some(v) = config::lookup(sc, from).filter(|v| !v.is_null()) {
            // "unknown" placeholders say nothing.
            if v.as_str() == Some("unknown") {
                continue;
            }
            f.push(Fact::new(to, v.clone(), "sidecar"));
        }
    }
    if let Some(m) = sc.get("metrics").and_then(Value::as_object) {
        for (k, v) in m {
            if k == "additional_metrics" {
                if let Some(am) = v.as_object() {
                    for (n, x) in am {
                        if x.is_number() {
                            f.push(Fact::new(format!("metrics.{n}"), x.clone(), "sidecar"));
                        }
                    }
                }
            } else if v.is_number() {
                f.push(Fact::new(format!("metrics.{k}"), v.clone(), "sidecar"));
            }
        }
    }
    f
}

/// Facts from a config tree (sources 2 and 3).
fn config_facts(tree: &Value, src: &'static str) -> Vec<Fact> {
    let mut f = Vec::new();
    for (p, v) in model_facts(tree) {
        f.push(Fact::new(p, v, src));
    }
    for (p, v) in checkpointing_facts(tree) {
        match p.as_str() {
            "checkpointing.monitor" => f.push(Fact::new("monitor", v, src)),
            "checkpointing.mode" => f.push(Fact::new("mode", v, src)),
            _ => {}
        }
    }
    if let Some(n) = tree.get("exp_name").filter(|v| v.is_string()) {
        f.push(Fact::new("experiment", n.clone(), src));
    }
    f
}

/// The entry being built: a JSON object in the contract's key order, plus `sources`.
pub struct Entry {
    pub value: Map<String, Value>,
    pub sources: Map<String, Value>,
}

impl Entry {
    pub(crate) fn new(path: &str) -> Entry {
        let mut value = Map::new();
        for k in [
            "path",
            "experiment",
            "format",
            "epoch",
            "global_step",
            "metrics",
            "monitor",
            "mode",
            "model",
            "params",
            "size_bytes",
            "modified",
            "is_best",
            "is_last",
            "security",
            "sources",
            "error",
        ] {
            value.insert(k.to_owned(), Value::Null);
        }
        value.insert("path".into(), json!(path));
        value.insert("metrics".into(), json!({}));
        value.insert("model".into(), json!({}));
        value.insert("is_best".into(), json!(false));
        value.insert("is_last".into(), json!(false));
        Entry {
            value,
            sources: Map::new(),
        }
    }

    /// First value wins. Internal facts (`_best_name` …) are kept aside.
    fn apply(&mut self, fact: &Fact) {
        if fact.value.is_null() {
            return;
        }
        let (head, tail) = match fact.path.split_once('.') {
            Some((h, t)) => (h, Some(t)),
            None => (fact.path.as_str(), None),
        };
        let slot = match tail {
            None => {
                if self.value.get(head).is_some_and(|v| !v.is_null()) {
                    return;
                }
                self.value.insert(head.to_owned(), fact.value.clone());
                true
            }
            Some(t) => {
                let container = self
                    .value
                    .entry(head.to_owned())
                    .or_insert_with(|| json!({}));
                if !container.is_object() {
                    *container = json!({});
                }
                match container.as_object_mut() {
                    Some(m) if !m.contains_key(t) => {
                        m.insert(t.to_owned(), fact.value.clone());
                        true
                    }
                    _ => false,
                }
            }
        };
        if slot && !head.starts_with('_') {
            self.sources
                .insert(fact.path.clone(), Value::String(fact.source.to_owned()));
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.value.get(key)
    }

    /// The finished JSON object (internal fields removed, `sources` filled).
    pub fn finish(mut self) -> Value {
        let internal: Vec<String> = self
            .value
            .keys()
            .filter(|k| k.starts_with('_'))
            .cloned()
            .collect();
        for k in internal {
            self.value.remove(&k);
        }
        self.value
            .insert("sources".into(), Value::Object(self.sources));
        Value::Object(self.value)
    }
}

/// Whether a sidecar's fingerprint says it still describes the file, judged without opening
/// the checkpoint when size and mtime agree; otherwise from the pickle hash if we have it.
fn sidecar_fresh(sc: &Value, size: u64, modified: &str, pickle_sha: Option<&str>) -> Option<bool> {
    let fp = sc.get("fingerprint")?;
    if fp
        .get("size_bytes")
        .and_then(Value::as_u64)
        .is_some_and(|s| s != size)
    {
        return Some(false);
    }
    if fp.get("modified").and_then(Value::as_str) == Some(modified) {
        return Some(true);
    }
    match (fp.get("pickle_sha256").and_then(Value::as_str), pickle_sha) {
        (Some(a), Some(b)) => Some(a == b),
        _ => None,
    }
}

/// Config files parsed once per run, however many checkpoints share them.
#[derive(Default)]
pub struct Configs {
    // Keyed by raw path bytes (cheap to hash, unlike `Path`).
    /// `Err(Some(warning))` for a config over a budget, `Err(None)` for missing/malformed.
    #[allow(clippy::type_complexity)]
    map: std::sync::Mutex<
        std::collections::HashMap<std::ffi::OsString, Result<Value, Option<String>>>,
    >,
    hydra:
        std::sync::Mutex<std::collections::HashMap<std::ffi::OsString, Option<std::path::PathBuf>>>,
}

impl Configs {
    /// The Hydra config governing a checkpoint, looked up once per folder.
    pub fn hydra_for(&self, ckpt: &Path, root: &Path) -> Option<std::path::PathBuf> {
        let dir = ckpt.parent()?.as_os_str().to_owned();
        if let Ok(m) = self.hydra.lock()
            && let Some(v) = m.get(&dir)
        {
            return v.clone();
        }
        let v = config::find_hydra_config(ckpt, root);
        if let Ok(mut m) = self.hydra.lock() {
            m.insert(dir, v.clone());
        }
        v
    }

    /// The config at `path`, interpolations resolved; `None` when missing or malformed. A
    /// config over a budget (too large, an interpolation bomb) is skipped with a warning
    /// naming the file and the key, for every entry it would have described.
    pub fn get(&self, path: &Path, warnings: &mut Vec<String>) -> Option<Value> {
        let got = match self.map.lock() {
            Ok(m) => m.get(path.as_os_str()).cloned(),
            Err(_) => None,
        };
        let v = match got {
            Some(v) => v,
            None => {
                let v = config::read_config(path).map_err(|e| e.is_budget().then(|| e.to_string()));
                if let Ok(mut m) = self.map.lock() {
                    m.insert(path.as_os_str().to_owned(), v.clone());
                }
                v
            }
        };
        match v {
            Ok(v) => Some(v),
            Err(Some(w)) => {
                warn_once(warnings, &Value::String(format!("{w}; config ignored")));
                None
            }
            Err(None) => None,
        }
    }
}

/// Add a warning unless this entry already gave it.
fn warn_once(warnings: &mut Vec<String>, w: &Value) {
    if let Some(w) = w.as_str()
        && !warnings.iter().any(|x| x == w)
    {
        warnings.push(w.to_owned());
    }
}

/// Inputs to resolving one candidate.
pub struct Resolve<'a> {
    pub candidate: &'a Candidate,
    pub size: u64,
    pub modified: String,
    /// Cached or freshly read checkpoint facts; `None` when not read (a fresh sidecar said
    /// everything).
    pub ckpt_facts: Option<&'a [Fact]>,
    /// The sidecar, read once per run by [`read_sidecar`].
    pub sidecar: &'a SidecarRead,
    pub dirs: &'a DirCache,
    pub configs: &'a Configs,
    pub seen: &'a Seen,
}

/// The sidecar file beside a checkpoint, if any (YAML, then JSON).
fn find_sidecar(path: &Path, seen: &Seen) -> Option<std::path::PathBuf> {
    [
        ckpt_meta::sidecar::yaml_path(path),
        ckpt_meta::sidecar::json_path(path),
    ]
    .into_iter()
    .find(|p| seen.is_file(p))
}

/// A checkpoint's sidecar as read once per run: whether the checkpoint must be opened and
/// what the entry says both come from this one parse.
#[derive(Debug)]
pub enum SidecarRead {
    /// No sidecar (or not a single-file checkpoint).
    Absent,
    /// There is one, and reading it failed: the warning to give.
    Unreadable(String),
    Parsed(Value),
}

/// Read the sidecar beside a checkpoint, if any (YAML, then JSON).
pub fn read_sidecar(c: &Candidate, seen: &Seen) -> SidecarRead {
    if c.kind != Kind::File {
        return SidecarRead::Absent;
    }
    match find_sidecar(&c.path, seen) {
        None => SidecarRead::Absent,
        Some(p) => match ckpt_meta::sidecar::Sidecar::read(&p) {
            Ok(sc) => SidecarRead::Parsed(sc.value),
            Err(err) => SidecarRead::Unreadable(format!("sidecar skipped: {err}")),
        },
    }
}

/// Does this candidate need its checkpoint opened? Not when a sidecar with a matching
/// fingerprint describes it.
pub fn needs_checkpoint(c: &Candidate, sidecar: &SidecarRead, size: u64, modified: &str) -> bool {
    if c.kind != Kind::File {
        return true;
    }
    match sidecar {
        SidecarRead::Parsed(sc) => sidecar_fresh(sc, size, modified, None) != Some(true),
        _ => true,
    }
}

/// A resolved entry and the file name its ModelCheckpoint callback calls best (for
/// [`mark_best`]).
pub struct Resolved {
    pub entry: Value,
    pub best_name: Option<String>,
}

/// Resolve one candidate into its entry; warnings (a stale sidecar) are appended.
pub fn resolve(r: &Resolve<'_>, warnings: &mut Vec<String>) -> Resolved {
    let c = r.candidate;
    let path_str = c.path.display().to_string();
    let mut e = Entry::new(&path_str);
    let pickle_sha = r.ckpt_facts.and_then(|fs| {
        fs.iter()
            .find(|f| f.path == "_pickle_sha256")
            .and_then(|f| f.value.as_str())
    });
    // 1. sidecar: an unreadable one is a warning, a readable one a source.
    let sidecar = match r.sidecar {
        SidecarRead::Parsed(v) => Some(v),
        SidecarRead::Unreadable(w) => {
            warnings.push(w.clone());
            None
        }
        SidecarRead::Absent => None,
    };
    if let Some(sc) = sidecar {
        let problems = ckpt_meta::schema::validate(sc);
        // A partial sidecar (no fingerprint, missing sections) still says what it says; one
        // with wrong types or a newer schema says nothing we can trust.
        let unusable = problems.iter().find(|p| p.message != "missing");
        match sidecar_fresh(sc, r.size, &r.modified, pickle_sha) {
            _ if unusable.is_some() => warnings.push(format!(
                "{}: sidecar skipped: {}",
                c.path.display(),
                unusable.map(ToString::to_string).unwrap_or_default()
            )),
            Some(false) => warnings.push(format!(
                "{}: stale sidecar (it no longer matches the checkpoint), skipped",
                c.path.display()
            )),
            _ => {
                for f in sidecar_facts(sc) {
                    e.apply(&f);
                }
            }
        }
    }
    // 2. config sidecar
    if c.kind == Kind::File {
        for suffix in [".config.yaml", ".config.yml", ".config.json"] {
            let p = ckpt_meta::sidecar::with_suffix(&c.path, suffix);
            if r.seen.is_file(&p) {
                if let Some(v) = r.configs.get(&p, warnings) {
                    for f in config_facts(&v, "config_sidecar") {
                        e.apply(&f);
                    }
                }
                break;
            }
        }
    }
    // 3. Hydra
    if let Some(h) = r.configs.hydra_for(&c.path, &c.root)
        && let Some(v) = r.configs.get(&h, warnings)
    {
        for f in config_facts(&v, "hydra") {
            e.apply(&f);
        }
    }
    // 4–6. folder structure
    for f in sources::lightning_logs(r.dirs, &c.path, &c.root) {
        if f.path == sources::WARNING {
            warn_once(warnings, &f.value);
        }
        e.apply(&f);
    }
    for f in sources::loggers(r.dirs, &c.path, &c.root) {
        e.apply(&f);
    }
    for f in sources::hierarchical(r.dirs, &c.path, &c.root) {
        e.apply(&f);
    }
    for f in sources::hash_folder(r.dirs, &c.path) {
        e.apply(&f);
    }
    // 7 and 9. the checkpoint (inference facts come last within it)
    if let Some(fs) = r.ckpt_facts {
        for f in fs.iter().filter(|f| f.source != "inferred") {
            if f.path == sources::WARNING {
                warn_once(warnings, &f.value);
            }
            e.apply(f);
        }
    }
    // 8. file name
    let stem = c
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if c.kind == Kind::File {
        let fname = parse_file_name(&stem);
        if let Some(x) = fname.epoch {
            e.apply(&Fact::new("epoch", json!(x), "file_name"));
        }
        if let Some(x) = fname.step {
            e.apply(&Fact::new("global_step", json!(x), "file_name"));
        }
        for (n, x) in &fname.metrics {
            e.apply(&Fact::new(format!("metrics.{n}"), json!(x), "file_name"));
        }
    }
    if let Some(fs) = r.ckpt_facts {
        for f in fs.iter().filter(|f| f.source == "inferred") {
            e.apply(f);
        }
    }
    // What only the filesystem knows.
    e.apply(&Fact::new("size_bytes", json!(r.size), "filesystem"));
    e.apply(&Fact::new("modified", json!(r.modified), "filesystem"));
    if e.get("experiment").is_none_or(Value::is_null) {
        let layout = Layout::new(&c.path, Some(&c.root));
        let rel = layout
            .exp_dir
            .strip_prefix(&c.root)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| layout.exp_dir.display().to_string());
        let name = if rel.is_empty() {
            layout
                .exp_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| ".".into())
        } else {
            rel
        };
        e.apply(&Fact::new("experiment", json!(name), "folder_name"));
    }
    let last_name = e
        .get("_last_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let file = c
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let is_last =
        stem == "last" || stem.starts_with("last-") || last_name.as_deref() == Some(file.as_str());
    e.value.insert("is_last".into(), json!(is_last));
    if stem.starts_with("best") {
        e.value.insert("is_best".into(), json!(true));
    }
    let best_name = e
        .get("_best_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Resolved {
        entry: e.finish(),
        best_name,
    }
}

/// Mark each folder's best checkpoint: the file its newest checkpoint's ModelCheckpoint
/// callback names as `best_model_path` (paths inside checkpoints are stale, so by name).
pub fn mark_best(entries: &mut [Value], best_names: &[Option<String>]) {
    use std::collections::HashMap;
    let mut newest: HashMap<String, (i64, i64, usize)> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if best_names.get(i).is_none_or(Option::is_none) {
            continue;
        }
        let path = e["path"].as_str().unwrap_or("");
        let dir = Path::new(path)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let key = (
            e["global_step"].as_i64().unwrap_or(-1),
            e["epoch"].as_i64().unwrap_or(-1),
        );
        let cur = newest.entry(dir).or_insert((key.0, key.1, i));
        if (key.0, key.1) > (cur.0, cur.1) {
            *cur = (key.0, key.1, i);
        }
    }
    let mut best: HashMap<String, String> = HashMap::new();
    for (dir, (_, _, i)) in newest {
        if let Some(Some(n)) = best_names.get(i) {
            best.insert(dir, n.clone());
        }
    }
    for e in entries.iter_mut() {
        let path = e["path"].as_str().unwrap_or("").to_owned();
        let p = Path::new(&path);
        let dir = p
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if let (Some(b), Some(n)) = (best.get(&dir), name)
            && *b == n
        {
            e["is_best"] = json!(true);
        }
    }
}

/// The metric an entry is ranked by: its own name first, then its short name
/// (`val/hmean` → `hmean`).
pub fn metric_value(entry: &Value, name: &str) -> Option<f64> {
    let m = entry.get("metrics")?;
    m.get(name)
        .and_then(Value::as_f64)
        .or_else(|| m.get(metric_short_name(name)).and_then(Value::as_f64))
}

/// `modified` as the entry records it.
pub fn modified_of(meta: &std::fs::Metadata) -> String {
    meta.modified().map(iso_time).unwrap_or_default()
}
