//! The tensors a checkpoint file holds: its state dict, by the rule `inspect` and the catalog
//! share, split into tensors and other entries.

use ckpt_model::state_dict::NotFound;
use ckpt_torch::{Checkpoint, NodeId, View};

use crate::error::{ConvertError, Result};
use crate::plan::Planned;

/// The state dict: (dotted key, entries as (name, value node)), by the rule `inspect` and the
/// catalog use too ([`ckpt_model::state_dict`]). A TorchScript archive's entries are what
/// `torch.jit.load(f).state_dict()` returns, or an error saying why ckpt cannot name them.
pub(crate) fn find_state_dict(
    ck: &Checkpoint,
    key: Option<&str>,
) -> Result<(String, Vec<(String, NodeId)>)> {
    if ck.torchscript.is_some() && key.is_none() {
        return ckpt_torch::torchscript::export_state_dict(ck)
            .map(|e| (String::new(), e))
            .map_err(|detail| ConvertError::TorchScript {
                path: ck.path.clone(),
                detail,
            });
    }
    match ckpt_model::locate(&ck.doc, key) {
        Ok(l) => {
            let entries = l.entries(&ck.doc);
            Ok((l.path, entries))
        }
        Err(NotFound::Key(key)) => Err(ConvertError::NoKey {
            path: ck.path.clone(),
            key,
        }),
        Err(NotFound::NoStateDict) => Err(ConvertError::NoStateDict {
            path: ck.path.clone(),
        }),
    }
}

/// The state dict's entries: tensors as (name, source 0, tensor) and the non-tensor names.
pub(crate) fn collect_file(
    ck: &Checkpoint,
    entries: Vec<(String, NodeId)>,
) -> (Vec<Planned<'_>>, Vec<String>) {
    let mut raw = Vec::with_capacity(entries.len());
    let mut other = Vec::new();
    for (name, v) in entries {
        match ck.doc.view(v) {
            View::Tensor(t) => raw.push(Planned::one(name, 0, t)),
            _ => other.push(name),
        }
    }
    (raw, other)
}
