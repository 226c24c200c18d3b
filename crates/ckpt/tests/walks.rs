//! Issue 10, real files from outside the project: folder walks must find `*.pth.tar` (the naming
//! of PyTorch's ImageNet example and of published models), in every command that walks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ckpt, root};

#[test]
fn pth_tar_files_are_found_by_every_walker() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("imagenet");
    std::fs::create_dir_all(&dir).unwrap();
    // torch.save's output whatever the name says; this one was written by torch (examples/).
    std::fs::copy(
        root().join("examples/fsdp/epoch-001.pth"),
        dir.join("model_best.pth.tar"),
    )
    .unwrap();
    std::fs::copy(
        root().join("examples/fsdp/epoch-001.pth"),
        dir.join("checkpoint.pth.tar"),
    )
    .unwrap();
    // A real tar archive's name is not a checkpoint's.
    std::fs::write(dir.join("logs.tar"), b"not a checkpoint").unwrap();

    let o = ckpt()
        .args(["catalog", "--no-cache", "--format", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let paths: Vec<&str> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths.iter().all(|p| p.ends_with(".pth.tar")), "{paths:?}");
    for e in v["checkpoints"].as_array().unwrap() {
        assert!(e["error"].is_null(), "{e}");
        assert_eq!(e["format"], "zip", "{e}");
    }

    let o = ckpt()
        .args(["convert-legacy", "--dry-run", "--exp-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Total checkpoints found: 2"), "{out}");

    let o = ckpt()
        .args([
            "convert",
            "--to",
            "safetensors",
            "--dry-run",
            "--output-dir",
        ])
        .arg(tmp.path().join("out"))
        .arg(&dir)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        all.contains("model_best.pth.tar") && all.contains("checkpoint.pth.tar"),
        "{all}"
    );
    assert!(!all.contains("logs.tar"), "{all}");
}

/// One rule for what is a checkpoint, by content where the name does not say: a torch.save
/// zip named `model`, a pickle named `weights.pkl`, a safetensors file named `final` are found
/// by `catalog`, `convert-legacy` and `convert` alike; logs and configs are never opened.
#[test]
fn checkpoints_without_a_checkpoint_name_are_found_by_content() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let src = root().join("examples/fsdp/epoch-001.pth");
    std::fs::copy(&src, dir.join("model")).unwrap();
    std::fs::copy(&src, dir.join("weights.pkl")).unwrap();
    let mut st = 2u64.to_le_bytes().to_vec();
    st.extend_from_slice(b"{}");
    std::fs::write(dir.join("final"), &st).unwrap();
    std::fs::write(dir.join("notes"), b"plain text, not a checkpoint").unwrap();
    std::fs::write(dir.join("config.yaml"), b"\x80\x02 starts like a pickle").unwrap();

    let o = ckpt()
        .args(["catalog", "--no-cache", "--format", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut names: Vec<String> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            std::path::Path::new(e["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["final", "model", "weights.pkl"]);

    ckpt()
        .args(["convert-legacy", "--exp-dir"])
        .arg(&dir)
        .assert()
        .success();
    assert!(dir.join("model.metadata.yaml").is_file());
    assert!(dir.join("weights.metadata.yaml").is_file());

    let out = tmp.path().join("hf");
    let o = ckpt()
        .args(["convert", "--to", "safetensors", "--output-dir"])
        .arg(&out)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.join("model").is_dir() && out.join("weights").is_dir(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A symbolic link back up the tree (`runs/loop -> ..`) is walked once: each checkpoint is
/// listed once, and the loop is named in a warning.
#[cfg(unix)]
#[test]
fn a_symlink_loop_is_walked_once_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    std::fs::create_dir_all(runs.join("a")).unwrap();
    std::fs::copy(
        root().join("examples/fsdp/epoch-001.pth"),
        runs.join("a/epoch-001.pth"),
    )
    .unwrap();
    std::os::unix::fs::symlink("..", runs.join("a/loop")).unwrap();
    let o = ckpt()
        .args(["catalog", "--no-cache", "--format", "json"])
        .arg(&runs)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let paths: Vec<&str> = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(err.contains("already visited (symlink loop?)"), "{err}");
}
