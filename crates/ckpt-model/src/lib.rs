//! Knowledge of models, from names, shapes and dtypes only — never tensor data, never code:
//! which mapping of a checkpoint is the state dict ([`state_dict`]), the wrapper prefixes
//! training frameworks add to names ([`wrappers`]), tied weights and shared storages
//! ([`tied`]), what `inspect` shows of a checkpoint's state dicts ([`summary`]) and what
//! architecture a state dict is ([`infer`]).
//!
//! It sits above the containers (`ckpt-torch`) and below everything that needs one answer to
//! "what model is this": the sidecar writer (`ckpt-meta`), the catalog and `convert`.

pub mod infer;
pub mod state_dict;
pub mod summary;
pub mod tied;
pub mod wrappers;

pub use infer::{Inference, TensorSig, infer, infer_each};
pub use state_dict::{Located, locate};
pub use summary::Summarize;

use ckpt_torch::{Doc, View};

/// The model's state dict ([`locate`]) and what its names, shapes and dtypes say
/// ([`infer`]): the one call the catalog's `inferred` source and the sidecar writer need, so
/// both infer from the same tensors. `None` when the checkpoint holds no state dict.
pub fn infer_checkpoint(doc: &Doc) -> Option<(Located, Inference)> {
    let located = locate(doc, None).ok()?;
    let entries = located.entries(doc);
    let sigs: Vec<TensorSig<'_>> = entries
        .iter()
        .filter_map(|(name, v)| match doc.view(*v) {
            View::Tensor(t) => Some(TensorSig {
                name,
                shape: &t.shape,
                dtype: t.dtype.name(),
            }),
            _ => None,
        })
        .collect();
    let inference = infer(&sigs);
    Some((located, inference))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ckpt_torch::Checkpoint;

    use super::*;

    fn open(rel: &str) -> Checkpoint {
        Checkpoint::open(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(rel),
        )
        .unwrap()
    }

    /// The FSDP example: GPT-2 under `model`, wrappers stripped before matching.
    #[test]
    fn a_checkpoint_is_inferred_from_its_located_state_dict() {
        let ck = open("examples/fsdp/epoch-001.pth");
        let (at, inf) = infer_checkpoint(&ck.doc).unwrap();
        assert_eq!(at.path, "model");
        assert_eq!(inf.family.as_deref(), Some("gpt2"));
        assert_eq!(inf.stripped_prefixes, ["_fsdp_wrapped_module."]);
        assert_eq!(inf.details["layers"], 2);
    }

    /// The EMA copy saved first is not what is inferred from (fixtures/state_dict).
    #[test]
    fn the_ema_copy_is_not_the_model() {
        let ck = open("fixtures/state_dict/ema_first.ckpt");
        let (at, inf) = infer_checkpoint(&ck.doc).unwrap();
        assert_eq!(at.path, "state_dict");
        // conv + bn + linear: stem 4*3*3*3+4, bn 4+4, fc 2*4+2.
        assert_eq!(inf.params, 112 + 8 + 10);
    }

    /// A plain value holds no state dict.
    #[test]
    fn nothing_to_infer_from_a_list() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("list.pt");
        // protocol 2: PROTO 2, EMPTY_LIST, STOP
        std::fs::write(&p, [0x80, 2, b']', b'.']).unwrap();
        let ck = Checkpoint::open(&p).unwrap();
        assert!(infer_checkpoint(&ck.doc).is_none());
    }
}
