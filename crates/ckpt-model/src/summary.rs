//! What `inspect` shows of a checkpoint's state dicts. The summary types live with the rest of
//! `inspect`'s summary in `ckpt_torch::summary`; which mappings are state dicts
//! ([`crate::state_dict`]) and what their names say (wrappers, groups) is decided here, so
//! `inspect` lists first the state dict `convert` writes and the catalog infers from.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use ckpt_torch::summary::{DTypeTotal, Group, StateDictSummary, Summary};
use ckpt_torch::{Checkpoint, Doc, NodeId, View};

use crate::state_dict::{all_state_dicts, first_state_dict};
use crate::tied::storage_slot;
use crate::wrappers::{WRAPPER_PREFIXES, Wrappers, strip_wrappers_into};

/// `ck.summary()`: what `inspect` shows of a checkpoint, its state dicts found by
/// [`crate::state_dict`]'s rule.
pub trait Summarize {
    /// Summarize this checkpoint (reads at most the callback scores' few bytes).
    fn summary(&self) -> Summary;
}

impl Summarize for Checkpoint {
    fn summary(&self) -> Summary {
        self.summary_with(state_dict_summaries(&self.doc))
    }
}

/// Every state dict of the document, summarized: the model's first ([`all_state_dicts`]).
pub fn state_dict_summaries(doc: &Doc) -> Vec<StateDictSummary> {
    all_state_dicts(doc)
        .into_iter()
        .map(|l| summarize_entries(doc, &l.path, &l.entries_borrowed(doc)))
        .collect()
}

/// Totals, dtype breakdown, module groups, wrappers and sharing of one state dict, from its
/// entries (a mapping's, or a pickled module's flattened as `state_dict()` names it).
///
/// Names and storage keys are borrowed, not copied: a safetensors header of 170,000 tensors
/// is summarized without a second set of its names (issue 10: `inspect` within 100 MB).
pub fn summarize_entries<S: AsRef<str>>(
    doc: &Doc,
    path: &str,
    items: &[(S, NodeId)],
) -> StateDictSummary {
    let mut tensors = 0;
    let mut elements = 0u64;
    let mut bytes = 0u64;
    let mut by_dtype: BTreeMap<&'static str, DTypeTotal> = BTreeMap::new();
    let mut storages: HashSet<(&str, u64)> = HashSet::new();
    let mut shared = Vec::new();
    let mut wrappers = Wrappers::default();
    let mut flat = false;
    let mut other = 0;
    let mut names: Vec<(Cow<'_, str>, u64)> = Vec::new();
    for (name, v) in items {
        let View::Tensor(t) = doc.view(*v) else {
            other += 1;
            continue;
        };
        let name = name.as_ref();
        tensors += 1;
        // What is reported is what stripping removes (one rule, `crate::wrappers`).
        let stripped = strip_wrappers_cow(name, &mut wrappers);
        if name.ends_with("_flat_param") || name.contains("_flat_param.") {
            flat = true;
        }
        let n = t.numel();
        // A storage counts once, however many names view it.
        let fresh = match storage_slot(t) {
            Some(slot) => storages.insert(slot),
            None => true,
        };
        let dtype = t.dtype.name();
        let entry = by_dtype.entry(dtype).or_insert_with(|| DTypeTotal {
            dtype: dtype.to_owned(),
            tensors: 0,
            elements: 0,
            bytes: 0,
        });
        entry.tensors += 1;
        if fresh {
            elements = elements.saturating_add(n);
            bytes = bytes.saturating_add(t.nbytes());
            entry.elements = entry.elements.saturating_add(n);
            entry.bytes = entry.bytes.saturating_add(t.nbytes());
            names.push((stripped, n));
        } else {
            shared.push(name.to_owned());
        }
    }
    drop(storages);
    StateDictSummary {
        path: path.to_owned(),
        tensors,
        elements,
        bytes,
        by_dtype: by_dtype.into_values().collect(),
        groups: groups(&names),
        wrapper_prefixes: wrappers.iter().map(str::to_owned).collect(),
        shared,
        flat_params: flat,
        other_entries: other,
    }
}

/// `tensors` and `elements` of the first state dict [`state_dict_summaries`] lists (each
/// storage slot counted once, as there), without its groups, dtypes, wrappers and shared
/// names: what a catalog entry keeps of the summary, at a fraction of its memory on a header
/// of 170,000 tensors (issue 10). `None` when the checkpoint holds no state dict.
pub fn first_state_dict_totals(doc: &Doc) -> Option<(usize, u64)> {
    let first = first_state_dict(doc)?;
    let mut storages: HashSet<(&str, u64)> = HashSet::new();
    let (mut tensors, mut elements) = (0usize, 0u64);
    for (_, v) in &first.entries_borrowed(doc) {
        let View::Tensor(t) = doc.view(*v) else {
            continue;
        };
        tensors += 1;
        let fresh = match storage_slot(t) {
            Some(slot) => storages.insert(slot),
            None => true,
        };
        if fresh {
            elements = elements.saturating_add(t.numel());
        }
    }
    Some((tensors, elements))
}

/// `strip_wrappers_into`, borrowing the name when no wrapper prefix occurs in it (nearly
/// always): stripping only ever removes one of [`WRAPPER_PREFIXES`] found in the name.
fn strip_wrappers_cow<'a>(name: &'a str, seen: &mut Wrappers) -> Cow<'a, str> {
    if WRAPPER_PREFIXES.iter().any(|p| name.contains(p)) {
        Cow::Owned(strip_wrappers_into(name, seen))
    } else {
        Cow::Borrowed(name)
    }
}

/// The first `level` dot-separated components of `name`, as a slice of it — but never the
/// whole of a dotted name (its last component is the parameter's own): `a.b.c` at level 5 is
/// `a.b`; a name without a dot is its own prefix.
fn prefix_at(name: &str, level: usize) -> &str {
    match name.match_indices('.').nth(level.saturating_sub(1)) {
        Some((i, _)) => &name[..i],
        None => name.rfind('.').map_or(name, |i| &name[..i]),
    }
}

/// Group names by their leading components: deep enough that there is more than one group
/// (`net.encoder`, `net.decoder`, `net.head` rather than just `net`). Groups are found through
/// an index, not a scan: a hostile file with 200,000 distinct top-level names must not take
/// 200,000² comparisons. Prefixes are slices of the names until the groups are returned.
fn groups<S: AsRef<str>>(names: &[(S, u64)]) -> Vec<Group> {
    let mut level = 1;
    loop {
        // (prefix, tensors, elements) in order of first appearance.
        let mut map: Vec<(&str, usize, u64)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (name, n) in names {
            let prefix = prefix_at(name.as_ref(), level);
            let at = *index.entry(prefix).or_insert(map.len());
            match map.get_mut(at) {
                Some(g) => {
                    g.1 += 1;
                    g.2 = g.2.saturating_add(*n);
                }
                None => map.push((prefix, 1, *n)),
            }
        }
        if map.len() > 1 || level >= 3 || names.is_empty() {
            return map
                .into_iter()
                .map(|(prefix, tensors, elements)| Group {
                    prefix: prefix.to_owned(),
                    tensors,
                    elements,
                })
                .collect();
        }
        level += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic Lightning checkpoint: its one state dict, its callback score read.
    #[test]
    fn lightning_checkpoint_summary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.ckpt");
        let tensors = ckpt_test_support::model_tensors(6, 60_000);
        ckpt_test_support::write_lightning_checkpoint(&p, &tensors).unwrap();
        let ck = Checkpoint::open(&p).unwrap();
        let s = ck.summary();
        assert_eq!(s.epoch, Some(3));
        assert_eq!(s.state_dicts.len(), 1);
        assert_eq!(s.state_dicts[0].path, "state_dict");
        assert_eq!(s.state_dicts[0].tensors, 12);
        assert_eq!(s.callbacks.len(), 1);
        assert!(s.callbacks[0].best_model_score.is_some());
        let sd = &s.state_dicts[0];
        assert_eq!(
            first_state_dict_totals(&ck.doc),
            Some((sd.tensors, sd.elements))
        );
    }

    #[test]
    fn groups_go_deeper_until_they_split() {
        let names = vec![
            ("net.encoder.a".to_owned(), 2),
            ("net.encoder.b".to_owned(), 3),
            ("net.head.c".to_owned(), 4),
        ];
        let g = groups(&names);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].prefix, "net.encoder");
        assert_eq!(g[0].elements, 5);
    }

    /// `prefix_at` is the join of the first components the grouping rule takes:
    /// `level.min(parts - 1).max(1)` of them (empty components included).
    #[test]
    fn prefix_is_the_join_of_the_leading_components() {
        for name in [
            "a",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "a..b",
            ".a",
            "a.",
            "",
            "x.y.z.w.v",
        ] {
            for level in 1..=4 {
                let parts: Vec<&str> = name.split('.').collect();
                let take = level.min(parts.len().saturating_sub(1)).max(1);
                let want = parts[..take.min(parts.len())].join(".");
                assert_eq!(prefix_at(name, level), want, "{name:?} at level {level}");
            }
        }
    }

    /// A name is borrowed unless a wrapper prefix occurs in it, and stripping then reports
    /// the same prefixes as `strip_wrappers_into`.
    #[test]
    fn stripping_borrows_plain_names() {
        let mut seen = Wrappers::default();
        assert!(matches!(
            strip_wrappers_cow("enc.layer.weight", &mut seen),
            Cow::Borrowed("enc.layer.weight")
        ));
        assert!(seen.is_empty());
        let got = strip_wrappers_cow("module._orig_mod.enc.w", &mut seen);
        assert_eq!(got, "enc.w");
        assert_eq!(seen.iter().collect::<Vec<_>>(), ["_orig_mod.", "module."]);
        // A `module.` inside a name is the model's own: kept, nothing reported.
        let mut seen = Wrappers::default();
        assert_eq!(
            strip_wrappers_cow("enc.module.w", &mut seen),
            "enc.module.w"
        );
        assert!(seen.is_empty());
    }
}
