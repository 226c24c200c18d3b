//! Writes, only with `--allow-writes` (else every endpoint here is a 403): a plan first, then
//! its confirmation.
//!
//! - `POST /api/plan/sidecar?path=` — the sidecar `ckpt convert-legacy --checkpoint` would
//!   write for a catalog entry (its YAML, computed by the command's own code), and
//!   `POST /api/plan/prune?path=<folder>&keep_top=&monitor=&mode=[&keep_last=&keep_every=
//!   &group_by=]` — `ckpt prune`'s plan with the command's arguments — answer
//!   `{"plan": …, "confirm": token}`; nothing is written yet.
//! - `POST /api/apply?confirm=token` carries the plan out once: the token is spent on the
//!   first try, expires after [`TTL`], and at most [`MAX_PENDING`] are kept (the oldest goes).
//!   Before anything is written, what the plan was computed from is computed again (the
//!   sidecar's text, which covers the checkpoint and every file it reads; the prune plan's
//!   decisions with each file's size and mtime, and the sidecars' sizes and mtimes): any
//!   difference is a 409 and nothing is done. Applies run one at a time.
//! - The writes are the CLI's: `sidecar::write_atomic` (a temporary file, fsync, then into
//!   place; a new sidecar never replaces a file that appeared meanwhile) and
//!   `ckpt_retention::execute` (re-checks each file, removes exactly the planned ones).
//! - A sidecar ckpt did not write (`generator.tool` is not ckpt) is never replaced: its plan
//!   says so and carries no token.
//! - A browser on another site can post a plan but not read its token (no CORS headers),
//!   so it cannot confirm one; a site that rebinds its name to 127.0.0.1 to read it is
//!   refused by its `Host` (see [`writes`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ckpt_meta::sidecar::{self, Sidecar};
use ckpt_meta::sources::DirCache;
use serde_json::{Value, json};

use super::detail::{Fail, Pairs, heavy, lookup, one, optional, params};
use super::{App, current};
use crate::cli::{GroupByArg, OutputFormat, PruneArgs, Target};
use crate::meta::{Converted, Job, convert_one};

/// How long a plan's token stays valid.
const TTL: Duration = Duration::from_secs(600);
/// Most plans waiting for their confirmation; a new one pushes out the oldest.
const MAX_PENDING: usize = 32;

/// The plans waiting for their confirmation, and the lock that runs applies one at a time.
#[derive(Default)]
pub(crate) struct Writes {
    pending: Mutex<HashMap<String, Pending>>,
    applying: Arc<tokio::sync::Mutex<()>>,
}

struct Pending {
    issued: Instant,
    plan: Planned,
}

enum Planned {
    Sidecar(SidecarPlan),
    Prune(PrunePlan),
}

/// The sidecar to write and everything that must be unchanged when it is.
#[derive(Clone)]
struct SidecarPlan {
    checkpoint: PathBuf,
    sidecar: PathBuf,
    /// The YAML to write.
    text: String,
    /// Replace the existing sidecar (ckpt's own), rather than create one where none is.
    replace: bool,
    /// The existing sidecar's bytes when planned.
    existing: Option<Vec<u8>>,
}

/// `ckpt prune`'s arguments as given, and the plan they gave.
struct PrunePlan {
    args: PruneQuery,
    plan: ckpt_retention::Plan,
    fingerprint: Value,
}

#[derive(Clone)]
struct PruneQuery {
    /// The folders (or files), as `ckpt prune` takes several.
    folders: Vec<PathBuf>,
    keep_top: usize,
    monitor: String,
    mode: String,
    keep_last: usize,
    keep_every: Option<u64>,
    group_by: GroupByArg,
}

impl PruneQuery {
    fn args(&self) -> PruneArgs {
        PruneArgs {
            paths: self.folders.clone(),
            keep_top: self.keep_top,
            monitor: self.monitor.clone(),
            mode: self.mode.clone(),
            keep_last: self.keep_last,
            keep_every: self.keep_every,
            yes: false,
            format: OutputFormat::Json,
            no_cache: false,
            group_by: self.group_by,
        }
    }
}

impl Writes {
    /// Keep `plan` until confirmed; its token.
    fn issue(&self, plan: Planned) -> Result<String, Fail> {
        let token = super::random_token()
            .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, crate::one_line(&e)))?;
        let mut pending = match self.pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        pending.retain(|_, p| now.duration_since(p.issued) < TTL);
        while pending.len() >= MAX_PENDING {
            let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.issued)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            pending.remove(&oldest);
        }
        pending.insert(token.clone(), Pending { issued: now, plan });
        Ok(token)
    }

    /// The plan of `token`, removed: a token is good for one try.
    fn take(&self, token: &str) -> Option<Planned> {
        let mut pending = match self.pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        let p = pending.remove(token)?;
        (p.issued.elapsed() < TTL).then_some(p.plan)
    }
}

/// The pending plans, or a 403: without `--allow-writes` every write is refused; with it on
/// loopback (no access token), so is a request whose `Host` is not a loopback name. A page of
/// another site whose name was made to resolve to 127.0.0.1 (DNS rebinding) is same-origin
/// to the browser: it could read a plan's token and confirm it.
fn writes<'a>(app: &'a App, headers: &HeaderMap) -> Result<&'a Writes, Fail> {
    let w = app.deep.writes.as_ref().ok_or_else(|| {
        Fail(
            StatusCode::FORBIDDEN,
            "writes are off: start ckpt serve with --allow-writes".to_owned(),
        )
    })?;
    if app.token.is_none() && !loopback_host(headers) {
        let host = headers
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        return Err(Fail(
            StatusCode::FORBIDDEN,
            format!(
                "Host: {host:?} is not a loopback name: writes are taken only from \
                 localhost, 127.0.0.1 or [::1]"
            ),
        ));
    }
    Ok(w)
}

/// Whether the request's `Host` names this machine's loopback (`localhost`, `127.0.0.1`,
/// `[::1]`, with or without a port).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `POST /api/plan/sidecar?path=`.
pub(super) async fn plan_sidecar(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    pairs: Pairs,
) -> Result<Response, Fail> {
    let w = writes(&app, &headers)?;
    let p = params(pairs, &["path"])?;
    let entry = lookup(&app, &current(&app), one(&p, "path")?)?;
    let checkpoint = PathBuf::from(&entry.path);
    let (plan, todo) = heavy(&app, move || sidecar_plan(&checkpoint))
        .await?
        .map_err(|e| Fail(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let confirm = match todo {
        Some(s) => Value::from(w.issue(Planned::Sidecar(s))?),
        None => Value::Null,
    };
    Ok(Json(json!({ "plan": plan, "confirm": confirm })).into_response())
}

/// What the sidecar of `checkpoint` would be: the plan shown, and what to write (none when
/// a sidecar ckpt did not write is in the way).
fn sidecar_plan(checkpoint: &Path) -> Result<(Value, Option<SidecarPlan>), String> {
    // The command's own refusals (a DCP folder, a special file …).
    crate::meta::discover(&Target {
        checkpoint: Some(checkpoint.to_path_buf()),
        exp_dir: None,
        outputs_dir: None,
        no_recursive: false,
    })
    .map_err(|e| crate::one_line(&e))?;
    let yaml = sidecar::yaml_path(checkpoint);
    let existing = match std::fs::symlink_metadata(&yaml) {
        Ok(m) if m.is_file() => Some(
            std::fs::read(&yaml).map_err(|e| format!("{}: cannot read: {e}", yaml.display()))?,
        ),
        Ok(_) => {
            return Err(format!(
                "{}: exists and is not a regular file; left as it is",
                yaml.display()
            ));
        }
        Err(_) => None,
    };
    let ours = existing
        .as_ref()
        .map(|_| Sidecar::read(&yaml).is_ok_and(|s| sidecar::written_by_ckpt(&s.value)));
    let shown = |action: &str, text: Option<&str>, reason: Option<String>| {
        json!({
            "action": action,
            "checkpoint": checkpoint.display().to_string(),
            "sidecar": yaml.display().to_string(),
            "exists": existing.is_some(),
            "written_by_ckpt": ours,
            "yaml": text,
            "reason": reason,
        })
    };
    if ours == Some(false) {
        return Ok((
            shown(
                "none",
                None,
                Some(format!(
                    "{} exists and was not written by ckpt: it is never replaced",
                    yaml.display()
                )),
            ),
            None,
        ));
    }
    let text = sidecar_text(checkpoint, existing.is_some())?;
    let action = if existing.is_some() {
        "replace"
    } else {
        "create"
    };
    let plan = shown(action, Some(&text), None);
    Ok((
        plan,
        Some(SidecarPlan {
            checkpoint: checkpoint.to_path_buf(),
            sidecar: yaml,
            text,
            replace: existing.is_some(),
            existing,
        }),
    ))
}

/// The text `ckpt convert-legacy --checkpoint` (with `--force` when replacing) would write.
fn sidecar_text(checkpoint: &Path, replace: bool) -> Result<String, String> {
    let dirs = DirCache::default();
    let job = Job {
        outputs: None,
        force: replace,
        dry_run: true,
        verbose: false,
        dirs: &dirs,
    };
    match convert_one(&job, checkpoint, &mut Vec::new()) {
        Converted::Written { text, .. } => Ok(text),
        Converted::Failed(e) => Err(e),
        Converted::Skipped(s) => Err(format!("{}: a sidecar appeared meanwhile", s.display())),
        Converted::Unwritable { sidecar, error } => {
            Err(format!("{}: cannot write: {error}", sidecar.display()))
        }
    }
}

/// `POST /api/plan/prune?path=<folder>&keep_top=&monitor=&mode=…`.
pub(super) async fn plan_prune(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    pairs: Pairs,
) -> Result<Response, Fail> {
    let w = writes(&app, &headers)?;
    let known = [
        "path",
        "keep_top",
        "monitor",
        "mode",
        "keep_last",
        "keep_every",
        "group_by",
    ];
    let q = prune_query(&app, &params(pairs, &known)?)?;
    let cache = app.opts.cache.clone();
    let planned = heavy(&app, move || {
        let (plan, fingerprint) = prune_plan(&q, cache)?;
        Ok::<_, String>(PrunePlan {
            args: q,
            plan,
            fingerprint,
        })
    })
    .await?
    .map_err(|e| Fail(StatusCode::BAD_REQUEST, e))?;
    let shown = serde_json::to_value(&planned.plan)
        .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let token = w.issue(Planned::Prune(planned))?;
    Ok(Json(json!({ "plan": shown, "confirm": token })).into_response())
}

/// The arguments of a prune plan, the folder resolved under a served root and spelled
/// from it (as the catalog spells its entries).
fn prune_query(app: &App, p: &[(String, String)]) -> Result<PruneQuery, Fail> {
    let bad = |m: String| Fail(StatusCode::BAD_REQUEST, m);
    let number = |name: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| bad(format!("{name}={v:?}: not a non-negative integer")))
    };
    let count = |name: &str, v: &str| {
        number(name, v)
            .and_then(|n| usize::try_from(n).map_err(|_| bad(format!("{name}={v:?}: too large"))))
    };
    // Repeatable, as `ckpt prune PATH…` takes several.
    let given: Vec<&str> = p
        .iter()
        .filter(|(k, _)| k == "path")
        .map(|(_, v)| v.as_str())
        .collect();
    if given.is_empty() || given.iter().any(|v| v.is_empty()) {
        return Err(bad(
            "path=: required (a folder under the served paths; repeatable)".to_owned(),
        ));
    }
    let folders = given
        .iter()
        .map(|v| resolve_folder(app, v))
        .collect::<Result<Vec<_>, _>>()?;
    let keep_top = count("keep_top", one(p, "keep_top")?)?;
    let monitor = one(p, "monitor")?.to_owned();
    let mode = one(p, "mode")?.to_owned();
    if mode != "max" && mode != "min" {
        return Err(bad(format!("mode={mode:?}: max or min")));
    }
    let keep_last = match optional(p, "keep_last")? {
        Some(v) => count("keep_last", v)?,
        None => 0,
    };
    let keep_every = match optional(p, "keep_every")? {
        Some(v) => Some(number("keep_every", v)?),
        None => None,
    };
    let group_by = match optional(p, "group_by")? {
        None | Some("run") => GroupByArg::Run,
        Some("experiment") => GroupByArg::Experiment,
        Some(other) => return Err(bad(format!("group_by={other:?}: run or experiment"))),
    };
    Ok(PruneQuery {
        folders,
        keep_top,
        monitor,
        mode,
        keep_last,
        keep_every,
        group_by,
    })
}

/// A folder (or file) under a served root, spelled from the root as given: resolved first
/// (`..`, symlinks), and a 404 when it lands anywhere else.
fn resolve_folder(app: &App, given: &str) -> Result<PathBuf, Fail> {
    let not_found = |why: &str| Fail(StatusCode::NOT_FOUND, format!("{given}: {why}"));
    let real = std::fs::canonicalize(given).map_err(|_| not_found("no such folder"))?;
    app.roots
        .iter()
        .zip(&app.real_roots)
        .find_map(|(root, real_root)| {
            real.strip_prefix(real_root).ok().map(|rel| {
                if rel.as_os_str().is_empty() {
                    root.clone()
                } else {
                    root.join(rel)
                }
            })
        })
        .ok_or_else(|| not_found("not under the served paths"))
}

/// `ckpt prune`'s plan for `q`, and what it was computed from: each decision as planned
/// (path, action, reasons, size and mtime, its folder) and each sidecar's size and mtime.
fn prune_plan(
    q: &PruneQuery,
    cache: Option<PathBuf>,
) -> Result<(ckpt_retention::Plan, Value), String> {
    let plan = crate::experiments::prune_plan(&q.args(), cache).map_err(|e| crate::one_line(&e))?;
    let stamp = |p: &str| {
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| json!([m.len(), m.modified().ok()]))
    };
    let decisions: Vec<Value> = plan
        .decisions
        .iter()
        .map(|d| {
            json!({
                "decision": d,
                "dir": d.dir_at_plan,
                "sidecars": d.sidecars.iter().map(|s| stamp(s)).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok((plan, Value::Array(decisions)))
}

/// `POST /api/apply?confirm=`.
pub(super) async fn apply(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    pairs: Pairs,
) -> Result<Response, Fail> {
    let w = writes(&app, &headers)?;
    let p = params(pairs, &["confirm"])?;
    let token = one(&p, "confirm")?;
    // Held by the work itself: a client that hangs up mid-apply does not let another start.
    let one_at_a_time = w.applying.clone().lock_owned().await;
    let planned = w.take(token).ok_or_else(|| {
        Fail(
            StatusCode::NOT_FOUND,
            "confirm=: no such plan (already applied, expired, or never issued): plan again"
                .to_owned(),
        )
    })?;
    let cache = app.opts.cache.clone();
    let result = heavy(&app, move || {
        let r = match planned {
            Planned::Sidecar(s) => apply_sidecar(&s),
            Planned::Prune(p) => apply_prune(&p, cache),
        };
        drop(one_at_a_time);
        r
    })
    .await??;
    // A task of its own: the catalog is rebuilt even when the client has hung up.
    let a = app.clone();
    let refreshed = match tokio::spawn(async move { super::refresh(&a).await }).await {
        Ok(Ok(())) => Value::Bool(true),
        Ok(Err(e)) => json!({ "error": crate::one_line(&e) }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    Ok(Json(json!({ "applied": result, "refreshed": refreshed })).into_response())
}

fn changed(what: String) -> Fail {
    Fail(
        StatusCode::CONFLICT,
        format!("{what} changed since the plan: nothing done; plan again"),
    )
}

fn apply_sidecar(s: &SidecarPlan) -> Result<Value, Fail> {
    let now = match std::fs::symlink_metadata(&s.sidecar) {
        Ok(m) if m.is_file() => std::fs::read(&s.sidecar).ok(),
        Ok(_) => return Err(changed(s.sidecar.display().to_string())),
        Err(_) => None,
    };
    if now != s.existing {
        return Err(changed(s.sidecar.display().to_string()));
    }
    // The text again, from the files as they are now: the same text, or the checkpoint (or
    // a file its sidecar is made from) changed.
    match sidecar_text(&s.checkpoint, s.replace) {
        Ok(t) if t == s.text => {}
        _ => return Err(changed(s.checkpoint.display().to_string())),
    }
    match sidecar::write_atomic(&s.sidecar, &s.text, s.replace) {
        Ok(()) => Ok(json!({ "written": s.sidecar.display().to_string() })),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(changed(s.sidecar.display().to_string()))
        }
        Err(e) => Err(Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: cannot write: {e}", s.sidecar.display()),
        )),
    }
}

fn apply_prune(p: &PrunePlan, cache: Option<PathBuf>) -> Result<Value, Fail> {
    let again = prune_plan(&p.args, cache).map_err(|e| changed(format!("the plan ({e})")))?;
    if again.1 != p.fingerprint {
        let shown: Vec<String> = p
            .args
            .folders
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        return Err(changed(shown.join(", ")));
    }
    let executed = ckpt_retention::execute(&p.plan);
    serde_json::to_value(&executed)
        .map(|v| json!({ "executed": v }))
        .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
