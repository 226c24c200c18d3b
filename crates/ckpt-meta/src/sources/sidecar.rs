//! A `.metadata.yaml|json` sidecar as a source: what a person (or ckpt) asserted about the
//! file. What ckpt itself filled with the schema's placeholders (`provenance: default`, or an
//! `unknown`) asserts nothing and is not read back, so writing a sidecar never changes what
//! ckpt says about a file.

use serde_json::{Map, Value, json};

use crate::config::lookup;
use crate::engine::MODEL_PARTS;
use crate::fact::{Fact, Field, Source};
use crate::sources::names::metric_short_name;

/// The sidecar's own record of where a value came from (`provenance.<path>`).
fn provenance<'v>(sc: &'v Value, path: &str) -> Option<&'v str> {
    sc.get("provenance")
        .and_then(|p| p.get(path))
        .and_then(Value::as_str)
}

fn is_placeholder(sc: &Value, path: &str, v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("unknown") || provenance(sc, path) == Some("default")
}

/// A model part without the leaves that are placeholders; `None` when nothing is left but
/// empty `params`.
fn part(sc: &Value, path: &str, v: &Value) -> Option<Value> {
    if provenance(sc, path) == Some("default") {
        return None;
    }
    let Some(m) = v.as_object() else {
        return (!is_placeholder(sc, path, v)).then(|| v.clone());
    };
    let kept: Map<String, Value> = m
        .iter()
        .filter(|(k, x)| !is_placeholder(sc, &format!("{path}.{k}"), x))
        .filter(|(k, x)| !(k.as_str() == "params" && x.as_object().is_some_and(Map::is_empty)))
        .map(|(k, x)| (k.clone(), x.clone()))
        .collect();
    (!kept.is_empty()).then_some(Value::Object(kept))
}

/// The source a sidecar's value is read back at: what the live run observed when it saved
/// the file (`provenance: live`) keeps its rank, so the catalog shows what the sidecar says
/// — but only from a sidecar with a fingerprint (the callers drop one whose fingerprint no
/// longer matches the file); anything else is what the sidecar asserts.
fn read_back_source(sc: &Value, path: &str) -> Source {
    if provenance(sc, path) == Some(Source::Live.as_str())
        && sc.get("fingerprint").is_some_and(Value::is_object)
    {
        Source::Live
    } else {
        Source::Sidecar
    }
}

/// The facts a sidecar states.
pub fn sidecar_facts(sc: &Value) -> Vec<Fact> {
    let mut f = Vec::new();
    let mut put_at = |field: Field, v: &Value, path: &str| {
        f.push(Fact::new(field, v.clone(), read_back_source(sc, path)))
    };
    for (from, field) in [
        ("exp_name", Field::Experiment),
        ("training.epoch", Field::Epoch),
        ("training.global_step", Field::GlobalStep),
        ("training.training_phase", Field::TrainingPhase),
        ("checkpointing.monitor", Field::Monitor),
        ("checkpointing.mode", Field::Mode),
        ("checkpointing.save_top_k", Field::SaveTopK),
        ("checkpointing.save_last", Field::SaveLast),
        ("model.architecture", Field::Model("architecture".into())),
        ("state.parameters", Field::Params),
        ("state.tensors", Field::Tensors),
        ("state.format", Field::Format),
    ] {
        if let Some(v) = lookup(sc, from).filter(|v| !is_placeholder(sc, from, v)) {
            put_at(field, v, from);
        }
    }
    for (name, _) in MODEL_PARTS {
        let path = format!("model.{name}");
        if let Some(v) = lookup(sc, &path).and_then(|v| part(sc, &path, v)) {
            put_at(Field::Model(name.to_owned()), &v, &path);
        }
    }
    // Metrics by the names they were logged under; the schema's four short names only when no
    // logged name stands behind them (a hand-written sidecar).
    let additional = lookup(sc, "metrics.additional_metrics").and_then(Value::as_object);
    let mut shorts: Vec<String> = Vec::new();
    if let Some(am) = additional {
        for (n, x) in am {
            if x.is_number() {
                put_at(
                    Field::Metric(n.clone()),
                    x,
                    &format!("metrics.additional_metrics.{n}"),
                );
                shorts.push(metric_short_name(n));
            }
        }
    }
    for n in ["precision", "recall", "hmean", "validation_loss"] {
        if let Some(x) = lookup(sc, &format!("metrics.{n}")).filter(|x| x.is_number())
            && !shorts.iter().any(|s| s == n)
        {
            put_at(Field::Metric(n.to_owned()), x, &format!("metrics.{n}"));
        }
    }
    f
}

/// Whether a sidecar's fingerprint says it still describes the file: judged without opening
/// the checkpoint when size and mtime agree; otherwise from the pickle hash if known.
pub fn is_fresh(sc: &Value, size: u64, modified: &str, pickle_sha: Option<&str>) -> Option<bool> {
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

/// The fingerprint section a sidecar records.
pub fn fingerprint(size: u64, modified: Option<&str>, pickle_sha256: &str) -> Value {
    json!({"size_bytes": size, "modified": modified, "pickle_sha256": pickle_sha256})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(f: &[Fact], field: Field) -> Option<&Value> {
        f.iter().find(|x| x.field == field).map(|x| &x.value)
    }

    #[test]
    fn placeholders_are_not_read_back() {
        let sc = json!({
            "exp_name": "e",
            "training": {"epoch": 0, "global_step": 0, "training_phase": "training"},
            "model": {
                "architecture": "unknown",
                "encoder": {"model_name": "resnet", "pretrained": true, "frozen": false},
                "decoder": {"name": "unknown", "params": {}},
            },
            "metrics": {"precision": null, "recall": null, "hmean": 0.9,
                        "additional_metrics": {"val/hmean": 0.9}},
            "provenance": {"training.epoch": "default", "training.global_step": "checkpoint",
                           "training.training_phase": "default",
                           "model.encoder": "inferred", "model.encoder.pretrained": "default",
                           "model.encoder.frozen": "default"}
        });
        let f = sidecar_facts(&sc);
        assert_eq!(get(&f, Field::Epoch), None);
        assert_eq!(get(&f, Field::GlobalStep), Some(&json!(0)));
        assert_eq!(get(&f, Field::TrainingPhase), None);
        assert_eq!(get(&f, Field::Model("architecture".into())), None);
        assert_eq!(
            get(&f, Field::Model("encoder".into())),
            Some(&json!({"model_name": "resnet"}))
        );
        assert_eq!(get(&f, Field::Model("decoder".into())), None);
        assert_eq!(
            get(&f, Field::Metric("val/hmean".into())),
            Some(&json!(0.9))
        );
        assert_eq!(get(&f, Field::Metric("hmean".into())), None);
    }

    #[test]
    fn a_hand_written_sidecar_says_what_it_says() {
        let sc = json!({"exp_name": "mine", "metrics": {"hmean": 0.8},
                        "model": {"architecture": "dbnet", "loss": {"name": "focal", "params": {}}}});
        let f = sidecar_facts(&sc);
        assert_eq!(get(&f, Field::Experiment), Some(&json!("mine")));
        assert_eq!(get(&f, Field::Metric("hmean".into())), Some(&json!(0.8)));
        assert_eq!(
            get(&f, Field::Model("architecture".into())),
            Some(&json!("dbnet"))
        );
        assert_eq!(
            get(&f, Field::Model("loss".into())),
            Some(&json!({"name": "focal"}))
        );
        assert!(f.iter().all(|x| x.source == Source::Sidecar));
    }

    #[test]
    fn what_the_live_run_saw_keeps_its_rank_only_with_a_fingerprint() {
        let mut sc = json!({
            "checkpointing": {"monitor": "val_loss", "mode": "min", "save_top_k": 2},
            "metrics": {"additional_metrics": {"val_loss": 0.25, "epoch_time": 3.0}},
            "provenance": {"checkpointing.monitor": "live", "checkpointing.mode": "callback",
                           "checkpointing.save_top_k": "live",
                           "metrics.additional_metrics.val_loss": "live",
                           "metrics.additional_metrics.epoch_time": "metrics_csv"},
            "fingerprint": {"size_bytes": 10, "pickle_sha256": "0".repeat(64)}
        });
        let f = sidecar_facts(&sc);
        let src = |field: Field| f.iter().find(|x| x.field == field).map(|x| x.source);
        assert_eq!(src(Field::Monitor), Some(Source::Live));
        assert_eq!(src(Field::SaveTopK), Some(Source::Live));
        assert_eq!(src(Field::Mode), Some(Source::Sidecar));
        assert_eq!(src(Field::Metric("val_loss".into())), Some(Source::Live));
        assert_eq!(
            src(Field::Metric("epoch_time".into())),
            Some(Source::Sidecar)
        );
        // Without a fingerprint nothing proves it describes this file: an assertion only.
        sc.as_object_mut().unwrap().remove("fingerprint");
        assert!(
            sidecar_facts(&sc)
                .iter()
                .all(|x| x.source == Source::Sidecar)
        );
    }
}
