//! The catalog's cache of resolved entries (issue 11, "the catalog at the speed of stat"): an
//! unchanged tree is answered from stored entries, byte for byte what resolving again gives;
//! an entry is served only while every path its resolution consulted — a run's Hydra config,
//! a folder's listing, a file checked and found absent — has the fingerprint it had.
//!
//! Files here are dated an hour or more back after each change: a path modified within the
//! last two seconds always counts as changing (file systems stamp times from a coarse clock),
//! which would hide whether the fingerprints themselves notice the change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{ckpt, copy_tree, root};
use serde_json::Value;

/// Date `p` (file or folder) `secs` seconds back.
fn date_back(p: &Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    let f = if p.is_dir() {
        std::fs::File::open(p).unwrap()
    } else {
        std::fs::File::options().write(true).open(p).unwrap()
    };
    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

/// Date every file and folder under `root` (and `root`) `secs` seconds back.
fn date_tree_back(root: &Path, secs: u64) {
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            date_tree_back(&p, secs);
        } else {
            date_back(&p, secs);
        }
    }
    date_back(root, secs);
}

struct Run {
    stdout: Vec<u8>,
    json: Value,
    warnings: Vec<String>,
    reused: usize,
    total: usize,
}

/// `ckpt catalog --format json -v` with the cache at `cache`, `extra` arguments first.
fn catalog(dir: &Path, cache: Option<&Path>) -> Run {
    let mut cmd = ckpt();
    cmd.args(["catalog", "--format", "json", "-v"]);
    match cache {
        Some(c) => cmd.arg("--cache-file").arg(c),
        None => cmd.arg("--no-cache"),
    };
    let o = cmd.arg(dir).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.code().is_some_and(|c| c <= 1), "{err}");
    let stats = err
        .lines()
        .find(|l| l.contains("checkpoint(s):"))
        .unwrap_or_else(|| panic!("no stats line in {err}"));
    let num = |before: &str| -> usize {
        let head = stats.split(before).next().unwrap();
        head.rsplit([' ', '(']).next().unwrap().parse().unwrap()
    };
    let total: usize = stats
        .trim_start_matches("ckpt: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    Run {
        json: serde_json::from_slice(&o.stdout).unwrap(),
        stdout: o.stdout,
        warnings: err
            .lines()
            .filter(|l| !l.contains("checkpoint(s):"))
            .map(str::to_owned)
            .collect(),
        reused: if cache.is_some() {
            num(" resolved entries reused")
        } else {
            0
        },
        total,
    }
}

fn entry<'a>(run: &'a Run, suffix: &str) -> &'a Value {
    run.json["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no entry ending {suffix}"))
}

/// A copy of `fixtures/outputs` and the examples, dated an hour back.
fn tree() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tree");
    copy_tree(&root().join("fixtures/outputs"), &dir.join("outputs"));
    copy_tree(&root().join("examples"), &dir.join("examples"));
    date_tree_back(&dir, 3600);
    let cache = t.path().join("cache.sqlite3");
    (t, dir, cache)
}

#[test]
fn an_unchanged_tree_is_served_whole_and_says_what_resolving_again_says() {
    let (_t, dir, cache) = tree();
    let first = catalog(&dir, Some(&cache));
    assert!(first.total >= 20, "{}", first.total);
    assert_eq!(first.reused, 0);
    let second = catalog(&dir, Some(&cache));
    assert_eq!(second.reused, second.total, "{:?}", second.warnings);
    // Byte for byte: entries, best and last marks, conflicts, sources, warnings.
    assert_eq!(
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&first.stdout)
    );
    assert_eq!(second.warnings, first.warnings);
    let fresh = catalog(&dir, None);
    assert_eq!(
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&fresh.stdout)
    );
    assert_eq!(second.warnings, fresh.warnings);
}

#[test]
fn a_run_config_that_changes_changes_its_entries_and_only_theirs() {
    let (_t, dir, cache) = tree();
    let before = catalog(&dir, Some(&cache));
    let e = entry(&before, "hparams_dict/checkpoints/last.ckpt");
    assert_eq!(e["experiment"], "hparams_dict_exp");
    let cfg = dir.join("outputs/hparams_dict/.hydra/config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    // Same length, other value: only the time and the content differ.
    std::fs::write(&cfg, text.replace("hparams_dict_exp", "hparams_dict_new")).unwrap();
    date_back(&cfg, 1800);
    let after = catalog(&dir, Some(&cache));
    assert_eq!(
        entry(&after, "hparams_dict/checkpoints/last.ckpt")["experiment"],
        "hparams_dict_new"
    );
    // The run's three checkpoints were resolved again; everything else was served.
    assert_eq!(after.reused, after.total - 3, "{:?}", after.warnings);
    let fresh = catalog(&dir, None);
    assert_eq!(
        String::from_utf8_lossy(&after.stdout),
        String::from_utf8_lossy(&fresh.stdout)
    );
}

#[test]
fn a_config_that_appears_where_none_was_is_seen() {
    let (_t, dir, cache) = tree();
    let before = catalog(&dir, Some(&cache));
    let name = "nested_model/epoch=5-step=500.ckpt";
    assert_ne!(entry(&before, name)["experiment"], "appeared");
    // `.hydra/config.yaml` was looked for beside the checkpoint and found absent.
    let hydra = dir.join("outputs/nested_model/.hydra");
    std::fs::create_dir(&hydra).unwrap();
    std::fs::write(hydra.join("config.yaml"), "exp_name: appeared\n").unwrap();
    // The checkpoint itself keeps its time: only what is around it changed.
    date_tree_back(&hydra, 1800);
    date_back(&dir.join("outputs/nested_model"), 1800);
    let after = catalog(&dir, Some(&cache));
    assert_eq!(entry(&after, name)["experiment"], "appeared");
    assert!(after.reused < after.total);
}

#[test]
fn a_file_added_beside_a_checkpoint_is_seen_through_the_folder() {
    let (_t, dir, cache) = tree();
    let name = "filename_only/epoch=3-step=400-v1.ckpt";
    let before = catalog(&dir, Some(&cache));
    assert_ne!(entry(&before, name)["save_last"], true);
    // A last.ckpt beside it says its ModelCheckpoint had save_last on: answered from the
    // folder's listing, so the folder's fingerprint carries it.
    let folder = dir.join("outputs/filename_only");
    std::fs::copy(
        folder.join("epoch=3-step=400-v1.ckpt"),
        folder.join("last.ckpt"),
    )
    .unwrap();
    date_back(&folder.join("last.ckpt"), 1800);
    date_back(&folder, 1800);
    let after = catalog(&dir, Some(&cache));
    assert_eq!(entry(&after, name)["save_last"], true);
    assert_eq!(after.total, before.total + 1);
    let fresh = catalog(&dir, None);
    assert_eq!(
        String::from_utf8_lossy(&after.stdout),
        String::from_utf8_lossy(&fresh.stdout)
    );
}

#[test]
fn an_input_modified_just_now_is_resolved_again_until_it_settles() {
    let (_t, dir, cache) = tree();
    catalog(&dir, Some(&cache));
    let cfg = dir.join("outputs/hparams_dict/.hydra/config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("hparams_dict_exp", "hparams_dict_now")).unwrap();
    // Twice within the racy window: the run's entries are resolved both times (a second
    // change in the same clock tick would leave the same time behind).
    let one = catalog(&dir, Some(&cache));
    let two = catalog(&dir, Some(&cache));
    assert_eq!(one.reused, one.total - 3);
    assert_eq!(two.reused, two.total - 3);
    assert_eq!(
        entry(&two, "hparams_dict/checkpoints/last.ckpt")["experiment"],
        "hparams_dict_now"
    );
    // Once it is old enough, it is served again.
    date_back(&cfg, 1800);
    catalog(&dir, Some(&cache));
    let settled = catalog(&dir, Some(&cache));
    assert_eq!(settled.reused, settled.total);
}

#[test]
fn the_same_checkpoint_reached_from_another_root_is_not_served_another_roots_entry() {
    // Experiment and run names are relative to the root the user named.
    let (_t, dir, cache) = tree();
    let whole = catalog(&dir, Some(&cache));
    let sub = dir.join("outputs/hparams_dict");
    let part = catalog(&sub, Some(&cache));
    let fresh = catalog(&sub, None);
    assert_eq!(part.reused, 0);
    assert_eq!(
        String::from_utf8_lossy(&part.stdout),
        String::from_utf8_lossy(&fresh.stdout)
    );
    assert!(whole.total > part.total);
}

#[test]
#[ignore = "corpus: needs ../shared/corpus"]
fn the_corpus_served_from_the_cache_says_what_resolving_it_says() {
    let corpus = std::env::var_os("CKPT_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/corpus/data"));
    assert!(corpus.is_dir(), "{} (set CKPT_CORPUS)", corpus.display());
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("corpus");
    copy_tree(&corpus, &dir);
    date_tree_back(&dir, 3600);
    let cache = t.path().join("cache.sqlite3");
    catalog(&dir, Some(&cache));
    let served = catalog(&dir, Some(&cache));
    assert!(served.total > 0);
    assert_eq!(served.reused, served.total, "{:?}", served.warnings);
    let fresh = catalog(&dir, None);
    assert_eq!(
        String::from_utf8_lossy(&served.stdout),
        String::from_utf8_lossy(&fresh.stdout)
    );
    assert_eq!(served.warnings, fresh.warnings);
}
