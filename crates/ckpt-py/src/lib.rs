//! `ckpt._ckpt`: the Rust side of the `ckpt` Python package. Python only adapts what the
//! crates compute; nothing here re-implements reading a checkpoint.
//!
//! [`load`] is `torch.load` without running anything: the file is decoded by ckpt's own
//! pickle VM (which never imports or calls), and the Python objects are rebuilt from the
//! decoded values by a fixed table of safe constructions (containers, `OrderedDict`,
//! `argparse.Namespace`, OmegaConf configs, tensors over a copy-on-write map of the file,
//! numpy arrays and scalars, `torch.Size`/`dtype`/`device`). Anything else is refused with
//! `ckpt.errors.UnsafeError` naming it.

mod build;
mod identity;
mod open;
mod sidecar;

use std::path::PathBuf;

use pyo3::prelude::*;

/// Raise `ckpt.errors.<class>(message, path, …)`.
pub(crate) fn error(py: Python<'_>, class: &str, args: impl IntoPyObjectArgs) -> PyErr {
    match py
        .import("ckpt.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| args.call(&c))
    {
        Ok(e) => PyErr::from_value(e),
        Err(e) => e,
    }
}

/// Arguments of an exception constructor.
pub(crate) trait IntoPyObjectArgs {
    fn call<'py>(self, class: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>;
}

impl IntoPyObjectArgs for (String, String) {
    fn call<'py>(self, class: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        class.call1(self)
    }
}

impl IntoPyObjectArgs for (String, String, Option<u64>) {
    fn call<'py>(self, class: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        class.call1(self)
    }
}

impl IntoPyObjectArgs for (String, String, Vec<String>) {
    fn call<'py>(self, class: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        class.call1(self)
    }
}

/// The error of opening a checkpoint, as the exception Python sees.
fn open_error(py: Python<'_>, path: &str, e: &ckpt_torch::Error) -> PyErr {
    use ckpt_torch::Error as E;
    let msg = e.to_string();
    match e {
        E::Io { .. } => {
            let kind = match e {
                E::Io { source, .. } => source.kind(),
                _ => std::io::ErrorKind::Other,
            };
            if kind == std::io::ErrorKind::NotFound {
                pyo3::exceptions::PyFileNotFoundError::new_err(msg)
            } else {
                pyo3::exceptions::PyOSError::new_err(msg)
            }
        }
        E::Pickle { source, .. } => error(
            py,
            "FormatError",
            (msg, path.to_owned(), Some(source.offset)),
        ),
        E::Malformed { offset, .. } => {
            error(py, "FormatError", (msg, path.to_owned(), Some(*offset)))
        }
        _ => error(py, "FormatError", (msg, path.to_owned(), None)),
    }
}

/// Judge the file as `ckpt scan` does, then open it: a file whose pickles would run
/// something is refused (`UnsafeError`) before anything is built from it.
pub(crate) fn open_checked(
    py: Python<'_>,
    path: &std::path::Path,
    shown: &str,
) -> PyResult<ckpt_torch::Checkpoint> {
    open_and_scan(py, path, shown).map(|(ck, _)| ck)
}

/// [`open_checked`], also returning the scan (what `ckpt.open(p).scan()` reports, so the
/// file is not read and judged a second time).
pub(crate) fn open_and_scan(
    py: Python<'_>,
    path: &std::path::Path,
    shown: &str,
) -> PyResult<(ckpt_torch::Checkpoint, ckpt_torch::scan_file::FileScan)> {
    // Reading and judging the file is all Rust: other Python threads go on meanwhile.
    // One read of the file and one decode of its data.pkl serve both the scan and the
    // checkpoint (they agree on which copy torch reads).
    let (scan, opened) = py.detach(|| {
        ckpt_torch::Checkpoint::scan_and_open(
            path,
            &ckpt_torch::scan_file::ScanLimits::default(),
            &ckpt_torch::Options::default(),
        )
    });
    // Judged exactly as `ckpt scan` judges it: what a straight read of the pickle misses
    // (a second pickle, a duplicated member, frames) is still refused.
    if scan.verdict() == ckpt_torch::scan_file::FileVerdict::Dangerous {
        let mut names: Vec<String> = scan
            .report
            .findings
            .iter()
            .filter(|f| f.class == ckpt_torch::scan::Verdict::Dangerous)
            .map(|f| f.name.clone())
            .collect();
        names.dedup();
        return Err(error(
            py,
            "UnsafeError",
            (
                format!(
                    "{shown}: loading it would call {}; refused, nothing was run",
                    names.join(", ")
                ),
                shown.to_owned(),
                names,
            ),
        ));
    }
    let ck = opened.map_err(|e| open_error(py, shown, &e))?;
    Ok((ck, scan))
}

/// `ckpt.load(path, *, map_location=None, tensors=None, mmap=True, allow=())` — see the
/// package's `__init__.pyi`.
#[pyfunction]
#[pyo3(signature = (path, *, map_location=None, tensors=None, mmap=true, allow=Vec::new()))]
fn load(
    py: Python<'_>,
    path: PathBuf,
    map_location: Option<Bound<'_, PyAny>>,
    tensors: Option<String>,
    mmap: bool,
    allow: Vec<String>,
) -> PyResult<Py<PyAny>> {
    let shown = path.display().to_string();
    let ck = open_checked(py, &path, &shown)?;
    let mode = build::TensorMode::choose(py, tensors.as_deref())?;
    let mut b = build::Builder::new(py, &ck, mode, mmap, allow, shown)?;
    if let Some(loc) = map_location.filter(|l| !l.is_none()) {
        b.set_map_location(&loc)?;
    }
    b.build(ck.doc.loaded_root(), 0)
}

/// `ckpt ARGS…` in this process, its output captured: (exit code, stdout, stderr). The GIL
/// is released while the command runs.
/// `progress(done, total)` is called (with the GIL) as a long command goes; an exception it
/// raises is raised here once the command is done.
#[pyfunction]
#[pyo3(signature = (args, progress=None))]
fn run(
    py: Python<'_>,
    args: Vec<String>,
    progress: Option<Py<PyAny>>,
) -> PyResult<(u8, Py<PyAny>, Py<PyAny>)> {
    let failed: std::sync::Arc<std::sync::Mutex<Option<PyErr>>> = Default::default();
    let listener: Option<ckpt::sink::Progress> = progress.map(|cb| {
        let failed = failed.clone();
        let f: ckpt::sink::Progress = std::sync::Arc::new(move |done: u64, total: u64| {
            Python::attach(|py| {
                if let Err(e) = cb.call1(py, (done, total)) {
                    let mut slot = failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    slot.get_or_insert(e);
                }
            });
        });
        f
    });
    let (code, out, err) = py.detach(|| ckpt::run_captured_with(&args, listener));
    if let Some(e) = failed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        return Err(e);
    }
    Ok((
        code,
        pyo3::types::PyBytes::new(py, &out).into_any().unbind(),
        pyo3::types::PyBytes::new(py, &err).into_any().unbind(),
    ))
}

/// The `ckpt` command on `argv` (program name first), writing to this process's stdout and
/// stderr: the wheel's `ckpt` console script. Returns the exit code.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| ckpt::main_with(argv))
}

/// The native part of the `ckpt` package.
#[pymodule]
fn _ckpt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(open::open, m)?)?;
    m.add_class::<open::Open>()?;
    m.add_class::<open::Lazy>()?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    identity::register(m)?;
    sidecar::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
