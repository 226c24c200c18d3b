//! Acceptance against the reference corpus (`../shared/corpus`, or `$CKPT_CORPUS`): ignored by
//! default because the corpus is not part of the repository; `.ci/run` runs it with
//! `--ignored` when the corpus is present.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{ckpt, copy_tree, dump_matches, json_files, root};

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
        } else if path.contains("/bad/") && (verdict == "error" || verdict == "no-pickle") {
            // damaged archives are errors; empty, random and text files hold no pickle
            verdict
        } else if name == "user_classes.pt"
            || name == "pickled_module.pt"
            || name == "architecture.pt"
        {
            "unknown"
        } else if [
            ".ckpt",
            ".pt",
            ".pth",
            ".bin",
            ".pkl",
            ".metadata",
            ".distcp",
        ]
        .iter()
        .any(|ext| name.ends_with(ext))
        {
            "safe"
        } else {
            // every file is listed now: logs, configs, JSON reports, safetensors hold none
            "no-pickle"
        };
        assert_eq!(verdict, expected, "{path}");
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} files scanned");
    // some bad files are unreadable, so the exit code is 2
    assert_eq!(out.status.code(), Some(2));
}

fn yaml_of(p: &std::path::Path) -> serde_json::Value {
    ckpt_meta::yaml::parse(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn convert_legacy_on_the_corpus_outputs() {
    let Some(c) = corpus() else {
        panic!("corpus not found (set CKPT_CORPUS)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let outs = tmp.path().join("outputs");
    copy_tree(&c.join("outputs"), &outs);
    let kept = outs.join("with_metadata/checkpoints/epoch=00-step=2-hmean=0.7172.metadata.yaml");
    let before = std::fs::read(&kept).unwrap();

    // --dry-run writes nothing
    ckpt()
        .args(["convert-legacy", "--dry-run", "--outputs-dir"])
        .arg(&outs)
        .assert()
        .success();
    assert!(
        !outs
            .join("my_experiment/checkpoints/best.metadata.yaml")
            .exists()
    );

    let out = ckpt()
        .args(["convert-legacy", "--outputs-dir"])
        .arg(&outs)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("Total checkpoints found: 13"), "{stdout}");
    assert!(stdout.contains("Converted: 12"), "{stdout}");
    assert!(stdout.contains("Skipped (existing): 1"), "{stdout}");
    assert!(stdout.contains("Failed: 0"), "{stdout}");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        before,
        "an existing sidecar was touched"
    );

    let best = yaml_of(&outs.join("my_experiment/checkpoints/best.metadata.yaml"));
    assert_eq!(best["schema_version"], "1.0");
    assert_eq!(
        best["checkpoint_path"],
        "my_experiment/checkpoints/best.ckpt"
    );
    assert_eq!(best["exp_name"], "my_experiment");
    assert_eq!(best["model"]["architecture"], "dbnet");
    assert_eq!(best["provenance"]["model.architecture"], "hydra");
    assert_eq!(best["training"]["epoch"], 2);
    assert_eq!(best["training"]["global_step"], 6);
    assert!((best["metrics"]["hmean"].as_f64().unwrap() - 0.7718).abs() < 1e-4);
    assert_eq!(best["provenance"]["metrics.hmean"], "cleval");
    assert_eq!(best["checkpointing"]["monitor"], "val/hmean");
    assert_eq!(best["checkpointing"]["mode"], "max");
    assert_eq!(best["checkpointing"]["save_top_k"], 2);
    assert_eq!(best["checkpointing"]["save_last"], true);
    for key in ckpt_meta::schema::TOP_LEVEL {
        assert!(best.get(*key).is_some(), "{key} missing");
    }

    let dc = yaml_of(&outs.join("dictconfig_hparams/checkpoints/last.metadata.yaml"));
    assert_eq!(dc["model"]["architecture"], "dbnet");
    assert_eq!(dc["provenance"]["model.architecture"], "hparams");

    // the partial JSON sidecar is a source; the YAML gets the rest from the checkpoint
    let sc = yaml_of(&outs.join("sidecars/checkpoints/epoch=10.metadata.yaml"));
    assert_eq!(sc["training"]["global_step"], 2750);
    assert_eq!(sc["metrics"]["validation_loss"], 0.123);

    // a second run converts nothing
    let out = ckpt()
        .args(["convert-legacy", "--outputs-dir"])
        .arg(&outs)
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("Converted: 0"));

    // every sidecar validates
    ckpt()
        .args(["validate", "--outputs-dir"])
        .arg(outs.join("my_experiment"))
        .assert()
        .success();

    // --force rewrites, keeping unknown keys
    let target = outs.join("my_experiment/checkpoints/last.metadata.yaml");
    let mut text = std::fs::read_to_string(&target).unwrap();
    text.push_str("\ncustom_notes: keep me\n");
    std::fs::write(&target, text).unwrap();
    let out = ckpt()
        .args(["convert-legacy", "--force", "--outputs-dir"])
        .arg(&outs)
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("Converted: 13"));
    assert_eq!(yaml_of(&target)["custom_notes"], "keep me");
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn validate_reports_the_bad_sidecars() {
    let Some(c) = corpus() else {
        panic!("corpus not found (set CKPT_CORPUS)");
    };
    let out = ckpt()
        .args(["validate", "--format", "json", "--outputs-dir"])
        .arg(c.join("bad/sidecars"))
        .assert()
        .code(1);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let by_name = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|x| x["checkpoint"].as_str().unwrap().ends_with(n))
            .unwrap()
            .clone()
    };
    let broken = by_name("broken_yaml.ckpt");
    assert_eq!(broken["status"], "invalid");
    assert_eq!(broken["problems"][0]["line"], 2);
    assert!(broken["problems"][0]["column"].is_u64());
    let wrong = by_name("wrong_types.ckpt");
    let paths: Vec<&str> = wrong["problems"]
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
    let future = by_name("future_schema.ckpt");
    assert!(
        future["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("newer")
    );
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn catalog_of_the_corpus() {
    let Some(c) = corpus() else {
        panic!("corpus not found (set CKPT_CORPUS)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for e in std::fs::read_dir(&c).unwrap().flatten() {
        if e.file_name() != "expected" && e.path().is_dir() {
            copy_tree(&e.path(), &data.join(e.file_name()));
        }
    }
    let o = ckpt()
        .args(["catalog", "--no-cache", "--format", "json"])
        .arg(&data)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    let entries = v["checkpoints"].as_array().unwrap();
    let get = |suffix: &str| {
        entries
            .iter()
            .find(|e| e["path"].as_str().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix} missing"))
    };
    // every checkpoint file appears (shards of a DCP dir are one entry)
    let mut files = 0;
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                    stack.push(p);
                }
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| ["ckpt", "pt", "pth", "bin", "safetensors"].contains(&x))
            {
                files += 1;
                let shown = entries
                    .iter()
                    .any(|e| e["path"].as_str().unwrap() == p.display().to_string());
                assert!(shown, "{} not in the catalog", p.display());
            }
        }
    }
    assert!(files >= 70, "{files}");
    // bad/ files carry an error
    for e in entries {
        let p = e["path"].as_str().unwrap();
        if p.contains("/bad/") && !p.contains("/bad/sidecars/") {
            assert!(e["error"].is_string(), "{p}: no error");
        }
    }
    // hierarchical folders: model and loss (underscore-rich names), epoch and val_f1 from the name
    let vit = get("2025-02-12_15-10-33_vit_base_patch32_224_focal/best-epoch11-val_f1-0.612.ckpt");
    assert_eq!(vit["model"]["architecture"], "vit_base_patch32_224");
    // A model part is an object in every entry: a bare name becomes `{"name": …}`.
    assert_eq!(vit["model"]["loss"], serde_json::json!({"name": "focal"}));
    assert_eq!(vit["epoch"], 11);
    // The checkpoint records epoch 11 too; it comes before the file name in the chain.
    assert!(["file_name", "checkpoint"].contains(&vit["sources"]["epoch"].as_str().unwrap()));
    assert!((vit["metrics"]["val_f1"].as_f64().unwrap() - 0.612).abs() < 1e-3);
    assert_eq!(
        vit["experiment"],
        "flares/multiclass/2025-02-12_15-10-33_vit_base_patch32_224_focal"
    );
    let eff = get("2025-02-12_16-45-22_efficientnet_b0_focal/best-epoch05-val_f1-0.861.ckpt");
    assert_eq!(eff["model"]["architecture"], "efficientnet_b0");
    let bce = get("2025-02-12_14-30-45_resnet18_weighted_bce/best-epoch02-val_f1-0.847.ckpt");
    assert_eq!(
        bce["model"]["loss"],
        serde_json::json!({"name": "weighted_bce"})
    );
    // Hydra gives my_experiment's architecture
    let best = get("outputs/my_experiment/checkpoints/best.ckpt");
    assert_eq!(best["model"]["architecture"], "dbnet");
    assert_eq!(best["sources"]["model.architecture"], "hydra");
    // two Lightning versions are two experiments
    let v0 = get("lightning_logs/version_0/checkpoints/epoch=1-step=8.ckpt");
    let v1 = get("lightning_logs/version_1/checkpoints/epoch=1-step=8.ckpt");
    assert_ne!(v0["experiment"], v1["experiment"]);
    // hash folders: step and the hash as experiment
    let h = get("a1b2c3d4e5f6/model/checkpoint_step_000100.pt");
    assert_eq!(h["global_step"], 100);
    assert_eq!(h["experiment"], "a1b2c3d4e5f6");
    // pytorch_model.bin: a gpt2 with its parameter count
    let bin = get("formats/pytorch_model.bin");
    assert_eq!(bin["model"]["family"], "gpt2");
    assert_eq!(bin["params"], 31616);
    // --best on my_experiment: exactly one
    let o = ckpt()
        .args(["catalog", "--no-cache", "--best", "--format", "json"])
        .arg(data.join("outputs/my_experiment"))
        .assert()
        .success();
    let b: serde_json::Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    assert_eq!(b["checkpoints"].as_array().unwrap().len(), 1);
}

fn hash_of(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let o = ckpt()
        .arg("hash")
        .args(args)
        .args(["--format", "json"])
        .assert()
        .success();
    serde_json::from_slice(&o.get_output().stdout).unwrap()
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn identity_on_weightslab() {
    let Some(c) = corpus() else {
        panic!("corpus not found (set CKPT_CORPUS)");
    };
    let w = c.join("weightslab/checkpoints");
    let step = |h: &str, s: u32| w.join(format!("{h}/model/checkpoint_step_{s:06}.pt"));
    let hs: Vec<serde_json::Value> = [0, 100, 200]
        .iter()
        .map(|s| hash_of(&[step("a1b2c3d4e5f6", *s).as_os_str()]))
        .collect();
    assert!(hs.iter().all(|h| h["hash"] == hs[0]["hash"]), "{hs:?}");
    // v1 removed the config's `model` key: the wider experiment differs in architecture only.
    let v1 = |h: &str| {
        hash_of(&[
            step(h, 100).as_os_str(),
            "--algorithm".as_ref(),
            "v1".as_ref(),
        ])
    };
    let (wide, narrow) = (v1("0f9e8d7c6b5a"), v1("a1b2c3d4e5f6"));
    for k in ["hyperparameters", "data"] {
        assert_eq!(wide["components"][k], narrow["components"][k], "{k}");
    }
    assert_ne!(
        wide["components"]["architecture"],
        narrow["components"]["architecture"]
    );
    // v2 hashes the full config, whose `model.hidden` says 16 vs 8: that differs too.
    let wide = hash_of(&[step("0f9e8d7c6b5a", 100).as_os_str()]);
    for (k, same) in [
        ("hyperparameters", false),
        ("data", true),
        ("architecture", false),
    ] {
        assert_eq!(wide["components"][k] == hs[0]["components"][k], same, "{k}");
    }
    // a re-ordered, re-spelled hparams file gives the same hash
    let tmp = tempfile::tempdir().unwrap();
    let hp_path = w.join("a1b2c3d4e5f6/hp/config.yaml");
    let hp = ckpt_meta::config::read_config(&hp_path).unwrap();
    fn respell(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Object(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .rev()
                    .map(|(k, x)| format!("{}: {}", serde_json::to_string(k).unwrap(), respell(x)))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
            serde_json::Value::Number(n) if n.is_f64() => format!("{:e}", n.as_f64().unwrap()),
            other => other.to_string(),
        }
    }
    let re = tmp.path().join("hp.json");
    std::fs::write(&re, respell(&hp)).unwrap();
    let base = hash_of(&[
        step("a1b2c3d4e5f6", 0).as_os_str(),
        "--hparams".as_ref(),
        hp_path.as_os_str(),
    ]);
    let other = hash_of(&[
        step("a1b2c3d4e5f6", 0).as_os_str(),
        "--hparams".as_ref(),
        re.as_os_str(),
    ]);
    assert_eq!(base["hash"], other["hash"]);
    // a changed learning_rate changes only the hyperparameters component
    let mut lr = hp.clone();
    let old = lr["learning_rate"].as_f64().unwrap();
    lr["learning_rate"] = serde_json::json!(old * 2.0);
    let lr_path = tmp.path().join("lr.json");
    std::fs::write(&lr_path, lr.to_string()).unwrap();
    let changed = hash_of(&[
        step("a1b2c3d4e5f6", 0).as_os_str(),
        "--hparams".as_ref(),
        lr_path.as_os_str(),
    ]);
    assert_ne!(
        changed["components"]["hyperparameters"],
        base["components"]["hyperparameters"]
    );
    assert_eq!(
        changed["components"]["architecture"],
        base["components"]["architecture"]
    );
    assert_eq!(changed["components"]["data"], base["components"]["data"]);
    // shuffled UIDs: same; one fewer: only data changes
    let uids_text = std::fs::read_to_string(w.join("a1b2c3d4e5f6/data/active_uids.txt")).unwrap();
    let mut uids: Vec<&str> = uids_text.lines().filter(|l| !l.trim().is_empty()).collect();
    uids.reverse();
    let shuffled = tmp.path().join("shuffled.txt");
    std::fs::write(&shuffled, uids.join("\n")).unwrap();
    let s = hash_of(&[
        step("a1b2c3d4e5f6", 0).as_os_str(),
        "--data-uids".as_ref(),
        shuffled.as_os_str(),
    ]);
    assert_eq!(s["hash"], hs[0]["hash"]);
    let fewer = tmp.path().join("fewer.txt");
    std::fs::write(&fewer, uids[1..].join("\n")).unwrap();
    let f = hash_of(&[
        step("a1b2c3d4e5f6", 0).as_os_str(),
        "--data-uids".as_ref(),
        fewer.as_os_str(),
    ]);
    assert_ne!(f["components"]["data"], hs[0]["components"]["data"]);
    assert_eq!(
        f["components"]["architecture"],
        hs[0]["components"]["architecture"]
    );
    assert_eq!(
        f["components"]["hyperparameters"],
        hs[0]["components"]["hyperparameters"]
    );
    // diff of the two experiments names fc1.weight with both shapes
    let o = ckpt()
        .arg("diff")
        .arg(step("a1b2c3d4e5f6", 100))
        .arg(step("0f9e8d7c6b5a", 100))
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&o.get_output().stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("fc1.weight"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("[8,") || line.contains("[16,"), "{line}");
    assert!(line.contains("->"), "{line}");
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn prune_on_dbnet_hparams() {
    let Some(c) = corpus() else {
        panic!("corpus not found (set CKPT_CORPUS)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dbnet_hparams");
    copy_tree(&c.join("outputs/dbnet_hparams"), &dir);
    ckpt()
        .args(["convert-legacy", "--exp-dir"])
        .arg(&dir)
        .assert()
        .success();
    let ck = dir.join("checkpoints");
    let run = |yes: bool| common::prune_top1_hmean(&dir, yes);
    let plan = run(false);
    let del: Vec<String> = plan["plan"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "delete")
        .map(|d| d["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(del.len(), 1, "{plan}");
    assert!(del[0].ends_with("epoch=01-step=4-hmean=0.7445.ckpt"));
    assert_eq!(
        std::fs::read_dir(&ck).unwrap().count(),
        6,
        "dry run deleted something"
    );
    run(true);
    let left: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(&ck)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        left,
        vec![
            "epoch=02-step=6-hmean=0.7718.ckpt",
            "epoch=02-step=6-hmean=0.7718.metadata.yaml",
            "last.ckpt",
            "last.metadata.yaml"
        ]
    );
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn experiments_of_the_corpus() {
    let Some(c) = corpus() else {
        panic!("corpus not found (set CKPT_CORPUS)");
    };
    let o = ckpt()
        .args(["experiments", "--no-cache", "--format", "json"])
        .arg(&c)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["experiment"].as_str().unwrap())
        .collect();
    for want in [
        "dbnet_hparams",
        "my_experiment",
        "dictconfig_hparams",
        "with_metadata",
        "sidecars",
        "lightning/lightning_logs/version_0",
        "lightning/lightning_logs/version_1",
        "vuo698ek",
        "mlruns/900452956248061339/c0613e4e394345c28ac7771aa8b1a878",
        "loggers/tb_logs/clf/version_0",
        "cutouts/mcintosh/2025-03-01_09-00-00_resnet18_cross_entropy",
        "flares/binary_classification/2025-02-12_14-30-45_resnet18_weighted_bce",
        "flares/binary_classification/2025-02-12_16-45-22_efficientnet_b0_focal",
        "flares/multiclass/2025-02-12_15-10-33_vit_base_patch32_224_focal",
        "0f9e8d7c6b5a",
        "a1b2c3d4e5f6",
        "fsdp/output",
        "fsdp/sharded",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn convert_the_fsdp_outputs() {
    let Some(c) = corpus() else {
        panic!("corpus not found (set CKPT_CORPUS)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("fsdp");
    copy_tree(&c.join("fsdp"), &d);
    let o = ckpt()
        .args(["convert", "--format", "json", "--config"])
        .arg(d.join("convert.yaml"))
        .assert()
        .code(1);
    let v: serde_json::Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    assert_eq!(v["failed"], 1, "{v}");
    let failed: Vec<&serde_json::Value> = v["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["status"] == "failed")
        .collect();
    assert!(
        failed[0]["input"]
            .as_str()
            .unwrap()
            .ends_with("flat-param-epoch-005.pth")
    );
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("flattened FSDP parameters")
    );
    let tensors = |p: &std::path::Path| {
        let o = ckpt()
            .args(["dump", "--compact", "--tensor-hashes"])
            .arg(p)
            .assert()
            .success();
        serde_json::from_slice::<serde_json::Value>(&o.get_output().stdout).unwrap()
    };
    let want = tensors(&d.join("expected/epoch-001-final-ckpt/model.safetensors"));
    for name in [
        "epoch-001-final-ckpt",
        "epoch-002-final-ckpt",
        "ddp-epoch-003",
        "compiled-epoch-004",
    ] {
        let dir = d.join("converted").join(name);
        let got = tensors(&dir.join("model.safetensors"));
        let (g, w) = (got.as_object().unwrap(), want.as_object().unwrap());
        let mut gk: Vec<&String> = g.keys().collect();
        let mut wk: Vec<&String> = w.keys().collect();
        gk.sort();
        wk.sort();
        assert_eq!(gk, wk, "{name}");
        for k in wk {
            assert_eq!(g[k], w[k], "{name}: {k}");
        }
        assert!(dir.join("config.json").is_file() && dir.join("tokenizer.json").is_file());
    }
    assert!(!d.join("converted/flat-param-epoch-005").exists());
    // the DCP directory converts to the same tensors
    ckpt()
        .arg("convert")
        .arg(d.join("sharded/step_100"))
        .arg("--base-model")
        .arg(d.join("base_model"))
        .arg("--output-dir")
        .arg(d.join("dcp_out"))
        .assert()
        .success();
    // (One checkpoint converts into a folder named after it under --output-dir.)
    let got = tensors(&d.join("dcp_out/step_100/model.safetensors"));
    assert_eq!(got, want, "DCP");
    // a second run refuses to overwrite
    ckpt()
        .arg("convert")
        .arg("--config")
        .arg(d.join("convert.yaml"))
        .assert()
        .code(1)
        .stdout(predicates::str::contains("already exists"))
        .stderr("");
}
