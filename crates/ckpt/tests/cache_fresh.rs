//! A cache that cannot go stale (issue 11): the key of a folder checkpoint covers every file
//! its facts are read from, not only its index.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ckpt, root};
use serde_json::Value;

fn family(dir: &std::path::Path, cache: &std::path::Path) -> (String, String) {
    let o = ckpt()
        .args(["catalog", "--format", "json", "--cache-file"])
        .arg(cache)
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = &v["checkpoints"][0];
    (
        e["model"]["family"].as_str().unwrap_or("").to_owned(),
        e["sources"]["model.family"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

#[test]
fn a_sharded_folder_is_read_again_when_its_config_or_a_shard_changes() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("hf");
    let cache = t.path().join("cache.sqlite");
    ckpt()
        .args([
            "convert",
            "--to",
            "safetensors",
            "--max-shard-size",
            "1000",
            "--output-dir",
        ])
        .arg(&out)
        .arg(root().join("examples/fsdp/epoch-001.pth"))
        .assert()
        .success();
    let dir = out.join("epoch-001");
    assert!(dir.join("model.safetensors.index.json").is_file());
    assert_eq!(family(&dir, &cache).0, "gpt2");
    // A config.json appears beside the shards (the index is untouched).
    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    assert_eq!(
        family(&dir, &cache),
        ("llama".to_owned(), "json_report".to_owned())
    );
    // And goes again.
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert_eq!(family(&dir, &cache).0, "gpt2");
    // A shard rewritten with other tensors: the count follows.
    let count = |cache: &std::path::Path| {
        let o = ckpt()
            .args(["catalog", "--format", "json", "--cache-file"])
            .arg(cache)
            .arg(&dir)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["checkpoints"][0]["tensors"].as_u64().unwrap()
    };
    let before = count(&cache);
    let shard = dir.join("model-00003-of-00003.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    // An empty safetensors file: an 8-byte header length and `{}`.
    let mut empty = 2u64.to_le_bytes().to_vec();
    empty.extend_from_slice(b"{}");
    std::fs::write(&shard, &empty).unwrap();
    assert!(count(&cache) < before);
    std::fs::write(&shard, bytes).unwrap();
    assert_eq!(count(&cache), before);
}
