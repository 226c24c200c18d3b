//! Tied weights: names that view the same bytes (or an output head equal to the input
//! embedding) are written once, under the name transformers keeps.

use std::collections::BTreeMap;

use ckpt_torch::{Checkpoint, DType, TensorRef};

use crate::plan::{From, Planned};

/// Names of input embeddings an output head can be tied to.
pub(crate) const EMBEDDINGS: &[&str] = &[
    "wte.weight",
    "embed_tokens.weight",
    "word_embeddings.weight",
    "shared.weight",
    "embed_in.weight",
    "tok_embeddings.weight",
];

/// Identity of the bytes a tensor views: same storage, offset, shape and strides.
/// (storage key, offset, shape, strides, dtype): equal keys view the same bytes.
pub(crate) type ViewKey = (String, u64, Vec<u64>, Vec<i64>, DType);

pub(crate) fn view_key(t: &TensorRef) -> Option<ViewKey> {
    t.storage.as_ref().map(|s| {
        (
            s.key.clone(),
            t.offset,
            t.shape.clone(),
            t.stride.clone(),
            t.dtype,
        )
    })
}

/// Whether transformers re-ties this name to another on load (the names its models list in
/// `_tied_weights_keys`: output embeddings, BERT/RoBERTa decoder weights and biases, T5/BART
/// encoder and decoder token embeddings tied to `shared`): of a tied group, the name left out.
pub(crate) fn is_tied_alias(name: &str) -> bool {
    let ends = |s: &str| name == s || name.ends_with(&format!(".{s}"));
    ends("lm_head.weight")
        || ends("predictions.decoder.weight")
        || ends("predictions.decoder.bias")
        || ends("lm_head.decoder.weight")
        || ends("lm_head.decoder.bias")
        || ends("encoder.embed_tokens.weight")
        || ends("decoder.embed_tokens.weight")
}

/// Whether this is an input token embedding (GPT-2's `wte`, Llama's `embed_tokens`, BERT's
/// `word_embeddings`, T5's `shared`, …).
pub(crate) fn is_embedding(name: &str) -> bool {
    EMBEDDINGS.iter().any(|e| name.ends_with(e))
}

/// Which name of a tied group is written: not one transformers re-ties (`is_tied_alias`),
/// then an input embedding (the shortest path: T5's `shared.weight` before
/// `encoder.embed_tokens.weight`), then — as `safetensors.torch.save_model` decides — the
/// first in sorted order. The smallest key is kept.
pub(crate) fn keep_rank(name: &str) -> (bool, bool, usize, &str) {
    let emb = is_embedding(name);
    let depth = if emb { name.split('.').count() } else { 0 };
    (is_tied_alias(name), !emb, depth, name)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_a_tied_group_the_name_transformers_keeps_is_written() {
        fn keep<'a>(names: &[&'a str]) -> &'a str {
            names.iter().copied().min_by_key(|n| keep_rank(n)).unwrap()
        }
        // GPT-2, BERT (weight and bias), RoBERTa, OPT, T5, BART: transformers'
        // `_tied_weights_keys` name the other members.
        assert_eq!(
            keep(&["lm_head.weight", "transformer.wte.weight"]),
            "transformer.wte.weight"
        );
        assert_eq!(
            keep(&[
                "cls.predictions.decoder.weight",
                "bert.embeddings.word_embeddings.weight"
            ]),
            "bert.embeddings.word_embeddings.weight"
        );
        assert_eq!(
            keep(&["cls.predictions.decoder.bias", "cls.predictions.bias"]),
            "cls.predictions.bias"
        );
        assert_eq!(
            keep(&["lm_head.decoder.bias", "lm_head.bias"]),
            "lm_head.bias"
        );
        assert_eq!(
            keep(&["lm_head.weight", "model.decoder.embed_tokens.weight"]),
            "model.decoder.embed_tokens.weight"
        );
        assert_eq!(
            keep(&[
                "decoder.embed_tokens.weight",
                "encoder.embed_tokens.weight",
                "lm_head.weight",
                "shared.weight"
            ]),
            "shared.weight"
        );
        assert_eq!(
            keep(&[
                "model.decoder.embed_tokens.weight",
                "model.encoder.embed_tokens.weight",
                "model.shared.weight"
            ]),
            "model.shared.weight"
        );
        // Names no model lists: the first in sorted order, as safetensors' save_model keeps.
        assert_eq!(keep(&["head.weight", "emb.weight"]), "emb.weight");
        assert_eq!(keep(&["z.weight", "a.b.c.weight"]), "a.b.c.weight");
    }
}
