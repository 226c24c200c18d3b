//! One truth per checkpoint (issue 11): `convert-legacy` and `catalog` call the same readers
//! and the same engine, so writing sidecars never changes what the catalog says, and every
//! field of a written sidecar is the catalog's. Through the real binary, on every tree the
//! repository ships (and the shared corpus, with the corpus tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{ckpt, copy_tree, root};
use serde_json::{Value, json};

fn catalog(dir: &Path) -> BTreeMap<String, Value> {
    let o = ckpt()
        .current_dir(dir)
        .args(["catalog", "--no-cache", "--format", "json", "."])
        .output()
        .unwrap();
    assert!(
        o.status.code().is_some_and(|c| c <= 1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["path"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

/// An entry without its sources: `sources` goes, and each conflict keeps its field, the
/// chosen value and the set of other values (which sources said them is provenance).
fn without_sources(e: &Value) -> Value {
    let mut e = e.clone();
    if let Some(m) = e.as_object_mut() {
        m.remove("sources");
        if let Some(cs) = m.get_mut("conflicts").and_then(Value::as_array_mut) {
            for c in cs {
                let values = c["values"].as_array().cloned().unwrap_or_default();
                let chosen = values
                    .iter()
                    .find(|v| v["chosen"] == true)
                    .map(|v| v["value"].clone());
                let mut others: Vec<String> = values
                    .iter()
                    .filter(|v| v["chosen"] != true && Some(&v["value"]) != chosen.as_ref())
                    .map(|v| v["value"].to_string())
                    .collect();
                others.sort();
                others.dedup();
                *c = json!({"field": c["field"], "chosen": chosen, "others": others});
            }
        }
    }
    e
}

/// Every field of a written sidecar that is not a placeholder, compared with the entry.
fn sidecar_agrees(sc: &Value, e: &Value, name: &str) -> Vec<String> {
    let prov = |p: &str| sc["provenance"][p].as_str().unwrap_or("");
    let mut bad = Vec::new();
    let mut check = |what: &str, got: &Value, want: &Value| {
        if got != want {
            bad.push(format!("{name}: {what}: sidecar {got}, catalog {want}"));
        }
    };
    check("exp_name", &sc["exp_name"], &e["experiment"]);
    for (s, k) in [
        ("training.epoch", "epoch"),
        ("training.global_step", "global_step"),
        ("checkpointing.monitor", "monitor"),
        ("checkpointing.mode", "mode"),
        ("checkpointing.save_top_k", "save_top_k"),
        ("checkpointing.save_last", "save_last"),
    ] {
        if prov(s) == "default" {
            continue;
        }
        let (sec, key) = s.split_once('.').unwrap();
        check(s, &sc[sec][key], &e[k]);
    }
    if prov("model.architecture") != "default" {
        check(
            "model.architecture",
            &sc["model"]["architecture"],
            &e["model"]["architecture"],
        );
    }
    for part in ["encoder", "decoder", "head", "loss"] {
        let path = format!("model.{part}");
        if prov(&path) == "default" {
            assert!(e["model"].get(part).is_none(), "{name}: {path}");
            continue;
        }
        let mut obj = sc["model"][part].as_object().cloned().unwrap();
        obj.retain(|k, _| prov(&format!("{path}.{k}")) != "default");
        check(&path, &Value::Object(obj), &e["model"][part]);
    }
    check(
        "metrics.additional_metrics",
        &sc["metrics"]["additional_metrics"],
        &e["metrics"],
    );
    check("state.parameters", &sc["state"]["parameters"], &e["params"]);
    check("state.format", &sc["state"]["format"], &e["format"]);
    bad
}

/// Catalog a copy of `tree`, write every sidecar, catalog again: every field the same
/// (sources aside), and every sidecar field the catalog's.
fn one_truth(tree: &Path) -> usize {
    let t = tempfile::tempdir().unwrap();
    let dir: PathBuf = t.path().join("tree");
    copy_tree(tree, &dir);
    let before = catalog(&dir);
    assert!(!before.is_empty(), "{}: no checkpoints", tree.display());
    ckpt()
        .current_dir(&dir)
        .args(["convert-legacy", "--outputs-dir", "."])
        .output()
        .unwrap();
    let after = catalog(&dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{}",
        tree.display()
    );
    let mut bad = Vec::new();
    let mut sidecars = 0;
    for (path, a) in &before {
        let b = &after[path];
        if let Some(d) = common::diff(&without_sources(a), &without_sources(b), path) {
            bad.push(format!("{}: {d}", tree.display()));
        }
        let sc = dir.join(path.trim_start_matches("./"));
        let sc = ckpt_meta::sidecar::yaml_path(&sc);
        if b["error"].is_null()
            && sc.is_file()
            && let Ok(v) = ckpt_meta::sidecar::Sidecar::read(&sc)
            && v.value["generator"]["tool"]
                .as_str()
                .is_some_and(|t| t.starts_with("ckpt "))
        {
            sidecars += 1;
            bad.extend(sidecar_agrees(&v.value, b, path));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    sidecars
}

#[test]
fn writing_sidecars_never_changes_what_the_catalog_says() {
    let mut written = 0;
    for tree in [
        "fixtures/outputs",
        "examples",
        "fixtures/identity",
        "fixtures/namespace",
        "fixtures/formats",
    ] {
        written += one_truth(&root().join(tree));
    }
    assert!(written >= 20, "only {written} sidecars compared");
}

/// The shared corpus, when it is beside the repository (run with the corpus tests).
#[test]
#[ignore = "corpus: needs ../shared/corpus"]
fn writing_sidecars_never_changes_what_the_catalog_says_on_the_corpus() {
    let corpus = std::env::var_os("CKPT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/corpus/data"));
    assert!(corpus.is_dir(), "{} (set CKPT_CORPUS)", corpus.display());
    assert!(one_truth(&corpus) > 0);
}

/// A Hydra config and the checkpoint's hparams that disagree: the file wins, the
/// disagreement is listed with every source's value, marked in the table, and explained.
#[test]
fn conflicts_are_visible() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("outputs");
    copy_tree(
        &root().join("fixtures/outputs/dictconfig"),
        &dir.join("run"),
    );
    // The run's Hydra config says another encoder than the one the file's hparams record.
    let cfg = dir.join("run/.hydra/config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("model_name: mobilenetv3_small_050"));
    let text = text.replace("model_name: mobilenetv3_small_050", "model_name: resnet50");
    std::fs::write(&cfg, text).unwrap();
    let o = ckpt()
        .args(["catalog", "--no-cache", "--format", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &v["checkpoints"][0];
    let c = e["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "model.encoder.model_name")
        .unwrap_or_else(|| panic!("{e}"));
    let values = c["values"].as_array().unwrap();
    assert_eq!(values[0]["chosen"], json!(true));
    assert_ne!(values[0]["value"], json!("resnet50"));
    assert!(
        values
            .iter()
            .any(|x| x["source"] == "hydra" && x["value"] == "resnet50" && x["chosen"] == false),
        "{c}"
    );
    // Sources that agree are not a conflict.
    assert!(
        !e["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "model.encoder.pretrained"),
        "{e}"
    );
    let table = ckpt()
        .args(["catalog", "--no-cache"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("conflicts:"));
    let path = e["path"].as_str().unwrap();
    let ex = ckpt()
        .args(["catalog", "--no-cache", "--explain", path])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ex.stdout);
    assert!(
        text.contains("model.encoder.model_name:") && text.contains("resnet50 (hydra)"),
        "{text}"
    );
}

/// Two Hydra multirun jobs with the same `exp_name` are two runs: `--best` answers once per
/// run, or once for the experiment when asked.
#[test]
fn two_multirun_jobs_are_two_runs() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("multirun");
    for job in ["0", "1"] {
        copy_tree(
            &root().join("fixtures/outputs/hydra_only"),
            &dir.join(format!("2026-11-30/10-00-00/{job}")),
        );
    }
    let o = ckpt()
        .args(["catalog", "--no-cache", "--format", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let runs: std::collections::BTreeSet<&str> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["run"].as_str().unwrap())
        .collect();
    let exps: std::collections::BTreeSet<&str> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["experiment"].as_str().unwrap())
        .collect();
    assert_eq!(exps.len(), 1, "{exps:?}");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r.contains("10-00-00/")), "{runs:?}");
    let best = |group: &str| {
        let o = ckpt()
            .args(["catalog", "--no-cache", "--format", "jsonl", "--best"])
            .args(["--group-by", group])
            .arg(&dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    assert_eq!(best("run"), 2);
    assert_eq!(best("experiment"), 1);
}
