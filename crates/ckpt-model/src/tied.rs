//! Tied and shared storages: when two names of a state dict are one tensor, and which of
//! them a Hugging Face model keeps.
//!
//! Two relations, for two questions:
//! - *the same view* ([`view_key`]: storage, offset, shape, strides and dtype all equal) — one
//!   tensor under several names, as `model.state_dict()` gives tied parameters. `convert`
//!   writes such a group once, under [`keep_rank`]'s name.
//! - *the same storage slot* ([`storage_slot`]: storage and offset) — what `inspect` counts
//!   once when it adds up elements and bytes, and lists as `shared` (tied weights, and views
//!   starting where another name's do, such as a transpose). Views at other offsets of one
//!   storage are counted apart.

use ckpt_torch::{DType, TensorRef};

/// Names of input embeddings an output head can be tied to.
pub const EMBEDDINGS: &[&str] = &[
    "wte.weight",
    "embed_tokens.weight",
    "word_embeddings.weight",
    "shared.weight",
    "embed_in.weight",
    "tok_embeddings.weight",
];

/// Identity of the view a tensor is: (storage key, offset, shape, strides, dtype). Equal keys
/// are one tensor under two names.
pub type ViewKey = (String, u64, Vec<u64>, Vec<i64>, DType);

pub fn view_key(t: &TensorRef) -> Option<ViewKey> {
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
pub fn is_tied_alias(name: &str) -> bool {
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
pub fn is_embedding(name: &str) -> bool {
    EMBEDDINGS.iter().any(|e| name.ends_with(e))
}

/// Which name of a tied group is written: not one transformers re-ties (`is_tied_alias`),
/// then an input embedding (the shortest path: T5's `shared.weight` before
/// `encoder.embed_tokens.weight`), then — as `safetensors.torch.save_model` decides — the
/// first in sorted order. The smallest key is kept.
pub fn keep_rank(name: &str) -> (bool, bool, usize, &str) {
    let emb = is_embedding(name);
    let depth = if emb { name.split('.').count() } else { 0 };
    (is_tied_alias(name), !emb, depth, name)
}

/// Where a tensor's bytes start: its storage and offset (`None` for a tensor without a
/// storage, which shares with nothing). Names with equal slots are counted once by `inspect`.
pub fn storage_slot(t: &TensorRef) -> Option<(&str, u64)> {
    t.storage.as_ref().map(|s| (s.key.as_str(), t.offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_one_tensor_only_when_every_part_is_equal() {
        use ckpt_torch::{StorageRef, TensorKind};
        let t = |offset: u64, shape: Vec<u64>, stride: Vec<i64>| TensorRef {
            storage: Some(StorageRef {
                key: "0".into(),
                dtype: DType::F32,
                numel: 64,
                location: "cpu".into(),
                view_offset_bytes: 0,
            }),
            offset,
            shape,
            stride,
            dtype: DType::F32,
            requires_grad: false,
            kind: TensorKind::Tensor,
        };
        let base = t(0, vec![4, 4], vec![4, 1]);
        let transposed = t(0, vec![4, 4], vec![1, 4]);
        let row = t(4, vec![4], vec![1]);
        assert_eq!(view_key(&base), view_key(&base.clone()));
        assert_ne!(view_key(&base), view_key(&transposed));
        // inspect counts the transpose's bytes once (same slot), not the row at offset 4.
        assert_eq!(storage_slot(&base), storage_slot(&transposed));
        assert_ne!(storage_slot(&base), storage_slot(&row));
    }

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
