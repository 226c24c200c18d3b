//! The sidecar as a projection of a resolved checkpoint: the same [`Resolution`] the catalog
//! shows, written in the schema existing tools read (`schema_version: '1.0'`), with the
//! schema's placeholders for what no source had (recorded as `provenance: default`, so they
//! are never read back as facts) and ckpt's own sections (provenance, fingerprint, state).

use std::path::{Path, PathBuf};

use ckpt_model::Summarize;
use ckpt_torch::Checkpoint;
use ckpt_torch::summary::Summary;
use serde_json::{Map, Value, json};

use crate::engine::{MODEL_PARTS, Resolution, resolve};
use crate::fact::{Fact, Field, Source};
use crate::schema::SCHEMA_VERSION;
use crate::sources::live::{self, LiveRun};
use crate::sources::names::{Layout, metric_short_name};
use crate::sources::{self, Around, Kind};

pub use crate::sources::checkpoint::hparams_of;
pub use crate::sources::names::{FileNameInfo, iso_time, parse_file_name};

/// Where a sidecar's field comes from in a resolution.
const SCALARS: [(&str, &str, Field); 9] = [
    ("", "exp_name", Field::Experiment),
    ("training", "epoch", Field::Epoch),
    ("training", "global_step", Field::GlobalStep),
    ("training", "training_phase", Field::TrainingPhase),
    ("checkpointing", "monitor", Field::Monitor),
    ("checkpointing", "mode", Field::Mode),
    ("checkpointing", "save_top_k", Field::SaveTopK),
    ("checkpointing", "save_last", Field::SaveLast),
    ("model", "architecture", Field::Model(String::new())),
];

/// The placeholders the schema asks for when no source has a value.
fn scalar_default(section: &str, key: &str) -> Option<Value> {
    match (section, key) {
        ("training", "epoch" | "global_step") => Some(json!(0)),
        ("training", "training_phase") => Some(json!("training")),
        ("model", "architecture") => Some(json!("unknown")),
        ("", "exp_name") => Some(json!("unknown")),
        _ => None,
    }
}

fn part_defaults(part: &str) -> Vec<(&'static str, Value)> {
    if part == "encoder" {
        vec![
            ("model_name", json!("unknown")),
            ("pretrained", json!(true)),
            ("frozen", json!(false)),
        ]
    } else {
        vec![("name", json!("unknown")), ("params", json!({}))]
    }
}

/// Every fact known about one checkpoint file for its sidecar: the checkpoint itself (as the
/// catalog reads it), the places around it, an existing fresh sidecar (`.json` beside a
/// `.yaml` being written, or the file being rewritten), and `stat`.
pub fn gather_for_sidecar(
    path: &Path,
    ck: &Checkpoint,
    around: &Around<'_>,
) -> (Vec<Fact>, Option<String>) {
    let scan = sources::checkpoint::scan(path);
    let mut facts = sources::checkpoint::file_facts_of_open(path, ck, &scan);
    drop(scan);
    let error = facts
        .iter()
        .find(|f| f.field == Field::Error)
        .and_then(|f| f.value.as_str())
        .map(str::to_owned);
    facts.extend(sources::around(path, Kind::File, around));
    // A local file's or an object's (from its listing) modification time.
    let modified = ckpt_io::stat(path)
        .ok()
        .and_then(|m| crate::sources::names::mtime_of(m.identity.mtime_ns))
        .map(iso_time);
    if let Some(m) = &modified {
        facts.push(Fact::new(Field::Modified, json!(m), Source::Filesystem));
    }
    facts.push(Fact::new(
        Field::SizeBytes,
        json!(ck.size),
        Source::Filesystem,
    ));
    for p in [
        crate::sidecar::yaml_path(path),
        crate::sidecar::json_path(path),
    ] {
        if !(around.is_file)(&p) {
            continue;
        }
        if let Ok(sc) = crate::sidecar::Sidecar::read(&p)
            && sources::sidecar::is_fresh(
                &sc.value,
                ck.size,
                modified.as_deref().unwrap_or(""),
                Some(&ck.pickle_sha256),
            ) != Some(false)
            && crate::schema::validate(&sc.value)
                .iter()
                .all(|p| p.message == "missing")
        {
            facts.extend(sources::sidecar::sidecar_facts(&sc.value));
        }
    }
    (facts, error)
}

/// Resolve one checkpoint file and project it into its sidecar (see [`project`]).
pub fn build_sidecar(ck: &Checkpoint, layout: &Layout, around: &Around<'_>) -> (Value, Resolution) {
    let (facts, _) = gather_for_sidecar(&layout.checkpoint, ck, around);
    let r = resolve(facts);
    let summary = ck.summary();
    (project(&r, ck, &summary, layout), r)
}

/// Why a sidecar was not built for a checkpoint (`convert-legacy`'s reasons to fail a file).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The checkpoint could not be read as one (its entry would carry this error).
    #[error("{path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    /// Its `hyper_parameters` are over a budget: the sidecar would lack what they say.
    #[error("{path}: {message}")]
    OverBudget { path: PathBuf, message: String },
    /// What would be written does not pass `ckpt validate`.
    #[error("{path}: the sidecar built for it would not validate ({problem})")]
    Invalid { path: PathBuf, problem: String },
}

/// The sidecar of a checkpoint that a training run has just saved: the same facts, engine and
/// projection as `ckpt convert-legacy --checkpoint FILE` (so every value it shares with that
/// command is that command's), plus what the live run observed ([`LiveRun`], at
/// [`Source::Live`]): its metrics and checkpoint callback's settings as facts, its Hydra job,
/// loggers and trainer as the `run` section. When the run names its Hydra config and no
/// `.hydra/config.yaml` is found around the file (checkpoints saved outside the job's folder),
/// that config is read as the run's Hydra config, as if it were beside the file.
pub fn build_live_sidecar(
    ck: &Checkpoint,
    layout: &Layout,
    around: &Around<'_>,
    live: &LiveRun,
) -> Result<(Value, Resolution), BuildError> {
    let path = &layout.checkpoint;
    let (mut facts, error) = gather_for_sidecar(path, ck, around);
    if let Some(message) = error {
        return Err(BuildError::Unreadable {
            path: path.clone(),
            message,
        });
    }
    if let Some(w) = facts
        .iter()
        .find(|f| f.field == Field::Warning && f.source == Source::Hparams)
        .and_then(|f| f.value.as_str())
    {
        return Err(BuildError::OverBudget {
            path: path.clone(),
            message: w.trim_end_matches("; hyper_parameters ignored").to_owned(),
        });
    }
    // The live facts go first: among facts of one rank the first wins, and a file saved
    // again with the same bytes still matches its old sidecar, whose `live` values
    // (read back at the same rank) are the previous save's, not this one's.
    facts.splice(0..0, live::live_facts(live));
    if let Some(cfg) = live.hydra_config()
        && around.dirs.hydra_for(path, around.root).is_none()
    {
        let cfg = Path::new(cfg);
        match around.dirs.config(cfg) {
            Some(v) => facts.extend(sources::config::tree_facts(&v, Source::Hydra)),
            None => {
                if let Some(w) = around.dirs.config_warning(cfg) {
                    facts.push(Fact::warning(format!("{w}; config ignored"), Source::Hydra));
                }
            }
        }
    }
    let r = resolve(facts);
    let summary = ck.summary();
    let mut v = project(&r, ck, &summary, layout);
    if let Some(obj) = v.as_object_mut() {
        if let Some(run) = live::run_section(live) {
            obj.insert("run".into(), run);
        }
        if let Some(w) = &live.writer
            && let Some(g) = obj.get_mut("generator").and_then(Value::as_object_mut)
        {
            g.insert("writer".into(), json!(w));
        }
    }
    let v = crate::sidecar::ordered(v);
    if let Some(p) = crate::schema::validate(&v).first() {
        return Err(BuildError::Invalid {
            path: path.clone(),
            problem: p.to_string(),
        });
    }
    Ok((v, r))
}

/// The sidecar a resolution projects to.
pub fn project(r: &Resolution, ck: &Checkpoint, summary: &Summary, layout: &Layout) -> Value {
    let mut provenance: Vec<(String, Value)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut sections: Map<String, Value> = Map::new();
    for s in ["training", "model", "metrics", "checkpointing"] {
        sections.insert(s.to_owned(), Value::Object(Map::new()));
    }
    let mut top: Map<String, Value> = Map::new();
    for (section, key, field) in SCALARS {
        let field = match field {
            Field::Model(_) => Field::Model(key.to_owned()),
            f => f,
        };
        let path = if section.is_empty() {
            key.to_owned()
        } else {
            format!("{section}.{key}")
        };
        let (v, src) = match r.chosen.get(&field) {
            Some(c) => (c.value.clone(), Some(c.source)),
            None => match scalar_default(section, key) {
                Some(d) => (d, Some(Source::Default)),
                None => (Value::Null, None),
            },
        };
        if let Some(s) = src {
            provenance.push((path, json!(s.as_str())));
        }
        if section.is_empty() {
            top.insert(key.to_owned(), v);
        } else if let Some(m) = sections.get_mut(section).and_then(Value::as_object_mut) {
            m.insert(key.to_owned(), v);
        }
    }
    if r.source(&Field::SaveTopK) == Some(Source::Inferred)
        && let Some(k) = r.get(&Field::SaveTopK)
    {
        notes.push(format!(
            "checkpointing.save_top_k inferred from the {k} entries of the callback's best_k_models (Lightning does not store save_top_k)"
        ));
    }
    // Model parts: the resolved object, the schema's placeholders for the leaves it lacks.
    let model = sections.get_mut("model").and_then(Value::as_object_mut);
    if let Some(model) = model {
        for (part, _) in MODEL_PARTS {
            let path = format!("model.{part}");
            let field = Field::Model(part.to_owned());
            let mut obj = match r.chosen.get(&field) {
                Some(c) => {
                    provenance.push((path.clone(), json!(c.source.as_str())));
                    c.value.as_object().cloned().unwrap_or_default()
                }
                None => {
                    provenance.push((path.clone(), json!(Source::Default.as_str())));
                    Map::new()
                }
            };
            for (k, d) in part_defaults(part) {
                if !obj.contains_key(k) {
                    obj.insert(k.to_owned(), d);
                    if r.chosen.contains_key(&field) {
                        provenance.push((format!("{path}.{k}"), json!(Source::Default.as_str())));
                    }
                }
            }
            model.insert(part.to_owned(), Value::Object(obj));
        }
    }
    // Metrics: every metric by the name it was logged under, and the schema's four short
    // names from the best-ranked metric that has each.
    let mut metrics: Vec<(&str, &Value, Source)> = r
        .family(|f| match f {
            Field::Metric(k) => Some(k.as_str()),
            _ => None,
        })
        .map(|(k, c)| (k, &c.value, c.source))
        .collect();
    metrics.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(b.0)));
    let mut m = Map::new();
    for short in ["precision", "recall", "hmean"] {
        m.insert(short.to_owned(), Value::Null);
    }
    let mut canonical_from: Vec<(String, String, Source)> = Vec::new();
    for short in ["precision", "recall", "hmean", "validation_loss"] {
        let Some((name, v, src)) = metrics
            .iter()
            .find(|(n, _, _)| metric_short_name(n) == short)
        else {
            continue;
        };
        let fraction = short != "validation_loss";
        if fraction
            && let Some(x) = v.as_f64()
            && !(0.0..=1.0).contains(&x)
        {
            notes.push(format!(
                "metrics.{short}: {x} from the {src} is outside [0, 1] (the schema's range); kept under additional_metrics only"
            ));
            continue;
        }
        m.insert(short.to_owned(), (*v).clone());
        canonical_from.push((short.to_owned(), (*name).to_owned(), *src));
    }
    let mut am = Map::new();
    let mut by_name = metrics.clone();
    by_name.sort_by(|a, b| a.0.cmp(b.0));
    for (name, v, src) in &by_name {
        am.insert((*name).to_owned(), (*v).clone());
        provenance.push((
            format!("metrics.additional_metrics.{name}"),
            json!(src.as_str()),
        ));
    }
    for (short, _, src) in canonical_from {
        provenance.push((format!("metrics.{short}"), json!(src.as_str())));
    }
    m.insert("additional_metrics".to_owned(), Value::Object(am));
    sections.insert("metrics".to_owned(), Value::Object(m));

    let modified = r.str(&Field::Modified).map(str::to_owned);
    match &modified {
        Some(_) => provenance.push(("created_at".into(), json!(Source::Filesystem.as_str()))),
        None => provenance.push(("created_at".into(), json!(Source::Default.as_str()))),
    }
    let mut out = Map::new();
    out.insert("schema_version".into(), json!(SCHEMA_VERSION));
    out.insert("checkpoint_path".into(), json!(layout.relative_path()));
    out.insert(
        "exp_name".into(),
        top.remove("exp_name").unwrap_or(Value::Null),
    );
    out.insert(
        "created_at".into(),
        json!(modified.as_deref().unwrap_or("1970-01-01T00:00:00")),
    );
    for s in ["training", "model", "metrics", "checkpointing"] {
        out.insert(s.to_owned(), sections.remove(s).unwrap_or(json!({})));
    }
    out.insert(
        "provenance".into(),
        Value::Object(sorted_provenance(provenance)),
    );
    out.insert(
        "fingerprint".into(),
        sources::sidecar::fingerprint(ck.size, modified.as_deref(), &ck.pickle_sha256),
    );
    out.insert("state".into(), state_section(summary));
    let mut generator = json!({"tool": format!("ckpt {}", env!("CARGO_PKG_VERSION"))});
    if !notes.is_empty() {
        generator["notes"] = json!(notes);
    }
    out.insert("generator".into(), generator);
    Value::Object(out)
}

/// Provenance in the order fields appear in the sidecar (stable within a section).
fn sorted_provenance(p: Vec<(String, Value)>) -> Map<String, Value> {
    let order = |k: &str| {
        crate::schema::TOP_LEVEL
            .iter()
            .position(|t| k == *t || k.starts_with(&format!("{t}.")))
            .unwrap_or(usize::MAX)
    };
    let mut items = p;
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
