//! Experiments as groups of catalog entries. (The diff of two checkpoints is
//! `ckpt_identity::diff`.)

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::resolve::metric_value;

/// One experiment: what `ckpt experiments` lists.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub experiment: String,
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

fn step_key(e: &Value) -> (i64, i64, String) {
    (
        e["global_step"].as_i64().unwrap_or(-1),
        e["epoch"].as_i64().unwrap_or(-1),
        e["modified"].as_str().unwrap_or("").to_owned(),
    )
}

/// Group entries by `experiment`, in order of first appearance.
pub fn experiments(entries: &[Value]) -> Vec<Experiment> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in entries {
        let k = e["experiment"].as_str().unwrap_or("").to_owned();
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(e);
    }
    let mut out = Vec::new();
    for name in order {
        let Some(g) = groups.get(&name) else { continue };
        let readable: Vec<&&Value> = g.iter().filter(|e| e["error"].is_null()).collect();
        let latest = readable.iter().max_by_key(|e| step_key(e));
        let monitor = readable
            .iter()
            .find_map(|e| e["monitor"].as_str().map(str::to_owned));
        let mode = readable
            .iter()
            .find_map(|e| e["mode"].as_str().map(str::to_owned));
        let maximize = mode.as_deref() != Some("min");
        let best = monitor.as_deref().and_then(|m| {
            readable
                .iter()
                .filter_map(|e| metric_value(e, m).map(|v| (*e, v)))
                .fold(None::<(&Value, f64)>, |acc, (e, v)| match acc {
                    None => Some((e, v)),
                    Some((_, bv)) if (maximize && v > bv) || (!maximize && v < bv) => Some((e, v)),
                    keep => keep,
                })
        });
        out.push(Experiment {
            experiment: name.clone(),
            checkpoints: g.len(),
            latest_path: latest.and_then(|e| e["path"].as_str().map(str::to_owned)),
            latest_step: latest.and_then(|e| e["global_step"].as_i64()),
            latest_epoch: latest.and_then(|e| e["epoch"].as_i64()),
            monitor,
            mode,
            best_path: best.and_then(|(e, _)| e["path"].as_str().map(str::to_owned)),
            best_value: best.map(|(_, v)| v),
            total_bytes: g.iter().filter_map(|e| e["size_bytes"].as_u64()).sum(),
            last_modified: g
                .iter()
                .filter_map(|e| e["modified"].as_str())
                .max()
                .map(str::to_owned),
            errors: g.len() - readable.len(),
            hash: None,
        });
    }
    out
}

/// The newest entry (by step, epoch, modification time), or the one at `step`.
pub fn latest(entries: &[Value], step: Option<i64>) -> Option<&Value> {
    let readable = entries.iter().filter(|e| e["error"].is_null());
    match step {
        Some(s) => readable
            .filter(|e| e["global_step"].as_i64() == Some(s))
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
        let entries = vec![
            json!({"path": "a/1", "experiment": "a", "global_step": 1, "epoch": 0, "monitor": "val/loss", "mode": "min",
                   "metrics": {"val/loss": 0.5}, "size_bytes": 10, "modified": "1", "error": null}),
            json!({"path": "a/2", "experiment": "a", "global_step": 2, "epoch": 1, "monitor": "val/loss", "mode": "min",
                   "metrics": {"val/loss": 0.7}, "size_bytes": 10, "modified": "2", "error": null}),
            json!({"path": "b/1", "experiment": "b", "global_step": 5, "size_bytes": 3, "modified": "3", "error": "bad"}),
        ];
        let ex = experiments(&entries);
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].checkpoints, 2);
        assert_eq!(ex[0].latest_path.as_deref(), Some("a/2"));
        assert_eq!(ex[0].best_path.as_deref(), Some("a/1"));
        assert_eq!(ex[0].total_bytes, 20);
        assert_eq!(ex[1].errors, 1);
        assert_eq!(latest(&entries, None).unwrap()["path"], "a/2");
        assert_eq!(latest(&entries, Some(1)).unwrap()["path"], "a/1");
        assert!(latest(&entries, Some(9)).is_none());
    }
}
