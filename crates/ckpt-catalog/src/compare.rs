//! Experiments as groups of catalog entries, and differences between two checkpoints.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::entry::CatalogEntry;
use crate::identity::IdentityInputs;
use crate::query::{GroupBy, group_of};
use crate::resolve::metric_value;

/// One experiment: what `ckpt experiments` lists.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub experiment: String,
    /// The run, when grouping per run (the default).
    pub run: Option<String>,
    /// Distinct runs in the group.
    pub runs: usize,
    pub checkpoints: usize,
    pub latest_path: Option<String>,
    pub latest_step: Option<i64>,
    pub latest_epoch: Option<i64>,
    pub monitor: Option<String>,
    pub mode: Option<String>,
    pub best_path: Option<String>,
    pub best_value: Option<f64>,
    pub total_bytes: u64,
    pub last_modified: Option<String>,
    pub errors: usize,
    /// Experiment hash of the latest readable checkpoint (filled by the caller).
    pub hash: Option<String>,
}

fn step_key(e: &CatalogEntry) -> (i64, i64, String) {
    (
        e.global_step.unwrap_or(-1),
        e.epoch.unwrap_or(-1),
        e.modified.clone(),
    )
}

/// Group entries by run (or by experiment), in order of first appearance.
pub fn experiments(entries: &[CatalogEntry], group: GroupBy) -> Vec<Experiment> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&CatalogEntry>> = BTreeMap::new();
    for e in entries {
        let k = group_of(e, group);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(e);
    }
    let mut out = Vec::new();
    for name in order {
        let Some(g) = groups.get(&name) else { continue };
        let readable: Vec<&&CatalogEntry> = g.iter().filter(|e| e.error.is_none()).collect();
        let latest = readable.iter().max_by_key(|e| step_key(e));
        let monitor = readable.iter().find_map(|e| e.monitor.clone());
        let mode = readable.iter().find_map(|e| e.mode.clone());
        let maximize = mode.as_deref() != Some("min");
        let best = monitor.as_deref().and_then(|m| {
            readable
                .iter()
                .filter_map(|e| metric_value(e, m).map(|v| (*e, v)))
                .fold(None::<(&CatalogEntry, f64)>, |acc, (e, v)| match acc {
                    None => Some((e, v)),
                    Some((_, bv)) if (maximize && v > bv) || (!maximize && v < bv) => Some((e, v)),
                    keep => keep,
                })
        });
        let runs: BTreeSet<&str> = g.iter().filter_map(|e| e.run.as_deref()).collect();
        let first = g.first();
        out.push(Experiment {
            experiment: first.and_then(|e| e.experiment.clone()).unwrap_or_default(),
            run: match group {
                GroupBy::Run => first.and_then(|e| e.run.clone()),
                GroupBy::Experiment => None,
            },
            runs: runs.len(),
            checkpoints: g.len(),
            latest_path: latest.map(|e| e.path.clone()),
            latest_step: latest.and_then(|e| e.global_step),
            latest_epoch: latest.and_then(|e| e.epoch),
            monitor,
            mode,
            best_path: best.map(|(e, _)| e.path.clone()),
            best_value: best.map(|(_, v)| v),
            total_bytes: g.iter().map(|e| e.size_bytes).sum(),
            last_modified: g
                .iter()
                .map(|e| e.modified.as_str())
                .max()
                .map(str::to_owned),
            errors: g.len() - readable.len(),
            hash: None,
        });
    }
    out
}

/// The newest entry (by step, epoch, modification time), or the one at `step`.
pub fn latest(entries: &[CatalogEntry], step: Option<i64>) -> Option<&CatalogEntry> {
    let readable = entries.iter().filter(|e| e.error.is_none());
    match step {
        Some(s) => readable
            .filter(|e| e.global_step == Some(s))
            .max_by_key(|e| step_key(e)),
        None => readable.max_by_key(|e| step_key(e)),
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ArchDiff {
    pub added: Vec<(String, String, Vec<u64>)>,
    pub removed: Vec<(String, String, Vec<u64>)>,
    pub reshaped: Vec<(String, Vec<u64>, Vec<u64>)>,
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

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ValueChange {
    pub path: String,
    pub old: Value,
    pub new: Value,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DataDiff {
    pub added: usize,
    pub removed: usize,
    pub examples_added: Vec<String>,
    pub examples_removed: Vec<String>,
    /// One side has UIDs and the other has none.
    pub one_sided: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Diff {
    pub architecture: ArchDiff,
    pub hyperparameters: Vec<ValueChange>,
    pub data: DataDiff,
    pub metrics: Vec<ValueChange>,
    pub epoch: Option<(Value, Value)>,
    pub global_step: Option<(Value, Value)>,
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

/// What changed from `a` to `b`: identity inputs, and (from catalog entries) metrics and
/// epoch/step.
pub fn diff(a: &IdentityInputs, b: &IdentityInputs, ea: &Value, eb: &Value) -> Diff {
    let mut d = Diff::default();
    for (name, (dt, sh)) in &a.tensors {
        match b.tensors.get(name) {
            None => d
                .architecture
                .removed
                .push((name.clone(), dt.clone(), sh.clone())),
            Some((dt2, sh2)) => {
                if sh != sh2 {
                    d.architecture
                        .reshaped
                        .push((name.clone(), sh.clone(), sh2.clone()));
                }
                if dt != dt2 {
                    d.architecture
                        .retyped
                        .push((name.clone(), dt.clone(), dt2.clone()));
                }
            }
        }
    }
    for (name, (dt, sh)) in &b.tensors {
        if !a.tensors.contains_key(name) {
            d.architecture
                .added
                .push((name.clone(), dt.clone(), sh.clone()));
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
    d.metrics = changes(&ea["metrics"], &eb["metrics"]);
    if ea["epoch"] != eb["epoch"] {
        d.epoch = Some((ea["epoch"].clone(), eb["epoch"].clone()));
    }
    if ea["global_step"] != eb["global_step"] {
        d.global_step = Some((ea["global_step"].clone(), eb["global_step"].clone()));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_and_latest() {
        let entries: Vec<CatalogEntry> = [
            json!({"path": "a/1", "experiment": "a", "global_step": 1, "epoch": 0, "monitor": "val/loss", "mode": "min",
                   "metrics": {"val/loss": 0.5}, "size_bytes": 10, "modified": "1", "error": null}),
            json!({"path": "a/2", "experiment": "a", "global_step": 2, "epoch": 1, "monitor": "val/loss", "mode": "min",
                   "metrics": {"val/loss": 0.7}, "size_bytes": 10, "modified": "2", "error": null}),
            json!({"path": "b/1", "experiment": "b", "global_step": 5, "size_bytes": 3, "modified": "3", "error": "bad"}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let ex = experiments(&entries, GroupBy::Experiment);
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].checkpoints, 2);
        assert_eq!(ex[0].latest_path.as_deref(), Some("a/2"));
        assert_eq!(ex[0].best_path.as_deref(), Some("a/1"));
        assert_eq!(ex[0].total_bytes, 20);
        assert_eq!(ex[1].errors, 1);
        assert_eq!(latest(&entries, None).unwrap().path, "a/2");
        assert_eq!(latest(&entries, Some(1)).unwrap().path, "a/1");
        assert!(latest(&entries, Some(9)).is_none());
    }

    #[test]
    fn diffs() {
        let mut a = IdentityInputs::default();
        let mut b = IdentityInputs::default();
        a.tensors
            .insert("fc1.weight".into(), ("float32".into(), vec![8, 4]));
        b.tensors
            .insert("fc1.weight".into(), ("float32".into(), vec![16, 4]));
        a.tensors
            .insert("fc2.bias".into(), ("float32".into(), vec![2]));
        b.tensors
            .insert("fc3.bias".into(), ("float16".into(), vec![2]));
        a.hparams = Some(json!({"lr": 0.1, "model": {"hidden": 8}}));
        b.hparams = Some(json!({"lr": 0.1, "model": {"hidden": 16}}));
        a.uids = Some(vec!["1".into(), "2".into()]);
        b.uids = Some(vec!["2".into(), "3".into()]);
        let d = diff(
            &a,
            &b,
            &json!({"epoch": 1, "metrics": {}}),
            &json!({"epoch": 2, "metrics": {"x": 1}}),
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
        assert!(d.epoch.is_some());
    }
}
