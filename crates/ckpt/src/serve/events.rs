//! `GET /api/events`: the catalog's changes as server-sent events, from a watcher on the roots.
//!
//! The watcher is `ckpt watch`'s (inotify through `notify`; a listing of the trees every
//! second with `--poll` or when inotify cannot watch them). A change only names paths: once a path has been
//! quiet for [`QUIET`], the catalog is rebuilt with its cache — the very rebuild
//! `?refresh=1` does — and the difference with the previous build is sent to every client as
//! one batch (`added`, `changed`, `removed`), serialized once whatever the number of clients.
//!
//! A checkpoint file is shown only when its format says it is whole (`ckpt watch`'s
//! [`complete`] check): until then the build keeps the previous version of that entry (or
//! leaves a new one out), so a file being written never flickers in as an error. One that
//! stays incomplete for [`INCOMPLETE_AFTER`] is shown as it is (a truncated file is an entry
//! with its error, like any other broken file).
//!
//! A client costs a subscription to a broadcast channel and nothing else; one that falls so
//! far behind that batches were dropped for it is disconnected (its `EventSource` reconnects
//! and gets a fresh `hello`). Every stream ends when the server is asked to stop, so shutdown
//! does not wait for them.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use ckpt_catalog::CatalogEntry;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::{App, Snapshot, current, rebuild};
use crate::watch::complete;

/// A path this long without a new event is done changing (for now).
const QUIET: Duration = Duration::from_millis(200);
/// How often the loop looks at its events, and at a held file again.
const TICK: Duration = Duration::from_millis(50);
const RECHECK: Duration = Duration::from_millis(250);
/// A checkpoint still incomplete this long after its last change is shown as it is.
const INCOMPLETE_AFTER: Duration = Duration::from_millis(3000);
/// Between two listings of the trees when inotify cannot watch them.
const POLL: Duration = Duration::from_secs(1);
/// After a folder appears, the trees are rebuilt once more this much later: files written
/// into it before its own watch existed sent no event.
const REWALK: Duration = Duration::from_secs(1);
/// The comment that keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Batches a client may fall behind before it is disconnected.
pub(super) const BACKLOG: usize = 64;

/// The events of one rebuild, serialized once: `(event name, data)`.
pub(super) struct Batch {
    pub generation: u64,
    pub frames: Vec<(&'static str, String)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// What changed from `old` to `new` (by path): removed first, then added and changed in the
/// new catalog's order.
pub(super) fn diff(
    old: &Snapshot,
    new: &[(CatalogEntry, Option<PathBuf>)],
    generation: u64,
) -> Batch {
    #[derive(Serialize)]
    struct WithEntry<'a> {
        generation: u64,
        entry: &'a CatalogEntry,
    }
    #[derive(Serialize)]
    struct WithPath<'a> {
        generation: u64,
        path: &'a str,
    }
    let new_paths: HashSet<&str> = new.iter().map(|(e, _)| e.path.as_str()).collect();
    let mut frames = Vec::new();
    let mut push = |name: &'static str, data: Result<String, serde_json::Error>| {
        if let Ok(d) = data {
            frames.push((name, d));
        }
    };
    for e in &old.entries {
        if !new_paths.contains(e.path.as_str()) {
            push(
                "removed",
                serde_json::to_string(&WithPath {
                    generation,
                    path: &e.path,
                }),
            );
        }
    }
    for (e, _) in new {
        let name = match old.by_path.get(&e.path) {
            None => "added",
            Some(&i) if old.entries[i] != *e => "changed",
            Some(_) => continue,
        };
        push(
            name,
            serde_json::to_string(&WithEntry {
                generation,
                entry: e,
            }),
        );
    }
    Batch { generation, frames }
}

pub(super) async fn events(
    State(app): State<Arc<App>>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    if let Some(r) = super::list::no_parameters(pairs) {
        return r;
    }
    // Subscribed before the snapshot is read: a batch built in between is not missed (and
    // one already reflected in `hello` is skipped by its generation).
    let rx = app.events.subscribe();
    let snap = current(&app);
    let hello = Event::default()
        .event("hello")
        .retry(Duration::from_secs(1))
        .data(
            serde_json::json!({"generation": snap.generation, "total": snap.entries.len()})
                .to_string(),
        );
    struct Stream {
        rx: tokio::sync::broadcast::Receiver<Arc<Batch>>,
        stop: tokio::sync::watch::Receiver<bool>,
        hello: Option<Event>,
        /// The batch being sent and its next frame: events are made one at a time (a rebuild
        /// that found a whole new tree is not copied whole for each client).
        sending: Option<(Arc<Batch>, usize)>,
        seen: u64,
    }
    let start = Stream {
        rx,
        stop: app.stop.clone(),
        hello: Some(hello),
        sending: None,
        seen: snap.generation,
    };
    drop(snap);
    let stream = futures_util::stream::unfold(start, |mut st| async move {
        loop {
            if *st.stop.borrow() {
                return None;
            }
            if let Some(ev) = st.hello.take() {
                return Some((Ok::<_, Infallible>(ev), st));
            }
            // A batch sent whole is dropped here (taken, not put back).
            if let Some((batch, next)) = st.sending.take()
                && let Some((name, data)) = batch.frames.get(next)
            {
                let ev = Event::default().event(*name).data(data);
                st.sending = Some((batch, next + 1));
                return Some((Ok(ev), st));
            }
            tokio::select! {
                r = st.stop.changed() => {
                    if r.is_err() {
                        return None;
                    }
                }
                r = st.rx.recv() => match r {
                    Ok(batch) => {
                        if batch.generation > st.seen {
                            st.seen = batch.generation;
                            st.sending = Some((batch, 0));
                        }
                    }
                    // Dropped batches cannot be made up for: the client starts over.
                    Err(RecvError::Lagged(_) | RecvError::Closed) => return None,
                }
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// A path that changed and is not in the catalog yet.
struct Touched {
    last: Instant,
    /// When its completeness is to be checked next.
    next_check: Instant,
}

/// What a path's change means for the catalog: the path to judge (a DCP shard stands for its
/// folder), or nothing (a temporary file, anything in a hidden folder the catalog does not
/// walk — `.git`, say —, the cache itself).
fn relevant(p: &Path, roots: &[(PathBuf, PathBuf)], cache: Option<&Path>) -> Option<PathBuf> {
    let name = p.file_name()?.to_string_lossy();
    let below = roots
        .iter()
        .find_map(|(r, _)| p.strip_prefix(r).ok())
        .unwrap_or(p);
    let mut parts = below.components().rev().skip(1);
    if parts.any(|c| c.as_os_str().to_string_lossy().starts_with('.') && c.as_os_str() != "..") {
        return None;
    }
    if name == ".metadata" || name.ends_with(".distcp") {
        return p.parent().map(Path::to_path_buf);
    }
    if crate::watch::is_temporary(&name) {
        return None;
    }
    if let Some(c) = cache
        && p.parent() == c.parent()
        && c.file_name()
            .is_some_and(|c| name.starts_with(c.to_string_lossy().as_ref()))
    {
        return None;
    }
    Some(p.to_path_buf())
}

/// Is the checkpoint at `p` whole? Paths that are not checkpoints (a sidecar, a log, a
/// folder) always are.
fn complete_now(p: &Path) -> bool {
    if ckpt_io::is_remote(p) {
        return true;
    }
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => !p.join(".metadata").is_file() || complete::dcp(p).is_ok(),
        Ok(m) if m.is_file() => {
            !ckpt_torch::names::is_checkpoint_file(p) || complete::file(p).is_ok()
        }
        // Gone: its removal is whole.
        _ => true,
    }
}

/// The watcher on the roots, started before the catalog is first built: a change made during
/// the build, or by someone who read the "listening" line, is seen.
pub(super) struct Watching {
    roots: Vec<(PathBuf, PathBuf)>,
    rx: mpsc::Receiver<notify::Result<notify::Event>>,
    watcher: Option<notify::RecommendedWatcher>,
    /// The trees' files when they are listed instead (inotify cannot watch them).
    listing: Option<HashMap<PathBuf, (u64, std::time::SystemTime)>>,
    /// Roots in buckets, listed again (through a rebuild with the cache) every `relist`.
    buckets: Vec<PathBuf>,
    relist: Duration,
}

pub(super) fn start_watching(real_roots: &[PathBuf], poll: bool, relist: Duration) -> Watching {
    // A bucket sends no events: its roots are listed again every `relist` instead.
    let (buckets, local): (Vec<PathBuf>, Vec<PathBuf>) = real_roots
        .iter()
        .cloned()
        .partition(|r| ckpt_io::is_remote(r));
    let roots: Vec<(PathBuf, PathBuf)> = local.iter().map(|r| (r.clone(), r.clone())).collect();
    let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
    let started = if poll || roots.is_empty() {
        None
    } else {
        Some(crate::watch::start_watcher(&roots, tx))
    };
    let watcher = match started {
        None => None,
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => {
            crate::sink_eprintln!(
                "ckpt serve: inotify cannot watch the trees ({e}); listing them every {}s",
                POLL.as_secs()
            );
            None
        }
    };
    let listing = (watcher.is_none() && !roots.is_empty()).then(|| crate::watch::listing(&roots));
    Watching {
        roots,
        rx,
        watcher,
        listing,
        buckets,
        relist,
    }
}

/// Watch the roots until `stop`, rebuilding the catalog after changes.
pub(super) async fn watch_roots(
    app: Arc<App>,
    w: Watching,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Watching {
        roots,
        rx,
        watcher,
        mut listing,
        buckets,
        relist,
    } = w;
    let mut next_relist = Instant::now() + relist;
    let cache = app.opts.cache.clone();
    let mut touched: HashMap<PathBuf, Touched> = HashMap::new();
    let mut rewalk: Option<Instant> = None;
    let mut next_poll = Instant::now() + POLL;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = stop.changed() => {
                if r.is_err() {
                    break;
                }
            }
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            break;
        }
        let now = Instant::now();
        let touch = |p: PathBuf, touched: &mut HashMap<PathBuf, Touched>| {
            touched.insert(
                p,
                Touched {
                    last: now,
                    next_check: now,
                },
            );
        };
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Ok(ev) => {
                    use notify::EventKind as K;
                    use notify::event::{AccessKind, AccessMode};
                    // Reads are not changes (ckpt's own reads would feed back into more).
                    if let K::Access(a) = ev.kind
                        && a != AccessKind::Close(AccessMode::Write)
                    {
                        continue;
                    }
                    if ev.need_rescan() {
                        for (r, _) in &roots {
                            touch(r.clone(), &mut touched);
                        }
                    }
                    if matches!(ev.kind, K::Create(notify::event::CreateKind::Folder)) {
                        rewalk = Some(now + REWALK);
                    }
                    for p in ev.paths {
                        if let Some(p) = relevant(&p, &roots, cache.as_deref()) {
                            touch(p, &mut touched);
                        }
                    }
                }
                // A lost event (the queue overflowed): everything may have changed.
                Err(_) => {
                    for (r, _) in &roots {
                        touch(r.clone(), &mut touched);
                    }
                }
            }
        }
        if let Some(before) = &listing
            && now >= next_poll
        {
            next_poll = now + POLL;
            let r = roots.clone();
            if let Ok(after) = tokio::task::spawn_blocking(move || crate::watch::listing(&r)).await
            {
                let changed = after
                    .iter()
                    .filter(|(p, m)| before.get(*p) != Some(m))
                    .map(|(p, _)| p.clone())
                    .chain(before.keys().filter(|p| !after.contains_key(*p)).cloned())
                    .collect::<Vec<_>>();
                for p in changed {
                    if let Some(p) = relevant(&p, &roots, cache.as_deref()) {
                        touch(p, &mut touched);
                    }
                }
                listing = Some(after);
            }
        }
        // A bucket root touched is a rebuild with the cache: its listings (the byte layer's
        // are forgotten at the start of each catalog over a bucket), and a GET only for what
        // changed. Objects appear whole (a PUT is atomic), so there is nothing to wait for.
        if !buckets.is_empty() && now >= next_relist {
            next_relist = now + relist;
            for b in &buckets {
                touch(b.clone(), &mut touched);
            }
        }
        if rewalk.is_some_and(|t| now >= t) {
            rewalk = None;
            for (r, _) in &roots {
                touch(r.clone(), &mut touched);
            }
        }
        // Settled paths whose check is due are judged (off the event loop: it reads them).
        let due: Vec<PathBuf> = touched
            .iter()
            .filter(|(_, t)| now.duration_since(t.last) >= QUIET && t.next_check <= now)
            .map(|(p, _)| p.clone())
            .collect();
        if due.is_empty() {
            continue;
        }
        let judged = match tokio::task::spawn_blocking(move || {
            due.into_iter()
                .map(|p| {
                    let whole = complete_now(&p);
                    (p, whole)
                })
                .collect::<Vec<_>>()
        })
        .await
        {
            Ok(j) => j,
            Err(_) => continue,
        };
        let now = Instant::now();
        let mut ready = Vec::new();
        for (p, whole) in judged {
            let Some(t) = touched.get_mut(&p) else {
                continue;
            };
            if whole || now.duration_since(t.last) >= INCOMPLETE_AFTER {
                ready.push(p);
            } else {
                t.next_check = now + RECHECK;
            }
        }
        if ready.is_empty() {
            continue;
        }
        for p in &ready {
            touched.remove(p);
        }
        // What is still changing or incomplete keeps its previous version in this build.
        let hold: HashSet<PathBuf> = touched.keys().cloned().collect();
        if let Err(e) = rebuild(&app, hold).await {
            crate::sink_eprintln!(
                "ckpt serve: rebuilding the catalog: {}",
                crate::one_line(&e)
            );
        }
    }
    drop(watcher);
}
