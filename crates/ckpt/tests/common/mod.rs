//! Shared helpers for the CLI tests: the repository root, running the binary, and the corpus
//! comparison (the same rules as `corpus/compare.py`).
#![allow(dead_code)]

pub mod contract;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The workspace root (tests run the binary from there so printed paths are stable).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The binary, run from the workspace root in a scrubbed environment: nothing of the
/// machine's own (`HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `CKPT_CACHE_DIR`, a `HOME` with
/// a Hugging Face cache or a ckpt cache in it, `RUST_BACKTRACE` …) reaches it. It gets `PATH`
/// and a `HOME` of the tests' own (`test_home`); a test sets whatever else it is about with
/// `.env(…)`.
pub fn ckpt() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("ckpt").unwrap();
    c.current_dir(root());
    c.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        c.env("PATH", path);
    }
    c.env("HOME", test_home());
    c
}

/// An empty-to-start home folder under the build's temporary directory, the same for every
/// test of a run (`CARGO_TARGET_TMPDIR`, which cargo keeps for integration tests).
pub fn test_home() -> PathBuf {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ckpt-test-home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// First difference between `actual` and `expected` under the corpus mapping: objects tagged
/// `__object__` compare on the class and the keys the expected side has; an int equals a float
/// of the same value; object key order matters.
pub fn diff(a: &Value, e: &Value, path: &str) -> Option<String> {
    match e {
        Value::Object(eo) if eo.contains_key("__object__") => {
            let Some(ao) = a.as_object() else {
                return Some(format!(
                    "{path}: expected object {}, got {a}",
                    eo["__object__"]
                ));
            };
            if ao.get("__object__") != eo.get("__object__") {
                return Some(format!(
                    "{path}: expected object {}, got {:?}",
                    eo["__object__"],
                    ao.get("__object__")
                ));
            }
            for (k, v) in eo {
                if k == "__object__" {
                    continue;
                }
                let av = ao.get(k).unwrap_or(&Value::Null);
                if let Some(d) = diff(av, v, &format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        Value::Object(eo) => {
            let Some(ao) = a.as_object() else {
                return Some(format!("{path}: expected object, got {a}"));
            };
            let ak: Vec<&String> = ao.keys().collect();
            let ek: Vec<&String> = eo.keys().collect();
            if ak != ek {
                return Some(format!("{path}: keys differ: {ak:?} vs expected {ek:?}"));
            }
            for (k, v) in eo {
                if let Some(d) = diff(&ao[k], v, &format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        Value::Array(ea) => {
            let Some(aa) = a.as_array() else {
                return Some(format!("{path}: expected list, got {a}"));
            };
            if aa.len() != ea.len() {
                return Some(format!(
                    "{path}: expected list of {}, got {}",
                    ea.len(),
                    aa.len()
                ));
            }
            for (i, (x, y)) in aa.iter().zip(ea).enumerate() {
                if let Some(d) = diff(x, y, &format!("{path}[{i}]")) {
                    return Some(d);
                }
            }
            None
        }
        Value::Number(en) => {
            let eq = match a.as_number() {
                // Integers compare exactly; an int equals a float of the same value.
                Some(an) if !an.is_f64() && !en.is_f64() => an == en,
                Some(an) => an.as_f64() == en.as_f64(),
                None => false,
            };
            (!eq).then(|| format!("{path}: expected {en}, got {a}"))
        }
        _ => (a != e).then(|| format!("{path}: expected {e}, got {a}")),
    }
}

/// Run `ckpt dump --tensor-hashes FILE` and compare with an expected JSON file.
pub fn dump_matches(file: &Path, expected: &Path) -> Result<(), String> {
    let out = ckpt()
        .args(["dump", "--tensor-hashes"])
        .arg(file)
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let a: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("output is not JSON: {e}"))?;
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(expected).map_err(|e| e.to_string())?)
            .map_err(|e| format!("expected is not JSON: {e}"))?;
    match diff(&a, &e, "$") {
        Some(d) => Err(d),
        None => Ok(()),
    }
}

/// Every `*.json` under `dir`, sorted.
pub fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = files(dir);
    out.retain(|p| p.extension().is_some_and(|x| x == "json"));
    out
}

/// Every file under `dir` (folders walked, not listed), sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Copy a folder tree (files and folders), making the copies writable (the corpus is
/// read-only).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
            let mut perm = std::fs::metadata(&dest).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&dest, perm).unwrap();
        }
    }
}

/// `ckpt prune --keep-top 1 --monitor val/hmean --mode max --format json DIR [--yes]`.
pub fn prune_top1_hmean(dir: &Path, yes: bool) -> Value {
    let mut cmd = ckpt();
    cmd.args([
        "prune",
        "--no-cache",
        "--keep-top",
        "1",
        "--monitor",
        "val/hmean",
        "--mode",
        "max",
        "--format",
        "json",
    ]);
    if yes {
        cmd.arg("--yes");
    }
    let o = cmd.arg(dir).assert().success();
    serde_json::from_slice(&o.get_output().stdout).unwrap()
}

/// A run's exit code, stdout and stderr as one text: what snapshot tests record, so that a
/// changed warning or exit code shows in the snapshot as much as a changed table.
pub fn transcript(o: &std::process::Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run `ckpt args…` (scrubbed environment, repository root) and return (exit code, stdout,
/// stderr); -1 when killed by a signal.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String, String) {
    let o = ckpt().args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
