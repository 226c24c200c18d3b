//! Where the commands write: the process's stdout and stderr — or, when the Python package
//! runs a command in-process (`ckpt.catalog(...)` is `ckpt catalog … --format json`), buffers
//! it reads back. One place decides, so a command cannot print past a capture.

use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The captured (stdout, stderr) of the run in progress, if one is captured.
static CAPTURE: Mutex<Option<(Vec<u8>, Vec<u8>)>> = Mutex::new(None);
/// Captured runs one at a time (their output goes to one pair of buffers).
static ONE_RUN: Mutex<()> = Mutex::new(());

/// Told (bytes done, bytes to do) as a long command goes (`convert`).
pub type Progress = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Who listens to the progress of the captured run in progress.
static PROGRESS: Mutex<Option<Progress>> = Mutex::new(None);

/// The progress listener of the run in progress, if any.
pub fn progress() -> Option<Progress> {
    PROGRESS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

fn capture() -> MutexGuard<'static, Option<(Vec<u8>, Vec<u8>)>> {
    CAPTURE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A writer to stdout (`err == false`) or stderr, or to the capture when there is one.
pub struct Out {
    err: bool,
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some((out, err)) = capture().as_mut() {
            if self.err { err } else { out }.extend_from_slice(buf);
            return Ok(buf.len());
        }
        if self.err {
            std::io::stderr().write(buf)
        } else {
            std::io::stdout().write(buf)
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some((out, err)) = capture().as_mut() {
            if self.err { err } else { out }.extend_from_slice(buf);
            return Ok(());
        }
        if self.err {
            std::io::stderr().lock().write_all(buf)
        } else {
            std::io::stdout().lock().write_all(buf)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if capture().is_some() {
            return Ok(());
        }
        if self.err {
            std::io::stderr().flush()
        } else {
            std::io::stdout().flush()
        }
    }
}

/// The command's standard output.
pub fn stdout() -> Out {
    Out { err: false }
}

/// The command's standard error.
pub fn stderr() -> Out {
    Out { err: true }
}

/// Is a run being captured?
pub fn capturing() -> bool {
    capture().is_some()
}

/// Is stderr a terminal a person watches (progress bars)? Never during a capture.
pub fn stderr_is_terminal() -> bool {
    capture().is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Run `f` with everything the command writes captured: (result, stdout, stderr).
pub fn captured<R>(f: impl FnOnce() -> R) -> (R, Vec<u8>, Vec<u8>) {
    captured_with(None, f)
}

/// [`captured`], telling `progress` how a long command goes.
pub fn captured_with<R>(
    progress: Option<Progress>,
    f: impl FnOnce() -> R,
) -> (R, Vec<u8>, Vec<u8>) {
    let _one = ONE_RUN.lock().unwrap_or_else(PoisonError::into_inner);
    *capture() = Some((Vec::new(), Vec::new()));
    *PROGRESS.lock().unwrap_or_else(PoisonError::into_inner) = progress;
    // Taken back even when `f` unwinds.
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            capture().take();
            PROGRESS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
    }
    let release = Release;
    let r = f();
    let (out, err) = capture().take().unwrap_or_default();
    drop(release);
    (r, out, err)
}

/// `eprintln!` through [`stderr`].
#[macro_export]
macro_rules! sink_eprintln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!($crate::sink::stderr(), $($t)*);
    }};
}

/// `eprint!` through [`stderr`].
#[macro_export]
macro_rules! sink_eprint {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!($crate::sink::stderr(), $($t)*);
    }};
}
