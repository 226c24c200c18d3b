//! Building a sidecar from every source of truth, first source wins, each value's source
//! recorded.
//!
//! Order (issue "Metadata sidecars"): the checkpoint (epoch, step) → `hyper_parameters` (dict,
//! AttributeDict or DictConfig) → a `<stem>.config.yaml|json` sidecar → the run's Hydra
//! config → `cleval_metrics` → the ModelCheckpoint callback → the file name → inference and
//! safe defaults.

use std::path::{Path, PathBuf};

use ckpt_model::Summarize;
use ckpt_torch::Checkpoint;
use ckpt_torch::summary::{CallbackSummary, Summary, to_value};
use serde_json::{Map, Value, json};

use crate::config::{ResolveError, lookup};
use crate::schema::SCHEMA_VERSION;

/// Names of sources, as recorded in `provenance`.
pub mod source {
    pub const SIDECAR: &str = "sidecar";
    pub const CHECKPOINT: &str = "checkpoint";
    pub const HPARAMS: &str = "hparams";
    pub const CONFIG_SIDECAR: &str = "config_sidecar";
    pub const HYDRA: &str = "hydra";
    pub const CLEVAL: &str = "cleval";
    pub const CALLBACK: &str = "callback";
    pub const FILE_NAME: &str = "file_name";
    pub const FOLDER_NAME: &str = "folder_name";
    pub const FILESYSTEM: &str = "filesystem";
    pub const INFERRED: &str = "inferred";
    pub const DEFAULT: &str = "default";
}

/// Where a checkpoint sits: the outputs directory paths are relative to, and the experiment
/// folder.
#[derive(Debug, Clone)]
pub struct Layout {
    pub checkpoint: PathBuf,
    pub outputs_dir: PathBuf,
    pub exp_dir: PathBuf,
}

impl Layout {
    /// The experiment folder is the parent of a `checkpoints/` folder (Hydra and Lightning
    /// layouts), else the checkpoint's own folder; the outputs dir is given, or the
    /// experiment folder's parent.
    pub fn new(checkpoint: &Path, outputs_dir: Option<&Path>) -> Layout {
        let dir = checkpoint.parent().unwrap_or(Path::new(".")).to_path_buf();
        let exp_dir = if dir.file_name().is_some_and(|n| n == "checkpoints") {
            dir.parent().map(Path::to_path_buf).unwrap_or(dir)
        } else {
            dir
        };
        let outputs_dir = match outputs_dir {
            Some(o) => o.to_path_buf(),
            None => exp_dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| exp_dir.clone()),
        };
        Layout {
            checkpoint: checkpoint.to_path_buf(),
            outputs_dir,
            exp_dir,
        }
    }

    /// The checkpoint's path relative to the outputs dir, with `/` separators.
    pub fn relative_path(&self) -> String {
        let rel = self
            .checkpoint
            .strip_prefix(&self.outputs_dir)
            .unwrap_or(&self.checkpoint);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Inputs besides the checkpoint itself.
#[derive(Debug, Default, Clone)]
pub struct ExtraSources {
    /// An existing sidecar of another format (a partial `.metadata.json`): what it has comes
    /// first.
    pub sidecar: Option<Value>,
    /// Parsed `<stem>.config.yaml|json`.
    pub config_sidecar: Option<Value>,
    /// Parsed, resolved `.hydra/config.yaml` of the run.
    pub hydra: Option<Value>,
}

/// Values in the making: the sidecar tree and where each leaf came from.
struct Builder {
    root: Value,
    provenance: Map<String, Value>,
    notes: Vec<String>,
}

impl Builder {
    fn has(&self, path: &str) -> bool {
        lookup(&self.root, path).is_some_and(|v| !v.is_null())
    }

    /// Set `path` unless a source already did.
    fn set(&mut self, path: &str, v: Value, src: &str) -> bool {
        if v.is_null() || self.has(path) {
            return false;
        }
        // The schema holds precision/recall/hmean to [0, 1] (fractions). A score outside it (a
        // percentage, a garbage value) would make a sidecar its own validator rejects: it stays
        // under additional_metrics, under its own name, and the field is left to the next
        // source (or null), with a note saying why.
        if matches!(
            path,
            "metrics.precision" | "metrics.recall" | "metrics.hmean"
        ) && let Some(x) = v.as_f64()
            && !(0.0..=1.0).contains(&x)
        {
            let note = format!(
                "{path}: {x} from the {src} is outside [0, 1] (the schema's range); kept under additional_metrics only"
            );
            if !self.notes.contains(&note) {
                self.notes.push(note);
            }
            return false;
        }
        let parts: Vec<&str> = path.split('.').collect();
        let mut cur = &mut self.root;
        for p in &parts[..parts.len() - 1] {
            if !cur.get(*p).is_some_and(Value::is_object)
                && let Some(m) = cur.as_object_mut()
            {
                m.insert((*p).to_owned(), Value::Object(Map::new()));
            }
            match cur.get_mut(*p) {
                Some(next) => cur = next,
                None => return false,
            }
        }
        if let Some(m) = cur.as_object_mut() {
            m.insert(parts[parts.len() - 1].to_owned(), v);
            self.provenance
                .insert(path.to_owned(), Value::String(src.to_owned()));
            return true;
        }
        false
    }
}

/// A metric's canonical short name: `val/hmean` → `hmean`, `val_loss` → `validation_loss`.
pub fn metric_short_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    let last = last
        .strip_prefix("val_")
        .or_else(|| last.strip_prefix("valid_"))
        .or_else(|| last.strip_prefix("validation_"))
        .unwrap_or(last);
    match last {
        "loss" | "val_loss" => "validation_loss".to_owned(),
        other => other.to_owned(),
    }
}

/// What a checkpoint's file name says: `epoch=02-step=6-hmean=0.7718`,
/// `best-epoch02-val_f1-0.847`, `epoch=3-step=400-v1`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileNameInfo {
    pub epoch: Option<i64>,
    pub step: Option<i64>,
    pub metrics: Vec<(String, f64)>,
}

pub fn parse_file_name(stem: &str) -> FileNameInfo {
    let mut info = FileNameInfo::default();
    let mut pending_name: Option<&str> = None;
    for tok in stem.split('-') {
        if let Some((k, v)) = tok.split_once('=') {
            pending_name = None;
            match k {
                "epoch" => info.epoch = v.parse().ok(),
                "step" | "global_step" => info.step = v.parse().ok(),
                _ => {
                    if let Ok(x) = v.parse::<f64>() {
                        info.metrics.push((k.to_owned(), x));
                    }
                }
            }
            continue;
        }
        if let Some(d) = tok
            .strip_prefix("epoch")
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            info.epoch = d.parse().ok();
            pending_name = None;
            continue;
        }
        if let Some(d) = tok
            .strip_prefix("step")
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            info.step = d.parse().ok();
            pending_name = None;
            continue;
        }
        if let Ok(x) = tok.parse::<f64>()
            && tok.contains('.')
        {
            if let Some(n) = pending_name.take() {
                info.metrics.push((n.to_owned(), x));
            }
            continue;
        }
        // `v1`, `best`, `last` are labels; anything else may name the next number.
        let is_version =
            tok.len() > 1 && tok.starts_with('v') && tok[1..].bytes().all(|b| b.is_ascii_digit());
        pending_name = if is_version || tok.is_empty() {
            None
        } else {
            Some(tok)
        };
    }
    info
}

/// `created_at` as Python's `datetime.fromtimestamp(mtime).isoformat()` writes it (UTC here:
/// the machine's local zone is not knowable without a time-zone database).
pub fn iso_time(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let micros = d.subsec_micros();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    let base = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

/// Paths under which each model part may live in a hyper-parameter or config tree.
fn part_paths(part: &str) -> [String; 3] {
    [
        format!("model.component_overrides.{part}"),
        format!("model.{part}"),
        part.to_owned(),
    ]
}

/// What a hyper-parameter or config tree says about the model: `model.architecture` and
/// `model.{encoder,decoder,head,loss}` (each the first place it is found).
pub fn model_facts(tree: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for p in [
        "architecture_name",
        "architecture",
        "model.architecture",
        "model.architecture_name",
    ] {
        if let Some(v) = lookup(tree, p)
            && v.is_string()
        {
            out.push(("model.architecture".to_owned(), v.clone()));
            break;
        }
    }
    for part in ["encoder", "decoder", "head", "loss"] {
        for p in part_paths(part) {
            if let Some(v) = lookup(tree, &p)
                && v.is_object()
            {
                out.push((format!("model.{part}"), v.clone()));
                break;
            }
        }
    }
    out
}

/// Checkpointing settings a config tree states (`callbacks.model_checkpoint.*`,
/// `checkpoint.*` …): `checkpointing.{monitor,mode,save_top_k,save_last}`.
pub fn checkpointing_facts(tree: &Value) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for base in [
        "callbacks.model_checkpoint",
        "checkpoint",
        "checkpointing",
        "model_checkpoint",
    ] {
        let Some(section) = lookup(tree, base) else {
            continue;
        };
        if !section.is_object() {
            continue;
        }
        for key in ["monitor", "mode", "save_top_k", "save_last"] {
            if let Some(v) = section.get(key) {
                let ok = match key {
                    "monitor" => v.is_string(),
                    "mode" => matches!(v.as_str(), Some("max" | "min")),
                    "save_top_k" => v.is_i64(),
                    _ => v.is_boolean(),
                };
                let path = format!("checkpointing.{key}");
                if ok && !out.iter().any(|(p, _)| *p == path) {
                    out.push((path, v.clone()));
                }
            }
        }
    }
    out
}

fn take_model(b: &mut Builder, tree: &Value, src: &str) {
    for (p, v) in model_facts(tree) {
        b.set(&p, v, src);
    }
}

fn take_checkpointing(b: &mut Builder, tree: &Value, src: &str) {
    for (p, v) in checkpointing_facts(tree) {
        b.set(&p, v, src);
    }
}

/// The ModelCheckpoint callback that describes this file: the one whose best or last path
/// names it, else the first.
fn pick_callback<'s>(cbs: &'s [CallbackSummary], file_name: &str) -> Option<&'s CallbackSummary> {
    let names_it = |p: &Option<String>| {
        p.as_deref()
            .and_then(|p| p.rsplit(['/', '\\']).next())
            .is_some_and(|n| n == file_name)
    };
    cbs.iter()
        .find(|c| names_it(&c.best_model_path) || names_it(&c.last_model_path))
        .or_else(|| cbs.first())
}

/// Build the 1.0 sidecar (plus provenance, fingerprint and state) for one checkpoint. Fails
/// only when its `hyper_parameters` hold interpolations that go over the resolution budget.
pub fn build_sidecar(
    ck: &Checkpoint,
    layout: &Layout,
    extra: &ExtraSources,
) -> Result<Value, ResolveError> {
    build_sidecar_with(ck, &ck.summary(), layout, extra)
}

/// [`build_sidecar`] with the checkpoint's summary already computed (callers that need the
/// summary too read the callback scores once).
pub fn build_sidecar_with(
    ck: &Checkpoint,
    summary: &Summary,
    layout: &Layout,
    extra: &ExtraSources,
) -> Result<Value, ResolveError> {
    let hparams = hparams_of(ck).transpose()?;
    Ok(build(ck, summary, layout, extra, hparams.as_ref()))
}

/// [`build_sidecar_with`] that, when the `hyper_parameters` go over the resolution budget,
/// builds the sidecar without them and hands back the error (the catalog lists the
/// checkpoint with a warning rather than dropping it).
pub fn build_sidecar_lenient(
    ck: &Checkpoint,
    summary: &Summary,
    layout: &Layout,
    extra: &ExtraSources,
) -> (Value, Option<ResolveError>) {
    match hparams_of(ck) {
        Some(Err(e)) => (build(ck, summary, layout, extra, None), Some(e)),
        h => (
            build(ck, summary, layout, extra, h.and_then(Result::ok).as_ref()),
            None,
        ),
    }
}

/// The checkpoint's `hyper_parameters` as a value. Interpolations inside pickled DictConfig
/// hparams resolve within the hparams tree, as OmegaConf attribute access would; the key in
/// an error is prefixed with `hyper_parameters.`.
pub fn hparams_of(ck: &Checkpoint) -> Option<Result<Value, ResolveError>> {
    let doc = &ck.doc;
    let h = doc.get(doc.root(), "hyper_parameters")?;
    Some(crate::config::resolve(&to_value(doc, h)).map_err(|e| e.under("hyper_parameters")))
}

fn build(
    ck: &Checkpoint,
    summary: &Summary,
    layout: &Layout,
    extra: &ExtraSources,
    hparams: Option<&Value>,
) -> Value {
    let doc = &ck.doc;
    let root = doc.root();
    let mut b = Builder {
        root: json!({
            "schema_version": SCHEMA_VERSION,
            "checkpoint_path": layout.relative_path(),
            "exp_name": null,
            "created_at": null,
            "training": {},
            "model": {},
            "metrics": {},
            "checkpointing": {},
        }),
        provenance: Map::new(),
        notes: Vec::new(),
    };
    let meta = std::fs::metadata(&layout.checkpoint).ok();
    let modified = meta.as_ref().and_then(|m| m.modified().ok()).map(iso_time);
    if let Some(m) = &modified {
        b.set("created_at", json!(m), source::FILESYSTEM);
    }

    // 0. an existing (partial) sidecar
    if let Some(sc) = &extra.sidecar {
        for path in [
            "exp_name",
            "training.epoch",
            "training.global_step",
            "training.training_phase",
            "model.architecture",
            "model.encoder",
            "model.decoder",
            "model.head",
            "model.loss",
            "metrics.precision",
            "metrics.recall",
            "metrics.hmean",
            "metrics.validation_loss",
            "checkpointing.monitor",
            "checkpointing.mode",
            "checkpointing.save_top_k",
            "checkpointing.save_last",
        ] {
            if let Some(v) = lookup(sc, path) {
                b.set(path, v.clone(), source::SIDECAR);
            }
        }
    }
    let mut additional: Vec<(String, Value, &str)> = Vec::new();
    if let Some(sc) = &extra.sidecar {
        for name in ["precision", "recall", "hmean", "validation_loss"] {
            if let Some(v) = lookup(sc, &format!("metrics.{name}")).filter(|v| v.is_number()) {
                additional.push((name.to_owned(), v.clone(), source::SIDECAR));
            }
        }
        if let Some(am) = lookup(sc, "metrics.additional_metrics").and_then(Value::as_object) {
            for (k, v) in am {
                additional.push((k.clone(), v.clone(), source::SIDECAR));
            }
        }
    }

    // 1. the checkpoint
    if let Some(e) = summary.epoch {
        b.set("training.epoch", json!(e), source::CHECKPOINT);
    }
    if let Some(g) = doc.get(root, "global_step").and_then(|v| doc.as_i64(v)) {
        b.set("training.global_step", json!(g), source::CHECKPOINT);
    } else if let Some(g) = doc.get(root, "step").and_then(|v| doc.as_i64(v)) {
        b.set("training.global_step", json!(g), source::CHECKPOINT);
    }

    // 2. hyper_parameters (resolved by the caller: see `hparams_of`)
    if let Some(h) = hparams {
        take_model(&mut b, h, source::HPARAMS);
    }
    // 3. config sidecar, then Hydra
    for (tree, src) in [
        (&extra.config_sidecar, source::CONFIG_SIDECAR),
        (&extra.hydra, source::HYDRA),
    ] {
        if let Some(t) = tree {
            take_model(&mut b, t, src);
            if let Some(n) = lookup(t, "exp_name").filter(|v| v.is_string()) {
                b.set("exp_name", n.clone(), src);
            }
            take_checkpointing(&mut b, t, src);
        }
    }
    if let Some(h) = hparams {
        if let Some(n) = lookup(h, "exp_name").filter(|v| v.is_string()) {
            b.set("exp_name", n.clone(), source::HPARAMS);
        }
        take_checkpointing(&mut b, h, source::HPARAMS);
    }

    // 4. cleval_metrics
    if let Some(cm) = doc.get(root, "cleval_metrics")
        && let Some(items) = doc.dict(cm)
    {
        for (k, v) in items {
            let name = ckpt_torch::pyrepr::key_str(doc, *k);
            if let Ok(Some(x)) = ck.number(*v) {
                if matches!(name.as_str(), "precision" | "recall" | "hmean") {
                    b.set(&format!("metrics.{name}"), json!(x), source::CLEVAL);
                }
                additional.push((name, json!(x), source::CLEVAL));
            }
        }
    }

    // 5. ModelCheckpoint callbacks
    let file_name = layout
        .checkpoint
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mcs: Vec<CallbackSummary> = summary
        .callbacks
        .iter()
        .filter(|c| c.kind == "ModelCheckpoint")
        .cloned()
        .collect();
    if let Some(cb) = pick_callback(&mcs, &file_name) {
        if let Some(m) = &cb.monitor {
            b.set("checkpointing.monitor", json!(m), source::CALLBACK);
        }
        if let Some(m) = &cb.mode {
            b.set("checkpointing.mode", json!(m), source::CALLBACK);
        }
        if let (Some(m), Some(score)) = (&cb.monitor, cb.current_score) {
            let short = metric_short_name(m);
            if matches!(
                short.as_str(),
                "precision" | "recall" | "hmean" | "validation_loss"
            ) {
                b.set(&format!("metrics.{short}"), json!(score), source::CALLBACK);
            }
        }
        if !b.has("checkpointing.save_top_k")
            && let Some(k) = cb.best_k_models
            && k > 0
        {
            b.set("checkpointing.save_top_k", json!(k), source::INFERRED);
            b.notes.push(format!(
                "checkpointing.save_top_k inferred from the {k} entries of the callback's best_k_models (Lightning does not store save_top_k)"
            ));
        }
    }
    for cb in &mcs {
        if let (Some(m), Some(score)) = (&cb.monitor, cb.current_score) {
            additional.push((m.clone(), json!(score), source::CALLBACK));
        }
    }

    // 6. the file name
    let stem = layout
        .checkpoint
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fname = parse_file_name(&stem);
    if let Some(e) = fname.epoch {
        b.set("training.epoch", json!(e), source::FILE_NAME);
    }
    if let Some(s) = fname.step {
        b.set("training.global_step", json!(s), source::FILE_NAME);
    }
    for (name, x) in &fname.metrics {
        let short = metric_short_name(name);
        if matches!(
            short.as_str(),
            "precision" | "recall" | "hmean" | "validation_loss"
        ) {
            b.set(&format!("metrics.{short}"), json!(x), source::FILE_NAME);
        }
        additional.push((name.clone(), json!(x), source::FILE_NAME));
    }

    // save_last: a last.ckpt beside it; else the callback's own last_model_path. A
    // ModelCheckpoint with save_last=True always records and writes last.ckpt, so a callback
    // without one means save_last was off.
    if !b.has("checkpointing.save_last") {
        let has_last = layout
            .checkpoint
            .parent()
            .is_some_and(|d| d.join("last.ckpt").is_file());
        if has_last {
            b.set("checkpointing.save_last", json!(true), source::INFERRED);
        } else if let Some(cb) = pick_callback(&mcs, &file_name) {
            let recorded = cb.last_model_path.as_deref().is_some_and(|p| !p.is_empty());
            let src = if recorded {
                source::CALLBACK
            } else {
                source::INFERRED
            };
            b.set("checkpointing.save_last", json!(recorded), src);
        }
    }

    // additional_metrics: every metric found, first source per name.
    let mut am = Map::new();
    for (name, v, src) in additional {
        if !am.contains_key(&name) {
            am.insert(name.clone(), v);
            b.provenance
                .insert(format!("metrics.additional_metrics.{name}"), json!(src));
        }
    }

    // exp_name: the experiment folder.
    if !b.has("exp_name") {
        let n = layout
            .exp_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unknown".into());
        b.set("exp_name", json!(n), source::FOLDER_NAME);
    }

    // Safe defaults for what no source had.
    b.set("training.epoch", json!(0), source::DEFAULT);
    b.set("training.global_step", json!(0), source::DEFAULT);
    b.set(
        "training.training_phase",
        json!("training"),
        source::DEFAULT,
    );
    b.set("model.architecture", json!("unknown"), source::DEFAULT);
    b.set("model.encoder", json!({}), source::DEFAULT);
    // An encoder from a source keeps its values; what it lacks gets the safe defaults.
    for (k, v) in [
        ("model_name", json!("unknown")),
        ("pretrained", json!(true)),
        ("frozen", json!(false)),
    ] {
        b.set(&format!("model.encoder.{k}"), v, source::DEFAULT);
    }
    for part in ["decoder", "head", "loss"] {
        b.set(
            &format!("model.{part}"),
            json!({"name": "unknown", "params": {}}),
            source::DEFAULT,
        );
    }
    if let Some(cr) = b.root.get("created_at")
        && cr.is_null()
    {
        b.root["created_at"] = json!("1970-01-01T00:00:00");
    }

    // Normalize sections in the schema's key order.
    let mut out = Map::new();
    for key in crate::schema::TOP_LEVEL {
        let v = b.root.get(*key).cloned().unwrap_or(Value::Null);
        out.insert((*key).to_owned(), v);
    }
    let metrics = order_metrics(out.get("metrics").cloned().unwrap_or(json!({})), am);
    out.insert("metrics".into(), metrics);
    let cp = out.get("checkpointing").cloned().unwrap_or(json!({}));
    let mut cpo = Map::new();
    for k in ["monitor", "mode", "save_top_k", "save_last"] {
        cpo.insert(k.into(), cp.get(k).cloned().unwrap_or(Value::Null));
    }
    out.insert("checkpointing".into(), Value::Object(cpo));
    let tr = out.get("training").cloned().unwrap_or(json!({}));
    let mut tro = Map::new();
    for k in ["epoch", "global_step", "training_phase"] {
        tro.insert(k.into(), tr.get(k).cloned().unwrap_or(Value::Null));
    }
    out.insert("training".into(), Value::Object(tro));
    let model = out.get("model").cloned().unwrap_or(json!({}));
    let mut mo = Map::new();
    for k in ["architecture", "encoder", "decoder", "head", "loss"] {
        mo.insert(k.into(), model.get(k).cloned().unwrap_or(Value::Null));
    }
    out.insert("model".into(), Value::Object(mo));

    // ckpt's own sections.
    out.insert(
        "provenance".into(),
        Value::Object(sorted_provenance(b.provenance)),
    );
    out.insert(
        "fingerprint".into(),
        json!({
            "size_bytes": ck.size,
            "modified": modified,
            "pickle_sha256": ck.pickle_sha256,
        }),
    );
    out.insert("state".into(), state_section(summary));
    let mut generator = json!({"tool": format!("ckpt {}", env!("CARGO_PKG_VERSION"))});
    if !b.notes.is_empty() {
        generator["notes"] = json!(b.notes);
    }
    out.insert("generator".into(), generator);
    Value::Object(out)
}

fn order_metrics(m: Value, additional: Map<String, Value>) -> Value {
    let mut o = Map::new();
    for k in ["precision", "recall", "hmean"] {
        o.insert(k.into(), m.get(k).cloned().unwrap_or(Value::Null));
    }
    if let Some(v) = m.get("validation_loss") {
        o.insert("validation_loss".into(), v.clone());
    }
    o.insert("additional_metrics".into(), Value::Object(additional));
    Value::Object(o)
}

/// Provenance in the order fields appear in the sidecar.
fn sorted_provenance(p: Map<String, Value>) -> Map<String, Value> {
    let order = |k: &str| {
        crate::schema::TOP_LEVEL
            .iter()
            .position(|t| k == *t || k.starts_with(&format!("{t}.")))
            .unwrap_or(usize::MAX)
    };
    let mut items: Vec<(String, Value)> = p.into_iter().collect();
    items.sort_by_key(|a| order(&a.0));
    items.into_iter().collect()
}

fn state_section(s: &Summary) -> Value {
    let sd = s.state_dicts.first();
    let mut v = json!({
        "format": s.format,
        "size_bytes": s.size_bytes,
    });
    if let Some(lv) = &s.lightning_version {
        v["lightning_version"] = json!(lv);
    }
    if let Some(sd) = sd {
        v["state_dict_key"] = json!(sd.path);
        v["tensors"] = json!(sd.tensors);
        v["parameters"] = json!(sd.elements);
        v["tensor_bytes"] = json!(sd.bytes);
        let dt: Map<String, Value> = sd
            .by_dtype
            .iter()
            .map(|d| (d.dtype.clone(), json!(d.tensors)))
            .collect();
        v["dtypes"] = Value::Object(dt);
        if !sd.wrapper_prefixes.is_empty() {
            v["wrapper_prefixes"] = json!(sd.wrapper_prefixes);
        }
    }
    v["has_optimizer_state"] = json!(!s.optimizers.is_empty());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fraction_metric_out_of_range_falls_to_the_next_source() {
        let mut b = Builder {
            root: json!({}),
            provenance: Map::new(),
            notes: Vec::new(),
        };
        // A percentage from the callback is refused with a note; the file name's fraction wins.
        assert!(!b.set("metrics.hmean", json!(77.18), source::CALLBACK));
        assert!(!b.set("metrics.recall", json!(-1e16), source::CALLBACK));
        assert!(b.set("metrics.hmean", json!(0.7718), source::FILE_NAME));
        assert_eq!(lookup(&b.root, "metrics.hmean"), Some(&json!(0.7718)));
        assert_eq!(b.provenance["metrics.hmean"], json!(source::FILE_NAME));
        assert_eq!(b.notes.len(), 2, "{:?}", b.notes);
        assert!(b.notes[0].contains("77.18") && b.notes[0].contains("outside [0, 1]"));
        // Bounds are inclusive; other metrics are not held to them.
        assert!(b.set("metrics.precision", json!(1.0), source::CALLBACK));
        assert!(b.set("metrics.validation_loss", json!(3.5), source::CALLBACK));
    }

    #[test]
    fn file_names() {
        let i = parse_file_name("epoch=02-step=6-hmean=0.7718");
        assert_eq!((i.epoch, i.step), (Some(2), Some(6)));
        assert_eq!(i.metrics, vec![("hmean".to_owned(), 0.7718)]);
        let i = parse_file_name("best-epoch02-val_f1-0.847");
        assert_eq!(i.epoch, Some(2));
        assert_eq!(i.metrics, vec![("val_f1".to_owned(), 0.847)]);
        let i = parse_file_name("epoch=3-step=400-v1");
        assert_eq!((i.epoch, i.step), (Some(3), Some(400)));
        assert!(i.metrics.is_empty());
        let i = parse_file_name("last");
        assert_eq!(i, FileNameInfo::default());
        let i = parse_file_name("epoch=10");
        assert_eq!(i.epoch, Some(10));
    }

    #[test]
    fn metric_names() {
        assert_eq!(metric_short_name("val/hmean"), "hmean");
        assert_eq!(metric_short_name("val/loss"), "validation_loss");
        assert_eq!(metric_short_name("val_loss"), "validation_loss");
        assert_eq!(metric_short_name("val_f1"), "f1");
    }

    #[test]
    fn times() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_760_738_416_030_374);
        assert_eq!(iso_time(t), "2025-10-17T22:00:16.030374");
        assert_eq!(iso_time(std::time::UNIX_EPOCH), "1970-01-01T00:00:00");
    }

    #[test]
    fn layouts() {
        let l = Layout::new(Path::new("/o/exp/checkpoints/best.ckpt"), None);
        assert_eq!(l.exp_dir, Path::new("/o/exp"));
        assert_eq!(l.relative_path(), "exp/checkpoints/best.ckpt");
        let l = Layout::new(
            Path::new("/o/exp/checkpoints/best.ckpt"),
            Some(Path::new("/o")),
        );
        assert_eq!(l.relative_path(), "exp/checkpoints/best.ckpt");
        let l = Layout::new(Path::new("/o/a/b.pt"), None);
        assert_eq!(l.exp_dir, Path::new("/o/a"));
        assert_eq!(l.relative_path(), "a/b.pt");
    }
}
