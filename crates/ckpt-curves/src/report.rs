//! The JSON reports `ckpt.CheckpointManager` writes beside its checkpoints
//! (`training_summary.json`, `minimal_logging.json`; `classification_report.json` holds only
//! final test metrics, which are not curves). They know epochs, not steps:
//!
//! - `best_epoch` with `best_<metric>`: one point of `<metric>` at that epoch;
//! - a per-epoch history, as a top-level list of numbers (`"val_f1": [0.5, 0.6]`), an object
//!   of such lists (`"history": {"val_f1": [...]}`), or a list of row objects
//!   (`"history": [{"epoch": 0, "val_f1": 0.5}, ...]`; a row's `epoch` is its x, else its
//!   position): series on the epoch axis.

use std::path::Path;

use serde_json::{Map, Value};

use crate::{Axis, Collector, Limits, Problem, ReadOut, Warnings, read_whole};

/// The report files read, in this order.
pub const FILES: &[&str] = &["training_summary.json", "minimal_logging.json"];

fn as_epoch(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        let x = v.as_f64()?;
        (x.fract() == 0.0 && x.abs() < 9.0e15).then_some(x as i64)
    })
}

fn lists(m: &Map<String, Value>, c: &mut Collector, w: &mut Warnings) {
    for (k, v) in m {
        let Value::Array(items) = v else { continue };
        if items.is_empty() {
            continue;
        }
        if items.iter().all(Value::is_number) {
            for (i, x) in items.iter().enumerate() {
                if let Some(x) = x.as_f64() {
                    c.push(w, k, Axis::Epoch, i as i64, x);
                }
            }
        } else if items.iter().all(Value::is_object) {
            for (i, row) in items.iter().enumerate() {
                let Some(row) = row.as_object() else { continue };
                let e = row.get("epoch").and_then(as_epoch).unwrap_or(i as i64);
                for (name, x) in row {
                    if name == "epoch" {
                        continue;
                    }
                    if let Some(x) = x.as_f64() {
                        c.push(w, name, Axis::Epoch, e, x);
                    }
                }
            }
        }
    }
}

/// The series of a folder of JSON reports.
pub fn read(dir: &Path, limits: &Limits) -> ReadOut {
    let mut w = Warnings::new(dir, limits);
    let mut c = Collector::new(limits);
    for name in FILES {
        let path = dir.join(name);
        if !path.symlink_metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        let bytes = match read_whole(&path, limits.max_record_bytes) {
            Ok(b) => b,
            Err(p) => {
                w.add_for(&path, None, p);
                continue;
            }
        };
        let v: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                w.add_for(&path, None, Problem::Json(e.to_string()));
                continue;
            }
        };
        let Some(m) = v.as_object() else { continue };
        lists(m, &mut c, &mut w);
        if let Some(Value::Object(h)) = m.get("history") {
            lists(h, &mut c, &mut w);
        }
        if let Some(best) = m.get("best_epoch").and_then(as_epoch) {
            for (k, x) in m {
                let Some(metric) = k.strip_prefix("best_") else {
                    continue;
                };
                if metric == "epoch" || metric.is_empty() {
                    continue;
                }
                if let Some(x) = x.as_f64() {
                    c.push(&mut w, metric, Axis::Epoch, best, x);
                }
            }
        }
    }
    let series = c.finish(&mut w);
    (series, w.finish())
}
