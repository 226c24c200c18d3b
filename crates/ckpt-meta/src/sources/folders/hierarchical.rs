//! Hierarchical experiment folders: `<task>/<YYYY-MM-DD_HH-MM-SS>_<MODEL>_<LOSS>/` and their
//! JSON reports.

use super::*;

/// Timestamp prefixes of experiment folder names (`D` = digit), longest first.
const STAMPS: &[&str] = &[
    "DDDD-DD-DD_DD-DD-DD",
    "DDDD-DD-DDTDD-DD-DD",
    "DDDD-DD-DD_DD-DD",
    "DDDDDDDD_DDDDDD",
    "DDDDDDDD-DDDDDD",
    "DDDD-DD-DD",
];

/// What follows a timestamp prefix and a `_`/`-` separator (`resnet18_weighted_bce` in
/// `2025-02-12_14-30-45_resnet18_weighted_bce`).
pub(super) fn after_timestamp(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    // The longest template the name starts with decides.
    let p = STAMPS.iter().map(|p| p.as_bytes()).find(|p| {
        b.len() >= p.len()
            && p.iter().zip(b).all(|(&pc, &c)| match pc {
                b'D' => c.is_ascii_digit(),
                other => other == c,
            })
    })?;
    if b.len() < p.len() + 2 || !matches!(b[p.len()], b'_' | b'-') {
        return None;
    }
    name.get(p.len() + 1..)
}

/// Split `<MODEL>_<LOSS>` on the longest known loss suffix (case-insensitive; `_loss` may
/// follow the loss): `vit_base_patch32_224_focal` → (`vit_base_patch32_224`, `focal`).
pub fn split_model_loss(rest: &str) -> Option<(&str, &str)> {
    let lower = rest.to_ascii_lowercase();
    let mut best: Option<usize> = None; // length of the suffix incl. its `_`
    for loss in LOSS_SUFFIXES {
        for with in ["", "_loss"] {
            let suffix = format!("_{loss}{with}");
            if lower.len() > suffix.len()
                && lower.ends_with(&suffix)
                && best.is_none_or(|b| suffix.len() > b)
            {
                best = Some(suffix.len());
            }
        }
    }
    let cut = rest.len() - best?;
    // ASCII suffix: `cut` is a char boundary.
    Some((rest.get(..cut)?, rest.get(cut + 1..)?))
}

#[derive(Debug, Default)]
pub(super) struct HierDir {
    is_exp: bool,
    /// One of the three JSON reports is here (not just a folder name that looks like one).
    pub(super) has_reports: bool,
    folder: String,
    model: Option<(String, Source)>,
    loss: Option<(String, Source)>,
    root_name: Option<String>,
    hparams: Vec<(String, Value)>,
    metrics: Vec<(String, f64)>,
    best_epoch: Option<i64>,
}

/// A string under the first of `keys` (any case) at the top of an object.
fn get_str_ci(v: &Value, keys: &[&str]) -> Option<String> {
    let m = v.as_object()?;
    keys.iter().find_map(|k| {
        m.iter()
            .find(|(mk, mv)| mk.eq_ignore_ascii_case(k) && mv.is_string())
            .and_then(|(_, mv)| mv.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    })
}

const MODEL_KEYS: &[&str] = &["model_name", "model", "architecture", "arch", "backbone"];
const LOSS_KEYS: &[&str] = &["loss_function", "loss", "loss_name", "loss_fn", "criterion"];
/// Objects in a summary or report whose numbers are metrics.
const METRIC_GROUPS: &[&str] = &[
    "test_results",
    "test_metrics",
    "metrics",
    "final_metrics",
    "results",
];

fn report_metrics(v: &Value, out: &mut Vec<(String, f64)>) {
    let Some(m) = v.as_object() else { return };
    let mut add = |name: String, x: &Value| {
        if let Some(x) = x.as_f64()
            && x.is_finite()
            && !name.starts_with("best_")
            && !out.iter().any(|(n, _)| *n == name)
        {
            out.push((name, x));
        }
    };
    for g in METRIC_GROUPS {
        if let Some(Value::Object(group)) = m.get(*g) {
            for (k, x) in group {
                add(k.clone(), x);
            }
        }
    }
    for (k, x) in m {
        if k.starts_with("test_") {
            add(k.clone(), x);
        }
    }
    // scikit-learn's classification_report(output_dict=True)
    if let Some(x) = m.get("accuracy") {
        add("accuracy".to_owned(), x);
    }
    for avg in ["macro avg", "weighted avg", "micro avg"] {
        if let Some(Value::Object(a)) = m.get(avg) {
            let base = avg.replace(' ', "_");
            for (k, short) in [
                ("f1-score", "f1"),
                ("precision", "precision"),
                ("recall", "recall"),
            ] {
                if let Some(x) = a.get(k) {
                    add(format!("{base}_{short}"), x);
                }
            }
        }
    }
}

impl HierDir {
    pub(super) fn load(cache: &DirCache, dir: &Path) -> HierDir {
        let Some(folder) = name_of(dir) else {
            return HierDir::default();
        };
        let summary_p = dir.join("training_summary.json");
        let report_p = dir.join("classification_report.json");
        let minimal_p = dir.join("minimal_logging.json");
        let has_reports = is_file(&summary_p) || is_file(&report_p) || is_file(&minimal_p);
        let rest = after_timestamp(folder);
        let split = rest.and_then(split_model_loss);
        if !has_reports && split.is_none() {
            return HierDir::default();
        }
        let read = |p: &Path| {
            if has_reports || p.ends_with("config.json") {
                cache.config(p)
            } else {
                None
            }
        };
        let summary = read(&summary_p);
        let report = read(&report_p);
        let minimal = read(&minimal_p);
        let config = read(&dir.join("config.json"));
        let jsons: Vec<&Value> = [&summary, &report, &config]
            .into_iter()
            .filter_map(|x| x.as_deref())
            .collect();
        let mut h = HierDir {
            is_exp: true,
            has_reports,
            folder: folder.to_owned(),
            ..HierDir::default()
        };
        h.model = jsons
            .iter()
            .find_map(|v| get_str_ci(v, MODEL_KEYS))
            .map(|m| (m, Source::JsonReport));
        h.loss = jsons
            .iter()
            .find_map(|v| get_str_ci(v, LOSS_KEYS))
            .map(|l| (l, Source::JsonReport));
        if let Some(rest) = rest {
            let lower = rest.to_ascii_lowercase();
            match (&h.model, &h.loss) {
                (Some((m, _)), None) => {
                    let prefix = format!("{}_", m.to_ascii_lowercase());
                    if lower.len() > prefix.len() && lower.starts_with(&prefix) {
                        h.loss = rest
                            .get(prefix.len()..)
                            .map(|l| (l.to_owned(), Source::FolderName));
                    } else if let Some((_, l)) = split {
                        h.loss = Some((l.to_owned(), Source::FolderName));
                    }
                }
                (None, Some((l, _))) => {
                    let suffix = format!("_{}", l.to_ascii_lowercase());
                    if lower.len() > suffix.len() && lower.ends_with(&suffix) {
                        h.model = rest
                            .get(..rest.len() - suffix.len())
                            .map(|m| (m.to_owned(), Source::FolderName));
                    } else if let Some((m, _)) = split {
                        h.model = Some((m.to_owned(), Source::FolderName));
                    }
                }
                (None, None) => {
                    if let Some((m, l)) = split {
                        h.model = Some((m.to_owned(), Source::FolderName));
                        h.loss = Some((l.to_owned(), Source::FolderName));
                    }
                }
                (Some(_), Some(_)) => {}
            }
        }
        h.root_name = summary
            .as_deref()
            .and_then(|s| get_str_ci(s, &["root_name", "task"]));
        if let Some(Value::Object(c)) = config.as_deref() {
            h.hparams = c.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        for v in [&summary, &report].into_iter().filter_map(|x| x.as_deref()) {
            report_metrics(v, &mut h.metrics);
        }
        h.best_epoch = [&summary, &minimal]
            .into_iter()
            .filter_map(|x| x.as_deref())
            .find_map(|v| v.get("best_epoch").and_then(Value::as_i64));
        h
    }
}

/// The folders between the nearest `checkpoints` folder above `exp` (else `root`) and `exp`,
/// `/`-joined: `flares/multiclass`. `None` when neither is above `exp`.
fn task_of(exp: &Path, root: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = exp.parent();
    let mut depth = 0;
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || depth > 16 {
            break;
        }
        if name_of(d) == Some("checkpoints") {
            parts.reverse();
            return Some(parts.join("/"));
        }
        let Some(n) = d.file_name() else { break };
        parts.push(n.to_string_lossy().into_owned());
        cur = d.parent();
        depth += 1;
    }
    let parent = exp.parent()?;
    if parent == root {
        return Some(String::new());
    }
    rel_name(parent, root)
}

/// The hierarchical experiment folder of a checkpoint (its folder, or the one above a
/// `checkpoints`/`weights`/`ckpts` folder), with what it holds. The one rule
/// [`hierarchical`] and [`super::log_dirs`] share.
pub(super) fn experiment_dir<'p>(
    cache: &DirCache,
    ckpt: &'p Path,
) -> Option<(&'p Path, Arc<HierDir>)> {
    let parent = ckpt.parent()?;
    let mut cands = vec![parent];
    if matches!(name_of(parent), Some("checkpoints" | "weights" | "ckpts"))
        && let Some(p) = parent.parent()
    {
        cands.push(p);
    }
    cands.into_iter().find_map(|d| {
        let info = cache.hier_dir(d);
        info.is_exp.then_some((d, info))
    })
}

/// Hierarchical experiment folders `checkpoints/<task...>/<YYYY-MM-DD_HH-MM-SS>_<MODEL>_<LOSS>/`
/// with `config.json`, `training_summary.json`, `classification_report.json`,
/// `minimal_logging.json` (the checkpoint in the folder or in a `checkpoints/` folder inside
/// it). A folder counts when it holds one of the three reports, or when its name is a
/// timestamp followed by `<MODEL>_<LOSS>` with a known loss.
///
/// - `experiment`: `<task>/<folder>`; `task`: the folders between `checkpoints` (else `root`)
///   and the experiment folder, else the summary's `root_name`;
/// - `model.architecture`, `model.loss`: from the JSON files (`model_name`, `loss_function`,
///   `MODEL_NAME` …), else from the folder name split on the longest known loss suffix;
/// - `hparams.<KEY>` from `config.json`, as written;
/// - `metrics.<name>` from the summary's `test_results` and the report's `test_metrics` (and
///   scikit-learn's `accuracy`, `macro_avg_f1` …), for the best checkpoint (or when which one
///   is best is unknown). `best_*` values and the metrics the file name states
///   (`best-epoch02-val_f1-0.847`) are left to the file-name source;
/// - `is_best`: whether the file name's epoch is the reports' `best_epoch`.
pub fn hierarchical(cache: &DirCache, ckpt: &Path, root: &Path) -> Vec<Fact> {
    let Some((dir, info)) = experiment_dir(cache, ckpt) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let task = task_of(dir, root).filter(|t| !t.is_empty());
    let exp = match &task {
        Some(t) => format!("{t}/{}", info.folder),
        None => info.folder.clone(),
    };
    out.push(Fact::new(Field::Run, json!(exp), Source::FolderName));
    out.push(Fact::new(Field::Experiment, json!(exp), Source::FolderName));
    match (task, &info.root_name) {
        (Some(t), _) => out.push(Fact::new(Field::Task, json!(t), Source::FolderName)),
        (None, Some(r)) => out.push(Fact::new(Field::Task, json!(r), Source::JsonReport)),
        (None, None) => {}
    }
    if let Some((m, src)) = &info.model {
        out.push(Fact::new(
            Field::Model("architecture".into()),
            json!(m),
            *src,
        ));
    }
    if let Some((l, src)) = &info.loss {
        out.push(Fact::new(Field::Model("loss".into()), json!(l), *src));
    }
    for (k, v) in &info.hparams {
        out.push(Fact::new(
            Field::Hparam(k.clone()),
            v.clone(),
            Source::JsonReport,
        ));
    }
    let pos = parse_file_name(&stem_of(ckpt));
    let is_best = match (pos.epoch, info.best_epoch) {
        (Some(e), Some(b)) => Some(e == b),
        _ => None,
    };
    if let Some(b) = is_best {
        out.push(Fact::new(Field::IsBest, json!(b), Source::JsonReport));
    }
    if is_best != Some(false) {
        for (n, x) in &info.metrics {
            if pos.metrics.iter().any(|(fm, _)| fm == n) {
                continue;
            }
            if let Some(v) = num(*x) {
                out.push(Fact::new(Field::Metric(n.clone()), v, Source::JsonReport));
            }
        }
    }
    out
}
