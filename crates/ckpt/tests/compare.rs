//! `ckpt compare` (issue 11): N checkpoints or runs side by side, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use ckpt_identity::compare::Comparison;
use common::contract::{holds, json_stdout};
use common::{ckpt, copy_tree, root};

/// A run folder stands for its best checkpoint; the hparams that differ, the metrics, the
/// tensors of another shape and the identity components are all there, in the typed JSON
/// its schema describes.
#[test]
fn a_run_and_checkpoints_side_by_side() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run_a");
    copy_tree(&root().join("examples/lightning"), &run);
    let other = root().join("examples/fsdp/epoch-001.pth");
    let out = json_stdout(&[
        "compare",
        "--format",
        "json",
        run.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    let c: Comparison = holds("compare", &out);
    assert_eq!(c.checkpoints.len(), 2);
    // The run's best by its monitor (val/hmean, max): epoch=02.
    assert!(
        c.checkpoints[0]
            .path
            .ends_with("epoch=02-step=6-hmean=0.7718.ckpt"),
        "{:?}",
        c.checkpoints[0]
    );
    let row = |f: &str| {
        c.rows
            .iter()
            .find(|r| r.field == f)
            .unwrap_or_else(|| panic!("{f}"))
    };
    assert!(row("global_step").differs);
    assert_eq!(row("metrics.val/hmean").values[1], serde_json::Value::Null);
    assert!(row("hash").differs);
    assert!(row("architecture").differs);
    assert!(c.tensors.differing > 10);
    assert_eq!(c.tensors.counts, vec![Some(14), Some(29)]);
    // Same-everywhere hparams are left out unless --all.
    assert!(!c.rows.iter().any(|r| r.section == "hparams" && !r.differs));
}

/// Two checkpoints of one run: only what differs is marked, and the table says how much.
#[test]
fn two_checkpoints_of_one_run_in_a_table() {
    let dir = root().join("examples/lightning/checkpoints");
    let o = ckpt()
        .args(["compare", "--wide"])
        .arg(dir.join("epoch=01-step=4-hmean=0.7445.ckpt"))
        .arg(dir.join("epoch=02-step=6-hmean=0.7718.ckpt"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("* epoch"), "{text}");
    assert!(text.contains("* metrics.val/hmean"), "{text}");
    assert!(text.contains("  format"), "{text}");
    // Same architecture: no tensor differs, and the architecture digest row is unmarked.
    assert!(text.contains("0 tensors differ"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("  architecture")),
        "{text}"
    );
}

/// Fewer than two paths is a usage error; a missing one is named.
#[test]
fn compare_needs_two_paths_that_exist() {
    ckpt()
        .args(["compare", "examples/fsdp/epoch-001.pth"])
        .assert()
        .code(2);
    let o = ckpt()
        .args(["compare", "examples/fsdp/epoch-001.pth", "nope.ckpt"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.ckpt"));
}

/// A hostile file is refused with the catalog's reason, not compared.
#[test]
fn a_hostile_file_is_named_with_its_reason() {
    let o = ckpt()
        .args(["compare", "examples/fsdp/epoch-001.pth"])
        .arg(root().join("fixtures/hostile/frame_straddle_zip.pt"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("frame_straddle_zip.pt"), "{err}");
    assert!(!err.contains("no readable checkpoint"), "{err}");
}
