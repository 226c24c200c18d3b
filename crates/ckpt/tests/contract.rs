//! `--format json` is a contract: for every command that has a schema (`ckpt schema NAME`),
//! the real binary's output over real files must
//! 1. validate against the schema the same binary prints (a small draft 2020-12 validator in
//!    `common/contract.rs`, which refuses any keyword it does not know, so nothing is skipped
//!    silently);
//! 2. parse into the command's typed output with unknown fields denied; and
//! 3. serialize back from those types to exactly the bytes printed — so no field can reach the
//!    output except through the types the schema is derived from.
//!
//! Inputs: the whole `fixtures/` tree (hostile and benign pickles, zips, legacy streams, npy,
//! tar, safetensors, TorchScript, DCP directories, Lightning trees with good and bad sidecars)
//! and, when present, the reference corpus (`--ignored`, as `.ci/run` runs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::contract::{holds, json_stdout, schema, violations};
use common::{ckpt, root};
use serde_json::Value;

use ckpt_meta::check::SidecarCheck;
use ckpt_torch::scan::ScanRecord;
use ckpt_torch::summary::InspectItem;

/// Files under `dir` (recursively) whose name ends with one of `exts`, sorted; DCP
/// directories (holding `.metadata`) are listed whole and not entered.
fn inputs(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.join(".metadata").is_file() {
                out.push(p);
            } else {
                inputs(&p, exts, out);
            }
        } else if let Some(name) = p.file_name().and_then(|n| n.to_str())
            && exts.iter().any(|e| name.ends_with(e))
        {
            out.push(p);
        }
    }
}

const CHECKPOINTS: &[&str] = &[".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".tar"];

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

#[test]
fn scan_output_follows_its_schema_over_every_fixture() {
    let out = json_stdout(&["scan", "--format", "json", "fixtures"]);
    let records: Vec<ScanRecord> = holds("scan", &out);
    // The tree holds every verdict and the containers the scan reads: the contract was
    // exercised on each, not on one easy file.
    let verdicts: std::collections::BTreeSet<&str> = records
        .iter()
        .map(|r| match r.verdict {
            ckpt_torch::scan::FileVerdict::NoPickle => "no-pickle",
            ckpt_torch::scan::FileVerdict::Safe => "safe",
            ckpt_torch::scan::FileVerdict::Unknown => "unknown",
            ckpt_torch::scan::FileVerdict::Error => "error",
            ckpt_torch::scan::FileVerdict::Dangerous => "dangerous",
        })
        .collect();
    assert_eq!(verdicts.len(), 5, "{verdicts:?}");
    for format in [
        "zip",
        "legacy",
        "pickle",
        "npy",
        "safetensors",
        "zip sequence",
    ] {
        assert!(
            records.iter().any(|r| r.format.as_str() == format),
            "no {format} file scanned"
        );
    }
    assert!(records.len() > 100, "{} records", records.len());
}

/// The record the walk makes without opening the file: a FIFO is `special`, with a note.
#[test]
fn scan_output_follows_its_schema_for_a_fifo() {
    let t = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(t.path().join("pipe.pt"))
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    std::fs::write(t.path().join("notes.txt"), b"plain text").unwrap();
    let out = json_stdout(&["scan", "--format", "json", t.path().to_str().unwrap()]);
    let records: Vec<ScanRecord> = holds("scan", &out);
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records
            .iter()
            .any(|r| r.format == ckpt_torch::scan::ScanFormat::Special && r.note.is_some()),
        "{records:?}"
    );
}

/// A file ckpt failed on (a bug, exit 3) still gets a record that follows the schema: an
/// `error` whose format is `other` (before the format was typed it was an empty string).
#[test]
fn scan_output_follows_its_schema_for_a_file_ckpt_failed_on() {
    let out = ckpt()
        .env("CKPT_TEST_PANIC_ON", "last.ckpt")
        .args(["scan", "--format", "json", "examples/lightning"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let records: Vec<ScanRecord> = holds("scan", &String::from_utf8(out.stdout).unwrap());
    let failed: Vec<&ScanRecord> = records
        .iter()
        .filter(|r| r.path.ends_with("last.ckpt"))
        .collect();
    assert!(!failed.is_empty(), "{records:?}");
    for r in failed {
        assert_eq!(r.verdict, ckpt_torch::scan::FileVerdict::Error);
        assert_eq!(r.format, ckpt_torch::scan::ScanFormat::Other);
    }
}

#[test]
fn inspect_output_follows_its_schema_over_every_fixture_checkpoint() {
    let mut files = Vec::new();
    inputs(&root().join("fixtures"), CHECKPOINTS, &mut files);
    let args: Vec<String> = ["inspect", "--format", "json"]
        .into_iter()
        .map(String::from)
        .chain(files.iter().map(|p| rel(p)))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = json_stdout(&args);
    let items: Vec<InspectItem> = holds("inspect", &out);
    let dcp = items
        .iter()
        .filter(|i| matches!(i, InspectItem::Dcp(_)))
        .count();
    let torchscript = items
        .iter()
        .filter(|i| matches!(i, InspectItem::File(s) if s.torchscript.is_some()))
        .count();
    let safetensors = items
        .iter()
        .filter(|i| matches!(i, InspectItem::File(s) if s.format == "safetensors"))
        .count();
    assert!(dcp >= 2, "{dcp} DCP directories");
    assert!(torchscript >= 2, "{torchscript} TorchScript archives");
    assert!(safetensors >= 1, "{safetensors} safetensors files");
    assert!(items.len() > 50, "{} items", items.len());
}

#[test]
fn validate_output_follows_its_schema_for_every_status() {
    let mut statuses = std::collections::BTreeSet::new();
    for dir in ["fixtures/outputs", "fixtures/sidecars_bad", "fixtures"] {
        let out = json_stdout(&["validate", "--format", "json", "--outputs-dir", dir]);
        let checks: Vec<SidecarCheck> = holds("validate", &out);
        assert!(!checks.is_empty(), "{dir}: nothing validated");
        statuses.extend(checks.iter().map(|c| c.status.as_str()));
    }
    // valid, invalid (a parse error with its position, and schema problems at field paths),
    // missing; `stale` needs a checkpoint changed after its sidecar, made here.
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("fixtures/outputs");
    let (ckpt_file, sidecar) = first_with_sidecar(&src).expect("a fixture with a sidecar");
    let name = ckpt_file.file_name().unwrap();
    std::fs::copy(&ckpt_file, dir.path().join(name)).unwrap();
    std::fs::copy(&sidecar, dir.path().join(sidecar.file_name().unwrap())).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(name))
        .unwrap();
    std::io::Write::write_all(&mut f, b"appended").unwrap();
    drop(f);
    let out = json_stdout(&[
        "validate",
        "--format",
        "json",
        "--exp-dir",
        dir.path().to_str().unwrap(),
    ]);
    let checks: Vec<SidecarCheck> = holds("validate", &out);
    statuses.extend(checks.iter().map(|c| c.status.as_str()));
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        ["invalid", "missing", "stale", "valid"]
    );
}

/// A checkpoint under `dir` with a `.metadata.yaml` sidecar beside it.
fn first_with_sidecar(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut files = Vec::new();
    inputs(dir, &[".ckpt", ".pt", ".pth"], &mut files);
    files.into_iter().find_map(|f| {
        let stem = f.file_stem()?.to_str()?.to_owned();
        let sc = f.with_file_name(format!("{stem}.metadata.yaml"));
        sc.is_file().then_some((f, sc))
    })
}

/// `ckpt schema` (the sidecar's, hand-written) agrees with the sidecars ckpt writes: every
/// sidecar `convert-legacy` writes over the fixture trees validates against it, and so do the
/// hand-made ones shipped beside the fixtures.
#[test]
fn written_sidecars_follow_the_sidecar_schema() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("outputs");
    common::copy_tree(&root().join("fixtures/outputs"), &tree);
    let out = ckpt()
        .args(["convert-legacy", "--force", "--outputs-dir"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let schema = schema("sidecar");
    let mut checked = 0;
    let mut stack = vec![tree];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                // `broken/` holds sidecars broken on purpose (validate's fixtures).
                if name != "broken" {
                    stack.push(p);
                }
            } else if name.ends_with(".metadata.yaml") || name.ends_with(".metadata.json") {
                let sc = ckpt_meta::sidecar::Sidecar::read(&p).unwrap();
                let bad = violations(&schema, &sc.value);
                assert!(bad.is_empty(), "{}: {}", p.display(), bad.join("\n"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "{checked} sidecars checked");
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn scan_and_inspect_follow_their_schemas_over_the_corpus() {
    let corpus = std::env::var_os("CKPT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/corpus/data"));
    assert!(corpus.is_dir(), "corpus not found (set CKPT_CORPUS)");
    let c = corpus.display().to_string();
    let records: Vec<ScanRecord> = holds("scan", &json_stdout(&["scan", "--format", "json", &c]));
    assert!(!records.is_empty());
    let mut files = Vec::new();
    inputs(&corpus, CHECKPOINTS, &mut files);
    let args: Vec<String> = ["inspect", "--format", "json"]
        .into_iter()
        .map(String::from)
        .chain(files.iter().map(|p| p.display().to_string()))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let items: Vec<InspectItem> = holds("inspect", &json_stdout(&args));
    assert!(!items.is_empty());
    let checks: Vec<SidecarCheck> = holds(
        "validate",
        &json_stdout(&["validate", "--format", "json", "--outputs-dir", &c]),
    );
    assert!(!checks.is_empty());
}

// ---------------------------------------------------------------------------- the checker

/// The checks catch what they are for: a field added to real output without the schema, a
/// required field dropped, a value outside an enum.
#[test]
fn a_field_outside_the_schema_fails() {
    let out = json_stdout(&[
        "scan",
        "--format",
        "json",
        "fixtures/hostile/p0_os_system.pkl",
    ]);
    let schema = schema("scan");
    let good: Value = serde_json::from_str(&out).unwrap();
    assert!(violations(&schema, &good).is_empty());

    let mut added = good.clone();
    added[0]["globals"][0]
        .as_object_mut()
        .unwrap()
        .insert("sneaked_in".into(), Value::Bool(true));
    let bad = violations(&schema, &added);
    assert!(
        bad.iter()
            .any(|b| b.contains("field sneaked_in is not in the schema")),
        "{bad:?}"
    );
    let parsed = serde_json::from_value::<Vec<ScanRecord>>(added);
    assert!(
        parsed.unwrap_err().to_string().contains("unknown field"),
        "an unknown field must not parse"
    );

    let mut dropped = good.clone();
    dropped[0].as_object_mut().unwrap().remove("note");
    let bad = violations(&schema, &dropped);
    assert!(
        bad.iter().any(|b| b.contains("required field note")),
        "{bad:?}"
    );

    let mut renamed = good;
    renamed[0]["verdict"] = Value::String("fine".into());
    assert!(!violations(&schema, &renamed).is_empty());
    assert!(serde_json::from_value::<Vec<ScanRecord>>(renamed).is_err());
}

/// Every object in every output schema is closed (`additionalProperties: false`) or a map
/// whose values have a schema: no object admits fields nobody declared.
#[test]
fn every_output_object_is_closed() {
    fn walk(s: &Value, at: &str, bad: &mut Vec<String>) {
        match s {
            Value::Object(o) => {
                if o.contains_key("properties")
                    && o.get("additionalProperties") != Some(&Value::Bool(false))
                {
                    bad.push(at.to_owned());
                }
                for (k, v) in o {
                    walk(v, &format!("{at}/{k}"), bad);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{at}/{i}"), bad);
                }
            }
            _ => {}
        }
    }
    let names = output_schemas();
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        let mut bad = Vec::new();
        walk(&schema(name), name, &mut bad);
        assert!(bad.is_empty(), "open objects: {bad:?}");
    }
}

#[test]
fn schema_names_and_the_default() {
    let bare = ckpt().arg("schema").output().unwrap();
    let sidecar = ckpt().args(["schema", "sidecar"]).output().unwrap();
    assert!(bare.status.success());
    assert_eq!(bare.stdout, sidecar.stdout);
    let v: Value = serde_json::from_slice(&bare.stdout).unwrap();
    assert_eq!(
        v["$id"],
        "https://github.com/ckpt-dev/ckpt/schema/metadata-1.0.json"
    );
    for name in output_schemas() {
        let s = schema(&name);
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(s["title"], format!("ckpt {name} --format json"));
    }

    let unknown = ckpt().args(["schema", "nonesuch"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("nonesuch"), "{err}");
    for name in ["sidecar", "scan", "inspect", "validate"] {
        assert!(
            err.contains(name),
            "{name} not among the known names: {err}"
        );
    }
    let listed = output_schemas();
    for name in ["scan", "inspect", "validate"] {
        assert!(
            listed.iter().any(|l| l == name),
            "{name} not in --help: {listed:?}"
        );
    }
}

/// The command output schemas `ckpt schema --help` lists (every name but `sidecar`), so a
/// schema added to the registry is held to the checks above without editing them.
fn output_schemas() -> Vec<String> {
    let help = ckpt().args(["schema", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let list = help
        .split_once("Schemas:")
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("no Schemas: list in\n{help}"));
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "sidecar")
        .map(str::to_owned)
        .collect()
}

/// The validator's keywords beyond what today's schemas use (tuples, sets, lengths, bounds,
/// `allOf`) reject what they should, so a schema that starts using them is really checked.
#[test]
fn the_validator_checks_every_keyword_it_accepts() {
    use serde_json::json;
    let cases = [
        (
            json!({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}),
            json!(["a", 1, 2]),
            json!([1, 1]),
        ),
        (json!({"uniqueItems": true}), json!([1, 2]), json!([1, 1])),
        (json!({"minItems": 1, "maxItems": 2}), json!([1]), json!([])),
        (
            json!({"minLength": 2, "maxLength": 3}),
            json!("abc"),
            json!("abcd"),
        ),
        (
            json!({"allOf": [{"type": "integer"}, {"minimum": 0}]}),
            json!(3),
            json!(-3),
        ),
        (json!({"exclusiveMinimum": 0}), json!(1), json!(0)),
        (
            json!({"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255}),
            json!(255),
            json!(256),
        ),
        (
            json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
            json!(1.5),
            json!(1),
        ),
        (json!({"enum": ["a", "b"]}), json!("a"), json!("c")),
        (json!({"const": "dcp"}), json!("dcp"), json!("zip")),
        (
            json!({"pattern": "^1\\.[0-9]+$"}),
            json!("1.0"),
            json!("2.0"),
        ),
        (
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            json!({"k": "v"}),
            json!({"k": 1}),
        ),
    ];
    for (schema, good, bad) in cases {
        assert_eq!(
            violations(&schema, &good),
            Vec::<String>::new(),
            "{schema} on {good}"
        );
        assert!(
            !violations(&schema, &bad).is_empty(),
            "{schema} accepted {bad}"
        );
    }
}

#[test]
#[should_panic(expected = "does not know keyword patternProperties")]
fn the_validator_refuses_a_keyword_it_does_not_know() {
    violations(
        &serde_json::json!({"type": "object", "patternProperties": {"^a": false}}),
        &serde_json::json!({"a": 1}),
    );
}

/// `catalog --format json` (streamed and sorted alike) and `--format jsonl` over every fixture
/// and example: the typed `CatalogEntry`, closed objects, exact bytes.
#[test]
fn catalog_output_follows_its_schema_over_every_fixture() {
    use ckpt_catalog::entry::{CatalogEntry, CatalogOutput};
    let streamed = json_stdout(&[
        "catalog",
        "--no-cache",
        "--format",
        "json",
        "fixtures",
        "examples",
    ]);
    let out: CatalogOutput = holds("catalog", &streamed);
    assert!(out.checkpoints.len() > 100, "{}", out.checkpoints.len());
    assert!(
        !out.warnings.is_empty(),
        "the fixtures give warnings: the contract covers them"
    );
    assert!(out.checkpoints.iter().any(|e| !e.conflicts.is_empty()));
    assert!(out.checkpoints.iter().any(|e| e.error.is_some()));
    let sorted = json_stdout(&[
        "catalog",
        "--no-cache",
        "--format",
        "json",
        "--sort",
        "path",
        "fixtures",
        "examples",
    ]);
    let _: CatalogOutput = holds("catalog", &sorted);
    let lines = json_stdout(&["catalog", "--no-cache", "--format", "jsonl", "fixtures"]);
    for line in lines.lines() {
        let e: CatalogEntry = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("jsonl line does not parse into CatalogEntry: {err}"));
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
    }
}
