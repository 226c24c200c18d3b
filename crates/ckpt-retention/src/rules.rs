//! The retention rules: which checkpoints to keep, with every reason. Pure — the filesystem
//! is consulted only through [`Filesystem`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use ckpt_catalog::entry::CatalogEntry;
use ckpt_catalog::query::{GroupBy, field};
use ckpt_catalog::resolve::metric_value;

use crate::probe::{Filesystem, Probe, RealFs, Root, abs_path};
use crate::{Action, Decision, Mode, Plan, PruneOptions};

fn is_last(e: &CatalogEntry, path: &Path) -> bool {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem == "last" || stem.starts_with("last-") || e.is_last
}

/// A metric as shown in reasons: four decimals, trailing zeros trimmed.
pub(crate) fn show(v: f64) -> String {
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
    plan_on(&RealFs, entries, roots, opts)
}

/// [`plan`] over the filesystem `fs` says there is.
pub fn plan_on(
    fs: &dyn Filesystem,
    entries: &[CatalogEntry],
    roots: &[PathBuf],
    opts: &PruneOptions,
) -> Plan {
    let roots: Vec<Root> = roots.iter().map(|r| fs.root(r)).collect();
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
            (GroupBy::Run, Some(r)) if !r.is_empty() => {
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
            fs.probe(&path, &roots)
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
                fs.sidecars_of(&it.path)
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
