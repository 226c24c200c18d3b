#![no_main]

//! Writes the input to a file (one per fuzzing process, rewritten each run) and opens it as a
//! checkpoint; when it opens, expands it to JSON with tensor hashing, which reads tensor bytes.

use std::path::PathBuf;
use std::sync::OnceLock;

use ckpt_torch::Checkpoint;
use ckpt_torch::json::{JsonOptions, to_json};
use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("ckpt-fuzz-torch-open-{}.ckpt", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    let Ok(ck) = Checkpoint::open(path) else {
        return;
    };
    let opts = JsonOptions {
        max_nodes: 100_000,
        ..Default::default()
    };
    let _ = to_json(&ck.doc, ck.doc.root(), &opts, &mut |t| {
        ck.tensor_sha256(t, "fuzz")
            .map(Some)
            .map_err(|e| e.to_string())
    });
    let _ = ck.check_storages();
});
