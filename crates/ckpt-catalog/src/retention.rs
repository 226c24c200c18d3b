//! Retention plans for `ckpt prune`: decide, per experiment, which checkpoints to keep and
//! which to delete (with every reason), then carry out exactly the deletions planned.
//!
//! Planning is conservative. A checkpoint is deleted only when it is a regular file, under one
//! of the given paths, reached without any symlink below that path, readable, and no rule
//! keeps it. The rules that keep a checkpoint:
//! - top-k by the monitor (the best is always kept, even with `keep_top == 0`);
//! - `last.ckpt` (stem `last` or `last-…`, or `is_last`) and an entry marked `is_best`;
//! - the newest checkpoint of the experiment, and the newest `keep_last`;
//! - a global step that is a multiple of `keep_every`;
//! - an unknown metric, an unreadable entry, a directory, a symlink, a path outside the roots;
//! - a file that is also reached through a kept entry (a kept symlink pointing at it).
//!
//! `last` files are not ranked and not counted as "newest": Lightning's `last.ckpt` is a copy
//! of the latest state, kept anyway, and counting it would let it take a top-k or keep-last
//! slot from a real checkpoint of the series.
//!
//! Execution re-checks every file before removing it (still a regular file, same size and
//! mtime, same folder) and removes nothing else than the planned checkpoint and its sidecars.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::entry::CatalogEntry;

use crate::query::field;
use crate::resolve::metric_value;

/// Which way the monitored metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Max,
    Min,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s.to_ascii_lowercase().as_str() {
            "max" => Ok(Mode::Max),
            "min" => Ok(Mode::Min),
            other => Err(format!("mode must be max or min, not {other:?}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Keep the best `keep_top` by the monitor (the best one is kept even when 0).
    pub keep_top: usize,
    pub monitor: String,
    pub mode: Mode,
    /// Keep the newest N by (global_step, epoch, modified).
    pub keep_last: usize,
    /// Keep checkpoints whose global step is a multiple of N (`Some(0)` is ignored).
    pub keep_every: Option<u64>,
    /// Rank within each run (the default) or across every run of an experiment.
    pub group: crate::query::GroupBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Delete,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    pub path: String,
    pub experiment: String,
    pub action: Action,
    /// Every reason that applies: why it is kept, or why it goes.
    pub reasons: Vec<String>,
    pub size_bytes: u64,
    /// The sidecars that go with it (`<stem>.metadata.yaml|json`, `<stem>.config.yaml|yml|json`)
    /// that exist as regular files. For a deletion, sidecars shared with a kept checkpoint
    /// (same stem, other extension) are left out.
    pub sidecars: Vec<String>,
    /// Size and mtime (ns since the epoch) as planned, to detect a file that changed before
    /// deletion.
    pub size_at_plan: u64,
    pub mtime_ns_at_plan: i64,
    /// The canonical folder holding the file when planned: a deletion is skipped if the folder
    /// now resolves elsewhere (a folder swapped for a symlink after planning).
    #[serde(skip)]
    pub dir_at_plan: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    /// Bytes of the checkpoint files to delete (sidecars not counted).
    pub bytes_freed: u64,
    pub delete_count: usize,
    pub keep_count: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Executed {
    /// Every file removed, checkpoints and their sidecars, in plan order.
    pub deleted: Vec<String>,
    /// (path, reason) of each planned deletion not carried out.
    pub skipped: Vec<(String, String)>,
    /// Bytes of the checkpoint files removed (sidecars not counted, as in [`Plan`]).
    pub bytes_freed: u64,
}

/// A root as given, absolute (lexically) and canonical.
struct Root {
    abs: PathBuf,
    canon: Option<PathBuf>,
}

/// What the filesystem says about one entry at planning time.
#[derive(Default)]
struct Probe {
    /// Reasons from the filesystem that forbid deletion.
    blockers: Vec<String>,
    canon: Option<PathBuf>,
    dir: Option<PathBuf>,
    size: u64,
    mtime_ns: i64,
}

fn abs_path(p: &Path) -> PathBuf {
    let a = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    // Drop `.` components (absolute() keeps `..`, which is left for canonicalize to judge).
    a.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Nanoseconds since the epoch (negative before it).
fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    match m.modified() {
        Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_nanos())
                .map(|n| -n)
                .unwrap_or(i64::MIN),
        },
        Err(_) => 0,
    }
}

/// The first symlink met going down from `base` along `rel` (each component below `base`,
/// the last one being the file itself). `rel` is made of plain names only.
fn symlink_below(base: &Path, rel: &Path) -> Result<Option<PathBuf>, String> {
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Ok(Some(cur)),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        }
    }
    Ok(None)
}

fn probe(path: &Path, roots: &[Root]) -> Probe {
    let mut p = Probe::default();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            p.blockers
                .push(format!("unreadable: {}: {e}", path.display()));
            return p;
        }
    };
    p.size = meta.len();
    p.mtime_ns = mtime_ns(&meta);
    p.canon = std::fs::canonicalize(path).ok();
    p.dir = path.parent().and_then(|d| {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        std::fs::canonicalize(d).ok()
    });
    let abs = abs_path(path);
    // Below which roots is it, lexically (as given or as the root resolves)?
    let mut under_any = false;
    let mut clean_under_any = false;
    let mut through: Option<String> = None;
    let mut unreadable: Option<String> = None;
    for r in roots {
        for base in std::iter::once(&r.abs).chain(r.canon.as_ref()) {
            // `..` below a root is not under it (canonically it may be anywhere).
            let Some(rel) = abs
                .strip_prefix(base)
                .ok()
                .filter(|rel| rel.components().all(|c| matches!(c, Component::Normal(_))))
            else {
                continue;
            };
            under_any = true;
            match symlink_below(base, rel) {
                Ok(None) => clean_under_any = true,
                Ok(Some(link)) => {
                    if link != abs {
                        through.get_or_insert_with(|| link.display().to_string());
                    }
                }
                Err(e) => unreadable = Some(e),
            }
        }
    }
    // The canonical path must be under a canonical root too.
    let canon_under = p.canon.as_ref().is_some_and(|c| {
        roots
            .iter()
            .filter_map(|r| r.canon.as_ref())
            .any(|r| c.starts_with(r))
    });
    let is_link = meta.file_type().is_symlink();
    if !under_any || (!canon_under && !is_link) {
        p.blockers.push("outside the given paths".into());
    }
    if let Some(e) = unreadable
        && !clean_under_any
    {
        p.blockers.push(format!("unreadable: {e}"));
    }
    if is_link {
        p.blockers.push("symlink".into());
    } else if under_any
        && !clean_under_any
        && let Some(t) = through
    {
        p.blockers.push(format!("reached through a symlink ({t})"));
    }
    if meta.is_dir() {
        p.blockers
            .push("directory checkpoints are not pruned".into());
    } else if !is_link && !meta.is_file() {
        p.blockers.push("not a regular file".into());
    }
    p
}

/// `<stem>.metadata.*` and `<stem>.config.*` beside a checkpoint that exist as regular files.
fn sidecars_of(path: &Path) -> Vec<String> {
    [
        ".metadata.yaml",
        ".metadata.json",
        ".config.yaml",
        ".config.yml",
        ".config.json",
    ]
    .iter()
    .map(|s| ckpt_meta::sidecar::with_suffix(path, s))
    .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file()))
    .map(|p| p.display().to_string())
    .collect()
}

fn is_last(e: &CatalogEntry, path: &Path) -> bool {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem == "last" || stem.starts_with("last-") || e.is_last
}

/// A metric as shown in reasons: four decimals, trailing zeros trimmed.
fn show(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e9).contains(&a) {
        return format!("{v:.4e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_owned() }
}

/// Newest first by (global_step, epoch, modified, mtime).
type Age = (i64, i64, String, i64);

fn age(e: &CatalogEntry, mtime: i64) -> Age {
    (
        e.global_step.unwrap_or(-1),
        e.epoch.unwrap_or(-1),
        e.modified.clone(),
        mtime,
    )
}

/// Decide everything before anything is deleted. `roots` are the paths the user gave
/// (absolute or as given; compared lexically and canonicalized). With no roots, nothing is
/// under a given path, so everything is kept.
pub fn plan(entries: &[CatalogEntry], roots: &[PathBuf], opts: &PruneOptions) -> Plan {
    let roots: Vec<Root> = roots
        .iter()
        .map(|r| Root {
            abs: abs_path(r),
            canon: std::fs::canonicalize(r).ok(),
        })
        .collect();
    let k = opts.keep_top;
    let monitor = opts.monitor.as_str();

    struct Item<'a> {
        entry: &'a CatalogEntry,
        path: PathBuf,
        experiment: String,
        group: String,
        probe: Probe,
        reasons: Vec<String>,
        metric: Option<f64>,
        last: bool,
        eligible: bool,
    }

    // One item per distinct path (an entry listed twice is decided once).
    let mut seen_paths: HashSet<PathBuf> = HashSet::new();
    let mut items: Vec<Item<'_>> = Vec::with_capacity(entries.len());
    for e in entries {
        let path_str = e.path.as_str();
        let path = PathBuf::from(path_str);
        if !path_str.is_empty() && !seen_paths.insert(abs_path(&path)) {
            continue;
        }
        let experiment = match e.experiment.as_deref() {
            Some(x) if !x.is_empty() => x.to_owned(),
            _ => path
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        };
        let group = match (opts.group, e.run.as_deref()) {
            (crate::query::GroupBy::Run, Some(r)) if !r.is_empty() => {
                format!("{experiment}\u{1f}{r}")
            }
            _ => experiment.clone(),
        };
        let error = e.error.clone();
        let mut probe = if path_str.is_empty() {
            Probe {
                blockers: vec!["unreadable: no path".into()],
                ..Probe::default()
            }
        } else {
            probe(&path, &roots)
        };
        if let Some(err) = &error {
            probe.blockers.insert(0, format!("unreadable: {err}"));
        }
        let metric = metric_value(e, monitor)
            .or_else(|| field(e, monitor).and_then(|v| v.as_f64()))
            .filter(|v| !v.is_nan());
        let last = is_last(e, &path);
        let mut reasons = probe.blockers.clone();
        if last {
            reasons.push("last.ckpt".into());
        }
        if e.is_best {
            reasons.push("marked best".into());
        }
        if metric.is_none() && error.is_none() {
            reasons.push(format!("unknown metric {monitor}"));
        }
        let eligible = probe.blockers.is_empty();
        items.push(Item {
            entry: e,
            path,
            experiment,
            group,
            probe,
            reasons,
            metric,
            last,
            eligible,
        });
    }

    // Per experiment, over the files that could be deleted (and are not `last` copies).
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        groups.entry(it.group.as_str()).or_default().push(i);
    }
    let mut extra: Vec<(usize, String)> = Vec::new();
    let mut not_top: Vec<usize> = Vec::new();
    for idx in groups.values() {
        let series: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| items[i].eligible && !items[i].last)
            .collect();
        let ages: HashMap<usize, Age> = series
            .iter()
            .map(|&i| (i, age(items[i].entry, items[i].probe.mtime_ns)))
            .collect();
        let age_of = |i: &usize| ages.get(i).cloned().unwrap_or_default();
        // Top-k by the monitor; ties: newer first.
        let mut ranked: Vec<usize> = series
            .iter()
            .copied()
            .filter(|&i| items[i].metric.is_some())
            .collect();
        ranked.sort_by(|a, b| {
            let (x, y) = (
                items[*a].metric.unwrap_or_default(),
                items[*b].metric.unwrap_or_default(),
            );
            let o = match opts.mode {
                Mode::Max => y.total_cmp(&x),
                Mode::Min => x.total_cmp(&y),
            };
            o.then_with(|| age_of(b).cmp(&age_of(a)))
        });
        for (rank, &i) in ranked.iter().enumerate() {
            let v = show(items[i].metric.unwrap_or_default());
            if rank < k {
                extra.push((i, format!("top-{k} by {monitor} ({v})")));
            } else if rank == 0 {
                extra.push((i, format!("best by {monitor} ({v})")));
            } else {
                not_top.push(i);
            }
        }
        // Newest, and the newest `keep_last`.
        let mut by_age = series.clone();
        by_age.sort_by_key(|i| std::cmp::Reverse(age_of(i)));
        if let Some(newest) = by_age.first().map(age_of) {
            for i in by_age.iter().take_while(|i| age_of(i) == newest) {
                extra.push((*i, "newest".into()));
            }
        }
        for &i in by_age.iter().take(opts.keep_last) {
            extra.push((i, format!("among the newest {}", opts.keep_last)));
        }
        if let Some(n) = opts.keep_every.filter(|n| *n > 0) {
            for &i in &series {
                if items[i]
                    .entry
                    .global_step
                    .and_then(|s| u64::try_from(s).ok())
                    .is_some_and(|s| s % n == 0)
                {
                    extra.push((i, format!("every {n} steps")));
                }
            }
        }
    }
    for (i, r) in extra {
        items[i].reasons.push(r);
    }
    let mut actions: Vec<Action> = items
        .iter()
        .map(|it| {
            if it.eligible && it.reasons.is_empty() {
                Action::Delete
            } else {
                Action::Keep
            }
        })
        .collect();
    for i in not_top {
        if actions[i] == Action::Delete {
            let v = show(items[i].metric.unwrap_or_default());
            let r = if k == 0 {
                format!("not the best by {monitor} ({v})")
            } else {
                format!("not in top-{k} by {monitor} ({v})")
            };
            items[i].reasons.push(r);
        }
    }
    // A file also reached through a kept entry (a symlink to it) stays.
    let kept_canon: HashMap<PathBuf, String> = items
        .iter()
        .zip(&actions)
        .filter(|(_, a)| **a == Action::Keep)
        .filter_map(|(it, _)| {
            it.probe
                .canon
                .clone()
                .map(|c| (c, it.path.display().to_string()))
        })
        .collect();
    for (it, a) in items.iter_mut().zip(actions.iter_mut()) {
        if *a == Action::Delete
            && let Some(other) = it.probe.canon.as_ref().and_then(|c| kept_canon.get(c))
        {
            *a = Action::Keep;
            it.reasons = vec![format!("also reached as {other}, which is kept")];
        }
    }
    // Sidecars of kept checkpoints are never deleted with another one.
    let mut sidecars: Vec<Vec<String>> = items
        .iter()
        .map(|it| {
            if it.probe.blockers.iter().any(|b| b.starts_with("directory")) {
                Vec::new()
            } else {
                sidecars_of(&it.path)
            }
        })
        .collect();
    let kept_sidecars: HashSet<PathBuf> = sidecars
        .iter()
        .zip(&actions)
        .filter(|(_, a)| **a == Action::Keep)
        .flat_map(|(s, _)| s.iter().map(|p| abs_path(Path::new(p))))
        .collect();
    for (s, a) in sidecars.iter_mut().zip(&actions) {
        if *a == Action::Delete {
            s.retain(|p| !kept_sidecars.contains(&abs_path(Path::new(p))));
        }
    }

    let mut out = Plan::default();
    for ((it, action), sidecars) in items.into_iter().zip(actions).zip(sidecars) {
        let size_bytes = match it.entry.size_bytes {
            0 => it.probe.size,
            n => n,
        };
        match action {
            Action::Delete => {
                out.delete_count += 1;
                out.bytes_freed += it.probe.size;
            }
            Action::Keep => out.keep_count += 1,
        }
        out.decisions.push(Decision {
            path: it.entry.path.clone(),
            experiment: it.experiment,
            action,
            reasons: it.reasons,
            size_bytes,
            sidecars,
            size_at_plan: it.probe.size,
            mtime_ns_at_plan: it.probe.mtime_ns,
            dir_at_plan: it.probe.dir,
        });
    }
    out
}

/// Why a planned deletion must not happen now, or `Ok(true)` when the file is already gone.
fn recheck(d: &Decision, path: &Path) -> Result<bool, String> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(format!("cannot stat: {e}")),
    };
    if m.file_type().is_symlink() {
        return Err("now a symlink".into());
    }
    if !m.is_file() {
        return Err("no longer a regular file".into());
    }
    if m.len() != d.size_at_plan || mtime_ns(&m) != d.mtime_ns_at_plan {
        return Err(format!(
            "changed since planning (size {} -> {})",
            d.size_at_plan,
            m.len()
        ));
    }
    if let Some(dir) = &d.dir_at_plan {
        let now = path.parent().and_then(|p| {
            let p = if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            };
            std::fs::canonicalize(p).ok()
        });
        if now.as_ref() != Some(dir) {
            return Err("its folder changed since planning".into());
        }
    }
    Ok(false)
}

/// Carry out the deletions of a plan: for each Delete decision, re-stat it (without following
/// symlinks) and skip it, with the reason, if it is now a symlink, not a regular file, or its
/// size or mtime or folder differ from the plan; else remove the checkpoint file, then its
/// sidecars (regular files only). Nothing else is ever removed. Re-running after an
/// interruption converges: a checkpoint already gone is skipped as "already gone" and its
/// remaining sidecars are removed.
pub fn execute(plan: &Plan) -> Executed {
    let mut out = Executed::default();
    for d in plan.decisions.iter().filter(|d| d.action == Action::Delete) {
        let path = Path::new(&d.path);
        match recheck(d, path) {
            Err(why) => {
                out.skipped.push((d.path.clone(), why));
                continue;
            }
            Ok(true) => out.skipped.push((d.path.clone(), "already gone".into())),
            Ok(false) => match std::fs::remove_file(path) {
                Ok(()) => {
                    out.deleted.push(d.path.clone());
                    out.bytes_freed += d.size_at_plan;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    out.skipped.push((d.path.clone(), "already gone".into()));
                }
                Err(e) => {
                    out.skipped
                        .push((d.path.clone(), format!("cannot delete: {e}")));
                    continue;
                }
            },
        }
        for sc in &d.sidecars {
            match std::fs::symlink_metadata(sc) {
                Ok(m) if m.file_type().is_file() => match std::fs::remove_file(sc) {
                    Ok(()) => out.deleted.push(sc.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => out
                        .skipped
                        .push((sc.clone(), format!("cannot delete: {e}"))),
                },
                Ok(_) => out
                    .skipped
                    .push((sc.clone(), "sidecar is no longer a regular file".into())),
                Err(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
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
            group: crate::query::GroupBy::Run,
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
}
