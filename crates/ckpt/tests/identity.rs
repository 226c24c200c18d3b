//! `hash`, `diff`, `experiments`, `latest`, `prune` on the repository's own fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{ckpt, copy_tree, root};
use serde_json::Value;

fn hash_json(args: &[&str]) -> Value {
    let o = ckpt()
        .arg("hash")
        .args(args)
        .args(["--format", "json"])
        .assert()
        .success();
    serde_json::from_slice(&o.get_output().stdout).unwrap()
}

fn experiment_dirs() -> Vec<String> {
    let base = root().join("fixtures/identity/checkpoints");
    let mut v: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    v.sort();
    v
}

fn steps(exp: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(Path::new(exp).join("model"))
        .unwrap()
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.contains("checkpoint_step_"))
        .collect();
    v.sort();
    v
}

#[test]
fn hash_contract_and_identity_rules() {
    let exps = experiment_dirs();
    assert_eq!(exps.len(), 2);
    let s = steps(&exps[0]);
    assert!(s.len() >= 3);
    let h: Vec<Value> = s.iter().map(|p| hash_json(&[p])).collect();
    // the JSON contract
    assert!(h[0]["hash"].as_str().unwrap().starts_with("v2:"));
    for k in ["architecture", "hyperparameters", "data"] {
        assert!(h[0]["components"].get(k).is_some(), "{k}");
    }
    // steps of one run share the hash
    assert!(h.iter().all(|x| x["hash"] == h[0]["hash"]), "{h:?}");
    // the other experiment differs in architecture only
    let other = hash_json(&[&steps(&exps[1])[0]]);
    let (a, b) = (&h[0]["components"], &other["components"]);
    let differs: Vec<&str> = ["architecture", "hyperparameters", "data"]
        .into_iter()
        .filter(|k| a[*k] != b[*k])
        .collect();
    assert_eq!(differs, vec!["architecture"], "{a} vs {b}");
    // re-ordered, re-spelled hparams: same; a changed learning rate: only hyperparameters
    let id = root().join("fixtures/identity");
    let with_hp = |f: &str| hash_json(&[&s[0], "--hparams", &id.join(f).display().to_string()]);
    let reordered = with_hp("hparams_reordered.yaml");
    let base_hp = hash_json(&[
        &s[0],
        "--hparams",
        &Path::new(&exps[0])
            .join("hp/config.yaml")
            .display()
            .to_string(),
    ]);
    assert_eq!(reordered["hash"], base_hp["hash"]);
    let lr = with_hp("hparams_changed_lr.yaml");
    assert_ne!(
        lr["components"]["hyperparameters"],
        base_hp["components"]["hyperparameters"]
    );
    assert_eq!(
        lr["components"]["architecture"],
        base_hp["components"]["architecture"]
    );
    assert_eq!(lr["components"]["data"], base_hp["components"]["data"]);
    // shuffled UIDs: same; one fewer: only data
    let with_uids = |f: &str| hash_json(&[&s[0], "--data-uids", &id.join(f).display().to_string()]);
    let shuffled = with_uids("uids_shuffled.txt");
    assert_eq!(shuffled["hash"], h[0]["hash"]);
    let fewer = with_uids("uids_one_fewer.txt");
    assert_ne!(fewer["components"]["data"], h[0]["components"]["data"]);
    assert_eq!(
        fewer["components"]["architecture"],
        h[0]["components"]["architecture"]
    );
    assert_eq!(
        fewer["components"]["hyperparameters"],
        h[0]["components"]["hyperparameters"]
    );
    // --ignore drops a volatile key
    let ignored = hash_json(&[&s[0], "--ignore", "output_dir"]);
    assert_ne!(
        ignored["components"]["hyperparameters"],
        h[0]["components"]["hyperparameters"]
    );
}

#[test]
fn diff_names_reshaped_tensors_and_exits_1() {
    let exps = experiment_dirs();
    let (a, b) = (&steps(&exps[0])[0], &steps(&exps[1])[0]);
    let o = ckpt()
        .args(["diff", a, b, "--format", "json"])
        .assert()
        .code(1);
    let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    assert_eq!(v["identical"], false);
    let reshaped = v["diff"]["architecture"]["reshaped"].as_array().unwrap();
    assert!(!reshaped.is_empty(), "{v}");
    // identical identity: exit 0
    let s = steps(&exps[0]);
    ckpt().args(["diff", &s[0], &s[1]]).assert().success();
}

#[test]
fn experiments_and_latest() {
    let o = ckpt()
        .args(["experiments", "--no-cache", "--format", "json", "examples"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["experiment"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["fsdp", "lightning", "lightning_dictconfig"]);
    let l = &v[1];
    assert_eq!(l["checkpoints"], 3);
    assert_eq!(l["latest_step"], 6);
    assert!(
        l["best_path"]
            .as_str()
            .unwrap()
            .ends_with("epoch=02-step=6-hmean=0.7718.ckpt")
    );
    assert!(l["hash"].as_str().unwrap().starts_with("v2:"));
    let o = ckpt()
        .args(["latest", "--no-cache", "examples/lightning", "--step", "4"])
        .assert()
        .success();
    assert!(
        String::from_utf8_lossy(&o.get_output().stdout)
            .trim()
            .ends_with("epoch=01-step=4-hmean=0.7445.ckpt")
    );
    ckpt()
        .args(["latest", "--no-cache", "examples/lightning", "--step", "99"])
        .assert()
        .code(2);
}

#[test]
fn prune_plans_then_deletes_only_what_it_said() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lightning");
    copy_tree(&root().join("examples/lightning"), &dir);
    let ck = dir.join("checkpoints");
    // sidecars go with their checkpoint
    ckpt()
        .args(["convert-legacy", "--exp-dir"])
        .arg(&dir)
        .assert()
        .success();
    let prune = |yes: bool| common::prune_top1_hmean(&dir, yes);
    let plan = prune(false);
    let del: Vec<&str> = plan["plan"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "delete")
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(del.len(), 1, "{plan}");
    assert!(del[0].ends_with("epoch=01-step=4-hmean=0.7445.ckpt"));
    assert!(
        ck.join("epoch=01-step=4-hmean=0.7445.ckpt").exists(),
        "dry run deleted"
    );
    let done = prune(true);
    assert_eq!(
        done["executed"]["deleted"].as_array().unwrap().len(),
        2,
        "{done}"
    );
    assert!(!ck.join("epoch=01-step=4-hmean=0.7445.ckpt").exists());
    assert!(
        !ck.join("epoch=01-step=4-hmean=0.7445.metadata.yaml")
            .exists()
    );
    assert!(ck.join("epoch=02-step=6-hmean=0.7718.ckpt").exists());
    assert!(ck.join("last.ckpt").exists());
    assert!(ck.join("last.metadata.yaml").exists());
    // converges: nothing more to delete
    let again = prune(true);
    assert_eq!(again["plan"]["delete_count"], 0);
}

#[test]
fn a_pickled_module_has_an_architecture() {
    // `torch.save(model)`: the module's state dict (10 tensors) identifies the architecture,
    // the same as its own state_dict saved as safetensors would.
    let fx = common::root().join("fixtures/convert");
    let hash = |p: &std::path::Path| {
        let o = common::ckpt()
            .args(["hash", "--format", "json"])
            .arg(p)
            .assert()
            .success();
        let v: serde_json::Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
        v
    };
    let module = hash(&fx.join("pickled_module.pt"));
    let flat = hash(&fx.join("pickled_module.state_dict.safetensors"));
    let arch = module["components"]["architecture"].as_str().unwrap();
    assert_eq!(arch.len(), 64, "{module}");
    assert_eq!(
        module["components"]["architecture"],
        flat["components"]["architecture"]
    );
}

/// `diff` reports each run's metrics, epoch and step as the catalog gives them (built once
/// per side before the identity inputs are gathered, so both are never live at once), in
/// the table and in the JSON.
#[test]
fn diff_reports_the_runs_metrics_epoch_and_step() {
    let dir = root().join("examples/lightning/checkpoints");
    let a = dir.join("epoch=01-step=4-hmean=0.7445.ckpt");
    let b = dir.join("epoch=02-step=6-hmean=0.7718.ckpt");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let o = ckpt()
        .args(["diff", "--format", "json", a, b])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    let d = &v["diff"];
    assert_eq!(d["epoch"], serde_json::json!([1, 2]));
    assert_eq!(d["global_step"], serde_json::json!([4, 6]));
    let metrics: Vec<(&str, f64, f64)> = d["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap(),
                m["old"].as_f64().unwrap(),
                m["new"].as_f64().unwrap(),
            )
        })
        .collect();
    let paths: Vec<&str> = metrics.iter().map(|m| m.0).collect();
    assert_eq!(paths, ["hmean", "precision", "recall", "val/hmean"]);
    assert!((metrics[0].1 - 0.7445).abs() < 1e-4 && (metrics[0].2 - 0.7718).abs() < 1e-4);
    let o = ckpt().args(["diff", a, b]).assert().success();
    let table = String::from_utf8(o.get_output().stdout.clone()).unwrap();
    assert!(
        table.contains("\n~ epoch: 1 -> 2\n~ global_step: 4 -> 6\n"),
        "{table}"
    );
    assert!(table.contains("\n~ metric val/hmean: 0.7445182800292969 -> 0.771794855594635\n"));

    // The same file twice (catalogued once): identical, nothing changed.
    let o = ckpt()
        .args(["diff", "--format", "json", a, a])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    assert_eq!(v["identical"], true);
    assert_eq!(v["diff"]["metrics"], serde_json::json!([]));
    assert_eq!(v["diff"]["epoch"], Value::Null);
    assert_eq!(v["diff"]["global_step"], Value::Null);
}
