//! One catalog run: discover, stat, consult the cache, open what changed (in parallel),
//! resolve every entry, mark the best.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Fact;
use crate::cache::{Cache, CacheError, FileKey};
use crate::discover::{Candidate, Kind, WalkOptions, discover};
use crate::par;
use crate::resolve::{
    Configs, FACTS_VERSION, Resolve, checkpoint_facts, facts_from_json, facts_to_json, mark_best,
    modified_of, needs_checkpoint, resolve,
};
use crate::sources::DirCache;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub walk: WalkOptions,
    /// The cache file; `None` for `--no-cache`.
    pub cache: Option<PathBuf>,
}

/// What a run did, for `--verbose` and benchmarks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub candidates: usize,
    pub opened: usize,
    pub cached: usize,
    pub skipped_by_sidecar: usize,
    pub forgotten: usize,
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub entries: Vec<Value>,
    pub warnings: Vec<String>,
    pub stats: Stats,
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

struct Stat {
    key: Option<FileKey>,
    size: u64,
    modified: String,
    need: bool,
    error: Option<String>,
}

pub fn build(roots: &[PathBuf], opts: &Options) -> Result<Catalog, CacheError> {
    let mut cat = Catalog::default();
    let (cands, warnings) = discover(roots, &opts.walk);
    cat.warnings.extend(warnings);
    cat.stats.candidates = cands.len();

    let stats: Vec<Stat> = par::map(&cands, |c| {
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
                let need = needs_checkpoint(c, size, &modified);
                Stat {
                    key: Some(FileKey::from_metadata(&abs.display().to_string(), &m)),
                    size,
                    modified,
                    need,
                    error: None,
                }
            }
            Err(e) => Stat {
                key: None,
                size: 0,
                modified: String::new(),
                need: false,
                error: Some(format!("{}: {e}", c.path.display())),
            },
        }
    });

    // The cache: facts of unchanged checkpoints.
    // A cache written by a newer ckpt is refused; any other trouble (read-only folder, a lock
    // held too long) is a warning and the run goes on uncached.
    let mut cache = match &opts.cache {
        Some(p) => match Cache::open(p) {
            Ok((c, warn)) => {
                cat.warnings.extend(warn);
                Some(c)
            }
            Err(e @ CacheError::NewerSchema { .. }) => return Err(e),
            Err(e) => {
                cat.warnings.push(format!("{e}; running without the cache"));
                None
            }
        },
        None => None,
    };
    let wanted: Vec<usize> = (0..cands.len())
        .filter(|i| stats[*i].need && stats[*i].key.is_some())
        .collect();
    cat.stats.skipped_by_sidecar = stats
        .iter()
        .filter(|s| !s.need && s.error.is_none())
        .count();
    let mut facts: Vec<Option<Vec<Fact>>> = vec![None; cands.len()];
    if let Some(c) = &cache {
        let keys: Vec<FileKey> = wanted
            .iter()
            .filter_map(|i| stats[*i].key.clone())
            .collect();
        let hits = c.get_many(&keys, FACTS_VERSION)?;
        for (i, h) in wanted.iter().zip(hits) {
            if let Some(text) = h
                && let Some(f) = facts_from_json(&text)
            {
                facts[*i] = Some(f);
                cat.stats.cached += 1;
            }
        }
    }
    let misses: Vec<usize> = wanted
        .iter()
        .copied()
        .filter(|i| facts[*i].is_none())
        .collect();
    let fresh: Vec<Vec<Fact>> = par::map(&misses, |i| checkpoint_facts(&cands[*i]));
    cat.stats.opened = misses.len();
    let mut rows: Vec<(FileKey, String)> = Vec::with_capacity(misses.len());
    for (i, f) in misses.iter().zip(fresh) {
        if let Some(k) = &stats[*i].key {
            rows.push((k.clone(), facts_to_json(&f)));
        }
        facts[*i] = Some(f);
    }
    if let Some(c) = &mut cache {
        c.put_many(&rows, FACTS_VERSION)?;
        let abs_roots: Vec<String> = roots
            .iter()
            .map(|r| {
                std::path::absolute(r)
                    .unwrap_or_else(|_| r.clone())
                    .display()
                    .to_string()
            })
            .collect();
        let seen: HashSet<String> = stats
            .iter()
            .filter_map(|s| s.key.as_ref().map(|k| k.path.clone()))
            .collect();
        cat.stats.forgotten = c.forget_missing(&abs_roots, &seen)?;
    }

    // Resolve every entry.
    let dirs = DirCache::default();
    let configs = Configs::default();
    let idx: Vec<usize> = (0..cands.len()).collect();
    let resolved = par::map(&idx, |i| {
        let mut w = Vec::new();
        let r = resolve(
            &Resolve {
                candidate: &cands[*i],
                size: stats[*i].size,
                modified: stats[*i].modified.clone(),
                ckpt_facts: facts[*i].as_deref(),
                dirs: &dirs,
                configs: &configs,
            },
            &mut w,
        );
        (r, w)
    });
    let mut best_names = Vec::with_capacity(resolved.len());
    for (i, (r, w)) in resolved.into_iter().enumerate() {
        cat.warnings.extend(w);
        let mut entry = r.entry;
        if let Some(e) = &stats[i].error {
            entry["error"] = Value::String(e.clone());
        }
        best_names.push(r.best_name);
        cat.entries.push(entry);
    }
    mark_best(&mut cat.entries, &best_names);
    Ok(cat)
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
