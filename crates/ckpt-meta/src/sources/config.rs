//! What a configuration tree says: the checkpoint's `hyper_parameters`, a `<stem>.config.yaml`,
//! the run's Hydra config, Lightning's `hparams.yaml`, a logger's params, a run's
//! `config.json`. One reader for every tree, so a key means the same thing wherever it is
//! found; only the [`Source`] differs.

use serde_json::Value;

use crate::config::lookup;
use crate::fact::{Fact, Field, Source};

/// Largest object (as JSON text) taken as a `model.*` value.
const MAX_SMALL_OBJECT: usize = 4096;

/// Paths under which each model part may live, the schema's own spellings first.
fn part_paths(part: &str) -> [String; 3] {
    [
        format!("model.component_overrides.{part}"),
        format!("model.{part}"),
        part.to_owned(),
    ]
}

/// Where the architecture's name is spelled, the schema's own spellings first.
const ARCHITECTURE_KEYS: &[&str] = &[
    "architecture_name",
    "architecture",
    "model.architecture",
    "model.architecture_name",
    "arch",
    "model_name",
    "model_type",
    "model",
    "model.name",
    "model.arch",
    "model.model_name",
];

/// Other spellings of the model's parts, tried when the schema's are absent; a part may be
/// given by name (`backbone: resnet50`) or as an object.
const PART_ALIASES: [(&str, &[&str]); 4] = [
    ("encoder", &["backbone", "encoder_name", "model.backbone"]),
    ("decoder", &["decoder_name"]),
    ("head", &["head_name"]),
    (
        "loss",
        &[
            "loss_function",
            "loss_fn",
            "loss_name",
            "criterion",
            "model.loss_function",
        ],
    ),
];

/// Sections where checkpointing settings live.
const CHECKPOINTING_SECTIONS: &[&str] = &[
    "callbacks.model_checkpoint",
    "checkpoint",
    "checkpointing",
    "model_checkpoint",
];

fn small(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.is_empty(),
        Value::Object(m) => !m.is_empty() && v.to_string().len() <= MAX_SMALL_OBJECT,
        _ => false,
    }
}

/// Facts a configuration tree states: `model.architecture`, `model.{encoder,decoder,head,
/// loss}`, `experiment` (`exp_name`), `monitor`, `mode`, `save_top_k`, `save_last`. Each field
/// comes from the first place it is found.
pub fn tree_facts(tree: &Value, src: Source) -> Vec<Fact> {
    let mut out: Vec<Fact> = Vec::new();
    if !tree.is_object() {
        return out;
    }
    if let Some(v) = ARCHITECTURE_KEYS
        .iter()
        .filter_map(|k| lookup(tree, k))
        .find(|v| v.is_string() && small(v))
    {
        out.push(Fact::new(
            Field::Model("architecture".into()),
            v.clone(),
            src,
        ));
    }
    for (part, aliases) in PART_ALIASES {
        let found = part_paths(part)
            .iter()
            .filter_map(|p| lookup(tree, p))
            .find(|v| small(v))
            .or_else(|| {
                aliases
                    .iter()
                    .filter_map(|p| lookup(tree, p))
                    .find(|v| small(v))
            });
        if let Some(v) = found {
            out.push(Fact::new(Field::Model(part.into()), v.clone(), src));
        }
    }
    if let Some(n) = lookup(tree, "exp_name").filter(|v| v.is_string() && small(v)) {
        out.push(Fact::new(Field::Experiment, n.clone(), src));
    }
    for (field, key) in [
        (Field::Monitor, "monitor"),
        (Field::Mode, "mode"),
        (Field::SaveTopK, "save_top_k"),
        (Field::SaveLast, "save_last"),
    ] {
        let found = CHECKPOINTING_SECTIONS
            .iter()
            .filter_map(|s| lookup(tree, s))
            .filter_map(|s| s.get(key))
            .find(|v| match key {
                "monitor" => v.as_str().is_some_and(|s| !s.is_empty()),
                "mode" => matches!(v.as_str(), Some("max" | "min")),
                "save_top_k" => v.is_i64(),
                _ => v.is_boolean(),
            });
        if let Some(v) = found {
            out.push(Fact::new(field, v.clone(), src));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(f: &[Fact], field: Field) -> Option<&Value> {
        f.iter().find(|x| x.field == field).map(|x| &x.value)
    }

    #[test]
    fn schema_spellings_come_before_aliases() {
        let t = json!({
            "architecture_name": "dbnet",
            "model_name": "other",
            "model": {"encoder": {"model_name": "resnet50"}, "backbone": "ignored"},
            "loss": "focal",
            "exp_name": "exp1",
            "callbacks": {"model_checkpoint": {"monitor": "val/hmean", "mode": "max", "save_top_k": 3, "save_last": true}}
        });
        let f = tree_facts(&t, Source::Hydra);
        assert_eq!(
            get(&f, Field::Model("architecture".into())),
            Some(&json!("dbnet"))
        );
        assert_eq!(
            get(&f, Field::Model("encoder".into())),
            Some(&json!({"model_name": "resnet50"}))
        );
        assert_eq!(get(&f, Field::Model("loss".into())), Some(&json!("focal")));
        assert_eq!(get(&f, Field::Experiment), Some(&json!("exp1")));
        assert_eq!(get(&f, Field::Monitor), Some(&json!("val/hmean")));
        assert_eq!(get(&f, Field::Mode), Some(&json!("max")));
        assert_eq!(get(&f, Field::SaveTopK), Some(&json!(3)));
        assert_eq!(get(&f, Field::SaveLast), Some(&json!(true)));
        assert!(f.iter().all(|x| x.source == Source::Hydra));
    }

    #[test]
    fn aliases_and_what_is_not_a_name() {
        let t = json!({"backbone": "resnet18", "loss": 0.5, "criterion": "ce", "mode": "sideways"});
        let f = tree_facts(&t, Source::HparamsYaml);
        assert_eq!(
            get(&f, Field::Model("encoder".into())),
            Some(&json!("resnet18"))
        );
        assert_eq!(get(&f, Field::Model("loss".into())), Some(&json!("ce")));
        assert_eq!(get(&f, Field::Mode), None);
        assert!(tree_facts(&json!([1, 2]), Source::Hydra).is_empty());
    }
}
