//! `convert-legacy` and `validate` against the hand-reasoned expectations in
//! `fixtures/outputs/expected.json` and `fixtures/sidecars_bad/expected.json` (made by
//! `scripts/make_meta_fixtures.py` from torch.load of each checkpoint and the rules):
//! every source and every precedence case, value and provenance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ckpt, copy_tree, root};
use serde_json::Value;

fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    ckpt_meta::config::lookup(v, path)
}

fn same(a: &Value, e: &Value) -> bool {
    match (a, e) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-6 * y.abs().max(1.0)
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && y.iter()
                    .all(|(k, v)| x.get(k).is_some_and(|xv| same(xv, v)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == e,
    }
}

#[test]
fn convert_legacy_matches_the_expected_values_and_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("outputs");
    copy_tree(&root().join("fixtures/outputs"), &out);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("expected.json")).unwrap()).unwrap();
    let kept = out.join("existing_sidecar/checkpoints/epoch=00-step=2-hmean=0.7172.metadata.yaml");
    let kept_before = std::fs::read(&kept).unwrap();
    let json_sc =
        out.join("existing_sidecar_json/checkpoints/epoch=02-step=6-hmean=0.7718.metadata.json");
    let json_before = std::fs::read(&json_sc).unwrap();

    let o = ckpt()
        .args(["convert-legacy", "--outputs-dir"])
        .arg(&out)
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&o.get_output().stdout).into_owned();
    assert!(stdout.contains("Failed: 1"), "{stdout}");
    assert!(stdout.contains("Skipped (existing): 1"), "{stdout}");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        kept_before,
        "existing YAML sidecar touched"
    );
    assert_eq!(
        std::fs::read(&json_sc).unwrap(),
        json_before,
        "existing JSON sidecar touched"
    );

    let mut failures = Vec::new();
    let mut checked = 0;
    for (ckpt_rel, e) in expected.as_object().unwrap() {
        let ck = out.join(ckpt_rel);
        let sc_path = ckpt_meta::sidecar::yaml_path(&ck);
        match e["_status"].as_str().unwrap_or("convert") {
            "fail" => {
                assert!(
                    !sc_path.exists(),
                    "{ckpt_rel}: sidecar written for a failed checkpoint"
                );
                continue;
            }
            "skip_existing" if sc_path == kept => continue,
            // A `.metadata.json` beside it is a source, not a reason to skip: the YAML is
            // written from it (and left alone above).
            _ => {}
        }
        let sc = ckpt_meta::yaml::parse(&std::fs::read_to_string(&sc_path).unwrap()).unwrap();
        let prov = &sc["provenance"];
        for (field, want) in e.as_object().unwrap() {
            if field.starts_with('_') || !want.is_object() {
                continue;
            }
            checked += 1;
            let got = lookup(&sc, field);
            if let Some(contains) = want.get("contains") {
                for (name, x) in contains.as_object().unwrap() {
                    let g = lookup(&sc, field).and_then(|m| m.get(name));
                    if !g.is_some_and(|g| same(g, x)) {
                        failures.push(format!("{ckpt_rel}: {field}.{name}: want {x}, got {g:?}"));
                    }
                }
                continue;
            }
            let Some(value) = want.get("value") else {
                continue;
            };
            let mut ok_values = vec![value.clone()];
            if let Some(alts) = want.get("also_accepted").and_then(Value::as_array) {
                for a in alts {
                    ok_values.push(a.get("value").cloned().unwrap_or_else(|| a.clone()));
                }
            }
            let absent_ok = want
                .get("absent_ok")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let value_ok = match got {
                None => absent_ok || value.is_null(),
                Some(g) => ok_values.iter().any(|v| same(g, v)),
            };
            if !value_ok {
                failures.push(format!("{ckpt_rel}: {field}: want {value}, got {got:?}"));
                continue;
            }
            if let Some(src) = want.get("source").and_then(Value::as_str)
                && src != "mixed"
                && got.is_some_and(|g| !g.is_null())
            {
                let mut ok_sources = vec![src.to_owned()];
                // A `.metadata.json` beside the checkpoint is the first source by design.
                if ckpt_meta::sidecar::json_path(&ck).is_file() {
                    ok_sources.push("sidecar".to_owned());
                }
                if let Some(alts) = want.get("also_accepted").and_then(Value::as_array) {
                    ok_sources.extend(
                        alts.iter()
                            .filter_map(|a| a.get("source")?.as_str().map(str::to_owned)),
                    );
                }
                let g = prov.get(field).and_then(Value::as_str).unwrap_or("<none>");
                if !ok_sources.iter().any(|s| s == g) {
                    failures.push(format!("{ckpt_rel}: {field}: source want {src}, got {g}"));
                }
            }
        }
    }
    assert!(checked > 300, "only {checked} expectations checked");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn validate_matches_the_expected_verdicts() {
    let dir = root().join("fixtures/sidecars_bad");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let o = ckpt()
        .args(["validate", "--format", "json", "--exp-dir"])
        .arg(&dir)
        .assert()
        .code(1);
    let got: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    for (name, want) in expected.as_object().unwrap() {
        if name.starts_with('_') {
            continue;
        }
        let g = got
            .as_array()
            .unwrap()
            .iter()
            .find(|x| {
                x["checkpoint"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{name}"))
            })
            .unwrap_or_else(|| panic!("{name} not reported"));
        assert_eq!(g["status"], want["status"], "{name}: {g}");
        if let Some(problems) = want.get("problems").and_then(Value::as_array) {
            for p in problems {
                if let Some(path) = p.get("path").and_then(Value::as_str) {
                    assert!(
                        g["problems"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|x| x["path"] == path),
                        "{name}: no problem at {path}: {g}"
                    );
                }
                if p.get("kind").and_then(Value::as_str) == Some("parse") {
                    let line = g["problems"][0]["line"].as_u64().unwrap();
                    assert!(line == 3 || line == 4, "{name}: line {line}");
                }
            }
        }
    }
}
