//! One rule for "which mapping is the state dict", through the real binary: `inspect` lists
//! first, `convert` writes, `catalog` counts and `convert-legacy` records the same mapping —
//! the one torch's own layout says holds the model (`fixtures/state_dict/expected.json`,
//! written by `scripts/make_state_dict_fixtures.py`). Before `ckpt-model` the first four
//! fixtures split the commands: `inspect` took the first mapping breadth first (an EMA copy, a
//! two-tensor normalizer, a tensor dict listed before a pickled module), `convert` the
//! well-known key or the largest mapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{ckpt, root};
use serde_json::Value;

/// The fixtures and what torch says about each: (file, state-dict key, tensor names).
fn fixtures() -> Vec<(String, String, Vec<String>)> {
    let p = root().join("fixtures/state_dict/expected.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let files = v["files"].as_object().unwrap();
    assert!(files.len() >= 7, "{files:?}");
    files
        .iter()
        .map(|(f, e)| {
            let names = e["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect();
            (
                f.clone(),
                e["state_dict_key"].as_str().unwrap().to_owned(),
                names,
            )
        })
        .collect()
}

/// Wrapper prefixes removed as the README documents them (written out here, not taken from
/// ckpt): `module.` at the start, the others at the start of any component.
fn unwrap_name(name: &str) -> String {
    let mut n = name.strip_prefix("_orig_mod.").unwrap_or(name).to_owned();
    n = n.strip_prefix("module.").map(str::to_owned).unwrap_or(n);
    for w in [
        "_fsdp_wrapped_module.",
        "_checkpoint_wrapped_module.",
        "_fpw_module.",
    ] {
        n = n.replace(w, "");
    }
    n
}

fn json_of(args: &[&str], file: &Path) -> Value {
    let o = ckpt().args(args).arg(file).assert().success();
    serde_json::from_slice(&o.get_output().stdout).unwrap()
}

/// Tensor names in a safetensors file's header.
fn safetensors_names(p: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect()
}

#[test]
fn inspect_convert_catalog_and_sidecars_pick_the_same_state_dict() {
    let tmp = tempfile::tempdir().unwrap();
    for (file, key, names) in fixtures() {
        let path = root().join("fixtures/state_dict").join(&file);

        // inspect: the model's state dict is listed first.
        let i = json_of(&["inspect", "--format", "json"], &path);
        let i = if i.is_array() { i[0].clone() } else { i };
        let first = &i["state_dicts"][0];
        assert_eq!(first["path"], key.as_str(), "inspect, {file}");
        assert_eq!(first["tensors"], names.len(), "inspect, {file}");

        // convert: writes that mapping, wrappers removed, and says which key it was.
        let out = tmp.path().join(format!("out-{file}"));
        let o = ckpt()
            .args(["convert", "--to", "safetensors", "--format", "json"])
            .arg(&path)
            .arg("--output-dir")
            .arg(&out)
            .assert()
            .success();
        let c: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
        assert_eq!(c["failed"], 0, "{file}: {c}");
        let report = &c["conversions"][0]["report"];
        assert_eq!(report["state_dict_key"], key.as_str(), "convert, {file}");
        let stem = file.rsplit_once('.').unwrap().0;
        let written = safetensors_names(&out.join(stem).join("model.safetensors"));
        let want: BTreeSet<String> = names.iter().map(|n| unwrap_name(n)).collect();
        assert_eq!(written, want, "convert, {file}");

        // catalog: its parameter count is that state dict's.
        let cat = json_of(&["catalog", "--no-cache", "--format", "json"], &path);
        let entry = &cat["checkpoints"][0];
        assert!(entry["error"].is_null(), "{file}: {entry}");
        assert_eq!(entry["params"], first["elements"], "catalog, {file}");

        // convert-legacy: the sidecar records that key.
        let copy = tmp.path().join(format!("legacy-{stem}")).join(&file);
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&path, &copy).unwrap();
        ckpt()
            .args(["convert-legacy", "--checkpoint"])
            .arg(&copy)
            .assert()
            .success();
        let sidecar = copy.with_file_name(format!("{stem}.metadata.yaml"));
        let v = ckpt_meta::yaml::parse(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
        assert_eq!(
            v["state"]["state_dict_key"],
            key.as_str(),
            "sidecar, {file}"
        );
    }
}

/// An explicit `--key` still wins, also for a mapping the rule ranks last (the EMA copy).
#[test]
fn an_explicit_key_converts_the_mapping_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let path = root().join("fixtures/state_dict/ema_first.ckpt");
    let o = ckpt()
        .args(["convert", "--to", "safetensors", "--format", "json"])
        .args(["--key", "ema_state_dict", "--output-dir"])
        .arg(tmp.path())
        .arg(&path)
        .assert()
        .success();
    let c: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    assert_eq!(
        c["conversions"][0]["report"]["state_dict_key"],
        "ema_state_dict"
    );
    let written = safetensors_names(&tmp.path().join("ema_first/model.safetensors"));
    // The EMA copy holds the model's own names, without the LightningModule's `model.`.
    assert!(written.contains("stem.weight"), "{written:?}");
    assert!(!written.iter().any(|n| n.starts_with("model.")));
}
