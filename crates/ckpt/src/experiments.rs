//! `ckpt hash`, `ckpt diff`, `ckpt experiments`, `ckpt latest`, `ckpt prune`: experiment
//! identity and retention.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Result, bail};
use ckpt_catalog::CatalogEntry;
use ckpt_catalog::cache::Cache;
use ckpt_catalog::catalog::{Options, build};
use ckpt_catalog::compare;
use ckpt_identity::{self as identity, HashOptions};
use ckpt_retention::{self as retention, Action, Mode, PruneOptions};
use serde_json::json;

use crate::Outcome;
use crate::cli::{ExperimentsArgs, LatestArgs, OutputFormat, PruneArgs};
use crate::inspect::human_bytes;

/// The catalog of `paths` for `command` (named in bug reports).
fn catalog(command: &str, paths: &[PathBuf], no_cache: bool) -> Result<Vec<CatalogEntry>> {
    catalog_with(command, paths, (!no_cache).then(Cache::default_path))
}

/// [`catalog`] reading and writing the cache file `cache` (none: no cache).
fn catalog_with(
    command: &str,
    paths: &[PathBuf],
    cache: Option<PathBuf>,
) -> Result<Vec<CatalogEntry>> {
    let opts = Options {
        cache,
        ..Options::default()
    };
    let cat = build(paths, &opts)?;
    for w in &cat.warnings {
        crate::sink_eprintln!("ckpt: warning: {w}");
    }
    for b in &cat.bugs {
        crate::report_bug(command, &b.path, &b.panic);
    }
    Ok(cat.entries)
}

/// An experiment's name in the table, with its run when rows are runs.
fn label(e: &compare::Experiment) -> String {
    match &e.run {
        Some(r) if *r != e.experiment => format!("{} ({r})", e.experiment),
        _ => e.experiment.clone(),
    }
}

pub fn experiments(a: &ExperimentsArgs) -> Result<Outcome> {
    let entries = catalog("experiments", &a.paths, a.no_cache)?;
    let mut ex = compare::experiments(&entries, a.group_by.get());
    for e in &mut ex {
        if let Some(p) = &e.latest_path
            && let Ok(inputs) = identity::gather(std::path::Path::new(p), &HashOptions::default())
        {
            e.hash = Some(identity::identity(&inputs).hash);
        }
    }
    match a.format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&ex)?;
            s.push('\n');
            crate::print_stdout(&s)?;
        }
        OutputFormat::Table => {
            let mut s = String::new();
            let w = ex
                .iter()
                .map(|e| label(e).chars().count())
                .max()
                .unwrap_or(10)
                .clamp(10, 70);
            let _ = writeln!(
                s,
                "{:<w$}  {:>5}  {:>8}  {:>5}  {:<28}  {:>9}  {:<22}  HASH",
                "EXPERIMENT", "CKPTS", "STEP", "EPOCH", "BEST", "SIZE", "MODIFIED"
            );
            for e in &ex {
                let best = match (&e.monitor, e.best_value) {
                    (Some(m), Some(v)) => format!("{m}={}", (v * 10000.0).round() / 10000.0),
                    _ => "-".into(),
                };
                let _ = writeln!(
                    s,
                    "{:<w$}  {:>5}  {:>8}  {:>5}  {:<28}  {:>9}  {:<22}  {}",
                    label(e),
                    e.checkpoints,
                    e.latest_step
                        .map(|x| x.to_string())
                        .unwrap_or_else(|| "-".into()),
                    e.latest_epoch
                        .map(|x| x.to_string())
                        .unwrap_or_else(|| "-".into()),
                    best,
                    human_bytes(e.total_bytes),
                    e.last_modified
                        .as_deref()
                        .map(|m| &m[..m.len().min(19)])
                        .unwrap_or("-"),
                    e.hash.as_deref().unwrap_or("-")
                );
            }
            let _ = writeln!(s, "{} experiment(s)", ex.len());
            crate::print_stdout(&s)?;
        }
    }
    Ok(Outcome::Ok)
}

pub fn latest(a: &LatestArgs) -> Result<Outcome> {
    let entries = catalog("latest", std::slice::from_ref(&a.path), a.no_cache)?;
    let entries: Vec<CatalogEntry> = match &a.experiment {
        Some(x) => entries
            .into_iter()
            .filter(|e| e.experiment.as_deref() == Some(x.as_str()))
            .collect(),
        None => entries,
    };
    match compare::latest(&entries, a.step) {
        Some(e) => {
            crate::print_stdout(&format!("{}\n", e.path))?;
            Ok(Outcome::Ok)
        }
        None => match a.step {
            Some(s) => bail!("{}: no checkpoint at step {s}", a.path.display()),
            None => bail!("{}: no readable checkpoint", a.path.display()),
        },
    }
}

/// `ckpt prune`'s plan for `a` (its paths and rules; `yes` and `format` are not looked at),
/// on the catalog cache `cache`: what `--format json` prints as `plan`, and what
/// `ckpt serve --allow-writes` shows before it deletes anything.
pub fn prune_plan(a: &PruneArgs, cache: Option<PathBuf>) -> Result<retention::Plan> {
    let entries = catalog_with("prune", &a.paths, cache)?;
    // A mistyped monitor would make every metric "unknown" and keep everything silently.
    let mut fields = crate::catalog::FieldCheck::new(vec![("--monitor", a.monitor.as_str())]);
    for e in &entries {
        fields.see(e);
    }
    fields.check()?;
    let opts = PruneOptions {
        keep_top: a.keep_top,
        monitor: a.monitor.clone(),
        mode: if a.mode == "min" {
            Mode::Min
        } else {
            Mode::Max
        },
        keep_last: a.keep_last,
        keep_every: a.keep_every,
        group: a.group_by.get(),
    };
    Ok(retention::plan(&entries, &a.paths, &opts))
}

pub fn prune(a: &PruneArgs) -> Result<Outcome> {
    let plan = prune_plan(a, (!a.no_cache).then(Cache::default_path))?;
    let executed = a.yes.then(|| retention::execute(&plan));
    match a.format {
        OutputFormat::Json => {
            let v = json!({"plan": plan, "executed": executed});
            let mut s = serde_json::to_string_pretty(&v)?;
            s.push('\n');
            crate::print_stdout(&s)?;
        }
        OutputFormat::Table => {
            let mut s = String::new();
            for d in &plan.decisions {
                let act = match d.action {
                    Action::Keep => "keep  ",
                    Action::Delete => "DELETE",
                };
                let _ = writeln!(s, "{act}  {}  ({})", d.path, d.reasons.join("; "));
                for sc in &d.sidecars {
                    if d.action == Action::Delete {
                        let _ = writeln!(s, "        + sidecar {sc}");
                    }
                }
            }
            let _ = writeln!(
                s,
                "{} to delete, {} to keep, {} freed{}",
                plan.delete_count,
                plan.keep_count,
                human_bytes(plan.bytes_freed),
                if a.yes {
                    ""
                } else {
                    " (dry run: nothing deleted; add --yes to delete)"
                }
            );
            if let Some(x) = &executed {
                let _ = writeln!(
                    s,
                    "deleted {} file(s), {} freed",
                    x.deleted.len(),
                    human_bytes(x.bytes_freed)
                );
                for (p, why) in &x.skipped {
                    let _ = writeln!(s, "skipped {p}: {why}");
                }
            }
            crate::print_stdout(&s)?;
        }
    }
    // `--yes` that could not carry out a planned deletion (the file changed, a permission
    // error) did not do what was asked: exit 1, after the report says which and why.
    if executed.as_ref().is_some_and(|x| !x.skipped.is_empty()) {
        return Ok(Outcome::Findings);
    }
    Ok(Outcome::Ok)
}
