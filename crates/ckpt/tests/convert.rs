//! `ckpt convert` on the repository's own checkpoints (FSDP- and DDP-style, tied embeddings).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{ckpt, root};
use serde_json::Value;

/// name -> (dtype, shape, sha256) of every tensor `ckpt dump --tensor-hashes` shows at `at`.
fn tensors(file: &Path, at: Option<&str>) -> BTreeMap<String, String> {
    let mut c = ckpt();
    c.args(["dump", "--compact", "--tensor-hashes"]).arg(file);
    if let Some(a) = at {
        c.args(["--at", a]);
    }
    let o = c.assert().success();
    let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, t)| t.get("__tensor__").map(|t| (k.clone(), t.to_string())))
        .collect()
}

fn strip(name: &str) -> String {
    name.replace("_fsdp_wrapped_module.", "")
        .trim_start_matches("module.")
        .to_owned()
}

#[test]
fn fsdp_and_ddp_checkpoints_become_hf_folders_with_the_same_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = ckpt()
        .args([
            "convert",
            "examples/fsdp",
            "--base-model",
            "fixtures/convert/base_model",
            "--output-dir",
        ])
        .arg(&out)
        .args(["--format", "json"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    assert_eq!(v["failed"], 0, "{v}");
    for (file, key) in [
        ("epoch-001.pth", "model"),
        ("ddp-epoch-002.pth", "state_dict"),
    ] {
        let src = tensors(&root().join("examples/fsdp").join(file), Some(key));
        let stem = file.trim_end_matches(".pth");
        let dir = out.join(stem);
        let got = tensors(&dir.join("model.safetensors"), None);
        // every source tensor, wrappers removed, except the tied lm_head
        let want: BTreeMap<String, String> = src
            .iter()
            .map(|(k, t)| (strip(k), t.clone()))
            .filter(|(k, _)| k != "lm_head.weight")
            .collect();
        assert_eq!(got, want, "{file}");
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["architectures"][0], "GPT2LMHeadModel");
        assert_eq!(cfg["dtype"], "float32");
        assert!(dir.join("tokenizer_config.json").is_file());
        assert!(dir.join("generation_config.json").is_file());
        // safetensors metadata says pt
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["format"], "pt");
    }
    // a second run refuses to overwrite; --force replaces
    ckpt()
        .args([
            "convert",
            "examples/fsdp",
            "--base-model",
            "fixtures/convert/base_model",
            "--output-dir",
        ])
        .arg(&out)
        .assert()
        .code(1)
        .stdout(predicates::str::contains("already exists (use --force"))
        .stderr("");
    ckpt()
        .args([
            "convert",
            "examples/fsdp",
            "--force",
            "--base-model",
            "fixtures/convert/base_model",
            "--output-dir",
        ])
        .arg(&out)
        .assert()
        .success();
    // no temporary folders left behind
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn task_file_paths_are_relative_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("output")).unwrap();
    std::fs::copy(
        root().join("examples/fsdp/epoch-001.pth"),
        d.join("output/epoch-001.pth"),
    )
    .unwrap();
    let base = root().join("fixtures/convert/base_model");
    std::fs::write(
        d.join("convert.yaml"),
        format!(
            "task: convert\nexperiment_name: t\nconvert:\n  base_model: \"{}\"\n  checkpoint_path: \"output\"\n  initial_format: \"fsdp\"\n  final_format: \"huggingface\"\n  output_dir: \"converted\"\n",
            base.display()
        ),
    )
    .unwrap();
    ckpt()
        .arg("convert")
        .arg("--config")
        .arg(d.join("convert.yaml"))
        .assert()
        .success();
    assert!(d.join("converted/epoch-001/model.safetensors").is_file());
}

#[test]
fn safetensors_only_and_dry_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("st");
    ckpt()
        .args([
            "convert",
            "examples/fsdp/ddp-epoch-002.pth",
            "--to",
            "safetensors",
            "--dry-run",
            "--output-dir",
        ])
        .arg(&out)
        .assert()
        .success();
    assert!(!out.exists());
    ckpt()
        .args([
            "convert",
            "examples/fsdp/ddp-epoch-002.pth",
            "--to",
            "safetensors",
            "--output-dir",
        ])
        .arg(&out)
        .assert()
        .success();
    // One checkpoint converts into a folder named after it, as each of a folder of them does.
    let dir = out.join("ddp-epoch-002");
    assert!(dir.join("model.safetensors").is_file());
    assert!(!dir.join("config.json").exists());
}

#[test]
fn a_base_model_id_comes_from_the_local_hf_cache_only() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp
        .path()
        .join("hub/models--org--tiny-gpt2/snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    for f in ["config.json", "tokenizer_config.json"] {
        std::fs::copy(
            root().join("fixtures/convert/base_model").join(f),
            snap.join(f),
        )
        .unwrap();
    }
    let out = tmp.path().join("out");
    ckpt()
        .env("HF_HOME", tmp.path())
        .args([
            "convert",
            "examples/fsdp/epoch-001.pth",
            "--base-model",
            "org/tiny-gpt2",
            "--output-dir",
        ])
        .arg(&out)
        .assert()
        .success();
    assert!(out.join("epoch-001/config.json").is_file());
    ckpt()
        .env("HF_HOME", tmp.path())
        .args([
            "convert",
            "examples/fsdp/epoch-001.pth",
            "--base-model",
            "org/absent",
            "--output-dir",
        ])
        .arg(tmp.path().join("x"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("never downloads"));
}

fn header(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[8..8 + n]).unwrap()
}

#[test]
fn shards_and_an_index_above_the_shard_size() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let sharded = tmp.path().join("sharded");
    for (out, extra) in [(&whole, None), (&sharded, Some("700B"))] {
        let mut c = ckpt();
        c.args([
            "convert",
            "examples/fsdp/epoch-001.pth",
            "--to",
            "safetensors",
            "--output-dir",
        ])
        .arg(out);
        if let Some(size) = extra {
            // --sync: the shards (written in parallel) are flushed as they are written
            c.args(["--max-shard-size", size, "--sync"]);
        }
        c.assert().success();
    }
    let (whole, sharded) = (whole.join("epoch-001"), sharded.join("epoch-001"));
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(sharded.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let map = index["weight_map"].as_object().unwrap();
    let shards: std::collections::BTreeSet<&str> =
        map.values().map(|v| v.as_str().unwrap()).collect();
    assert!(shards.len() > 1, "{shards:?}");
    assert!(
        shards
            .iter()
            .all(|s| s.starts_with("model-000") && s.contains(&format!("-of-{:05}", shards.len())))
    );
    // the shards together hold exactly the tensors of the unsharded file, byte for byte
    let mut got = BTreeMap::new();
    for s in &shards {
        let p = sharded.join(s);
        assert!(header(&p).as_object().unwrap().len() > 1);
        got.extend(tensors(&p, None));
    }
    assert_eq!(got, tensors(&whole.join("model.safetensors"), None));
    let total: u64 = index["metadata"]["total_size"].as_u64().unwrap();
    assert_eq!(total, 2368);
    assert!(!sharded.join("model.safetensors").exists());
}

#[test]
fn dtype_casts() {
    let tmp = tempfile::tempdir().unwrap();
    for (flag, st, name) in [
        ("bf16", "BF16", "bfloat16"),
        ("fp16", "F16", "float16"),
        ("fp32", "F32", "float32"),
    ] {
        let out = tmp.path().join(flag);
        ckpt()
            .args([
                "convert",
                "examples/fsdp/epoch-001.pth",
                "--base-model",
                "fixtures/convert/base_model",
                "--dtype",
                flag,
                "--output-dir",
            ])
            .arg(&out)
            .assert()
            .success();
        let out = out.join("epoch-001");
        let h = header(&out.join("model.safetensors"));
        for (k, v) in h.as_object().unwrap() {
            if k != "__metadata__" {
                assert_eq!(v["dtype"], st, "{k}");
            }
        }
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["dtype"], name);
    }
    // fp16 -> fp32 of values that are exact in fp16 round-trips bit for bit
    let f16 = tmp.path().join("fp16/epoch-001/model.safetensors");
    ckpt()
        .arg("convert")
        .arg(&f16)
        .args(["--to", "safetensors", "--dtype", "fp32", "--output-dir"])
        .arg(tmp.path().join("back"))
        .assert()
        .success();
    ckpt()
        .args([
            "convert",
            "--dtype",
            "int8",
            "examples/fsdp/epoch-001.pth",
            "--to",
            "safetensors",
            "--output-dir",
        ])
        .arg(tmp.path().join("bad"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("keep, bf16, fp16 or fp32"));
}

/// `ckpt convert IN --to safetensors --output-dir OUT [extra…]`; the JSON report.
fn to_safetensors(input: &Path, out: &Path, extra: &[&str]) -> Value {
    let o = ckpt()
        .arg("convert")
        .arg(input)
        .args(["--to", "safetensors", "--format", "json", "--output-dir"])
        .arg(out)
        .args(extra)
        .assert()
        .success();
    serde_json::from_slice(&o.get_output().stdout).unwrap()
}

#[test]
fn dcp_tensors_sharded_across_ranks_are_reassembled() {
    // Real DCP saves from 2 ranks (scripts/make_dcp_fixtures.py): FSDP2 row shards (uneven,
    // one rank empty), DTensor column shards, bf16, a replicated tensor saved once.
    let tmp = tempfile::tempdir().unwrap();
    let dcp = root().join("fixtures/convert/dcp");
    for (case, key, other) in [
        ("fsdp2_dim0", "model", vec![]),
        ("fsdp2_bf16", "model", vec![]),
        ("dtensor_mixed", "", vec!["sched.lr", "step"]),
    ] {
        let out = tmp.path().join(case);
        let v = to_safetensors(&dcp.join(case), &out, &[]);
        assert_eq!(v["conversions"][0]["status"], "succeeded", "{v}");
        let r = &v["conversions"][0]["report"];
        assert_eq!(r["state_dict_key"], key, "{case}");
        let mut got_other: Vec<&str> = r["other_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        got_other.sort();
        assert_eq!(got_other, other, "{case}");
        let want = tensors(&dcp.join(format!("{case}.expected.safetensors")), None);
        assert!(want.len() >= 4);
        assert_eq!(
            tensors(&out.join(case).join("model.safetensors"), None),
            want,
            "{case}"
        );
    }
    // A cast of column chunks written run by run equals the cast of the whole tensor.
    let whole = tmp.path().join("whole-fp16");
    to_safetensors(
        &dcp.join("dtensor_mixed.expected.safetensors"),
        &whole,
        &["--dtype", "fp16"],
    );
    let sharded = tmp.path().join("sharded-fp16");
    to_safetensors(&dcp.join("dtensor_mixed"), &sharded, &["--dtype", "fp16"]);
    let got = tensors(&sharded.join("dtensor_mixed/model.safetensors"), None);
    assert_eq!(
        got,
        tensors(
            &whole.join("dtensor_mixed.expected/model.safetensors"),
            None
        )
    );
    assert!(got.values().all(|t| t.contains("\"float16\"")), "{got:?}");
}

#[test]
fn every_safetensors_dtype_and_view_converts_bit_for_bit() {
    // float32/16, bf16, the three float8 formats safetensors names, integers, bool, and views
    // saved with their storage (transpose, stepped slice, offset row, expand), against
    // `safetensors.torch.save_file` of contiguous copies (scripts/make_convert_fixtures.py).
    let tmp = tempfile::tempdir().unwrap();
    let fx = root().join("fixtures/convert");
    let out = tmp.path().join("out");
    let v = to_safetensors(&fx.join("dtypes_views.pt"), &out, &[]);
    assert_eq!(v["failed"], 0, "{v}");
    let st = out.join("dtypes_views/model.safetensors");
    let want = tensors(&fx.join("dtypes_views.expected.safetensors"), None);
    assert_eq!(want.len(), 17);
    assert_eq!(tensors(&st, None), want);
    let h = header(&st);
    for (name, dtype) in [
        ("f8_e4m3fn", "F8_E4M3"),
        ("f8_e5m2", "F8_E5M2"),
        ("f8_e8m0fnu", "F8_E8M0"),
        ("bf16", "BF16"),
        ("f16", "F16"),
        ("bool", "BOOL"),
    ] {
        assert_eq!(h[name]["dtype"], dtype, "{name}");
    }
    // Casting strided views goes through the same bounded gather: equal to casting the
    // contiguous copies; float8 and integers are left as they are.
    let a = tmp.path().join("views-bf16");
    let b = tmp.path().join("copies-bf16");
    to_safetensors(&fx.join("dtypes_views.pt"), &a, &["--dtype", "bf16"]);
    to_safetensors(
        &fx.join("dtypes_views.expected.safetensors"),
        &b,
        &["--dtype", "bf16"],
    );
    let got = tensors(&a.join("dtypes_views/model.safetensors"), None);
    assert_eq!(
        got,
        tensors(&b.join("dtypes_views.expected/model.safetensors"), None)
    );
    assert!(got["transposed"].contains("\"bfloat16\""));
    assert!(got["f8_e5m2"].contains("\"float8_e5m2\""));
    assert!(got["i64"].contains("\"int64\""));
}

#[test]
fn a_dcp_save_from_many_ranks_converts_like_the_single_file() {
    // The same GPT-2-shaped tensors as one torch.save file and as DCP directories saved by 3
    // and by 40 ranks (row shards; with 40, small tensors leave most ranks empty).
    let tmp = tempfile::tempdir().unwrap();
    let tensors = ckpt_test_support::gpt2_fsdp_tensors(2, 32, 128, 64);
    let file = tmp.path().join("model.pth");
    ckpt_test_support::write_state_dict_checkpoint(&file, &tensors).unwrap();
    let single = tmp.path().join("single");
    to_safetensors(&file, &single, &[]);
    let want = tensors_of(&single.join("model"));
    assert_eq!(want.len(), 28);
    for ranks in [3, 40] {
        let dir = tmp.path().join(format!("dcp{ranks}"));
        ckpt_test_support::write_dcp_checkpoint(&dir, &tensors, ranks).unwrap();
        let out = tmp.path().join(format!("out{ranks}"));
        let v = to_safetensors(&dir, &out, &[]);
        let r = &v["conversions"][0]["report"];
        assert_eq!(r["other_keys"], serde_json::json!(["step"]), "{v}");
        assert_eq!(
            r["stripped_prefixes"],
            serde_json::json!(["_fsdp_wrapped_module."]),
            "{v}"
        );
        assert_eq!(
            tensors_of(&out.join(format!("dcp{ranks}"))),
            want,
            "{ranks} ranks"
        );
    }
}

fn tensors_of(out: &Path) -> BTreeMap<String, String> {
    tensors(&out.join("model.safetensors"), None)
}

#[test]
fn a_damaged_dcp_directory_fails_clearly_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let tensors = ckpt_test_support::gpt2_fsdp_tensors(1, 8, 16, 8);
    let make = |name: &str| {
        let dir = tmp.path().join(name);
        ckpt_test_support::write_dcp_checkpoint(&dir, &tensors, 2).unwrap();
        dir
    };
    let replace = |file: &Path, from: &[u8], to: &[u8]| {
        let mut b = std::fs::read(file).unwrap();
        let at = b.windows(from.len()).position(|w| w == from).unwrap();
        b[at..at + to.len()].copy_from_slice(to);
        std::fs::write(file, b).unwrap();
    };
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        {
            // A storage path out of the directory (same length, so the pickle stays valid).
            let d = make("escape");
            replace(&d.join(".metadata"), b"__1_0.distcp", b"../1_0.distc");
            (d, "leaves the directory")
        },
        {
            let d = make("missing");
            std::fs::remove_file(d.join("__1_0.distcp")).unwrap();
            (d, "__1_0.distcp")
        },
        {
            let d = make("truncated");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d.join("__0_0.distcp"))
                .unwrap();
            let n = f.metadata().unwrap().len();
            f.set_len(n / 2).unwrap();
            (d, "__0_0.distcp")
        },
        {
            // A chunk's archive overwritten at its start.
            let d = make("garbled");
            replace(&d.join("__1_0.distcp"), b"PK\x03\x04", b"XXXX");
            (d, "__1_0.distcp")
        },
        {
            let d = make("no_metadata");
            std::fs::write(d.join(".metadata"), b"\x80\x04N.").unwrap();
            (d, "no state_dict_metadata")
        },
    ];
    for (dir, want) in cases {
        let out = tmp.path().join(format!(
            "{}-out",
            dir.file_name().unwrap().to_string_lossy()
        ));
        let o = ckpt()
            .arg("convert")
            .arg(&dir)
            .args(["--to", "safetensors", "--output-dir"])
            .arg(&out)
            .assert()
            .code(1);
        let text = String::from_utf8_lossy(&o.get_output().stdout).to_string()
            + &String::from_utf8_lossy(&o.get_output().stderr);
        assert!(text.contains(want), "{}: {text}", dir.display());
        assert!(
            text.lines().filter(|l| l.starts_with("failed")).count() == 1,
            "{text}"
        );
        assert!(!out.exists(), "{}", out.display());
        // no temporary folder left beside it either
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn dtype_casts_equal_torch_to_bit_for_bit() {
    // float64 values at, above and below the bf16/f16 rounding ties, subnormals, overflow,
    // signed zeros, infinities, random float64/32/16/bf16 values, against torch's `.to()`
    // (scripts/make_convert_fixtures.py).
    let tmp = tempfile::tempdir().unwrap();
    let fx = root().join("fixtures/convert");
    for flag in ["bf16", "fp16", "fp32"] {
        let out = tmp.path().join(flag);
        to_safetensors(&fx.join("casts.pt"), &out, &["--dtype", flag]);
        let want = tensors(&fx.join(format!("casts.{flag}.safetensors")), None);
        assert_eq!(want.len(), 5);
        assert_eq!(tensors_of(&out.join("casts")), want, "--dtype {flag}");
    }
}

/// A safetensors file of zeros with these (name, dtype, shape) tensors: a base model's own
/// weights, made to order.
fn write_zeros_safetensors(path: &Path, tensors: &[(String, String, Vec<u64>)]) {
    let size = |d: &str| match d {
        "F64" | "I64" => 8,
        "F32" | "I32" => 4,
        "F16" | "BF16" | "I16" => 2,
        _ => 1,
    };
    let mut header = serde_json::Map::new();
    let mut at = 0u64;
    for (name, dtype, shape) in tensors {
        let n = shape.iter().product::<u64>() * size(dtype);
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [at, at + n]}),
        );
        at += n;
    }
    let mut text = serde_json::to_string(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes.resize(bytes.len() + at as usize, 0);
    std::fs::write(path, bytes).unwrap();
}

/// (name, dtype, shape) of every tensor in a safetensors file's header.
fn header_tensors(path: &Path) -> Vec<(String, String, Vec<u64>)> {
    header(path)
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            (
                k.clone(),
                v["dtype"].as_str().unwrap().to_owned(),
                v["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

/// `ckpt convert examples/fsdp/epoch-001.pth --base-model BASE --output-dir OUT [extra…]`:
/// (exit code, stdout, stderr).
fn convert_gpt2_with_base(base: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let o = ckpt()
        .args(["convert", "examples/fsdp/epoch-001.pth", "--base-model"])
        .arg(base)
        .arg("--output-dir")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn names_that_differ_from_the_base_model_by_a_prefix_are_reported_with_the_fix() {
    // A base folder with weights of its own (the tiny GPT-2 converted once, plus one tensor
    // the checkpoint lacks), and conversions whose names carry an extra `model.` (as a
    // LightningModule's attribute would add).
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    common::copy_tree(&root().join("fixtures/convert/base_model"), &base);
    let weights = tmp.path().join("weights");
    to_safetensors(&root().join("examples/fsdp/epoch-001.pth"), &weights, &[]);
    let mut own = header_tensors(&weights.join("epoch-001/model.safetensors"));
    assert_eq!(own.len(), 28);
    own.push(("transformer.extra.bias".into(), "F32".into(), vec![4]));
    write_zeros_safetensors(&base.join("model.safetensors"), &own);
    // Names in common, one the base has that the output lacks: converted, and reported.
    let (code, text, err) = convert_gpt2_with_base(&base, &tmp.path().join("near"), &[]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(
        text.contains(
            "1 missing (the base model has them, the output not): transformer.extra.bias\n"
        ),
        "{text}"
    );
    // `lm_head.weight`, tied and left out on purpose, is not "unexpected" or "missing".
    assert!(!text.contains("unexpected"), "{text}");
    // No name in common: the file fails, and the reason carries the flag that fixes it.
    let out = tmp.path().join("out");
    let (code, text, err) = convert_gpt2_with_base(&base, &out, &["--add-prefix", "model."]);
    assert_eq!(code, 1, "{text}{err}");
    assert_eq!(err, "");
    assert!(
        text.contains(&format!(
            "failed     examples/fsdp/epoch-001.pth: does not fit the base model {}: none of its 28 tensor names is among the base model's 29",
            base.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "28 of the 28 unexpected names match the base model's with --strip-prefix model."
        ),
        "{text}"
    );
    assert!(!out.join("epoch-001").exists());
    // Following the hint (here: not adding the prefix) leaves nothing to report.
    let v = to_safetensors(
        &root().join("examples/fsdp/epoch-001.pth"),
        &tmp.path().join("plain"),
        &[],
    );
    assert!(v["conversions"][0]["report"].get("hint").is_none(), "{v}");
}

#[test]
fn a_base_model_that_does_not_fit_the_checkpoint_fails_that_file_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let bert = root().join("fixtures/convert/bert_base");
    // A config of another architecture (config.json only): BERT's for a GPT-2 checkpoint.
    let out = tmp.path().join("out");
    let (code, text, err) = convert_gpt2_with_base(&bert, &out, &[]);
    assert_eq!((code, err.as_str()), (1, ""), "{text}");
    assert!(
        text.contains(&format!(
            "failed     examples/fsdp/epoch-001.pth: does not fit the base model {}: config.json says model_type \"bert\" but no tensor is named *word_embeddings.weight; its input embedding is transformer.wte.weight, as gpt2 names it",
            bert.display()
        )),
        "{text}"
    );
    assert!(text.ends_with("0 converted, 1 failed\n"), "{text}");
    assert!(!out.exists(), "nothing written");
    // The same architecture with other sizes: every size the config contradicts is named.
    let gpt2 = tmp.path().join("gpt2-other-sizes");
    common::copy_tree(&root().join("fixtures/convert/base_model"), &gpt2);
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(gpt2.join("config.json")).unwrap()).unwrap();
    cfg["vocab_size"] = 50257.into();
    cfg["n_embd"] = 768.into();
    cfg["n_layer"] = 12.into();
    std::fs::write(gpt2.join("config.json"), cfg.to_string()).unwrap();
    let (code, text, _) = convert_gpt2_with_base(&gpt2, &out, &[]);
    assert_eq!(code, 1, "{text}");
    for want in [
        "transformer.wte.weight has 16 rows but config.json says vocab_size 50257",
        "transformer.wte.weight is 4 wide but config.json says n_embd 768",
        "the checkpoint has 2 layers (…h.N.…) but config.json says n_layer 12",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // Weights of its own, one of them another shape: fails, naming it.
    let shaped = tmp.path().join("gpt2-other-shape");
    common::copy_tree(&root().join("fixtures/convert/base_model"), &shaped);
    let weights = tmp.path().join("weights");
    to_safetensors(&root().join("examples/fsdp/epoch-001.pth"), &weights, &[]);
    let mut own = header_tensors(&weights.join("epoch-001/model.safetensors"));
    for t in &mut own {
        if t.0 == "transformer.ln_f.bias" {
            t.2 = vec![8];
        }
    }
    write_zeros_safetensors(&shaped.join("model.safetensors"), &own);
    let (code, text, _) = convert_gpt2_with_base(&shaped, &out, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "1 tensor differ in shape from the base model's: transformer.ln_f.bias is [4] here, [8] in the base model"
        ),
        "{text}"
    );
    // In a batch, the file that does not fit fails and the other converts.
    let batch = tmp.path().join("batch");
    std::fs::create_dir_all(&batch).unwrap();
    std::fs::copy(
        root().join("examples/fsdp/epoch-001.pth"),
        batch.join("gpt2.pth"),
    )
    .unwrap();
    std::fs::copy(
        root().join("fixtures/convert/bert_tied.pt"),
        batch.join("bert.pt"),
    )
    .unwrap();
    let o = ckpt()
        .arg("convert")
        .arg(&batch)
        .arg("--base-model")
        .arg(&bert)
        .arg("--output-dir")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("succeeded  "), "{text}");
    assert!(
        text.contains("gpt2.pth: does not fit the base model"),
        "{text}"
    );
    assert!(text.ends_with("1 converted, 1 failed\n"), "{text}");
    assert!(out.join("bert/model.safetensors").is_file());
    assert!(!out.join("gpt2").exists());
}

#[test]
fn a_pickled_module_converts_as_its_state_dict() {
    // `torch.save(model)` of a module with nested children, BatchNorm buffers, a
    // non-persistent buffer and a tied weight (scripts/make_convert_fixtures.py): the names,
    // order and tensors of torch's own `model.state_dict()`, without importing the class.
    let fx = root().join("fixtures/convert");
    let ck = ckpt_torch::Checkpoint::open(fx.join("pickled_module.pt")).unwrap();
    let names: Vec<String> = ckpt_model::state_dict::module_state_dict(&ck.doc, ck.doc.root())
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "scale",
            "emb.weight",
            "body.0.weight",
            "body.0.bias",
            "body.1.weight",
            "body.1.bias",
            "body.1.running_mean",
            "body.1.running_var",
            "body.1.num_batches_tracked",
            "head.weight"
        ]
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let v = to_safetensors(&fx.join("pickled_module.pt"), &out, &[]);
    assert_eq!(v["failed"], 0, "{v}");
    // `head.weight` is `emb.weight` (one Parameter): written once, under the name
    // safetensors' save_model keeps (the first in sorted order).
    assert_eq!(
        v["conversions"][0]["report"]["tied"],
        serde_json::json!(["head.weight"])
    );
    let mut want = tensors(&fx.join("pickled_module.state_dict.safetensors"), None);
    assert_eq!(want.remove("head.weight"), want.get("emb.weight").cloned());
    assert_eq!(tensors_of(&out.join("pickled_module")), want);
}

#[test]
fn a_folder_of_dcp_saves_converts_each_and_from_dcp_is_checked() {
    // `sharded/step_100/`, `sharded/step.200/` (a dot in a directory name is kept) and a
    // checkpoint file beside them: auto takes all three, `--from dcp` only the directories,
    // and `--from dcp` on a file is refused.
    let tmp = tempfile::tempdir().unwrap();
    let sharded = tmp.path().join("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    let dcp = root().join("fixtures/convert/dcp");
    common::copy_tree(&dcp.join("fsdp2_dim0"), &sharded.join("step_100"));
    common::copy_tree(&dcp.join("dtensor_mixed"), &sharded.join("step.200"));
    std::fs::copy(
        root().join("examples/fsdp/epoch-001.pth"),
        sharded.join("epoch-001.pth"),
    )
    .unwrap();
    let all = tmp.path().join("all");
    let v = to_safetensors(&sharded, &all, &[]);
    assert_eq!(v["conversions"].as_array().unwrap().len(), 3, "{v}");
    for out in ["step_100", "step.200", "epoch-001"] {
        assert!(all.join(out).join("model.safetensors").is_file(), "{out}");
    }
    let only = tmp.path().join("only");
    let v = to_safetensors(&sharded, &only, &["--from", "dcp"]);
    assert_eq!(v["conversions"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        tensors_of(&only.join("step_100")),
        tensors(&dcp.join("fsdp2_dim0.expected.safetensors"), None)
    );
    ckpt()
        .args([
            "convert",
            "examples/fsdp/epoch-001.pth",
            "--from",
            "dcp",
            "--to",
            "safetensors",
            "--output-dir",
        ])
        .arg(tmp.path().join("refused"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "--from dcp needs a torch.distributed.checkpoint directory",
        ));
    assert!(!tmp.path().join("refused").exists());
}

#[test]
fn entries_beside_the_state_dict_are_reported_not_converted() {
    let tmp = tempfile::tempdir().unwrap();
    let file = root().join("examples/fsdp/epoch-001.pth");
    let v = to_safetensors(&file, &tmp.path().join("json"), &[]);
    let r = &v["conversions"][0]["report"];
    assert_eq!(r["state_dict_key"], "model");
    assert_eq!(
        r["other_keys"],
        serde_json::json!(["optimizer", "epoch", "step"])
    );
    ckpt()
        .arg("convert")
        .arg(&file)
        .args(["--to", "safetensors", "--output-dir"])
        .arg(tmp.path().join("table"))
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "not converted (not tensors): optimizer, epoch, step",
        ));
}

#[test]
fn a_dcp_save_of_a_model_with_batchnorm_converts_bit_for_bit() {
    // `dcp.save` of a Conv2d + BatchNorm2d + Linear model in one process
    // (scripts/make_dcp_fixtures.py): BatchNorm's `num_batches_tracked` is a 0-d int64 tensor,
    // whose chunk has no offsets at all. It used to panic; now it converts, and so does the
    // same state dict saved by torch.save, both equal to torch's own tensors.
    let tmp = tempfile::tempdir().unwrap();
    let dcp = root().join("fixtures/convert/dcp");
    let want = tensors(&dcp.join("conv_bn_linear.expected.safetensors"), None);
    assert_eq!(want.len(), 9);
    assert!(
        want["bn.num_batches_tracked"].contains(r#""shape":[]"#),
        "{want:?}"
    );
    assert!(want["bn.num_batches_tracked"].contains(r#""int64""#));
    for (input, folder) in [
        ("conv_bn_linear", "conv_bn_linear"),
        ("conv_bn_linear.pth", "conv_bn_linear"),
    ] {
        let out = tmp.path().join(input);
        let o = ckpt()
            .arg("convert")
            .arg(dcp.join(input))
            .args(["--to", "safetensors", "--format", "json", "--output-dir"])
            .arg(&out)
            .assert()
            .success()
            .stderr("");
        let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
        assert_eq!(v["conversions"][0]["report"]["tensors"], 9, "{v}");
        let st = out.join(folder).join("model.safetensors");
        assert_eq!(tensors(&st, None), want, "{input}");
        assert_eq!(
            header(&st)["bn.num_batches_tracked"],
            serde_json::json!({"dtype": "I64", "shape": [], "data_offsets": header(&st)["bn.num_batches_tracked"]["data_offsets"]})
        );
    }
}

#[test]
fn tied_weights_of_a_bert_style_model_are_written_once_under_the_names_transformers_keeps() {
    // A BertForMaskedLM-shaped state dict (scripts/make_convert_fixtures.py, real torch):
    // `cls.predictions.decoder.weight` is `bert.embeddings.word_embeddings.weight` and
    // `cls.predictions.decoder.bias` is `cls.predictions.bias` (one storage, two names each).
    // Each is written once, under the name safetensors' save_model and transformers keep,
    // and `tied` lists the names left out.
    let tmp = tempfile::tempdir().unwrap();
    let fx = root().join("fixtures/convert");
    let out = tmp.path().join("out");
    let o = ckpt()
        .arg("convert")
        .arg(fx.join("bert_tied.pt"))
        .arg("--base-model")
        .arg(fx.join("bert_base"))
        .args(["--format", "json", "--output-dir"])
        .arg(&out)
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&o.get_output().stdout).unwrap();
    let r = &v["conversions"][0]["report"];
    assert_eq!(
        r["tied"],
        serde_json::json!([
            "cls.predictions.decoder.bias",
            "cls.predictions.decoder.weight"
        ]),
        "{v}"
    );
    assert_eq!(r["tensors"], 42);
    let dir = out.join("bert_tied");
    let want = tensors(&fx.join("bert_tied.expected.safetensors"), None);
    assert_eq!(want.len(), 42);
    assert_eq!(tensors_of(&dir), want);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["architectures"], serde_json::json!(["BertForMaskedLM"]));
    // What inspect calls shared is what convert calls tied.
    let o = ckpt()
        .arg("inspect")
        .arg(fx.join("bert_tied.pt"))
        .assert()
        .success();
    let text = String::from_utf8_lossy(&o.get_output().stdout).to_string();
    assert!(
        text.contains("cls.predictions.decoder.weight, cls.predictions.decoder.bias"),
        "{text}"
    );
    // The table says it too.
    ckpt()
        .arg("convert")
        .arg(fx.join("bert_tied.pt"))
        .args(["--to", "safetensors", "--output-dir"])
        .arg(tmp.path().join("table"))
        .assert()
        .success()
        .stdout(predicates::str::contains(
            r#"(42 tensors, 6.6 KB, tied: ["cls.predictions.decoder.bias","cls.predictions.decoder.weight"])"#,
        ));
}

#[test]
fn one_checkpoint_converts_into_a_folder_named_after_it_as_in_a_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("converted");
    // A file: named without its extension.
    let o = ckpt()
        .args([
            "convert",
            "examples/fsdp/epoch-001.pth",
            "--to",
            "safetensors",
        ])
        .arg("--output-dir")
        .arg(&out)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&o.get_output().stdout).to_string();
    assert!(
        text.starts_with(&format!(
            "succeeded  examples/fsdp/epoch-001.pth -> {}  (28 tensors",
            out.join("epoch-001").display()
        )),
        "{text}"
    );
    assert!(out.join("epoch-001/model.safetensors").is_file());
    // A second checkpoint into the same output directory lands beside it.
    ckpt()
        .args([
            "convert",
            "examples/fsdp/ddp-epoch-002.pth",
            "--to",
            "safetensors",
        ])
        .arg("--output-dir")
        .arg(&out)
        .assert()
        .success();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ddp-epoch-002", "epoch-001"]);
    // A DCP directory: by its own name.
    ckpt()
        .arg("convert")
        .arg(root().join("fixtures/convert/dcp/fsdp2_dim0"))
        .args(["--to", "safetensors", "--output-dir"])
        .arg(&out)
        .assert()
        .success();
    assert!(out.join("fsdp2_dim0/model.safetensors").is_file());
    // The task file's form, with `checkpoint_path` a single file.
    let d = tmp.path().join("task");
    std::fs::create_dir_all(d.join("output")).unwrap();
    std::fs::copy(
        root().join("examples/fsdp/epoch-001.pth"),
        d.join("output/epoch-001.pth"),
    )
    .unwrap();
    std::fs::write(
        d.join("convert.yaml"),
        format!(
            "task: convert\nconvert:\n  base_model: \"{}\"\n  checkpoint_path: \"output/epoch-001.pth\"\n  initial_format: \"fsdp\"\n  final_format: \"huggingface\"\n  output_dir: \"converted\"\n",
            root().join("fixtures/convert/base_model").display()
        ),
    )
    .unwrap();
    ckpt()
        .arg("convert")
        .arg("--config")
        .arg(d.join("convert.yaml"))
        .assert()
        .success();
    assert!(d.join("converted/epoch-001/model.safetensors").is_file());
    assert!(d.join("converted/epoch-001/config.json").is_file());
    assert!(!d.join("converted/model.safetensors").exists());
}

#[test]
fn a_missing_input_or_an_unusable_one_exits_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (input, want) in [
        (
            "outptus/epoch-001.pth".to_owned(),
            "ckpt: error: outptus/epoch-001.pth: no such file or directory\n".to_owned(),
        ),
        (
            "https://example.com/epoch-001.pth".to_owned(),
            "ckpt: error: https://example.com/epoch-001.pth: https:// paths are not supported; ckpt reads local paths and s3://, gs:// and az:// URLs\n".to_owned(),
        ),
        (
            empty.display().to_string(),
            format!(
                "ckpt: error: {}: no checkpoint to convert in this folder (files *.ckpt, *.pt, *.pth, *.bin, *.safetensors, *.jit or torch.distributed.checkpoint directories)\n",
                empty.display()
            ),
        ),
    ] {
        ckpt()
            .args(["convert", &input, "--to", "safetensors", "--output-dir"])
            .arg(&out)
            .assert()
            .code(2)
            .stdout("")
            .stderr(want);
    }
    assert!(!out.exists(), "nothing created for a bad input");
}

#[test]
fn an_unwritable_output_directory_is_one_line_not_one_per_file() {
    // A batch of two checkpoints into an output directory that cannot be created (it would
    // be inside a regular file: this fails for root too), then into one that is read-only.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let o = ckpt()
        .args([
            "convert",
            "examples/fsdp",
            "--to",
            "safetensors",
            "--output-dir",
        ])
        .arg(file.join("out"))
        .assert()
        .code(2)
        .stdout("");
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "ckpt: error: {}: cannot create the output folder",
            file.join("out").display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder");
    // Read-only: chmod 555. Root writes there anyway; then the assertion cannot be made here
    // (the case above covers the mechanism).
    use std::os::unix::fs::PermissionsExt;
    let ro = tmp.path().join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let privileged = std::fs::create_dir(ro.join("probe")).is_ok();
    if privileged {
        std::fs::remove_dir(ro.join("probe")).unwrap();
        eprintln!(
            "running as a user who writes into a mode-555 folder (root): the read-only case is not checked here"
        );
    } else {
        let o = ckpt()
            .args([
                "convert",
                "examples/fsdp",
                "--to",
                "safetensors",
                "--output-dir",
            ])
            .arg(&ro)
            .assert()
            .code(2)
            .stdout("");
        let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!(
                "ckpt: error: {}: cannot write into the output folder",
                ro.display()
            )),
            "{err}"
        );
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_write_failure_is_printed_once_and_names_the_output_not_a_temporary_folder() {
    // Writing the weights fails (the file-size limit of the process is 1 block, and SIGXFSZ is
    // ignored so that write returns EFBIG): the failure is one line of the table, naming the
    // file under the output folder the user asked for; nothing is left behind.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let bin = assert_cmd::cargo::cargo_bin("ckpt");
    // `ckpt()` runs the binary itself: the shell in front of it gets the same scrubbed
    // environment by hand.
    let o = std::process::Command::new("sh")
        .current_dir(root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", common::test_home())
        .args(["-c", "trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\""])
        .arg(&bin)
        .args([
            "convert",
            "examples/fsdp/epoch-001.pth",
            "--to",
            "safetensors",
        ])
        .arg("--output-dir")
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(stderr, "");
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("failed")).collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert_eq!(
        failed[0],
        format!(
            "failed     examples/fsdp/epoch-001.pth: {}: File too large (os error 27)",
            out.join("epoch-001/model.safetensors").display()
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(".tmp-"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn force_replaces_only_a_folder_a_conversion_wrote() {
    // `--force` replaces a previous output; it does not reach a folder holding anything else
    // (here: the DCP save being converted, named as its output would be) or a file.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for _ in 0..2 {
        to_safetensors(
            &root().join("examples/fsdp/epoch-001.pth"),
            &out,
            &["--force"],
        );
    }
    let step = out.join("step_100");
    common::copy_tree(&root().join("fixtures/convert/dcp/fsdp2_dim0"), &step);
    let o = ckpt()
        .arg("convert")
        .arg(&step)
        .args(["--to", "safetensors", "--force", "--output-dir"])
        .arg(&out)
        .assert()
        .code(1);
    let text = String::from_utf8_lossy(&o.get_output().stdout).to_string();
    assert!(
        text.contains(&format!(
            "{}: not replaced, even with --force: it holds",
            step.display()
        )),
        "{text}"
    );
    assert!(step.join(".metadata").is_file(), "the input is intact");
    std::fs::write(out.join("ddp-epoch-002"), "a file of the user's").unwrap();
    ckpt()
        .args([
            "convert",
            "examples/fsdp/ddp-epoch-002.pth",
            "--to",
            "safetensors",
            "--force",
        ])
        .arg("--output-dir")
        .arg(&out)
        .assert()
        .code(1)
        .stdout(predicates::str::contains("it is not a folder"));
    assert_eq!(
        std::fs::read_to_string(out.join("ddp-epoch-002")).unwrap(),
        "a file of the user's"
    );
}

#[test]
fn a_base_model_id_is_looked_up_where_huggingface_hub_looks() {
    // HF_HUB_CACHE, then HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub,
    // HOME/.cache/huggingface/hub — and only the first that is set counts, as in
    // huggingface_hub. The tests' own environment is scrubbed: nothing of the machine's
    // reaches the binary.
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = |hub: &Path| {
        let snap = hub.join("models--org--tiny-gpt2/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::copy(
            root().join("fixtures/convert/base_model/config.json"),
            snap.join("config.json"),
        )
        .unwrap();
    };
    let run = |vars: &[(&str, &Path)], name: &str| {
        let mut c = ckpt();
        for (k, v) in vars {
            c.env(k, v);
        }
        c.args([
            "convert",
            "examples/fsdp/epoch-001.pth",
            "--base-model",
            "org/tiny-gpt2",
            "--output-dir",
        ])
        .arg(tmp.path().join(name))
        .output()
        .unwrap()
    };
    let t = tmp.path();
    for (vars, hub) in [
        (vec![("HF_HUB_CACHE", t.join("a"))], t.join("a")),
        (vec![("HUGGINGFACE_HUB_CACHE", t.join("b"))], t.join("b")),
        (vec![("HF_HOME", t.join("c"))], t.join("c/hub")),
        (
            vec![("XDG_CACHE_HOME", t.join("d"))],
            t.join("d/huggingface/hub"),
        ),
        (
            vec![("HOME", t.join("e"))],
            t.join("e/.cache/huggingface/hub"),
        ),
    ] {
        snapshot(&hub);
        let vars: Vec<(&str, &Path)> = vars.iter().map(|(k, v)| (*k, v.as_path())).collect();
        let name = vars[0].0.to_lowercase();
        let o = run(&vars, &name);
        assert!(o.status.success(), "{name}: {o:?}");
        assert!(
            t.join(&name).join("epoch-001/config.json").is_file(),
            "{name}"
        );
    }
    // The first variable set wins, even when the model is elsewhere.
    let o = run(
        &[
            ("HF_HUB_CACHE", &t.join("nowhere")),
            ("HF_HOME", &t.join("c")),
        ],
        "both",
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains(&format!(
            "not in the local Hugging Face cache ({}); ckpt never downloads",
            t.join("nowhere").display()
        )),
        "{err}"
    );
    // Nothing set by the test: the tests' own home, whatever the machine has.
    let o = run(&[], "none");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains(&format!(
            "({})",
            common::test_home().join(".cache/huggingface/hub").display()
        )),
        "{err}"
    );
}

#[test]
fn a_view_claiming_terabytes_from_a_few_bytes_is_refused_before_writing() {
    // torch.save of `torch.zeros(1).expand(2**28, 2**4)` (scripts/make_convert_fixtures.py): 16
    // GiB as a float32 tensor from a 4-byte storage. Writing it out would fill the disk; it is
    // refused in planning, at once, and nothing is written.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let start = std::time::Instant::now();
    ckpt()
        .arg("convert")
        .arg(root().join("fixtures/convert/expanded_huge.pt"))
        .args(["--to", "safetensors", "--output-dir"])
        .arg(&out)
        .assert()
        .code(1)
        .stderr("")
        .stdout(predicates::str::contains(
            "huge: views repeat their storage into 17179869180 bytes more than the checkpoint holds",
        ));
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert!(!out.exists());
}

#[test]
fn what_every_checkpoint_of_a_batch_would_fail_on_is_one_line_and_exit_2() {
    // No base model for a Hugging Face folder, a base model whose config.json is broken: a
    // usage error, said once for the batch (two checkpoints), before anything is written.
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("config.json"), "{\"model_type\": ").unwrap();
    let out = tmp.path().join("out");
    for (extra, want) in [
        (
            vec![],
            "a Hugging Face folder needs --base-model".to_owned(),
        ),
        (
            vec!["--base-model".to_owned(), broken.display().to_string()],
            format!(
                "base model {}: config.json is not a JSON object",
                broken.display()
            ),
        ),
    ] {
        let o = ckpt()
            .args(["convert", "examples/fsdp", "--output-dir"])
            .arg(&out)
            .args(&extra)
            .assert()
            .code(2)
            .stdout("");
        let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("ckpt: error: {want}")), "{err}");
    }
    assert!(!out.exists());
}

#[test]
fn a_batch_table_with_a_success_and_a_misfit() {
    // stdout, stderr and exit code of a batch where one checkpoint fits the base model and one
    // does not (temp paths filtered).
    let tmp = tempfile::tempdir().unwrap();
    let batch = tmp.path().join("batch");
    std::fs::create_dir_all(&batch).unwrap();
    for (from, to) in [
        ("examples/fsdp/epoch-001.pth", "gpt2.pth"),
        ("fixtures/convert/bert_tied.pt", "bert.pt"),
    ] {
        std::fs::copy(root().join(from), batch.join(to)).unwrap();
    }
    let o = ckpt()
        .arg("convert")
        .arg(&batch)
        .args(["--base-model", "fixtures/convert/bert_base", "--output-dir"])
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let t = tmp.path().display().to_string();
    let text = common::transcript(&o).replace(&t, "[TMP]");
    insta::assert_snapshot!(text);
}
