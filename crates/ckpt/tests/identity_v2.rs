//! Identity algorithm `v2` through the binary: the run's config changes the hash, a folder
//! named by a `v1` hash is still recognized as `v1`, the catalog and `ckpt hash` read a hash
//! folder alike, and the JSON of `hash` and `diff` keeps its contract (typed, schema-valid).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use ckpt_identity::{DiffReport, HashReport};
use common::contract::{holds, schema as contract_schema, violations};
use common::{ckpt, root};
use serde_json::Value;

fn fixtures() -> PathBuf {
    root().join("fixtures/identity")
}

const EXP1: &str = "checkpoints/3c5e7a9b1d2f";
/// EXP1's pinned v1 identity (`identity_golden`).
const EXP1_V1: &str = "v1:d2c97065e066bb16";

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

fn write(to: &Path, text: &str) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::write(to, text).unwrap();
}

/// Run `ckpt ARGS --format json`, expecting `code`; stdout parsed as JSON.
fn json_of(args: &[&str], code: i32) -> Value {
    let o = ckpt()
        .args(args)
        .args(["--format", "json"])
        .assert()
        .code(code);
    serde_json::from_slice(&o.get_output().stdout).unwrap()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A copy of EXP1 (hp/, data/, model/ with its newest step) named `name`.
fn exp1_copy(root: &Path, name: &str) -> PathBuf {
    let e = fixtures().join(EXP1);
    let d = root.join("checkpoints").join(name);
    for rel in [
        "hp/config.yaml",
        "data/active_uids.txt",
        "model/checkpoint_step_000200.pt",
    ] {
        copy(&e.join(rel), &d.join(rel));
    }
    d
}

const HYDRA: &str = "experiment_name: identity_demo\nseed: 7\ntrainer:\n  max_epochs: MAX\n  accelerator: cpu\noptimizer:\n  lr: 0.001\n";

#[test]
fn two_hydra_multirun_jobs_differing_in_max_epochs_have_different_v2_hashes_and_one_v1() {
    let t = tempfile::tempdir().unwrap();
    let mut cks = Vec::new();
    for (job, max) in [("0", "3"), ("1", "1")] {
        let d = t.path().join(format!("multirun/2026-11-30/10-00-00/{job}"));
        write(&d.join(".hydra/config.yaml"), &HYDRA.replace("MAX", max));
        let p = d.join("checkpoints/last.ckpt");
        // Both hold the same checkpoint, `hyper_parameters` included.
        copy(&fixtures().join("wrapped/ddp_step_000300.pt"), &p);
        cks.push(s(&p));
    }
    let (a, b) = (&cks[0], &cks[1]);
    let (ha, hb) = (json_of(&["hash", a], 0), json_of(&["hash", b], 0));
    assert!(ha["hash"].as_str().unwrap().starts_with("v2:"), "{ha}");
    assert_ne!(ha["hash"], hb["hash"]);
    assert_eq!(ha["inputs"]["hyperparameters"]["source"], "hydra");
    let v1 = |p: &str| json_of(&["hash", p, "--algorithm", "v1"], 0);
    let (va, vb) = (v1(a), v1(b));
    assert!(va["hash"].as_str().unwrap().starts_with("v1:"));
    assert_eq!(va["hash"], vb["hash"]);
    assert_eq!(
        va["inputs"]["hyperparameters"]["source"],
        "hyper_parameters"
    );
    // diff says why, and exits 1; as v1 they are the same experiment.
    let o = ckpt().args(["diff", a, b]).assert().code(1);
    let out = String::from_utf8_lossy(&o.get_output().stdout).into_owned();
    assert!(out.contains("~ hparam trainer.max_epochs: 3 -> 1"), "{out}");
    assert!(out.contains("hyperparameters differs"), "{out}");
    ckpt()
        .args(["diff", a, b, "--algorithm", "v1"])
        .assert()
        .success();
}

#[test]
fn a_hash_folder_named_by_a_v1_hash_is_still_matched_as_v1() {
    let t = tempfile::tempdir().unwrap();
    let digits = EXP1_V1.strip_prefix("v1:").unwrap();
    for name in [digits.to_owned(), format!("v1-{digits}")] {
        let d = exp1_copy(t.path(), &name);
        let h = json_of(&["hash", &s(&d)], 0);
        // The hash is v2; the folder's name is recognized as the v1 identity.
        assert!(h["hash"].as_str().unwrap().starts_with("v2:"), "{h}");
        assert_eq!(h["folder"]["name"], name.as_str());
        assert_eq!(h["folder"]["matches"], "v1", "{h}");
        // v1 still computes the pinned value, and the folder is its own.
        let h1 = json_of(&["hash", &s(&d), "--algorithm", "v1"], 0);
        assert_eq!(h1["hash"], EXP1_V1);
        assert_eq!(h1["folder"]["matches"], "v1");
        // The table says so.
        let o = ckpt().args(["hash", &s(&d)]).assert().success();
        let out = String::from_utf8_lossy(&o.get_output().stdout).into_owned();
        assert!(
            out.contains(&format!("folder           {name} is this identity (v1)")),
            "{out}"
        );
        // The catalog takes the folder as the experiment.
        let c = json_of(&["catalog", "--no-cache", &s(&d)], 0);
        assert_eq!(c["checkpoints"][0]["experiment"], name.as_str(), "{c}");
    }
    // A folder named by v2's identity matches v2.
    let v2 = json_of(&["hash", &s(&exp1_copy(t.path(), "x"))], 0);
    let v2_digits = v2["hash"].as_str().unwrap().strip_prefix("v2:").unwrap();
    let d = exp1_copy(t.path(), &format!("v2_{v2_digits}"));
    assert_eq!(json_of(&["hash", &s(&d)], 0)["folder"]["matches"], "v2");
    // A name stating a version this ckpt does not know is compared with nothing, and said.
    let d = exp1_copy(t.path(), &format!("v9-{digits}"));
    let o = ckpt()
        .args(["hash", &s(&d), "--format", "json"])
        .assert()
        .success();
    let h: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    assert_eq!(h["folder"]["states_version"], "v9");
    assert_eq!(h["folder"]["matches"], Value::Null);
    let err = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(err.contains("states identity algorithm v9"), "{err}");
    // A weightslab name (its own hash, not ckpt's) matches nothing.
    let h = json_of(&["hash", &s(&fixtures().join(EXP1))], 0);
    assert_eq!(h["folder"]["matches"], Value::Null);
}

/// Hash folders on which the catalog and `ckpt hash` used to read different UIDs or
/// different files (before `ckpt_meta::hash_folder`; the old catalog count is in each comment,
/// measured with the previous binary). Now the catalog's `data.active_uids` is the number of
/// UIDs `ckpt hash` hashes, and both see the same folders and `hp/` files.
#[test]
fn the_catalog_and_hash_read_a_hash_folder_alike() {
    let t = tempfile::tempdir().unwrap();
    let ck = fixtures()
        .join(EXP1)
        .join("model/checkpoint_step_000200.pt");
    let cases: &[(&str, &str, &str, usize)] = &[
        // CSV: the `uid` column, not the first one (old catalog: 3, the `split` values).
        (
            "0a1b2c3d4e5f",
            "active_uids.csv",
            "split,uid\ntrain,a\ntrain,b\ntrain,c\nval,d\n",
            4,
        ),
        // A `#` line is a UID, as hashed (old catalog: 2).
        ("1a1b2c3d4e5f", "active_uids.txt", "s1\ns2\n# s3\n", 3),
        // A `.txt` holding a JSON array (old catalog: 1, one line).
        (
            "2a1b2c3d4e5f",
            "active_uids.txt",
            "[\"a\", \"b\", \"c\"]\n",
            3,
        ),
        // A JSON object of UIDs (old hash: an error).
        (
            "3a1b2c3d4e5f",
            "active_uids.json",
            "{\"uids\": [\"a\", \"b\"], \"note\": \"x\"}",
            2,
        ),
        // A quoted CSV field with a comma (old catalog: 2 by chance, `a` and `c`: it split
        // `"a,b"` at the comma).
        ("4a1b2c3d4e5f", "active_uids.csv", "uid\n\"a,b\"\nc\nc\n", 2),
        // Not a hex name and no hp/, but a data/ folder (old catalog: not a hash folder).
        ("run_a", "active_uids.txt", "x\ny\n", 2),
    ];
    for (name, file, text, n) in cases {
        let d = t.path().join("checkpoints").join(name);
        write(&d.join("data").join(file), text);
        let p = d.join("model/checkpoint_step_000200.pt");
        copy(&ck, &p);
        let h = json_of(&["hash", &s(&p)], 0);
        assert_eq!(h["inputs"]["data"]["uids"], *n, "{name}: {h}");
        let c = json_of(&["catalog", "--no-cache", &s(&p)], 0);
        let e = &c["checkpoints"][0];
        assert_eq!(e["data"]["active_uids"], *n, "{name}: {e}");
        assert_eq!(e["experiment"], *name, "{name}: {e}");
    }
    // `hp/` files with an upper-case extension: both read them (old catalog: skipped).
    let d = t.path().join("checkpoints/5a1b2c3d4e5f");
    write(&d.join("hp/config.YAML"), "lr: 0.5\n");
    let p = d.join("model/checkpoint_step_000200.pt");
    copy(&ck, &p);
    let h = json_of(&["hash", &s(&p)], 0);
    assert_eq!(h["inputs"]["hyperparameters"]["source"], "hash_folder_hp");
    let c = json_of(&["catalog", "--no-cache", &s(&p)], 0);
    assert_eq!(c["checkpoints"][0]["hparams"]["lr"], 0.5, "{c}");
    // A UID file that does not read: `hash` fails naming it, the catalog gives no count (and
    // never the next file's, as it did).
    let d = t.path().join("checkpoints/6a1b2c3d4e5f");
    write(&d.join("data/active_uids.txt"), "[\"a\", \n");
    write(&d.join("data/active_uids.json"), "[\"a\", \"b\"]");
    let p = d.join("model/checkpoint_step_000200.pt");
    copy(&ck, &p);
    let o = ckpt().args(["hash", &s(&p)]).assert().code(2);
    let err = String::from_utf8_lossy(&o.get_output().stderr).into_owned();
    assert!(err.contains("active_uids.txt"), "{err}");
    let c = json_of(&["catalog", "--no-cache", &s(&p)], 0);
    assert_eq!(
        c["checkpoints"][0]["data"]["active_uids"],
        Value::Null,
        "{c}"
    );
}

// ---------------------------------------------------------------------------------------
// JSON contracts (`common::contract`: the schema `ckpt schema NAME` prints, the types with
// unknown fields denied, and the types serializing back to the very bytes printed)

fn json_out(cmd: &str, args: &[String], code: i32) -> String {
    let mut full = vec![cmd];
    full.extend(args.iter().map(String::as_str));
    full.extend(["--format", "json"]);
    let o = ckpt().args(&full).assert().code(code);
    String::from_utf8(o.get_output().stdout.clone()).unwrap()
}

#[test]
fn hash_json_contract() {
    let t = tempfile::tempdir().unwrap();
    let named = exp1_copy(t.path(), EXP1_V1.strip_prefix("v1:").unwrap());
    let id = fixtures();
    let v1 = || vec!["--algorithm".to_owned(), "v1".to_owned()];
    let cases: Vec<Vec<String>> = vec![
        vec![s(&id.join(EXP1))],
        [vec![s(&id.join(EXP1))], v1()].concat(),
        vec![s(&id.join("hydra_run/checkpoints/last.pt"))],
        [
            vec![s(&id.join("hydra_run/checkpoints/with_hparams.pt"))],
            v1(),
        ]
        .concat(),
        vec![s(&id.join("wrapped/ddp_step_000300.pt"))],
        vec![
            s(&id.join(EXP1)),
            "--hparams".into(),
            s(&id.join("hparams.json")),
            "--data-uids".into(),
            s(&id.join("uids.csv")),
            "--uid-column".into(),
            "uid".into(),
        ],
        vec![s(&named)],
        vec![s(&root().join("examples/lightning/checkpoints/last.ckpt"))],
    ];
    let mut seen_folder = false;
    for args in &cases {
        let r: HashReport = holds("hash", &json_out("hash", args, 0));
        assert!(r.hash.starts_with(&format!("{}:", r.algorithm)), "{args:?}");
        seen_folder |= r.folder.as_ref().is_some_and(|f| f.matches.is_some());
    }
    assert!(seen_folder);
}

#[test]
fn diff_json_contract() {
    let id = fixtures();
    let exp2 = id.join("checkpoints/8e6c4a2f0b1d/model/checkpoint_step_000100.pt");
    let exp1 = id.join(EXP1).join("model/checkpoint_step_000100.pt");
    let exp1b = id.join(EXP1).join("model/checkpoint_step_000200.pt");
    let l = root().join("examples/lightning/checkpoints");
    let cases: Vec<(Vec<String>, i32)> = vec![
        (vec![s(&exp1), s(&exp2)], 1),
        (vec![s(&exp1), s(&exp1b)], 0),
        (
            vec![s(&exp1), s(&exp2), "--algorithm".into(), "v1".into()],
            1,
        ),
        (
            vec![
                s(&id.join("wrapped/ddp_step_000300.pt")),
                s(&id.join("hydra_run/checkpoints/last.pt")),
            ],
            1,
        ),
        // Same identity, different epoch, step and metrics (from the catalog).
        (
            vec![
                s(&l.join("epoch=01-step=4-hmean=0.7445.ckpt")),
                s(&l.join("epoch=02-step=6-hmean=0.7718.ckpt")),
            ],
            0,
        ),
    ];
    for (args, code) in &cases {
        let r: DiffReport = holds("diff", &json_out("diff", args, *code));
        assert_eq!(r.identical, *code == 0);
        assert!(r.a.identity.hash.starts_with(&format!("{}:", r.algorithm)));
    }
    let (last, _) = cases.last().unwrap();
    let r: DiffReport = holds("diff", &json_out("diff", last, 0));
    assert_eq!(r.diff.epoch, Some((Some(1), Some(2))));
    assert!(!r.diff.metrics.is_empty());
}

#[test]
fn the_hash_schema_rejects_what_the_contract_forbids() {
    let schema = contract_schema("hash");
    let out = json_out("hash", &[s(&fixtures().join(EXP1))], 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(violations(&schema, &v).is_empty());
    let mut extra = v.clone();
    extra["unexpected"] = Value::Bool(true);
    assert!(!violations(&schema, &extra).is_empty());
    let mut bad = v.clone();
    bad["algorithm"] = Value::String("v9".into());
    assert!(!violations(&schema, &bad).is_empty());
    assert!(serde_json::from_value::<HashReport>(extra).is_err());
    // The schema the binary prints is the one the crate exposes.
    assert_eq!(
        schema["properties"],
        ckpt_identity::hash_schema()["properties"]
    );
    assert_eq!(
        contract_schema("diff")["properties"],
        ckpt_identity::diff_schema()["properties"]
    );
}

/// A hash value kept from before `v2` (`v1:…`) is checked as `v1`, never against `v2`.
#[test]
fn expect_checks_a_kept_hash_in_the_version_it_names() {
    let exp = s(&fixtures().join(EXP1));
    let o = ckpt()
        .args(["hash", &exp, "--expect", EXP1_V1])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&o.get_output().stdout).into_owned();
    assert!(out.starts_with(EXP1_V1), "{out}");
    let v2 = json_of(&["hash", &exp], 0)["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    ckpt()
        .args(["hash", &exp, "--expect", &v2])
        .assert()
        .success();
    // Another experiment's v1 hash: exit 1, saying what it is.
    let (code, _, err) = common::run(&["hash", &exp, "--expect", "v1:0000000000000000"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("its v1 identity is {EXP1_V1}")),
        "{err}"
    );
    // A version this ckpt does not know, or no version: bad input, exit 2.
    let (code, _, err) = common::run(&["hash", &exp, "--expect", "v9:d2c97065e066bb16"]);
    assert_eq!(code, 2);
    assert!(err.contains("\"v9\""), "{err}");
    let (code, _, err) = common::run(&["hash", &exp, "--expect", "d2c97065e066bb16"]);
    assert_eq!(code, 2);
    assert!(err.contains("with its version"), "{err}");
    // --expect chooses the algorithm; --algorithm beside it is a usage error.
    let (code, _, _) = common::run(&["hash", &exp, "--expect", EXP1_V1, "--algorithm", "v2"]);
    assert_eq!(code, 2);
}
