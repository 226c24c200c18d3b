//! Resolving one discovered checkpoint: its facts — the checkpoint's own (read once and
//! cached), its sidecar, the places around it, `stat` — ranked by the metadata crate's one
//! engine into a [`CatalogEntry`]. The sidecar writer calls the same readers and the same
//! engine, so writing a sidecar never changes what the catalog says.

use std::path::Path;

use ckpt_meta::engine::resolve as rank;
use ckpt_meta::fact::{Fact, Field, Source};
use ckpt_meta::sources::names::{iso_time, names_best, names_last};
use ckpt_meta::sources::{self, Around, DirCache};
use serde_json::json;

pub use ckpt_meta::fact::{facts_from_json, facts_to_json};

use crate::discover::{Candidate, Kind, Seen};
use crate::entry::CatalogEntry;

/// What a cache row's facts were read by: a hash of the code of every crate that reads facts
/// (computed by `build.rs`), so a change to what is read cannot keep serving old rows.
pub fn facts_version() -> i64 {
    env!("CKPT_FACTS_VERSION").parse().unwrap_or(0)
}

/// What a cached resolved entry was made by: [`facts_version`]'s code plus this crate's own
/// (discovery, resolution, the entry), hashed by `build.rs`.
pub fn entry_version() -> i64 {
    env!("CKPT_ENTRY_VERSION").parse().unwrap_or(0)
}

/// The checkpoint's own facts (what the cache stores: reading them costs opening the file).
pub fn checkpoint_facts(c: &Candidate) -> Vec<Fact> {
    checkpoint_facts_read(c).facts
}

/// [`checkpoint_facts`], an object opened with the identity its listing gave, and whether the
/// read failed transiently (then nothing of it is cached).
pub fn checkpoint_facts_read(c: &Candidate) -> sources::checkpoint::FactsRead {
    let known = c.meta.as_ref().map(crate::discover::Listed::identity);
    sources::checkpoint::checkpoint_facts_read(&c.path, c.kind, known)
}

/// Inputs to resolving one candidate.
pub struct Resolve<'a> {
    pub candidate: &'a Candidate,
    pub size: u64,
    pub modified: String,
    /// Cached or freshly read checkpoint facts (moved in: resolving consumes them).
    pub ckpt_facts: Vec<Fact>,
    pub dirs: &'a DirCache,
    pub seen: &'a Seen,
}

/// A resolved entry and the file names its ModelCheckpoint callback calls best (for
/// [`mark_best`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolved {
    pub entry: CatalogEntry,
    pub best_name: Option<String>,
}

/// One resolution as the cache keeps it: the entry before the marks made across files, and
/// the warnings resolving it gave (said again when the entry is served from the cache).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    pub resolved: Resolved,
    pub warnings: Vec<String>,
}

/// The sidecar beside a checkpoint as a source: an unreadable, invalid or stale one is a
/// warning and says nothing.
fn sidecar_facts(
    r: &Resolve<'_>,
    pickle_sha: Option<&str>,
    warnings: &mut Vec<String>,
) -> Vec<Fact> {
    let c = r.candidate;
    if c.kind != Kind::File {
        return Vec::new();
    }
    let Some(p) = [
        ckpt_meta::sidecar::yaml_path(&c.path),
        ckpt_meta::sidecar::json_path(&c.path),
    ]
    .into_iter()
    .find(|p| r.seen.is_file(p)) else {
        return Vec::new();
    };
    let sc = match ckpt_meta::sidecar::Sidecar::read(&p) {
        Ok(sc) => sc.value,
        Err(err) => {
            warnings.push(format!("sidecar skipped: {err}"));
            return Vec::new();
        }
    };
    // A partial sidecar (no fingerprint, missing sections) still says what it says; one with
    // wrong types or a newer schema says nothing we can trust.
    if let Some(bad) = ckpt_meta::schema::validate(&sc)
        .iter()
        .find(|p| p.message != "missing")
    {
        warnings.push(format!("{}: sidecar skipped: {bad}", c.path.display()));
        return Vec::new();
    }
    if sources::sidecar::is_fresh(&sc, r.size, &r.modified, pickle_sha) == Some(false) {
        warnings.push(format!(
            "{}: stale sidecar (it no longer matches the checkpoint), skipped",
            c.path.display()
        ));
        return Vec::new();
    }
    sources::sidecar::sidecar_facts(&sc)
}

/// Every fact known about one candidate, unranked.
pub fn gather(r: &mut Resolve<'_>, warnings: &mut Vec<String>) -> Vec<Fact> {
    let c = r.candidate;
    let mut facts: Vec<Fact> = std::mem::take(&mut r.ckpt_facts);
    let pickle_sha = facts
        .iter()
        .find(|f| f.field == Field::PickleSha256)
        .and_then(|f| f.value.as_str())
        .map(str::to_owned);
    facts.extend(sidecar_facts(r, pickle_sha.as_deref(), warnings));
    let is_file = |p: &Path| r.seen.is_file(p);
    facts.extend(sources::around(
        &c.path,
        c.kind,
        &Around {
            dirs: r.dirs,
            root: &c.root,
            is_file: &is_file,
        },
    ));
    facts.push(Fact::new(
        Field::SizeBytes,
        json!(r.size),
        Source::Filesystem,
    ));
    facts.push(Fact::new(
        Field::Modified,
        json!(r.modified),
        Source::Filesystem,
    ));
    facts
}

/// Resolve one candidate into its entry; warnings (a stale sidecar, a config over a budget)
/// are appended.
pub fn resolve(r: Resolve<'_>, warnings: &mut Vec<String>) -> Resolved {
    resolve_recorded(r, warnings).0
}

/// [`resolve`], also returning every path the resolution consulted
/// ([`ckpt_meta::consulted`]): a cached entry is valid while they are unchanged.
pub fn resolve_recorded(
    mut r: Resolve<'_>,
    warnings: &mut Vec<String>,
) -> (Resolved, Vec<ckpt_meta::consulted::Consult>) {
    let c = r.candidate;
    let (facts, consulted) = ckpt_meta::consulted::record(|| gather(&mut r, warnings));
    let res = rank(facts);
    for w in &res.warnings {
        if !warnings.contains(w) {
            warnings.push(w.clone());
        }
    }
    let best_name = res.str(&Field::BestName).map(str::to_owned);
    let last_name = res.str(&Field::LastName).map(str::to_owned);
    let mut e = CatalogEntry::from_resolution(c.path.display().to_string(), res);
    let stem = c
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = e.file_name().to_owned();
    e.is_last = c.kind == Kind::File && (names_last(&stem) || last_name.as_deref() == Some(&file));
    if c.kind == Kind::File && names_best(&stem) {
        e.is_best = true;
    }
    (
        Resolved {
            entry: e,
            best_name,
        },
        consulted,
    )
}

/// Mark each folder's best checkpoint: the file its newest checkpoint's ModelCheckpoint
/// callback names as `best_model_path` (paths inside checkpoints are stale, so by name).
pub fn mark_best(entries: &mut [CatalogEntry], best_names: &[Option<String>]) {
    use std::collections::HashMap;
    let mut newest: HashMap<&str, ((i64, i64), usize)> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if best_names.get(i).is_none_or(Option::is_none) {
            continue;
        }
        let key = (e.global_step.unwrap_or(-1), e.epoch.unwrap_or(-1));
        let cur = newest.entry(e.folder()).or_insert((key, i));
        if key > cur.0 {
            *cur = (key, i);
        }
    }
    let best: HashMap<String, String> = newest
        .into_iter()
        .filter_map(|(dir, (_, i))| {
            best_names
                .get(i)
                .cloned()
                .flatten()
                .map(|n| (dir.to_owned(), n))
        })
        .collect();
    for e in entries.iter_mut() {
        if best.get(e.folder()).is_some_and(|b| b == e.file_name()) {
            e.is_best = true;
        }
    }
}

/// The metric an entry is ranked by: its own name first, then its short name
/// (`val/hmean` → `hmean`).
pub fn metric_value(entry: &CatalogEntry, name: &str) -> Option<f64> {
    entry.metric(name)
}

/// `modified` as the entry records it (a local file's mtime, an object's Last-Modified).
pub fn modified_of(stat: &ckpt_io::Stat) -> String {
    ckpt_meta::sources::names::mtime_of(stat.identity.mtime_ns)
        .map(iso_time)
        .unwrap_or_default()
}

/// The JSON of an entry whose resolution panicked: its path and the error.
pub fn bug_entry(path: &Path, message: String) -> CatalogEntry {
    CatalogEntry {
        path: path.display().to_string(),
        error: Some(message),
        ..CatalogEntry::default()
    }
}
