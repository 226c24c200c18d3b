//! The real binary on the repository's own fixtures (`examples/`, `fixtures/`): acceptance of
//! `dump` against torch.load's ground truth, one named test per hostile input, snapshots of
//! `inspect`, and the `scan` contract.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{ckpt, dump_matches, json_files, root};
use predicates::prelude::*;

// ------------------------------------------------------------------ dump = torch.load

#[test]
fn dump_equals_torch_load_on_every_fixture() {
    let exp_dir = root().join("fixtures/expected");
    let expected = json_files(&exp_dir);
    assert!(expected.len() >= 20, "only {} fixtures", expected.len());
    let mut failures = Vec::new();
    for e in &expected {
        let rel = e
            .strip_prefix(&exp_dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let rel = rel.trim_end_matches(".json");
        let file = if rel.starts_with("examples/") {
            root().join(rel)
        } else {
            root().join("fixtures").join(rel)
        };
        if let Err(d) = dump_matches(&file, e) {
            failures.push(format!("{rel}: {d}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dump_at_path_with_dotted_keys() {
    let out = ckpt()
        .args(["dump", "examples/lightning/checkpoints/last.ckpt", "--at"])
        .arg("callbacks.ModelCheckpoint{'monitor': 'val/hmean', 'mode': 'max', 'every_n_train_steps': 0, 'every_n_epochs': 1, 'train_time_interval': None}.monitor")
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout).trim(),
        "\"val/hmean\""
    );
    ckpt()
        .args(["dump", "examples/fsdp/epoch-001.pth", "--compact", "--at"])
        .arg("model._fsdp_wrapped_module.transformer.wte.weight")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "{\"__tensor__\":{\"dtype\":\"float32\",\"shape\":[16,4]}}",
        ));
}

#[test]
fn dump_at_missing_path_is_an_error() {
    ckpt()
        .args([
            "dump",
            "examples/fsdp/epoch-001.pth",
            "--at",
            "nope.nothing",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no value at \"nope.nothing\""));
}

#[test]
fn dictconfig_interpolations_stay_unresolved() {
    ckpt()
        .args([
            "dump",
            "--compact",
            "--at",
            "hyper_parameters.optimizer.scheduled_lr",
        ])
        .arg("examples/lightning_dictconfig/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt")
        .assert()
        .success()
        .stdout("\"${optimizer.lr}\"\n");
}

// ------------------------------------------------------------------ hostile and broken input

/// Run `dump` on a bad fixture and return (exit code, stdout, stderr).
fn dump_bad(name: &str) -> (Option<i32>, String, String) {
    let out = ckpt()
        .arg("dump")
        .arg(Path::new("fixtures/bad").join(name))
        .timeout(std::time::Duration::from_secs(10))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_clean_error(name: &str, needle: &str) {
    let (code, stdout, stderr) = dump_bad(name);
    assert_eq!(code, Some(2), "{name}: stdout {stdout}");
    assert!(stdout.is_empty(), "{name}: wrote to stdout");
    assert_eq!(stderr.lines().count(), 1, "{name}: not one line: {stderr}");
    assert!(
        stderr.contains(name),
        "{name}: does not name the file: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "{name}: expected {needle:?} in {stderr}"
    );
}

fn assert_decoded_call(name: &str, callee: &str) {
    let (code, stdout, stderr) = dump_bad(name);
    assert_eq!(code, Some(0), "{name}: {stderr}");
    assert!(
        stdout.contains(&format!("\"__object__\": \"{callee}\"")),
        "{name}: {stdout}"
    );
    // Whether anything runs is tested by scan_hostile.rs (no_command_runs_a_hostile_payload),
    // in a fresh cwd, with payloads the generator proved live.
}

#[test]
fn empty_file() {
    assert_clean_error("empty.ckpt", "empty file");
}

#[test]
fn truncated_zip() {
    assert_clean_error("truncated_zip.ckpt", "damaged zip archive");
}

#[test]
fn random_bytes() {
    assert_clean_error(
        "random_bytes.ckpt",
        "not a torch checkpoint: unrecognized content",
    );
}

#[test]
fn git_lfs_pointer() {
    assert_clean_error("git_lfs_pointer.ckpt", "Git LFS pointer file");
}

#[test]
fn zip_without_data_pkl() {
    assert_clean_error("zip_without_data_pkl.ckpt", "no data.pkl entry");
}

#[test]
fn bad_opcode() {
    assert_clean_error(
        "bad_opcode.ckpt",
        "unknown opcode 0xff at byte 5 of archive/data.pkl",
    );
}

#[test]
fn unterminated_pickle() {
    assert_clean_error("unterminated_pickle.ckpt", "truncated at byte");
}

#[test]
fn missing_storage_entry() {
    assert_clean_error("missing_storage_entry.ckpt", "missing from the archive");
}

#[test]
fn huge_length_prefix() {
    assert_clean_error("huge_length_prefix.ckpt", "claims 4294967295 bytes");
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    assert_clean_error("deep_nesting_100k.ckpt", "nesting deeper than");
}

#[test]
fn memo_bomb_is_refused_before_expanding() {
    assert_clean_error("memo_bomb_2pow60.ckpt", "expansion limit");
}

#[test]
fn hostile_os_system() {
    assert_decoded_call("hostile_os_system.ckpt", "os.system");
}

#[test]
fn hostile_builtins_eval() {
    assert_decoded_call("hostile_builtins_eval.ckpt", "builtins.eval");
}

#[test]
fn hostile_subprocess_popen() {
    assert_decoded_call("hostile_subprocess_popen.ckpt", "subprocess.Popen");
}

#[test]
fn hostile_inst_os_system() {
    assert_decoded_call("hostile_inst_os_system.ckpt", "os.system");
}

#[test]
fn hostile_newobj_popen() {
    assert_decoded_call("hostile_newobj_popen.ckpt", "subprocess.Popen");
}

#[test]
fn hostile_stack_global_getattr() {
    assert_decoded_call(
        "hostile_stack_global_getattr.ckpt",
        "<result of builtins.getattr(...)>",
    );
}

#[test]
fn hostile_posix_system_in_state_dict() {
    assert_decoded_call("hostile_posix_system_in_state_dict.ckpt", "posix.system");
}

#[test]
fn hostile_raw_pickle() {
    assert_decoded_call("hostile_os_system_raw_pickle.pt", "os.system");
}

#[test]
fn hostile_legacy_stream() {
    assert_decoded_call("hostile_os_system_legacy.pt", "os.system");
}

#[test]
fn a_directory_is_not_a_checkpoint() {
    ckpt()
        .args(["dump", "examples"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "examples: not a torch checkpoint: a directory",
        ));
}

#[test]
fn a_missing_file_is_one_line() {
    ckpt()
        .args(["inspect", "no/such.ckpt"])
        .assert()
        .code(2)
        .stderr("ckpt: error: no/such.ckpt: no such file or directory\n");
}

// ------------------------------------------------------------------ inspect snapshots

#[test]
fn inspect_lightning() {
    let out = ckpt()
        .args([
            "inspect",
            "examples/lightning/checkpoints/epoch=02-step=6-hmean=0.7718.ckpt",
        ])
        .assert()
        .success();
    insta::assert_snapshot!(common::transcript(out.get_output()));
}

#[test]
fn inspect_lightning_dictconfig() {
    let out = ckpt()
        .args([
            "inspect",
            "examples/lightning_dictconfig/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt",
        ])
        .assert()
        .success();
    insta::assert_snapshot!(common::transcript(out.get_output()));
}

#[test]
fn inspect_fsdp_and_ddp() {
    let out = ckpt()
        .args([
            "inspect",
            "examples/fsdp/epoch-001.pth",
            "examples/fsdp/ddp-epoch-002.pth",
        ])
        .assert()
        .success();
    insta::assert_snapshot!(common::transcript(out.get_output()));
}

#[test]
fn inspect_legacy_and_formats() {
    let out = ckpt()
        .args([
            "inspect",
            "fixtures/formats/legacy.pt",
            "fixtures/formats/python_values.pt",
        ])
        .assert()
        .success();
    insta::assert_snapshot!(common::transcript(out.get_output()));
}

#[test]
fn inspect_json_contract() {
    let out = ckpt()
        .args([
            "inspect",
            "--format",
            "json",
            "examples/lightning/checkpoints/last.ckpt",
        ])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let s = &v[0];
    assert_eq!(s["format"], "zip");
    assert_eq!(s["epoch"], 2);
    assert_eq!(s["global_step"], 6);
    assert_eq!(s["lightning_version"], "2.6.6");
    assert_eq!(s["callbacks"][0]["kind"], "ModelCheckpoint");
    assert_eq!(s["callbacks"][0]["monitor"], "val/hmean");
    assert_eq!(s["callbacks"][0]["mode"], "max");
    let best = s["callbacks"][0]["best_model_score"].as_f64().unwrap();
    assert!((best - 0.7718).abs() < 1e-4, "{best}");
    assert_eq!(s["state_dicts"][0]["path"], "state_dict");
    assert_eq!(s["hyper_parameters"]["architecture_name"], "dbnet");
    insta::assert_json_snapshot!(v);
}

#[test]
fn inspect_keeps_going_after_a_bad_file() {
    ckpt()
        .args([
            "inspect",
            "fixtures/bad/empty.ckpt",
            "examples/fsdp/epoch-001.pth",
        ])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("examples/fsdp/epoch-001.pth"))
        .stderr(predicate::str::contains(
            "fixtures/bad/empty.ckpt: empty file",
        ));
}

// ------------------------------------------------------------------ scan

#[test]
fn scan_examples_are_safe() {
    ckpt()
        .args(["scan", "examples"])
        .assert()
        .success()
        .stdout(predicate::str::contains("safe").and(predicate::str::contains("dangerous").not()));
}

#[test]
fn scan_hostile_files_are_dangerous_with_exit_1() {
    for name in [
        "hostile_os_system.ckpt",
        "hostile_builtins_eval.ckpt",
        "hostile_subprocess_popen.ckpt",
        "hostile_inst_os_system.ckpt",
        "hostile_newobj_popen.ckpt",
        "hostile_stack_global_getattr.ckpt",
        "hostile_posix_system_in_state_dict.ckpt",
        "hostile_os_system_raw_pickle.pt",
        "hostile_os_system_legacy.pt",
    ] {
        let out = ckpt()
            .args(["scan", "--format", "json"])
            .arg(Path::new("fixtures/bad").join(name))
            .assert()
            .code(1);
        let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        assert_eq!(v[0]["verdict"], "dangerous", "{name}");
        let g = &v[0]["globals"];
        assert!(
            g.as_array()
                .unwrap()
                .iter()
                .any(|x| x["class"] == "dangerous"),
            "{name}"
        );
        assert!(g[0]["offset"].is_u64());
    }
}

#[test]
fn scan_user_classes_are_unknown() {
    let out = ckpt()
        .args([
            "scan",
            "--format",
            "json",
            "fixtures/formats/user_classes.pt",
            "fixtures/formats/pickled_module.pt",
        ])
        .assert()
        .code(1);
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v[0]["verdict"], "unknown");
    assert_eq!(v[1]["verdict"], "unknown");
}

#[test]
fn scan_unreadable_is_exit_2() {
    ckpt()
        .args([
            "scan",
            "fixtures/bad/truncated_zip.ckpt",
            "examples/fsdp/epoch-001.pth",
        ])
        .assert()
        .code(2)
        .stdout(predicate::str::contains(
            "error      fixtures/bad/truncated_zip.ckpt",
        ));
}

#[test]
fn scan_formats_are_safe() {
    ckpt()
        .args([
            "scan",
            "fixtures/formats/views.pt",
            "fixtures/formats/legacy.pt",
            "fixtures/formats/protocol1.pt",
            "fixtures/formats/protocol5.pt",
            "fixtures/formats/python_values.pt",
            "fixtures/formats/dtypes.pt",
            "fixtures/formats/quantized.pt",
        ])
        .assert()
        .success();
}

#[test]
fn inspect_pickled_module() {
    // `torch.save(model)`: the state dict is read off the module tree, named as
    // `model.state_dict()` names it; the tied weight is seen as shared.
    let out = ckpt()
        .args(["inspect", "fixtures/convert/pickled_module.pt"])
        .assert()
        .success();
    insta::assert_snapshot!(common::transcript(out.get_output()));
}

#[test]
fn inspect_dcp_directory() {
    // A DCP directory is described from `.metadata` alone: files, chunks, tensors sharded
    // across ranks, dtypes, non-tensor keys (real 2-rank save, scripts/make_dcp_fixtures.py).
    let out = ckpt()
        .args(["inspect", "fixtures/convert/dcp/dtensor_mixed"])
        .assert()
        .success();
    insta::assert_snapshot!(common::transcript(out.get_output()));
    let out = ckpt()
        .args([
            "inspect",
            "--format",
            "json",
            "fixtures/convert/dcp/fsdp2_dim0",
        ])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v[0]["format"], "dcp");
    assert_eq!(v[0]["tensors"], 9);
    assert_eq!(v[0]["bytes"], 740);
    assert_eq!(
        v[0]["files"],
        serde_json::json!(["__0_0.distcp", "__1_0.distcp"])
    );
}
