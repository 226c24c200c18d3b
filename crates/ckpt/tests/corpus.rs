//! Acceptance against the reference corpus (`../shared/corpus`, or `$CKPT_CORPUS`): ignored by
//! default because the corpus is not part of the repository; `.ci/run` runs it with
//! `--ignored` when the corpus is present.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{ckpt, dump_matches, json_files, root};

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("CKPT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/corpus/data"));
    dir.join("expected").is_dir().then_some(dir)
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn dump_equals_torch_load_on_every_corpus_file() {
    let Some(c) = corpus() else {
        panic!("corpus not found (set CKPT_CORPUS)");
    };
    let expected = json_files(&c.join("expected"));
    assert!(
        expected.len() >= 50,
        "only {} expected files",
        expected.len()
    );
    let mut failures = Vec::new();
    for e in &expected {
        let rel = e.strip_prefix(c.join("expected")).unwrap();
        let file = c.join(rel.to_string_lossy().trim_end_matches(".json"));
        if let Err(d) = dump_matches(&file, e) {
            failures.push(format!("{}: {d}", rel.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        expected.len(),
        failures.join("\n")
    );
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn every_bad_file_is_an_error_or_a_decoded_structure() {
    let Some(c) = corpus() else {
        panic!("corpus not found (set CKPT_CORPUS)");
    };
    let mut seen = 0;
    for e in std::fs::read_dir(c.join("bad")).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            continue;
        }
        seen += 1;
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let out = ckpt()
            .arg("dump")
            .arg(&p)
            .timeout(std::time::Duration::from_secs(10))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hostile = ["os_system", "eval", "popen", "posix"]
            .iter()
            .any(|h| name.contains(h));
        if hostile {
            assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(
                v.to_string().contains("__object__"),
                "{name}: globals not shown"
            );
        } else {
            assert_eq!(
                out.status.code(),
                Some(2),
                "{name}: expected an error, got {}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert_eq!(
                stderr.lines().count(),
                1,
                "{name}: error is not one line: {stderr}"
            );
            assert!(
                stderr.contains(&name),
                "{name}: error does not name the file: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        }
    }
    assert!(seen >= 16);
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn scan_verdicts_on_the_corpus() {
    let Some(c) = corpus() else {
        panic!("corpus not found (set CKPT_CORPUS)");
    };
    let out = ckpt()
        .args(["scan", "--format", "json"])
        .arg(&c)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut checked = 0;
    for f in v.as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let verdict = f["verdict"].as_str().unwrap();
        let name = path.rsplit('/').next().unwrap();
        let expected = if path.contains("/bad/")
            && ["os_system", "eval", "popen", "posix"]
                .iter()
                .any(|h| name.contains(h))
        {
            "dangerous"
        } else if path.contains("/bad/") && verdict == "error" {
            "error"
        } else if name == "user_classes.pt"
            || name == "pickled_module.pt"
            || name == "architecture.pt"
        {
            "unknown"
        } else {
            "safe"
        };
        assert_eq!(verdict, expected, "{path}");
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} files scanned");
    // some bad files are unreadable, so the exit code is 2
    assert_eq!(out.status.code(), Some(2));
}
