//! Logger runs: the MLflow file store, W&B offline/online run folders.

use super::*;

#[derive(Debug)]
pub(super) struct MlflowRun {
    /// `mlruns/<exp_id>/<run_id>`
    experiment: String,
    params: Map<String, Value>,
    /// name -> (step, value) in file order
    metrics: Vec<(String, Vec<(i64, f64)>)>,
    epochs: Vec<(i64, f64)>,
}

/// Files under `dir` (recursively, bounded), as (`/`-joined relative name, path).
fn walk_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(dir.to_path_buf(), String::new(), 0)];
    let mut seen = 0usize;
    while let Some((d, prefix, depth)) = stack.pop() {
        let Ok(rd) = read_dir(&d) else { continue };
        for e in rd.entries {
            seen += 1;
            if seen > MAX_DIR_ENTRIES {
                return out;
            }
            let name = consulted::entry_name(&e);
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            // What the listing (noted) says; symbolic links are not followed here.
            match (e.symlink, e.kind) {
                (false, Kind::Dir) if depth < 8 => stack.push((e.path, rel, depth + 1)),
                (false, Kind::File) => out.push((rel, e.path)),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// An MLflow param value (always written as text): numbers, booleans and JSON lists or
/// objects typed, anything else a string.
fn param_value(s: &str) -> Value {
    let t = s.trim();
    if let Ok(i) = t.parse::<i64>() {
        return json!(i);
    }
    if let Ok(x) = t.parse::<f64>()
        && let Some(v) = num(x)
    {
        return v;
    }
    match t {
        "True" | "true" => return json!(true),
        "False" | "false" => return json!(false),
        _ => {}
    }
    // Within the same node budget as any JSON file (a param file may be 16 MiB).
    if (t.starts_with('[') || t.starts_with('{'))
        && let Ok(v) = yaml::parse_json(t)
    {
        return v;
    }
    json!(s)
}

impl MlflowRun {
    pub(super) fn load(dir: &Path) -> Option<MlflowRun> {
        if !is_file(&dir.join("meta.yaml")) {
            return None;
        }
        let sub = |n: &str| is_dir(&dir.join(n));
        if !(sub("params") || sub("metrics") || sub("tags")) {
            return None;
        }
        let run = name_of(dir)?;
        let exp_dir = dir.parent()?;
        let exp = name_of(exp_dir)?;
        let store = exp_dir.parent().and_then(name_of).unwrap_or("mlruns");
        let mut r = MlflowRun {
            experiment: format!("{store}/{exp}/{run}"),
            params: Map::new(),
            metrics: Vec::new(),
            epochs: Vec::new(),
        };
        for (name, p) in walk_files(&dir.join("params")) {
            if let Some(text) = read_small(&p) {
                r.params.insert(name, param_value(&text));
            }
        }
        for (name, p) in walk_files(&dir.join("metrics")) {
            let Some(text) = read_small(&p) else { continue };
            let mut points = Vec::new();
            for line in text.lines() {
                let mut it = line.split_whitespace();
                let (Some(_ts), Some(v), step) = (it.next(), it.next(), it.next()) else {
                    continue;
                };
                let Ok(x) = v.parse::<f64>() else { continue };
                if !x.is_finite() {
                    continue;
                }
                let step = step.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
                points.push((step, x));
            }
            if name == "epoch" {
                r.epochs = points;
            } else if !points.is_empty() {
                r.metrics.push((name, points));
            }
        }
        Some(r)
    }

    /// The step a checkpoint's metrics are read up to: the file name's step, else the last
    /// step of its epoch; `Some(None)` for the end of training; `None` when unknown.
    fn horizon(&self, stem: &str) -> Option<Option<i64>> {
        let pos = parse_file_name(stem);
        if let Some(s) = pos.step {
            return Some(Some(s));
        }
        if let Some(e) = pos.epoch {
            let last = self
                .epochs
                .iter()
                .filter(|(_, x)| (*x - e as f64).abs() < 1e-9)
                .map(|(s, _)| *s)
                .max()?;
            return Some(Some(last));
        }
        if names_best(stem) { None } else { Some(None) }
    }
}

/// The value at the largest step not after `upto` (the later one on ties).
fn value_upto(points: &[(i64, f64)], upto: Option<i64>) -> Option<f64> {
    let mut best: Option<(i64, f64)> = None;
    for &(s, x) in points {
        if upto.is_some_and(|u| s > u) {
            continue;
        }
        if best.is_none_or(|(bs, _)| s >= bs) {
            best = Some((s, x));
        }
    }
    best.map(|(_, x)| x)
}

/// `offline-run-20261122_064815-vuo698ek` / `run-20261122_064815-vuo698ek` → `vuo698ek`.
pub(super) fn wandb_run_id(name: &str) -> Option<&str> {
    let rest = name
        .strip_prefix("offline-run-")
        .or_else(|| name.strip_prefix("run-"))?;
    let (stamp, id) = rest.split_once('-')?;
    let b = stamp.as_bytes();
    let stamp_ok = b.len() == 15
        && b[8] == b'_'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 8 || c.is_ascii_digit());
    (stamp_ok && !id.is_empty()).then_some(id)
}

/// Run folders in a `wandb/` folder by run id (the latest folder for a resumed id).
pub(super) fn list_wandb_runs(dir: &Path) -> HashMap<String, PathBuf> {
    let mut out: HashMap<String, PathBuf> = HashMap::new();
    let Ok(rd) = read_dir(dir) else {
        return out;
    };
    for e in rd.entries.into_iter().take(100_000) {
        let Some(name) = e.path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(id) = wandb_run_id(name) else {
            continue;
        };
        let path = e.path.clone();
        let newer = out
            .get(id)
            .is_none_or(|old| old.file_name().is_some_and(|o| o.to_str() < Some(name)));
        if newer {
            out.insert(id.to_owned(), path);
        }
    }
    out
}

#[derive(Debug, Default)]
pub(super) struct WandbRun {
    id: String,
    hparams: Vec<(String, Value)>,
    model: Vec<Fact>,
}

impl WandbRun {
    pub(super) fn load(cache: &DirCache, dir: &Path) -> WandbRun {
        let id = name_of(dir)
            .and_then(wandb_run_id)
            .unwrap_or_default()
            .to_owned();
        let mut r = WandbRun {
            id,
            ..WandbRun::default()
        };
        // `files/config.yaml`: `key: {desc: ..., value: ...}` (older) or `key: {value: ...}`.
        if let Some(cfg) = cache.config(&dir.join("files").join("config.yaml"))
            && let Some(m) = cfg.as_object()
        {
            let mut plain = Map::new();
            for (k, v) in m {
                if k.starts_with('_') || k == "wandb_version" {
                    continue;
                }
                let v = match v {
                    Value::Object(o) if o.contains_key("value") => {
                        o.get("value").cloned().unwrap_or(Value::Null)
                    }
                    other => other.clone(),
                };
                plain.insert(k.clone(), v);
            }
            let plain = Value::Object(plain);
            r.model = tree_facts(&plain, Source::Logger);
            if let Value::Object(m) = plain {
                r.hparams = m.into_iter().collect();
            }
        }
        r
    }
}

/// The MLflow file-store run folder a checkpoint sits in (up to [`MAX_ANCESTORS`] folders
/// below it), with what it holds.
pub(super) fn find_mlflow_run<'p>(
    cache: &DirCache,
    ckpt: &'p Path,
) -> Option<(&'p Path, Arc<MlflowRun>)> {
    ckpt.ancestors()
        .skip(1)
        .take(MAX_ANCESTORS)
        .take_while(|d| !consulted::beyond_buckets(d))
        .filter(|d| !d.as_os_str().is_empty())
        .find_map(|d| cache.mlflow_run(d).map(|r| (d, r)))
}

/// The W&B run folder of a checkpoint: an ancestor named `[offline-]run-<stamp>-<id>`, or,
/// for Lightning's WandbLogger layout `<save_dir>/<project>/<id>/checkpoints/X.ckpt`, the
/// folder `<save_dir>/wandb/[offline-]run-<stamp>-<id>`.
pub(super) fn find_wandb_run(cache: &DirCache, ckpt: &Path) -> Option<PathBuf> {
    for d in ckpt
        .ancestors()
        .skip(1)
        .take(MAX_ANCESTORS)
        .take_while(|d| !consulted::beyond_buckets(d))
    {
        if name_of(d).and_then(wandb_run_id).is_some() {
            return Some(d.to_path_buf());
        }
    }
    let parent = ckpt.parent()?;
    if name_of(parent) != Some("checkpoints") {
        return None;
    }
    let run = parent.parent()?;
    let id = name_of(run)?;
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    let save_dir = run.parent()?.parent()?;
    cache.wandb_list(&save_dir.join("wandb")).get(id).cloned()
}

/// Logger metadata around a checkpoint (source `logger`):
///
/// - MLflow's file store `<mlruns>/<exp_id>/<run_id>/{meta.yaml, params/, metrics/, tags/}`
///   (the checkpoint anywhere up to six folders below the run): `experiment` =
///   `mlruns/<exp_id>/<run_id>`, `hparams.<param>` (typed when the text is a number or
///   boolean), `metrics.<name>` = the value at the last step not after the checkpoint's
///   (from its file name, else the end of the run), `model.*` when params name it;
/// - W&B run folders (`wandb/[offline-]run-<stamp>-<id>/`, found from Lightning's
///   `<save_dir>/<project>/<id>/checkpoints/`): `experiment` = the run id, `hparams.*` and
///   `model.*` from `files/config.yaml` when present (the binary `.wandb` log is not read).
///
/// TensorBoard's `version_N/hparams.yaml` is [`lightning_logs`]' business. `root` is not
/// needed: logger experiments are named by the logger's ids.
pub fn loggers(cache: &DirCache, ckpt: &Path, _root: &Path) -> Vec<Fact> {
    let mut out = Vec::new();
    if let Some((_, run)) = find_mlflow_run(cache, ckpt) {
        out.push(Fact::new(
            Field::Experiment,
            json!(run.experiment),
            Source::Logger,
        ));
        out.push(Fact::new(Field::Run, json!(run.experiment), Source::Logger));
        for (k, v) in &run.params {
            out.push(Fact::new(
                Field::Hparam(k.clone()),
                v.clone(),
                Source::Logger,
            ));
        }
        out.extend(tree_facts(
            &Value::Object(run.params.clone()),
            Source::Logger,
        ));
        if let Some(upto) = run.horizon(&stem_of(ckpt)) {
            for (n, points) in &run.metrics {
                if let Some(v) = value_upto(points, upto).and_then(num) {
                    out.push(Fact::new(Field::Metric(n.clone()), v, Source::Logger));
                }
            }
        }
    }
    if let Some(dir) = find_wandb_run(cache, ckpt) {
        let run = cache.wandb_run(&dir);
        if !run.id.is_empty() {
            out.push(Fact::new(Field::Experiment, json!(run.id), Source::Logger));
            out.push(Fact::new(Field::Run, json!(run.id), Source::Logger));
            for (k, v) in &run.hparams {
                out.push(Fact::new(
                    Field::Hparam(k.clone()),
                    v.clone(),
                    Source::Logger,
                ));
            }
            out.extend(run.model.iter().cloned());
        }
    }
    out
}
