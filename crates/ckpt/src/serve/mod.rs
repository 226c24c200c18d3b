//! `ckpt serve`: the catalog of trees as a JSON API and the web UI on it (`web/`, embedded).
//!
//! - Entries are exactly `ckpt catalog --format json`'s (the typed [`CatalogEntry`]
//!   serialized; `ckpt schema catalog`), and filtering and sorting are the CLI's own
//!   (`ckpt_catalog::query`, with the same unknown-field errors), so the API and the CLI
//!   cannot drift apart.
//! - The catalog is built once at start (with the entry cache) and rebuilt when a watcher on
//!   the roots sees a change (or on `GET /api/checkpoints?refresh=1`); each rebuild's
//!   difference is sent to `GET /api/events`' clients ([`events`]). A snapshot of the catalog
//!   is swapped whole: a request keeps the one it started with, and what is computed from a
//!   snapshot (sort orders, known fields, query results: [`list`]) lives and dies with it.
//! - Many clients at once: a multi-thread runtime sized by the cores; what is heavy (a
//!   rebuild, a first sort by a field, a big page) runs on the blocking pool.
//! - Only what is under the given roots is served: a `path=` is resolved (`..`, symlinks)
//!   and must land under a root and be a catalog entry; nothing is ever read on its behalf.
//!   A checkpoint the catalog reaches through a symlink out of the roots is left out of the
//!   served catalog (with a warning), so the list and the lookup agree.
//! - Loopback by default, and then only for a loopback `Host` (DNS rebinding). Listening
//!   anywhere else prints a random access token that every request must carry (`?token=` or
//!   `Authorization: Bearer`), else 401.
//! - Read-only unless `--allow-writes`: then sidecars and prune, each planned first and done
//!   only when the plan is confirmed ([`writes`]).
//! - SIGINT/SIGTERM stop it: event streams end at once, other open connections get a short
//!   grace period, then the process exits whatever they do (a client holding a keep-alive
//!   connection cannot keep it up).
//! - `--open` hands the page's address to the desktop's opener; never fatal.

use std::collections::{HashMap, HashSet};
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
use axum::routing::{get, post};
use ckpt_catalog::CatalogEntry;
use ckpt_catalog::cache::Cache;
use ckpt_catalog::catalog::{Options, build_streaming};
use ckpt_catalog::discover::WalkOptions;
use serde_json::json;

use crate::Outcome;
use crate::cli::ServeArgs;

mod assets;
mod compare;
mod curves;
mod detail;
mod events;
mod list;
mod writes;

/// How long open connections may take to finish after SIGINT/SIGTERM.
const GRACE: Duration = Duration::from_millis(500);

/// Sorts of the previous snapshot made again for a new one as soon as it is built.
const RESORT: usize = 4;

/// Stack of the runtime's threads (the blocking pool rebuilds the catalog: the readers'
/// budgets assume a roomy stack, as the CLI's worker thread has).
const THREAD_STACK: usize = 16 << 20;

/// One build of the catalog, swapped whole when it changes (readers keep the one they
/// started with).
struct Snapshot {
    entries: Vec<CatalogEntry>,
    /// Each entry's resolved path (symlinks, `..`), to find it from any spelling of its path.
    by_real_path: HashMap<PathBuf, usize>,
    /// Each entry by its path exactly as the catalog prints it.
    by_path: HashMap<String, usize>,
    /// 0 for the catalog built at start, one more for each rebuild that changed it.
    generation: u64,
    /// What list requests compute from this build, kept with it.
    index: list::Index,
}

struct App {
    roots: Vec<PathBuf>,
    /// The roots resolved: a requested path must resolve to one of them or below.
    real_roots: Vec<PathBuf>,
    opts: Options,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One rebuild at a time (the watcher's, `refresh=1`'s): each waits for the running one.
    rebuilding: tokio::sync::Mutex<()>,
    /// Each rebuild's difference, to the `/api/events` clients.
    events: tokio::sync::broadcast::Sender<Arc<events::Batch>>,
    /// Turns true on SIGINT/SIGTERM: event streams end, the watcher stops.
    stop: tokio::sync::watch::Receiver<bool>,
    token: Option<String>,
    /// The in-depth endpoints' concurrency bound and, with `--allow-writes`, pending writes.
    deep: detail::Deep,
}

pub fn run(a: &ServeArgs) -> Result<Outcome> {
    let roots: Vec<PathBuf> = if a.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        a.paths.clone()
    };
    let real_roots = roots
        .iter()
        .map(|r| resolve(r).with_context(|| format!("{}: cannot resolve", r.display())))
        .collect::<Result<Vec<_>>>()?;
    if !(a.relist.is_finite() && a.relist >= 0.1) {
        bail!(
            "--relist {}: not a number of seconds (at least 0.1)",
            a.relist
        );
    }
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
    let watching = events::start_watching(
        &real_roots,
        a.poll,
        std::time::Duration::from_secs_f64(a.relist),
    );
    let entries = build(&roots, &real_roots, &opts, &HashSet::new(), None)?;
    let (events, _) = tokio::sync::broadcast::channel(events::BACKLOG);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = Arc::new(App {
        roots,
        real_roots,
        opts,
        snapshot: RwLock::new(Arc::new(Snapshot::new(entries, 0))),
        rebuilding: tokio::sync::Mutex::new(()),
        events,
        stop: stop_rx.clone(),
        token,
        deep: detail::Deep::new(a.allow_writes),
    });

    // Installed before "listening" is printed: a client that reads that line and signals
    // right away finds the handler in place.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let signals_handle = signals.handle();
    let signal_thread = std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stop_tx.send(true);
        }
    });

    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        // Threads, not cores: a slow job on the pool (a rebuild, another endpoint's reading
        // of a big file) must not hold a list computation back behind it.
        .max_blocking_threads(workers.saturating_mul(8).max(16))
        .thread_stack_size(THREAD_STACK)
        .thread_name("ckpt-serve")
        .enable_io()
        .enable_time()
        .build()?;
    let open = a.open;
    let result = rt.block_on(serve(app, listener, local, stop_rx, open, watching));
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
    open: bool,
    watching: events::Watching,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let router = axum::Router::new()
        .route("/", get(assets::index))
        .route("/assets/{name}", get(assets::asset))
        .route("/api/health", get(health))
        .route("/api/checkpoints", get(list::checkpoints))
        .route("/api/fields", get(list::fields))
        .route("/api/checkpoint", get(checkpoint))
        .route("/api/events", get(events::events))
        .route("/api/detail", get(detail::detail))
        .route("/api/tensor", get(detail::tensor))
        .route("/api/compare", get(compare::compare))
        .route("/api/curves", get(curves::curves))
        .route("/api/plan/sidecar", post(writes::plan_sidecar))
        .route("/api/plan/prune", post(writes::plan_prune))
        .route("/api/apply", post(writes::apply))
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: the plan and apply endpoints take POST, the others GET"
                    .to_owned(),
            )
        })
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
    if open {
        open_browser(&page_url(local, app.token.as_deref()));
    }
    let first = current(&app);
    tokio::task::spawn_blocking(move || first.index.warm(&first.entries, &[]));
    tokio::spawn(events::watch_roots(app.clone(), watching, stop.clone()));
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

/// The page's address for a browser: loopback when listening on every address, with the
/// access token when there is one.
fn page_url(local: SocketAddr, token: Option<&str>) -> String {
    let host = match local.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    match token {
        Some(t) => format!("http://{host}:{}/?token={t}", local.port()),
        None => format!("http://{host}:{}/", local.port()),
    }
}

/// `--open`: the desktop's opener (`xdg-open`, or macOS's `open`) on `url`, in the
/// background. Never fatal: when there is none or it fails to start, one line says so.
fn open_browser(url: &str) {
    let found = std::env::var_os("PATH").and_then(|path| {
        ["xdg-open", "open"].iter().find_map(|name| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    });
    let Some(opener) = found else {
        crate::sink_eprintln!(
            "ckpt serve: could not open a browser (no xdg-open or open on PATH); open {url}"
        );
        return;
    };
    let child = std::process::Command::new(&opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match child {
        // Reaped in the background: an opener that lingers (some do) holds nothing up.
        Ok(mut c) => {
            std::thread::spawn(move || c.wait());
        }
        Err(e) => crate::sink_eprintln!(
            "ckpt serve: could not open a browser ({}: {e}); open {url}",
            opener.display()
        ),
    }
}

impl Snapshot {
    /// The snapshot of `built`: each entry with its resolved path (`None`: gone since it was
    /// listed; served as the catalog saw it, found by its own path).
    fn new(built: Vec<(CatalogEntry, Option<PathBuf>)>, generation: u64) -> Snapshot {
        let n = built.len();
        let mut entries = Vec::with_capacity(n);
        let mut by_real_path = HashMap::with_capacity(n);
        let mut by_path = HashMap::with_capacity(n);
        for (i, (e, real)) in built.into_iter().enumerate() {
            if let Some(real) = real {
                by_real_path.insert(real, i);
            }
            by_path.entry(e.path.clone()).or_insert(i);
            entries.push(e);
        }
        Snapshot {
            entries,
            by_real_path,
            by_path,
            generation,
            index: list::Index::new(n),
        }
    }
}

/// The catalog of `roots`, less the entries that resolve outside `real_roots` (a symlink out
/// of the tree: the catalog follows it, the server does not serve it). An entry whose
/// resolved path is in `hold` (a file still being written) is `previous`'s version of it, or
/// left out when it is new.
fn build(
    roots: &[PathBuf],
    real_roots: &[PathBuf],
    opts: &Options,
    hold: &HashSet<PathBuf>,
    previous: Option<&Snapshot>,
) -> Result<Vec<(CatalogEntry, Option<PathBuf>)>> {
    let mut found = Vec::new();
    let cat = build_streaming(roots, opts, &mut |e| found.push(e))?;
    // Said at start; a rebuild would repeat them on every change.
    if previous.is_none() {
        for w in &cat.warnings {
            crate::sink_eprintln!("ckpt: warning: {w}");
        }
    }
    for b in &cat.bugs {
        crate::report_bug("serve", &b.path, &b.panic);
    }
    let mut entries = Vec::with_capacity(found.len());
    for e in found {
        let real = resolve(Path::new(&e.path)).ok();
        match real {
            Some(ref real) if !real_roots.iter().any(|r| real.starts_with(r)) => {
                // Said once, at start: a rebuild would repeat it on every change.
                if previous.is_none() {
                    crate::sink_eprintln!(
                        "ckpt: warning: {}: resolves to {}, outside the served paths: not served",
                        e.path,
                        real.display()
                    );
                }
                continue;
            }
            Some(ref real) if hold.contains(real) => {
                let old = previous
                    .and_then(|p| p.by_real_path.get(real).map(|&i| &p.entries[i]))
                    .cloned();
                entries.extend(old.map(|e| (e, Some(real.clone()))));
                continue;
            }
            _ => {}
        }
        entries.push((e, real));
    }
    Ok(entries)
}

/// `path` resolved: a local path canonicalized (`..` and symlinks followed; it must exist), an
/// object or prefix in a bucket as its canonical URL (`s3://b/k`: a bucket has neither links
/// nor `..`, and nothing is asked of the store here).
pub(crate) fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    match ckpt_io::Location::parse(path) {
        ckpt_io::Location::Remote(url) => Ok(url.to_path()),
        ckpt_io::Location::Local(p) => std::fs::canonicalize(p),
    }
}

/// The index of the entry a requested path names: the path exactly as the catalog prints it,
/// else any other spelling resolved (`..`, symlinks) that lands under a root and on an entry.
/// The file itself is never opened.
fn locate(app: &App, snap: &Snapshot, path: &str) -> Result<usize, (StatusCode, String)> {
    if let Some(&i) = snap.by_path.get(path) {
        return Ok(i);
    }
    let not_found = || (StatusCode::NOT_FOUND, format!("{path}: not in the catalog"));
    let Ok(real) = resolve(std::path::Path::new(path)) else {
        return Err(not_found());
    };
    if !app.real_roots.iter().any(|r| real.starts_with(r)) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("{path}: not under the served paths"),
        ));
    }
    snap.by_real_path.get(&real).copied().ok_or_else(not_found)
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, Json(json!({ "error": msg }))).into_response()
}

/// Every request carries the token when there is one; compared in constant time.
async fn authorize(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(token) = &app.token else {
        // On loopback there is no token, so the `Host` is what keeps other sites out: a page
        // whose name was made to resolve to 127.0.0.1 (DNS rebinding) is same-origin to the
        // browser and could read the catalog, tensor data, or confirm a write plan.
        if loopback_host(req.headers()) {
            return next.run(req).await;
        }
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "Host: {host:?} is not a loopback name: requests are taken only for \
                 localhost, 127.0.0.1 or [::1]"
            ),
        );
    };
    // The page and its files hold no data (they are the same for everyone): served without
    // the token, so a page opened without it loads and says what is missing instead of
    // showing raw JSON. Every `/api/…` request still needs it.
    let path = req.uri().path();
    if path == "/" || path.starts_with("/assets/") {
        return next.run(req).await;
    }
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

/// Make `snap` the current snapshot, and compute its memos in the background.
fn swap(app: &App, snap: Arc<Snapshot>) {
    let old = match app.snapshot.write() {
        Ok(mut s) => std::mem::replace(&mut *s, snap.clone()),
        Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), snap.clone()),
    };
    let sorts = old.index.recent_sorts(RESORT);
    drop(old);
    tokio::task::spawn_blocking(move || snap.index.warm(&snap.entries, &sorts));
}

/// `?refresh=1`: rebuild now, everything as it is on disk.
async fn refresh(app: &Arc<App>) -> Result<()> {
    rebuild(app, HashSet::new()).await
}

/// Rebuild the catalog on the blocking pool (the walk and the cache are synchronous); when it
/// changed, swap it in and send the difference to the event streams. A rebuild that finds
/// the catalog unchanged keeps the current snapshot (and everything computed from it).
async fn rebuild(app: &Arc<App>, hold: HashSet<PathBuf>) -> Result<()> {
    let _one = app.rebuilding.lock().await;
    let a = app.clone();
    let built = tokio::task::spawn_blocking(move || -> Result<_> {
        let old = current(&a);
        let entries = build(&a.roots, &a.real_roots, &a.opts, &hold, Some(&old))?;
        let generation = old.generation.saturating_add(1);
        let batch = events::diff(&old, &entries, generation);
        if batch.is_empty() && entries.len() == old.entries.len() {
            return Ok(None);
        }
        Ok(Some((Snapshot::new(entries, generation), batch)))
    })
    .await
    .context("rebuilding the catalog")??;
    let Some((snap, batch)) = built else {
        return Ok(());
    };
    swap(app, Arc::new(snap));
    // No receivers is no error: nobody is listening.
    let _ = app.events.send(Arc::new(batch));
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
    match detail::lookup(&app, &current(&app), &path) {
        Ok(e) => Json(e).into_response(),
        Err(fail) => fail.into_response(),
    }
}
