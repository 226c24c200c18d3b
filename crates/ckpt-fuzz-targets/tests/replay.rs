//! Replays every fuzz target's committed inputs through the very function the fuzzer ran
//! (`ckpt_fuzz_targets::<target>`): the corpus `fuzz/corpus/<target>/` and the minimized
//! crashes, timeouts and OOMs kept forever in `fuzz/regressions/<target>/`. Each input must
//! return without panicking, within a time limit. A target whose corpus folder is missing or
//! empty fails, and so does a target or corpus the fuzz crate and this crate disagree on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ckpt_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The inputs in a folder: every regular file but the folder's `README.md`.
fn inputs_in(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (every target needs this folder)", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_none_or(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

fn body(target: &str) -> ckpt_fuzz_targets::Body {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target} in ckpt_fuzz_targets::TARGETS"))
        .1
}

/// Run `target` on every file; returns how many went all the way through.
fn replay(target: &str, files: &[PathBuf]) -> usize {
    let run = body(target);
    let mut through = 0;
    for path in files {
        let data = std::fs::read(path).unwrap();
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(|| run(&data));
        let Ok(all_the_way) = outcome else {
            panic!("{target} panicked on {}", path.display());
        };
        through += usize::from(all_the_way);
        // Generous: a debug build runs these in milliseconds; this catches runaway loops.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{target} took {:?} on {}",
            start.elapsed(),
            path.display()
        );
    }
    through
}

/// The corpus (must hold inputs) and the regressions (may be empty: a README says so).
fn replay_target(target: &str) {
    let corpus = fuzz_dir().join("corpus").join(target);
    let files = inputs_in(&corpus);
    assert!(
        !files.is_empty(),
        "{}: the corpus of {target} is empty",
        corpus.display()
    );
    // A corpus where nothing gets through means the harness stops early (or the code under
    // test rejects even the seeds made from its own fixtures).
    assert!(
        replay(target, &files) > 0,
        "{target}: none of the {} inputs in {} went all the way through",
        files.len(),
        corpus.display()
    );
    let regressions = fuzz_dir().join("regressions").join(target);
    replay(target, &inputs_in(&regressions));
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay_target(stringify!($name));
            }
        )*
        /// The targets with a replay test above, to check none is forgotten.
        const REPLAYED: &[&str] = &[$(stringify!($name)),*];
    };
}

replay_tests!(
    pickle_decode,
    torch_open,
    safetensors_header,
    dcp_convert,
    config_resolve,
    sidecar,
    catalog_tree,
);

/// Every target is replayed here, is a `[[bin]]` of the fuzz crate whose source calls its
/// body in `ckpt_fuzz_targets`, and has its folders; no corpus or regressions folder is left
/// over from a target that is gone.
#[test]
fn every_fuzz_target_is_replayed() {
    let mut names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    let mut replayed = REPLAYED.to_vec();
    replayed.sort_unstable();
    assert_eq!(names, replayed, "TARGETS and the replay tests differ");

    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let mut bins: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "ckpt-fuzz")
        .map(str::to_owned)
        .collect();
    bins.sort_unstable();
    assert_eq!(bins, names, "fuzz/Cargo.toml's [[bin]]s and TARGETS differ");

    for name in &names {
        let src = fuzz_dir().join(format!("fuzz_targets/{name}.rs"));
        let text = std::fs::read_to_string(&src).unwrap();
        assert!(
            text.contains(&format!("ckpt_fuzz_targets::{name}(")),
            "{} does not call ckpt_fuzz_targets::{name}",
            src.display()
        );
    }
    for folder in ["corpus", "regressions"] {
        let mut dirs: Vec<String> = std::fs::read_dir(fuzz_dir().join(folder))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "README.md")
            .collect();
        dirs.sort_unstable();
        assert_eq!(dirs, names, "fuzz/{folder}/ and TARGETS differ");
    }
}
