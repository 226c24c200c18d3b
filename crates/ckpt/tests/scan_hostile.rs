//! `ckpt scan` never says "safe" by saying nothing (issue 10), through the real binary.
//!
//! The fixtures are written by scripts/make_hostile_fixtures.py, which also proves each live
//! hostile file really runs its payload (a file named `pwned` appears in the loader's cwd)
//! under torch.load / pickle.load / numpy.load. Their manifests (`MANIFEST.json`) say what
//! each file is and the verdict expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{ckpt, root};
use serde_json::Value;

fn manifest(dir: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(dir).join("MANIFEST.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `ckpt scan --format json <paths>` → (records by path, exit code).
fn scan_json(paths: &[&str]) -> (HashMap<String, Value>, i32) {
    let out = ckpt()
        .args(["scan", "--format", "json"])
        .args(paths)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let map = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["path"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    (map, out.status.code().unwrap())
}

#[test]
fn every_hostile_fixture_is_not_safe() {
    let m = manifest("fixtures/hostile");
    assert_eq!(m.len(), 76, "hostile fixtures");
    let (records, code) = scan_json(&["fixtures/hostile"]);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for entry in &m {
        let file = entry["file"].as_str().unwrap();
        let path = format!("fixtures/hostile/{file}");
        let r = records
            .get(&path)
            .unwrap_or_else(|| panic!("{path} has no record"));
        let verdict = r["verdict"].as_str().unwrap();
        assert!(
            verdict != "safe" && verdict != "no-pickle",
            "{path} is called {verdict}: {r}"
        );
        assert_eq!(verdict, entry["expected"], "{path}: {r}");
        *counts.entry(verdict.to_string()).or_default() += 1;
    }
    // 72 dangerous, 3 unknown (EXT1/2/4), 1 error (the zip bomb).
    assert_eq!(counts.get("dangerous"), Some(&72), "{counts:?}");
    assert_eq!(counts.get("unknown"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("error"), Some(&1), "{counts:?}");
    // the zip bomb cannot be read completely: exit 2 wins over exit 1
    assert_eq!(code, 2);
}

#[test]
fn every_benign_fixture_is_safe() {
    let m = manifest("fixtures/benign");
    assert!(m.len() >= 20);
    let (records, code) = scan_json(&["fixtures/benign"]);
    for entry in &m {
        let file = entry["file"].as_str().unwrap();
        let expected = entry["expected"].as_str().unwrap();
        let prefix = format!("fixtures/benign/{file}");
        let mine: Vec<&Value> = records
            .iter()
            .filter(|(p, _)| *p == &prefix || p.starts_with(&format!("{prefix}/")))
            .map(|(_, r)| r)
            .collect();
        assert!(!mine.is_empty(), "{prefix} has no record");
        for r in mine {
            assert_eq!(r["verdict"], expected, "{r}");
        }
    }
    // the DCP save: .metadata and the .distcp file are both read
    assert_eq!(records["fixtures/benign/dcp/.metadata"]["verdict"], "safe");
    assert_eq!(
        records["fixtures/benign/dcp/__0_0.distcp"]["verdict"],
        "safe"
    );
    assert_eq!(code, 0);
    // ordinary Lightning / FSDP checkpoints and the format fixtures (all but the two that
    // pickle user classes, which are "unknown")
    let (records, _) = scan_json(&["examples", "fixtures/formats", "fixtures/convert/dcp"]);
    let mut safe = 0;
    for (p, r) in &records {
        let v = r["verdict"].as_str().unwrap();
        if p.ends_with("user_classes.pt") || p.ends_with("pickled_module.pt") {
            assert_eq!(v, "unknown", "{p}");
        } else if p.ends_with(".json") || p.ends_with(".safetensors") {
            assert_eq!(v, "no-pickle", "{p}");
        } else {
            assert_eq!(v, "safe", "{p}: {r}");
            safe += 1;
        }
    }
    assert!(safe >= 25, "only {safe} safe files");
}

/// Every command that reads a file, on every hostile file, from a fresh temp dir: the payload
/// would create `pwned` there. Nothing may, and scan must still call the file what it is.
#[test]
fn no_command_runs_a_hostile_payload() {
    let m = manifest("fixtures/hostile");
    for entry in &m {
        let file = entry["file"].as_str().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let src = root().join("fixtures/hostile").join(file);
        let dst = tmp.path().join(file);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
        let runs: Vec<Vec<&str>> = vec![
            vec!["inspect", file],
            vec!["dump", file],
            vec!["scan", file],
            vec!["catalog", "--no-cache", file],
            vec!["hash", file],
            vec!["convert-legacy", "--checkpoint", file, "--dry-run"],
        ];
        for args in runs {
            let out = assert_cmd::Command::cargo_bin("ckpt")
                .unwrap()
                .current_dir(tmp.path())
                .env("HOME", tmp.path())
                .env("CKPT_CACHE_DIR", tmp.path().join("cache"))
                .args(&args)
                .timeout(std::time::Duration::from_secs(20))
                .output()
                .unwrap();
            assert!(
                !tmp.path().join("pwned").exists(),
                "`ckpt {}` created pwned",
                args.join(" ")
            );
            let code = out.status.code();
            assert!(
                matches!(code, Some(0..=2)),
                "`ckpt {}` on {file} ended with {code:?}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            if args[0] == "scan" {
                let text = String::from_utf8_lossy(&out.stdout);
                let expected = entry["expected"].as_str().unwrap();
                assert!(
                    text.starts_with(expected),
                    "scan {file}: expected {expected}, got {text}"
                );
            }
        }
    }
}

fn hostile(name: &str) -> PathBuf {
    root().join("fixtures/hostile").join(name)
}

#[test]
fn scan_decides_by_content_not_by_name() {
    // The three names: a folder holding only these used to print nothing and exit 0.
    for name in ["checkpoint.pth.tar", "model.pt.bak", "weights"] {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(hostile(name), tmp.path().join(name)).unwrap();
        let out = ckpt().arg("scan").arg(tmp.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("dangerous  "), "{name}: {text}");
        assert!(text.contains("dangerous os.system"), "{name}: {text}");
        assert!(
            text.ends_with("1 file: 1 scanned (1 dangerous), 0 skipped (no pickle)\n"),
            "{text}"
        );
    }
}

#[test]
fn scan_lists_every_file_and_ends_with_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::copy(hostile("weights"), d.join("weights")).unwrap();
    std::fs::copy(
        root().join("fixtures/benign/model.safetensors"),
        d.join("model.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        root().join("fixtures/benign/namespace_hparams.pt"),
        d.join("ok.pt"),
    )
    .unwrap();
    std::fs::write(d.join("notes.txt"), "trained on 4 GPUs\n").unwrap();
    std::fs::write(d.join(".gitkeep"), "").unwrap();
    let out = ckpt().current_dir(d).args(["scan", "."]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        rows,
        [
            "no-pickle  ./.gitkeep  (empty file)",
            "no-pickle  ./model.safetensors  (safetensors file (no pickle))",
            "no-pickle  ./notes.txt  (no pickle: pickle.load fails at once (TUPLE without a \
             MARK at byte 0))",
            "safe       ./ok.pt  (zip: 1 pickle, 5 globals, 5 on the allowlist)",
            "dangerous  ./weights  (pickle: 1 pickle, 1 global, 0 on the allowlist)",
            "5 files: 2 scanned (1 safe, 1 dangerous), 3 skipped (no pickle)",
        ],
        "{text}"
    );
}

#[test]
fn scan_json_keeps_its_shape() {
    let (records, _) = scan_json(&[
        "fixtures/hostile/weights",
        "fixtures/benign/notes.txt",
        "fixtures/hostile/truncated_after_call.pkl",
    ]);
    for r in records.values() {
        for key in ["path", "verdict", "globals", "error"] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        for g in r["globals"].as_array().unwrap() {
            for key in ["name", "class", "reason"] {
                assert!(g[key].is_string(), "{key} in {g}");
            }
        }
    }
    let w = &records["fixtures/hostile/weights"];
    assert_eq!(w["globals"][0]["name"], "os.system");
    assert_eq!(w["globals"][0]["class"], "dangerous");
    assert_eq!(w["error"], Value::Null);
    assert_eq!(w["format"], "pickle");
    let n = &records["fixtures/benign/notes.txt"];
    assert_eq!(n["verdict"], "no-pickle");
    assert_eq!(n["globals"], serde_json::json!([]));
}

#[test]
fn scan_unreadable_file_is_not_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::copy(
        root().join("fixtures/benign/namespace_hparams.pt"),
        d.join("ok.pt"),
    )
    .unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(d.join("gone.pt"), d.join("dangling.pt")).unwrap();
    let out = ckpt().current_dir(d).args(["scan", "."]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error      ./dangling.pt"), "{text}");
    assert!(
        text.contains("problem: ./dangling.pt: No such file"),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 file could not be read"),
        "{out:?}"
    );
}

#[cfg(unix)]
#[test]
fn scan_refuses_a_fifo_without_opening_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe.pt");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Named on the command line: refused up front, like by every command.
    let out = ckpt()
        .args(["scan", "--format", "json"])
        .arg(&fifo)
        .timeout(std::time::Duration::from_secs(10))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(out.stdout, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a FIFO (named pipe), not a regular file or a folder"),
        "{err}"
    );
    // Met inside a folder: listed (every path gets a record), never opened, and counted as
    // skipped — nothing stored there for a loader to unpickle.
    let out = ckpt()
        .args(["scan", "--format", "json"])
        .arg(tmp.path())
        .timeout(std::time::Duration::from_secs(10))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["verdict"], "no-pickle", "{v}");
    assert!(
        v[0]["note"]
            .as_str()
            .unwrap()
            .contains("not a regular file"),
        "{v}"
    );
}

fn record(path: &str) -> Value {
    let (records, _) = scan_json(&[path]);
    records[path].clone()
}

fn global_names(r: &Value) -> Vec<String> {
    r["globals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn frame_straddle_is_seen_alone_and_in_a_zip() {
    for (path, entry) in [
        ("fixtures/hostile/frame_straddle.pkl", "pickle 1"),
        ("fixtures/hostile/frame_straddle_zip.pt", "archive/data.pkl"),
    ] {
        let r = record(path);
        assert_eq!(r["verdict"], "dangerous", "{r}");
        let names = global_names(&r);
        assert!(names.contains(&"os.system".to_string()), "{names:?}");
        assert!(
            names.contains(&"<opcode across a FRAME end>".to_string()),
            "{names:?}"
        );
        let sys = r["globals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "os.system")
            .unwrap();
        assert_eq!(sys["entry"], entry);
        assert_eq!(sys["usage"], "called");
    }
    // inspect decodes data.pkl as torch.load does: it sees the call the frame hides
    let out = ckpt()
        .args(["dump", "fixtures/hostile/frame_straddle_zip.pt"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"__object__\": \"os.system\""),
        "{out:?}"
    );
}

#[test]
fn duplicate_zip_names_are_not_safe_and_torchs_copy_is_read() {
    let r = record("fixtures/hostile/zip_duplicate_data_pkl.pt");
    assert_eq!(r["verdict"], "dangerous");
    assert_eq!(
        r["pickles"],
        serde_json::json!(["archive/data.pkl (entry #0)", "archive/data.pkl (entry #2)"])
    );
    assert_eq!(
        r["problems"][0],
        "2 entries are named archive/data.pkl (ignoring case; torch reads entry #2); every \
         copy was scanned"
    );
    // dump reads the copy torch.load reads (the second one here), not the first
    let out = ckpt()
        .args(["dump", "fixtures/hostile/zip_duplicate_data_pkl.pt"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("os.system"),
        "{out:?}"
    );
    // names differing only in case are one name to torch's reader
    let r = record("fixtures/hostile/zip_case_data_pkl.pt");
    assert_eq!(r["verdict"], "dangerous");
    let out = ckpt()
        .args(["dump", "fixtures/hostile/zip_case_data_pkl.pt"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("os.system"));
}

#[test]
fn every_pickle_member_and_every_pickle_in_sequence_is_scanned() {
    for (path, entry) in [
        (
            "fixtures/hostile/zip_constants_pkl.pt",
            "archive/constants.pkl",
        ),
        (
            "fixtures/hostile/zip_other_pkl.pt",
            "archive/extra/state.pkl",
        ),
        (
            "fixtures/hostile/zip_nested.zip",
            "bundle/inner.pt/archive/data.pkl",
        ),
        ("fixtures/hostile/second_pickle_after_stop.pkl", "pickle 2"),
        ("fixtures/hostile/legacy_sys_info.pt", "legacy pickle 3"),
        (
            "fixtures/hostile/object_array.npy",
            "npy payload: pickle 1 at byte 128",
        ),
        ("fixtures/hostile/object_array.npz", "arr_0.npy"),
    ] {
        let r = record(path);
        assert_eq!(r["verdict"], "dangerous", "{r}");
        let g = r["globals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["class"] == "dangerous")
            .unwrap();
        assert!(
            g["entry"].as_str().unwrap().starts_with(entry),
            "{path}: {g}"
        );
    }
}

#[test]
fn raw_protocol_0_and_1_pickles_and_npy_files_get_a_verdict() {
    for (path, verdict) in [
        ("fixtures/hostile/p0_os_system.pkl", "dangerous"),
        ("fixtures/hostile/p1_obj.pkl", "dangerous"),
        ("fixtures/hostile/p0_inst.pkl", "dangerous"),
        ("fixtures/benign/protocol0_list.pkl", "safe"),
        ("fixtures/benign/protocol1_list.pkl", "safe"),
        ("fixtures/benign/object_strings.npy", "safe"),
        ("fixtures/benign/array.npy", "no-pickle"),
    ] {
        assert_eq!(record(path)["verdict"], verdict, "{path}");
    }
}

#[test]
fn deflated_data_pkl_is_read_and_a_zip_bomb_is_refused() {
    let r = record("fixtures/benign/deflated.pt");
    assert_eq!(r["verdict"], "safe");
    let out = ckpt()
        .args(["dump", "fixtures/benign/deflated.pt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("state_dict"));
    let r = record("fixtures/hostile/zip_deflated_data_pkl.pt");
    assert_eq!(r["verdict"], "dangerous");

    let bomb = "fixtures/hostile/zip_bomb_data_pkl.pt";
    let r = record(bomb);
    assert_eq!(r["verdict"], "error");
    assert_eq!(
        r["error"],
        "archive/data.pkl: inflates past the 33554432-byte budget (claims 100000012 bytes; a \
         zip bomb?)"
    );
    let out = ckpt().args(["inspect", bomb]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("inflates past the 33554432-byte budget"),
        "{out:?}"
    );
}

#[test]
fn findings_before_a_parse_error_are_kept() {
    for path in [
        "fixtures/hostile/truncated_after_call.pkl",
        "fixtures/hostile/truncated_zip_member.pt",
    ] {
        let r = record(path);
        assert_eq!(r["verdict"], "dangerous", "{r}");
        assert_eq!(global_names(&r), ["os.system"]);
        assert!(
            r["error"].as_str().unwrap().contains("truncated"),
            "{path}: {r}"
        );
    }
}

#[test]
fn a_text_file_that_reads_as_an_impossible_global_is_not_a_pickle() {
    // "callbacks:\n  model_checkpoint:\n" reads as GLOBAL `allbacks:` — no module has that
    // name, so pickle.load fails without running anything.
    let r = record("fixtures/benign/config.yaml");
    assert_eq!(r["verdict"], "no-pickle", "{r}");
    assert!(Path::new(&root().join("fixtures/benign/config.yaml")).exists());
}

#[test]
fn where_a_strict_reader_stops_cpython_goes_on_and_so_does_scan() {
    // Each of these was "no-pickle" (exit 0) while pickle.load runs its os.system: POP on a
    // MARK, APPENDS with nothing after its MARK on a non-list, INT/LONG text in int(s, 0)
    // syntax. All start without a PROTO header, as protocol 0 pickles do.
    for name in [
        "p0_pop_takes_a_mark.pkl",
        "p0_empty_appends_on_none.pkl",
        "p0_hex_int.pkl",
        "p0_long_underscores.pkl",
    ] {
        let path = format!("fixtures/hostile/{name}");
        let r = record(&path);
        assert_eq!(r["verdict"], "dangerous", "{r}");
        assert_eq!(global_names(&r), ["os.system"], "{path}");
        assert_eq!(r["error"], Value::Null, "{path}: decoded to its end");
    }
}
