//! The findings of one decoded pickle: every global (or extension code) it names, with the
//! offset of its first reference and how the pickle uses it.

use std::collections::HashMap;

use ckpt_pickle::{Pickle, Value, ValueId};

use super::policy::classify_global;
use super::report::{Finding, ScanReport, Usage, Verdict};

const CALLED: u8 = 2;
const ARGUMENT: u8 = 1;
const REFERENCED: u8 = 0;

fn usage_str(rank: u8) -> Usage {
    match rank {
        CALLED => Usage::Called,
        ARGUMENT => Usage::Argument,
        _ => Usage::Referenced,
    }
}

/// Scan one decoded pickle. Each distinct name is reported once, with the offset of its first
/// reference and its strongest usage ("called" > "argument" > "referenced"); findings are in
/// stream order.
pub fn scan_pickle(p: &Pickle, entry: &str) -> ScanReport {
    let usage = usages(p);
    let rank_of = |name: &str| usage.get(name).copied().unwrap_or(REFERENCED);

    let mut found = Found {
        entry,
        rank_of: &rank_of,
        seen: HashMap::new(),
        findings: Vec::new(),
        by_slot: vec![None; p.global_names()],
    };
    for site in &p.globals {
        found.global(p, site.id, Some(site.offset));
    }
    for &(code, offset) in &p.extensions {
        found.add(extension_name(code), Some(offset), &|| {
            classify_extension(code)
        });
    }
    // Globals present in the arena but not recorded as sites (hand-built arenas): still report.
    // (A recorded site was added above; adding it again without an offset changes nothing.)
    // The decoder records sites in id order, as `global_values` yields them: walked side by
    // side, nothing is allocated; sites in another order (built by hand) are looked up.
    let sorted = p.globals.windows(2).all(|w| w[0].id <= w[1].id);
    let mut is_site = Vec::new();
    if !sorted {
        is_site = vec![false; p.len()];
        for site in &p.globals {
            if let Some(b) = is_site.get_mut(site.id.index()) {
                *b = true;
            }
        }
    }
    let mut sites = p.globals.iter().map(|s| s.id).peekable();
    for (id, _) in p.global_values() {
        let site = if sorted {
            while sites.next_if(|s| *s < id).is_some() {}
            sites.peek() == Some(&id)
        } else {
            is_site.get(id.index()).copied().unwrap_or(false)
        };
        if !site {
            found.global(p, id, None);
        }
    }

    let mut findings = found.findings;
    findings.sort_by_key(|f| f.offset);
    ScanReport { findings }
}

/// The findings gathered so far, one per distinct name.
struct Found<'a> {
    entry: &'a str,
    rank_of: &'a dyn Fn(&str) -> u8,
    /// name -> index in `findings`
    seen: HashMap<String, usize>,
    findings: Vec<Finding>,
    /// The finding of each slot of the pickle's table of distinct global names: a name a
    /// checkpoint repeats for every tensor is formatted and looked up once, not per use.
    by_slot: Vec<Option<usize>>,
}

impl Found<'_> {
    /// Note a use of the global value `id` at `offset` (None: no recorded site).
    fn global(&mut self, p: &Pickle, id: ValueId, offset: Option<u64>) {
        let Value::Global(g) = p.get(id) else {
            return;
        };
        let slot = p.global_slot(id);
        if let Some(i) = slot.and_then(|s| self.by_slot.get(s).copied().flatten()) {
            self.lower_offset(i, offset);
            return;
        }
        let name = format!("{}.{}", g.module, g.name);
        let i = self.add(name, offset, &|| classify_global(&g.module, &g.name));
        if let Some(b) = slot.and_then(|s| self.by_slot.get_mut(s)) {
            *b = Some(i);
        }
    }

    fn lower_offset(&mut self, i: usize, offset: Option<u64>) {
        if let (Some(f), Some(offset)) = (self.findings.get_mut(i), offset) {
            f.offset = f.offset.min(offset);
        }
    }

    /// The finding of `name` (added when new), its index returned. `offset` is None for a
    /// value with no recorded site (hand-built arenas).
    fn add(
        &mut self,
        name: String,
        offset: Option<u64>,
        classify: &dyn Fn() -> (Verdict, String),
    ) -> usize {
        if let Some(&i) = self.seen.get(&name) {
            self.lower_offset(i, offset);
            return i;
        }
        let (class, reason) = classify();
        let i = self.findings.len();
        self.findings.push(Finding {
            name: escape_controls(&name),
            class,
            offset: offset.unwrap_or(0),
            entry: self.entry.to_string(),
            usage: usage_str((self.rank_of)(&name)),
            reason,
        });
        self.seen.insert(name, i);
        i
    }
}

fn extension_name(code: u32) -> String {
    format!("<extension code {code}>")
}

fn classify_extension(_code: u32) -> (Verdict, String) {
    (
        Verdict::Unknown,
        "names a global through the copyreg extension registry".to_string(),
    )
}

/// The strongest usage of each name (as written), from one linear pass over the arena:
/// callees of calls are "called"; anything reachable from a call's args, kwargs, BUILD state
/// or SETITEMS/APPENDS items (without entering nested calls, whose parts are visited as calls
/// of their own) is "argument".
///
/// Ranks are kept per value while walking and merged by name once at the end: a name is
/// formatted once per global value, not once per use.
fn usages(p: &Pickle) -> HashMap<String, u8> {
    // One byte a value: VISITED, and the strongest rank seen plus one (0: none).
    const VISITED: u8 = 0x80;
    const RANK: u8 = 0x7f;
    let mut state: Vec<u8> = vec![0; p.len()];
    let bump = |state: &mut Vec<u8>, id: ValueId, rank: u8| {
        if !p.is_name(id) {
            return;
        }
        if let Some(slot) = state.get_mut(id.index()) {
            let seen = (*slot & RANK).max(rank + 1);
            *slot = (*slot & VISITED) | seen;
        }
    };

    let mut work: Vec<ValueId> = Vec::new();
    for (_, o) in p.object_values() {
        bump(&mut state, o.callee, CALLED);
        work.push(o.args);
        work.extend(o.kwargs);
        work.extend(o.state);
        for (k, v) in &o.dict_items {
            work.push(*k);
            work.push(*v);
        }
        work.extend(o.list_items.iter().copied());
    }
    while let Some(id) = work.pop() {
        match state.get_mut(id.index()) {
            Some(s) if *s & VISITED == 0 => *s |= VISITED,
            _ => continue,
        }
        match p.get(id) {
            Value::Global(_) | Value::Extension(_) => bump(&mut state, id, ARGUMENT),
            Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
                work.extend(items.iter().copied())
            }
            Value::FrozenSet(items) => work.extend(items.iter().copied()),
            Value::Dict(items) => {
                for (k, v) in items {
                    work.push(*k);
                    work.push(*v);
                }
            }
            Value::PersId(inner) => work.push(*inner),
            // A nested call's callee is "called" and its parts are roots of their own.
            _ => {}
        }
    }
    // Merged per slot of the table of distinct names first, then per name: a name is
    // formatted once however many values repeat it.
    let mut by_slot: Vec<Option<u8>> = vec![None; p.global_names()];
    let mut usage: HashMap<String, u8> = HashMap::new();
    let merge = |usage: &mut HashMap<String, u8>, name: String, rank: u8| {
        let slot = usage.entry(name).or_insert(rank);
        *slot = (*slot).max(rank);
    };
    for (i, s) in state.into_iter().enumerate() {
        let Some(rank) = (s & RANK).checked_sub(1) else {
            continue;
        };
        let id = ValueId(i as u32);
        if let Some(r) = p.global_slot(id).and_then(|s| by_slot.get_mut(s)) {
            *r = Some(r.map_or(rank, |r| r.max(rank)));
            continue;
        }
        match p.get(id) {
            Value::Global(g) => merge(&mut usage, format!("{}.{}", g.module, g.name), rank),
            Value::Extension(code) => merge(&mut usage, extension_name(*code), rank),
            _ => {}
        }
    }
    for (slot, rank) in by_slot.into_iter().enumerate() {
        if let (Some(rank), Some(g)) = (rank, p.global_at(slot)) {
            merge(&mut usage, format!("{}.{}", g.module, g.name), rank);
        }
    }
    usage
}

pub(super) fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}
