//! `ckpt watch PATH…`: sidecars written as checkpoints appear, for training code nobody may
//! change.
//!
//! Events come from inotify (through `notify`) or, with `--poll` or when inotify cannot watch
//! the trees (a network filesystem, the watch limit), from listing the trees every
//! `--interval`. An event only names a path: the path waits in `pending` until two checks a
//! settle time apart see the same size and mtime *and* its format says it ends there
//! ([`complete`]), so a file being written is never read as final, however long its writer
//! pauses. Then its sidecar is written by `convert-legacy --checkpoint`'s own code (the same
//! values), and the catalog's cache entry refreshed by the catalog's own code, so `ckpt
//! catalog` finds it warm.
//!
//! Sidecars it did not write are never touched: a sidecar is ckpt's when its `generator.tool`
//! says `ckpt …`. On start it catches up (missing sidecars written, stale ckpt-written ones
//! rewritten, orphaned ckpt-written ones removed), so a restart after a crash misses nothing.
//! SIGINT and SIGTERM set a flag the loop reads every tick: it stops within a tick or the
//! file being handled.

pub(crate) mod complete;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use ckpt_catalog::cache::Cache;
use ckpt_catalog::catalog::Options as CatalogOptions;
use ckpt_catalog::discover::{Kind, WalkOptions};
use ckpt_meta::sidecar::{self, Sidecar};
use ckpt_meta::sources::DirCache;
use serde_json::Value;

use crate::Outcome;
use crate::cli::WatchArgs;
use crate::meta::{Converted, Job, convert_one};

/// How often the loop wakes: the stop flag, the pending paths and the poll timer are looked
/// at this often.
const TICK: Duration = Duration::from_millis(50);
/// Two checks of a path this far apart must agree before it is judged.
const SETTLE: Duration = Duration::from_millis(250);
/// A path stable but incomplete this long is reported (`skipped … (incomplete)`) and dropped
/// until its next change; under `--once` it is reported at once.
const INCOMPLETE_AFTER: Duration = Duration::from_millis(1500);
/// Deepest folder nesting walked by the poller and the orphan search.
const MAX_DEPTH: usize = 64;

/// Name endings of files still being written by their writer (`torch.save(f"{p}.tmp")` then a
/// rename): never given a sidecar, whatever they hold.
const TEMP_SUFFIXES: &[&str] = &[
    ".tmp",
    ".temp",
    ".part",
    ".partial",
    ".incomplete",
    ".download",
    ".crdownload",
    ".swp",
    "~",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    File,
    /// A DCP directory or a sharded folder: catalogued, no sidecar (sidecars describe files).
    Folder,
}

/// A path waiting to be judged.
#[derive(Debug)]
struct Pending {
    what: What,
    /// Size and mtime at the last check (`None`: not checked yet).
    last: Option<(u64, SystemTime)>,
    /// When `last` was first seen (the path has not changed since).
    since: Instant,
    next: Instant,
    /// Found by the catch-up walk, not by an event: a sidecar ckpt did not write is left
    /// silently (every start would otherwise list them all).
    catch_up: bool,
}

/// What happened to the paths of one batch, printed in path order.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    errors: Vec<String>,
}

struct Watch<'a> {
    a: &'a WatchArgs,
    /// The roots, absolute, with how they were typed (for printing).
    roots: Vec<(PathBuf, PathBuf)>,
    pending: BTreeMap<PathBuf, Pending>,
    /// Checkpoints seen whole (their deletion takes their sidecar).
    known: HashSet<PathBuf>,
    cache: Option<PathBuf>,
    failed: bool,
    /// Folders that appeared, to list again shortly: files written into a new folder before
    /// inotify watched it send no event.
    rewalk: Vec<(Instant, PathBuf)>,
}

pub fn run(a: &WatchArgs) -> Result<Outcome> {
    if !(a.interval.is_finite() && a.interval > 0.0 && a.interval <= 3600.0) {
        bail!("--interval {}: give seconds between 0 and 3600", a.interval);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut ids = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        ids.push(signal_hook::flag::register(sig, stop.clone())?);
    }
    let result = watch(a, &stop);
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    result
}

fn watch(a: &WatchArgs, stop: &AtomicBool) -> Result<Outcome> {
    let roots: Vec<(PathBuf, PathBuf)> = a
        .paths
        .iter()
        .map(|p| Ok((std::path::absolute(p)?, p.clone())))
        .collect::<std::io::Result<_>>()?;
    let mut w = Watch {
        a,
        roots,
        pending: BTreeMap::new(),
        known: HashSet::new(),
        cache: if a.no_cache {
            None
        } else {
            Some(a.cache_file.clone().unwrap_or_else(Cache::default_path))
        },
        failed: false,
        rewalk: Vec::new(),
    };
    // Events first, then the catch-up walk: a file written in between is in one or the other.
    let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = None;
    let mut poll_reason = a.poll.then(|| "--poll".to_owned());
    if !a.poll && !a.once {
        match start_watcher(&w.roots, tx) {
            Ok(x) => watcher = Some(x),
            Err(e) => poll_reason = Some(format!("inotify unavailable: {e}")),
        }
    }
    let interval = Duration::from_secs_f64(a.interval);
    let mut snapshot = if poll_reason.is_some() && !a.once {
        Some(listing(&w.roots))
    } else {
        None
    };
    w.catch_up();
    if !a.once {
        let how = match &poll_reason {
            Some(why) => format!("polling every {}s ({why})", a.interval),
            None => "inotify".to_owned(),
        };
        say_err(&format!(
            "ckpt: watching {} path(s) ({how}); Ctrl-C or SIGTERM stops",
            w.roots.len()
        ));
    }
    let mut next_poll = Instant::now() + interval;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        // Events: each names paths to look at.
        if watcher.is_some() {
            let deadline = Instant::now() + TICK;
            while let Ok(ev) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                match ev {
                    Ok(ev) => {
                        use notify::EventKind as K;
                        use notify::event::{AccessKind, AccessMode};
                        // Reads are not changes, and ckpt's own reads (listing a folder,
                        // sniffing a file) would otherwise feed back into more reads.
                        if let K::Access(a) = ev.kind
                            && a != AccessKind::Close(AccessMode::Write)
                        {
                            continue;
                        }
                        if ev.need_rescan() {
                            w.rescan();
                        }
                        for p in ev.paths {
                            w.touched(&p, false);
                        }
                    }
                    Err(e) => {
                        // A lost event (the queue overflowed): look at everything again.
                        say_err(&format!("ckpt: watch: {e}; rescanning"));
                        w.rescan();
                    }
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
        } else if !a.once {
            std::thread::sleep(TICK);
        }
        if let Some(snap) = &mut snapshot
            && Instant::now() >= next_poll
        {
            next_poll = Instant::now() + interval;
            let now = listing(&w.roots);
            for (p, m) in &now {
                if snap.get(p) != Some(m) {
                    w.touched(p, false);
                }
            }
            for p in snap.keys() {
                if !now.contains_key(p) {
                    w.touched(p, false);
                }
            }
            *snap = now;
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut w.rewalk)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        w.rewalk = later;
        for (_, dir) in due {
            let mut found = Vec::new();
            walk(&dir, 0, &mut |f, _| found.push(f.to_path_buf()));
            for f in found {
                if !w.pending.contains_key(&f) && !w.known.contains(&f) {
                    w.touched(&f, false);
                }
            }
        }
        w.check(stop);
        if a.once && w.pending.is_empty() {
            break;
        }
        if a.once {
            std::thread::sleep(TICK);
        }
    }
    drop(watcher);
    if a.once && w.failed {
        return Ok(Outcome::Findings);
    }
    Ok(Outcome::Ok)
}

pub(crate) fn start_watcher(
    roots: &[(PathBuf, PathBuf)],
    tx: mpsc::Sender<notify::Result<notify::Event>>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut w = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })?;
    for (abs, _) in roots {
        w.watch(abs, notify::RecursiveMode::Recursive)?;
    }
    Ok(w)
}

/// Every file under the roots with its size and mtime (hidden files and folders left out,
/// except a DCP directory's `.metadata`).
pub(crate) fn listing(roots: &[(PathBuf, PathBuf)]) -> HashMap<PathBuf, (u64, SystemTime)> {
    let mut out = HashMap::new();
    for (abs, _) in roots {
        walk(abs, 0, &mut |p, m| {
            out.insert(
                p.to_path_buf(),
                (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
            );
        });
    }
    out
}

/// Call `f` on every regular file under `dir` (or `dir` itself when it is a file).
fn walk(dir: &Path, depth: usize, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let Ok(m) = std::fs::metadata(dir) else {
        return;
    };
    if m.is_file() {
        f(dir, &m);
        return;
    }
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if !name.starts_with('.') {
                walk(&p, depth + 1, f);
            }
        } else if ft.is_file()
            && (!name.starts_with('.') || name == ".metadata")
            && let Ok(m) = e.metadata()
        {
            f(&p, &m);
        }
    }
}

pub(crate) fn is_temporary(name: &str) -> bool {
    name.starts_with('.') || TEMP_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn is_sidecar(name: &str) -> bool {
    name.ends_with(".metadata.yaml") || name.ends_with(".metadata.json")
}

/// Is the sidecar at `path` one ckpt wrote (`generator.tool: ckpt …`)? `None` when it cannot
/// be read.
fn written_by_ckpt(path: &Path) -> Option<bool> {
    let s = Sidecar::read(path).ok()?;
    let tool = s
        .value
        .get("generator")
        .and_then(|g| g.get("tool"))
        .and_then(Value::as_str);
    Some(tool.is_some_and(|t| t == "ckpt" || t.starts_with("ckpt ")))
}

fn say(line: &str) {
    let mut out = crate::sink::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn say_err(line: &str) {
    let mut err = crate::sink::stderr();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

impl Watch<'_> {
    /// `abs` as the user would write it: under the root it was found in, as that root was
    /// typed.
    fn shown(&self, abs: &Path) -> String {
        for (root, typed) in &self.roots {
            if let Ok(rest) = abs.strip_prefix(root) {
                return if rest.as_os_str().is_empty() {
                    typed.display().to_string()
                } else {
                    typed.join(rest).display().to_string()
                };
            }
        }
        abs.display().to_string()
    }

    fn add(&mut self, p: &Path, what: What, catch_up: bool) {
        let now = Instant::now();
        let e = self.pending.entry(p.to_path_buf()).or_insert(Pending {
            what,
            last: None,
            since: now,
            next: now,
            catch_up,
        });
        // An event on a path found by the catch-up makes it an event.
        e.catch_up &= catch_up;
        e.next = e.next.min(now);
    }

    /// A path an event named (or the poller saw change): decide what to wait for.
    fn touched(&mut self, p: &Path, catch_up: bool) {
        let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return;
        };
        if name == ".metadata" || name.ends_with(".distcp") {
            if let Some(dir) = p.parent() {
                self.add(dir, What::Folder, catch_up);
            }
            return;
        }
        if is_temporary(&name) || is_sidecar(&name) {
            return;
        }
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                if p.join(".metadata").is_file() {
                    self.add(p, What::Folder, catch_up);
                } else {
                    // A folder created or moved in whole: what it holds now, and again
                    // shortly (what is written before its watch exists sends no event).
                    if !catch_up && !self.rewalk.iter().any(|(_, d)| d == p) {
                        let now = Instant::now();
                        self.rewalk.push((now + SETTLE, p.to_path_buf()));
                        self.rewalk
                            .push((now + Duration::from_secs(1), p.to_path_buf()));
                    }
                    let mut found = Vec::new();
                    walk(p, 0, &mut |f, _| found.push(f.to_path_buf()));
                    for f in found {
                        if f != p {
                            self.touched(&f, catch_up);
                        }
                    }
                }
            }
            Ok(m) if m.is_file() => {
                // Named like a checkpoint, or holding one (an empty new file is looked at
                // again on its next change).
                if ckpt_torch::names::is_checkpoint_file(p) {
                    self.add(p, What::File, catch_up);
                }
            }
            Ok(_) => {}
            Err(_) => {
                // Gone: its sidecar may have to go too.
                if self.known.contains(p)
                    || ckpt_torch::names::has_checkpoint_extension(
                        p,
                        ckpt_torch::names::CHECKPOINT_EXTENSIONS,
                    )
                {
                    self.add(p, What::File, catch_up);
                }
            }
        }
    }

    /// Everything under the roots, as on start (after lost events).
    fn rescan(&mut self) {
        let roots: Vec<PathBuf> = self.roots.iter().map(|(a, _)| a.clone()).collect();
        let (cands, _warnings) = ckpt_catalog::discover::discover(&roots, &WalkOptions::default());
        for c in cands {
            let what = if c.kind == Kind::File {
                What::File
            } else {
                What::Folder
            };
            self.add(&c.path, what, true);
        }
    }

    /// On start: every checkpoint under the roots is judged (a missing or stale sidecar is
    /// written), and sidecars ckpt wrote whose checkpoint is gone are removed.
    fn catch_up(&mut self) {
        self.rescan();
        let mut sidecars = Vec::new();
        for (abs, _) in self.roots.clone() {
            walk(&abs, 0, &mut |p, _| {
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".metadata.yaml"))
                {
                    sidecars.push(p.to_path_buf());
                }
            });
        }
        sidecars.sort();
        for s in sidecars {
            if has_owner(&s) {
                continue;
            }
            match written_by_ckpt(&s) {
                Some(true) => match std::fs::remove_file(&s) {
                    Ok(()) => say(&format!(
                        "removed {} (its checkpoint is gone)",
                        self.shown(&s)
                    )),
                    Err(e) => self.error(&s, &format!("cannot remove: {e}")),
                },
                Some(false) => say(&format!(
                    "kept {} (its checkpoint is gone; not written by ckpt)",
                    self.shown(&s)
                )),
                None => {}
            }
        }
    }

    /// `msg` (which may name `abs` the way the readers do, absolute) naming the file as the
    /// user wrote it, once.
    fn about(&self, abs: &Path, msg: &str) -> String {
        let shown = self.shown(abs);
        let msg = msg.replace(&abs.display().to_string(), &shown);
        match msg.strip_prefix(&format!("{shown}: ")) {
            Some(rest) => format!("{shown}: {rest}"),
            None => format!("{shown}: {msg}"),
        }
    }

    fn error(&mut self, p: &Path, msg: &str) {
        self.failed = true;
        say_err(&format!("ckpt: error: {}", self.about(p, msg)));
    }

    /// Judge the pending paths whose time has come; handle the ready ones as one batch.
    fn check(&mut self, stop: &AtomicBool) {
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, p)| p.next <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut ready: Vec<(PathBuf, What, bool)> = Vec::new();
        let mut gone: Vec<(PathBuf, bool)> = Vec::new();
        for path in due {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Some(p) = self.pending.get_mut(&path) else {
                continue;
            };
            let stat_of = match p.what {
                What::File => path.clone(),
                What::Folder => path.join(".metadata"),
            };
            let stat = match std::fs::metadata(&stat_of) {
                Ok(m) => (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
                Err(_) if p.what == What::File || !path.exists() => {
                    let catch_up = p.catch_up;
                    self.pending.remove(&path);
                    gone.push((path, catch_up));
                    continue;
                }
                // A folder without its .metadata yet: wait for it.
                Err(_) => (0, SystemTime::UNIX_EPOCH),
            };
            if p.last != Some(stat) {
                p.last = Some(stat);
                p.since = now;
                p.next = now + SETTLE;
                continue;
            }
            // Unchanged across two checks: does its format say it is whole?
            let verdict = match p.what {
                What::File => complete::file(&path),
                What::Folder => complete::dcp(&path),
            };
            match verdict {
                Ok(()) => {
                    let (what, catch_up) = (p.what, p.catch_up);
                    self.pending.remove(&path);
                    ready.push((path, what, catch_up));
                }
                Err(why) => {
                    let wait = if self.a.once {
                        SETTLE
                    } else {
                        INCOMPLETE_AFTER
                    };
                    if now.duration_since(p.since) >= wait {
                        self.pending.remove(&path);
                        say(&format!(
                            "skipped {} (incomplete: {why})",
                            self.shown(&path)
                        ));
                    } else {
                        p.next = now + SETTLE;
                    }
                }
            }
        }
        if ready.is_empty() && gone.is_empty() {
            return;
        }
        self.handle(ready, gone, stop);
    }

    /// Write the sidecars of checkpoints found whole, remove those of deleted ones, and
    /// refresh the catalog cache for all of them.
    fn handle(
        &mut self,
        ready: Vec<(PathBuf, What, bool)>,
        gone: Vec<(PathBuf, bool)>,
        stop: &AtomicBool,
    ) {
        let dirs = DirCache::default();
        let mut report = Report::default();
        let mut refresh: Vec<PathBuf> = Vec::new();
        for (path, what, catch_up) in &ready {
            // Stopping: what is left is caught up on the next start.
            if stop.load(Ordering::SeqCst) {
                break;
            }
            refresh.push(path.clone());
            if *what == What::Folder {
                if !catch_up {
                    report.lines.push(format!(
                        "catalogued {} (a folder: no sidecar)",
                        self.shown(path)
                    ));
                }
                continue;
            }
            self.known.insert(path.clone());
            let r = ckpt_torch::bug::catch(|| self.sidecar_for(path, &dirs, *catch_up));
            match r {
                Ok(Ok(Some(line))) => report.lines.push(line),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => report.errors.push(self.about(path, &e)),
                Err(panic) => {
                    crate::report_bug("watch", path, &panic);
                }
            }
        }
        for (path, catch_up) in &gone {
            refresh.push(path.clone());
            self.known.remove(path);
            match self.gone(path, *catch_up) {
                Ok(Some(line)) => report.lines.push(line),
                Ok(None) => {}
                Err(e) => report.errors.push(self.about(path, &e)),
            }
        }
        for l in &report.lines {
            say(l);
        }
        for e in &report.errors {
            self.failed = true;
            say_err(&format!("ckpt: error: {e}"));
        }
        self.refresh_cache(&refresh);
    }

    /// The sidecar of a checkpoint found whole: written when missing, rewritten when ckpt
    /// wrote it and it no longer describes the file, left alone when someone else wrote it.
    fn sidecar_for(
        &self,
        path: &Path,
        dirs: &DirCache,
        catch_up: bool,
    ) -> Result<Option<String>, String> {
        let yaml = sidecar::yaml_path(path);
        // A stale sidecar of ckpt's, moved aside while the new one is made: read as a source,
        // it would lend the new one its old values.
        let mut aside: Option<PathBuf> = None;
        if yaml.exists() {
            match written_by_ckpt(&yaml) {
                Some(true) => {
                    let ck = ckpt_torch::Checkpoint::open(path).map_err(|e| e.to_string())?;
                    let old = Sidecar::read(&yaml).map_err(|e| e.to_string())?;
                    if sidecar::staleness(&old.value, &ck) == sidecar::Staleness::Fresh {
                        return Ok(None);
                    }
                    let name = yaml
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let to = yaml.with_file_name(format!(".{name}.stale-{}", std::process::id()));
                    std::fs::rename(&yaml, &to)
                        .map_err(|e| format!("cannot move its stale sidecar aside: {e}"))?;
                    aside = Some(to);
                }
                _ if catch_up => return Ok(None),
                _ => {
                    return Ok(Some(format!(
                        "kept {} (not written by ckpt)",
                        self.shown(&yaml)
                    )));
                }
            }
        }
        let job = Job {
            outputs: None,
            force: false,
            dry_run: false,
            verbose: false,
            dirs,
        };
        let converted = convert_one(&job, path, &mut Vec::new());
        if let Some(old) = aside {
            // Put back unless a new one took its place (ours, or a concurrent writer's).
            if matches!(converted, Converted::Written { .. }) || yaml.exists() {
                let _ = std::fs::remove_file(&old);
            } else {
                let _ = std::fs::rename(&old, &yaml);
            }
        }
        match converted {
            Converted::Written { sidecar, .. } => {
                Ok(Some(format!("wrote {}", self.shown(&sidecar))))
            }
            // Written meanwhile by someone else (a training callback): theirs stands.
            Converted::Skipped(_) => Ok(None),
            Converted::Unwritable { error, .. }
                if error.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                Ok(None)
            }
            Converted::Unwritable { sidecar, error } => {
                Err(format!("cannot write {}: {error}", self.shown(&sidecar)))
            }
            Converted::Failed(e) => Err(e),
        }
    }

    /// A checkpoint deleted: its sidecar goes if ckpt wrote it (and no other file of the
    /// folder is described by the same sidecar name).
    fn gone(&self, path: &Path, catch_up: bool) -> Result<Option<String>, String> {
        let yaml = sidecar::yaml_path(path);
        if !yaml.exists() || has_owner(&yaml) {
            return Ok(None);
        }
        match written_by_ckpt(&yaml) {
            Some(true) => {
                std::fs::remove_file(&yaml)
                    .map_err(|e| format!("cannot remove its sidecar: {e}"))?;
                Ok(Some(format!("removed {}", self.shown(&yaml))))
            }
            Some(false) if !catch_up => Ok(Some(format!(
                "kept {} (its checkpoint is gone; not written by ckpt)",
                self.shown(&yaml)
            ))),
            _ => Ok(None),
        }
    }

    /// Refresh the catalog cache for these paths through the catalog's own code: present ones
    /// are (re)read and stored, missing ones dropped.
    fn refresh_cache(&mut self, paths: &[PathBuf]) {
        let Some(cache) = &self.cache else { return };
        let opts = CatalogOptions {
            walk: WalkOptions::default(),
            cache: Some(cache.clone()),
            progress: None,
        };
        match ckpt_catalog::catalog::build(paths, &opts) {
            Ok(cat) => {
                for b in &cat.bugs {
                    crate::report_bug("watch", &b.path, &b.panic);
                }
                // A cache that could not be used is said (the run goes on without it).
                for w in cat
                    .warnings
                    .iter()
                    .filter(|w| w.contains("running without the cache"))
                {
                    say_err(&format!("ckpt: warning: {w}"));
                }
            }
            Err(e) => {
                self.failed = true;
                say_err(&format!("ckpt: error: {}: {e}", cache.display()));
            }
        }
    }
}

/// Is there a file or folder beside `sidecar` that it describes (same stem; the sidecars
/// themselves aside)? Then it is not an orphan, whatever else happened.
fn has_owner(sidecar: &Path) -> bool {
    let Some(name) = sidecar
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return true;
    };
    let Some(stem) = name.strip_suffix(".metadata.yaml") else {
        return true;
    };
    let Some(dir) = sidecar.parent() else {
        return true;
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        // Cannot tell: keep it.
        return true;
    };
    rd.flatten().any(|e| {
        let n = e.file_name();
        let n = n.to_string_lossy();
        let p = e.path();
        !n.starts_with(&format!("{stem}.metadata."))
            && !is_temporary(&n)
            && p.file_stem().is_some_and(|s| s.to_string_lossy() == stem)
    })
}
