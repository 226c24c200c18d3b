//! Issue 10: a panic never reaches a user as a backtrace. It is one line naming the command and
//! the file, "this is a bug in ckpt", exit code 3 — and the other files of a batch are still
//! processed. No real input panics on purpose, so the tests reach the panic path through the
//! binary's failpoint (`CKPT_TEST_PANIC_ON=<substring of a path>`, see `ckpt_torch::bug`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{ckpt, copy_tree, root};

/// Run `ckpt` with the failpoint armed for paths containing `needle` (and a backtrace asked
/// for, which must still not appear); returns (exit code, stdout, stderr).
fn run_panicking(needle: &str, args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let o = ckpt()
        .env("CKPT_TEST_PANIC_ON", needle)
        .env("RUST_BACKTRACE", "1")
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The stderr lines that report a bug: exactly `n`, each naming `command` and the file.
fn assert_bug_lines(stderr: &str, command: &str, file: &str, n: usize) {
    assert!(!stderr.contains("panicked at"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
    let bugs: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("this is a bug in ckpt"))
        .collect();
    assert_eq!(bugs.len(), n, "{stderr}");
    for l in bugs {
        assert!(
            l.starts_with(&format!("ckpt: error: ckpt {command}")),
            "{l}"
        );
        assert!(l.contains(file), "{l}");
        assert!(l.contains("please report it"), "{l}");
    }
}

#[test]
fn panic_in_inspect_is_one_line_and_exit_3() {
    let (code, out, err) = run_panicking(
        "last.ckpt",
        &[
            "inspect".as_ref(),
            "examples/lightning/checkpoints/last.ckpt".as_ref(),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_bug_lines(
        &err,
        "inspect",
        "examples/lightning/checkpoints/last.ckpt",
        1,
    );
}

#[test]
fn panic_in_catalog_costs_one_entry_not_the_tree() {
    let (code, out, err) = run_panicking(
        "last.ckpt",
        &[
            "catalog".as_ref(),
            "--no-cache".as_ref(),
            "--format".as_ref(),
            "json".as_ref(),
            "examples".as_ref(),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert_bug_lines(
        &err,
        "catalog",
        "examples/lightning/checkpoints/last.ckpt",
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entries = v["checkpoints"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "every checkpoint is still listed");
    for e in entries {
        let path = e["path"].as_str().unwrap();
        if path.ends_with("lightning/checkpoints/last.ckpt") {
            assert!(
                e["error"]
                    .as_str()
                    .unwrap()
                    .contains("this is a bug in ckpt"),
                "{e}"
            );
        } else {
            assert!(e["error"].is_null(), "{e}");
            assert!(!e["format"].is_null(), "{e}");
        }
    }
}

#[test]
fn panic_is_never_cached() {
    // The entry that hit a bug is read again by the next run (a fixed ckpt must not be served
    // the bug's answer from the cache).
    let tmp = tempfile::tempdir().unwrap();
    let cache: PathBuf = tmp.path().join("catalog.sqlite3");
    let args = |c: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "catalog".into(),
            "-v".into(),
            "--cache-file".into(),
            c.into(),
            "examples/lightning".into(),
        ]
    };
    let a = args(&cache);
    let a: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
    let (code, _, err) = run_panicking("last.ckpt", &a);
    assert_eq!(code, 3, "{err}");
    let o = ckpt().args(&a).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("1 opened, 2 from cache"), "{err}");
}

#[test]
fn panic_in_convert_legacy_fails_that_checkpoint_and_writes_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lightning");
    copy_tree(&root().join("examples/lightning"), &dir);
    let (code, out, err) = run_panicking(
        "last.ckpt",
        &[
            "convert-legacy".as_ref(),
            "--outputs-dir".as_ref(),
            dir.as_os_str(),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert_bug_lines(&err, "convert-legacy", "last.ckpt", 1);
    assert!(
        out.contains("Converted: 2") && out.contains("Failed: 1"),
        "{out}"
    );
    let ck = dir.join("checkpoints");
    assert!(
        ck.join("epoch=01-step=4-hmean=0.7445.metadata.yaml")
            .is_file()
    );
    assert!(
        ck.join("epoch=02-step=6-hmean=0.7718.metadata.yaml")
            .is_file()
    );
    assert!(!ck.join("last.metadata.yaml").exists());
}

#[test]
fn panic_in_experiments_reports_the_file() {
    let (code, _out, err) = run_panicking(
        "epoch=01",
        &[
            "experiments".as_ref(),
            "--no-cache".as_ref(),
            "examples/lightning".as_ref(),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert_bug_lines(&err, "experiments", "epoch=01-step=4-hmean=0.7445.ckpt", 1);
}

#[test]
fn panic_in_convert_fails_that_checkpoint_and_leaves_no_temp_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // The failpoint fires while the first output file is written inside the temporary folder
    // (`out/.epoch-001.tmp-PID/model.safetensors`): the panic unwinds through the conversion.
    let (code, stdout, err) = run_panicking(
        "epoch-001.tmp-",
        &[
            "convert".as_ref(),
            "examples/fsdp".as_ref(),
            "--to".as_ref(),
            "safetensors".as_ref(),
            "--output-dir".as_ref(),
            out.as_os_str(),
        ],
    );
    assert_eq!(code, 3, "{stdout}{err}");
    assert_eq!(err, "", "reported once, in the table");
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("failed")).collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert!(
        failed[0].contains("examples/fsdp/epoch-001.pth: this is a bug in ckpt"),
        "{stdout}"
    );
    assert!(
        stdout.contains("succeeded  examples/fsdp/ddp-epoch-002.pth"),
        "{stdout}"
    );
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["ddp-epoch-002"], "no temporary folder left behind");
}

#[test]
fn panic_in_scan_makes_that_file_an_error_and_scans_the_rest() {
    let (code, stdout, err) = run_panicking(
        "last.ckpt",
        &[
            "scan".as_ref(),
            "--format".as_ref(),
            "json".as_ref(),
            "examples/lightning".as_ref(),
        ],
    );
    assert_eq!(code, 3, "{stdout}{err}");
    assert!(!err.contains("panicked at"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let records = v.as_array().unwrap();
    assert!(records.len() >= 3, "{v}");
    for r in records {
        let path = r["path"].as_str().unwrap();
        if path.ends_with("last.ckpt") {
            assert_eq!(r["verdict"], "error", "{r}");
            assert!(
                r["error"]
                    .as_str()
                    .unwrap()
                    .contains("this is a bug in ckpt"),
                "{r}"
            );
        } else if path.ends_with(".ckpt") {
            assert_eq!(r["verdict"], "safe", "{r}");
        }
    }
}
