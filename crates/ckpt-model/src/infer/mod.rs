//! State-dict signature inference (source 9 of the resolution chain, `inferred`): what a model
//! is, read from its tensor names, shapes and dtypes alone. Pure: no I/O, no tensor data.
//!
//! One pass over the names. Each name has its wrapper prefixes removed
//! ([`crate::wrappers::strip_wrappers`]), is split into dotted segments, and the segments
//! are matched against *patterns* that may sit anywhere in the name (`transformer.h.N.attn`,
//! `layer1.N.conv1`, `conv_stem`, `head.binarize`), so a Lightning `model.`/`net.` prefix, an
//! `encoder.`/`backbone.` scope or a `bert.`/`vit.` base-model prefix never needs to be known in
//! advance. The facts found are put together once, at the end.
//!
//! What is deliberately *not* inferred (a wrong number is worse than none):
//! - attention head counts, except T5 (its `relative_attention_bias` is `[buckets, heads]`):
//!   GPT-2's fused `c_attn`, BERT/ViT's `query` (`[hidden, hidden]`) and timm's fused `qkv`
//!   carry every head in one matrix, and Llama's `q_proj`/`k_proj` give heads only with a
//!   head_dim assumption, so Llama gets `num_key_value_groups` (= q_out / k_out) instead;
//! - whether an output embedding is tied to the input one: that is a storage fact, so `params`
//!   counts every name it is given and the caller passes one name per storage if it wants tied
//!   weights counted once;
//! - exact model names where the weights do not pin them: `mistral` looks like `llama`,
//!   `efficientnet_lite` like `mobilenet` (v2), and a variant (`b0`, `tiny`, resnet `depth`) is
//!   given only when the block counts and widths match the published configuration exactly.
//!
//! Modules: [`name`] cuts a name into segments; [`text`], [`vision`] and [`parts`] each hold
//! the patterns of one kind of model (text transformers; vision backbones; decoders and
//! heads) and how their facts are put together; this module walks the names once and asks
//! each in turn.

mod name;
mod parts;
mod text;
mod vision;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

#[cfg(doc)]
use crate::wrappers::WRAPPER_PREFIXES;
use crate::wrappers::{Wrappers, strip_wrappers, wrapper_segment};
use name::{MAX_SEGS, Name, numel, split};
use parts::Candidate;

/// One tensor of a state dict, as the caller sees it.
#[derive(Debug, Clone, Copy)]
pub struct TensorSig<'a> {
    pub name: &'a str,
    pub shape: &'a [u64],
    pub dtype: &'a str,
}

/// What the signature says about the model.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Inference {
    /// `gpt2`, `llama`, `bert`, `roberta`, `t5`, `vit`, `resnet`, `mobilenet`, `efficientnet`,
    /// `convnext`; a composite's own name (`dbnet` for a db head, else the decoder's: `unet`,
    /// `fpn`, `pan`); None when nothing matches.
    pub family: Option<String>,
    /// The backbone of an encoder/decoder/head model (`resnet`, `mobilenet`, `efficientnet`,
    /// `vit`, `convnext`); also set when the backbone sits under an `encoder`/`backbone` scope.
    pub encoder: Option<String>,
    /// `pan`, `fpn`, `unet`.
    pub decoder: Option<String>,
    /// `db_head` (binarize + thresh branches), `classifier`, `segmentation_head`, `lm_head`.
    pub head: Option<String>,
    /// Sizes when derivable (`layers`, `hidden_size`, `heads`, `intermediate_size`,
    /// `vocab_size`, `max_positions`, `num_classes`, `patch_size`, …) and the dominant `dtype`.
    pub details: Map<String, Value>,
    /// Sum of numel over the names given (each name once), without buffers that are not
    /// parameters (batch-norm statistics, GPT-2's causal-mask `attn.bias`/`masked_bias`,
    /// `position_ids`, `inv_freq`, …).
    pub params: u64,
    /// Wrapper prefixes removed before matching, in [`WRAPPER_PREFIXES`] order.
    pub stripped_prefixes: Vec<String>,
}

/// Infer the model behind a state dict from its names, shapes and dtypes.
pub fn infer(tensors: &[TensorSig<'_>]) -> Inference {
    infer_each(tensors.iter().copied())
}

/// [`infer`] over tensors as they come (one pass, in order): a caller reading 170,000
/// tensors from a document need not collect their signatures first (issue 10).
pub fn infer_each<'a>(tensors: impl IntoIterator<Item = TensorSig<'a>>) -> Inference {
    let mut scan = Scan::default();
    for t in tensors {
        scan.visit(&t);
    }
    scan.finish()
}
/// Stage indices at or above this are ignored.
const MAX_STAGES: usize = 16;

/// Last segments of buffers that are never parameters.
const BUFFERS: &[&str] = &[
    "running_mean",
    "running_var",
    "num_batches_tracked",
    "position_ids",
    "inv_freq",
    "masked_bias",
    "relative_position_index",
    "token_type_ids",
    "attn_mask",
];

/// Where a backbone was found (its anchor's prefix), to scope classifier heads.
#[derive(Clone, Copy)]
enum Anchor {
    Gpt2,
    Llama,
    Bert,
    T5,
    Vit,
    ResNet,
    Timm,
    TorchVision,
    ConvNext,
}
const ANCHORS: usize = 9;

#[derive(Default)]
struct Scan<'a> {
    params: u64,
    dtypes: Vec<(&'a str, u64)>,
    wrappers: Wrappers,
    flat_param: bool,
    anchors: [Option<String>; ANCHORS],

    // GPT-2
    g_layers: Option<u64>,
    g_c_attn: Option<(u64, u64)>,
    g_fc: Option<u64>,
    wte: Option<(u64, u64)>,
    wpe: Option<(u64, u64)>,
    lm_head: bool,
    lm_head_shape: Option<(u64, u64)>,
    // Llama-style decoders
    l_layers: Option<u64>,
    l_q: Option<(u64, u64)>,
    l_k: Option<u64>,
    l_gate: Option<u64>,
    l_q_bias: bool,
    l_experts: Option<u64>,
    embed_tokens: Option<(u64, u64)>,
    // BERT / HF ViT (`layer.N.attention…`)
    layer_max: Option<u64>,
    bert_hidden: Option<u64>,
    roberta: bool,
    hfvit_hidden: Option<u64>,
    layer_inter: Option<u64>,
    word_emb: Option<(u64, u64)>,
    pos_emb_rows: Option<u64>,
    type_rows: Option<u64>,
    mlm: bool,
    // T5
    t5_enc: Option<u64>,
    t5_dec: Option<u64>,
    t5_q: Option<(u64, u64)>,
    t5_rel: Option<(u64, u64)>,
    t5_ff: Option<u64>,
    t5_gated: bool,
    shared: Option<(u64, u64)>,
    // ViT (timm and HF)
    patch: Option<[u64; 4]>,
    pos_tokens: Option<u64>,
    cls_token: bool,
    dist_token: bool,
    v_layers: Option<u64>,
    v_hidden: Option<u64>,
    v_fc1: Option<u64>,
    // ResNet
    r_stages: [Option<u64>; 4],
    r_bottleneck: bool,
    conv1: Option<(u64, u64)>,
    // timm EfficientNet / MobileNet (`conv_stem`, `blocks.N.M`)
    t_stem: Option<(u64, u64)>,
    t_bn2: bool,
    t_head: Option<u64>,
    t_se: bool,
    t_exp: bool,
    t_k5: bool,
    t_cn: bool,
    t_stages: [Option<u64>; MAX_STAGES],
    // torchvision `features.N…`
    tv_conv: bool,
    tv_block: bool,
    tv_nm_block: bool,
    tv_layer_scale: bool,
    tv_stages: [Option<u64>; MAX_STAGES],
    tv_stem: Option<(u64, u64)>,
    tv_last: Option<(u64, u64)>,
    // ConvNeXt: per stage (max block index, width)
    cx: [Option<(u64, u64)>; MAX_STAGES],
    // decoders
    bottom_up: bool,
    top_down: bool,
    lateral: bool,
    fpn: bool,
    pafpn: bool,
    unet_dec: bool,
    up_blocks: bool,
    down_blocks: bool,
    up_n: bool,
    down_n: bool,
    // heads
    binarize: bool,
    thresh: bool,
    seg_head: bool,
    seg_classes: Option<u64>,
    candidates: Vec<Candidate>,
}

impl<'a> Scan<'a> {
    fn visit(&mut self, t: &TensorSig<'a>) {
        let owned: String;
        let mut segs = [""; MAX_SEGS];
        let mut starts = [0usize; MAX_SEGS];
        let Some(mut n) = split(t.name, &mut segs, &mut starts) else {
            // Too deep to match: counted only.
            let last = t.name.rsplit('.').next().unwrap_or("");
            if !BUFFERS.contains(&last) {
                self.count(t.dtype, numel(t.shape));
            }
            return;
        };
        // Wrappers are whole segments (DDP's `module` only in the leading run, as
        // strip_wrappers has it): check them on the split name, strip only when present.
        let mut wrapped = false;
        let mut leading = true;
        for s in &segs[..n - 1] {
            match wrapper_segment(s, leading) {
                Some(k) => {
                    self.wrappers.insert(k);
                    wrapped = true;
                }
                None => leading = false,
            }
        }
        let name = if wrapped {
            owned = strip_wrappers(t.name);
            // Stripping only removes segments, so this split succeeds too.
            n = split(&owned, &mut segs, &mut starts).unwrap_or(0);
            if n == 0 {
                return;
            }
            owned.as_str()
        } else {
            t.name
        };
        let shape = t.shape;
        let last = segs[n - 1];
        let prev = if n >= 2 { segs[n - 2] } else { "" };

        // Parameters.
        let buffer = BUFFERS.contains(&last)
            || (last == "bias"
                && prev == "attn"
                && shape.len() == 4
                && shape[0] == 1
                && shape[1] == 1);
        if !buffer {
            self.count(t.dtype, numel(shape));
        }

        let mut nm = Name {
            name,
            segs: &segs[..n],
            starts: &starts[..n],
            n,
            shape,
            in_dec: false,
        };
        for (i, &s) in segs[..n].iter().enumerate() {
            // Indices and leaf names anchor nothing.
            if s.as_bytes().first().is_some_and(u8::is_ascii_digit) || s == "weight" || s == "bias"
            {
                continue;
            }
            match s {
                "decoder" | "neck" => nm.in_dec = true,
                "_flat_param" => self.flat_param = true,
                _ => {
                    // Each kind of model's patterns are distinct names, so the order only
                    // matters for the prefix patterns, which apply when nothing else did.
                    let matched = self.visit_text(&nm, i, s)
                        || self.visit_vision(&nm, i, s)
                        || self.visit_parts(&nm, i, s);
                    if !matched {
                        self.visit_part_prefix(&nm, s);
                    }
                }
            }
        }
    }

    fn count(&mut self, dtype: &'a str, k: u64) {
        self.params = self.params.saturating_add(k);
        match self.dtypes.iter_mut().find(|(d, _)| *d == dtype) {
            Some((_, e)) => *e = e.saturating_add(k),
            None => self.dtypes.push((dtype, k)),
        }
    }

    fn note(&mut self, a: Anchor, prefix: &str) {
        let slot = &mut self.anchors[a as usize];
        if slot.is_none() {
            *slot = Some(prefix.to_owned());
        }
    }

    fn finish(self) -> Inference {
        let mut out = Inference {
            params: self.params,
            stripped_prefixes: self.wrappers.iter().map(str::to_owned).collect(),
            ..Inference::default()
        };
        let mut det = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                det.insert(k.to_owned(), v);
            }
        };
        // Text transformers first: their names are the most specific.
        if !self.finish_text(&mut out, &mut put) {
            self.finish_vision(&mut out, &mut put);
        }
        if self.flat_param {
            put("flat_params", Some(true.into()));
        }
        let dtype = self
            .dtypes
            .iter()
            .fold(None::<(&str, u64)>, |best, (d, e)| match best {
                Some((_, b)) if b >= *e => best,
                _ => Some((d, *e)),
            });
        put("dtype", dtype.map(|(d, _)| d.into()));
        out.details = det;
        out
    }
}
