//! The facts version of the cache, derived from the code that reads facts: a hash of every
//! source file of the crates between the bytes and a cached fact (the pickle VM, the torch
//! reader, model inference, the metadata crate's readers and engine). A change to any of them
//! gives a new version, so an existing cache can never serve facts an older reader produced
//! (the hand-bumped number it replaces drifted three times). The entry version also covers
//! this crate's own code: a cached resolved entry is what that code made of the facts.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A positive 63-bit hash of these files' names (relative to `crates`) and contents.
fn version_of(files: &[PathBuf], crates: &Path) -> i64 {
    let mut h = Sha256::new();
    for f in files {
        let rel = f.strip_prefix(crates).unwrap_or(f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(std::fs::read(f).unwrap_or_default());
        h.update([0]);
    }
    let d = h.finalize();
    let mut v = [0u8; 8];
    v.copy_from_slice(&d[..8]);
    // Positive, so it reads well in `cache info` and SQLite.
    i64::from_be_bytes(v) & i64::MAX
}

fn main() {
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let crates = here.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut files = Vec::new();
    for c in ["ckpt-pickle", "ckpt-torch", "ckpt-model", "ckpt-meta"] {
        let src = crates.join(c).join("src");
        println!("cargo:rerun-if-changed={}", src.display());
        rs_files(&src, &mut files);
    }
    files.sort();
    println!(
        "cargo:rustc-env=CKPT_FACTS_VERSION={}",
        version_of(&files, &crates)
    );
    // A resolved entry also depends on this crate's discovery, resolution and entry code.
    let src = here.join("src");
    println!("cargo:rerun-if-changed={}", src.display());
    rs_files(&src, &mut files);
    files.sort();
    println!(
        "cargo:rustc-env=CKPT_ENTRY_VERSION={}",
        version_of(&files, &crates)
    );
}
