//! TorchScript archives (`torch.jit.save`) and `argparse.Namespace` / `AttributeDict` values,
//! through the real binary, against what torch itself says about the files in
//! `fixtures/torchscript/` and `fixtures/namespace/` (made by
//! `scripts/make_torchscript_fixtures.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{ckpt, dump_matches, root};
use serde_json::Value;

/// The archives torch loads (not the hostile one).
const LOADABLE: &[&str] = &[
    "scripted_convbn.pt",
    "nested_buffers.pt",
    "traced.pt",
    "bf16.pt",
    "setstate.pt",
    "frozen.pt",
];

fn ts(name: &str) -> PathBuf {
    Path::new("fixtures/torchscript").join(name)
}

fn expected(name: &str, suffix: &str) -> Value {
    let p = root()
        .join("fixtures/torchscript/expected")
        .join(format!("{name}{suffix}"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// stdout, stderr and exit code of one run, for snapshots.
fn transcript(args: &[&str]) -> String {
    common::transcript(&ckpt().args(args).output().unwrap())
}

fn json_of(args: &[&str]) -> Value {
    let out = ckpt().args(args).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_owned())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn inspect_torchscript_shows_module_code_constants_parameters_and_buffers() {
    insta::assert_snapshot!(
        "inspect_torchscript_table",
        transcript(&[
            "inspect",
            "fixtures/torchscript/scripted_convbn.pt",
            "fixtures/torchscript/traced.pt",
            "fixtures/torchscript/setstate.pt",
        ])
    );
}

/// For every archive: the format, the root module, code files, named parameters and buffers
/// (names, shapes, dtypes) are what torch.jit.load reports.
#[test]
fn inspect_torchscript_json_agrees_with_torch() {
    for name in LOADABLE {
        let facts = expected(name, ".facts.json");
        let v = json_of(&["inspect", "--format", "json", ts(name).to_str().unwrap()]);
        let s = &v[0];
        assert_eq!(s["format"], "torchscript", "{name}");
        assert_eq!(s["zip_root"], facts["root"], "{name}");
        assert_eq!(
            s["top_level"], "object torch.jit._script.RecursiveScriptModule",
            "{name}"
        );
        let t = &s["torchscript"];
        assert_eq!(
            t["qualified_name"], facts["modules"][0]["qualified_name"],
            "{name}"
        );
        assert_eq!(
            t["original_name"], facts["modules"][0]["original_name"],
            "{name}"
        );
        let code: Vec<String> = names(&t["code_files"]);
        assert_eq!(code, strings(&facts["code_files"]), "{name}");
        assert_eq!(
            names(&t["extra_files"]),
            strings(&facts["extra_files"]),
            "{name}"
        );
        assert!(t["code_bytes"].as_u64().unwrap() > 0, "{name}");
        let torch_modules = facts["modules"].as_array().unwrap();
        assert_eq!(
            t["modules"].as_u64().unwrap() as usize,
            torch_modules.len(),
            "{name}"
        );
        for m in torch_modules {
            assert!(
                t["module_classes"]
                    .as_array()
                    .unwrap()
                    .contains(&m["qualified_name"]),
                "{name}: {} missing from {}",
                m["qualified_name"],
                t["module_classes"]
            );
        }
        if *name == "setstate.pt" {
            // Its state is a tuple that TorchScript __setstate__ unpacks (read as data, not
            // run): the parameter is named as torch names it; the class still runs code at
            // load, and that is said.
            assert_eq!(t["set_by_setstate"], serde_json::json!([]));
            assert_eq!(
                t["setstate_classes"],
                serde_json::json!(["__torch__.WithSetstate"])
            );
        }
        assert_eq!(
            names(&t["parameters"]),
            strings(&facts["parameters"]),
            "{name}"
        );
        assert_eq!(names(&t["buffers"]), strings(&facts["buffers"]), "{name}");
        // shapes and dtypes, from torch's own dump of the module
        let dump = expected(name, ".json");
        for (kind, list) in [("parameters", &t["parameters"]), ("buffers", &t["buffers"])] {
            for p in list.as_array().unwrap() {
                let truth = &dump["state"][kind][p["name"].as_str().unwrap()]["__tensor__"];
                assert_eq!(p["dtype"], truth["dtype"], "{name} {}", p["name"]);
                assert_eq!(p["shape"], truth["shape"], "{name} {}", p["name"]);
            }
        }
        // the state dict, named as torch.jit.load(f).state_dict() names it
        let sd = expected(name, ".state_dict.json");
        let sds = s["state_dicts"].as_array().unwrap();
        assert_eq!(sds.len(), 1, "{name}");
        assert_eq!(
            sds[0]["tensors"].as_u64().unwrap() as usize,
            sd.as_object().unwrap().len(),
            "{name}"
        );
    }
}

#[test]
fn inspect_torchscript_counts_constants_and_other_pickles() {
    let v = json_of(&[
        "inspect",
        "--format",
        "json",
        "fixtures/torchscript/traced.pt",
        "fixtures/torchscript/frozen.pt",
    ]);
    let traced = &v[0]["torchscript"];
    assert_eq!(traced["constants"], 1);
    assert_eq!(
        traced["constant_tensors"],
        serde_json::json!([{"name": "c0", "dtype": "float32", "shape": [2]}])
    );
    assert_eq!(
        traced["other_pickles"],
        serde_json::json!(["traced/traced_inputs.pkl"])
    );
    // torch.jit.freeze folds the weights into constants: no parameters, four constant tensors
    let frozen = &v[1]["torchscript"];
    assert_eq!(frozen["parameters"], serde_json::json!([]));
    assert_eq!(frozen["constant_tensors"].as_array().unwrap().len(), 4);
}

/// `ckpt dump` gives what `torch.load` returns: the RecursiveScriptModule with its parameters
/// and buffers, every tensor's sha256 equal to torch's.
#[test]
fn dump_torchscript_is_the_recursive_script_module_torch_load_returns() {
    for name in LOADABLE {
        let exp = root()
            .join("fixtures/torchscript/expected")
            .join(format!("{name}.json"));
        if let Err(d) = dump_matches(&ts(name), &exp) {
            panic!("{name}: {d}");
        }
    }
}

/// A module whose TorchScript `__setstate__` unpacks a tuple into its attributes: dump names
/// the parameter torch names (read through the unpacking, never by running it).
#[test]
fn dump_torchscript_setstate_module_names_its_parameter() {
    let v = json_of(&["dump", "fixtures/torchscript/setstate.pt"]);
    assert_eq!(v["__object__"], "torch.jit._script.RecursiveScriptModule");
    assert_eq!(v["state"]["qualified_name"], "__torch__.WithSetstate");
    assert!(v["state"]["set_by_setstate"].is_null());
    let torch = expected("setstate.pt", ".json");
    let ours: Vec<&String> = v["state"]["parameters"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    let theirs: Vec<&String> = torch["state"]["parameters"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(ours, ["weight"]);
}

#[test]
fn dump_at_a_parameter_of_a_torchscript_module() {
    let out = ckpt()
        .args([
            "dump",
            "--compact",
            "--tensor-hashes",
            "--at",
            "state.parameters.conv.weight",
            "fixtures/torchscript/scripted_convbn.pt",
        ])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let torch = expected("scripted_convbn.pt", ".json");
    assert_eq!(v, torch["state"]["parameters"]["conv.weight"]);
}

/// The tensors of a safetensors file, as `ckpt dump --tensor-hashes` maps them, by name.
fn safetensors_tensors(path: &Path) -> BTreeMap<String, Value> {
    let out = ckpt()
        .args(["dump", "--tensor-hashes"])
        .arg(path)
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `ckpt convert` writes `torch.jit.load(f).state_dict()`: the same names, dtypes, shapes and
/// bytes (sha256) as torch; a tied weight (one storage, two names) is written once and its
/// other name reported in `tied`, as for every checkpoint.
#[test]
fn convert_torchscript_writes_the_state_dict_torch_jit_load_gives() {
    let out = tempfile::tempdir().unwrap();
    for name in [
        "scripted_convbn.pt",
        "nested_buffers.pt",
        "traced.pt",
        "bf16.pt",
        "setstate.pt",
    ] {
        let dir = out.path().join(name);
        let o = ckpt()
            .args([
                "convert",
                "--to",
                "safetensors",
                "--format",
                "json",
                "--output-dir",
            ])
            .arg(&dir)
            .arg(ts(name))
            .assert()
            .success();
        let report: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
        let tied: Vec<String> = report["conversions"][0]["report"]["tied"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .or_else(|| {
                // a single file may land in a folder named after it
                walk_safetensors(&dir)
            })
            .unwrap_or_else(|| panic!("{name}: no safetensors written under {dir:?}"));
        let got = safetensors_tensors(&file);
        let mut want: BTreeMap<String, Value> = expected(name, ".state_dict.json")
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for t in &tied {
            // Dropped as an alias: torch's tensor under that name is one that was written.
            let alias = want
                .remove(t)
                .unwrap_or_else(|| panic!("{name}: tied {t} unknown"));
            assert!(
                got.values().any(|v| *v == alias),
                "{name}: {t} is no written tensor"
            );
        }
        if name == "nested_buffers.pt" {
            assert_eq!(tied, ["out.weight"], "{name}: out is tied to embed");
        }
        assert_eq!(got, want, "{name}");
    }
}

fn walk_safetensors(dir: &Path) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = walk_safetensors(&p) {
                return Some(f);
            }
        } else if p.extension().is_some_and(|x| x == "safetensors") {
            return Some(p);
        }
    }
    None
}

/// An archive whose tensors ckpt cannot name as torch would fails with the reason, and writes
/// nothing (a module whose `__setstate__` computes its state is refused the same way: see
/// ckpt-torch's `a_parameter_computed_by_setstate_leaves_the_state_unknown`).
#[test]
fn convert_torchscript_refuses_frozen_models_with_the_reason() {
    let out = tempfile::tempdir().unwrap();
    let (name, why) = ("frozen.pt", "torch.jit.freeze");
    let dir = out.path().join(name);
    let o = ckpt()
        .args(["convert", "--to", "safetensors", "--output-dir"])
        .arg(&dir)
        .arg(ts(name))
        .assert()
        .code(1);
    // Reported once, on the table's `failed` line.
    let stdout = String::from_utf8_lossy(&o.get_output().stdout).into_owned();
    assert_eq!(String::from_utf8_lossy(&o.get_output().stderr), "");
    assert!(
        stdout.starts_with("failed")
            && stdout.contains("TorchScript archive")
            && stdout.contains(why),
        "{name}: {stdout}"
    );
    assert!(walk_safetensors(&dir).is_none(), "{name}: wrote a file");
}

#[test]
fn catalog_lists_torchscript_archives_with_their_parameters() {
    let v = json_of(&[
        "catalog",
        "--no-cache",
        "--format",
        "json",
        "fixtures/torchscript",
    ]);
    let entries = v["checkpoints"].as_array().unwrap();
    let by_name = |n: &str| {
        entries
            .iter()
            .find(|e| e["path"].as_str().unwrap().ends_with(n))
            .unwrap_or_else(|| panic!("{n} not catalogued"))
    };
    for name in [
        "scripted_convbn.pt",
        "nested_buffers.pt",
        "traced.pt",
        "bf16.pt",
    ] {
        let e = by_name(name);
        assert_eq!(e["format"], "torchscript", "{name}");
        assert!(e["error"].is_null(), "{name}: {}", e["error"]);
        assert_eq!(e["security"], "unknown", "{name}");
        // elements of the state dict torch gives, a tensor under two names (tied) once:
        // the names named_parameters()/named_buffers() keep, which drop such duplicates
        let facts = expected(name, ".facts.json");
        let mut distinct = strings(&facts["parameters"]);
        distinct.extend(strings(&facts["buffers"]));
        let sd = expected(name, ".state_dict.json");
        let total: u64 = sd
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| distinct.contains(k))
            .map(|(_, t)| {
                t["__tensor__"]["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap())
                    .product::<u64>()
            })
            .sum();
        assert_eq!(e["params"].as_u64().unwrap(), total, "{name}");
    }
    // hostile: still refused as a model
    let h = by_name("hostile_os_system.pt");
    assert_eq!(h["security"], "dangerous");
    assert!(h["error"].as_str().unwrap().contains("os.system"));
}

/// `*.jit` is how TorchScript files are often named: the catalog walk finds them.
#[test]
fn catalog_finds_a_torchscript_file_named_jit() {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("fixtures/torchscript/scripted_convbn.pt"),
        d.path().join("model.jit"),
    )
    .unwrap();
    let v = json_of(&[
        "catalog",
        "--no-cache",
        "--format",
        "json",
        d.path().to_str().unwrap(),
    ]);
    let entries = v["checkpoints"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{v}");
    assert!(entries[0]["path"].as_str().unwrap().ends_with("model.jit"));
    assert_eq!(entries[0]["format"], "torchscript");
    assert_eq!(entries[0]["params"], 143);
}

#[test]
fn scan_torchscript_is_unknown_because_of_its_code_not_dangerous() {
    // Every archive of the folder (its README and expected/*.json are `no-pickle`).
    let mut archives: Vec<String> = std::fs::read_dir(root().join("fixtures/torchscript"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pt"))
        .map(|n| format!("fixtures/torchscript/{n}"))
        .collect();
    archives.sort();
    let mut args = vec!["scan"];
    args.extend(archives.iter().map(String::as_str));
    insta::assert_snapshot!("scan_torchscript_table", transcript(&args));
    let v = json_of(&[
        "scan",
        "--format",
        "json",
        "fixtures/torchscript/scripted_convbn.pt",
        "fixtures/torchscript/setstate.pt",
    ]);
    let convbn = &v[0];
    assert_eq!(convbn["verdict"], "unknown");
    let globals = convbn["globals"].as_array().unwrap();
    let find = |n: &str| {
        globals
            .iter()
            .find(|g| g["name"] == n)
            .unwrap_or_else(|| panic!("no {n} in {globals:?}"))
    };
    for tag in [
        "torch.jit._pickle.build_intlist",
        "torch.jit._pickle.restore_type_tag",
        "__torch__.ConvBN",
        "__torch__.torch.nn.modules.conv.Conv2d",
    ] {
        assert_eq!(find(tag)["class"], "safe", "{tag}");
    }
    assert!(
        find("__torch__.ConvBN")["reason"]
            .as_str()
            .unwrap()
            .contains("not imported")
    );
    let code = find("<TorchScript code>");
    assert_eq!(code["class"], "unknown");
    assert_eq!(code["entry"], "scripted_convbn/code/");
    assert_eq!(code["usage"], "referenced");
    // only the code makes it not safe
    assert!(
        globals
            .iter()
            .filter(|g| g["class"] != "safe")
            .all(|g| g["name"] == "<TorchScript code>")
    );
    // a class with a TorchScript __setstate__: its code runs while loading
    let setstate = v[1]["globals"].as_array().unwrap();
    let code = setstate
        .iter()
        .find(|g| g["name"] == "<TorchScript code>")
        .unwrap();
    assert_eq!(code["usage"], "called");
    assert!(
        code["reason"]
            .as_str()
            .unwrap()
            .contains("__setstate__ of __torch__.WithSetstate")
    );
}

/// A Python callable inside a TorchScript-shaped archive keeps its verdict, and exit 1.
#[test]
fn scan_torchscript_archive_with_os_system_is_dangerous() {
    let v = json_of(&[
        "scan",
        "--format",
        "json",
        "fixtures/torchscript/hostile_os_system.pt",
    ]);
    assert_eq!(v[0]["verdict"], "dangerous");
    ckpt()
        .args(["scan", "fixtures/torchscript/hostile_os_system.pt"])
        .assert()
        .code(1);
}

/// A code file that inflates to 64 MiB from 64 KB: read up to the budget, a warning, exit 0,
/// quickly; the bytes it claims are never held at once.
#[test]
fn inspect_torchscript_code_bomb_stops_at_the_budget() {
    let start = std::time::Instant::now();
    let out = ckpt()
        .args([
            "inspect",
            "--format",
            "json",
            "fixtures/torchscript/code_bomb.pt",
        ])
        .assert()
        .success();
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let w = v[0]["warnings"][0].as_str().unwrap();
    assert!(
        w.contains("read up to 16 MiB") && w.contains("bomb/code/__torch__.py"),
        "{w}"
    );
    assert_eq!(v[0]["format"], "torchscript");
}

/// `__torch__.*` and the list tags are only the archive's own when the file is a TorchScript
/// archive: in a plain pickle Python would import them, so they are not on the allowlist there.
#[test]
fn scan_torchscript_names_outside_an_archive_are_not_safe() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("plain.pt");
    // protocol 2: __torch__.M() and torch.jit._pickle.build_intlist([1])
    let mut b = b"\x80\x02c__torch__\nM\n)\x81".to_vec();
    b.extend_from_slice(b"ctorch.jit._pickle\nbuild_intlist\n]K\x01a\x85R\x86.");
    std::fs::write(&p, &b).unwrap();
    let out = ckpt()
        .args(["scan", "--format", "json"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(v[0]["verdict"], "safe");
    let globals = v[0]["globals"].as_array().unwrap();
    assert!(globals.iter().all(|g| g["class"] != "safe"), "{globals:?}");
    assert!(globals.iter().all(|g| g["name"] != "<TorchScript code>"));
}

// ------------------------------------------------------------------ Namespace / AttributeDict

#[test]
fn inspect_shows_namespace_training_args_as_a_namespace_with_fields() {
    insta::assert_snapshot!(
        "inspect_namespace_table",
        transcript(&[
            "inspect",
            "fixtures/namespace/train_args.pt",
            "fixtures/namespace/attribute_dict.pt",
        ])
    );
    let v = json_of(&[
        "inspect",
        "--format",
        "json",
        "fixtures/namespace/train_args.pt",
        "fixtures/namespace/attribute_dict.pt",
    ]);
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/namespace/expected/train_args.pt.json"))
            .unwrap(),
    )
    .unwrap();
    let args = &v[0];
    let kind = args["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "args")
        .unwrap();
    assert_eq!(kind["kind"], "Namespace[45]");
    assert_eq!(args["namespaces"][0]["key"], "args");
    assert_eq!(args["namespaces"][0]["class"], "argparse.Namespace");
    assert_eq!(args["namespaces"][0]["fields"], truth["args"]);
    let ad = &v[1];
    let kind = ad["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == "hparams")
        .unwrap();
    assert_eq!(kind["kind"], "AttributeDict[3]");
    assert_eq!(ad["namespaces"][0]["class"], "AttributeDict");
    assert_eq!(
        ad["namespaces"][0]["fields"]["encoder"],
        serde_json::json!({"name": "resnet", "depth": 18})
    );
}

#[test]
fn dump_namespace_and_attribute_dict_match_torch() {
    for name in ["train_args.pt", "attribute_dict.pt"] {
        let file = Path::new("fixtures/namespace").join(name);
        let exp = root()
            .join("fixtures/namespace/expected")
            .join(format!("{name}.json"));
        if let Err(d) = dump_matches(&file, &exp) {
            panic!("{name}: {d}");
        }
    }
}
