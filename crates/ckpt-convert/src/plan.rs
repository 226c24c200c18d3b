//! The plan: each tensor to write with its output name and where its bytes come from, checked
//! (dtypes, flattened FSDP parameters, name collisions, sizes) before anything is written.

use std::collections::BTreeMap;
use std::path::Path;

use ckpt_torch::{Checkpoint, DType, TensorRef};

use crate::error::{ConvertError, Result};
use crate::names::rename;
use crate::options::ConvertOptions;
use crate::safetensors::st_dtype;
use crate::tie::untie;

/// A tensor to write: its output name, its dtype and shape (`t`), and where its bytes are.
/// 64 bytes, whatever the tensor: `t` borrows the source checkpoint's tensor (a copy of every
/// `TensorRef` cost 160 bytes and three allocations a tensor, 40 MB on a 170,000-tensor file).
#[derive(Debug, Clone)]
pub(crate) struct Planned<'a> {
    pub(crate) name: String,
    pub(crate) t: Tref<'a>,
    pub(crate) from: From,
}

/// A tensor of a source checkpoint, or one made for the plan (a DCP tensor reassembled from
/// its chunks).
#[derive(Debug, Clone)]
pub(crate) enum Tref<'a> {
    Borrowed(&'a TensorRef),
    Owned(Box<TensorRef>),
}

impl std::ops::Deref for Tref<'_> {
    type Target = TensorRef;
    fn deref(&self) -> &TensorRef {
        match self {
            Tref::Borrowed(t) => t,
            Tref::Owned(t) => t,
        }
    }
}

/// Where a planned tensor's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum From {
    /// `t` itself, in the source checkpoint with this index.
    One(usize),
    /// A DCP tensor sharded across ranks: its chunks, which tile it exactly; `t` only carries
    /// the global shape and dtype.
    Chunks(Vec<crate::dcp::Chunk>),
}

impl<'a> Planned<'a> {
    pub(crate) fn one(name: String, src: usize, t: &'a TensorRef) -> Self {
        Planned {
            name,
            t: Tref::Borrowed(t),
            from: From::One(src),
        }
    }
}

/// Check, rename, de-duplicate tied heads, sort: the tensors to write and the tied names left
/// out.
pub(crate) fn finish_plan<'a>(
    raw: Vec<Planned<'a>>,
    cks: &[Checkpoint],
    path: &Path,
    opts: &ConvertOptions,
    tie: bool,
) -> Result<(Vec<Planned<'a>>, Vec<String>)> {
    let mut out: BTreeMap<String, Planned> = BTreeMap::new();
    for Planned { name, t, from } in raw {
        if name.ends_with("_flat_param") || name.contains("_flat_param.") {
            return Err(ConvertError::FlatParam {
                path: path.to_path_buf(),
                name,
            });
        }
        if st_dtype(t.dtype).is_none() {
            return Err(ConvertError::Dtype {
                path: path.to_path_buf(),
                dtype: t.dtype.name().to_owned(),
            });
        }
        let new = rename(&name, opts);
        let planned = Planned {
            name: new.clone(),
            t,
            from,
        };
        if out.insert(new.clone(), planned).is_some() {
            return Err(ConvertError::Collision {
                path: path.to_path_buf(),
                name: new,
            });
        }
    }
    let tied = untie(&mut out, cks, tie);
    Ok((out.into_values().collect(), tied))
}

/// Bytes a conversion may write beyond those its tensors' storages hold. A view saved with
/// its storage is written in full, and an expanded one (stride 0: `x.expand(…)`) repeats its
/// storage; real checkpoints hold a few small ones (`position_ids`), a crafted file can claim
/// terabytes from a few bytes.
pub(crate) const MAX_REPEATED_BYTES: u64 = 1 << 30;

/// Refuse tensors whose output size overflows, or whose views repeat their storage into more
/// than `MAX_REPEATED_BYTES` in all: checked before anything is written.
pub(crate) fn check_sizes(tensors: &[Planned], path: &Path, cast: Option<DType>) -> Result<()> {
    let err = |detail: String| ConvertError::Size {
        path: path.to_path_buf(),
        detail,
    };
    let mut total: u64 = 0;
    let mut repeated: u64 = 0;
    for p in tensors {
        let n =
            p.t.shape
                .iter()
                .try_fold(1u64, |a, d| a.checked_mul(*d))
                .and_then(|n| n.checked_mul(crate::cast::target_dtype(p.t.dtype, cast).size()))
                .ok_or_else(|| err(format!("{}: shape {:?} is too large", p.name, p.t.shape)))?;
        total = total
            .checked_add(n)
            .ok_or_else(|| err("the tensors' sizes add up to more than 2^64 bytes".into()))?;
        let views: Vec<&TensorRef> = match &p.from {
            From::One(_) => vec![&*p.t],
            From::Chunks(chunks) => chunks.iter().map(|c| &c.t).collect(),
        };
        for t in views {
            let span = ckpt_torch::tensor_span(t, u64::MAX).map_or(0, |(_, len)| len);
            repeated = repeated.saturating_add(t.nbytes().saturating_sub(span));
        }
        if repeated > MAX_REPEATED_BYTES {
            return Err(err(format!(
                "{}: views repeat their storage into {repeated} bytes more than the checkpoint holds (at most {MAX_REPEATED_BYTES} are written)",
                p.name
            )));
        }
    }
    Ok(())
}
