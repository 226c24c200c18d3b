//! The plan: each tensor to write with its output name and where its bytes come from, checked
//! (dtypes, flattened FSDP parameters, name collisions, sizes) before anything is written.

use std::path::Path;

use ckpt_torch::{Checkpoint, DType, TensorRef};

use crate::error::{ConvertError, Result};
use crate::names::rename;
use crate::options::ConvertOptions;
use crate::safetensors::st_dtype;
use crate::tie::untie;

/// A tensor to write: its output name, its dtype and shape (`t`), and where its bytes are.
/// 64 bytes, whatever the tensor: `t` borrows the source checkpoint's tensor (a copy of every
/// `TensorRef` cost 160 bytes and three allocations a tensor, over 30 MB on a 170,000-tensor
/// file, and the plan was copied three times on its way).
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
/// out. Done in place on `raw` (renamed, then sorted by name): no map of the plans, no second
/// copy of them. The first problem in `raw`'s order is reported, as checking one tensor after
/// the other would: a flattened FSDP parameter, a dtype safetensors cannot hold, or a name
/// that an earlier tensor already has once renamed.
pub(crate) fn finish_plan<'a>(
    mut raw: Vec<Planned<'a>>,
    cks: &[Checkpoint],
    path: &Path,
    opts: &ConvertOptions,
    tie: bool,
) -> Result<(Vec<Planned<'a>>, Vec<String>)> {
    let mut failed: Option<(usize, ConvertError)> = None;
    for (i, p) in raw.iter_mut().enumerate() {
        if p.name.ends_with("_flat_param") || p.name.contains("_flat_param.") {
            failed = Some((
                i,
                ConvertError::FlatParam {
                    path: path.to_path_buf(),
                    name: std::mem::take(&mut p.name),
                },
            ));
            break;
        }
        if st_dtype(p.t.dtype).is_none() {
            failed = Some((
                i,
                ConvertError::Dtype {
                    path: path.to_path_buf(),
                    dtype: p.t.dtype.name().to_owned(),
                },
            ));
            break;
        }
        p.name = rename(&p.name, opts);
    }
    let checked = failed.as_ref().map_or(raw.len(), |(i, _)| *i);
    if let Some(c) = first_repeat(raw.get(..checked).unwrap_or(&[])) {
        return Err(ConvertError::Collision {
            path: path.to_path_buf(),
            name: raw.get(c).map(|p| p.name.clone()).unwrap_or_default(),
        });
    }
    if let Some((_, e)) = failed {
        return Err(e);
    }
    raw.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let tied = untie(&mut raw, cks, tie);
    Ok((raw, tied))
}

/// The first index (in order) whose name an earlier plan already has.
fn first_repeat(plans: &[Planned]) -> Option<usize> {
    let mut order: Vec<usize> = (0..plans.len()).collect();
    let name = |i: usize| plans.get(i).map_or("", |p| p.name.as_str());
    order.sort_unstable_by(|a, b| name(*a).cmp(name(*b)).then(a.cmp(b)));
    order
        .windows(2)
        .filter(|w| name(w[0]) == name(w[1]))
        .map(|w| w[1])
        .min()
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

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_torch::TensorKind;

    fn p(name: &str, dtype: DType) -> Planned<'static> {
        Planned {
            name: name.to_owned(),
            t: Tref::Owned(Box::new(TensorRef {
                dtype,
                shape: vec![1],
                stride: vec![1],
                offset: 0,
                storage: None,
                requires_grad: false,
                kind: TensorKind::Tensor,
            })),
            from: From::One(0),
        }
    }

    fn plan(raw: Vec<Planned<'static>>, strip: &[&str]) -> Result<Vec<String>> {
        let mut opts = ConvertOptions::safetensors(u64::MAX, None);
        opts.strip_prefix = strip.iter().map(|s| (*s).to_owned()).collect();
        finish_plan(raw, &[], Path::new("x.pt"), &opts, true)
            .map(|(t, _)| t.into_iter().map(|p| p.name).collect())
    }

    /// Checked in place, the plan still reports the first problem in the state dict's order
    /// (a name repeated once renamed, a flattened FSDP parameter, a dtype safetensors cannot
    /// hold), and comes out renamed and sorted.
    #[test]
    fn the_first_problem_in_order_is_reported() {
        let f32 = DType::F32;
        let e = plan(
            vec![p("m.a", f32), p("a", f32), p("x._flat_param", f32)],
            &["m."],
        );
        assert!(matches!(e, Err(ConvertError::Collision { name, .. }) if name == "a"));
        let e = plan(
            vec![p("m.a", f32), p("x._flat_param", f32), p("a", f32)],
            &["m."],
        );
        assert!(matches!(e, Err(ConvertError::FlatParam { name, .. }) if name == "x._flat_param"));
        let e = plan(vec![p("b", f32), p("c", DType::C128), p("b", f32)], &[]);
        assert!(matches!(e, Err(ConvertError::Dtype { .. })));
        let ok = plan(vec![p("m.c", f32), p("b", f32), p("m.a", f32)], &["m."]).unwrap();
        assert_eq!(ok, vec!["a", "b", "c"]);
    }
}
