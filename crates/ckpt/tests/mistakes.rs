//! Issue 10, "mistakes are errors, not empty answers": a path that does not exist, a URL, or a
//! query on a field no checkpoint has is exit 2 with one line that names it — never an empty
//! table with exit 0, and never a prune that keeps everything because the monitor was mistyped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ckpt, run};

fn assert_one_error(code: i32, err: &str, needles: &[&str]) {
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("ckpt: error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
}

#[test]
fn missing_paths_exit_2_naming_them() {
    for args in [
        vec!["catalog", "--no-cache", "outptus"],
        vec!["experiments", "--no-cache", "outptus"],
        vec!["latest", "--no-cache", "outptus"],
        vec![
            "prune",
            "--no-cache",
            "outptus",
            "--keep-top",
            "1",
            "--monitor",
            "val/hmean",
            "--mode",
            "max",
        ],
        vec!["inspect", "outptus"],
        vec!["dump", "outptus"],
        vec!["scan", "outptus"],
        vec!["hash", "outptus"],
        vec!["diff", "outptus", "examples/fsdp/epoch-001.pth"],
        vec!["validate", "--exp-dir", "outptus"],
        vec!["convert-legacy", "--exp-dir", "outptus"],
        vec!["convert", "outptus", "--output-dir", "never-created"],
    ] {
        let (code, out, err) = run(&args);
        assert_one_error(code, &err, &["outptus: no such file or directory"]);
        assert_eq!(out, "", "{args:?}");
    }
    assert!(!common::root().join("never-created").exists());
    // Several at once are named together, still on one line.
    let (code, _, err) = run(&["catalog", "--no-cache", "examples", "nope1", "nope2"]);
    assert_one_error(code, &err, &["nope1, nope2: no such files or directories"]);
}

/// Object storage (`s3://`, `gs://`, `az://`) is read (tests/object_store.rs, against a
/// local S3 server); other URLs are refused before any request, naming what is read. No
/// bucket URL is tried here: without a test server it would leave the machine.
#[test]
fn urls_other_than_buckets_say_they_are_not_supported() {
    for args in [
        vec!["catalog", "--no-cache", "https://example.com/runs"],
        vec!["inspect", "http://example.com/runs/last.ckpt"],
        vec!["scan", "ftp://host/x.pt"],
        vec![
            "convert",
            "https://example.com/m.pth",
            "--output-dir",
            "never-created",
        ],
    ] {
        let (code, out, err) = run(&args);
        assert_one_error(
            code,
            &err,
            &["://", "not supported", "s3://, gs:// and az://"],
        );
        assert_eq!(out, "");
    }
    assert!(!common::root().join("never-created").exists());
}

/// Commands that write beside their inputs, delete them or watch them refuse a bucket up
/// front (before any request), and so does a bucket as convert's output folder.
#[test]
fn writing_commands_refuse_buckets_before_any_request() {
    for (args, want) in [
        (
            vec![
                "prune",
                "--keep-top",
                "1",
                "--monitor",
                "m",
                "--mode",
                "max",
                "--yes",
                "s3://bucket/runs",
            ],
            "prune --yes deletes files",
        ),
        (
            vec!["convert-legacy", "--exp-dir", "s3://bucket/runs"],
            "convert-legacy writes sidecars",
        ),
        (vec!["watch", "s3://bucket/runs"], "watch follows local"),
        (
            vec![
                "catalog",
                "examples",
                "--format",
                "parquet",
                "--output",
                "s3://bucket/c.parquet",
            ],
            "--output is a local file",
        ),
        (
            vec![
                "catalog",
                "--cache-file",
                "s3://bucket/c.sqlite3",
                "examples",
            ],
            "--cache-file is a local file",
        ),
        (
            vec!["serve", "s3://bucket/runs", "--allow-writes"],
            "serve --allow-writes writes sidecars",
        ),
        (
            vec![
                "convert",
                "examples/fsdp/epoch-001.pth",
                "--to",
                "safetensors",
                "--output-dir",
                "s3://bucket/out",
            ],
            "written to a local --output-dir",
        ),
    ] {
        let (code, out, err) = run(&args);
        assert_one_error(code, &err, &["s3://bucket/", want]);
        assert_eq!(out, "", "{args:?}");
    }
}

#[test]
fn unknown_query_fields_exit_2_with_the_nearest_match() {
    for (args, option) in [
        (
            vec!["catalog", "--no-cache", "examples", "--filter", "hmena>0.5"],
            "--filter",
        ),
        (
            vec![
                "catalog",
                "--no-cache",
                "examples",
                "--format",
                "json",
                "--filter",
                "hmena>0.5",
            ],
            "--filter",
        ),
        (
            vec!["catalog", "--no-cache", "examples", "--sort", "hmena"],
            "--sort",
        ),
        (
            vec![
                "catalog",
                "--no-cache",
                "examples",
                "--best",
                "--by",
                "hmena",
            ],
            "--by",
        ),
    ] {
        let (code, _out, err) = run(&args);
        assert_one_error(
            code,
            &err,
            &[
                option,
                "\"hmena\"",
                "did you mean \"hmean\"?",
                "known fields: ",
            ],
        );
    }
    // A real field with no match is an empty answer, not an error.
    let (code, out, err) = run(&[
        "catalog",
        "--no-cache",
        "examples",
        "--filter",
        "hmean>0.99",
    ]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.contains("0 checkpoint(s)"), "{out}");
    // Nothing close: no suggestion, still the known fields.
    let (code, _, err) = run(&["catalog", "--no-cache", "examples", "--filter", "zzzzzz=1"]);
    assert_one_error(
        code,
        &err,
        &["no checkpoint has that field; known fields: ", "epoch"],
    );
}

#[test]
fn prune_with_a_mistyped_monitor_refuses_instead_of_keeping_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lightning");
    common::copy_tree(
        &common::root().join("examples/lightning/checkpoints"),
        &dir.join("checkpoints"),
    );
    let before = std::fs::read_dir(dir.join("checkpoints")).unwrap().count();
    let d = dir.to_str().unwrap();
    let (code, out, err) = run(&[
        "prune",
        "--no-cache",
        d,
        "--keep-top",
        "1",
        "--monitor",
        "val/hmena",
        "--mode",
        "max",
        "--yes",
    ]);
    assert_one_error(
        code,
        &err,
        &["--monitor \"val/hmena\"", "did you mean \"val/hmean\"?"],
    );
    assert_eq!(out, "");
    assert_eq!(
        std::fs::read_dir(dir.join("checkpoints")).unwrap().count(),
        before
    );
}

/// Make `dir` refuse deletions: `chmod 555` for a normal user, `chattr +i` for root (whom
/// permissions do not stop). Returns whether it worked, probed by trying to create a file.
fn make_undeletable(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let probe = |d: &std::path::Path| std::fs::write(d.join(".probe"), b"").is_err();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if probe(dir) {
        return true;
    }
    let _ = std::fs::remove_file(dir.join(".probe"));
    let ok = std::process::Command::new("chattr")
        .arg("+i")
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok && probe(dir)
}

fn make_deletable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(dir)
        .status();
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
}

#[test]
fn prune_yes_that_could_not_delete_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("lightning/checkpoints");
    common::copy_tree(&common::root().join("examples/lightning/checkpoints"), &ck);
    if !make_undeletable(&ck) {
        make_deletable(&ck);
        // Root on a filesystem without chattr: nothing here can make a deletion fail.
        eprintln!("SKIPPED: cannot make a folder refuse deletions on this machine");
        return;
    }
    let d = tmp.path().join("lightning");
    let o = ckpt()
        .args([
            "prune",
            "--no-cache",
            "--keep-top",
            "1",
            "--monitor",
            "val/hmean",
            "--mode",
            "max",
            "--yes",
        ])
        .arg(&d)
        .output()
        .unwrap();
    make_deletable(&ck);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("deleted 0 file(s)"), "{out}");
    assert!(
        out.contains("skipped ") && out.contains("epoch=01-step=4-hmean=0.7445.ckpt"),
        "{out}"
    );
    assert_eq!(std::fs::read_dir(&ck).unwrap().count(), 3);
}

#[test]
fn convert_legacy_into_a_read_only_folder_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("lightning/checkpoints");
    common::copy_tree(&common::root().join("examples/lightning/checkpoints"), &ck);
    if !make_undeletable(&ck) {
        make_deletable(&ck);
        eprintln!("SKIPPED: cannot make a folder read-only on this machine");
        return;
    }
    let o = ckpt()
        .args(["convert-legacy", "--exp-dir"])
        .arg(tmp.path().join("lightning"))
        .output()
        .unwrap();
    make_deletable(&ck);
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("Failed 3 checkpoints in ") && errors[0].contains("cannot write"),
        "{err}"
    );
    assert!(!err.contains(".tmp-"), "no temp names: {err}");
    assert!(out.contains("Failed: 3"), "{out}");
    assert_eq!(
        std::fs::read_dir(&ck).unwrap().count(),
        3,
        "nothing written, nothing left behind"
    );
}

/// A bucket URL without a bucket, and an endpoint that is not a URL (object_store would
/// panic on it mid-request): one line each, exit 2, before any request.
#[test]
fn a_url_without_a_bucket_and_an_endpoint_that_is_no_url_are_one_line() {
    let (code, out, err) = run(&["inspect", "s3://"]);
    assert_one_error(code, &err, &["s3://: no bucket named"]);
    assert_eq!(out, "");
    let o = ckpt()
        .args(["--endpoint", "notaurl", "inspect", "s3://b/x.ckpt"])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_one_error(
        o.status.code().unwrap_or(-1),
        &err,
        &[
            "s3://b/x.ckpt",
            "endpoint \"notaurl\" is not an http:// or https:// URL",
        ],
    );
}
