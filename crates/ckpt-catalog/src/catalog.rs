//! One catalog run: discover, stat, consult the cache, open what changed (in parallel),
//! resolve every entry, mark the best.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ckpt_meta::sources::DirCache;
use ckpt_torch::bug::Panic;

use crate::Fact;
use crate::cache::{Cache, CacheError, EntryHit, EntryRow, FileKey};
use crate::discover::{Candidate, Kind, WalkOptions, discover_with_listing};
use crate::entry::CatalogEntry;
use crate::entry::Shared;
use crate::par;
use crate::resolve::{
    Resolve, Resolved, Stored, bug_entry, checkpoint_facts_read, entry_version, facts_from_json,
    facts_to_json, facts_version, mark_best, modified_of, resolve_recorded,
};
use ckpt_meta::consulted::{self, Consult, Fingerprint};
use serde_json::Value;
use std::collections::BTreeMap;

/// Called after each chunk with (checkpoints done, checkpoints found).
pub type Progress = std::sync::Arc<dyn Fn(usize, usize) + Send + Sync>;

#[derive(Clone, Default)]
pub struct Options {
    pub walk: WalkOptions,
    /// The cache file; `None` for `--no-cache`.
    pub cache: Option<PathBuf>,
    /// Progress reports (the CLI draws a bar on a terminal).
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("walk", &self.walk)
            .field("cache", &self.cache)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a run did, for `--verbose` and benchmarks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub candidates: usize,
    pub opened: usize,
    pub cached: usize,
    /// Of the cached: entries served whole (nothing they were resolved from had changed).
    pub reused: usize,
    pub forgotten: usize,
}

/// A checkpoint whose facts or resolution panicked: the entry carries the error, the rest of
/// the tree is catalogued, and the binary reports each one and exits 3.
#[derive(Debug, Clone)]
pub struct Bug {
    pub path: PathBuf,
    pub panic: ckpt_torch::bug::Panic,
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub entries: Vec<CatalogEntry>,
    pub warnings: Vec<String>,
    pub stats: Stats,
    /// Checkpoints that hit a bug in ckpt (a panic caught per checkpoint).
    pub bugs: Vec<Bug>,
    /// What this run could not see whole, as paths: roots in a bucket whose listing failed or
    /// is partial (their cached rows are kept, not forgotten), and objects whose read failed
    /// transiently (not cached). The CLI exits 1 when there is any; each has a warning.
    pub incomplete: Vec<PathBuf>,
}

/// The file whose metadata keys a candidate in the cache.
fn key_file(c: &Candidate) -> PathBuf {
    match c.kind {
        Kind::File => c.path.clone(),
        Kind::Dcp => c.path.join(".metadata"),
        Kind::HfSharded => {
            let st = c.path.join("model.safetensors.index.json");
            if is_file(&st) {
                st
            } else {
                c.path.join("pytorch_model.bin.index.json")
            }
        }
    }
}

/// Every other file a candidate's facts are read from: a DCP folder's shards (its step and
/// epoch are read from them), a sharded folder's `config.json` and every shard its index
/// names (in a bucket: every other object of the folder). The cache key covers them all, so
/// changing any of them re-reads the facts.
fn other_inputs(c: &Candidate) -> Vec<PathBuf> {
    match c.kind {
        Kind::File => Vec::new(),
        // In a bucket, every other object of the folder, from its listing (memoized by the
        // walk): a sharded folder's index is not read again to learn its shards, so an
        // unchanged folder costs no GET.
        Kind::Dcp | Kind::HfSharded if ckpt_io::is_remote(&c.path) => {
            let key = key_file(c);
            ckpt_io::read_dir(&c.path)
                .map(|l| {
                    l.entries
                        .into_iter()
                        .filter(|e| e.kind == ckpt_io::Kind::File)
                        .map(|e| e.path)
                        .filter(|p| *p != key)
                        .collect()
                })
                .unwrap_or_default()
        }
        Kind::Dcp => {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&c.path)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.file_name().is_some_and(|n| n != ".metadata"))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        }
        Kind::HfSharded => ckpt_meta::sources::checkpoint::sharded_inputs(&c.path),
    }
}

/// Fold the other inputs into a key: sizes added, the newest mtime, and the inode field
/// replaced by a hash of every input's (name, size, mtime, inode), so any change, addition or
/// removal gives another key.
fn fold_inputs(mut key: FileKey, inputs: &[PathBuf]) -> FileKey {
    if inputs.is_empty() {
        return key;
    }
    // The same stable hash as the consulted sets' (FNV-1a, no dependency).
    let mut h = consulted::FNV_START;
    let mut eat = |bytes: &[u8]| h = consulted::fnv(h, bytes);
    eat(&key.inode.to_le_bytes());
    for p in inputs {
        eat(p.as_os_str().as_encoded_bytes());
        match stat(p) {
            Ok(m) => {
                let k = FileKey::from_stat("", &m);
                key.size = key.size.saturating_add(k.size);
                key.mtime_ns = key.mtime_ns.max(k.mtime_ns);
                eat(&k.size.to_le_bytes());
                eat(&k.mtime_ns.to_le_bytes());
                eat(&k.inode.to_le_bytes());
            }
            Err(_) => eat(b"\0missing"),
        }
    }
    key.inode = h;
    key
}

struct Stat {
    key: Option<FileKey>,
    size: u64,
    modified: String,
    error: Option<String>,
}

/// How a candidate was reached, as a number the cached entry must match: the path as the user
/// spelled it (the entry's `path`), the root it was found under (names are relative to it),
/// its kind, and the size and time the entry records.
fn context_of(c: &Candidate, st: &Stat) -> i64 {
    use consulted::{FNV_START, fnv};
    let mut h = fnv(FNV_START, c.path.as_os_str().as_encoded_bytes());
    h = fnv(h, &[0]);
    h = fnv(h, c.root.as_os_str().as_encoded_bytes());
    h = fnv(h, &[0, c.kind as u8]);
    h = fnv(h, &st.size.to_le_bytes());
    h = fnv(h, st.modified.as_bytes());
    i64::from_ne_bytes(h.to_ne_bytes())
}

/// A consulted set as the cache stores it (JSON `[[path, fingerprint], …]`, absolute paths,
/// so that checking it does not depend on the folder a later run starts in) and its id;
/// `None` when a path is not UTF-8 (it could not be read back as the same path: not cached).
fn consulted_row(seen: &[Consult], cwd: &Path) -> Option<(i64, String)> {
    let abs: Vec<(PathBuf, Fingerprint)> =
        seen.iter().map(|(p, fp)| (absolute(p, cwd), *fp)).collect();
    let rows: Option<Vec<(&str, i64)>> = abs
        .iter()
        .map(|(p, fp)| Some((p.to_str()?, i64::from_ne_bytes(fp.to_ne_bytes()))))
        .collect();
    let text = serde_json::to_string(&rows?).ok()?;
    let id = consulted::fnv(consulted::FNV_START, text.as_bytes());
    Some((i64::from_ne_bytes(id.to_ne_bytes()), text))
}

/// The shared parts of entries ([`crate::entry::Shared`]) read from the cache in one run,
/// by id: parsed once, then held by every entry that carries them.
#[derive(Default, Clone)]
struct Parts {
    values: std::collections::HashMap<i64, Shared<BTreeMap<String, Value>>>,
    sources: std::collections::HashMap<i64, Shared<BTreeMap<String, String>>>,
}

/// Which of an entry's parts: model, hparams, data (values), sources (strings).
const SOURCES_PART: usize = 3;

impl Parts {
    fn has(&self, slot: usize, id: i64) -> bool {
        id == 0
            || if slot == SOURCES_PART {
                self.sources.contains_key(&id)
            } else {
                self.values.contains_key(&id)
            }
    }

    /// Parse and keep parts read from the cache; one that does not parse is left out (its
    /// entries are resolved again).
    fn add(&mut self, slot: usize, id: i64, json: &str) {
        if slot == SOURCES_PART {
            if let Ok(m) = serde_json::from_str(json) {
                self.sources.insert(id, Shared::new(m));
            }
        } else if let Ok(m) = serde_json::from_str(json) {
            self.values.insert(id, Shared::new(m));
        }
    }

    fn merge(&mut self, other: Parts) {
        self.values.extend(other.values);
        self.sources.extend(other.sources);
    }

    /// Give a stored entry its parts back; `false` when one is missing.
    fn fill(&self, e: &mut CatalogEntry, ids: [i64; 4]) -> bool {
        let value = |id: i64| -> Option<Shared<BTreeMap<String, Value>>> {
            if id == 0 {
                Some(Shared::default())
            } else {
                self.values.get(&id).cloned()
            }
        };
        let (Some(model), Some(hparams), Some(data)) =
            (value(ids[0]), value(ids[1]), value(ids[2]))
        else {
            return false;
        };
        let sources = if ids[SOURCES_PART] == 0 {
            Shared::default()
        } else {
            match self.sources.get(&ids[SOURCES_PART]) {
                Some(s) => s.clone(),
                None => return false,
            }
        };
        e.model = model;
        e.hparams = hparams;
        e.data = data;
        e.sources = sources;
        true
    }
}

/// The id of a part's text: the first 8 bytes of its SHA-256 (a part is addressed by what it
/// says, so two runs with the same hyperparameters share one row), never 0 (0 is "empty"). The
/// slot is hashed too: a model and a data part with the same text are different rows.
fn part_id(slot: usize, json: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update([u8::try_from(slot).unwrap_or(u8::MAX)]);
    h.update(json.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    match i64::from_be_bytes(b) {
        0 => 1,
        id => id,
    }
}

/// Rows of `consulted` or `parts`: (id, JSON text).
type IdTexts = Vec<(i64, String)>;

/// A resolved entry to store: its row, the set of paths it consulted, its parts.
struct NewEntry {
    row: EntryRow,
    consulted: (i64, String),
    parts: IdTexts,
}

/// What resolving any checkpoint of a run reads besides the checkpoint.
struct RunCtx<'a> {
    parts: &'a Parts,
    cwd: &'a Path,
    dirs: &'a DirCache,
    seen: &'a crate::discover::Seen,
}

/// Split a resolution into the entry row's text and its parts (id, text), moving the parts
/// out of the entry.
fn split_parts(mut stored: Stored) -> Option<(String, [i64; 4], IdTexts)> {
    let e = &mut stored.resolved.entry;
    let (model, hparams, data, sources) = (
        std::mem::take(&mut e.model),
        std::mem::take(&mut e.hparams),
        std::mem::take(&mut e.data),
        std::mem::take(&mut e.sources),
    );
    let texts = [
        json_or_empty(&model)?,
        json_or_empty(&hparams)?,
        json_or_empty(&data)?,
        json_or_empty(&sources)?,
    ];
    let mut ids = [0i64; 4];
    let mut parts = Vec::new();
    for (slot, t) in texts.into_iter().enumerate() {
        if let Some(t) = t {
            let id = part_id(slot, &t);
            ids[slot] = id;
            parts.push((id, t));
        }
    }
    Some((serde_json::to_string(&stored).ok()?, ids, parts))
}

/// A part's JSON, `None` inside when it is empty (stored as id 0); `None` when it does not
/// serialize (never for these types).
fn json_or_empty<V: serde::Serialize>(m: &BTreeMap<String, V>) -> Option<Option<String>> {
    if m.is_empty() {
        return Some(None);
    }
    serde_json::to_string(m).ok().map(Some)
}

/// Fingerprints taken during one run, by path: many entries consulted the same folders.
struct Fingerprints {
    taken: std::sync::Mutex<std::collections::HashMap<String, Fingerprint>>,
    /// How many stored sets are checked at once (a prefix's fingerprint may cost a LIST).
    width: usize,
}

impl Fingerprints {
    fn new(width: usize) -> Fingerprints {
        Fingerprints {
            taken: std::sync::Mutex::default(),
            width,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Fingerprint>> {
        self.taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn of(&self, path: &str) -> Fingerprint {
        if let Some(fp) = self.lock().get(path) {
            return *fp;
        }
        let fp = consulted::fingerprint(Path::new(path));
        self.lock().insert(path.to_owned(), fp);
        fp
    }

    /// Is the stored consulted set still as it was? Unparseable text is "no".
    fn unchanged(&self, text: &str) -> bool {
        let Ok(rows) = serde_json::from_str::<Vec<(String, i64)>>(text) else {
            return false;
        };
        let rows: Vec<(String, Fingerprint)> = rows
            .into_iter()
            .map(|(p, fp)| (p, u64::from_ne_bytes(fp.to_ne_bytes())))
            .collect();
        consulted::unchanged(&rows, &|p| self.of(p))
    }
}

/// `p` made absolute against `cwd` (read once per run: `std::path::absolute` asks the system
/// for the current folder on every call, a fifth of stat-ing ten thousand files). A URL is
/// absolute as it is.
fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if ckpt_io::is_remote(p) {
        p.to_path_buf()
    } else if p.is_absolute() {
        std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
    } else {
        std::path::absolute(cwd.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The cache key, size and mtime of one candidate.
fn stat_of(c: &Candidate, cwd: &Path) -> Stat {
    let kf = key_file(c);
    let meta = match (&c.meta, c.kind) {
        (Some(m), Kind::File) => Ok(m.0.clone()),
        _ => stat(&kf),
    };
    match meta {
        Ok(m) => {
            let abs = absolute(&kf, cwd);
            let modified = modified_of(&m);
            let size = if c.kind == Kind::File {
                m.identity.size
            } else {
                dir_size(&c.path)
            };
            let key = FileKey::from_stat(&abs.display().to_string(), &m);
            Stat {
                key: Some(fold_inputs(key, &other_inputs(c))),
                size,
                modified,
                error: None,
            }
        }
        Err(e) => Stat {
            key: None,
            size: 0,
            modified: String::new(),
            error: Some(format!("{}: {e}", c.path.display())),
        },
    }
}

/// Build the whole catalog in memory.
pub fn build(roots: &[PathBuf], opts: &Options) -> Result<Catalog, CacheError> {
    let mut entries = Vec::new();
    let mut cat = build_streaming(roots, opts, &mut |e| entries.push(e))?;
    cat.entries = entries;
    Ok(cat)
}

/// Build the catalog, handing each entry to `on_entry` as soon as its folder is done (in
/// folder order, deterministic). Memory stays flat in the size of the tree: only one chunk
/// of checkpoints' facts and entries is held at a time. The returned `Catalog` has no
/// entries, only warnings and stats.
pub fn build_streaming(
    roots: &[PathBuf],
    opts: &Options,
    on_entry: &mut dyn FnMut(CatalogEntry),
) -> Result<Catalog, CacheError> {
    let mut cat = Catalog::default();
    // Buckets are listed afresh by each run (a long-lived process, `ckpt serve`, catalogs
    // again and again; within a run, each prefix is listed once).
    if roots.iter().any(|r| ckpt_io::is_remote(r)) {
        ckpt_io::forget_listings();
    }
    // The cache is opened (its integrity checked: a read of the whole file) while the tree
    // is walked and the checkpoints are stat-ed: neither waits for the other.
    let opening = opts
        .cache
        .clone()
        .map(|p| std::thread::spawn(move || Cache::open(&p)));
    let (cands, warnings, seen) = discover_with_listing(roots, &opts.walk);
    let cwd = std::env::current_dir().unwrap_or_default();
    cat.warnings.extend(warnings);
    cat.stats.candidates = cands.len();

    // Objects in buckets wait on the network, not on the cores: read as many at once as
    // requests may be in flight.
    let width = if roots.iter().any(|r| ckpt_io::is_remote(r)) {
        crate::discover::io_width().max(par::threads())
    } else {
        par::threads()
    };
    let stats: Vec<Stat> = par::map_n(&cands, width, |c| stat_of(c, &cwd));
    let opened = opening.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));

    // The cache: facts of unchanged checkpoints.
    // A cache written by a newer ckpt, or a file at the cache path that is not a ckpt cache, is
    // refused (the user named the wrong file: going on uncached would hide it); any other
    // trouble (read-only folder, a lock held too long) is a warning and the run goes on uncached.
    let mut cache = match opened {
        Some(opened) => match opened {
            Ok((c, warn)) => {
                cat.warnings.extend(warn);
                Some(c)
            }
            Err(e @ (CacheError::NewerSchema { .. } | CacheError::NotOurs { .. })) => {
                return Err(e);
            }
            Err(e) => {
                cat.warnings.push(format!("{e}; running without the cache"));
                None
            }
        },
        None => None,
    };
    // Checkpoints are read and resolved in chunks, so the facts of only one chunk are in
    // memory at a time (memory grows with the entries kept, not with what was read).
    const CHUNK: usize = 128;
    let dirs = DirCache::default();
    // Chunks end at folder boundaries, so each folder's best can be marked within its chunk.
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    for i in 0..cands.len() {
        let new_folder = cur
            .last()
            .is_some_and(|&j| cands[j].path.parent() != cands[i].path.parent());
        if cur.len() >= CHUNK && new_folder {
            chunks.push(std::mem::take(&mut cur));
        }
        cur.push(i);
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    let mut done = 0usize;
    let total = cands.len();
    // A chunk's entries, resolved and marked, waiting to be handed on.
    let mut pending: Option<Vec<CatalogEntry>> = None;
    let mut emit = |entries: Option<Vec<CatalogEntry>>| {
        let Some(entries) = entries else { return };
        done += entries.len();
        for e in entries {
            on_entry(e);
        }
        if let Some(p) = &opts.progress {
            p(done, total);
        }
    };
    // A chunk's rows, waiting to be written to the cache.
    let mut pending_rows = Rows::default();
    // The first sign SQLite gave that the cache file is damaged, if any.
    let mut damaged: Option<CacheError> = None;
    let mut warned: HashSet<String> = HashSet::new();
    // Which stored consulted sets are unchanged, decided once per run.
    let fingerprints = Fingerprints::new(width);
    let mut unchanged: std::collections::HashMap<i64, bool> = std::collections::HashMap::new();
    let mut parts = Parts::default();
    // The cache rows of the chunks are read ahead, on a thread of their own with a read
    // connection of their own (SQLite's WAL lets it read while this thread writes), while
    // the chunk before is resolved and the one before that handed on: reading rows and
    // writing the output were each a third of an unchanged tree's time, one after the other.
    let reader = cache.as_ref().and_then(|c| c.reader().ok());
    // The roots as the cache's keys spell paths, and the rows under them no checkpoint of
    // this run has (asked by the read-ahead thread once it has read every chunk's rows).
    cat.incomplete.extend(seen.incomplete.iter().cloned());
    let abs_roots = forgettable_roots(roots, &seen.incomplete);
    let missing: std::sync::Mutex<Option<Result<Vec<String>, CacheError>>> =
        std::sync::Mutex::new(None);
    std::thread::scope(|ahead| -> Result<(), CacheError> {
        let (send, receive) = std::sync::mpsc::sync_channel::<Result<Fetched, CacheError>>(2);
        let fetcher = reader.map(|r| {
            let (chunks, stats, cands, fingerprints) = (&chunks, &stats, &cands, &fingerprints);
            let (missing, abs_roots) = (&missing, &abs_roots);
            ahead.spawn(move || {
                let mut unchanged = std::collections::HashMap::new();
                let mut known = Parts::default();
                for chunk in chunks {
                    let f = fetch_inputs(
                        &r,
                        chunk,
                        stats,
                        cands,
                        &mut unchanged,
                        &known,
                        fingerprints,
                    );
                    if let Ok(f) = &f {
                        known.merge(f.parts.clone());
                    }
                    let failed = f.is_err();
                    if send.send(f).is_err() || failed {
                        return;
                    }
                }
                // Every row was read: which rows under the roots no checkpoint of this run
                // has is asked here too, while the last chunks are resolved and written.
                let found = r.missing_under(abs_roots, &keys_of(stats));
                if let Ok(mut m) = missing.lock() {
                    *m = Some(found);
                }
            })
        });
        for chunk in &chunks {
            let chunk = chunk.as_slice();
            let mut chunk_entries: Vec<CatalogEntry> = Vec::with_capacity(chunk.len());
            let mut chunk_best: Vec<Option<String>> = Vec::with_capacity(chunk.len());
            let fetched = match (&fetcher, &cache) {
                // After a failure the fetcher has stopped: the chunks left are read.
                (Some(_), Some(_)) => receive.recv().unwrap_or_else(|_| Ok(Fetched::default())),
                // No second connection: read here, before the chunk.
                (None, Some(c)) => fetch_inputs(
                    c,
                    chunk,
                    &stats,
                    &cands,
                    &mut unchanged,
                    &parts,
                    &fingerprints,
                ),
                (_, None) => Ok(Fetched::default()),
            };
            let fetched = match fetched {
                Ok(f) => f,
                Err(e) if e.is_corruption() => {
                    damaged.get_or_insert(e);
                    cache = None;
                    Fetched::default()
                }
                Err(e) => return Err(e),
            };
            let Fetched {
                contexts,
                mut inputs,
                parts: new_parts,
            } = fetched;
            parts.merge(new_parts);
            if inputs.is_empty() {
                // No cache: every checkpoint is read.
                inputs = (0..chunk.len()).map(|_| Input::Read).collect();
            }
            let contexts = if contexts.is_empty() {
                chunk
                    .iter()
                    .map(|i| context_of(&cands[*i], &stats[*i]))
                    .collect()
            } else {
                contexts
            };
            let items: Vec<(usize, i64, std::sync::Mutex<Input>)> = chunk
                .iter()
                .zip(&contexts)
                .zip(inputs)
                .map(|((i, ctx), t)| (*i, *ctx, std::sync::Mutex::new(t)))
                .collect();
            // Read (when not cached) and resolve each checkpoint in one pass on all cores, while
            // this thread hands the previous chunk's entries on (writing them is serial).
            let (done_chunk, put): (Vec<Done>, Result<(), CacheError>) = std::thread::scope(|s| {
                let work = s.spawn(|| {
                    par::map_n(&items, width, |(i, ctx, slot)| {
                        let input = std::mem::replace(
                            &mut *slot
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner),
                            Input::Read,
                        );
                        let run = RunCtx {
                            parts: &parts,
                            cwd: &cwd,
                            dirs: &dirs,
                            seen: &seen,
                        };
                        read_and_resolve(&cands[*i], &stats[*i], *ctx, input, &run)
                    })
                });
                emit(pending.take());
                // The previous chunk's new rows are written meanwhile too (a commit may wait for
                // a WAL checkpoint's sync).
                let put = put_rows(&mut cache, &mut pending_rows);
                (
                    work.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    put,
                )
            });
            match put {
                Ok(()) => {}
                Err(e) if e.is_corruption() => {
                    damaged.get_or_insert(e);
                    cache = None;
                }
                Err(e) => return Err(e),
            }
            drop(items);
            let mut rows = Rows::default();
            for (i, d) in chunk.iter().zip(done_chunk) {
                if d.cached {
                    cat.stats.cached += 1;
                } else if stats[*i].key.is_some() {
                    cat.stats.opened += 1;
                }
                if d.reused {
                    cat.stats.reused += 1;
                }
                if let Some(row) = d.row {
                    rows.facts.push(row);
                }
                if let Some(n) = d.entry_row {
                    rows.entries.push(n.row);
                    rows.consulted.push(n.consulted);
                    rows.parts.extend(n.parts);
                }
                if d.transient {
                    cat.warnings.push(format!(
                        "{}: could not be read whole this time; not cached",
                        cands[*i].path.display()
                    ));
                    cat.incomplete.push(cands[*i].path.clone());
                }
                if let Some(panic) = d.read_bug {
                    cat.bugs.push(Bug {
                        path: cands[*i].path.clone(),
                        panic,
                    });
                }
                let (mut entry, best) = match d.resolved {
                    Ok((r, w)) => {
                        // A config shared by many checkpoints warns once, not once per checkpoint.
                        for x in w {
                            if warned.insert(x.clone()) {
                                cat.warnings.push(x);
                            }
                        }
                        (r.entry, r.best_name)
                    }
                    Err(panic) => {
                        let entry = bug_entry(&cands[*i].path, panic.to_string());
                        cat.bugs.push(Bug {
                            path: cands[*i].path.clone(),
                            panic,
                        });
                        (entry, None)
                    }
                };
                if let Some(e) = &stats[*i].error {
                    entry.error = Some(e.clone());
                }
                chunk_best.push(best);
                chunk_entries.push(entry);
            }
            pending_rows = rows;
            mark_best(&mut chunk_entries, &chunk_best);
            pending = Some(chunk_entries);
        }
        Ok(())
    })?;
    match put_rows(&mut cache, &mut pending_rows) {
        Ok(()) => {}
        Err(e) if e.is_corruption() => {
            damaged.get_or_insert(e);
            cache = None;
        }
        Err(e) => return Err(e),
    }
    emit(pending.take());
    if let Some(c) = &mut cache {
        let missing = missing
            .into_inner()
            .ok()
            .flatten()
            .unwrap_or_else(|| c.missing_under(&abs_roots, &keys_of(&stats)));
        match missing.and_then(|doomed| c.forget(&doomed)) {
            Ok(n) => cat.stats.forgotten = n,
            Err(e) if e.is_corruption() => {
                damaged.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    // A cache SQLite found damaged mid-run: the run went on reading the files; the file is
    // set aside (its connections closed first) so the next run starts a new one.
    if let (Some(e), Some(path)) = (damaged, &opts.cache) {
        drop(cache);
        let reason = match &e {
            CacheError::Sqlite { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        cat.warnings.push(match Cache::set_aside(path, &reason) {
            Ok(w) => w,
            Err(err) => {
                format!("{e}; went on without the cache, and could not set it aside: {err}")
            }
        });
    }
    Ok(cat)
}

/// The roots as the cache's keys spell paths, whose rows no checkpoint of this run has may be
/// forgotten: all but those whose walk was incomplete (a listing that failed or is partial:
/// what was not seen is not known to be gone, so its rows are kept).
fn forgettable_roots(roots: &[PathBuf], incomplete: &[PathBuf]) -> Vec<String> {
    roots
        .iter()
        .filter(|r| !incomplete.contains(r))
        .map(|r| match ckpt_io::Location::parse(r) {
            // As the walk spells what it finds (`s3://b/p`, whatever the root's spelling).
            ckpt_io::Location::Remote(url) => url.to_string(),
            ckpt_io::Location::Local(_) => std::path::absolute(r)
                .unwrap_or_else(|_| r.clone())
                .display()
                .to_string(),
        })
        .collect()
}

/// The paths of this run's checkpoints, as the cache keys them.
fn keys_of(stats: &[Stat]) -> HashSet<String> {
    stats
        .iter()
        .filter_map(|s| s.key.as_ref().map(|k| k.path.clone()))
        .collect()
}

/// A chunk's cache rows: each checkpoint's context and input, and the parts read for them.
#[derive(Default)]
struct Fetched {
    contexts: Vec<i64>,
    inputs: Vec<Input>,
    parts: Parts,
}

/// What the cache has for a chunk, as text: each row is parsed on the thread that uses it,
/// right before, and dropped right after, so a thread's working set is one checkpoint's
/// (parsing a whole chunk up front turned over tens of megabytes of fresh heap pages per
/// chunk). A resolved entry is taken when every path it consulted is unchanged and its
/// parts are at hand; otherwise the checkpoint's facts, resolved again; otherwise the file.
fn fetch_inputs(
    c: &Cache,
    chunk: &[usize],
    stats: &[Stat],
    cands: &[Candidate],
    unchanged: &mut std::collections::HashMap<i64, bool>,
    known: &Parts,
    fingerprints: &Fingerprints,
) -> Result<Fetched, CacheError> {
    let contexts: Vec<i64> = chunk
        .iter()
        .map(|i| context_of(&cands[*i], &stats[*i]))
        .collect();
    let mut inputs: Vec<Input> = (0..chunk.len()).map(|_| Input::Read).collect();
    let mut parts = Parts::default();
    let (at, keys): (Vec<usize>, Vec<(FileKey, i64)>) = chunk
        .iter()
        .enumerate()
        .filter_map(|(n, i)| stats[*i].key.clone().map(|k| (n, (k, contexts[n]))))
        .unzip();
    let hits = c.get_entries(&keys, entry_version())?;
    let unknown: Vec<i64> = hits
        .iter()
        .flatten()
        .map(|h| h.consulted)
        .filter(|id| !unchanged.contains_key(id))
        .collect::<HashSet<i64>>()
        .into_iter()
        .collect();
    if !unknown.is_empty() {
        let texts = c.get_consulted(&unknown)?;
        let verdicts = par::map_n(&texts, fingerprints.width, |t| {
            t.as_deref().is_some_and(|t| fingerprints.unchanged(t))
        });
        unchanged.extend(unknown.into_iter().zip(verdicts));
    }
    // The parts the usable entries need and this run has not read yet.
    let mut wanted: Vec<(usize, i64)> = hits
        .iter()
        .flatten()
        .filter(|h| unchanged.get(&h.consulted).copied().unwrap_or(false))
        .flat_map(|h| h.parts.iter().copied().enumerate())
        .filter(|(slot, id)| !known.has(*slot, *id))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    if !wanted.is_empty() {
        let ids: Vec<i64> = wanted.iter().map(|(_, id)| *id).collect();
        for ((slot, id), json) in wanted.into_iter().zip(c.get_parts(&ids)?) {
            if let Some(json) = json {
                parts.add(slot, id, &json);
            }
        }
    }
    let mut misses: Vec<(usize, FileKey)> = Vec::new();
    for ((n, (key, _)), hit) in at.into_iter().zip(keys).zip(hits) {
        match hit {
            Some(EntryHit {
                consulted,
                parts: ids,
                entry,
            }) if unchanged.get(&consulted).copied().unwrap_or(false)
                && ids
                    .iter()
                    .enumerate()
                    .all(|(slot, id)| known.has(slot, *id) || parts.has(slot, *id)) =>
            {
                inputs[n] = Input::Entry(entry, ids);
            }
            _ => misses.push((n, key)),
        }
    }
    let keys: Vec<FileKey> = misses.iter().map(|(_, k)| k.clone()).collect();
    let facts = c.get_many(&keys, facts_version())?;
    for ((n, _), f) in misses.into_iter().zip(facts) {
        if let Some(f) = f {
            inputs[n] = Input::Facts(f);
        }
    }
    Ok(Fetched {
        contexts,
        inputs,
        parts,
    })
}

/// What the cache had for one checkpoint of a chunk.
enum Input {
    /// Nothing usable: read the file.
    Read,
    /// The checkpoint's facts (JSON): resolve them again.
    Facts(String),
    /// A resolved entry whose inputs are all unchanged (JSON of [`Stored`] without its
    /// parts) and the ids of its parts (all read).
    Entry(String, [i64; 4]),
}

/// Rows waiting to be written to the cache.
#[derive(Default)]
struct Rows {
    facts: Vec<(FileKey, String)>,
    entries: Vec<EntryRow>,
    consulted: Vec<(i64, String)>,
    parts: Vec<(i64, String)>,
}

/// Write the rows waiting for the cache (none without a cache), leaving none waiting.
fn put_rows(cache: &mut Option<Cache>, rows: &mut Rows) -> Result<(), CacheError> {
    let mut rows = std::mem::take(rows);
    match cache {
        Some(c) => {
            if !rows.facts.is_empty() {
                c.put_many(&rows.facts, facts_version())?;
            }
            rows.consulted.sort_unstable();
            rows.consulted.dedup();
            rows.parts.sort_unstable();
            rows.parts.dedup();
            c.put_entries(&rows.entries, &rows.consulted, &rows.parts, entry_version())
        }
        None => Ok(()),
    }
}

/// One checkpoint of a chunk, read (or taken from its cache row) and resolved.
struct Done {
    /// Not opened: the facts or the whole entry came from the cache.
    cached: bool,
    /// The whole entry came from the cache.
    reused: bool,
    /// Reading the checkpoint failed transiently (nothing of it is cached; the run is
    /// incomplete).
    transient: bool,
    /// A row of facts to write to the cache (facts read from the file).
    row: Option<(FileKey, String)>,
    /// A resolved entry to write to the cache, with the set of paths it consulted and its
    /// parts.
    entry_row: Option<NewEntry>,
    /// Reading the checkpoint's facts panicked: a bug in ckpt.
    read_bug: Option<Panic>,
    resolved: Result<(Resolved, Vec<String>), Panic>,
}

/// The checkpoint's entry: its stored entry when that is still valid, else its facts —
/// parsed from the cache row, or read from the file when there is no row (or the row does
/// not parse) — resolved. A panic while reading is a bug in ckpt: the checkpoint gets an
/// error (never cached, so a fixed ckpt reads it again), the others go on.
fn read_and_resolve(
    cand: &Candidate,
    stat: &Stat,
    context: i64,
    input: Input,
    ctx: &RunCtx<'_>,
) -> Done {
    let RunCtx {
        parts,
        cwd,
        dirs,
        seen,
    } = *ctx;
    let text = match input {
        Input::Entry(text, ids) => {
            let stored = serde_json::from_str::<Stored>(&text);
            drop(text);
            if let Ok(mut s) = stored
                && parts.fill(&mut s.resolved.entry, ids)
            {
                return Done {
                    cached: true,
                    reused: true,
                    transient: false,
                    row: None,
                    entry_row: None,
                    read_bug: None,
                    resolved: Ok((s.resolved, s.warnings)),
                };
            }
            // Unreadable (it should not be): read the file again.
            None
        }
        Input::Facts(text) => Some(text),
        Input::Read => None,
    };
    let mut row = None;
    let mut read_bug = None;
    let mut transient = false;
    let mut facts = text.as_deref().and_then(facts_from_json);
    drop(text);
    let cached = facts.is_some();
    if !cached && let Some(k) = &stat.key {
        facts = Some(
            match ckpt_torch::bug::catch(|| checkpoint_facts_read(cand)) {
                Ok(r) => {
                    // A read that failed on the way (a request, an object replaced meanwhile)
                    // is reported, never remembered.
                    transient = r.transient;
                    if !transient {
                        row = Some((k.clone(), facts_to_json(&r.facts)));
                    }
                    r.facts
                }
                Err(panic) => {
                    let msg = panic.to_string();
                    read_bug = Some(panic);
                    vec![Fact::new(
                        crate::Field::Error,
                        serde_json::Value::String(msg),
                        crate::Source::Checkpoint,
                    )]
                }
            },
        );
    }
    let resolved = ckpt_torch::bug::catch(|| {
        let mut w = Vec::new();
        let (r, seen) = resolve_recorded(
            Resolve {
                candidate: cand,
                size: stat.size,
                modified: stat.modified.clone(),
                ckpt_facts: facts.unwrap_or_default(),
                dirs,
                seen,
            },
            &mut w,
        );
        (r, w, seen)
    });
    // Stored only when reading went without a bug or a transient failure, and every consulted
    // path can be named.
    let entry_row = match (&resolved, &stat.key) {
        (Ok((r, w, consulted)), Some(key)) if read_bug.is_none() && !transient => {
            consulted_row(consulted, cwd).and_then(|set| {
                let (entry, ids, parts) = split_parts(Stored {
                    resolved: r.clone(),
                    warnings: w.clone(),
                })?;
                Some(NewEntry {
                    row: EntryRow {
                        key: key.clone(),
                        context,
                        consulted: set.0,
                        parts: ids,
                        entry,
                    },
                    consulted: set,
                    parts,
                })
            })
        }
        _ => None,
    };
    Done {
        cached,
        reused: false,
        transient,
        row,
        entry_row,
        read_bug,
        resolved: resolved.map(|(r, w, _)| (r, w)),
    }
}

/// `stat` of a local path (as [`ckpt_io::stat`] gives it) or of an object or prefix (from the
/// memoized listing of its parent: no request of its own once the walk listed it).
fn stat(p: &Path) -> std::io::Result<ckpt_io::Stat> {
    if ckpt_io::is_remote(p) {
        ckpt_io::stat(p)
    } else {
        std::fs::metadata(p).map(|m| crate::discover::stat_of_metadata(&m))
    }
}

/// Is `p` a file (following symlinks), locally or in a bucket?
fn is_file(p: &Path) -> bool {
    stat(p).is_ok_and(|s| s.kind == ckpt_io::Kind::File)
}

/// Bytes of the files directly in a folder (DCP / sharded models).
fn dir_size(dir: &Path) -> u64 {
    if ckpt_io::is_remote(dir) {
        return ckpt_io::read_dir(dir)
            .map(|l| {
                l.entries
                    .iter()
                    .filter(|e| e.kind == ckpt_io::Kind::File)
                    .filter_map(|e| e.identity.as_ref().map(|i| i.size))
                    .sum()
            })
            .unwrap_or(0);
    }
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_whose_walk_was_incomplete_keep_their_rows() {
        let roots = vec![
            PathBuf::from("s3://b/runs/"),
            PathBuf::from("s3:/b/ok"),
            PathBuf::from("/data/local"),
        ];
        // Every root, as the cache spells paths, when everything was listed.
        assert_eq!(
            forgettable_roots(&roots, &[]),
            vec!["s3://b/runs", "s3://b/ok", "/data/local"]
        );
        // Not the one whose listing failed or was partial.
        assert_eq!(
            forgettable_roots(&roots, &[PathBuf::from("s3://b/runs/")]),
            vec!["s3://b/ok", "/data/local"]
        );
    }

    #[test]
    fn an_objects_key_size_and_time_come_from_its_listing() {
        let id = ckpt_io::Identity {
            size: 123,
            mtime_ns: 1_700_000_000_000_000_000,
            version: 77,
            etag: Some("\"x\"".into()),
        };
        let c = Candidate {
            path: PathBuf::from("s3://b/run/x.ckpt"),
            kind: Kind::File,
            root: PathBuf::from("s3://b/run"),
            meta: Some(crate::discover::Listed(ckpt_io::Stat {
                kind: ckpt_io::Kind::File,
                identity: id,
            })),
        };
        let st = stat_of(&c, Path::new("/somewhere"));
        assert_eq!(st.error, None);
        assert_eq!(
            st.key,
            Some(FileKey {
                path: "s3://b/run/x.ckpt".into(),
                size: 123,
                mtime_ns: 1_700_000_000_000_000_000,
                inode: 77,
            })
        );
        assert_eq!(st.size, 123);
        assert_eq!(st.modified, "2023-11-14T22:13:20");
        // URLs are absolute as they are (never put under the current folder).
        assert_eq!(
            absolute(Path::new("s3://b/run/x.ckpt"), Path::new("/cwd")),
            Path::new("s3://b/run/x.ckpt")
        );
        let (_, text) = consulted_row(
            &[(
                std::sync::Arc::from(Path::new("s3://b/run/hparams.yaml")),
                5,
            )],
            Path::new("/cwd"),
        )
        .unwrap();
        assert_eq!(text, r#"[["s3://b/run/hparams.yaml",5]]"#);
    }
}
