//! Replays fuzzer inputs through `decode`: every file in `tests/fuzz_regressions/` (minimized
//! crashes, timeouts and OOMs found by `cargo fuzz`, kept forever) and the committed seed corpus
//! of the `pickle_decode` target (`fuzz/corpus/pickle_decode/`). Each must return (Ok or Err)
//! without panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    files
}

fn replay(dir: &Path) -> usize {
    let files = files_in(dir);
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(|| ckpt_pickle::decode(&data).map(|p| p.len()));
        assert!(outcome.is_ok(), "decode panicked on {}", path.display());
        // Generous: debug builds decode these in microseconds; this catches runaway loops.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "decode took {:?} on {}",
            start.elapsed(),
            path.display()
        );
    }
    files.len()
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    // The folder exists only once the fuzzer has found something; empty is fine.
    replay(&dir);
}

#[test]
fn fuzz_seed_corpus_does_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pickle_decode");
    let n = replay(&dir);
    // The corpus is committed next to the crate; when present it is not empty.
    if dir.is_dir() {
        assert!(n > 0, "no files in {}", dir.display());
    }
}
