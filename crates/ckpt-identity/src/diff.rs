//! What changed between two checkpoints: their identity inputs (tensors, configuration, UIDs)
//! and a few facts of each run (metrics, epoch, step) that the caller reads from the catalog.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::IdentityInputs;

/// A tensor: normalized name, dtype, shape.
pub type TensorRow = (String, String, Vec<u64>);

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchDiff {
    /// Tensors only `b` has: (name, dtype, shape).
    pub added: Vec<TensorRow>,
    /// Tensors only `a` has: (name, dtype, shape).
    pub removed: Vec<TensorRow>,
    /// (name, shape in `a`, shape in `b`).
    pub reshaped: Vec<(String, Vec<u64>, Vec<u64>)>,
    /// (name, dtype in `a`, dtype in `b`).
    pub retyped: Vec<(String, String, String)>,
}

impl ArchDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.reshaped.is_empty()
            && self.retyped.is_empty()
    }
}

/// A value at a dotted path that differs; `null` where one side has none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueChange {
    pub path: String,
    pub old: Value,
    pub new: Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataDiff {
    pub added: usize,
    pub removed: usize,
    /// Up to 5 UIDs only `b` has.
    pub examples_added: Vec<String>,
    /// Up to 5 UIDs only `a` has.
    pub examples_removed: Vec<String>,
    /// One side has UIDs and the other has none.
    pub one_sided: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Diff {
    pub architecture: ArchDiff,
    pub hyperparameters: Vec<ValueChange>,
    pub data: DataDiff,
    pub metrics: Vec<ValueChange>,
    /// (epoch of `a`, epoch of `b`) when they differ.
    pub epoch: Option<(Option<i64>, Option<i64>)>,
    /// (step of `a`, step of `b`) when they differ.
    pub global_step: Option<(Option<i64>, Option<i64>)>,
}

/// What the catalog knows of a checkpoint's run that `diff` reports beside identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFacts {
    /// `metrics` as the catalog gives them (an object of name → number), or `Null`.
    pub metrics: Value,
    pub epoch: Option<i64>,
    pub global_step: Option<i64>,
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        // An empty or missing top level has no fields to compare.
        Value::Object(_) | Value::Null if prefix.is_empty() => {}
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

fn changes(a: &Value, b: &Value) -> Vec<ValueChange> {
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten("", a, &mut fa);
    flatten("", b, &mut fb);
    let keys: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (
                fa.get(k).cloned().unwrap_or(Value::Null),
                fb.get(k).cloned().unwrap_or(Value::Null),
            );
            (x != y).then(|| ValueChange {
                path: k.clone(),
                old: x,
                new: y,
            })
        })
        .collect()
}

/// What changed from `a` to `b`: identity inputs, and (from the catalog) metrics and
/// epoch/step.
pub fn diff(a: &IdentityInputs, b: &IdentityInputs, ra: &RunFacts, rb: &RunFacts) -> Diff {
    let mut d = Diff::default();
    for (name, dt, sh) in a.tensors.iter() {
        match b.tensors.get(name) {
            None => d
                .architecture
                .removed
                .push((name.to_owned(), dt.to_owned(), sh.to_vec())),
            Some((dt2, sh2)) => {
                if sh != sh2 {
                    d.architecture
                        .reshaped
                        .push((name.to_owned(), sh.to_vec(), sh2.to_vec()));
                }
                if dt != dt2 {
                    d.architecture
                        .retyped
                        .push((name.to_owned(), dt.to_owned(), dt2.to_owned()));
                }
            }
        }
    }
    for (name, dt, sh) in b.tensors.iter() {
        if !a.tensors.contains(name) {
            d.architecture
                .added
                .push((name.to_owned(), dt.to_owned(), sh.to_vec()));
        }
    }
    d.hyperparameters = changes(
        a.hparams.as_ref().unwrap_or(&Value::Null),
        b.hparams.as_ref().unwrap_or(&Value::Null),
    );
    match (&a.uids, &b.uids) {
        (Some(x), Some(y)) => {
            let (sx, sy): (BTreeSet<&String>, BTreeSet<&String>) =
                (x.iter().collect(), y.iter().collect());
            let added: Vec<&&String> = sy.difference(&sx).collect();
            let removed: Vec<&&String> = sx.difference(&sy).collect();
            d.data = DataDiff {
                added: added.len(),
                removed: removed.len(),
                examples_added: added.iter().take(5).map(|s| (**s).clone()).collect(),
                examples_removed: removed.iter().take(5).map(|s| (**s).clone()).collect(),
                one_sided: false,
            };
        }
        (None, None) => {}
        _ => d.data.one_sided = true,
    }
    d.metrics = changes(&ra.metrics, &rb.metrics);
    if ra.epoch != rb.epoch {
        d.epoch = Some((ra.epoch, rb.epoch));
    }
    if ra.global_step != rb.global_step {
        d.global_step = Some((ra.global_step, rb.global_step));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diffs() {
        let mut a = IdentityInputs {
            tensors: crate::TensorTable::build([
                ("fc1.weight", "float32", vec![8, 4]),
                ("fc2.bias", "float32", vec![2]),
            ]),
            ..IdentityInputs::default()
        };
        let mut b = IdentityInputs {
            tensors: crate::TensorTable::build([
                ("fc1.weight", "float32", vec![16, 4]),
                ("fc3.bias", "float16", vec![2]),
            ]),
            ..IdentityInputs::default()
        };
        a.hparams = Some(json!({"lr": 0.1, "model": {"hidden": 8}}));
        b.hparams = Some(json!({"lr": 0.1, "model": {"hidden": 16}}));
        a.uids = Some(vec!["1".into(), "2".into()]);
        b.uids = Some(vec!["2".into(), "3".into()]);
        let d = diff(
            &a,
            &b,
            &RunFacts {
                metrics: json!({}),
                epoch: Some(1),
                global_step: None,
            },
            &RunFacts {
                metrics: json!({"x": 1}),
                epoch: Some(2),
                global_step: None,
            },
        );
        assert_eq!(
            d.architecture.reshaped,
            vec![("fc1.weight".to_owned(), vec![8, 4], vec![16, 4])]
        );
        assert_eq!(d.architecture.removed.len(), 1);
        assert_eq!(d.architecture.added.len(), 1);
        assert_eq!(d.hyperparameters[0].path, "model.hidden");
        assert_eq!((d.data.added, d.data.removed), (1, 1));
        assert_eq!(d.metrics[0].path, "x");
        assert_eq!(d.epoch, Some((Some(1), Some(2))));
        assert_eq!(d.global_step, None);
    }
}
