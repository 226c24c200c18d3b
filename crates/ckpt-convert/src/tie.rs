//! Tied weights: names that view the same bytes (or an output head equal to the input
//! embedding) are written once, under the name transformers keeps. What "the same view" is and
//! which name is kept is model knowledge ([`ckpt_model::tied`]); here it is applied to the plan,
//! reading bytes where only equal values can tell.

use std::collections::BTreeMap;

use ckpt_model::tied::{ViewKey, is_embedding, is_tied_alias, keep_rank, view_key};
use ckpt_torch::{Checkpoint, TensorRef};

use crate::plan::{From, Planned};

/// Tied weights are written once. Names that view the same bytes of one storage (same
/// storage, offset, shape, strides and dtype: `model.state_dict()` of a model with tied
/// parameters) are one tensor, kept under the name `keep_rank` picks; so is a tied-alias
/// weight (an `lm_head.weight`, a BERT decoder) whose bytes equal an input embedding's, as
/// FSDP full state dicts and DCP saves store it (one clone per name). With `tie` false (the
/// base config says `tie_word_embeddings: false`) groups that hold an input embedding are
/// written in full: that model has two matrices. Returns the names left out, sorted.
pub(crate) fn untie(
    out: &mut BTreeMap<String, Planned>,
    cks: &[Checkpoint],
    tie: bool,
) -> Vec<String> {
    let mut tied = Vec::new();
    let mut views: BTreeMap<(usize, ViewKey), Vec<&str>> = BTreeMap::new();
    for (name, p) in out.iter() {
        if let From::One(src) = p.from
            && let Some(k) = view_key(&p.t)
        {
            views.entry((src, k)).or_default().push(name);
        }
    }
    for names in views.values().filter(|g| g.len() > 1) {
        if !tie && names.iter().any(|n| is_embedding(n)) {
            continue;
        }
        let keep = names.iter().min_by_key(|n| keep_rank(n)).copied();
        tied.extend(
            names
                .iter()
                .filter(|n| Some(**n) != keep)
                .map(|n| (*n).to_owned()),
        );
    }
    for n in &tied {
        out.remove(n);
    }
    if tie {
        // Copies: an alias weight equal to an input embedding, a decoder bias equal to its
        // head's `bias`. A name is only ever dropped for one `keep_rank` prefers, so the best
        // of a group of equal copies stays.
        let embeddings: Vec<String> = out.keys().filter(|n| is_embedding(n)).cloned().collect();
        let mut copies: Vec<String> = Vec::new();
        for (name, p) in out.iter() {
            if !is_tied_alias(name) {
                continue;
            }
            let better = |other: &str| {
                keep_rank(other) < keep_rank(name) && !copies.iter().any(|c| c == other)
            };
            let same = if let Some(head) = name.strip_suffix("decoder.bias") {
                let b = format!("{head}bias");
                better(&b) && out.get(&b).is_some_and(|b| same_bytes(cks, p, b))
            } else {
                embeddings
                    .iter()
                    .any(|e| better(e) && out.get(e).is_some_and(|emb| same_bytes(cks, p, emb)))
            };
            if same {
                copies.push(name.clone());
            }
        }
        for n in &copies {
            out.remove(n);
        }
        tied.extend(copies);
    }
    tied.sort();
    tied
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
