//! The rules and the executor on real temporary trees.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use std::path::Path;

use crate::probe::{Filesystem, Probe, Root};
use crate::rules::show;

use ckpt_catalog::entry::CatalogEntry;
use serde_json::json;
use std::fs;

fn write(p: &Path, bytes: usize) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(p, vec![b'x'; bytes]).unwrap();
}

fn entry(path: &Path, exp: &str, epoch: i64, step: i64, metric: Option<f64>) -> CatalogEntry {
    let metrics = match metric {
        Some(v) => json!({ "val/hmean": v }),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "path": path.display().to_string(),
        "experiment": exp,
        "epoch": epoch,
        "global_step": step,
        "metrics": metrics,
        "monitor": "val/hmean",
        "mode": "max",
        "size_bytes": fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0),
        "modified": format!("2026-01-01T00:00:{:02}", step.rem_euclid(60)),
        "is_best": false,
        "is_last": false,
        "error": null,
    }))
    .unwrap()
}

fn opts(k: usize, mode: Mode) -> PruneOptions {
    PruneOptions {
        keep_top: k,
        monitor: "val/hmean".into(),
        mode,
        keep_last: 0,
        keep_every: None,
        group: GroupBy::Run,
    }
}

fn find<'p>(p: &'p Plan, name: &str) -> &'p Decision {
    p.decisions.iter().find(|d| d.path.ends_with(name)).unwrap()
}

fn deleted(p: &Plan) -> Vec<String> {
    p.decisions
        .iter()
        .filter(|d| d.action == Action::Delete)
        .map(|d| {
            Path::new(&d.path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The dbnet-like experiment: epoch=01 0.7445, epoch=02 0.7718, last.ckpt 0.7718.
fn dbnet(root: &Path) -> Vec<CatalogEntry> {
    let dir = root.join("dbnet/checkpoints");
    let a = dir.join("epoch=01-step=4-hmean=0.7445.ckpt");
    let b = dir.join("epoch=02-step=6-hmean=0.7718.ckpt");
    let l = dir.join("last.ckpt");
    write(&a, 100);
    write(&b, 200);
    write(&l, 300);
    let mut eb = entry(&b, "dbnet", 2, 6, Some(0.771_794_855_594_635));
    eb.is_best = true;
    let mut el = entry(&l, "dbnet", 2, 6, Some(0.771_794_855_594_635));
    el.is_last = true;
    vec![
        entry(&a, "dbnet", 1, 4, Some(0.744_518_280_029_296_9)),
        eb,
        el,
    ]
}

#[test]
fn retention_dbnet_top1_deletes_only_epoch01() {
    let t = tempfile::tempdir().unwrap();
    let entries = dbnet(t.path());
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(deleted(&p), ["epoch=01-step=4-hmean=0.7445.ckpt"]);
    assert_eq!(p.delete_count, 1);
    assert_eq!(p.keep_count, 2);
    assert_eq!(p.bytes_freed, 100);
    let a = find(&p, "epoch=01-step=4-hmean=0.7445.ckpt");
    assert_eq!(a.reasons, ["not in top-1 by val/hmean (0.7445)"]);
    assert_eq!(a.experiment, "dbnet");
    let b = find(&p, "epoch=02-step=6-hmean=0.7718.ckpt");
    assert!(
        b.reasons
            .contains(&"top-1 by val/hmean (0.7718)".to_owned())
    );
    let l = find(&p, "last.ckpt");
    assert!(l.reasons.contains(&"last.ckpt".to_owned()));
    // Execute: exactly that file goes.
    let x = execute(&p);
    assert_eq!(x.bytes_freed, 100);
    assert_eq!(x.deleted.len(), 1);
    assert!(x.skipped.is_empty());
    let dir = t.path().join("dbnet/checkpoints");
    assert!(!dir.join("epoch=01-step=4-hmean=0.7445.ckpt").exists());
    assert!(dir.join("epoch=02-step=6-hmean=0.7718.ckpt").exists());
    assert!(dir.join("last.ckpt").exists());
    // JSON shape.
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["decisions"][0]["action"], "delete");
    assert_eq!(v["decisions"][1]["action"], "keep");
    assert!(v["decisions"][0].get("dir_at_plan").is_none());
}

#[test]
fn retention_min_mode_keeps_lowest() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("exp");
    let mut entries = Vec::new();
    for (i, loss) in [(1, 0.5), (2, 0.2), (3, 0.3), (4, 0.4)] {
        let f = d.join(format!("epoch={i}.ckpt"));
        write(&f, 10);
        let mut e = entry(&f, "exp", i, i * 10, None);
        e.metrics = [("val_loss".to_owned(), loss)].into_iter().collect();
        entries.push(e);
    }
    let mut o = opts(2, Mode::Min);
    o.monitor = "val_loss".into();
    let p = plan(&entries, &[t.path().to_path_buf()], &o);
    // 0.2 and 0.3 are top-2; epoch=4 is the newest.
    assert_eq!(deleted(&p), ["epoch=1.ckpt"]);
    assert_eq!(
        find(&p, "epoch=2.ckpt").reasons,
        ["top-2 by val_loss (0.2)"]
    );
    assert_eq!(find(&p, "epoch=4.ckpt").reasons, ["newest"]);
    assert_eq!(
        find(&p, "epoch=1.ckpt").reasons,
        ["not in top-2 by val_loss (0.5)"]
    );
}

#[test]
fn retention_short_metric_name_and_keep_top_zero_keeps_best() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("exp");
    let mut entries = Vec::new();
    for (i, v) in [(1, 0.9), (2, 0.5), (3, 0.4)] {
        let f = d.join(format!("e{i}.ckpt"));
        write(&f, 10);
        let mut e = entry(&f, "exp", i, i, None);
        e.metrics = [("hmean".to_owned(), v)].into_iter().collect();
        entries.push(e);
    }
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(0, Mode::Max));
    assert_eq!(deleted(&p), ["e2.ckpt"]);
    assert_eq!(find(&p, "e1.ckpt").reasons, ["best by val/hmean (0.9)"]);
    assert_eq!(
        find(&p, "e2.ckpt").reasons,
        ["not the best by val/hmean (0.5)"]
    );
}

#[test]
fn retention_unknown_metric_kept() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("exp");
    let (a, b, c) = (d.join("a.ckpt"), d.join("b.ckpt"), d.join("c.ckpt"));
    for f in [&a, &b, &c] {
        write(f, 10);
    }
    let entries = vec![
        entry(&a, "exp", 0, 1, None),
        entry(&b, "exp", 0, 2, Some(0.9)),
        entry(&c, "exp", 0, 3, Some(0.1)),
    ];
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(p.delete_count, 0);
    assert_eq!(find(&p, "a.ckpt").reasons, ["unknown metric val/hmean"]);
    assert_eq!(find(&p, "c.ckpt").reasons, ["newest"]);
}

#[cfg(unix)]
#[test]
fn retention_symlinked_file_kept() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store/real.ckpt");
    write(&store, 50);
    let d = t.path().join("runs/exp");
    let (a, b) = (d.join("a.ckpt"), d.join("b.ckpt"));
    write(&a, 10);
    write(&b, 10);
    let link = d.join("link.ckpt");
    std::os::unix::fs::symlink(&store, &link).unwrap();
    let entries = vec![
        entry(&link, "exp", 0, 1, Some(0.1)),
        entry(&a, "exp", 0, 2, Some(0.9)),
        entry(&b, "exp", 0, 3, Some(0.2)),
    ];
    let root = t.path().join("runs");
    let p = plan(&entries, &[root], &opts(1, Mode::Max));
    let l = find(&p, "link.ckpt");
    assert_eq!(l.action, Action::Keep);
    assert!(l.reasons.contains(&"symlink".to_owned()), "{:?}", l.reasons);
    assert_eq!(p.delete_count, 0);
    execute(&p);
    assert!(store.exists());
    assert!(fs::symlink_metadata(&link).is_ok());
}

#[cfg(unix)]
#[test]
fn retention_target_of_kept_symlink_kept() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("exp");
    let (a, b, c) = (d.join("a.ckpt"), d.join("b.ckpt"), d.join("c.ckpt"));
    for f in [&a, &b, &c] {
        write(f, 10);
    }
    let best = d.join("best.ckpt");
    std::os::unix::fs::symlink("a.ckpt", &best).unwrap();
    let entries = vec![
        entry(&a, "exp", 0, 1, Some(0.1)),
        entry(&b, "exp", 0, 2, Some(0.9)),
        entry(&c, "exp", 0, 3, Some(0.2)),
        entry(&best, "exp", 0, 1, Some(0.1)),
    ];
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(p.delete_count, 0);
    assert!(find(&p, "a.ckpt").reasons[0].starts_with("also reached as"));
}

#[cfg(unix)]
#[test]
fn retention_symlinked_parent_folder_kept() {
    let t = tempfile::tempdir().unwrap();
    let real = t.path().join("elsewhere/exp");
    let (a, b, c) = (
        real.join("a.ckpt"),
        real.join("b.ckpt"),
        real.join("c.ckpt"),
    );
    for f in [&a, &b, &c] {
        write(f, 10);
    }
    let root = t.path().join("runs");
    fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(&real, root.join("exp")).unwrap();
    let via = root.join("exp");
    let entries = vec![
        entry(&via.join("a.ckpt"), "exp", 0, 1, Some(0.1)),
        entry(&via.join("b.ckpt"), "exp", 0, 2, Some(0.9)),
        entry(&via.join("c.ckpt"), "exp", 0, 3, Some(0.2)),
    ];
    let p = plan(&entries, std::slice::from_ref(&root), &opts(1, Mode::Max));
    assert_eq!(p.delete_count, 0);
    let d = find(&p, "a.ckpt");
    assert!(
        d.reasons
            .iter()
            .any(|r| r.starts_with("reached through a symlink")),
        "{:?}",
        d.reasons
    );
    // Naming the symlinked folder itself as the root is allowed.
    let p = plan(&entries, std::slice::from_ref(&via), &opts(1, Mode::Max));
    assert_eq!(deleted(&p), ["a.ckpt"]);
}

#[test]
fn retention_outside_roots_kept() {
    let t = tempfile::tempdir().unwrap();
    let inside = t.path().join("a/exp");
    let outside = t.path().join("b/exp");
    let (a, b, c) = (
        inside.join("a.ckpt"),
        inside.join("b.ckpt"),
        outside.join("c.ckpt"),
    );
    for f in [&a, &b, &c] {
        write(f, 10);
    }
    let entries = vec![
        entry(&c, "exp", 0, 1, Some(0.1)),
        entry(&a, "exp", 0, 2, Some(0.9)),
        entry(&b, "exp", 0, 3, Some(0.2)),
    ];
    let p = plan(&entries, &[t.path().join("a")], &opts(1, Mode::Max));
    assert_eq!(p.delete_count, 0);
    assert_eq!(find(&p, "c.ckpt").reasons, ["outside the given paths"]);
    // A `..` spelling that leaves the root is outside too.
    let sneaky = t.path().join("a/../b/exp/c.ckpt");
    let e = vec![entry(&sneaky, "x", 0, 1, Some(0.1))];
    let p = plan(&e, &[t.path().join("a")], &opts(0, Mode::Max));
    assert_eq!(p.decisions[0].reasons, ["outside the given paths"]);
    // No roots: nothing is under a given path.
    let p = plan(&entries, &[], &opts(1, Mode::Max));
    assert_eq!(p.delete_count, 0);
}

#[test]
fn retention_relative_paths_and_roots() {
    let t = tempfile::tempdir().unwrap();
    let entries = dbnet(t.path());
    // Roots given with `.` components still contain the entries.
    let root = t.path().join(".").join("dbnet");
    let p = plan(&entries, &[root], &opts(1, Mode::Max));
    assert_eq!(deleted(&p), ["epoch=01-step=4-hmean=0.7445.ckpt"]);
}

#[test]
fn retention_newest_kept_even_when_not_top() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("exp");
    let mut entries = Vec::new();
    for (i, v) in [(1, 0.9), (2, 0.5), (3, 0.4)] {
        let f = d.join(format!("e{i}.ckpt"));
        write(&f, 10);
        entries.push(entry(&f, "exp", i, i * 100, Some(v)));
    }
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(deleted(&p), ["e2.ckpt"]);
    assert_eq!(find(&p, "e3.ckpt").reasons, ["newest"]);
}

#[test]
fn retention_keep_last_and_keep_every() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("exp");
    let mut entries = Vec::new();
    // The metric falls over time, so the best is the first.
    for i in 1..=6_i64 {
        let f = d.join(format!("step={}.ckpt", i * 100));
        write(&f, 10);
        entries.push(entry(&f, "exp", i, i * 100, Some(1.0 - i as f64 / 10.0)));
    }
    let l = d.join("last.ckpt");
    write(&l, 10);
    entries.push(entry(&l, "exp", 6, 600, Some(0.4)));
    let mut o = opts(1, Mode::Max);
    o.keep_last = 2;
    o.keep_every = Some(200);
    let p = plan(&entries, &[t.path().to_path_buf()], &o);
    assert_eq!(deleted(&p), ["step=300.ckpt"]);
    assert_eq!(
        find(&p, "step=100.ckpt").reasons,
        ["top-1 by val/hmean (0.9)"]
    );
    assert_eq!(find(&p, "step=200.ckpt").reasons, ["every 200 steps"]);
    assert_eq!(find(&p, "step=400.ckpt").reasons, ["every 200 steps"]);
    assert_eq!(find(&p, "step=500.ckpt").reasons, ["among the newest 2"]);
    assert_eq!(
        find(&p, "step=600.ckpt").reasons,
        ["newest", "among the newest 2", "every 200 steps"]
    );
    // last.ckpt takes no keep-last slot.
    assert_eq!(find(&p, "last.ckpt").reasons, ["last.ckpt"]);
    assert_eq!(
        find(&p, "step=300.ckpt").reasons,
        ["not in top-1 by val/hmean (0.7)"]
    );
    assert_eq!(p.bytes_freed, 10);
}

#[test]
fn retention_experiments_are_separate_and_keep_other_rules() {
    let t = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    for exp in ["x", "y"] {
        for (i, v) in [(1, 0.1), (2, 0.9), (3, 0.2)] {
            let f = t.path().join(exp).join(format!("e{i}.ckpt"));
            write(&f, 10);
            entries.push(entry(&f, exp, i, i, Some(v)));
        }
    }
    // A directory checkpoint and an unreadable one.
    let dcp = t.path().join("x/step_9");
    fs::create_dir_all(&dcp).unwrap();
    entries.push(entry(&dcp, "x", 9, 9, Some(0.0)));
    let bad = t.path().join("x/bad.ckpt");
    write(&bad, 10);
    let mut e = entry(&bad, "x", 0, 0, None);
    e.error = Some("bad.ckpt: not a zip".into());
    entries.push(e);
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(p.delete_count, 2);
    assert_eq!(
        find(&p, "step_9").reasons,
        ["directory checkpoints are not pruned"]
    );
    assert_eq!(
        find(&p, "bad.ckpt").reasons,
        ["unreadable: bad.ckpt: not a zip"]
    );
}

#[test]
fn retention_sidecars_deleted_with_the_file_and_nothing_else() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("exp");
    let (a, b, c) = (d.join("a.ckpt"), d.join("b.ckpt"), d.join("c.ckpt"));
    for f in [&a, &b, &c] {
        write(f, 10);
    }
    let goes = [
        "a.metadata.yaml",
        "a.metadata.json",
        "a.config.yaml",
        "a.config.yml",
        "a.config.json",
    ];
    let stays = [
        "a.txt",
        "a.yaml",
        "ab.metadata.yaml",
        "b.metadata.yaml",
        "hparams.yaml",
        "a.pt.metadata.yaml",
    ];
    for f in goes.iter().chain(&stays) {
        write(&d.join(f), 3);
    }
    let entries = vec![
        entry(&a, "exp", 0, 1, Some(0.1)),
        entry(&b, "exp", 0, 2, Some(0.9)),
        entry(&c, "exp", 0, 3, Some(0.2)),
    ];
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(deleted(&p), ["a.ckpt"]);
    assert_eq!(find(&p, "a.ckpt").sidecars.len(), 5);
    assert_eq!(find(&p, "b.ckpt").sidecars.len(), 1);
    let x = execute(&p);
    assert_eq!(x.deleted.len(), 6);
    assert_eq!(x.bytes_freed, 10);
    assert!(!a.exists());
    for f in goes {
        assert!(!d.join(f).exists(), "{f}");
    }
    for f in stays {
        assert!(d.join(f).exists(), "{f}");
    }
    assert!(b.exists() && c.exists());
}

#[test]
fn retention_shared_sidecar_of_kept_checkpoint_stays() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("exp");
    let (a, apt, c) = (d.join("a.ckpt"), d.join("a.pt"), d.join("c.ckpt"));
    for f in [&a, &apt, &c] {
        write(f, 10);
    }
    write(&d.join("a.metadata.yaml"), 3);
    let entries = vec![
        entry(&a, "exp", 0, 1, Some(0.1)),
        entry(&apt, "exp", 0, 2, Some(0.9)),
        entry(&c, "exp", 0, 3, Some(0.2)),
    ];
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(deleted(&p), ["a.ckpt"]);
    assert!(find(&p, "a.ckpt").sidecars.is_empty());
    execute(&p);
    assert!(d.join("a.metadata.yaml").exists());
}

#[test]
fn retention_changed_file_skipped() {
    let t = tempfile::tempdir().unwrap();
    let entries = dbnet(t.path());
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    let a = t
        .path()
        .join("dbnet/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt");
    let side = t
        .path()
        .join("dbnet/checkpoints/epoch=01-step=4-hmean=0.7445.metadata.yaml");
    write(&side, 3);
    let mut p2 = p.clone();
    p2.decisions[0].sidecars = vec![side.display().to_string()];
    write(&a, 150);
    let x = execute(&p2);
    assert!(x.deleted.is_empty());
    assert_eq!(x.bytes_freed, 0);
    assert_eq!(x.skipped.len(), 1);
    assert!(
        x.skipped[0].1.starts_with("changed since planning"),
        "{:?}",
        x.skipped
    );
    assert!(a.exists() && side.exists());
}

#[cfg(unix)]
#[test]
fn retention_file_replaced_by_symlink_skipped() {
    let t = tempfile::tempdir().unwrap();
    let entries = dbnet(t.path());
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    let a = t
        .path()
        .join("dbnet/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt");
    fs::remove_file(&a).unwrap();
    std::os::unix::fs::symlink("last.ckpt", &a).unwrap();
    let x = execute(&p);
    assert_eq!(x.skipped[0].1, "now a symlink");
    assert!(t.path().join("dbnet/checkpoints/last.ckpt").exists());
}

#[test]
fn retention_rerun_after_partial_run_converges() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("exp");
    let mut entries = Vec::new();
    for (i, v) in [(1, 0.1), (2, 0.2), (3, 0.9), (4, 0.3)] {
        let f = d.join(format!("e{i}.ckpt"));
        write(&f, 10);
        write(&d.join(format!("e{i}.metadata.yaml")), 3);
        entries.push(entry(&f, "exp", i, i, Some(v)));
    }
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(deleted(&p), ["e1.ckpt", "e2.ckpt"]);
    // Interrupted after removing e1.ckpt but before its sidecar.
    fs::remove_file(d.join("e1.ckpt")).unwrap();
    let x = execute(&p);
    assert_eq!(
        x.skipped,
        [(
            d.join("e1.ckpt").display().to_string(),
            "already gone".into()
        )]
    );
    assert_eq!(x.bytes_freed, 10);
    assert!(!d.join("e1.metadata.yaml").exists());
    assert!(!d.join("e2.ckpt").exists() && !d.join("e2.metadata.yaml").exists());
    // Again: nothing left to do.
    let x = execute(&p);
    assert!(x.deleted.is_empty());
    assert_eq!(x.bytes_freed, 0);
    assert_eq!(x.skipped.len(), 2);
    for i in [3, 4] {
        assert!(d.join(format!("e{i}.ckpt")).exists());
        assert!(d.join(format!("e{i}.metadata.yaml")).exists());
    }
}

#[test]
fn retention_nothing_to_delete_frees_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("exp");
    let a = d.join("a.ckpt");
    write(&a, 10);
    let entries = vec![entry(&a, "exp", 0, 1, Some(0.5))];
    let p = plan(&entries, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(p.delete_count, 0);
    assert_eq!(p.keep_count, 1);
    assert_eq!(p.bytes_freed, 0);
    let x = execute(&p);
    assert!(x.deleted.is_empty() && x.skipped.is_empty());
    assert_eq!(x.bytes_freed, 0);
    assert!(a.exists());
    // An empty catalog too.
    let p = plan(&[], &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(p.bytes_freed, 0);
    assert!(p.decisions.is_empty());
}

#[test]
fn retention_duplicate_entries_decided_once() {
    let t = tempfile::tempdir().unwrap();
    let entries = dbnet(t.path());
    let mut twice = entries.clone();
    twice.extend(entries);
    let p = plan(&twice, &[t.path().to_path_buf()], &opts(1, Mode::Max));
    assert_eq!(p.decisions.len(), 3);
    assert_eq!(p.delete_count, 1);
}

#[test]
fn retention_mode_from_str_and_show() {
    assert_eq!("max".parse::<Mode>(), Ok(Mode::Max));
    assert_eq!("MIN".parse::<Mode>(), Ok(Mode::Min));
    assert!("best".parse::<Mode>().is_err());
    assert_eq!(show(0.744_518_280_029_296_9), "0.7445");
    assert_eq!(show(2.0), "2");
    assert_eq!(show(0.0), "0");
    assert_eq!(show(0.000_12), "1.2000e-4");
}

/// A made-up filesystem: every path a regular 100-byte file under the root, except those
/// listed as blocked (with the blocker the real probe would give).
struct FakeFs {
    blocked: Vec<(&'static str, &'static str)>,
}

impl Filesystem for FakeFs {
    fn root(&self, given: &Path) -> Root {
        Root {
            abs: given.to_path_buf(),
            canon: Some(given.to_path_buf()),
        }
    }

    fn probe(&self, path: &Path, _roots: &[Root]) -> Probe {
        let mut p = Probe {
            canon: Some(path.to_path_buf()),
            dir: path.parent().map(Path::to_path_buf),
            size: 100,
            mtime_ns: 1,
            ..Probe::default()
        };
        for (name, why) in &self.blocked {
            if path.ends_with(name) {
                p.blockers.push((*why).to_owned());
            }
        }
        p
    }

    fn sidecars_of(&self, _path: &Path) -> Vec<String> {
        Vec::new()
    }
}

fn fake_entry(name: &str, run: &str, step: i64, hmean: f64) -> CatalogEntry {
    serde_json::from_value(json!({
        "path": format!("/r/{run}/{name}"),
        "experiment": "exp",
        "run": run,
        "epoch": step,
        "global_step": step,
        "metrics": {"val/hmean": hmean},
        "monitor": "val/hmean",
        "mode": "max",
        "modified": format!("2026-01-01T00:00:{step:02}"),
    }))
    .unwrap()
}

/// The rules alone, on probes no disk gave: per run by default, across runs when asked, and
/// a file the probe forbids is kept whatever its rank.
#[test]
fn rules_without_a_filesystem() {
    let entries = vec![
        fake_entry("a1.ckpt", "run0", 1, 0.5),
        fake_entry("a2.ckpt", "run0", 2, 0.9),
        fake_entry("a3.ckpt", "run0", 3, 0.7),
        fake_entry("b1.ckpt", "run1", 1, 0.6),
        fake_entry("b2.ckpt", "run1", 2, 0.4),
    ];
    let roots = vec![std::path::PathBuf::from("/r")];
    let fs = FakeFs { blocked: vec![] };
    let deleted = |p: &Plan| -> Vec<String> {
        p.decisions
            .iter()
            .filter(|d| d.action == Action::Delete)
            .map(|d| d.path.rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    // Per run: run0 keeps a2 (best) and a3 (newest); run1 keeps b1 (best) and b2 (newest).
    let p = plan_on(&fs, &entries, &roots, &opts(1, Mode::Max));
    assert_eq!(deleted(&p), ["a1.ckpt"]);
    // Across the experiment: one best (a2) and one newest per experiment (a3).
    let mut o = opts(1, Mode::Max);
    o.group = GroupBy::Experiment;
    let p = plan_on(&fs, &entries, &roots, &o);
    assert_eq!(deleted(&p), ["a1.ckpt", "b1.ckpt", "b2.ckpt"]);
    // A probe's blocker keeps the file, with the probe's reason.
    let fs = FakeFs {
        blocked: vec![("a1.ckpt", "symlink")],
    };
    let p = plan_on(&fs, &entries, &roots, &opts(1, Mode::Max));
    assert!(deleted(&p).is_empty());
    let d = p
        .decisions
        .iter()
        .find(|d| d.path.ends_with("a1.ckpt"))
        .unwrap();
    assert!(d.reasons.iter().any(|r| r == "symlink"), "{:?}", d.reasons);
}
