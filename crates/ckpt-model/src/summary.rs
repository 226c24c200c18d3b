//! What `inspect` shows of a checkpoint's state dicts. The summary types live with the rest of
//! `inspect`'s summary in `ckpt_torch::summary`; which mappings are state dicts
//! ([`crate::state_dict`]) and what their names say (wrappers, groups) is decided here, so
//! `inspect` lists first the state dict `convert` writes and the catalog infers from.

use std::collections::{BTreeMap, HashMap, HashSet};

use ckpt_torch::summary::{DTypeTotal, Group, StateDictSummary, Summary};
use ckpt_torch::{Checkpoint, Doc, NodeId, View};

use crate::state_dict::all_state_dicts;
use crate::tied::storage_slot;
use crate::wrappers::{Wrappers, strip_wrappers_into};

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
        .map(|l| summarize_entries(doc, &l.path, &l.entries(doc)))
        .collect()
}

/// Totals, dtype breakdown, module groups, wrappers and sharing of one state dict, from its
/// entries (a mapping's, or a pickled module's flattened as `state_dict()` names it).
pub fn summarize_entries(doc: &Doc, path: &str, items: &[(String, NodeId)]) -> StateDictSummary {
    let mut tensors = 0;
    let mut elements = 0u64;
    let mut bytes = 0u64;
    let mut by_dtype: BTreeMap<String, DTypeTotal> = BTreeMap::new();
    let mut storages: HashSet<(String, u64)> = HashSet::new();
    let mut shared = Vec::new();
    let mut wrappers = Wrappers::default();
    let mut flat = false;
    let mut other = 0;
    let mut names: Vec<(String, u64)> = Vec::new();
    for (name, v) in items {
        let View::Tensor(t) = doc.view(*v) else {
            other += 1;
            continue;
        };
        let name = name.clone();
        tensors += 1;
        // What is reported is what stripping removes (one rule, `crate::wrappers`).
        let stripped = strip_wrappers_into(&name, &mut wrappers);
        if name.ends_with("_flat_param") || name.contains("_flat_param.") {
            flat = true;
        }
        let n = t.numel();
        // A storage counts once, however many names view it.
        let fresh = match storage_slot(t) {
            Some(slot) => storages.insert(slot),
            None => true,
        };
        let entry = by_dtype
            .entry(t.dtype.name().to_owned())
            .or_insert(DTypeTotal {
                dtype: t.dtype.name().to_owned(),
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
            shared.push(name);
        }
    }
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

/// Group names by their leading components: deep enough that there is more than one group
/// (`net.encoder`, `net.decoder`, `net.head` rather than just `net`). Groups are found through
/// an index, not a scan: a hostile file with 200,000 distinct top-level names must not take
/// 200,000² comparisons.
fn groups(names: &[(String, u64)]) -> Vec<Group> {
    let mut level = 1;
    loop {
        let mut map: Vec<Group> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (name, n) in names {
            let parts: Vec<&str> = name.split('.').collect();
            let take = level.min(parts.len().saturating_sub(1)).max(1);
            let prefix = parts[..take.min(parts.len())].join(".");
            let at = index.get(&prefix).copied();
            if at.is_none() {
                index.insert(prefix.clone(), map.len());
            }
            match at.and_then(|i| map.get_mut(i)) {
                Some(g) => {
                    g.tensors += 1;
                    g.elements = g.elements.saturating_add(*n);
                }
                None => map.push(Group {
                    prefix,
                    tensors: 1,
                    elements: *n,
                }),
            }
        }
        if map.len() > 1 || level >= 3 || names.is_empty() {
            return map;
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
        let tensors = ckpt_torch::synth::model_tensors(6, 60_000);
        ckpt_torch::synth::write_lightning_checkpoint(&p, &tensors).unwrap();
        let ck = Checkpoint::open(&p).unwrap();
        let s = ck.summary();
        assert_eq!(s.epoch, Some(3));
        assert_eq!(s.state_dicts.len(), 1);
        assert_eq!(s.state_dicts[0].path, "state_dict");
        assert_eq!(s.state_dicts[0].tensors, 12);
        assert_eq!(s.callbacks.len(), 1);
        assert!(s.callbacks[0].best_model_score.is_some());
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
}
