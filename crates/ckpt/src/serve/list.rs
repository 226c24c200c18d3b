//! `/api/checkpoints` and `/api/fields`: the catalog listed, filtered, searched, sorted and
//! paged, fast for many clients on a big tree.
//!
//! What a list request needs that does not depend on its page is computed once per snapshot
//! (one build of the catalog) and kept with it, so a snapshot's memos can never describe
//! another build:
//!
//! - the field names every entry answers for (the CLI's unknown-field check walked every entry
//!   per request), and whether any entry has a field outside them;
//! - each entry's search text (`q=`);
//! - the order of every entry by a sort field (indices), per `(field, desc)`, bounded;
//! - the matches of a whole query (filters, words, sort): indices and their size, bounded;
//! - `/api/fields`' answer.
//!
//! The filter language, the sort order and the unknown-field errors are the CLI's own
//! (`ckpt_catalog::query`): the sort is `query::sort` itself, run once per field on copies of
//! the entries and kept as indices. Filtering the full sorted order equals sorting the
//! filtered entries because the sort is stable and its comparison a total order — true when a
//! field's values are all numbers or all not; for a field mixing the two (where comparisons
//! need not be transitive) the matches are sorted on their own, exactly as the CLI does.
//!
//! A memo is filled by the first request that needs it, off the event loop (the blocking
//! pool); requests wanting the same one at once wait for that computation instead of
//! repeating it. A page is then only its entries serialized.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ckpt_catalog::CatalogEntry;
use ckpt_catalog::entry::TOP_FIELDS;
use ckpt_catalog::pretty::{Style, with_shared_parts_memoized};
use ckpt_catalog::query;
use serde_json::Value;

use super::{App, Snapshot, current, error, refresh};

/// Entries per page when `limit` is not given, and the most one page holds: a client cannot
/// make the server serialize the whole catalog in one answer.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Sort orders kept per snapshot (each is 4 bytes an entry).
const MAX_SORTS: usize = 32;
/// Query results kept per snapshot (indices of the matches).
const MAX_RESULTS: usize = 256;
/// Unknown-to-the-name-list fields looked up per snapshot (nested paths, monitor names).
const MAX_LOOKUPS: usize = 1024;
/// Pages up to this many entries are serialized on the event loop; bigger ones on the
/// blocking pool.
const INLINE_PAGE: usize = 200;

/// A bounded map that forgets its oldest keys first.
struct Memo<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Memo<K, V> {
    fn new(cap: usize) -> Self {
        Memo {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn get_or_insert_with(&mut self, k: &K, f: impl FnOnce() -> V) -> V {
        if let Some(v) = self.map.get(k) {
            return v.clone();
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        let v = f();
        self.map.insert(k.clone(), v.clone());
        self.order.push_back(k.clone());
        v
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// What a query is, for its memo: the filters as given (their order decides which unknown
/// field is reported first), the search words lower-cased, the sort.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    filters: Vec<String>,
    words: Vec<String>,
    sort: Option<String>,
    desc: bool,
}

/// Every entry matching a query, in answer order.
pub(super) struct Matches {
    order: Vec<u32>,
    size_bytes: u64,
}

type Outcome = Result<Arc<Matches>, (StatusCode, String)>;

/// Every entry's index in the order of one sort (`None`: see [`Index::sorted`]), made once.
type SortCell = Arc<OnceLock<Option<Arc<[u32]>>>>;

/// A map's leaves: dotted path and kind.
type Leaves = Vec<(String, &'static str)>;

/// The memos of one snapshot (see the module's comment).
pub(super) struct Index {
    known: OnceLock<BTreeSet<String>>,
    lookups: Mutex<Memo<String, bool>>,
    text: OnceLock<Vec<String>>,
    sorts: Mutex<Memo<(String, bool), SortCell>>,
    results: Mutex<Memo<Key, Arc<tokio::sync::OnceCell<Outcome>>>>,
    fields: OnceLock<Bytes>,
    /// Each entry's JSON (compact), made the first time a page holds it: a page is then its
    /// entries' bytes joined.
    json: Vec<OnceLock<Box<[u8]>>>,
}

impl Index {
    pub(super) fn new(entries: usize) -> Index {
        Index {
            known: OnceLock::new(),
            lookups: Mutex::new(Memo::new(MAX_LOOKUPS)),
            text: OnceLock::new(),
            sorts: Mutex::new(Memo::new(MAX_SORTS)),
            results: Mutex::new(Memo::new(MAX_RESULTS)),
            fields: OnceLock::new(),
            json: (0..entries).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Compute what every kind of query needs (the known fields, the search text,
    /// `/api/fields`), on the blocking pool right after a snapshot is made: the first
    /// requests then find them (or wait for them) rather than each paying for them.
    pub(super) fn warm(&self, entries: &[CatalogEntry], sorts: &[(String, bool)]) {
        self.known(entries);
        self.text(entries);
        self.fields.get_or_init(|| Bytes::from(field_list(entries)));
        for (by, desc) in sorts {
            self.sorted(entries, by, *desc);
        }
    }

    /// The sorts most recently made for this snapshot, newest first (at most `n`): a rebuild makes
    /// them again for the next one, so the list a client shows is fast again after a change.
    pub(super) fn recent_sorts(&self, n: usize) -> Vec<(String, bool)> {
        locked(&self.sorts)
            .order
            .iter()
            .rev()
            .take(n)
            .cloned()
            .collect()
    }

    /// Every name a query can use that some entry answers for (`query::field_names` over the
    /// catalog, as the CLI's check collects it).
    fn known(&self, entries: &[CatalogEntry]) -> &BTreeSet<String> {
        self.known.get_or_init(|| {
            let mut known = BTreeSet::new();
            // Entries of the same shape answer for the same names: each shape is asked once.
            let mut shapes = HashSet::new();
            for e in entries {
                if shapes.insert(shape(e)) {
                    query::field_names(e, &mut known);
                }
            }
            known
        })
    }

    /// Does any entry answer for `name`? Names in [`Index::known`] do; others (a nested path,
    /// a monitor's spelling of a metric) are looked up once per snapshot.
    fn any_has(&self, entries: &[CatalogEntry], name: &str) -> bool {
        if self.known(entries).contains(name) {
            return true;
        }
        let name = name.to_owned();
        if let Some(&v) = locked(&self.lookups).map.get(&name) {
            return v;
        }
        let found = entries.iter().any(|e| query::has_field(e, &name));
        locked(&self.lookups).get_or_insert_with(&name, || found)
    }

    /// Each entry's search text: its path, experiment, run, task and model architecture,
    /// lower-cased, separated by a character no search word holds.
    fn text(&self, entries: &[CatalogEntry]) -> &[String] {
        self.text.get_or_init(|| {
            entries
                .iter()
                .map(|e| {
                    let arch = match e.model.get("architecture") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(v) => v.to_string(),
                    };
                    [
                        e.path.as_str(),
                        e.experiment.as_deref().unwrap_or(""),
                        e.run.as_deref().unwrap_or(""),
                        e.task.as_deref().unwrap_or(""),
                        arch.as_str(),
                    ]
                    .join("\n")
                    .to_lowercase()
                })
                .collect()
        })
    }

    /// Every entry's index in `query::sort`'s order by `by`; `None` when the field's values
    /// mix numbers and text (see the module's comment).
    fn sorted(&self, entries: &[CatalogEntry], by: &str, desc: bool) -> Option<Arc<[u32]>> {
        let cell = locked(&self.sorts)
            .get_or_insert_with(&(by.to_owned(), desc), || Arc::new(OnceLock::new()));
        cell.get_or_init(|| {
            let (mut numbers, mut texts) = (false, false);
            for e in entries {
                match query::field(e, by) {
                    Some(v) if v.as_f64().is_some() => numbers = true,
                    Some(_) => texts = true,
                    None => {}
                }
            }
            if numbers && texts {
                return None;
            }
            Some(sort_indices(entries, 0..index_len(entries), by, desc).into())
        })
        .clone()
    }
}

/// What decides the names `query::field_names` gives for an entry, as a key: which top-level
/// fields have a value, the metrics' names, and the keys of the model (one level into its
/// objects), hyperparameters and data with whether each value is null. Values matter to it
/// only through being null (and, in the model, being an object).
fn shape(e: &CatalogEntry) -> String {
    const NEXT: char = '\u{1}';
    const PART: char = '\u{0}';
    let flag = |v: &Value| if v.is_null() { '\u{2}' } else { '\u{3}' };
    let mut s = String::with_capacity(512);
    for some in [
        e.experiment.is_some(),
        e.run.is_some(),
        e.task.is_some(),
        e.format.is_some(),
        e.epoch.is_some(),
        e.global_step.is_some(),
        e.training_phase.is_some(),
        e.monitor.is_some(),
        e.mode.is_some(),
        e.save_top_k.is_some(),
        e.save_last.is_some(),
        e.params.is_some(),
        e.tensors.is_some(),
        e.security.is_some(),
        e.lightning_version.is_some(),
        e.error.is_some(),
    ] {
        s.push(if some { '1' } else { '0' });
    }
    s.push(PART);
    for k in e.metrics.keys() {
        s.push_str(k);
        s.push(NEXT);
    }
    s.push(PART);
    for (k, v) in e.model.iter() {
        s.push_str(k);
        s.push(flag(v));
        if let Some(m) = v.as_object() {
            s.push('{');
            for (kk, vv) in m {
                s.push_str(kk);
                s.push(flag(vv));
            }
            s.push('}');
        }
        s.push(NEXT);
    }
    for map in [&e.hparams, &e.data] {
        s.push(PART);
        for (k, v) in map.iter() {
            s.push_str(k);
            s.push(flag(v));
            s.push(NEXT);
        }
    }
    s
}

fn index_len(entries: &[CatalogEntry]) -> u32 {
    u32::try_from(entries.len()).unwrap_or(u32::MAX)
}

/// `which` (indices into `entries`) in the order `query::sort` puts their entries: the CLI's
/// sort itself, on copies, mapped back to indices by path (a stable sort keeps entries of the
/// same path in their order).
fn sort_indices(
    entries: &[CatalogEntry],
    which: impl Iterator<Item = u32>,
    by: &str,
    desc: bool,
) -> Vec<u32> {
    let which: Vec<u32> = which.collect();
    let mut by_path: HashMap<&str, VecDeque<u32>> = HashMap::with_capacity(which.len());
    let mut copies = Vec::with_capacity(which.len());
    // `conflicts` is the one part of an entry that is neither small nor shared; a sort by
    // anything else never reads it.
    let keep_conflicts = by == "conflicts" || by.starts_with("conflicts.");
    for &i in &which {
        let e = &entries[i as usize];
        by_path.entry(e.path.as_str()).or_default().push_back(i);
        copies.push(if keep_conflicts {
            e.clone()
        } else {
            without_conflicts(e)
        });
    }
    query::sort(&mut copies, by, desc);
    copies
        .iter()
        .filter_map(|e| {
            by_path
                .get_mut(e.path.as_str())
                .and_then(VecDeque::pop_front)
        })
        .collect()
}

/// A copy of `e` but its conflicts (every field listed: a new field of the entry must be
/// thought about here).
fn without_conflicts(e: &CatalogEntry) -> CatalogEntry {
    let CatalogEntry {
        path,
        experiment,
        run,
        task,
        format,
        epoch,
        global_step,
        training_phase,
        metrics,
        monitor,
        mode,
        save_top_k,
        save_last,
        model,
        hparams,
        data,
        params,
        tensors,
        size_bytes,
        modified,
        is_best,
        is_last,
        security,
        lightning_version,
        sources,
        conflicts: _,
        error,
    } = e;
    CatalogEntry {
        path: path.clone(),
        experiment: experiment.clone(),
        run: run.clone(),
        task: task.clone(),
        format: format.clone(),
        epoch: *epoch,
        global_step: *global_step,
        training_phase: training_phase.clone(),
        metrics: metrics.clone(),
        monitor: monitor.clone(),
        mode: mode.clone(),
        save_top_k: *save_top_k,
        save_last: *save_last,
        model: model.clone(),
        hparams: hparams.clone(),
        data: data.clone(),
        params: *params,
        tensors: *tensors,
        size_bytes: *size_bytes,
        modified: modified.clone(),
        is_best: *is_best,
        is_last: *is_last,
        security: security.clone(),
        lightning_version: lightning_version.clone(),
        sources: sources.clone(),
        conflicts: Vec::new(),
        error: error.clone(),
    }
}

/// The parameters of `/api/checkpoints`, parsed by hand: `filter` repeats, and an unknown
/// parameter is an error rather than silently ignored (a typo would return everything).
struct ListQuery {
    offset: usize,
    limit: usize,
    filters: Vec<String>,
    sort: Option<String>,
    desc: bool,
    q: String,
    refresh: bool,
}

fn parse_list(pairs: Vec<(String, String)>) -> Result<ListQuery, String> {
    let mut q = ListQuery {
        offset: 0,
        limit: DEFAULT_LIMIT,
        filters: Vec::new(),
        sort: None,
        desc: false,
        q: String::new(),
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
            "q" => {
                if !q.q.is_empty() {
                    q.q.push(' ');
                }
                q.q.push_str(&v);
            }
            "refresh" => q.refresh = flag(&k, &v)?,
            "token" => {}
            other => {
                return Err(format!(
                    "{other:?}: unknown parameter (offset, limit, filter, sort, desc, q, refresh)"
                ));
            }
        }
    }
    Ok(q)
}

/// Reject every parameter but the access token (`/api/fields` and `/api/events` take none):
/// the 400 to answer, if any.
pub(super) fn no_parameters(
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Option<Response> {
    let pairs = match pairs {
        Ok(Query(p)) => p,
        Err(e) => return Some(error(StatusCode::BAD_REQUEST, e.body_text())),
    };
    pairs.iter().find(|(k, _)| k != "token").map(|(k, _)| {
        error(
            StatusCode::BAD_REQUEST,
            format!("{k:?}: unknown parameter (this endpoint takes none)"),
        )
    })
}

pub(super) async fn checkpoints(
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
    if let Err(e) = q
        .filters
        .iter()
        .try_for_each(|f| query::parse_filter(f).map(drop))
    {
        return error(StatusCode::BAD_REQUEST, e);
    }
    if q.refresh
        && let Err(e) = refresh(&app).await
    {
        return error(StatusCode::INTERNAL_SERVER_ERROR, crate::one_line(&e));
    }
    let snap = current(&app);
    let key = Key {
        desc: q.desc && q.sort.is_some(),
        filters: q.filters,
        words: q.q.split_whitespace().map(str::to_lowercase).collect(),
        sort: q.sort,
    };
    let matches = match matches(&snap, key).await {
        Ok(m) => m,
        Err((status, msg)) => return error(status, msg),
    };
    let total = matches.order.len();
    let start = q.offset.min(total);
    let end = start.saturating_add(q.limit).min(total);
    if end - start <= INLINE_PAGE {
        return page(&snap, &matches, start, end);
    }
    let s = snap.clone();
    match tokio::task::spawn_blocking(move || page(&s, &matches, start, end)).await {
        Ok(r) => r,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("a page: {e}")),
    }
}

/// The matches of `key` in `snap`: from its memo, else computed once on the blocking pool
/// (concurrent requests for the same key wait for that one computation).
async fn matches(snap: &Arc<Snapshot>, key: Key) -> Outcome {
    let cell = locked(&snap.index.results)
        .get_or_insert_with(&key, || Arc::new(tokio::sync::OnceCell::new()));
    cell.get_or_init(|| async {
        let s = snap.clone();
        match tokio::task::spawn_blocking(move || compute(&s, &key)).await {
            Ok(r) => r,
            Err(e) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("listing the catalog: {e}"),
            )),
        }
    })
    .await
    .clone()
}

/// Filter, search and sort, as `ckpt catalog --filter … --sort …` would (plus the words).
fn compute(snap: &Snapshot, key: &Key) -> Outcome {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let filters = key
        .filters
        .iter()
        .map(|f| query::parse_filter(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    // Every field a query names must exist in some entry (the CLI's check and message).
    let mut queried: Vec<(&str, &str)> = filters
        .iter()
        .map(|f| ("--filter", f.field.as_str()))
        .collect();
    queried.extend(key.sort.as_deref().map(|s| ("--sort", s)));
    let entries = &snap.entries;
    if !queried.is_empty() {
        let known = snap.index.known(entries);
        for (option, name) in queried {
            let found = snap.index.any_has(entries, name);
            if let Some(msg) = query::unknown_field(option, name, entries.len(), known, found) {
                return Err(bad(msg));
            }
        }
    }
    let text = if key.words.is_empty() {
        &[][..]
    } else {
        snap.index.text(entries)
    };
    let keep = |i: u32| {
        let e = &entries[i as usize];
        filters.iter().all(|f| f.matches(e))
            && (key.words.is_empty()
                || key
                    .words
                    .iter()
                    .all(|w| text[i as usize].contains(w.as_str())))
    };
    let order: Vec<u32> = match &key.sort {
        None => (0..index_len(entries)).filter(|&i| keep(i)).collect(),
        Some(by) => match snap.index.sorted(entries, by, key.desc) {
            Some(all) => all.iter().copied().filter(|&i| keep(i)).collect(),
            None => {
                let kept = (0..index_len(entries)).filter(|&i| keep(i));
                sort_indices(entries, kept, by, key.desc)
            }
        },
    };
    let size_bytes = order.iter().fold(0u64, |acc, &i| {
        acc.saturating_add(entries[i as usize].size_bytes)
    });
    Ok(Arc::new(Matches { order, size_bytes }))
}

/// The answer: the page's entries (exactly the catalog's JSON, compact) and the query's
/// totals; the same bytes serde_json writes for the whole object at once.
fn page(snap: &Snapshot, m: &Matches, start: usize, end: usize) -> Response {
    let which = &m.order[start..end];
    // The parts a run's checkpoints share (model, hparams …) are rendered once per page.
    let made = with_shared_parts_memoized(Style::Compact, || {
        which.iter().try_for_each(|&i| {
            let i = i as usize;
            if snap.index.json[i].get().is_none() {
                let bytes = serde_json::to_vec(&snap.entries[i])?;
                let _ = snap.index.json[i].set(bytes.into_boxed_slice());
            }
            Ok::<(), serde_json::Error>(())
        })
    });
    if let Err(e) = made {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("a page: {e}"));
    }
    let size: usize = which
        .iter()
        .map(|&i| snap.index.json[i as usize].get().map_or(0, |b| b.len() + 1))
        .sum();
    let mut body = Vec::with_capacity(size + 128);
    body.extend_from_slice(b"{\"checkpoints\":[");
    for (n, &i) in which.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        if let Some(b) = snap.index.json[i as usize].get() {
            body.extend_from_slice(b);
        }
    }
    body.extend_from_slice(
        format!(
            "],\"total\":{},\"size_bytes\":{},\"generation\":{}}}",
            m.order.len(),
            m.size_bytes,
            snap.generation
        )
        .as_bytes(),
    );
    json_bytes(Bytes::from(body))
}

pub(super) fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /api/fields`: every field a filter, a sort or a column can name, with the JSON kind of
/// its values and how many entries have it; computed once per snapshot.
pub(super) async fn fields(
    State(app): State<Arc<App>>,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    if let Some(r) = no_parameters(pairs) {
        return r;
    }
    let snap = current(&app);
    if let Some(b) = snap.index.fields.get() {
        return json_bytes(b.clone());
    }
    let s = snap.clone();
    match tokio::task::spawn_blocking(move || {
        s.index
            .fields
            .get_or_init(|| Bytes::from(field_list(&s.entries)))
            .clone()
    })
    .await
    {
        Ok(b) => json_bytes(b),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("fields: {e}")),
    }
}

/// The JSON kind of a value, as `/api/fields` names it.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// How many entries have a field, and the kind of its values (`mixed` when they differ).
#[derive(Default)]
struct Tally {
    count: u64,
    kind: Option<&'static str>,
}

impl Tally {
    fn see(&mut self, k: &'static str, n: u64) {
        self.count = self.count.saturating_add(n);
        self.kind = match self.kind {
            None => Some(k),
            Some(old) if old == k => Some(old),
            Some(_) => Some("mixed"),
        };
    }
}

/// The leaves of a map: `prefix.key`, and inside a non-empty object `prefix.key.inner…`
/// (how `CatalogEntry::get` looks them up). Nulls are no value.
fn leaves(prefix: &str, map: &BTreeMap<String, Value>, out: &mut Leaves) {
    fn walk(path: String, v: &Value, out: &mut Leaves) {
        match v {
            Value::Null => {}
            Value::Object(m) if !m.is_empty() => {
                for (k, inner) in m {
                    walk(format!("{path}.{k}"), inner, out);
                }
            }
            other => out.push((path, kind(other))),
        }
    }
    for (k, v) in map {
        walk(format!("{prefix}.{k}"), v, out);
    }
}

fn field_list(entries: &[CatalogEntry]) -> Vec<u8> {
    // Containers are listed by their leaves; `sources` and `conflicts` describe fields.
    const CONTAINERS: &[&str] = &[
        "metrics",
        "model",
        "hparams",
        "data",
        "sources",
        "conflicts",
    ];
    let top: Vec<&str> = TOP_FIELDS
        .iter()
        .copied()
        .filter(|f| !CONTAINERS.contains(f))
        .collect();
    let mut top_tally: Vec<Tally> = top.iter().map(|_| Tally::default()).collect();
    let mut nested: BTreeMap<String, Tally> = BTreeMap::new();
    // The maps a run's checkpoints share are walked once each, then counted per entry.
    let mut shared: HashMap<(&str, usize), (Leaves, u64)> = HashMap::new();
    for e in entries {
        for (name, t) in top.iter().zip(&mut top_tally) {
            if let Some(v) = e.get(name) {
                t.see(kind(&v), 1);
            }
        }
        for k in e.metrics.keys() {
            nested
                .entry(format!("metrics.{k}"))
                .or_default()
                .see("number", 1);
        }
        for (prefix, map) in [
            ("model", &e.model),
            ("hparams", &e.hparams),
            ("data", &e.data),
        ] {
            let key = (prefix, Arc::as_ptr(map) as usize);
            let slot = shared.entry(key).or_insert_with(|| {
                let mut out = Vec::new();
                leaves(prefix, map, &mut out);
                (out, 0)
            });
            slot.1 = slot.1.saturating_add(1);
        }
    }
    for (leaves, n) in shared.into_values() {
        for (path, k) in leaves {
            nested.entry(path).or_default().see(k, n);
        }
    }
    let row = |name: &str, t: &Tally| serde_json::json!({"name": name, "kind": t.kind.unwrap_or("mixed"), "count": t.count});
    let mut fields: Vec<Value> = top
        .iter()
        .zip(&top_tally)
        .filter(|(_, t)| t.count > 0)
        .map(|(n, t)| row(n, t))
        .collect();
    // metrics.*, then model.*, hparams.*, data.* (each by name).
    for group in ["metrics.", "model.", "hparams.", "data."] {
        fields.extend(
            nested
                .iter()
                .filter(|(n, _)| n.starts_with(group))
                .map(|(n, t)| row(n, t)),
        );
    }
    serde_json::to_vec(&serde_json::json!({ "fields": fields })).unwrap_or_default()
}
