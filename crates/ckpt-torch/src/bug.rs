//! Panics are bugs in ckpt, and a bug must cost the user one file, not the batch — and never a
//! stack backtrace in their terminal. [`catch`] runs one unit of work (one checkpoint) and turns
//! a panic into a [`Panic`] value the caller reports as "this is a bug in ckpt" for that file;
//! [`install_quiet_hook`] (called once by the binary) replaces the default hook, which prints
//! the message and a backtrace hint, with one that only records where the panic happened so the
//! one-line report can say it.
//!
//! Every library in the workspace is built to return errors, not to panic (no `unwrap` outside
//! tests, checked arithmetic and slicing); this is the net under that rule, not a substitute.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, PanicHookInfo};

/// A panic caught by [`catch`]: its message and, when the quiet hook is installed, its
/// source location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic {
    pub message: String,
    pub location: Option<String>,
}

impl std::fmt::Display for Panic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "this is a bug in ckpt (panic")?;
        if let Some(loc) = &self.location {
            write!(f, " at {loc}")?;
        }
        write!(
            f,
            ": {}); please report it",
            self.message.replace('\n', " ")
        )
    }
}

impl std::error::Error for Panic {}

thread_local! {
    /// The location of the last panic on this thread, set by the quiet hook.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replace the process's panic hook with one that prints nothing and remembers the location of
/// the panic for [`catch`] (and for [`last_location`]) on the panicking thread.
pub fn install_quiet_hook() {
    std::panic::set_hook(Box::new(|info: &PanicHookInfo<'_>| {
        let loc = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        LAST.with(|c| *c.borrow_mut() = loc);
    }));
}

/// Where the last panic on this thread happened, if the quiet hook saw it.
pub fn last_location() -> Option<String> {
    LAST.with(|c| c.borrow_mut().take())
}

/// The message of a panic payload (`panic!("…")` gives a `&str` or a `String`).
pub fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Run `f`; a panic inside it comes back as `Err(Panic)` instead of unwinding further.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panic {
        message: payload_message(payload.as_ref()),
        location: last_location(),
    })
}

/// The environment variable that makes [`failpoint`] panic: its value is a substring of the
/// paths to panic on. For tests of the panic path through the real binary only — no real
/// input reaches a panic on purpose, so without it that path could not be exercised.
pub const FAILPOINT_ENV: &str = "CKPT_TEST_PANIC_ON";

/// Panic if [`FAILPOINT_ENV`] is set to a non-empty substring of `path` (see there).
pub fn failpoint(path: &std::path::Path) {
    if let Some(needle) = std::env::var_os(FAILPOINT_ENV).filter(|v| !v.is_empty())
        && path
            .as_os_str()
            .to_string_lossy()
            .contains(needle.to_string_lossy().as_ref())
    {
        #[allow(clippy::panic)]
        {
            panic!("{FAILPOINT_ENV} failpoint reached for {}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_turns_a_panic_into_a_value() {
        install_quiet_hook();
        let v: Vec<u8> = Vec::new();
        let r = catch(|| {
            let i = v.len() + 1;
            #[allow(clippy::indexing_slicing)]
            v[i..].len()
        });
        let p = r.unwrap_err();
        assert!(p.message.contains("out of range"), "{p:?}");
        assert!(p.location.as_deref().unwrap().contains("bug.rs"), "{p:?}");
        assert!(
            p.to_string()
                .starts_with("this is a bug in ckpt (panic at ")
        );
        assert_eq!(catch(|| 7).unwrap(), 7);
    }
}
