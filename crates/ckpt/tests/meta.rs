//! `convert-legacy`, `validate` and `schema` on the repository's own fixtures, in temporary
//! copies (the fixtures themselves are never written to).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{ckpt, copy_tree, root};
use predicates::prelude::*;
use serde_json::Value;

/// A temporary outputs dir holding a copy of `examples/<name>` for each name.
fn outputs(names: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("outputs");
    for n in names {
        copy_tree(&root().join("examples").join(n), &out.join(n));
    }
    (tmp, out)
}

fn yaml_of(p: &Path) -> Value {
    ckpt_meta::yaml::parse(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn summary(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout).into_owned()
}

#[test]
fn converts_a_lightning_tree_with_sources_recorded() {
    let (_t, out) = outputs(&["lightning"]);
    let o = ckpt()
        .args(["convert-legacy", "--outputs-dir"])
        .arg(&out)
        .assert()
        .success();
    let s = summary(&o.get_output().stdout);
    assert!(
        s.contains("Total checkpoints found: 3\nConverted: 3\nSkipped (existing): 0\nFailed: 0"),
        "{s}"
    );
    let ck = out.join("lightning/checkpoints/epoch=02-step=6-hmean=0.7718.ckpt");
    let v = yaml_of(&out.join("lightning/checkpoints/epoch=02-step=6-hmean=0.7718.metadata.yaml"));
    assert_eq!(v["schema_version"], "1.0");
    assert_eq!(
        v["checkpoint_path"],
        "lightning/checkpoints/epoch=02-step=6-hmean=0.7718.ckpt"
    );
    assert_eq!(v["exp_name"], "lightning");
    assert_eq!(v["provenance"]["exp_name"], "folder_name");
    assert_eq!(v["training"]["epoch"], 2);
    assert_eq!(v["training"]["global_step"], 6);
    assert_eq!(v["provenance"]["training.epoch"], "checkpoint");
    assert_eq!(v["model"]["architecture"], "dbnet");
    assert_eq!(v["provenance"]["model.architecture"], "hparams");
    assert_eq!(v["model"]["encoder"]["model_name"], "mobilenetv3_small_050");
    assert_eq!(v["provenance"]["metrics.hmean"], "cleval");
    assert_eq!(v["checkpointing"]["monitor"], "val/hmean");
    assert_eq!(v["checkpointing"]["mode"], "max");
    assert_eq!(v["provenance"]["checkpointing.mode"], "callback");
    assert_eq!(v["checkpointing"]["save_top_k"], 2);
    assert_eq!(v["provenance"]["checkpointing.save_top_k"], "inferred");
    assert_eq!(v["checkpointing"]["save_last"], true);
    assert!(v["metrics"]["additional_metrics"]["val/hmean"].is_number());
    assert_eq!(
        v["fingerprint"]["size_bytes"],
        std::fs::metadata(&ck).unwrap().len()
    );
    assert_eq!(
        v["fingerprint"]["pickle_sha256"].as_str().unwrap().len(),
        64
    );
    assert_eq!(v["state"]["state_dict_key"], "state_dict");
    assert!(
        ckpt_meta::validate(&v).is_empty(),
        "{:?}",
        ckpt_meta::validate(&v)
    );
    // and it validates from the CLI
    ckpt()
        .args(["validate", "--outputs-dir"])
        .arg(&out)
        .assert()
        .success();
}

#[test]
fn dictconfig_hparams_give_the_architecture() {
    let (_t, out) = outputs(&["lightning_dictconfig"]);
    ckpt()
        .args(["convert-legacy", "--exp-dir"])
        .arg(out.join("lightning_dictconfig"))
        .assert()
        .success();
    let v = yaml_of(
        &out.join("lightning_dictconfig/checkpoints/epoch=01-step=4-hmean=0.7445.metadata.yaml"),
    );
    assert_eq!(v["model"]["architecture"], "dbnet");
    assert_eq!(v["provenance"]["model.architecture"], "hparams");
    assert_eq!(
        v["checkpoint_path"],
        "lightning_dictconfig/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt"
    );
}

#[test]
fn dry_run_writes_nothing_and_shows_the_yaml() {
    let (_t, out) = outputs(&["lightning"]);
    let o = ckpt()
        .args(["convert-legacy", "--dry-run", "--outputs-dir"])
        .arg(&out)
        .assert()
        .success();
    let s = summary(&o.get_output().stdout);
    assert!(s.contains("schema_version: '1.0'"), "{s}");
    assert!(s.contains("Conversion Summary (dry run)"), "{s}");
    let sidecars: Vec<_> = std::fs::read_dir(out.join("lightning/checkpoints"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".metadata."))
        .collect();
    assert!(sidecars.is_empty());
}

#[test]
fn second_run_converts_nothing_and_force_rewrites_keeping_unknown_keys() {
    let (_t, out) = outputs(&["lightning"]);
    ckpt()
        .args(["convert-legacy", "--outputs-dir"])
        .arg(&out)
        .assert()
        .success();
    let sc = out.join("lightning/checkpoints/last.metadata.yaml");
    let mut text = std::fs::read_to_string(&sc).unwrap();
    text.push_str("\ncustom_notes: keep me\n");
    std::fs::write(&sc, &text).unwrap();
    let o = ckpt()
        .args(["convert-legacy", "--outputs-dir"])
        .arg(&out)
        .assert()
        .success();
    assert!(summary(&o.get_output().stdout).contains("Converted: 0\nSkipped (existing): 3"));
    assert_eq!(
        std::fs::read_to_string(&sc).unwrap(),
        text,
        "touched without --force"
    );
    let o = ckpt()
        .args(["convert-legacy", "--force", "--outputs-dir"])
        .arg(&out)
        .assert()
        .success();
    assert!(summary(&o.get_output().stdout).contains("Converted: 3"));
    let v = yaml_of(&sc);
    assert_eq!(v["custom_notes"], "keep me");
    assert_eq!(v["schema_version"], "1.0");
}

#[test]
fn an_unreadable_checkpoint_fails_and_the_batch_goes_on() {
    let (_t, out) = outputs(&["lightning"]);
    let bad = out.join("lightning/checkpoints/broken.ckpt");
    let good = std::fs::read(out.join("lightning/checkpoints/last.ckpt")).unwrap();
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let o = ckpt()
        .args(["convert-legacy", "--outputs-dir"])
        .arg(&out)
        .assert()
        .code(1);
    let s = summary(&o.get_output().stdout);
    assert!(
        s.contains("Total checkpoints found: 4\nConverted: 3\nSkipped (existing): 0\nFailed: 1"),
        "{s}"
    );
    let err = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        err.contains("ERROR - Failed") && err.contains("broken.ckpt: damaged zip archive"),
        "{err}"
    );
    assert!(
        !out.join("lightning/checkpoints/broken.metadata.yaml")
            .exists()
    );
}

#[test]
fn verbose_logs_each_source() {
    let (_t, out) = outputs(&["lightning"]);
    let o = ckpt()
        .args(["convert-legacy", "-v", "--checkpoint"])
        .arg(out.join("lightning/checkpoints/last.ckpt"))
        .assert()
        .success();
    let err = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(
        err.contains("DEBUG") && err.contains("model.architecture = \"dbnet\" (from hparams)"),
        "{err}"
    );
    assert!(err.contains("hydra config: none found"), "{err}");
}

#[test]
fn no_recursive_stays_in_the_folder() {
    let (_t, out) = outputs(&["lightning"]);
    let o = ckpt()
        .args(["convert-legacy", "--no-recursive", "--outputs-dir"])
        .arg(&out)
        .assert()
        .success();
    assert!(summary(&o.get_output().stdout).contains("Total checkpoints found: 0"));
}

#[test]
fn stale_and_missing_sidecars_are_reported() {
    let (_t, out) = outputs(&["lightning"]);
    ckpt()
        .args(["convert-legacy", "--checkpoint"])
        .arg(out.join("lightning/checkpoints/last.ckpt"))
        .assert()
        .success();
    // Replace the checkpoint with another one: the fingerprint no longer matches.
    std::fs::copy(
        out.join("lightning/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt"),
        out.join("lightning/checkpoints/last.ckpt"),
    )
    .unwrap();
    let o = ckpt()
        .args(["validate", "--format", "json", "--outputs-dir"])
        .arg(&out)
        .assert()
        .code(1);
    let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    let status: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, vec!["missing", "missing", "stale"]);
}

#[test]
fn validate_reports_positions_paths_and_future_versions() {
    let (_t, out) = outputs(&["fsdp"]);
    let dir = out.join("fsdp");
    std::fs::write(
        dir.join("epoch-001.metadata.yaml"),
        "schema_version: '1.0'\ntraining: [unclosed\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ddp-epoch-002.metadata.yaml"),
        "schema_version: '1.0'\nexp_name: 12\ntraining:\n  epoch: minus one\n  global_step: -5\nmetrics:\n  hmean: 1.7\n",
    )
    .unwrap();
    let o = ckpt()
        .args(["validate", "--format", "json", "--exp-dir"])
        .arg(&dir)
        .assert()
        .code(1);
    let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    let ddp = &v[0];
    let paths: Vec<&str> = ddp["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for p in [
        "exp_name",
        "training.epoch",
        "training.global_step",
        "metrics.hmean",
    ] {
        assert!(paths.contains(&p), "{p} not in {paths:?}");
    }
    let broken = &v[1];
    assert_eq!(broken["problems"][0]["line"], 2);
    std::fs::write(
        dir.join("epoch-001.metadata.yaml"),
        "schema_version: '9.0'\nexp_name: x\n",
    )
    .unwrap();
    ckpt()
        .args(["validate", "--checkpoint"])
        .arg(dir.join("epoch-001.pth"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("schema version 9.0 is newer"));
}

#[test]
fn force_never_downgrades_a_newer_sidecar() {
    let (_t, out) = outputs(&["fsdp"]);
    let sc = out.join("fsdp/epoch-001.metadata.yaml");
    std::fs::write(&sc, "schema_version: '9.0'\nexp_name: x\n").unwrap();
    let o = ckpt()
        .args(["convert-legacy", "--force", "--checkpoint"])
        .arg(out.join("fsdp/epoch-001.pth"))
        .assert()
        .code(1);
    assert!(
        String::from_utf8_lossy(&o.get_output().stderr)
            .contains("newer than this ckpt understands")
    );
    assert_eq!(
        std::fs::read_to_string(&sc).unwrap(),
        "schema_version: '9.0'\nexp_name: x\n"
    );
}

#[test]
fn schema_is_json_with_every_field() {
    let o = ckpt().arg("schema").assert().success();
    let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    assert_eq!(
        v["properties"]["training"]["properties"]["epoch"]["type"],
        "integer"
    );
    assert_eq!(v["required"].as_array().unwrap().len(), 8);
}

#[test]
fn target_options_are_exclusive() {
    ckpt()
        .args([
            "convert-legacy",
            "--checkpoint",
            "a.ckpt",
            "--outputs-dir",
            "b",
        ])
        .assert()
        .code(2);
    ckpt()
        .args(["convert-legacy", "--checkpoint", "no/such.ckpt"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no/such.ckpt: no such file or directory",
        ));
}

#[test]
fn validate_table_snapshot() {
    let o = ckpt()
        .args(["validate", "--exp-dir", "fixtures/sidecars_bad"])
        .assert()
        .code(1);
    insta::assert_snapshot!(common::transcript(o.get_output()));
}

#[test]
fn dry_run_sidecar_snapshot() {
    let o = ckpt()
        .args([
            "convert-legacy",
            "--dry-run",
            "--exp-dir",
            "fixtures/outputs/hydra_only",
        ])
        .assert()
        .success();
    insta::with_settings!({filters => vec![
        (r"'\d{4}-\d\d-\d\dT[0-9:.]+'", "'[mtime]'"),
        (r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", "[time] "),
    ]}, {
        insta::assert_snapshot!(common::transcript(o.get_output()));
    });
}
