//! The native half of `ckpt.ExperimentManager` (`python/ckpt/managers.py`): the experiment
//! identity of a live model, the canonical text of a run's configuration, and retention after
//! a save — each computed by the crate `ckpt hash`, `ckpt prune` and the catalog use, so
//! what a training process is told is what the command line will say about its files.
//!
//! - [`experiment_identity`]: `ckpt_identity::gather_planned` on the file about to be written
//!   (its experiment folder's `hp/` and `data/` already in place), with the live module's
//!   state-dict names, dtypes and shapes for the tensors the file will hold. Only the tensor
//!   table comes from Python; every other input is found and read as `ckpt hash` finds and
//!   reads it, so the two cannot disagree.
//! - [`config_yaml`]: a configuration (JSON text from Python) as the YAML text ckpt's own
//!   reader reads back as the same value (the sidecar writer's emitter).
//! - [`read_config`]: a config file as ckpt reads it (references left as written).
//! - [`retain`]: `ckpt_retention`'s plan (and, when asked, its execution) over the catalog of
//!   an experiment folder — exactly `ckpt prune --no-cache`: the same catalog, the same rules
//!   and never-delete guarantees. Nothing is supplied on the side: the metrics a save was
//!   given are in the checkpoint's sidecar (`_ckpt.write_live_sidecar`), where the catalog,
//!   and so `ckpt prune`, read them; a checkpoint whose sidecar could not be written has an
//!   unknown metric, and `ckpt prune`'s rules keep it.

use std::path::{Path, PathBuf};

use ckpt_catalog::catalog::{Options, build};
use ckpt_identity::{Algorithm, HashOptions, HashReport, folder_name, gather_planned, identity};
use ckpt_retention::{Mode, PruneOptions};
use ckpt_torch::DType;
use pyo3::prelude::*;

use crate::error;

/// An error and its causes, one line (`cannot read hyperparameters: x.yaml: line 3 …`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn ckpt_error(py: Python<'_>, message: String, path: &Path) -> PyErr {
    error(py, "CkptError", (message, path.display().to_string()))
}

/// `experiment_identity(checkpoint, tensors, algorithm="v2")` → the JSON `ckpt hash
/// --format json` prints for `checkpoint` once it is written holding a state dict of
/// `tensors` (`(name, dtype, shape)`, dtype as torch names it without `torch.`).
#[pyfunction]
#[pyo3(signature = (checkpoint, tensors, algorithm="v2"))]
fn experiment_identity(
    py: Python<'_>,
    checkpoint: PathBuf,
    tensors: Vec<(String, String, Vec<u64>)>,
    algorithm: &str,
) -> PyResult<String> {
    let algorithm: Algorithm =
        algorithm
            .parse()
            .map_err(|e: ckpt_identity::algorithm::UnknownVersion| {
                pyo3::exceptions::PyValueError::new_err(e.to_string())
            })?;
    let mut rows: Vec<(String, &'static str, Vec<u64>)> = Vec::with_capacity(tensors.len());
    for (name, dtype, shape) in tensors {
        let d = DType::from_name(&dtype).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "{name}: dtype {dtype:?} is not one ckpt reads from a checkpoint"
            ))
        })?;
        rows.push((name, d.name(), shape));
    }
    let opts = HashOptions {
        algorithm,
        ..HashOptions::default()
    };
    let report = py.detach(|| {
        let inputs = gather_planned(&checkpoint, &rows, &opts)?;
        let id = identity(&inputs);
        let folder = inputs
            .folder
            .as_ref()
            .map(|f| folder_name(f, &checkpoint, &opts, &id));
        Ok::<_, ckpt_identity::IdentityError>(HashReport::new(&inputs, id, folder))
    });
    let report = report.map_err(|e| ckpt_error(py, chain(&e), &checkpoint))?;
    serde_json::to_string(&report)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// `config_yaml(json_text)` → YAML text that ckpt's reader (`ckpt hash`, the catalog) reads
/// as the same value.
#[pyfunction]
fn config_yaml(json_text: &str) -> PyResult<String> {
    let v: serde_json::Value = serde_json::from_str(json_text)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("config: {e}")))?;
    Ok(ckpt_meta::yaml::to_yaml(&v))
}

/// `read_config(path)` → the JSON text of a YAML or JSON config file as ckpt reads it
/// (`${...}` references left as written).
#[pyfunction]
fn read_config(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    let v =
        ckpt_meta::config::read_config_raw(&path).map_err(|e| ckpt_error(py, chain(&e), &path))?;
    serde_json::to_string(&v).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// `retain(paths, keep_top, monitor, mode, keep_last, delete=False)` → the JSON `ckpt prune
/// --no-cache --format json` prints (`{"plan", "executed"}`, and the catalog's `warnings`):
/// the retention plan of the checkpoints under `paths` by `ckpt_retention`'s rules, from
/// exactly the catalog `ckpt prune` reads, carried out when `delete`.
#[pyfunction]
#[pyo3(signature = (paths, keep_top, monitor, mode, keep_last, delete=false))]
fn retain(
    py: Python<'_>,
    paths: Vec<PathBuf>,
    keep_top: usize,
    monitor: String,
    mode: &str,
    keep_last: usize,
    delete: bool,
) -> PyResult<String> {
    let mode: Mode = mode
        .parse()
        .map_err(pyo3::exceptions::PyValueError::new_err)?;
    let shown = paths
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let out = py.detach(|| {
        let cat = build(
            &paths,
            &Options {
                cache: None,
                ..Options::default()
            },
        )?;
        let opts = PruneOptions {
            keep_top,
            monitor,
            mode,
            keep_last,
            keep_every: None,
            group: ckpt_catalog::query::GroupBy::Run,
        };
        let plan = ckpt_retention::plan(&cat.entries, &paths, &opts);
        let executed = delete.then(|| ckpt_retention::execute(&plan));
        Ok::<_, ckpt_catalog::cache::CacheError>(serde_json::json!({
            "plan": plan,
            "executed": executed,
            "warnings": cat.warnings,
        }))
    });
    let out = out.map_err(|e| ckpt_error(py, chain(&e), Path::new(&shown)))?;
    serde_json::to_string(&out).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// Add this file's functions to `ckpt._ckpt`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(experiment_identity, m)?)?;
    m.add_function(wrap_pyfunction!(config_yaml, m)?)?;
    m.add_function(wrap_pyfunction!(read_config, m)?)?;
    m.add_function(wrap_pyfunction!(retain, m)?)?;
    Ok(())
}
