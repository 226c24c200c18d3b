//! One catalog run: discover, stat, consult the cache, open what changed (in parallel),
//! resolve every entry, mark the best.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ckpt_meta::sources::DirCache;
use ckpt_torch::bug::Panic;

use crate::Fact;
use crate::cache::{Cache, CacheError, FileKey};
use crate::discover::{Candidate, Kind, WalkOptions, discover_with_listing};
use crate::entry::CatalogEntry;
use crate::par;
use crate::resolve::{
    Resolve, Resolved, bug_entry, checkpoint_facts, facts_from_json, facts_to_json, facts_version,
    mark_best, modified_of, resolve,
};

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
}

/// The file whose metadata keys a candidate in the cache.
fn key_file(c: &Candidate) -> PathBuf {
    match c.kind {
        Kind::File => c.path.clone(),
        Kind::Dcp => c.path.join(".metadata"),
        Kind::HfSharded => {
            let st = c.path.join("model.safetensors.index.json");
            if st.is_file() {
                st
            } else {
                c.path.join("pytorch_model.bin.index.json")
            }
        }
    }
}

/// Every other file a candidate's facts are read from: a DCP folder's shards (its step and
/// epoch are read from them), a sharded folder's `config.json` and every shard its index
/// names. The cache key covers them all, so changing any of them re-reads the facts.
fn other_inputs(c: &Candidate) -> Vec<PathBuf> {
    match c.kind {
        Kind::File => Vec::new(),
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
    // FNV-1a: a stable hash, no dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&key.inode.to_le_bytes());
    for p in inputs {
        eat(p.as_os_str().as_encoded_bytes());
        match std::fs::metadata(p) {
            Ok(m) => {
                let k = FileKey::from_metadata("", &m);
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

/// The cache key, size and mtime of one candidate.
fn stat_of(c: &Candidate) -> Stat {
    let kf = key_file(c);
    match std::fs::metadata(&kf) {
        Ok(m) => {
            let abs = std::path::absolute(&kf).unwrap_or_else(|_| kf.clone());
            let modified = modified_of(&m);
            let size = if c.kind == Kind::File {
                m.len()
            } else {
                dir_size(&c.path)
            };
            let key = FileKey::from_metadata(&abs.display().to_string(), &m);
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
    let (cands, warnings, seen) = discover_with_listing(roots, &opts.walk);
    cat.warnings.extend(warnings);
    cat.stats.candidates = cands.len();

    // The cache is opened (its integrity checked: a read of the whole file) while the
    // checkpoints are stat-ed: neither waits for the other.
    let (stats, opened) = std::thread::scope(|s| {
        let opening = opts.cache.as_ref().map(|p| s.spawn(|| Cache::open(p)));
        let stats: Vec<Stat> = par::map(&cands, stat_of);
        let opened = opening.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        (stats, opened)
    });

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
    // A chunk's rows read from files, waiting to be written to the cache.
    let mut pending_rows: Vec<(FileKey, String)> = Vec::new();
    let mut warned: HashSet<String> = HashSet::new();
    for chunk in &chunks {
        let chunk = chunk.as_slice();
        let mut chunk_entries: Vec<CatalogEntry> = Vec::with_capacity(chunk.len());
        let mut chunk_best: Vec<Option<String>> = Vec::with_capacity(chunk.len());
        // The cached rows of the chunk, as text: each is parsed on the thread that resolves
        // it, right before, and dropped right after, so a thread's working set is one
        // checkpoint's facts (parsing a whole chunk up front turned over tens of megabytes
        // of fresh heap pages per chunk).
        let mut texts: Vec<Option<String>> = vec![None; chunk.len()];
        if let Some(c) = &cache {
            let (at, keys): (Vec<usize>, Vec<FileKey>) = chunk
                .iter()
                .enumerate()
                .filter_map(|(n, i)| stats[*i].key.clone().map(|k| (n, k)))
                .unzip();
            let hits = c.get_many(&keys, facts_version())?;
            for (n, h) in at.into_iter().zip(hits) {
                texts[n] = h;
            }
        }
        let items: Vec<(usize, std::sync::Mutex<Option<String>>)> = chunk
            .iter()
            .zip(texts)
            .map(|(i, t)| (*i, std::sync::Mutex::new(t)))
            .collect();
        // Read (when not cached) and resolve each checkpoint in one pass on all cores, while
        // this thread hands the previous chunk's entries on (writing them is serial).
        let (done_chunk, put): (Vec<Done>, Result<(), CacheError>) = std::thread::scope(|s| {
            let work = s.spawn(|| {
                par::map(&items, |(i, slot)| {
                    let text = slot
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take();
                    read_and_resolve(&cands[*i], &stats[*i], text, &dirs, &seen)
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
        put?;
        drop(items);
        let mut rows: Vec<(FileKey, String)> = Vec::new();
        for (i, d) in chunk.iter().zip(done_chunk) {
            if d.cached {
                cat.stats.cached += 1;
            } else if stats[*i].key.is_some() {
                cat.stats.opened += 1;
            }
            if let Some(row) = d.row {
                rows.push(row);
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
    put_rows(&mut cache, &mut pending_rows)?;
    emit(pending.take());
    if let Some(c) = &mut cache {
        let abs_roots: Vec<String> = roots
            .iter()
            .map(|r| {
                std::path::absolute(r)
                    .unwrap_or_else(|_| r.clone())
                    .display()
                    .to_string()
            })
            .collect();
        let keys: HashSet<String> = stats
            .iter()
            .filter_map(|s| s.key.as_ref().map(|k| k.path.clone()))
            .collect();
        cat.stats.forgotten = c.forget_missing(&abs_roots, &keys)?;
    }
    Ok(cat)
}

/// Write the rows waiting for the cache (none without a cache), leaving none waiting.
fn put_rows(
    cache: &mut Option<Cache>,
    rows: &mut Vec<(FileKey, String)>,
) -> Result<(), CacheError> {
    let rows = std::mem::take(rows);
    match cache {
        Some(c) if !rows.is_empty() => c.put_many(&rows, facts_version()),
        _ => Ok(()),
    }
}

/// One checkpoint of a chunk, read (or taken from its cache row) and resolved.
struct Done {
    /// The facts came from the cache.
    cached: bool,
    /// A row to write to the cache (facts read from the file).
    row: Option<(FileKey, String)>,
    /// Reading the checkpoint's facts panicked: a bug in ckpt.
    read_bug: Option<Panic>,
    resolved: Result<(Resolved, Vec<String>), Panic>,
}

/// The checkpoint's facts — parsed from its cache row, or read from the file when there is
/// no row (or the row does not parse) — resolved into its entry. A panic while reading is a
/// bug in ckpt: the checkpoint gets an error (never cached, so a fixed ckpt reads it again),
/// the others go on.
fn read_and_resolve(
    cand: &Candidate,
    stat: &Stat,
    text: Option<String>,
    dirs: &DirCache,
    seen: &crate::discover::Seen,
) -> Done {
    let mut row = None;
    let mut read_bug = None;
    let mut facts = text.as_deref().and_then(facts_from_json);
    drop(text);
    let cached = facts.is_some();
    if !cached && let Some(k) = &stat.key {
        facts = Some(match ckpt_torch::bug::catch(|| checkpoint_facts(cand)) {
            Ok(f) => {
                row = Some((k.clone(), facts_to_json(&f)));
                f
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
        });
    }
    let resolved = ckpt_torch::bug::catch(|| {
        let mut w = Vec::new();
        let r = resolve(
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
        (r, w)
    });
    Done {
        cached,
        row,
        read_bug,
        resolved,
    }
}

/// Bytes of the files directly in a folder (DCP / sharded models).
fn dir_size(dir: &Path) -> u64 {
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
