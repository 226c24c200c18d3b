//! N checkpoints side by side (`ckpt compare A B C …`): every field of each, the ones that
//! differ marked; the tensors whose presence, dtype or shape differ; the identity components.
//! The caller hands each checkpoint's fields already flattened to dotted leaves (the catalog's
//! entry), so this crate stays below the catalog.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Identity, IdentityInputs};
use ckpt_meta::engine::same_value as same;

/// One checkpoint to compare.
#[derive(Debug, Clone)]
pub struct Side {
    /// How columns are headed (a file name, or `run/file` when names repeat).
    pub label: String,
    pub path: String,
    /// Dotted field → value (`epoch`, `metrics.val_loss`, `model.encoder.model_name`,
    /// `hparams.optimizer.lr`).
    pub fields: BTreeMap<String, Value>,
    /// Its identity inputs, when they could be read.
    pub inputs: Option<IdentityInputs>,
    pub identity: Option<Identity>,
}

/// A compared checkpoint, as the report names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Compared {
    pub label: String,
    pub path: String,
}

/// One field across the checkpoints (`null` where a checkpoint has none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// `checkpoint`, `metrics`, `model`, `hparams`, `identity`.
    pub section: String,
    pub field: String,
    pub values: Vec<Value>,
    pub differs: bool,
}

/// A tensor's dtype and shape in one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TensorSig {
    pub dtype: String,
    pub shape: Vec<u64>,
}

/// A tensor that is missing from some checkpoint or differs in dtype or shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TensorRow {
    pub name: String,
    /// Per checkpoint: its dtype and shape, or `null` where it has no such tensor.
    pub values: Vec<Option<TensorSig>>,
}

/// The tensors across the checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tensors {
    /// Tensors per checkpoint (`null` where the state dict could not be read).
    pub counts: Vec<Option<usize>>,
    /// How many names differ (present in some only, or another dtype or shape).
    pub differing: usize,
    /// Those names, sorted, up to the limit asked for.
    pub rows: Vec<TensorRow>,
}

/// What `ckpt compare --format json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub checkpoints: Vec<Compared>,
    pub rows: Vec<Row>,
    pub tensors: Tensors,
}

/// One component of an identity, by name.
type IdPart = fn(&Identity) -> Option<String>;

/// Fields always shown, in this order, in the `checkpoint` section.
const CHECKPOINT_FIELDS: &[&str] = &[
    "path",
    "experiment",
    "run",
    "format",
    "epoch",
    "global_step",
    "params",
    "tensors",
    "size_bytes",
    "security",
    "monitor",
    "mode",
];

fn section_of(field: &str) -> Option<&'static str> {
    let head = field.split('.').next().unwrap_or(field);
    match head {
        "metrics" => Some("metrics"),
        "model" => Some("model"),
        "hparams" => Some("hparams"),
        _ if CHECKPOINT_FIELDS.contains(&field) => Some("checkpoint"),
        _ => None,
    }
}

/// Compare `sides`. Rows of `model` and `hparams` that are the same everywhere are left out
/// unless `all`; the `checkpoint`, `metrics` and `identity` rows are always shown. At most
/// `max_tensor_rows` differing tensors are listed (all are counted).
pub fn compare(sides: &[Side], all: bool, max_tensor_rows: usize) -> Comparison {
    let n = sides.len();
    let mut rows = Vec::new();
    let mut push = |section: &str, field: &str, values: Vec<Value>, always: bool| {
        let differs = values.windows(2).any(|w| !same(&w[0], &w[1]));
        if always || all || differs {
            rows.push(Row {
                section: section.to_owned(),
                field: field.to_owned(),
                values,
                differs,
            });
        }
    };
    let get = |s: &Side, f: &str| s.fields.get(f).cloned().unwrap_or(Value::Null);
    for f in CHECKPOINT_FIELDS {
        let values: Vec<Value> = sides.iter().map(|s| get(s, f)).collect();
        if values.iter().all(Value::is_null) {
            continue;
        }
        push("checkpoint", f, values, true);
    }
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for s in sides {
        names.extend(s.fields.keys().map(String::as_str));
    }
    for section in ["metrics", "model", "hparams"] {
        for f in names.iter().filter(|f| section_of(f) == Some(section)) {
            let values: Vec<Value> = sides.iter().map(|s| get(s, f)).collect();
            push(section, f, values, section == "metrics");
        }
    }
    let ids: [(&str, IdPart); 4] = [
        ("hash", |i| Some(i.hash.clone())),
        ("architecture", |i| i.components.architecture.clone()),
        ("config", |i| i.components.hyperparameters.clone()),
        ("data", |i| i.components.data.clone()),
    ];
    if sides.iter().any(|s| s.identity.is_some()) {
        for (name, pick) in ids {
            let values: Vec<Value> = sides
                .iter()
                .map(|s| {
                    s.identity
                        .as_ref()
                        .and_then(pick)
                        .map_or(Value::Null, Value::from)
                })
                .collect();
            push("identity", name, values, true);
        }
    }
    // Tensors: every name of any side; a row when it is not the same everywhere.
    let mut tnames: BTreeSet<&str> = BTreeSet::new();
    for s in sides {
        if let Some(i) = &s.inputs {
            tnames.extend(i.tensors.names());
        }
    }
    let mut differing = 0usize;
    let mut trows = Vec::new();
    for name in tnames {
        let values: Vec<Option<TensorSig>> = sides
            .iter()
            .map(|s| {
                s.inputs
                    .as_ref()
                    .and_then(|i| i.tensors.get(name))
                    .map(|(dtype, shape)| TensorSig {
                        dtype: dtype.to_owned(),
                        shape: shape.to_vec(),
                    })
            })
            .collect();
        if values.windows(2).all(|w| w[0] == w[1]) {
            continue;
        }
        differing += 1;
        if trows.len() < max_tensor_rows {
            trows.push(TensorRow {
                name: name.to_owned(),
                values,
            });
        }
    }
    Comparison {
        checkpoints: sides
            .iter()
            .map(|s| Compared {
                label: s.label.clone(),
                path: s.path.clone(),
            })
            .collect(),
        rows,
        tensors: Tensors {
            counts: sides
                .iter()
                .map(|s| s.inputs.as_ref().map(|i| i.tensors.len()))
                .collect(),
            differing,
            rows: trows,
        },
    }
    .with_len_check(n)
}

impl Comparison {
    /// Every row has one value per checkpoint (a guard against a caller's mistake).
    fn with_len_check(self, n: usize) -> Comparison {
        debug_assert!(self.rows.iter().all(|r| r.values.len() == n));
        self
    }
}

/// The JSON Schema of [`Comparison`] (`ckpt schema compare`).
pub fn compare_schema() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<Comparison>()
        .to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn side(label: &str, fields: Value, tensors: &[(&str, &[u64])]) -> Side {
        let inputs = IdentityInputs {
            tensors: crate::TensorTable::build(tensors.iter().map(|(n, s)| (*n, "float32", *s))),
            ..IdentityInputs::default()
        };
        Side {
            label: label.into(),
            path: format!("/x/{label}"),
            fields: fields
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            inputs: Some(inputs),
            identity: None,
        }
    }

    #[test]
    fn differing_rows_and_tensors() {
        let a = side(
            "a",
            json!({"epoch": 1, "metrics.val_loss": 0.5, "hparams.lr": 0.1, "hparams.seed": 1}),
            &[("fc.weight", &[4, 2]), ("fc.bias", &[4])],
        );
        let b = side(
            "b",
            json!({"epoch": 2, "metrics.val_loss": 0.4, "hparams.lr": 0.2, "hparams.seed": 1}),
            &[
                ("fc.weight", &[8, 2]),
                ("fc.bias", &[4]),
                ("head.weight", &[2]),
            ],
        );
        let c = compare(&[a.clone(), b.clone()], false, 10);
        let fields: Vec<(&str, bool)> = c
            .rows
            .iter()
            .map(|r| (r.field.as_str(), r.differs))
            .collect();
        assert!(fields.contains(&("epoch", true)));
        assert!(fields.contains(&("metrics.val_loss", true)));
        assert!(fields.contains(&("hparams.lr", true)));
        assert!(
            !fields.iter().any(|(f, _)| *f == "hparams.seed"),
            "{fields:?}"
        );
        assert_eq!(c.tensors.differing, 2);
        assert_eq!(c.tensors.rows[0].name, "fc.weight");
        assert_eq!(c.tensors.rows[1].values[0], None);
        let all = compare(&[a, b], true, 1);
        assert!(
            all.rows
                .iter()
                .any(|r| r.field == "hparams.seed" && !r.differs)
        );
        assert_eq!(all.tensors.rows.len(), 1);
        assert_eq!(all.tensors.differing, 2);
    }
}
