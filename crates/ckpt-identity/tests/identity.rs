//! The identity algorithms on the repository's fixtures (`fixtures/identity`, made by
//! `scripts/make_identity_fixtures.py`): `v1` pinned (golden values, the Python reference),
//! `v2`'s new configuration sources, and the folder-name check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ckpt_identity::canonical::canonical_hparams;
use ckpt_identity::{
    Algorithm, Components, ConfigSource, DataSource, HashOptions, Identity, IdentityError,
    IdentityInputs, gather, identity,
};
use ckpt_meta::hash_folder::read_uids;
use ckpt_torch::sha256_hex;
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/identity")
}

const EXP1: &str = "checkpoints/3c5e7a9b1d2f";
const EXP2: &str = "checkpoints/8e6c4a2f0b1d";

fn id_with(path: &str, opts: &HashOptions) -> Identity {
    identity(&gather(&fixtures().join(path), opts).unwrap())
}

/// The pinned algorithm: these tests are `v1`'s and must keep passing unchanged.
fn v1() -> HashOptions {
    HashOptions {
        algorithm: Algorithm::V1,
        ..HashOptions::default()
    }
}

fn id(path: &str) -> Identity {
    id_with(path, &v1())
}

fn model1() -> String {
    format!("{EXP1}/model")
}

fn with_hparams(f: &str) -> HashOptions {
    HashOptions {
        hparams_file: Some(fixtures().join(f)),
        ..v1()
    }
}

fn with_uids(f: &str) -> HashOptions {
    HashOptions {
        data_uids: Some(fixtures().join(f)),
        ..v1()
    }
}

#[test]
fn identity_steps_of_one_run_share_a_hash() {
    let a = id(&format!("{EXP1}/model/checkpoint_step_000000.pt"));
    let b = id(&format!("{EXP1}/model/checkpoint_step_000100.pt"));
    let c = id(&format!("{EXP1}/model/checkpoint_step_000200.pt"));
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert!(a.components.architecture.is_some());
    assert!(a.components.hyperparameters.is_some());
    assert!(a.components.data.is_some());
    // A folder resolves to its newest step.
    assert_eq!(id(EXP1), a);
    assert_eq!(id(&model1()), a);
    let inputs = gather(&fixtures().join(EXP1), &v1()).unwrap();
    assert!(
        inputs
            .checkpoint
            .unwrap()
            .ends_with("model/checkpoint_step_000200.pt")
    );
    assert_eq!(inputs.hparams_source, Some(ConfigSource::HashFolderHp));
    assert_eq!(inputs.uids_source, Some(DataSource::HashFolderData));
}

#[test]
fn identity_wider_layer_changes_architecture_only() {
    let a = id(EXP1);
    let b = id(EXP2);
    assert_ne!(a.hash, b.hash);
    assert_ne!(a.components.architecture, b.components.architecture);
    assert_eq!(a.components.hyperparameters, b.components.hyperparameters);
    assert_eq!(a.components.data, b.components.data);
    let ta = gather(&fixtures().join(EXP1), &v1()).unwrap().tensors;
    let tb = gather(&fixtures().join(EXP2), &v1()).unwrap().tensors;
    assert_eq!(ta.get("fc1.weight"), Some(("float32", &[8u64, 10][..])));
    assert_eq!(tb.get("fc1.weight"), Some(("float32", &[16u64, 10][..])));
    assert_eq!(
        ta.names().collect::<Vec<_>>(),
        tb.names().collect::<Vec<_>>()
    );
}

#[test]
fn identity_reordered_respelled_hparams_give_the_same_hash() {
    let base = id(&model1());
    assert_eq!(
        id_with(&model1(), &with_hparams("hparams_reordered.yaml")),
        base
    );
    assert_eq!(id_with(&model1(), &with_hparams("hparams.json")), base);
    let inputs = gather(
        &fixtures().join(model1()),
        &with_hparams("hparams_reordered.yaml"),
    )
    .unwrap();
    assert_eq!(inputs.hparams_source, Some(ConfigSource::HparamsFile));
}

#[test]
fn identity_changed_learning_rate_changes_hyperparameters_only() {
    let a = id(&model1());
    let b = id_with(&model1(), &with_hparams("hparams_changed_lr.yaml"));
    assert_ne!(a.hash, b.hash);
    assert_eq!(a.components.architecture, b.components.architecture);
    assert_ne!(a.components.hyperparameters, b.components.hyperparameters);
    assert_eq!(a.components.data, b.components.data);
}

#[test]
fn identity_uid_order_duplicates_and_format_do_not_matter() {
    let base = id(&model1());
    for f in ["uids_shuffled.txt", "uids.json", "uids.csv"] {
        assert_eq!(id_with(&model1(), &with_uids(f)), base, "{f}");
    }
    let fewer = id_with(&model1(), &with_uids("uids_one_fewer.txt"));
    assert_ne!(fewer.hash, base.hash);
    assert_eq!(fewer.components.architecture, base.components.architecture);
    assert_eq!(
        fewer.components.hyperparameters,
        base.components.hyperparameters
    );
    assert_ne!(fewer.components.data, base.components.data);
    let u = read_uids(&fixtures().join("uids_one_fewer.txt"), None).unwrap();
    let all = read_uids(&fixtures().join("uids_shuffled.txt"), None).unwrap();
    assert_eq!(u.len() + 1, all.len());
    assert!(all.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn identity_ignore_removes_a_key() {
    let base = gather(&fixtures().join(model1()), &v1()).unwrap();
    let opts = HashOptions {
        ignore: vec!["output_dir".into(), "optimizer.nesterov".into()],
        ..v1()
    };
    let ign = gather(&fixtures().join(model1()), &opts).unwrap();
    let hp = ign.hparams.as_ref().unwrap();
    assert!(hp.get("output_dir").is_none());
    assert!(hp["optimizer"].get("nesterov").is_none());
    assert_eq!(hp["optimizer"]["momentum"], json!(0.9));
    let (a, b) = (identity(&base), identity(&ign));
    assert_ne!(a.components.hyperparameters, b.components.hyperparameters);
    assert_eq!(a.components.architecture, b.components.architecture);
    // Ignoring a volatile key makes runs that differ only in it agree.
    let mut v = base.hparams.clone().unwrap();
    v["output_dir"] = json!("/elsewhere");
    assert_eq!(canonical_hparams(&v, &opts.ignore, Algorithm::V1), *hp);
}

#[test]
fn identity_wrapper_prefixes_and_checkpoint_hparams() {
    let inputs = gather(&fixtures().join("wrapped/ddp_step_000300.pt"), &v1()).unwrap();
    assert_eq!(inputs.hparams_source, Some(ConfigSource::HyperParameters));
    assert!(inputs.tensors.contains("fc1.weight"));
    let w = identity(&inputs);
    let a = id(EXP1);
    assert_eq!(w.components.architecture, a.components.architecture);
    assert_eq!(w.components.hyperparameters, a.components.hyperparameters);
    assert_eq!(w.components.data, None);
}

#[test]
fn identity_hydra_config_is_a_source() {
    let p = fixtures().join("hydra_run/checkpoints/last.pt");
    let inputs = gather(&p, &v1()).unwrap();
    assert_eq!(inputs.hparams_source, Some(ConfigSource::Hydra));
    let hp = inputs.hparams.unwrap();
    // `${optimizer.lr}` resolved, with its type.
    assert_eq!(hp["optimizer"]["scheduled_lr"], json!(0.001));
    assert_eq!(inputs.uids, None);
    // The same config inside the checkpoint, references unresolved, hashes the same.
    let q = fixtures().join("hydra_run/checkpoints/with_hparams.pt");
    let inside = gather(&q, &v1()).unwrap();
    assert_eq!(inside.hparams_source, Some(ConfigSource::HyperParameters));
    assert_eq!(inside.hparams.as_ref(), Some(&hp));
}

#[test]
fn identity_errors_carry_paths() {
    let dir = tempfile::tempdir().unwrap();
    let e = gather(dir.path(), &v1()).unwrap_err();
    assert!(matches!(e, IdentityError::NoCheckpoint { .. }));
    let junk = dir.path().join("junk.pt");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let e = gather(&junk, &v1()).unwrap_err();
    assert!(matches!(e, IdentityError::Checkpoint { .. }));
    assert!(e.to_string().contains("junk.pt"));
    let e = gather(&fixtures().join(EXP1), &with_hparams("no_such.yaml")).unwrap_err();
    assert!(matches!(e, IdentityError::Hparams { .. }));
    let e = gather(&dir.path().join("nope.pt"), &v1()).unwrap_err();
    assert!(matches!(e, IdentityError::NotFound { .. }));
}

#[test]
fn identity_without_sources_uses_dashes() {
    let i = identity(&IdentityInputs {
        algorithm: Algorithm::V1,
        ..IdentityInputs::default()
    });
    assert_eq!(
        i.components,
        Components {
            architecture: None,
            hyperparameters: None,
            data: None
        }
    );
    let want = sha256_hex(b"v1\n-\n-\n-\n");
    assert_eq!(i.hash, format!("v1:{}", &want[..16]));
}

/// Every case of `expected.json`, computed by the fixture generator's own (Python)
/// implementation of the algorithm.
#[test]
fn identity_agrees_with_the_python_reference() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["algorithm"], json!(Algorithm::V1.name()));
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let args = &c["args"];
        let file = |k: &str| args[k].as_str().map(|f| fixtures().join(f));
        let opts = HashOptions {
            algorithm: Algorithm::V1,
            hparams_file: file("hparams"),
            data_uids: file("data_uids"),
            uid_column: args["uid_column"].as_str().map(str::to_owned),
            ignore: args["ignore"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        };
        let got = id_with(c["path"].as_str().unwrap(), &opts);
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            c["identity"],
            "case {}",
            c["name"]
        );
    }
}

/// Pinned: if this fails, the algorithm changed. Add a version instead of editing
/// these values.
#[test]
fn identity_golden() {
    const HP: &str = "6722225fc253017aa8dd704803f09062821192899c0c883e8d57e679cdfc2dd9";
    const DATA: &str = "bcc2107ec8be52f7d276b264a6270a9c6a15a7e46dc2ac03aeecaac6fa934ef1";
    let a = id(EXP1);
    assert_eq!(
        a,
        Identity {
            hash: "v1:d2c97065e066bb16".into(),
            components: Components {
                architecture: Some(
                    "7f63d08eccc1d53e5f37a249986dac9742388e9aa304b56400047d4c0f9502c0".into()
                ),
                hyperparameters: Some(HP.into()),
                data: Some(DATA.into()),
            },
        }
    );
    let b = id(EXP2);
    assert_eq!(
        b,
        Identity {
            hash: "v1:5ff63ed31c96cc8a".into(),
            components: Components {
                architecture: Some(
                    "f633e501a6c87256b6b2ef22203de2668298c4b3c2f08a7a95e91113bdb00207".into()
                ),
                hyperparameters: Some(HP.into()),
                data: Some(DATA.into()),
            },
        }
    );
}

// ---------------------------------------------------------------------------------------
// v2: the run's configuration

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

fn write(to: &Path, text: &str) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::write(to, text).unwrap();
}

fn v2() -> HashOptions {
    HashOptions::default()
}

const HYDRA: &str = "experiment_name: identity_demo\nseed: 7\ntrainer:\n  max_epochs: MAX\n  accelerator: cpu\noptimizer:\n  lr: 0.001\n  scheduled_lr: ${optimizer.lr}\n";

/// Two Hydra multirun jobs whose configs differ only in `trainer.max_epochs`, each holding a
/// checkpoint with the same `hyper_parameters` (the DDP fixture's).
fn two_multirun_jobs(root: &Path) -> (PathBuf, PathBuf) {
    let ck = fixtures().join("wrapped/ddp_step_000300.pt");
    let mut out = Vec::new();
    for (job, max) in [("0", "3"), ("1", "1")] {
        let d = root.join(format!("multirun/2026-11-30/10-00-00/{job}"));
        write(&d.join(".hydra/config.yaml"), &HYDRA.replace("MAX", max));
        let p = d.join("checkpoints/last.ckpt");
        copy(&ck, &p);
        out.push(p);
    }
    (out[0].clone(), out[1].clone())
}

#[test]
fn v2_two_hydra_runs_differing_in_max_epochs_get_different_hashes_v1_the_same() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = two_multirun_jobs(t.path());
    let (ia, ib) = (gather(&a, &v2()).unwrap(), gather(&b, &v2()).unwrap());
    assert_eq!(ia.hparams_source, Some(ConfigSource::Hydra));
    assert_eq!(
        ia.hparams.as_ref().unwrap()["trainer"]["max_epochs"],
        json!(3)
    );
    // `${optimizer.lr}` resolved, with its type.
    assert_eq!(
        ia.hparams.as_ref().unwrap()["optimizer"]["scheduled_lr"],
        json!(0.001)
    );
    let (ha, hb) = (identity(&ia), identity(&ib));
    assert!(ha.hash.starts_with("v2:"), "{}", ha.hash);
    assert_ne!(ha.hash, hb.hash);
    assert_ne!(ha.components.hyperparameters, hb.components.hyperparameters);
    assert_eq!(ha.components.architecture, hb.components.architecture);
    // v1: the checkpoint's hyper_parameters win, and they are the same.
    let (va, vb) = (gather(&a, &v1()).unwrap(), gather(&b, &v1()).unwrap());
    assert_eq!(va.hparams_source, Some(ConfigSource::HyperParameters));
    assert_eq!(identity(&va), identity(&vb));
    assert!(identity(&va).hash.starts_with("v1:"));
    // ... and v1's value is unchanged by v2's existence: the DDP checkpoint's v1 identity
    // is the same wherever it sits, as expected.json pins it.
    assert_eq!(
        identity(&va).components,
        id_with("wrapped/ddp_step_000300.pt", &v1()).components
    );
}

#[test]
fn v2_keeps_the_model_key_v1_drops_it() {
    let t = tempfile::tempdir().unwrap();
    let ck = fixtures().join("wrapped/ddp_step_000300.pt");
    let mut ids = Vec::new();
    for act in ["relu", "gelu"] {
        let d = t.path().join(act);
        write(
            &d.join(".hydra/config.yaml"),
            &format!("lr: 0.1\nmodel:\n  activation: {act}\n"),
        );
        copy(&ck, &d.join("last.ckpt"));
        let p = d.join("last.ckpt");
        ids.push((
            identity(&gather(&p, &v2()).unwrap()),
            identity(
                &gather(
                    &p,
                    &HashOptions {
                        hparams_file: Some(d.join(".hydra/config.yaml")),
                        ..v1()
                    },
                )
                .unwrap(),
            ),
        ));
    }
    assert_ne!(ids[0].0, ids[1].0, "v2 sees the activation");
    assert_eq!(ids[0].1, ids[1].1, "v1 removed `model`");
    // `--ignore model.activation` makes them one experiment again in v2.
    let ign = |act: &str| {
        identity(
            &gather(
                &t.path().join(act).join("last.ckpt"),
                &HashOptions {
                    ignore: vec!["model.activation".into()],
                    ..v2()
                },
            )
            .unwrap(),
        )
    };
    assert_eq!(ign("relu"), ign("gelu"));
}

#[test]
fn v2_source_order_hydra_then_config_sidecar_then_hparams_yaml_then_the_checkpoint() {
    let t = tempfile::tempdir().unwrap();
    let ck = fixtures().join("wrapped/ddp_step_000300.pt");
    let v = t.path().join("lightning_logs/version_0");
    let p = v.join("checkpoints/epoch=1-step=8.ckpt");
    copy(&ck, &p);
    let src = |p: &Path| gather(p, &v2()).unwrap();
    // Only the checkpoint: its hyper_parameters.
    assert_eq!(src(&p).hparams_source, Some(ConfigSource::HyperParameters));
    // Lightning's hparams.yaml, with a Namespace tag.
    write(
        &v.join("hparams.yaml"),
        "args: !!python/object:argparse.Namespace\n  lr: 0.5\nbatch_size: 64\n",
    );
    let i = src(&p);
    assert_eq!(i.hparams_source, Some(ConfigSource::HparamsYaml));
    assert_eq!(i.hparams.unwrap()["args"]["lr"], json!(0.5));
    assert_eq!(i.hparams_path, Some(v.join("hparams.yaml")));
    // <stem>.config.yaml beside the checkpoint.
    let sc = v.join("checkpoints/epoch=1-step=8.config.json");
    write(&sc, r#"{"lr": 0.25}"#);
    let i = src(&p);
    assert_eq!(i.hparams_source, Some(ConfigSource::ConfigSidecar));
    assert_eq!(i.hparams_path, Some(sc));
    // Hydra's config above it.
    write(&t.path().join(".hydra/config.yaml"), "lr: 0.125\n");
    let i = src(&p);
    assert_eq!(i.hparams_source, Some(ConfigSource::Hydra));
    assert_eq!(i.hparams.unwrap(), json!({"lr": 0.125}));
    // --hparams over everything.
    let i = gather(
        &p,
        &HashOptions {
            hparams_file: Some(fixtures().join("hparams.json")),
            ..v2()
        },
    )
    .unwrap();
    assert_eq!(i.hparams_source, Some(ConfigSource::HparamsFile));
}

#[test]
fn v2_hash_folder_hp_and_models_folder() {
    let t = tempfile::tempdir().unwrap();
    let e = fixtures().join(EXP1);
    let d = t.path().join("runs/exp_a");
    for rel in ["hp/config.yaml", "data/active_uids.txt"] {
        copy(&e.join(rel), &d.join(rel));
    }
    let p = d.join("models/checkpoint_step_000200.pt");
    copy(&e.join("model/checkpoint_step_000200.pt"), &p);
    let i = gather(&p, &v2()).unwrap();
    assert_eq!(i.hparams_source, Some(ConfigSource::HashFolderHp));
    assert_eq!(i.uids_source, Some(DataSource::HashFolderData));
    // The folder resolves to its newest checkpoint in `models/` too.
    assert_eq!(gather(&d, &v2()).unwrap().checkpoint, Some(p.clone()));
    // v1 read `model/` only.
    let i = gather(&p, &v1()).unwrap();
    assert_eq!(i.hparams_source, None);
    assert_eq!(i.uids, None);
}

#[test]
fn v2_bombs_in_a_run_config_are_errors_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    let mut y = String::from("a0: xxxxxxxxxxxxxxxx\n");
    for i in 1..40 {
        y.push_str(&format!("a{i}: ${{a{}}}${{a{}}}\n", i - 1, i - 1));
    }
    write(&t.path().join(".hydra/config.yaml"), &y);
    let p = t.path().join("last.ckpt");
    copy(&fixtures().join("wrapped/ddp_step_000300.pt"), &p);
    let e = gather(&p, &v2()).unwrap_err();
    assert!(matches!(e, IdentityError::Hparams { .. }), "{e:?}");
    let chain = format!("{:?}", e);
    assert!(chain.contains("config.yaml"), "{chain}");
}

/// Pinned: if this fails, `v2` changed. Add a version instead of editing these values.
#[test]
fn identity_golden_v2() {
    const ARCH: &str = "7f63d08eccc1d53e5f37a249986dac9742388e9aa304b56400047d4c0f9502c0";
    const HP: &str = "9a3397c6d193c65116349bf7dbe198d72daef0905ef8a839f0cd2f14e2d8c728";
    const DATA: &str = "bcc2107ec8be52f7d276b264a6270a9c6a15a7e46dc2ac03aeecaac6fa934ef1";
    let a = identity(&gather(&fixtures().join(EXP1), &v2()).unwrap());
    assert_eq!(
        a,
        Identity {
            hash: "v2:c3b216419ba69a8e".into(),
            components: Components {
                architecture: Some(ARCH.into()),
                hyperparameters: Some(HP.into()),
                data: Some(DATA.into()),
            },
        }
    );
    // v2's config text is v1's with the `model` key kept: the same file, hashed whole.
    let text = std::fs::read_to_string(fixtures().join(EXP1).join("hp/config.yaml")).unwrap();
    let v: Value = ckpt_meta::yaml::parse(&text).unwrap();
    let canon =
        ckpt_identity::canonical::canonical_json(&canonical_hparams(&v, &[], Algorithm::V2));
    assert_eq!(sha256_hex(canon.as_bytes()), HP);
    assert!(
        canon.contains(r#""model":{"activation":"relu","depth":2}"#),
        "{canon}"
    );
    let b = identity(&gather(&fixtures().join("checkpoints/8e6c4a2f0b1d"), &v2()).unwrap());
    assert_eq!(b.hash, "v2:f42408949c5eea0e");
    assert_eq!(b.components.hyperparameters.as_deref(), Some(HP));
}

/// `v2` hashes the state dict every command names (`ckpt_model::state_dict::locate`, checked
/// against torch's own objects in `fixtures/state_dict/expected.json`); `v1` keeps its frozen
/// first-mapping rule, which took the 2 normalizer tensors of `stats_before_weights.pt` and the
/// EMA copy of `ema_first.ckpt`.
#[test]
fn v2_hashes_the_state_dict_every_command_names_v1_its_own() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/state_dict");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let files = expected["files"].as_object().unwrap();
    assert!(files.len() >= 7);
    let mut differ = Vec::new();
    for (name, e) in files {
        let p = dir.join(name);
        let want: std::collections::BTreeSet<String> = e["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| ckpt_model::wrappers::strip_wrappers(t.as_str().unwrap()))
            .collect();
        let got: std::collections::BTreeSet<String> = gather(&p, &v2())
            .unwrap()
            .tensors
            .names()
            .map(str::to_owned)
            .collect();
        assert_eq!(got, want, "{name}");
        let v1_tensors = gather(&p, &v1()).unwrap().tensors;
        if v1_tensors
            .names()
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>()
            != want
        {
            differ.push(name.clone());
        }
    }
    differ.sort();
    assert_eq!(differ, vec!["ema_first.ckpt", "stats_before_weights.pt"]);
}

// ---------------------------------------------------------------------------------------
// A checkpoint not written yet (the Python `ExperimentManager`)

/// `gather_planned` — the live module's tensor table and the experiment folder as it is —
/// gives the identity `gather` gives once the file is written: in a hash folder (`hp/`,
/// `data/`), in every version, with wrapper prefixes in the live names, and in a Hydra run
/// folder (whose config wins in `v2`, as for the written file).
#[test]
fn identity_planned_equals_identity_of_the_file_once_written() {
    let t = tempfile::tempdir().unwrap();
    let exp = t.path().join("run/checkpoints/3c5e7a9b1d2f");
    for f in [
        "hp/config.yaml",
        "data/active_uids.txt",
        "model/checkpoint_step_000100.pt",
    ] {
        copy(&fixtures().join(EXP1).join(f), &exp.join(f));
    }
    let written = exp.join("model/checkpoint_step_000100.pt");
    let planned = exp.join("model/checkpoint_step_000300.pt");
    let check = |opts: &HashOptions, want_source: ConfigSource| {
        let of_file = gather(&written, opts).unwrap();
        // The state dict's names as a live (DDP-wrapped) module names them.
        let live: Vec<(String, &'static str, Vec<u64>)> = of_file
            .tensors
            .iter()
            .map(|(n, d, s)| (format!("module.{n}"), d, s.to_vec()))
            .collect();
        let ahead = ckpt_identity::gather_planned(&planned, &live, opts).unwrap();
        assert_eq!(identity(&ahead), identity(&of_file), "{:?}", opts.algorithm);
        assert_eq!(ahead.hparams_source, Some(want_source));
        assert_eq!(ahead.uids_source, Some(DataSource::HashFolderData));
        assert_eq!(ahead.checkpoint.as_deref(), Some(planned.as_path()));
    };
    check(&v1(), ConfigSource::HashFolderHp);
    check(&v2(), ConfigSource::HashFolderHp);
    write(
        &t.path().join("run/.hydra/config.yaml"),
        &HYDRA.replace("MAX", "2"),
    );
    check(&v2(), ConfigSource::Hydra);
    // No tensors: no architecture component, as for a file without a state dict.
    let none = ckpt_identity::gather_planned(&planned, &[], &v2()).unwrap();
    assert_eq!(identity(&none).components.architecture, None);
}
