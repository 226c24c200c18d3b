//! Which mapping of a checkpoint is the model's state dict — one rule, used by `inspect`
//! (the first state dict it lists), `convert` (what it writes), the catalog (parameters,
//! inference) and the sidecar writer (`state_dict_key`).
//!
//! The rule, first match wins:
//! 1. an explicit dotted key (`convert --key`), which must name a mapping or a module;
//! 2. the top level, when it is a state dict itself (`torch.save(model.state_dict())`) or a
//!    pickled `nn.Module` / TorchScript module (`torch.save(model)`, `torch.jit.save`);
//! 3. a top-level entry under a well-known name, in this order: [`WELL_KNOWN_KEYS`] (`model`
//!    for DDP/FSDP/fairseq-style `{"model": …, "optimizer": …}`, `state_dict` for Lightning and
//!    timm, `model_state_dict` for the PyTorch tutorial's layout, `module` for DeepSpeed …);
//!    a mapping there counts when it is a state dict, a pickled module counts as one;
//! 4. otherwise every candidate — state-dict mappings found breadth first down to three levels
//!    (never inside optimizer or bookkeeping entries, [`NOT_MODEL`]) and pickled modules at the
//!    top or under a top-level key — ranked: a name that is not an EMA copy (`ema`,
//!    `model_ema`, `ema_state_dict`, `state_dict_ema` …: the averaged weights are kept beside
//!    the trained ones, which are the model's), then the most tensors, then the first found.
//!
//! A *state-dict mapping* is a dict in which the entries with a string key and a tensor value
//! are at least one and at least half of all entries.
//!
//! Before this module, `convert` used rules 1–3 and then the largest mapping, while `inspect`,
//! the catalog and the sidecar writer took the first mapping breadth first, then modules: on a
//! checkpoint holding `ema_state_dict` before `state_dict`, or a pickled module beside a tensor
//! dict, they named different state dicts. Identity hash `v1` documents that older rule, so it
//! keeps it ([`identity_v1_entries`]).

use std::borrow::Cow;
use std::collections::HashSet;

use ckpt_torch::pyrepr::key_str;
use ckpt_torch::{Doc, NodeId, View};

/// Keys under which optimizer or bookkeeping state lives: never a model's state dict.
pub const NOT_MODEL: &[&str] = &[
    "optimizer_states",
    "optimizer",
    "optimizer_state_dict",
    "optim",
    "lr_schedulers",
    "scheduler",
    "callbacks",
    "loops",
];

/// Top-level keys that name the model's state dict, most specific first.
pub const WELL_KNOWN_KEYS: &[&str] = &[
    "model",
    "state_dict",
    "model_state_dict",
    "module",
    "net",
    "network",
    "weights",
];

/// What the state dict is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string → tensor mapping.
    Mapping,
    /// A pickled `nn.Module` or a TorchScript module, flattened as `state_dict()` names it.
    Module,
}

/// A state dict found in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Dotted path from the top (`state_dict`, `model`, `model.module`; empty for the top).
    pub path: String,
    pub node: NodeId,
    pub kind: Kind,
}

impl Located {
    /// Its entries as (name, value), named as `model.state_dict()` names them.
    pub fn entries(&self, doc: &Doc) -> Vec<(String, NodeId)> {
        self.entries_borrowed(doc)
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .collect()
    }

    /// [`Self::entries`], a mapping's string keys borrowed from the document: `inspect` of a
    /// safetensors header with 170,000 tensors need not hold a second copy of every name.
    pub fn entries_borrowed<'d>(&self, doc: &'d Doc) -> BorrowedEntries<'d> {
        match self.kind {
            Kind::Module => module_state_dict(doc, self.node)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), v))
                .collect(),
            Kind::Mapping => doc
                .dict(self.node)
                .unwrap_or(&[])
                .iter()
                .map(|(k, v)| (key_cow(doc, *k), *v))
                .collect(),
        }
    }

    /// How many tensors it holds.
    fn tensors(&self, doc: &Doc) -> usize {
        match self.kind {
            Kind::Module => module_state_dict(doc, self.node).map_or(0, |e| e.len()),
            Kind::Mapping => tensor_entries(doc, self.node),
        }
    }
}

/// Why no state dict was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotFound {
    /// The explicit key names nothing, or something that is neither a mapping nor a module.
    Key(String),
    /// No mapping or module anywhere the rule looks.
    NoStateDict,
}

/// Entries with a string key and a tensor value.
fn tensor_entries(doc: &Doc, id: NodeId) -> usize {
    doc.dict(id).map_or(0, |items| {
        items
            .iter()
            .filter(|(k, v)| matches!(doc.view(*v), View::Tensor(_)) && doc.as_str(*k).is_some())
            .count()
    })
}

/// Whether `id` is a state-dict mapping: at least one and at least half of its entries have a
/// string key and a tensor value.
pub fn is_state_dict_mapping(doc: &Doc, id: NodeId) -> bool {
    doc.dict(id).is_some_and(|items| {
        let t = tensor_entries(doc, id);
        t > 0 && t * 2 >= items.len()
    })
}

/// A mapping or module at `id`, as a candidate at `path`.
fn candidate(doc: &Doc, path: &str, id: NodeId) -> Option<Located> {
    let id = doc.resolve(id);
    let kind = if is_state_dict_mapping(doc, id) {
        Kind::Mapping
    } else if has_module_state_dict(doc, id) {
        Kind::Module
    } else {
        return None;
    };
    Some(Located {
        path: path.to_owned(),
        node: id,
        kind,
    })
}

/// Whether a dotted path names an exponential-moving-average copy of the weights: a component
/// that is `ema`, or has `ema` as one of its `_`-separated words (`model_ema`,
/// `ema_state_dict`, `state_dict_ema`).
pub fn is_ema_path(path: &str) -> bool {
    path.split('.')
        .any(|c| c.split('_').any(|w| w.eq_ignore_ascii_case("ema")))
}

/// The model's state dict, by the rule of this module. `key` is an explicit dotted path.
pub fn locate(doc: &Doc, key: Option<&str>) -> Result<Located, NotFound> {
    let root = doc.root();
    if let Some(k) = key {
        return doc
            .at_path(root, k)
            .and_then(|id| {
                let kind = if is_module(doc, id) {
                    Kind::Module
                } else if doc.dict(id).is_some() {
                    Kind::Mapping
                } else {
                    return None;
                };
                Some(Located {
                    path: k.to_owned(),
                    node: id,
                    kind,
                })
            })
            .ok_or_else(|| NotFound::Key(k.to_owned()));
    }
    if let Some(c) = candidate(doc, "", root) {
        return Ok(c);
    }
    for k in WELL_KNOWN_KEYS {
        if let Some(c) = doc.get(root, k).and_then(|id| candidate(doc, k, id)) {
            return Ok(c);
        }
    }
    let all = candidates(doc);
    let mut best: Option<(&Located, (bool, usize))> = None;
    for c in &all {
        let rank = (!is_ema_path(&c.path), c.tensors(doc));
        // Strictly better only: ties keep the first found.
        if best.as_ref().is_none_or(|(_, r)| rank > *r) {
            best = Some((c, rank));
        }
    }
    best.map(|(c, _)| c.clone()).ok_or(NotFound::NoStateDict)
}

/// The model's state dict as (dotted path, entries), by [`locate`]'s rule. `root` must be the
/// document's root (kept for the callers' signature).
pub fn first_state_dict_entries(
    doc: &Doc,
    root: NodeId,
) -> Option<(String, Vec<(String, NodeId)>)> {
    first_state_dict_entries_borrowed(doc, root)
        .map(|(p, e)| (p, e.into_iter().map(|(k, v)| (k.into_owned(), v)).collect()))
}

/// A state dict's (name, value) entries, names borrowed from the document where they can be.
pub type BorrowedEntries<'d> = Vec<(Cow<'d, str>, NodeId)>;

/// [`first_state_dict_entries`], a mapping's string keys borrowed from the document (see
/// [`Located::entries_borrowed`]): what reads every name once need not copy them all.
pub fn first_state_dict_entries_borrowed(
    doc: &Doc,
    root: NodeId,
) -> Option<(String, BorrowedEntries<'_>)> {
    debug_assert_eq!(root, doc.root());
    locate(doc, None).ok().map(|l| {
        let e = l.entries_borrowed(doc);
        (l.path, e)
    })
}

/// Every state dict the checkpoint holds, the model's ([`locate`]) first, then the other
/// mappings breadth first, then pickled modules at the top or under a top-level key: what
/// `inspect` lists.
/// The first of [`all_state_dicts`], without finding the others: the one `locate` picks,
/// else the first candidate.
pub fn first_state_dict(doc: &Doc) -> Option<Located> {
    match locate(doc, None) {
        Ok(first) => Some(first),
        Err(_) => candidates(doc).into_iter().next(),
    }
}

pub fn all_state_dicts(doc: &Doc) -> Vec<Located> {
    let mut all = candidates(doc);
    if let Ok(first) = locate(doc, None) {
        all.retain(|c| c.node != first.node);
        all.insert(0, first);
    }
    all
}

/// Candidates of rule 4: mappings ([`find_state_dicts`]), then pickled modules at the top or
/// under a top-level key.
fn candidates(doc: &Doc) -> Vec<Located> {
    let root = doc.root();
    let mut out: Vec<Located> = find_state_dicts(doc, root)
        .into_iter()
        .map(|(path, node)| Located {
            path,
            node,
            kind: Kind::Mapping,
        })
        .collect();
    // Keys are borrowed: only the few that name a module become a `Located` path.
    let mut modules: Vec<(Cow<'_, str>, NodeId)> = vec![(Cow::Borrowed(""), root)];
    if let Some(items) = doc.dict(root) {
        modules.extend(items.iter().map(|(k, v)| (key_cow(doc, *k), *v)));
    }
    for (path, node) in modules {
        let node = doc.resolve(node);
        if has_module_state_dict(doc, node) {
            out.push(Located {
                path: path.into_owned(),
                node,
                kind: Kind::Module,
            });
        }
    }
    out
}

/// The state dict as identity hash `v1` defines it (its algorithm text in the identity
/// module): the first state-dict mapping breadth first, else a pickled module at the top or
/// under a top-level key. Frozen: a `v1` hash must not move when [`locate`] learns more.
pub fn identity_v1_entries(doc: &Doc, root: NodeId) -> Option<(String, Vec<(String, NodeId)>)> {
    if let Some((path, id)) = find_state_dicts(doc, root).into_iter().next() {
        let items = doc
            .dict(id)
            .unwrap_or(&[])
            .iter()
            .map(|(k, v)| (key_str(doc, *k), *v))
            .collect();
        return Some((path, items));
    }
    let mut at: Vec<(String, NodeId)> = vec![(String::new(), root)];
    if let Some(items) = doc.dict(root) {
        at.extend(items.iter().map(|(k, v)| (key_str(doc, *k), *v)));
    }
    at.into_iter()
        .find_map(|(path, id)| module_state_dict(doc, id).map(|e| (path, e)))
}

/// A module whose state dict ckpt can name (a TorchScript module whose state only its
/// `__setstate__` sets has none).
fn has_module_state_dict(doc: &Doc, id: NodeId) -> bool {
    is_module(doc, id) && module_state_dict(doc, id).is_some()
}

/// Whether `id` is a pickled `nn.Module` (`torch.save(model)`): an object whose state has
/// `_parameters` and `_modules`, or a TorchScript module.
pub fn is_module(doc: &Doc, id: NodeId) -> bool {
    if ckpt_torch::torchscript::is_script_module(doc, id) {
        return true;
    }
    match doc.view(id) {
        View::Object(o) => o.state.is_some_and(|st| {
            doc.get(st, "_parameters").is_some() && doc.get(st, "_modules").is_some()
        }),
        _ => false,
    }
}

/// The state dict of a pickled `nn.Module`, named as `model.state_dict()` would name it:
/// each module's parameters, then its persistent buffers, then its children's, dotted,
/// depth first. Reads only the pickle (no class is imported, nothing runs). `None` when `id`
/// is not a module. Walks with an explicit stack and visits at most as many modules as the
/// document has nodes, so a hostile cycle ends.
pub fn module_state_dict(doc: &Doc, id: NodeId) -> Option<Vec<(String, NodeId)>> {
    // A TorchScript archive's module: parameters and buffers are named by its code.
    if ckpt_torch::torchscript::is_script_module(doc, id) {
        return ckpt_torch::torchscript::state_dict(doc, id);
    }
    if !is_module(doc, id) {
        return None;
    }
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), id)];
    let mut budget = doc.len();
    while let Some((prefix, m)) = stack.pop() {
        if budget == 0 {
            break;
        }
        budget -= 1;
        let View::Object(o) = doc.view(m) else {
            continue;
        };
        let Some(st) = o.state else { continue };
        let tensors = |field: &str| -> Vec<(String, NodeId)> {
            doc.get(st, field)
                .and_then(|d| doc.dict(d))
                .unwrap_or(&[])
                .iter()
                .filter(|(_, v)| matches!(doc.view(*v), View::Tensor(_)))
                .map(|(k, v)| (key_str(doc, *k), *v))
                .collect()
        };
        let non_persistent: HashSet<String> = match doc
            .get(st, "_non_persistent_buffers_set")
            .map(|x| doc.view(x))
        {
            Some(View::Set(items) | View::List(items) | View::Tuple(items)) => {
                items.iter().map(|i| key_str(doc, *i)).collect()
            }
            _ => HashSet::new(),
        };
        for (k, v) in tensors("_parameters") {
            out.push((format!("{prefix}{k}"), v));
        }
        for (k, v) in tensors("_buffers") {
            if !non_persistent.contains(&k) {
                out.push((format!("{prefix}{k}"), v));
            }
        }
        let children = doc
            .get(st, "_modules")
            .and_then(|d| doc.dict(d))
            .unwrap_or(&[]);
        for (k, v) in children.iter().rev() {
            if is_module(doc, *v) {
                stack.push((format!("{prefix}{}.", key_str(doc, *k)), *v));
            }
        }
    }
    Some(out)
}

/// State-dict mappings, breadth first, down to depth 3 (`state_dict`, `model`,
/// `model.module` …), never inside [`NOT_MODEL`] entries nor inside a state dict.
pub fn find_state_dicts(doc: &Doc, root: NodeId) -> Vec<(String, NodeId)> {
    let mut out = Vec::new();
    let mut queue: Vec<(String, NodeId, u32)> = vec![(String::new(), root, 0)];
    let mut seen = HashSet::new();
    let mut qi = 0;
    while qi < queue.len() {
        let (path, id, depth) = queue[qi].clone();
        qi += 1;
        let id = doc.resolve(id);
        if !seen.insert(id) {
            continue;
        }
        let Some(items) = doc.dict(id) else { continue };
        if is_state_dict_mapping(doc, id) {
            out.push((path, id));
            continue;
        }
        if depth >= 3 {
            continue;
        }
        for (k, v) in items {
            let Some(name) = doc.as_str(*k) else { continue };
            if NOT_MODEL.contains(&name) {
                continue;
            }
            let p = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            queue.push((p, *v, depth + 1));
        }
    }
    out
}

/// A key as [`key_str`] spells it, borrowed from the document when it is a string (nearly
/// always): no copy of every name of a large state dict.
fn key_cow(doc: &Doc, id: NodeId) -> Cow<'_, str> {
    match doc.view(id) {
        View::Str(s) => Cow::Borrowed(s),
        _ => Cow::Owned(key_str(doc, id)),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ckpt_torch::Checkpoint;

    use super::*;

    fn open(rel: &str) -> Checkpoint {
        Checkpoint::open(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures")
                .join(rel),
        )
        .unwrap()
    }

    /// Each step of the rule, on real torch.save files (fixtures/state_dict/README.md).
    #[test]
    fn the_rule_step_by_step() {
        let at = |f: &str| {
            let ck = open(&format!("state_dict/{f}"));
            let l = locate(&ck.doc, None).unwrap();
            (l.path, l.kind)
        };
        // 2. the top level
        assert_eq!(at("bare_compiled.pt"), (String::new(), Kind::Mapping));
        // 3. a well-known key, before an EMA copy saved first
        assert_eq!(at("ema_first.ckpt"), ("state_dict".into(), Kind::Mapping));
        // 3. a pickled module under `model` counts, beside a tensor mapping
        assert_eq!(at("module_beside_ema.pt"), ("model".into(), Kind::Module));
        // 4. the largest, not the first
        assert_eq!(
            at("stats_before_weights.pt"),
            ("generator".into(), Kind::Mapping)
        );
        // 4. not the EMA copy, though as large and first
        assert_eq!(at("ema_and_student.pt"), ("student".into(), Kind::Mapping));
    }

    #[test]
    fn an_explicit_key_must_name_a_mapping_or_module() {
        let ck = open("state_dict/ema_first.ckpt");
        let l = locate(&ck.doc, Some("ema_state_dict")).unwrap();
        assert_eq!(l.path, "ema_state_dict");
        assert_eq!(
            locate(&ck.doc, Some("epoch")),
            Err(NotFound::Key("epoch".into()))
        );
        assert_eq!(
            locate(&ck.doc, Some("nothing.here")),
            Err(NotFound::Key("nothing.here".into()))
        );
    }

    /// Every state dict is listed, the model's first; identity v1 keeps the first found.
    #[test]
    fn all_state_dicts_lists_the_models_first_and_v1_is_frozen() {
        let ck = open("state_dict/ema_first.ckpt");
        let all: Vec<String> = all_state_dicts(&ck.doc)
            .into_iter()
            .map(|l| l.path)
            .collect();
        assert_eq!(all, ["state_dict", "ema_state_dict"]);
        let (v1, _) = identity_v1_entries(&ck.doc, ck.doc.root()).unwrap();
        assert_eq!(v1, "ema_state_dict");
    }

    #[test]
    fn ema_names() {
        for p in [
            "ema",
            "model_ema",
            "ema_state_dict",
            "state_dict_ema",
            "x.EMA",
        ] {
            assert!(is_ema_path(p), "{p}");
        }
        for p in ["model", "state_dict", "gemma", "schema", "emanate"] {
            assert!(!is_ema_path(p), "{p}");
        }
    }
}
