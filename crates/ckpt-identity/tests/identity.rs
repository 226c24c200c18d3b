//! The identity algorithms on the repository's fixtures (`fixtures/identity`, made by
//! `scripts/make_identity_fixtures.py`): `v1` pinned (golden values, the Python reference),
//! `v2`'s new configuration sources, and the folder-name check.

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
    let ta = gather(&fixtures().join(EXP1), &v1())
        .unwrap()
        .tensors;
    let tb = gather(&fixtures().join(EXP2), &v1())
        .unwrap()
        .tensors;
    assert_eq!(ta["fc1.weight"], ("float32".to_owned(), vec![8, 10]));
    assert_eq!(tb["fc1.weight"], ("float32".to_owned(), vec![16, 10]));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
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
    let inputs = gather(
        &fixtures().join("wrapped/ddp_step_000300.pt"),
        &v1(),
    )
    .unwrap();
    assert_eq!(inputs.hparams_source, Some(ConfigSource::HyperParameters));
    assert!(inputs.tensors.contains_key("fc1.weight"));
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
