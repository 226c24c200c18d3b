//! `ckpt hash` and `ckpt diff`: experiment identity (the algorithm lives in `ckpt-identity`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, bail};
use ckpt_catalog::catalog::{Options, build};
use ckpt_identity::diff::{self, RunFacts};
use ckpt_identity::report::DiffSide;
use ckpt_identity::{
    Algorithm, DiffReport, HashOptions, HashReport, folder_name, gather, identity,
};
use serde_json::Value;

use crate::Outcome;
use crate::cli::{DiffArgs, HashArgs, OutputFormat};

fn hash_options(a: &HashArgs) -> HashOptions {
    HashOptions {
        algorithm: a.algorithm,
        hparams_file: a.hparams.clone(),
        data_uids: a.data_uids.clone(),
        uid_column: a.uid_column.clone(),
        ignore: a.ignore.clone(),
    }
}

fn json_line<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    crate::print_stdout(&s)
}

/// `ckpt hash --format json`'s report for `path` (`ckpt serve`'s detail shows the same), or
/// the error the command prints.
pub fn hash_report(path: &Path, opts: &HashOptions) -> Result<HashReport> {
    let inputs = gather(path, opts)?;
    let id = identity(&inputs);
    let c = &id.components;
    if c.architecture.is_none() && c.hyperparameters.is_none() && c.data.is_none() {
        bail!(
            "{}: nothing to identify: no state dict, no hyperparameters and no data UIDs found",
            path.display()
        );
    }
    let folder = match (&inputs.folder, &inputs.checkpoint) {
        (Some(f), Some(ck)) => Some(folder_name(f, ck, opts, &id)),
        _ => None,
    };
    Ok(HashReport::new(&inputs, id, folder))
}

pub fn hash(a: &HashArgs) -> Result<Outcome> {
    let mut opts = hash_options(a);
    // A hash is compared only with a hash of the version it names.
    if let Some(e) = &a.expect {
        match Algorithm::of_hash(e)? {
            Some(alg) => opts.algorithm = alg,
            None => bail!(
                "--expect {e}: give the hash as `ckpt hash` prints it, with its version \
                 (v1:…, v2:…)"
            ),
        }
    }
    let report = hash_report(&a.path, &opts)?;
    if let Some(f) = &report.folder
        && let Some(v) = &f.states_version
        && v.parse::<Algorithm>().is_err()
    {
        crate::sink_eprintln!(
            "ckpt: warning: {}: the folder name states identity algorithm {v}, which this ckpt \
             does not know; it was not compared",
            f.path
        );
    }
    match a.format {
        OutputFormat::Json => json_line(&report)?,
        OutputFormat::Table => {
            let mut s = format!("{}  {}\n", report.hash, a.path.display());
            let show = |x: &Option<String>| x.clone().unwrap_or_else(|| "-".into());
            let comp = &report.components;
            let _ = writeln!(
                s,
                "  architecture     {}  ({} tensors)",
                show(&comp.architecture),
                report.inputs.tensors
            );
            let _ = writeln!(
                s,
                "  hyperparameters  {}{}",
                show(&comp.hyperparameters),
                report
                    .inputs
                    .hyperparameters
                    .as_ref()
                    .map(|x| format!("  (from {})", x.source.name()))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                s,
                "  data             {}{}",
                show(&comp.data),
                report
                    .inputs
                    .data
                    .as_ref()
                    .map(|d| format!("  ({} UIDs from {})", d.uids, d.source.name()))
                    .unwrap_or_default()
            );
            if let Some(f) = &report.folder
                && let Some(m) = f.matches
            {
                let _ = writeln!(s, "  folder           {} is this identity ({m})", f.name);
            }
            crate::print_stdout(&s)?;
        }
    }
    if let Some(e) = &a.expect
        && !e.eq_ignore_ascii_case(&report.hash)
    {
        crate::sink_eprintln!(
            "ckpt: {} is not experiment {e}: its {} identity is {}",
            a.path.display(),
            report.algorithm,
            report.hash
        );
        return Ok(Outcome::Findings);
    }
    Ok(Outcome::Ok)
}

/// What the catalog says of `path`'s run: metrics, epoch, step (nothing when it cannot say).
fn run_facts(path: &Path) -> RunFacts {
    let opts = Options {
        cache: None,
        ..Options::default()
    };
    let Some(e) = build(&[path.to_path_buf()], &opts)
        .ok()
        .and_then(|c| c.entries.into_iter().next())
    else {
        return RunFacts::default();
    };
    RunFacts {
        metrics: serde_json::to_value(&e.metrics).unwrap_or(Value::Null),
        epoch: e.epoch,
        global_step: e.global_step,
    }
}

/// `ckpt diff --format json`'s report of `a` against `b` (`ckpt serve`'s compare shows the
/// same).
pub fn diff_report(a: &Path, b: &Path, opts: &HashOptions) -> Result<DiffReport> {
    // The run facts come from a catalog entry of each file, built and dropped before the
    // identity inputs are gathered: what is live at once is one catalog, or the two sides'
    // inputs — never both (issue 10: a 10 MB checkpoint diffed within 100 MB; the catalog
    // resolves on worker threads, which would not reuse what a gather just freed on this
    // one). A catalog prints nothing and fails to nothing, so the order changes no output;
    // the cost is that a file that is not a checkpoint is catalogued before it is refused.
    // The same file twice is catalogued once.
    let fa = run_facts(a);
    let fb = if b == a { fa.clone() } else { run_facts(b) };
    let ia = gather(a, opts)?;
    let ib = gather(b, opts)?;
    let (ha, hb) = (identity(&ia), identity(&ib));
    let d = diff::diff(&ia, &ib, &fa, &fb);
    drop((ia, ib));
    let same = ha.hash == hb.hash;
    Ok(DiffReport {
        algorithm: opts.algorithm,
        a: DiffSide {
            path: a.display().to_string(),
            identity: ha,
        },
        b: DiffSide {
            path: b.display().to_string(),
            identity: hb,
        },
        identical: same,
        diff: d,
    })
}

pub fn diff(a: &DiffArgs) -> Result<Outcome> {
    let opts = HashOptions {
        algorithm: a.algorithm,
        ignore: a.ignore.clone(),
        ..HashOptions::default()
    };
    let report = diff_report(&a.a, &a.b, &opts)?;
    let same = report.identical;
    match a.format {
        OutputFormat::Json => json_line(&report)?,
        OutputFormat::Table => {
            let (ha, hb, d) = (&report.a.identity, &report.b.identity, &report.diff);
            let mut s = String::new();
            let _ = writeln!(s, "--- {}  {}", a.a.display(), ha.hash);
            let _ = writeln!(s, "+++ {}  {}", a.b.display(), hb.hash);
            let comp =
                |x: &Option<String>, y: &Option<String>| if x == y { "same" } else { "differs" };
            let _ = writeln!(
                s,
                "identity: architecture {}, hyperparameters {}, data {}",
                comp(&ha.components.architecture, &hb.components.architecture),
                comp(
                    &ha.components.hyperparameters,
                    &hb.components.hyperparameters
                ),
                comp(&ha.components.data, &hb.components.data)
            );
            for (n, dt, sh) in &d.architecture.removed {
                let _ = writeln!(s, "- tensor {n} {dt} {sh:?}");
            }
            for (n, dt, sh) in &d.architecture.added {
                let _ = writeln!(s, "+ tensor {n} {dt} {sh:?}");
            }
            for (n, x, y) in &d.architecture.reshaped {
                let _ = writeln!(s, "~ tensor {n} shape {x:?} -> {y:?}");
            }
            for (n, x, y) in &d.architecture.retyped {
                let _ = writeln!(s, "~ tensor {n} dtype {x} -> {y}");
            }
            for c in &d.hyperparameters {
                let _ = writeln!(s, "~ hparam {}: {} -> {}", c.path, c.old, c.new);
            }
            if d.data.added + d.data.removed > 0 {
                let _ = writeln!(
                    s,
                    "~ data: {} UIDs added (e.g. {}), {} removed (e.g. {})",
                    d.data.added,
                    d.data.examples_added.join(", "),
                    d.data.removed,
                    d.data.examples_removed.join(", ")
                );
            }
            if d.data.one_sided {
                let _ = writeln!(s, "~ data: only one side has UIDs");
            }
            for c in &d.metrics {
                let _ = writeln!(s, "~ metric {}: {} -> {}", c.path, c.old, c.new);
            }
            let opt = |x: &Option<i64>| x.map_or_else(|| "null".to_owned(), |v| v.to_string());
            if let Some((x, y)) = &d.epoch {
                let _ = writeln!(s, "~ epoch: {} -> {}", opt(x), opt(y));
            }
            if let Some((x, y)) = &d.global_step {
                let _ = writeln!(s, "~ global_step: {} -> {}", opt(x), opt(y));
            }
            crate::print_stdout(&s)?;
        }
    }
    Ok(if same { Outcome::Ok } else { Outcome::Findings })
}
