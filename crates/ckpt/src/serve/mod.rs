//! `ckpt serve`: the catalog of trees as a read-only JSON API, the server a web UI will sit on.
//!
//! - Entries are exactly `ckpt catalog --format json`'s (the typed [`CatalogEntry`]
//!   serialized; `ckpt schema catalog`), and filtering and sorting are the CLI's own
//!   (`ckpt_catalog::query`, with the same unknown-field errors), so the API and the CLI
//!   cannot drift apart.
//! - The catalog is built once at start (with the entry cache) and rebuilt on
//!   `GET /api/checkpoints?refresh=1`: no background work, no `POST`. Live updates (events)
//!   come with the watcher.
//! - Only what is under the given roots is served: a `path=` is resolved (`..`, symlinks)
//!   and must land under a root and be a catalog entry; nothing is ever read on its behalf.
//!   A checkpoint the catalog reaches through a symlink out of the roots is left out of the
//!   served catalog (with a warning), so the list and the lookup agree.
//! - Loopback by default. Listening anywhere else prints a random access token that every
//!   request must carry (`?token=` or `Authorization: Bearer`), else 401.
//! - SIGINT/SIGTERM stop it: open connections get a short grace period, then the process
//!   exits whatever they do (a client holding a keep-alive connection cannot keep it up).

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ckpt_catalog::CatalogEntry;
use ckpt_catalog::cache::Cache;
use ckpt_catalog::catalog::{Options, build_streaming};
use ckpt_catalog::discover::WalkOptions;
use ckpt_catalog::query;
use serde::Serialize;
use serde_json::json;

use crate::Outcome;
use crate::catalog::FieldCheck;
use crate::cli::ServeArgs;

mod assets;
mod curves;

/// Entries per page when `limit` is not given, and the most one page holds: a client cannot
/// make the server serialize the whole catalog in one answer.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// How long open connections may take to finish after SIGINT/SIGTERM.
const GRACE: Duration = Duration::from_millis(500);

/// One build of the catalog, swapped whole on refresh (readers keep the one they started with).
struct Snapshot {
    entries: Vec<CatalogEntry>,
    /// Each entry's resolved path (symlinks, `..`), to find it from any spelling of its path.
    by_real_path: HashMap<PathBuf, usize>,
}

struct App {
    roots: Vec<PathBuf>,
    /// The roots resolved: a requested path must resolve to one of them or below.
    real_roots: Vec<PathBuf>,
    opts: Options,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One rebuild at a time: concurrent `refresh=1` requests wait for the running one.
    rebuilding: tokio::sync::Mutex<()>,
    token: Option<String>,
}

pub fn run(a: &ServeArgs) -> Result<Outcome> {
    let roots: Vec<PathBuf> = if a.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        a.paths.clone()
    };
    let real_roots = roots
        .iter()
        .map(|r| {
            std::fs::canonicalize(r).with_context(|| format!("{}: cannot resolve", r.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let addrs: Vec<SocketAddr> = (a.host.as_str(), a.port)
        .to_socket_addrs()
        .with_context(|| format!("--host {}: not an address to listen on", a.host))?
        .collect();
    if addrs.is_empty() {
        bail!("--host {}: resolves to no address", a.host);
    }
    // Bound before the catalog is built: a port in use fails at once, not after the build.
    let listener = std::net::TcpListener::bind(addrs.as_slice())
        .with_context(|| format!("cannot listen on {}:{}", a.host, a.port))?;
    let local = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let token = if local.ip().is_loopback() {
        None
    } else {
        Some(random_token()?)
    };
    let opts = Options {
        walk: WalkOptions {
            recursive: true,
            max_depth: None,
        },
        cache: if a.no_cache {
            None
        } else {
            Some(a.cache_file.clone().unwrap_or_else(Cache::default_path))
        },
        progress: None,
    };
    let snapshot = build(&roots, &real_roots, &opts)?;
    let app = Arc::new(App {
        roots,
        real_roots,
        opts,
        snapshot: RwLock::new(Arc::new(snapshot)),
        rebuilding: tokio::sync::Mutex::new(()),
        token,
    });

    // Installed before "listening" is printed: a client that reads that line and signals
    // right away finds the handler in place.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let signals_handle = signals.handle();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal_thread = std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stop_tx.send(true);
        }
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let result = rt.block_on(serve(app, listener, local, stop_rx));
    signals_handle.close();
    let _ = signal_thread.join();
    // Handlers still running on the blocking pool (a rebuild) are not waited for.
    rt.shutdown_timeout(Duration::from_millis(100));
    result?;
    Ok(Outcome::Ok)
}

async fn serve(
    app: Arc<App>,
    listener: std::net::TcpListener,
    local: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let router = axum::Router::new()
        .route("/", get(assets::index))
        .route("/assets/{name}", get(assets::asset))
        .route("/api/health", get(health))
        .route("/api/checkpoints", get(checkpoints))
        .route("/api/checkpoint", get(checkpoint))
        .route("/api/curves", get(curves::curves))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint".to_owned()) })
        .layer(axum::middleware::from_fn_with_state(app.clone(), authorize))
        .with_state(app.clone());
    let mut out = crate::sink::stdout();
    {
        use std::io::Write as _;
        writeln!(out, "ckpt serve: listening on http://{local}")?;
        if let Some(t) = &app.token {
            writeln!(
                out,
                "ckpt serve: access token {t} (every request needs ?token={t} or \
                 Authorization: Bearer {t})"
            )?;
        }
        out.flush()?;
    }
    let mut graceful = stop.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|s| *s).await;
    });
    let mut deadline = stop;
    tokio::select! {
        r = server => r.context("serving")?,
        _ = async move {
            let _ = deadline.wait_for(|s| *s).await;
            tokio::time::sleep(GRACE).await;
        } => {}
    }
    Ok(())
}

/// 16 bytes of the kernel's randomness, as hex.
fn random_token() -> Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("/dev/urandom: cannot read an access token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The catalog of `roots`, less the entries that resolve outside `real_roots` (a symlink out
/// of the tree: the catalog follows it, the server does not serve it).
fn build(roots: &[PathBuf], real_roots: &[PathBuf], opts: &Options) -> Result<Snapshot> {
    let mut found = Vec::new();
    let cat = build_streaming(roots, opts, &mut |e| found.push(e))?;
    for w in &cat.warnings {
        crate::sink_eprintln!("ckpt: warning: {w}");
    }
    for b in &cat.bugs {
        crate::report_bug("serve", &b.path, &b.panic);
    }
    let mut entries = Vec::with_capacity(found.len());
    let mut by_real_path = HashMap::with_capacity(found.len());
    for e in found {
        match std::fs::canonicalize(&e.path) {
            Ok(real) if !real_roots.iter().any(|r| real.starts_with(r)) => {
                crate::sink_eprintln!(
                    "ckpt: warning: {}: resolves to {}, outside the served paths: not served",
                    e.path,
                    real.display()
                );
                continue;
            }
            Ok(real) => {
                by_real_path.insert(real, entries.len());
            }
            // Gone since it was listed: served as the catalog saw it, found by its own path.
            Err(_) => {}
        }
        entries.push(e);
    }
    Ok(Snapshot {
        entries,
        by_real_path,
    })
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, Json(json!({ "error": msg }))).into_response()
}

/// Every request carries the token when there is one; compared in constant time.
async fn authorize(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(token) = &app.token else {
        return next.run(req).await;
    };
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_owned())
    });
    let from_header = bearer(req.headers());
    let given = from_header.or(from_query);
    if given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
        next.run(req).await
    } else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "an access token is required (?token= or Authorization: Bearer)".to_owned(),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        r
    }
}

fn bearer(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn current(app: &App) -> Arc<Snapshot> {
    match app.snapshot.read() {
        Ok(s) => s.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let n = current(&app).entries.len();
    Json(json!({ "ok": true, "checkpoints": n })).into_response()
}

#[derive(Serialize)]
struct Page<'a> {
    checkpoints: &'a [CatalogEntry],
    total: usize,
}

/// The parameters of `/api/checkpoints`, parsed by hand: `filter` repeats, and an unknown
/// parameter is an error rather than silently ignored (a typo would return everything).
struct ListQuery {
    offset: usize,
    limit: usize,
    filters: Vec<String>,
    sort: Option<String>,
    desc: bool,
    refresh: bool,
}

fn parse_list(pairs: Vec<(String, String)>) -> Result<ListQuery, String> {
    let mut q = ListQuery {
        offset: 0,
        limit: DEFAULT_LIMIT,
        filters: Vec::new(),
        sort: None,
        desc: false,
        refresh: false,
    };
    let number = |k: &str, v: &str| {
        v.parse::<usize>()
            .map_err(|_| format!("{k}={v:?}: not a non-negative integer"))
    };
    let flag = |k: &str, v: &str| match v {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("{k}={v:?}: expected 1, true, 0 or false")),
    };
    for (k, v) in pairs {
        match k.as_str() {
            "offset" => q.offset = number(&k, &v)?,
            "limit" => {
                q.limit = number(&k, &v)?;
                if q.limit > MAX_LIMIT {
                    return Err(format!("limit={}: at most {MAX_LIMIT}", q.limit));
                }
            }
            "filter" => q.filters.push(v),
            "sort" => q.sort = Some(v).filter(|s| !s.is_empty()),
            "desc" => q.desc = flag(&k, &v)?,
            "refresh" => q.refresh = flag(&k, &v)?,
            "token" => {}
            other => {
                return Err(format!(
                    "{other:?}: unknown parameter (offset, limit, filter, sort, desc, refresh)"
                ));
            }
        }
    }
    Ok(q)
}

async fn checkpoints(
    State(app): State<Arc<App>>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let pairs = match pairs {
        Ok(Query(p)) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let q = match parse_list(pairs) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // The CLI's own parser: the same language and the same messages as `--filter`.
    let filters = match q
        .filters
        .iter()
        .map(|f| query::parse_filter(f))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if q.refresh
        && let Err(e) = refresh(&app).await
    {
        return error(StatusCode::INTERNAL_SERVER_ERROR, crate::one_line(&e));
    }
    let snap = current(&app);
    let mut queried: Vec<(&str, &str)> = filters
        .iter()
        .map(|f| ("--filter", f.field.as_str()))
        .collect();
    queried.extend(q.sort.as_deref().map(|s| ("--sort", s)));
    let mut fields = FieldCheck::new(queried);
    for e in &snap.entries {
        fields.see(e);
    }
    if let Err(e) = fields.check() {
        return error(StatusCode::BAD_REQUEST, crate::one_line(&e));
    }
    let kept = snap
        .entries
        .iter()
        .filter(|e| filters.iter().all(|f| f.matches(e)));
    let page = |all: &[CatalogEntry]| {
        let total = all.len();
        let start = q.offset.min(total);
        let end = start.saturating_add(q.limit).min(total);
        Json(Page {
            checkpoints: &all[start..end],
            total,
        })
        .into_response()
    };
    match &q.sort {
        Some(s) => {
            let mut sorted: Vec<CatalogEntry> = kept.cloned().collect();
            query::sort(&mut sorted, s, q.desc);
            page(&sorted)
        }
        None if filters.is_empty() => page(&snap.entries),
        None => page(&kept.cloned().collect::<Vec<_>>()),
    }
}

/// Rebuild the catalog on the blocking pool (the walk and the cache are synchronous) and
/// swap it in.
async fn refresh(app: &Arc<App>) -> Result<()> {
    let _one = app.rebuilding.lock().await;
    let a = app.clone();
    let snap = tokio::task::spawn_blocking(move || build(&a.roots, &a.real_roots, &a.opts))
        .await
        .context("rebuilding the catalog")??;
    match app.snapshot.write() {
        Ok(mut s) => *s = Arc::new(snap),
        Err(poisoned) => *poisoned.into_inner() = Arc::new(snap),
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct OneQuery {
    path: Option<String>,
}

async fn checkpoint(
    State(app): State<Arc<App>>,
    q: Result<Query<OneQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(path) = q.path.filter(|p| !p.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "path=: required".to_owned());
    };
    let snap = current(&app);
    // The path exactly as the catalog prints it: the entry itself.
    if let Some(e) = snap.entries.iter().find(|e| e.path == path) {
        return Json(e).into_response();
    }
    // Any other spelling is resolved first (`..`, symlinks), and only a path that lands under
    // a root is looked up; the file itself is never opened.
    let not_found = || error(StatusCode::NOT_FOUND, format!("{path}: not in the catalog"));
    let Ok(real) = std::fs::canonicalize(Path::new(&path)) else {
        return not_found();
    };
    if !app.real_roots.iter().any(|r| real.starts_with(r)) {
        return error(
            StatusCode::NOT_FOUND,
            format!("{path}: not under the served paths"),
        );
    }
    match snap.by_real_path.get(&real) {
        Some(&i) => Json(&snap.entries[i]).into_response(),
        None => not_found(),
    }
}
