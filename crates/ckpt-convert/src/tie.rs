//! Tied weights: names that view the same bytes (or an output head equal to the input
//! embedding) are written once, under the name transformers keeps. What "the same view" is and
//! which name is kept is model knowledge ([`ckpt_model::tied`]); here it is applied to the plan,
//! reading bytes where only equal values can tell.

use ckpt_model::tied::{is_embedding, is_tied_alias, keep_rank, view_key};
use ckpt_torch::{Checkpoint, DType, TensorRef};

use crate::plan::{From, Planned};

/// Tied weights are written once. Names that view the same bytes of one storage (same
/// storage, offset, shape, strides and dtype: `model.state_dict()` of a model with tied
/// parameters) are one tensor, kept under the name `keep_rank` picks; so is a tied-alias
/// weight (an `lm_head.weight`, a BERT decoder) whose bytes equal an input embedding's, as
/// FSDP full state dicts and DCP saves store it (one clone per name). With `tie` false (the
/// base config says `tie_word_embeddings: false`) groups that hold an input embedding are
/// written in full: that model has two matrices. `out` is sorted by name, names unique; the
/// names left out are removed from it and returned, sorted.
pub(crate) fn untie(out: &mut Vec<Planned>, cks: &[Checkpoint], tie: bool) -> Vec<String> {
    // Groups of one view: the indices of plans with a storage, sorted by (source, view) and
    // compared in place (a map keyed by owned view keys cost ~300 bytes a tensor).
    let key = |i: &u32| {
        out.get(*i as usize).and_then(|p| match p.from {
            From::One(src) => view_ref(&p.t).map(|v| (src, v)),
            From::Chunks(_) => None,
        })
    };
    let mut by_view: Vec<u32> = (0..out.len())
        .filter_map(|i| u32::try_from(i).ok())
        .filter(|i| key(i).is_some())
        .collect();
    by_view.sort_unstable_by(|a, b| key(a).cmp(&key(b)).then(a.cmp(b)));
    let mut gone: Vec<usize> = Vec::new();
    let name = |i: usize| out.get(i).map_or("", |p| p.name.as_str());
    for group in by_view.chunk_by(|a, b| key(a) == key(b)) {
        if group.len() < 2 {
            continue;
        }
        let group = group.iter().map(|i| *i as usize);
        if !tie && group.clone().any(|i| is_embedding(name(i))) {
            continue;
        }
        let keep = group.clone().min_by_key(|i| keep_rank(name(*i)));
        gone.extend(group.filter(|i| Some(*i) != keep));
    }
    drop(by_view);
    let mut tied: Vec<String> = gone.iter().map(|i| name(*i).to_owned()).collect();
    remove_indices(out, gone);
    if tie {
        // Copies: an alias weight equal to an input embedding, a decoder bias equal to its
        // head's `bias`. A name is only ever dropped for one `keep_rank` prefers, so the best
        // of a group of equal copies stays.
        let get = |n: &str| {
            out.binary_search_by(|p| p.name.as_str().cmp(n))
                .ok()
                .and_then(|i| out.get(i))
        };
        let embeddings: Vec<&str> = out
            .iter()
            .map(|p| p.name.as_str())
            .filter(|n| is_embedding(n))
            .collect();
        let mut copies: Vec<usize> = Vec::new();
        for (i, p) in out.iter().enumerate() {
            let name = p.name.as_str();
            if !is_tied_alias(name) {
                continue;
            }
            let better = |other: &str| {
                keep_rank(other) < keep_rank(name)
                    && !copies
                        .iter()
                        .any(|c| out.get(*c).is_some_and(|c| c.name == other))
            };
            let same = if let Some(head) = name.strip_suffix("decoder.bias") {
                let b = format!("{head}bias");
                better(&b) && get(&b).is_some_and(|b| same_bytes(cks, p, b))
            } else {
                embeddings
                    .iter()
                    .any(|e| better(e) && get(e).is_some_and(|emb| same_bytes(cks, p, emb)))
            };
            if same {
                copies.push(i);
            }
        }
        tied.extend(copies.iter().map(|i| name_of(out, *i)));
        remove_indices(out, copies);
    }
    tied.sort();
    tied
}

fn name_of(out: &[Planned], i: usize) -> String {
    out.get(i).map(|p| p.name.clone()).unwrap_or_default()
}

/// Remove the plans at these indices (any order), keeping the others in order.
fn remove_indices(out: &mut Vec<Planned>, mut gone: Vec<usize>) {
    gone.sort_unstable();
    let mut at = 0;
    let mut next = gone.iter().peekable();
    out.retain(|_| {
        let keep = next.peek() != Some(&&at);
        if !keep {
            next.next();
        }
        at += 1;
        keep
    });
}

/// [`ckpt_model::tied::view_key`] borrowed: (storage key, offset, shape, strides, dtype),
/// equal exactly when the view keys are.
type ViewRef<'a> = (&'a str, u64, &'a [u64], &'a [i64], DType);

fn view_ref(t: &TensorRef) -> Option<ViewRef<'_>> {
    t.storage.as_ref().map(|s| {
        (
            s.key.as_str(),
            t.offset,
            t.shape.as_slice(),
            t.stride.as_slice(),
            t.dtype,
        )
    })
}

/// Whether two planned tensors hold the same values: one storage viewed alike, or equal
/// shape, dtype and bytes (chunk by chunk for sharded DCP tensors, which must then be
/// sharded alike).
pub(crate) fn same_bytes(cks: &[Checkpoint], a: &Planned, b: &Planned) -> bool {
    if a.t.shape != b.t.shape || a.t.dtype != b.t.dtype {
        return false;
    }
    let sha =
        |src: usize, t: &TensorRef, n: &str| cks.get(src).and_then(|c| c.tensor_sha256(t, n).ok());
    match (&a.from, &b.from) {
        (From::One(x), From::One(y)) => {
            if x == y && view_key(&a.t).is_some() && view_key(&a.t) == view_key(&b.t) {
                return true;
            }
            let ha = sha(*x, &a.t, &a.name);
            ha.is_some() && ha == sha(*y, &b.t, &b.name)
        }
        (From::Chunks(ca), From::Chunks(cb)) => {
            ca.len() == cb.len()
                && ca.iter().zip(cb).all(|(p, q)| {
                    let sha = |c: &crate::dcp::Chunk, n: &str| {
                        c.at.open(n)
                            .ok()
                            .and_then(|ck| ck.tensor_sha256(&c.t, n).ok())
                    };
                    p.offsets == q.offsets && p.t.shape == q.t.shape && {
                        let hp = sha(p, &a.name);
                        hp.is_some() && hp == sha(q, &b.name)
                    }
                })
        }
        _ => false,
    }
}
