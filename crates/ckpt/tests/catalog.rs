//! `ckpt catalog` and `ckpt cache` on the repository's own fixtures: the JSON contract, each
//! source with its provenance, queries, formats, and the cache's life cycle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{ckpt, copy_tree, root};
use predicates::prelude::*;
use serde_json::Value;

fn catalog_json(args: &[&str], paths: &[&Path]) -> Value {
    let mut c = ckpt();
    c.args(["catalog", "--no-cache", "--format", "json"])
        .args(args);
    for p in paths {
        c.arg(p);
    }
    let o = c.assert().success();
    serde_json::from_slice(&o.get_output().stdout).unwrap()
}

fn by_suffix<'v>(v: &'v Value, suffix: &str) -> &'v Value {
    v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("{suffix} not in catalog"))
}

#[test]
fn json_contract_on_the_examples() {
    let v = catalog_json(&[], &[Path::new("examples")]);
    let entries = v["checkpoints"].as_array().unwrap();
    assert_eq!(entries.len(), 6);
    for e in entries {
        for key in [
            "path",
            "experiment",
            "format",
            "epoch",
            "global_step",
            "metrics",
            "monitor",
            "mode",
            "model",
            "params",
            "size_bytes",
            "modified",
            "is_best",
            "is_last",
            "sources",
            "error",
        ] {
            assert!(e.get(key).is_some(), "{key} missing in {e}");
        }
        assert!(e["error"].is_null(), "{e}");
    }
    let best = by_suffix(
        &v,
        "lightning/checkpoints/epoch=02-step=6-hmean=0.7718.ckpt",
    );
    assert_eq!(best["is_best"], true);
    assert_eq!(best["epoch"], 2);
    assert_eq!(best["sources"]["epoch"], "checkpoint");
    assert_eq!(best["model"]["architecture"], "dbnet");
    assert_eq!(best["sources"]["model.architecture"], "hparams");
    assert_eq!(best["monitor"], "val/hmean");
    assert_eq!(best["mode"], "max");
    assert_eq!(best["sources"]["metrics.hmean"], "cleval");
    assert_eq!(best["experiment"], "lightning");
    let last = by_suffix(&v, "lightning/checkpoints/last.ckpt");
    assert_eq!(last["is_last"], true);
    let fsdp = by_suffix(&v, "fsdp/epoch-001.pth");
    assert_eq!(fsdp["model"]["family"], "gpt2");
    assert_eq!(fsdp["sources"]["model.family"], "inferred");
    assert_eq!(fsdp["security"], "safe");
    assert!(fsdp["params"].as_u64().unwrap() > 0);
}

#[test]
fn every_source_with_its_provenance() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("outputs");
    copy_tree(&root().join("fixtures/outputs"), &out);
    // a config sidecar beside one checkpoint
    std::fs::write(
        out.join("filename_only/epoch=3-step=400-v1.config.yaml"),
        "model:\n  architecture: craft\n  encoder: {model_name: vgg16}\n",
    )
    .unwrap();
    let v = catalog_json(&[], &[&out]);
    // Hydra (source 3) comes before the checkpoint's own hparams (source 7) in the catalog.
    let e = by_suffix(&v, "hydra_only/checkpoints/best.ckpt");
    assert_eq!(e["model"]["architecture"], "dbnet");
    assert_eq!(e["sources"]["model.architecture"], "hydra");
    assert_eq!(e["experiment"], "dbnet_legacy");
    assert_eq!(e["sources"]["experiment"], "hydra");
    assert_eq!(e["is_best"], true);
    let e = by_suffix(&v, "nested_model/epoch=5-step=500.ckpt");
    assert_eq!(e["model"]["architecture"], "craft");
    assert_eq!(e["sources"]["model.architecture"], "hparams");
    assert_eq!(e["epoch"], 5);
    assert_eq!(e["sources"]["epoch"], "checkpoint");
    let e = by_suffix(&v, "filename_only/best-epoch02-val_f1-0.847.ckpt");
    assert_eq!(e["epoch"], 2);
    assert_eq!(e["sources"]["epoch"], "file_name");
    assert_eq!(e["metrics"]["val_f1"], 0.847);
    assert_eq!(e["is_best"], true);
    let e = by_suffix(&v, "filename_only/epoch=3-step=400-v1.ckpt");
    assert_eq!(e["global_step"], 400);
    assert_eq!(e["model"]["architecture"], "craft");
    assert_eq!(e["sources"]["model.architecture"], "config_sidecar");
    let e = by_suffix(
        &v,
        "existing_sidecar/checkpoints/epoch=00-step=2-hmean=0.7172.ckpt",
    );
    // The file's own hparams come before a sidecar (what the file records describes it);
    // the sidecar agrees, so there is no conflict to show.
    assert_eq!(e["sources"]["model.architecture"], "hparams");
    assert!(
        !e["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "model.architecture"),
        "{e}"
    );
    let e = by_suffix(&v, "two_callbacks/checkpoints/loss-epoch=02.ckpt");
    assert_eq!(e["monitor"], "val/loss");
    assert_eq!(e["mode"], "min");
    assert_eq!(e["sources"]["monitor"], "callback");
    let e = by_suffix(&v, "broken/epoch=01-step=4-hmean=0.7445.ckpt");
    assert!(e["error"].as_str().unwrap().contains("damaged zip archive"));
}

#[test]
fn hostile_and_broken_files_carry_errors() {
    let v = catalog_json(&[], &[Path::new("fixtures/bad")]);
    for e in v["checkpoints"].as_array().unwrap() {
        let p = e["path"].as_str().unwrap();
        assert!(e["error"].is_string(), "{p} has no error");
        if p.contains("hostile") {
            assert_eq!(e["security"], "dangerous", "{p}");
        }
    }
}

#[test]
fn queries() {
    let v = catalog_json(&["--best"], &[Path::new("examples/lightning")]);
    let c = v["checkpoints"].as_array().unwrap();
    assert_eq!(c.len(), 1);
    assert!(
        c[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("epoch=02-step=6-hmean=0.7718.ckpt")
    );
    let v = catalog_json(
        &["--best", "--by", "epoch", "--mode", "min"],
        &[Path::new("examples/lightning")],
    );
    assert_eq!(v["checkpoints"][0]["epoch"], 1);
    let v = catalog_json(&["--latest"], &[Path::new("examples")]);
    assert_eq!(v["checkpoints"].as_array().unwrap().len(), 3);
    let v = catalog_json(
        &["--filter", "architecture=dbnet", "--filter", "hmean>0.75"],
        &[Path::new("examples")],
    );
    let c = v["checkpoints"].as_array().unwrap();
    assert_eq!(c.len(), 2, "{c:?}");
    let v = catalog_json(
        &["--sort", "epoch", "--desc"],
        &[Path::new("examples/lightning")],
    );
    assert_eq!(v["checkpoints"][0]["epoch"], 2);
    ckpt()
        .args(["catalog", "--no-cache", "--filter", "nonsense", "examples"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("has no operator"));
}

#[test]
fn formats_csv_jsonl_table() {
    let o = ckpt()
        .args([
            "catalog",
            "--no-cache",
            "--format",
            "csv",
            "examples/lightning",
        ])
        .assert()
        .success();
    let csv = String::from_utf8_lossy(&o.get_output().stdout).into_owned();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header
            .starts_with("path,experiment,run,format,epoch,global_step,monitor,mode,architecture"),
        "{header}"
    );
    assert!(header.contains("metrics.hmean"));
    assert_eq!(lines.count(), 3);
    let o = ckpt()
        .args(["catalog", "--no-cache", "--format", "jsonl", "examples"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&o.get_output().stdout).into_owned();
    assert_eq!(text.lines().count(), 6);
    for l in text.lines() {
        let _: Value = serde_json::from_str(l).unwrap();
    }
    let o = ckpt()
        .args(["catalog", "--no-cache", "examples"])
        .assert()
        .success();
    insta::assert_snapshot!(common::transcript(o.get_output()));
}

fn run_cached(cache: &Path, dir: &Path) -> String {
    let o = ckpt()
        .args(["catalog", "-v", "--format", "json", "--cache-file"])
        .arg(cache)
        .arg(dir)
        .assert()
        .success();
    String::from_utf8_lossy(&o.get_output().stderr).into_owned()
}

#[test]
fn cache_life_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ex");
    copy_tree(&root().join("examples"), &dir);
    let cache: PathBuf = tmp.path().join("c/catalog.sqlite3");
    let err = run_cached(&cache, &dir);
    assert!(
        err.contains("6 checkpoint(s): 6 opened, 0 from cache"),
        "{err}"
    );
    let err = run_cached(&cache, &dir);
    assert!(err.contains("0 opened, 6 from cache"), "{err}");
    // a changed file is reopened
    let f = dir.join("fsdp/ddp-epoch-002.pth");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, [&bytes[..], b"\0"].concat()).unwrap();
    let err = run_cached(&cache, &dir);
    assert!(err.contains("1 opened, 5 from cache"), "{err}");
    // a deleted one drops out
    std::fs::remove_file(dir.join("lightning/checkpoints/last.ckpt")).unwrap();
    let err = run_cached(&cache, &dir);
    assert!(err.contains("1 cache rows forgotten"), "{err}");
    let o = ckpt()
        .args(["cache", "info", "--cache-file"])
        .arg(&cache)
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&o.get_output().stdout).contains("entries         5"));
    // a corrupted cache of ours (header intact, pages garbled) is rebuilt with a warning
    let mut bytes = std::fs::read(&cache).unwrap();
    for b in &mut bytes[4096..] {
        *b = 0x5a;
    }
    std::fs::write(&cache, &bytes).unwrap();
    let _ = std::fs::remove_file(cache.with_extension("sqlite3-wal"));
    let err = run_cached(&cache, &dir);
    assert!(err.contains("warning"), "{err}");
    assert!(err.contains("5 opened"), "{err}");
    ckpt()
        .args(["cache", "clear", "--cache-file"])
        .arg(&cache)
        .assert()
        .success();
    assert!(!cache.exists());
    // --no-cache writes nothing
    let c2 = tmp.path().join("c2/catalog.sqlite3");
    ckpt()
        .env("CKPT_CACHE_DIR", tmp.path().join("c2"))
        .args(["catalog", "--no-cache"])
        .arg(&dir)
        .assert()
        .success();
    assert!(!c2.exists());
}

#[test]
fn missing_paths_are_errors_not_warnings() {
    // Issue 10: a mistyped path is exit 2 naming it, not a warning beside an answer that looks
    // complete (tests/mistakes.rs covers every command).
    ckpt()
        .args(["catalog", "--no-cache", "no/such/dir", "examples/fsdp"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no/such/dir: no such file or directory",
        ))
        .stdout("");
}

#[test]
fn dcp_directories_are_entries_with_their_recorded_dtype() {
    // Real 2-rank DCP saves: one entry per directory, tensors and parameters from .metadata,
    // and the dtype it records (bf16 here, not a float32 default).
    let dcp = root().join("fixtures/convert/dcp");
    let v = catalog_json(&[], &[&dcp]);
    let bf16 = by_suffix(&v, "fsdp2_bf16");
    assert_eq!(bf16["format"], "dcp", "{bf16}");
    assert_eq!(bf16["tensors"], 9, "{bf16}");
    assert_eq!(bf16["params"], 180, "{bf16}");
    assert_eq!(bf16["model"]["dtype"], "bfloat16", "{bf16}");
    // A non-tensor `step` saved beside the tensors is the entry's global step.
    let mixed = by_suffix(&v, "dtensor_mixed");
    assert_eq!(mixed["global_step"], 100, "{mixed}");
    assert_eq!(mixed["sources"]["global_step"], "checkpoint", "{mixed}");
    let f32 = by_suffix(&v, "fsdp2_dim0");
    assert_eq!(f32["model"]["dtype"], "float32", "{f32}");
    assert!(f32["error"].is_null(), "{f32}");
}

#[test]
fn catalog_security_is_what_scan_says() {
    // The catalog judges each checkpoint exactly as `ckpt scan` does (every pickle member,
    // duplicate names, frames as torch reads them), not from `data.pkl` alone: a zip whose
    // `constants.pkl` or second `data.pkl` is hostile is never a "safe" model in the catalog.
    let o = ckpt()
        .args([
            "catalog",
            "--no-cache",
            "--format",
            "json",
            "fixtures/hostile",
        ])
        .output()
        .unwrap();
    let cat: Value = serde_json::from_slice(&o.stdout).unwrap();
    let entries = cat["checkpoints"].as_array().unwrap();
    assert!(entries.len() >= 8, "{cat}");
    let o = ckpt()
        .args(["scan", "--format", "json", "fixtures/hostile"])
        .output()
        .unwrap();
    let scan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let verdict_of = |p: &str| {
        scan.as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == p)
            .map(|r| r["verdict"].clone())
            .unwrap_or_else(|| panic!("{p} not scanned"))
    };
    for e in entries {
        // Judged even when it does not open as a checkpoint (truncated, a zip bomb).
        let p = e["path"].as_str().unwrap();
        assert_eq!(e["security"], verdict_of(p), "{p}");
        assert_ne!(e["security"], "safe", "{p}: a hostile fixture");
    }
    for p in [
        "fixtures/hostile/zip_constants_pkl.pt",
        "fixtures/hostile/zip_duplicate_data_pkl.pt",
    ] {
        let e = entries.iter().find(|e| e["path"] == p).unwrap();
        assert!(
            e["security"] == "dangerous" || e["security"] == "error",
            "{e}"
        );
    }
}

#[test]
fn a_sharded_index_naming_files_outside_its_folder_is_an_error() {
    // `weight_map` comes from the file: `../secret.pth` or an absolute path is never opened.
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("model");
    std::fs::create_dir(&m).unwrap();
    std::fs::copy(
        root().join("examples/fsdp/epoch-001.pth"),
        tmp.path().join("secret.pth"),
    )
    .unwrap();
    std::fs::write(
        m.join("model.safetensors.index.json"),
        r#"{"weight_map": {"a": "../secret.pth", "b": "/etc/passwd"}}"#,
    )
    .unwrap();
    std::fs::write(m.join("config.json"), "{}").unwrap();
    let v = catalog_json(&[], &[&m]);
    let e = &v["checkpoints"][0];
    let err = e["error"].as_str().unwrap();
    assert!(
        err.contains("weight_map names a shard outside the folder"),
        "{e}"
    );
    assert!(e["tensors"].is_null() || e["tensors"] == 0, "{e}");
}

/// `ckpt catalog … | head`: a reader that stops early ends the run quietly (exit 0, nothing
/// on stderr), in every format — the JSON writer's error used to lose its broken-pipe kind
/// and print `ckpt: error: Broken pipe` with exit 2.
#[test]
fn a_reader_that_goes_away_ends_the_run_quietly() {
    use std::io::Read;
    for format in ["json", "jsonl", "csv", "table"] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("ckpt"))
            .current_dir(root())
            .args([
                "catalog",
                "--no-cache",
                "--format",
                format,
                "fixtures",
                "examples",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The pipe's reading end is closed here; the rest of the output has nowhere to go.
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("Broken pipe"), "{format}: {err}");
    }
}

/// Damage deep in a cache file (pages the opening look does not read) shows when a query
/// reads them: the run goes on reading the checkpoints themselves, prints the same entries,
/// warns once naming the file, and sets it aside so the next run starts a new cache.
#[test]
fn a_cache_damaged_deep_inside_is_set_aside_mid_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tree");
    let one = root().join("examples/lightning/checkpoints/last.ckpt");
    for run in 0..6 {
        let d = dir.join(format!("run{run}/checkpoints"));
        std::fs::create_dir_all(&d).unwrap();
        for n in 0..20 {
            std::fs::copy(&one, d.join(format!("epoch={n:02}.ckpt"))).unwrap();
        }
    }
    let cache = tmp.path().join("c/catalog.sqlite3");
    let json = |stdout: &[u8]| -> Value { serde_json::from_slice(stdout).unwrap() };
    let first = ckpt()
        .args(["catalog", "--format", "json", "--cache-file"])
        .arg(&cache)
        .arg(&dir)
        .assert()
        .success();
    let expected = json(&first.get_output().stdout);
    assert_eq!(expected["checkpoints"].as_array().unwrap().len(), 120);
    // Garble one page holding stored entries that the look on opening does not read (not on
    // the way to any table's first row).
    let bytes = garble_a_page_only_a_lookup_reads(&cache);
    std::fs::write(&cache, &bytes).unwrap();
    let damaged = ckpt()
        .args(["catalog", "--format", "json", "--cache-file"])
        .arg(&cache)
        .arg(&dir)
        .assert()
        .success();
    let out = damaged.get_output();
    let got = json(&out.stdout);
    assert!(
        got["checkpoints"] == expected["checkpoints"],
        "entries differ"
    );
    let warnings = got["warnings"].to_string();
    assert_eq!(warnings.matches("damaged").count(), 1, "{warnings}");
    assert!(
        warnings.contains(&cache.display().to_string()),
        "{warnings}"
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(cache.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.to_string_lossy();
            name.contains(".corrupt-") && !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), bytes);
    // The next run starts a new cache, then answers from it.
    let again = ckpt()
        .args(["catalog", "-v", "--format", "json", "--cache-file"])
        .arg(&cache)
        .arg(&dir)
        .assert()
        .success();
    assert!(
        json(&again.get_output().stdout) == expected,
        "entries differ"
    );
    let err = ckpt()
        .args(["catalog", "-v", "--format", "json", "--cache-file"])
        .arg(&cache)
        .arg(&dir)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&err.get_output().stderr).into_owned();
    assert!(err.contains("0 opened, 120 from cache"), "{err}");
}

/// The cache's bytes with one page of the `entries` table garbled: a page the first-row look
/// of every table still passes, but a scan of the stored entries trips on.
fn garble_a_page_only_a_lookup_reads(cache: &Path) -> Vec<u8> {
    const PAGE: usize = 4096;
    let bytes = std::fs::read(cache).unwrap();
    assert_eq!(bytes.len() % PAGE, 0);
    let pages = bytes.len() / PAGE;
    assert!(pages >= 16, "{pages} pages");
    let trial = cache.with_extension("trial");
    for page in (1..pages).rev() {
        let mut b = bytes.clone();
        b[page * PAGE..(page + 1) * PAGE].fill(0x5a);
        std::fs::write(&trial, &b).unwrap();
        let c = rusqlite::Connection::open(&trial).unwrap();
        let first_rows_read = ["meta", "files", "entries", "consulted", "parts"]
            .iter()
            .all(
                |t| match c.query_row(&format!("SELECT 1 FROM {t} LIMIT 1"), [], |_| Ok(())) {
                    Ok(()) | Err(rusqlite::Error::QueryReturnedNoRows) => true,
                    Err(_) => false,
                },
            );
        let scan_trips = c
            .prepare("SELECT entry FROM entries")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .is_err();
        drop(c);
        if first_rows_read && scan_trips {
            std::fs::remove_file(&trial).unwrap();
            return b;
        }
    }
    panic!("no page of {} only a lookup reads", cache.display());
}
