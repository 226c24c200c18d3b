//! `ckpt convert --format json` is a contract. For real runs of the binary — folders of
//! FSDP/DDP checkpoints into Hugging Face folders, bare safetensors, shards, a DCP directory,
//! dry runs, failures beside successes — the output must
//! 1. validate against the schema derived from the output types
//!    (`ckpt_convert::json_schema`, what `ckpt schema convert` prints);
//! 2. parse into those types with unknown fields denied; and
//! 3. serialize back from them to exactly the bytes printed, so nothing reaches the output
//!    except through the types the schema comes from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ckpt_convert::ConvertRun;
use common::ckpt;
use serde_json::Value;

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&ckpt_convert::json_schema()).unwrap()
}

/// Where `out` breaks the contract, if anywhere.
fn breaks(v: &jsonschema::Validator, stdout: &[u8]) -> Option<String> {
    let value: Value = match serde_json::from_slice(stdout) {
        Ok(x) => x,
        Err(e) => return Some(format!("not JSON: {e}")),
    };
    let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
    if !errors.is_empty() {
        return Some(format!("schema: {errors:?}"));
    }
    let run: ConvertRun = match serde_json::from_slice(stdout) {
        Ok(r) => r,
        Err(e) => return Some(format!("types: {e}")),
    };
    let mut again = serde_json::to_string_pretty(&run).unwrap();
    again.push('\n');
    (again.as_bytes() != stdout).then(|| "does not serialize back to the same bytes".to_owned())
}

/// A base model folder (the tiny GPT-2's config and tokenizer) whose own weights are the
/// tiny GPT-2's, all but the embedding under an extra `x.`: enough names in common to fit,
/// most of them explained by `--add-prefix x.`, so the report carries a hint.
fn prefixed_base(tmp: &std::path::Path) -> std::path::PathBuf {
    let base = tmp.join("base-prefixed");
    common::copy_tree(&common::root().join("fixtures/convert/base_model"), &base);
    let plain = tmp.join("plain");
    let out = run(
        tmp,
        "plain",
        &["examples/fsdp/epoch-001.pth", "--to", "safetensors"],
        0,
    );
    assert!(breaks(&validator(), &out).is_none());
    let bytes = std::fs::read(plain.join("epoch-001/model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut own = serde_json::Map::new();
    let mut at = 0u64;
    for (name, t) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let len = t["data_offsets"][1].as_u64().unwrap() - t["data_offsets"][0].as_u64().unwrap();
        let name = if name == "transformer.wte.weight" {
            name.clone()
        } else {
            format!("x.{name}")
        };
        let mut t = t.clone();
        t["data_offsets"] = serde_json::json!([at, at + len]);
        own.insert(name, t);
        at += len;
    }
    let mut h = serde_json::to_vec(&Value::Object(own)).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&h);
    file.resize(file.len() + at as usize, 0);
    std::fs::write(base.join("model.safetensors"), file).unwrap();
    base
}

/// Run `ckpt convert ARGS --format json --output-dir TMP/NAME`, expecting `code`.
fn run(tmp: &std::path::Path, name: &str, args: &[&str], code: i32) -> Vec<u8> {
    let o = ckpt()
        .arg("convert")
        .args(args)
        .args(["--format", "json", "--output-dir"])
        .arg(tmp.join(name))
        .assert()
        .code(code);
    o.get_output().stdout.clone()
}

#[test]
fn convert_json_output_keeps_its_contract() {
    let v = validator();
    let tmp = tempfile::tempdir().unwrap();
    let base_with_prefix = prefixed_base(tmp.path());
    let cases: Vec<(&str, Vec<&str>, i32)> = vec![
        (
            "hf",
            vec![
                "examples/fsdp",
                "--base-model",
                "fixtures/convert/base_model",
            ],
            0,
        ),
        (
            "dry",
            vec![
                "examples/fsdp",
                "--base-model",
                "fixtures/convert/base_model",
                "--dry-run",
            ],
            0,
        ),
        (
            "sharded",
            vec![
                "examples/fsdp/epoch-001.pth",
                "--to",
                "safetensors",
                "--max-shard-size",
                "1KB",
            ],
            0,
        ),
        (
            "dcp",
            vec!["fixtures/convert/dcp/dtensor_mixed", "--to", "safetensors"],
            0,
        ),
        (
            "state_dicts",
            vec!["fixtures/state_dict", "--to", "safetensors"],
            0,
        ),
        // A hint: most of the base model's own weights carry a prefix the output lacks.
        (
            "hint",
            vec![
                "examples/fsdp/epoch-001.pth",
                "--base-model",
                base_with_prefix.to_str().unwrap(),
            ],
            0,
        ),
        // Failures beside successes: exit 1, both kinds of entry in one output.
        ("mixed", vec!["fixtures/convert", "--to", "safetensors"], 1),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for (name, args, code) in cases {
        let out = run(tmp.path(), name, &args, code);
        if let Some(why) = breaks(&v, &out) {
            panic!("{name}: {why}\n{}", String::from_utf8_lossy(&out));
        }
        let r: ConvertRun = serde_json::from_slice(&out).unwrap();
        assert!(!r.conversions.is_empty(), "{name}");
        for c in &r.conversions {
            kinds.insert(match c {
                ckpt_convert::Conversion::Succeeded(s) => {
                    if s.report.hint.is_some() {
                        "hint"
                    } else {
                        "succeeded"
                    }
                }
                ckpt_convert::Conversion::Failed(_) => "failed",
            });
        }
    }
    // Every shape of entry was seen, so each was checked.
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["failed", "hint", "succeeded"]
    );
}

/// The schema is strict: an unknown field, a missing one or a wrong status is refused by the
/// schema and by the types alike.
#[test]
fn the_schema_refuses_what_convert_never_writes() {
    let v = validator();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        "one",
        &["examples/fsdp/epoch-001.pth", "--to", "safetensors"],
        0,
    );
    let good: Value = serde_json::from_slice(&out).unwrap();
    assert!(v.is_valid(&good));
    let mut bad = Vec::new();
    let mut unknown = good.clone();
    unknown["conversions"][0]["report"]["surprise"] = Value::from(1);
    bad.push(("unknown report field", unknown));
    let mut top = good.clone();
    top["extra"] = Value::from(true);
    bad.push(("unknown top-level field", top));
    let mut missing = good.clone();
    missing["conversions"][0]["report"]
        .as_object_mut()
        .unwrap()
        .remove("tensors");
    bad.push(("missing tensors", missing));
    let mut status = good.clone();
    status["conversions"][0]["status"] = Value::from("failed");
    bad.push(("a report under status failed", status));
    for (what, x) in bad {
        assert!(!v.is_valid(&x), "schema accepts {what}");
        assert!(
            serde_json::from_value::<ConvertRun>(x).is_err(),
            "types accept {what}"
        );
    }
}
