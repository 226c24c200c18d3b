//! Experiments as groups of catalog entries. (The diff of two checkpoints is
//! `ckpt_identity::diff`.)

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::entry::CatalogEntry;
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
}
