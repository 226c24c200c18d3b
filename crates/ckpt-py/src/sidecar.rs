//! Sidecars written by a training run (`ckpt.lightning.MetadataCallback`): the checkpoint just
//! saved is read by the Rust reader and resolved by ckpt-meta's engine exactly as
//! `ckpt convert-legacy --checkpoint FILE` resolves it, with what the live run observed added
//! as facts of their own source ([`ckpt_meta::sources::live`]). Python only gathers the live
//! run's values; every value written is decided here. The GIL is released throughout, so the
//! callback's worker thread never holds up the training loop's Python.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ckpt_meta::Layout;
use ckpt_meta::extract::build_live_sidecar;
use ckpt_meta::sidecar::{self, Sidecar};
use ckpt_meta::sources::live::LiveRun;
use ckpt_meta::sources::{Around, DirCache};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Why a live sidecar was not written.
#[derive(Debug)]
enum Failure {
    /// The live facts given are not a `LiveRun` (a bug in the caller).
    Live(String),
    /// The checkpoint could not be opened.
    Open(ckpt_torch::Error),
    /// The sidecar could not be built (`convert-legacy` would fail the file the same way).
    Build(ckpt_meta::extract::BuildError),
    /// Writing it failed.
    Write(PathBuf, std::io::Error),
}

/// What happened.
enum Outcome {
    Written(PathBuf),
    /// A sidecar ckpt did not write is there: left as it is.
    KeptForeign(PathBuf),
}

fn write(path: &Path, live: &str, metrics: BTreeMap<String, f64>) -> Result<Outcome, Failure> {
    let mut live: LiveRun = serde_json::from_str(live).map_err(|e| Failure::Live(e.to_string()))?;
    live.metrics.extend(metrics);
    let target = sidecar::yaml_path(path);
    // A sidecar already there is replaced only when ckpt wrote it (`last.ckpt` is saved over
    // and over; its old sidecar describes the old file); anyone else's is left.
    let overwrite = match Sidecar::read(&target) {
        Ok(old) if sidecar::written_by_ckpt(&old.value) => true,
        Ok(_) => return Ok(Outcome::KeptForeign(target)),
        Err(_) if ckpt_meta::consulted::is_file(&target) => {
            return Ok(Outcome::KeptForeign(target));
        }
        Err(_) => false,
    };
    let ck = ckpt_torch::Checkpoint::open(path).map_err(Failure::Open)?;
    // `--checkpoint FILE`'s layout and root, and nothing remembered between saves: the
    // run's folders change as it goes (metrics.csv grows, hparams.yaml appears).
    let layout = Layout::new(path, None);
    let root = layout.outputs_dir.clone();
    let dirs = DirCache::default();
    let is_file = |p: &Path| p.is_file();
    let around = Around {
        dirs: &dirs,
        root: &root,
        is_file: &is_file,
    };
    let (value, _) = build_live_sidecar(&ck, &layout, &around, &live).map_err(Failure::Build)?;
    let text = sidecar::render(&target, &value);
    sidecar::write_atomic(&target, &text, overwrite)
        .map_err(|e| Failure::Write(target.clone(), e))?;
    Ok(Outcome::Written(target))
}

/// `_ckpt.write_live_sidecar(checkpoint, live, metrics)`: write `<stem>.metadata.yaml` beside
/// `checkpoint` from the file and the live run's facts (`live`: a JSON object of
/// [`LiveRun`]'s fields but `metrics`; `metrics`: name → value, non-finite values dropped).
/// Returns `{"status": "written" | "kept", "sidecar": path}` ("kept": a sidecar ckpt did not
/// write is there and was left). Raises `ckpt.CkptError` (or `FormatError`) otherwise.
#[pyfunction]
pub(crate) fn write_live_sidecar(
    py: Python<'_>,
    checkpoint: PathBuf,
    live: String,
    metrics: BTreeMap<String, f64>,
) -> PyResult<Py<PyDict>> {
    let shown = checkpoint.display().to_string();
    let r = py.detach(|| write(&checkpoint, &live, metrics));
    let d = PyDict::new(py);
    match r {
        Ok(Outcome::Written(p)) => {
            d.set_item("status", "written")?;
            d.set_item("sidecar", p.display().to_string())?;
        }
        Ok(Outcome::KeptForeign(p)) => {
            d.set_item("status", "kept")?;
            d.set_item("sidecar", p.display().to_string())?;
        }
        Err(Failure::Open(e)) => {
            return Err(match &e {
                ckpt_torch::Error::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    pyo3::exceptions::PyFileNotFoundError::new_err(e.to_string())
                }
                _ => crate::error(py, "FormatError", (e.to_string(), shown, None::<u64>)),
            });
        }
        Err(Failure::Live(e)) => {
            return Err(crate::error(
                py,
                "CkptError",
                (format!("{shown}: live facts not understood: {e}"), shown),
            ));
        }
        Err(Failure::Build(e)) => {
            return Err(crate::error(py, "CkptError", (e.to_string(), shown)));
        }
        Err(Failure::Write(p, e)) => {
            return Err(crate::error(
                py,
                "CkptError",
                (format!("{}: not written: {e}", p.display()), shown),
            ));
        }
    }
    Ok(d.unbind())
}

/// `_ckpt.remove_sidecar(checkpoint)`: the checkpoint was removed; remove the sidecars ckpt
/// wrote for it. Returns `{"removed": [paths], "kept": [paths]}` ("kept": sidecars ckpt did
/// not write, left in place).
#[pyfunction]
pub(crate) fn remove_sidecar(py: Python<'_>, checkpoint: PathBuf) -> PyResult<Py<PyDict>> {
    let shown = checkpoint.display().to_string();
    let r = py
        .detach(|| sidecar::remove_own(&checkpoint))
        .map_err(|e| {
            crate::error(
                py,
                "CkptError",
                (format!("{shown}: sidecar not removed: {e}"), shown.clone()),
            )
        })?;
    let names =
        |v: &[PathBuf]| -> Vec<String> { v.iter().map(|p| p.display().to_string()).collect() };
    let d = PyDict::new(py);
    d.set_item("removed", names(&r.removed))?;
    d.set_item("kept", names(&r.kept))?;
    Ok(d.unbind())
}

/// Add this file's functions to the `_ckpt` module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(write_live_sidecar, m)?)?;
    m.add_function(wrap_pyfunction!(remove_sidecar, m)?)?;
    Ok(())
}
