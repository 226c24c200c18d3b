//! `GET /api/curves?path=P[&path=…]`: the metric series of the runs the given checkpoints
//! belong to, with every catalog entry of each run as a mark at its step.
//!
//! - The paths are resolved exactly as `/api/checkpoint` resolves one (the catalog's own
//!   spelling, else resolved and looked up among the entries under the roots; 404 otherwise).
//! - Checkpoints are grouped by run (the entry's `experiment` and `run`; an entry with
//!   neither is a run of its own). A run's logs are the folders the catalog's own sources
//!   read for its requested checkpoints (`ckpt_meta`'s `log_dirs`: the Lightning version
//!   folder, the MLflow run, the W&B run, the JSON-report folder); a folder that resolves
//!   outside the served roots (a W&B run beside a save dir above them) is not read, and says
//!   so in the run's warnings.
//! - Reading is `ckpt_curves`' (bounded per file, per series and per run), on the blocking
//!   pool, [`READERS`] runs at a time for the whole server: a request for 32 runs of large
//!   logs waits its turn instead of taking every core.
//! - A mark's `step` is the entry's `global_step`, else its epoch placed at the last step the
//!   run's logs show for that epoch (a series named `epoch` on the step axis: Lightning logs
//!   one), else `null`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ckpt_catalog::CatalogEntry;
use ckpt_curves::{Axis, Folder, Limits};
use ckpt_meta::sources::folders::{LogDirKind, log_dirs};
use serde::Serialize;

use super::{App, Snapshot, current, error};

/// Most checkpoints one request names.
const MAX_PATHS: usize = 32;

/// Points in one answer, over all its runs: each run gets an equal share (at most
/// [`Limits::max_points_run`]), so 32 runs cannot make a gigabyte of JSON.
const MAX_POINTS_ANSWER: usize = 4_000_000;

/// Runs read at once by the whole server.
const READERS: usize = 2;
static READING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(READERS);

#[derive(Serialize)]
struct SourceOut {
    kind: ckpt_curves::SourceKind,
    path: String,
}

#[derive(Serialize)]
struct SeriesOut {
    metric: String,
    source: usize,
    x: Axis,
    points: Vec<(i64, f64)>,
}

#[derive(Serialize)]
struct Mark {
    path: String,
    step: Option<i64>,
    epoch: Option<i64>,
    is_best: bool,
    is_last: bool,
}

#[derive(Serialize)]
struct RunOut {
    experiment: Option<String>,
    run: Option<String>,
    sources: Vec<SourceOut>,
    series: Vec<SeriesOut>,
    checkpoints: Vec<Mark>,
    warnings: Vec<String>,
}

/// A run: the entries' (experiment, run), or one entry alone when it has neither.
#[derive(Clone, PartialEq, Eq, Hash)]
enum RunKey {
    Run(Option<String>, Option<String>),
    Alone(usize),
}

fn key_of(i: usize, e: &CatalogEntry) -> RunKey {
    if e.experiment.is_none() && e.run.is_none() {
        RunKey::Alone(i)
    } else {
        RunKey::Run(e.experiment.clone(), e.run.clone())
    }
}

/// The entry a requested path names, as `/api/checkpoint` finds it.
#[allow(clippy::result_large_err)]
fn find(app: &App, snap: &Snapshot, path: &str) -> Result<usize, Response> {
    super::locate(app, snap, path).map_err(|(status, msg)| error(status, msg))
}

pub(super) async fn curves(
    State(app): State<Arc<App>>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let pairs = match pairs {
        Ok(Query(p)) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let mut paths = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "path" => paths.push(v),
            "token" => {}
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("{other:?}: unknown parameter (path)"),
                );
            }
        }
    }
    if paths.iter().all(String::is_empty) {
        return error(StatusCode::BAD_REQUEST, "path=: required".to_owned());
    }
    if paths.len() > MAX_PATHS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{} paths: at most {MAX_PATHS}", paths.len()),
        );
    }
    let snap = current(&app);
    // Runs in the order their first checkpoint was asked for; per run, the entries asked.
    let mut order: Vec<(RunKey, Vec<usize>)> = Vec::new();
    for p in paths.iter().filter(|p| !p.is_empty()) {
        let i = match find(&app, &snap, p) {
            Ok(i) => i,
            Err(r) => return r,
        };
        let key = key_of(i, &snap.entries[i]);
        match order.iter_mut().find(|(k, _)| *k == key) {
            Some((_, asked)) if !asked.contains(&i) => asked.push(i),
            Some(_) => {}
            None => order.push((key, vec![i])),
        }
    }
    let defaults = Limits::default();
    let limits = Limits {
        max_points_run: (MAX_POINTS_ANSWER / order.len().max(1)).min(defaults.max_points_run),
        ..defaults
    };
    let mut tasks = Vec::with_capacity(order.len());
    for (key, asked) in order {
        let app = app.clone();
        let snap = snap.clone();
        tasks.push(tokio::spawn(async move {
            let _turn = READING.acquire().await;
            tokio::task::spawn_blocking(move || read_run(&app, &snap, &key, &asked, &limits)).await
        }));
    }
    let mut runs = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(Ok(run)) => runs.push(run),
            Ok(Err(e)) | Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading a run's logs failed: {e}"),
                );
            }
        }
    }
    Json(serde_json::json!({ "runs": runs })).into_response()
}

fn lossy(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Whether a folder resolves under one of the served roots.
fn served(app: &App, dir: &Path) -> bool {
    super::resolve(dir).is_ok_and(|real| app.real_roots.iter().any(|r| real.starts_with(r)))
}

fn read_run(app: &App, snap: &Snapshot, key: &RunKey, asked: &[usize], limits: &Limits) -> RunOut {
    let members: Vec<&CatalogEntry> = match key {
        RunKey::Alone(i) => snap.entries.get(*i).into_iter().collect(),
        RunKey::Run(..) => snap
            .entries
            .iter()
            .enumerate()
            .filter(|(i, e)| key_of(*i, e) == *key)
            .map(|(_, e)| e)
            .collect(),
    };
    let mut warnings = Vec::new();
    let cache = ckpt_meta::sources::DirCache::new();
    let mut dirs: Vec<(Folder, PathBuf)> = Vec::new();
    for &i in asked {
        let Some(e) = snap.entries.get(i) else {
            continue;
        };
        for d in log_dirs(&cache, Path::new(&e.path)) {
            let folder = match d.kind {
                LogDirKind::Lightning => Folder::Lightning,
                LogDirKind::Mlflow => Folder::Mlflow,
                LogDirKind::Wandb => Folder::Wandb,
                LogDirKind::Reports => Folder::Reports,
            };
            if dirs.iter().any(|(f, p)| *f == folder && *p == d.path) {
                continue;
            }
            if !served(app, &d.path) {
                let w = format!("{}: outside the served paths: not read", d.path.display());
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
                continue;
            }
            dirs.push((folder, d.path));
        }
    }
    let sources: Vec<ckpt_curves::Source> = dirs
        .iter()
        .flat_map(|(f, d)| ckpt_curves::sources_in(*f, d))
        .collect();
    let curves = ckpt_curves::read(sources, limits);
    let epochs: HashMap<i64, i64> = ckpt_curves::epoch_steps(&curves.series);
    let checkpoints = members
        .iter()
        .map(|e| Mark {
            path: e.path.clone(),
            step: e
                .global_step
                .or_else(|| e.epoch.and_then(|ep| epochs.get(&ep).copied())),
            epoch: e.epoch,
            is_best: e.is_best,
            is_last: e.is_last,
        })
        .collect();
    warnings.extend(curves.warnings.iter().map(ToString::to_string));
    let (experiment, run) = match key {
        RunKey::Run(x, r) => (x.clone(), r.clone()),
        RunKey::Alone(_) => (None, None),
    };
    RunOut {
        experiment,
        run,
        sources: curves
            .sources
            .iter()
            .map(|s| SourceOut {
                kind: s.kind,
                path: lossy(&s.path),
            })
            .collect(),
        series: curves
            .series
            .into_iter()
            .map(|s| SeriesOut {
                metric: s.metric,
                source: s.source,
                x: s.x,
                points: s.points,
            })
            .collect(),
        checkpoints,
        warnings,
    }
}
