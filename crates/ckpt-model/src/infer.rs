//! State-dict signature inference (source 9 of the resolution chain, `inferred`): what a model
//! is, read from its tensor names, shapes and dtypes alone. Pure: no I/O, no tensor data.
//!
//! One pass over the names. Each name has its wrapper prefixes removed
//! ([`ckpt_torch::summary::strip_wrappers`]), is split into dotted segments, and the segments
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

use ckpt_torch::summary::{WRAPPER_PREFIXES, strip_wrappers};
use serde_json::{Map, Value};

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
    let mut scan = Scan::default();
    for t in tensors {
        scan.visit(t);
    }
    scan.finish()
}

/// Names deeper than this are counted but not matched.
const MAX_SEGS: usize = 32;
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

/// timm EfficientNet (and torchvision, which scales the same way) `(blocks, head channels)`.
const EFFICIENTNET_VARIANTS: &[(u64, u64, &str)] = &[
    (16, 1280, "b0"),
    (23, 1280, "b1"),
    (23, 1408, "b2"),
    (26, 1536, "b3"),
    (32, 1792, "b4"),
    (39, 2048, "b5"),
    (45, 2304, "b6"),
    (55, 2560, "b7"),
];

/// ConvNeXt `(depths, first stage width)`.
const CONVNEXT_VARIANTS: &[(&[u64], u64, &str)] = &[
    (&[2, 2, 6, 2], 40, "atto"),
    (&[2, 2, 6, 2], 48, "femto"),
    (&[2, 2, 6, 2], 64, "pico"),
    (&[2, 2, 8, 2], 80, "nano"),
    (&[3, 3, 9, 3], 96, "tiny"),
    (&[3, 3, 27, 3], 96, "small"),
    (&[3, 3, 27, 3], 128, "base"),
    (&[3, 3, 27, 3], 192, "large"),
    (&[3, 3, 27, 3], 256, "xlarge"),
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

/// A linear layer that may be the classifier (`fc`, `head`, `head.fc`, `classifier[.N]`,
/// `classifier.out_proj`, `last_linear`, `score`).
struct Candidate {
    prefix: String,
    index: u64,
    classes: u64,
}

#[derive(Default)]
struct Scan<'a> {
    params: u64,
    dtypes: Vec<(&'a str, u64)>,
    wrappers: [bool; 8],
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

/// A small decimal index (`0`, `11`), as module lists name their children.
fn num(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn raise(slot: &mut Option<u64>, v: u64) {
    *slot = Some(slot.map_or(v, |o| o.max(v)));
}

fn first<T>(slot: &mut Option<T>, v: T) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

fn numel(shape: &[u64]) -> u64 {
    shape.iter().fold(1u64, |a, d| a.saturating_mul(*d))
}

/// Split a dotted name into `segs`/`starts` (byte offsets); None when deeper than MAX_SEGS.
fn split<'s>(
    name: &'s str,
    segs: &mut [&'s str; MAX_SEGS],
    starts: &mut [usize; MAX_SEGS],
) -> Option<usize> {
    // A byte loop: names are short, and segments shorter still (memchr per segment costs more).
    let mut n = 0;
    let mut start = 0;
    for (i, b) in name.bytes().enumerate() {
        if b == b'.' {
            if n + 1 == MAX_SEGS {
                return None;
            }
            segs[n] = &name[start..i];
            starts[n] = start;
            n += 1;
            start = i + 1;
        }
    }
    segs[n] = &name[start..];
    starts[n] = start;
    n += 1;
    Some(n)
}

/// `prefix` is `anchor` or one of its dotted ancestors (`""` is everyone's).
fn scopes(prefix: &str, anchor: &str) -> bool {
    prefix.is_empty()
        || anchor == prefix
        || (anchor.starts_with(prefix) && anchor.as_bytes().get(prefix.len()) == Some(&b'.'))
}

fn upn(s: &str, word: &str) -> bool {
    s.len() > word.len() && s.starts_with(word) && num(&s[word.len()..]).is_some()
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
            let k = if s.starts_with('_') || (leading && *s == "module") {
                WRAPPER_PREFIXES
                    .iter()
                    .position(|p| p.len() == s.len() + 1 && p.starts_with(*s))
            } else {
                None
            };
            match k {
                Some(k) => {
                    if let Some(seen) = self.wrappers.get_mut(k) {
                        *seen = true;
                    }
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

        let seg = |i: usize| if i < n { segs[i] } else { "" };
        // Segment `j` is the last one and reads `s`.
        let ends = |j: usize, s: &str| j + 1 == n && segs[j] == s;
        let prefix = |i: usize| if i == 0 { "" } else { &name[..starts[i] - 1] };
        let prev_num = |i: usize| i > 0 && num(segs[i - 1]).is_some();
        let d = |k: usize| shape.get(k).copied().unwrap_or(0);
        let w2 = |j: usize| ends(j, "weight") && shape.len() == 2;
        let w4 = |j: usize| ends(j, "weight") && shape.len() == 4;

        let mut in_dec = false;
        for i in 0..n {
            let s = segs[i];
            // Indices and leaf names anchor nothing.
            if s.as_bytes().first().is_some_and(u8::is_ascii_digit) || s == "weight" || s == "bias"
            {
                continue;
            }
            match s {
                "decoder" | "neck" => in_dec = true,
                // GPT-2: transformer.h.N.{attn.c_attn, mlp.c_fc, ln_1, ln_2}, wte, wpe.
                "h" => {
                    let Some(k) = num(seg(i + 1)) else { continue };
                    match seg(i + 2) {
                        "attn" => {
                            if seg(i + 3) == "c_attn" && w2(i + 4) {
                                first(&mut self.g_c_attn, (d(0), d(1)));
                                self.note(Anchor::Gpt2, prefix(i));
                            }
                        }
                        "mlp" => {
                            if seg(i + 3) == "c_fc" && w2(i + 4) {
                                first(&mut self.g_fc, d(1));
                            }
                        }
                        "ln_1" | "ln_2" => {}
                        _ => continue,
                    }
                    raise(&mut self.g_layers, k);
                }
                "wte" if w2(i + 1) => first(&mut self.wte, (d(0), d(1))),
                "wpe" if w2(i + 1) => first(&mut self.wpe, (d(0), d(1))),
                "lm_head" => {
                    self.lm_head = true;
                    if w2(i + 1) {
                        first(&mut self.lm_head_shape, (d(0), d(1)));
                    }
                }
                // Llama-style: layers.N.{self_attn.q_proj, mlp.gate_proj, …}.
                "layers" => {
                    let Some(k) = num(seg(i + 1)) else { continue };
                    match seg(i + 2) {
                        "self_attn" => match seg(i + 3) {
                            "q_proj" => {
                                if w2(i + 4) {
                                    first(&mut self.l_q, (d(0), d(1)));
                                    self.note(Anchor::Llama, prefix(i));
                                } else if ends(i + 4, "bias") {
                                    self.l_q_bias = true;
                                }
                            }
                            "k_proj" if w2(i + 4) => first(&mut self.l_k, d(0)),
                            _ => {}
                        },
                        "mlp" | "block_sparse_moe" => match seg(i + 3) {
                            "gate_proj" if w2(i + 4) => first(&mut self.l_gate, d(0)),
                            "experts" => {
                                if let Some(e) = num(seg(i + 4)) {
                                    raise(&mut self.l_experts, e);
                                    if matches!(seg(i + 5), "w1" | "gate_proj") && w2(i + 6) {
                                        first(&mut self.l_gate, d(0));
                                    }
                                }
                            }
                            _ => {}
                        },
                        "input_layernorm" | "post_attention_layernorm" => {}
                        _ => continue,
                    }
                    raise(&mut self.l_layers, k);
                }
                "embed_tokens" if w2(i + 1) => first(&mut self.embed_tokens, (d(0), d(1))),
                // BERT (layer.N.attention.self.query) and HF ViT (layer.N.attention.attention.query).
                "layer" => {
                    let Some(k) = num(seg(i + 1)) else { continue };
                    match seg(i + 2) {
                        "attention" => match (seg(i + 3), seg(i + 4)) {
                            ("self", "query") if w2(i + 5) => {
                                first(&mut self.bert_hidden, d(0));
                                self.roberta |= prefix(i).contains("roberta");
                                self.note(Anchor::Bert, prefix(i));
                            }
                            ("attention", "query") if w2(i + 5) => {
                                first(&mut self.hfvit_hidden, d(0));
                                self.note(Anchor::Vit, prefix(i));
                            }
                            _ => {}
                        },
                        "intermediate" => {
                            if seg(i + 3) == "dense" && w2(i + 4) {
                                first(&mut self.layer_inter, d(0));
                            }
                        }
                        "output" => {}
                        _ => continue,
                    }
                    raise(&mut self.layer_max, k);
                }
                "word_embeddings" if w2(i + 1) => first(&mut self.word_emb, (d(0), d(1))),
                "position_embeddings" => {
                    if w2(i + 1) {
                        first(&mut self.pos_emb_rows, d(0));
                    } else if i + 1 == n && shape.len() == 3 {
                        first(&mut self.pos_tokens, d(1));
                    }
                }
                "token_type_embeddings" if w2(i + 1) => first(&mut self.type_rows, d(0)),
                "cls" if seg(i + 1) == "predictions" => self.mlm = true,
                // T5: {encoder,decoder}.block.N.layer.K.{SelfAttention, DenseReluDense, …}.
                "block" => {
                    let (Some(k), true, Some(_)) =
                        (num(seg(i + 1)), seg(i + 2) == "layer", num(seg(i + 3)))
                    else {
                        continue;
                    };
                    match seg(i + 4) {
                        "SelfAttention" => match seg(i + 5) {
                            "q" if w2(i + 6) => {
                                first(&mut self.t5_q, (d(0), d(1)));
                                self.note(Anchor::T5, prefix(i));
                            }
                            "relative_attention_bias" if w2(i + 6) => {
                                first(&mut self.t5_rel, (d(0), d(1)));
                            }
                            _ => {}
                        },
                        "DenseReluDense" => match seg(i + 5) {
                            "wi" if w2(i + 6) => first(&mut self.t5_ff, d(0)),
                            "wi_0" if w2(i + 6) => {
                                first(&mut self.t5_ff, d(0));
                                self.t5_gated = true;
                            }
                            _ => {}
                        },
                        "EncDecAttention" | "layer_norm" => {}
                        _ => continue,
                    }
                    match if i > 0 { segs[i - 1] } else { "" } {
                        "encoder" => raise(&mut self.t5_enc, k),
                        "decoder" => raise(&mut self.t5_dec, k),
                        _ => {}
                    }
                }
                "shared" if w2(i + 1) => first(&mut self.shared, (d(0), d(1))),
                // ViT embeddings (timm patch_embed.proj, HF patch_embeddings.projection).
                "patch_embed" if seg(i + 1) == "proj" && w4(i + 2) => {
                    first(&mut self.patch, [d(0), d(1), d(2), d(3)]);
                }
                "patch_embeddings" if seg(i + 1) == "projection" && w4(i + 2) => {
                    first(&mut self.patch, [d(0), d(1), d(2), d(3)]);
                }
                "cls_token" if i + 1 == n => self.cls_token = true,
                "dist_token" if i + 1 == n => self.dist_token = true,
                "pos_embed" if i + 1 == n && shape.len() == 3 => first(&mut self.pos_tokens, d(1)),
                "blocks" => {
                    let Some(k) = num(seg(i + 1)) else { continue };
                    if in_dec && seg(i + 2) == "conv1" {
                        // segmentation_models_pytorch's U-Net decoder.
                        self.unet_dec = true;
                    } else if prev_num(i) {
                        // stages.N.blocks / layers.N.blocks (ConvNeXt, Swin): not these.
                    } else if let Some(m) = num(seg(i + 2)) {
                        // timm EfficientNet/MobileNet: blocks.STAGE.BLOCK.*
                        if let Some(slot) = self.t_stages.get_mut(k as usize) {
                            raise(slot, m);
                        }
                        match seg(i + 3) {
                            "conv_dw" if w4(i + 4) && d(3) == 5 => self.t_k5 = true,
                            "se" => self.t_se = true,
                            "conv_exp" => self.t_exp = true,
                            "conv" => self.t_cn = true,
                            _ => {}
                        }
                    } else if seg(i + 2) == "attn" && seg(i + 3) == "qkv" && w2(i + 4) {
                        raise(&mut self.v_layers, k);
                        first(&mut self.v_hidden, d(1));
                        self.note(Anchor::Vit, prefix(i));
                    } else if seg(i + 2) == "mlp" && seg(i + 3) == "fc1" && w2(i + 4) {
                        first(&mut self.v_fc1, d(0));
                    }
                }
                // ResNet: layer1..layer4.N.{conv1, conv2, conv3, bn*, downsample}.
                "layer1" | "layer2" | "layer3" | "layer4" => {
                    let Some(k) = num(seg(i + 1)) else { continue };
                    let stage = usize::from(s.as_bytes()[5] - b'1');
                    match seg(i + 2) {
                        "conv3" => self.r_bottleneck = true,
                        "conv1" | "conv2" | "bn1" | "bn2" | "bn3" | "downsample" => {}
                        _ => continue,
                    }
                    raise(&mut self.r_stages[stage], k);
                    self.note(Anchor::ResNet, prefix(i));
                }
                "conv1" if !prev_num(i) && w4(i + 1) => first(&mut self.conv1, (d(0), d(1))),
                // timm EfficientNet/MobileNet stem and head.
                "conv_stem" if w4(i + 1) => {
                    first(&mut self.t_stem, (d(0), d(1)));
                    self.note(Anchor::Timm, prefix(i));
                }
                "bn2" if !prev_num(i) && ends(i + 1, "weight") => self.t_bn2 = true,
                "conv_head" if !prev_num(i) && w4(i + 1) => first(&mut self.t_head, d(0)),
                // torchvision MobileNetV2/V3, EfficientNet, ConvNeXt: features.N…
                "features" => {
                    let Some(k) = num(seg(i + 1)) else { continue };
                    self.note(Anchor::TorchVision, prefix(i));
                    let inner = num(seg(i + 3));
                    match (seg(i + 2), num(seg(i + 2))) {
                        ("conv", _) if inner.is_some() => self.tv_conv = true,
                        ("block", _) if inner.is_some() => self.tv_block = true,
                        (_, Some(m)) => match seg(i + 3) {
                            "block" => {
                                self.tv_nm_block = true;
                                if let Some(slot) = self.tv_stages.get_mut(k as usize) {
                                    raise(slot, m);
                                }
                                if seg(i + 4) == "0" && w4(i + 5) && d(1) == 1 && d(2) == 7 {
                                    self.convnext_stage(k, m, d(0));
                                }
                            }
                            "layer_scale" => self.tv_layer_scale = true,
                            "weight" if w4(i + 3) => {
                                if k == 0 && m == 0 {
                                    first(&mut self.tv_stem, (d(0), d(1)));
                                }
                                if d(2) == 1 && d(3) == 1 && self.tv_last.is_none_or(|(l, _)| k > l)
                                {
                                    self.tv_last = Some((k, d(0)));
                                }
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                }
                // ConvNeXt: timm stages.N.blocks.M.conv_dw, FB stages.N.M.dwconv,
                // HF stages.N.layers.M.dwconv.
                "stages" => {
                    let Some(k) = num(seg(i + 1)) else { continue };
                    let (m, at) = match (seg(i + 2), num(seg(i + 2))) {
                        ("blocks" | "layers", _) => (num(seg(i + 3)), i + 4),
                        (_, Some(m)) => (Some(m), i + 3),
                        _ => continue,
                    };
                    if let Some(m) = m
                        && matches!(seg(at), "conv_dw" | "dwconv")
                        && w4(at + 1)
                        && d(1) == 1
                        && d(2) == 7
                    {
                        self.convnext_stage(k, m, d(0));
                        self.note(Anchor::ConvNext, prefix(i));
                    }
                }
                // Decoders.
                "bottom_up" => self.bottom_up = true,
                "top_down" => self.top_down = true,
                "pafpn_convs" => self.pafpn = true,
                "inner_blocks" | "layer_blocks" | "seg_blocks" | "skip_conv" => self.fpn = true,
                "in2" | "in3" | "in4" | "in5" | "out2" | "out3" | "out4" | "out5" | "p5" | "p4"
                    if in_dec =>
                {
                    self.fpn = true;
                }
                "up" | "ups" | "upconv" | "upconvs" | "up_convs" | "upsamples" if in_dec => {
                    self.unet_dec = true;
                }
                "up_blocks" => self.up_blocks = true,
                "down_blocks" => self.down_blocks = true,
                // Heads.
                "binarize" => self.binarize = true,
                "thresh" => self.thresh = true,
                "segmentation_head" => {
                    self.seg_head = true;
                    if num(seg(i + 1)).is_some() && w4(i + 2) {
                        first(&mut self.seg_classes, d(0));
                    }
                }
                "fc" | "head" | "classifier" | "last_linear" | "score" => {
                    let index = num(seg(i + 1));
                    let ok = w2(i + 1)
                        || (s == "head" && seg(i + 1) == "fc" && w2(i + 2))
                        || (s == "classifier" && index.is_some() && w2(i + 2))
                        || (s == "classifier" && seg(i + 1) == "out_proj" && w2(i + 2));
                    if ok {
                        self.candidates.push(Candidate {
                            prefix: prefix(i).to_owned(),
                            index: index.unwrap_or(0),
                            classes: d(0),
                        });
                    }
                }
                "_flat_param" => self.flat_param = true,
                _ => {
                    let b = s.as_bytes();
                    match b.first() {
                        Some(b'l') if s.starts_with("lateral") => self.lateral = true,
                        Some(b'f') if s.starts_with("fpn") => self.fpn = true,
                        Some(b'u') if upn(s, "up") => {
                            self.up_n = true;
                            self.unet_dec |= in_dec;
                        }
                        Some(b'd') if upn(s, "down") => self.down_n = true,
                        _ => {}
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

    fn convnext_stage(&mut self, stage: u64, block: u64, width: u64) {
        if let Some(slot) = self.cx.get_mut(stage as usize) {
            let m = slot.map_or(block, |(o, _)| o.max(block));
            *slot = Some((m, width));
        }
    }

    /// The classifier head scoped at (or above) the backbone found at `anchor`.
    fn classifier(&self, anchor: Anchor) -> Option<u64> {
        let at = self.anchors[anchor as usize].as_deref()?;
        self.candidates
            .iter()
            .filter(|c| scopes(&c.prefix, at))
            .max_by_key(|c| (c.prefix.len(), c.index))
            .map(|c| c.classes)
    }

    fn finish(self) -> Inference {
        let mut out = Inference {
            params: self.params,
            stripped_prefixes: WRAPPER_PREFIXES
                .iter()
                .zip(self.wrappers)
                .filter(|(_, seen)| *seen)
                .map(|(p, _)| (*p).to_owned())
                .collect(),
            ..Inference::default()
        };
        let mut det = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                det.insert(k.to_owned(), v);
            }
        };
        let vocab_from_head = self.lm_head_shape.map(|(v, _)| v);

        // Text transformers first: their names are the most specific.
        if let Some((inner, d_model)) = self.t5_q {
            out.family = Some("t5".into());
            put("layers", self.t5_enc.map(|k| (k + 1).into()));
            put("decoder_layers", self.t5_dec.map(|k| (k + 1).into()));
            put("hidden_size", Some(d_model.into()));
            // relative_attention_bias is [num_buckets, num_heads]: the one model here whose
            // weights state the head count.
            if let Some((buckets, heads)) = self.t5_rel {
                put("heads", Some(heads.into()));
                if heads > 0 && inner % heads == 0 {
                    put("d_kv", Some((inner / heads).into()));
                }
                put("relative_attention_num_buckets", Some(buckets.into()));
            }
            put("intermediate_size", self.t5_ff.map(Value::from));
            put("gated_ffn", self.t5_ff.map(|_| self.t5_gated.into()));
            let vocab = self
                .shared
                .or(self.embed_tokens)
                .map(|(v, _)| v)
                .or(vocab_from_head);
            put("vocab_size", vocab.map(Value::from));
            if self.lm_head {
                out.head = Some("lm_head".into());
            }
        } else if let (Some((q_out, hidden)), Some(inter)) = (self.l_q, self.l_gate) {
            out.family = Some("llama".into());
            put("layers", self.l_layers.map(|k| (k + 1).into()));
            put("hidden_size", Some(hidden.into()));
            put("intermediate_size", Some(inter.into()));
            let vocab = self.embed_tokens.map(|(v, _)| v).or(vocab_from_head);
            put("vocab_size", vocab.map(Value::from));
            // q_out = heads * head_dim and k_out = kv_heads * head_dim: their ratio is the
            // number of query heads per kv head whatever head_dim is.
            if let Some(k_out) = self.l_k
                && k_out > 0
                && q_out % k_out == 0
            {
                put("num_key_value_groups", Some((q_out / k_out).into()));
            }
            if self.l_q_bias {
                put("attention_bias", Some(true.into()));
            }
            put("num_experts", self.l_experts.map(|e| (e + 1).into()));
            out.head = self.text_head(Anchor::Llama, &mut put);
        } else if let Some((hidden, _)) = self.g_c_attn {
            out.family = Some("gpt2".into());
            put("layers", self.g_layers.map(|k| (k + 1).into()));
            put("hidden_size", Some(hidden.into()));
            put("intermediate_size", self.g_fc.map(Value::from));
            let vocab = self.wte.map(|(v, _)| v).or(vocab_from_head);
            put("vocab_size", vocab.map(Value::from));
            put("max_positions", self.wpe.map(|(p, _)| p.into()));
            out.head = self.text_head(Anchor::Gpt2, &mut put);
        } else if let Some(hidden) = self.bert_hidden {
            out.family = Some(if self.roberta { "roberta" } else { "bert" }.into());
            put("layers", self.layer_max.map(|k| (k + 1).into()));
            put("hidden_size", Some(hidden.into()));
            put("intermediate_size", self.layer_inter.map(Value::from));
            put("vocab_size", self.word_emb.map(|(v, _)| v.into()));
            put("max_positions", self.pos_emb_rows.map(Value::from));
            put("type_vocab_size", self.type_rows.map(Value::from));
            if self.mlm || self.lm_head {
                out.head = Some("lm_head".into());
            } else if let Some(c) = self.classifier(Anchor::Bert) {
                out.head = Some("classifier".into());
                put("num_classes", Some(c.into()));
            }
        } else {
            self.vision(&mut out, &mut put);
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

    /// `lm_head` or a sequence-classification `score`/`classifier` of a decoder LM.
    fn text_head(
        &self,
        anchor: Anchor,
        put: &mut impl FnMut(&str, Option<Value>),
    ) -> Option<String> {
        if self.lm_head {
            return Some("lm_head".into());
        }
        let c = self.classifier(anchor)?;
        put("num_classes", Some(c.into()));
        Some("classifier".into())
    }

    /// Vision backbones, decoders and heads.
    fn vision(&self, out: &mut Inference, put: &mut impl FnMut(&str, Option<Value>)) {
        let backbone = self.backbone(put);
        let decoder = if (self.bottom_up && self.top_down) || self.pafpn {
            Some("pan")
        } else if self.lateral || self.fpn || self.top_down {
            Some("fpn")
        } else if self.unet_dec
            || (self.up_blocks && self.down_blocks)
            || (self.up_n && self.down_n)
        {
            Some("unet")
        } else {
            None
        };
        let db = self.binarize && self.thresh;
        let head = if db {
            Some("db_head")
        } else if self.seg_head {
            put("num_classes", self.seg_classes.map(Value::from));
            Some("segmentation_head")
        } else if let Some((_, anchor, _)) = backbone
            && decoder.is_none()
            && let Some(c) = self.classifier(anchor)
        {
            put("num_classes", Some(c.into()));
            Some("classifier")
        } else {
            None
        };
        let composite = db || decoder.is_some();
        out.family = if db {
            Some("dbnet".into())
        } else if let Some(dec) = decoder {
            Some(dec.into())
        } else {
            backbone.map(|(f, _, _)| f.into())
        };
        out.encoder = backbone
            .filter(|(_, _, scoped)| composite || *scoped)
            .map(|(f, _, _)| f.into());
        out.decoder = decoder.map(Into::into);
        out.head = head.map(Into::into);
    }

    /// The vision backbone: family, where it was found, and whether it sits under an
    /// `encoder`/`backbone` scope. Puts its sizes.
    fn backbone(
        &self,
        put: &mut impl FnMut(&str, Option<Value>),
    ) -> Option<(&'static str, Anchor, bool)> {
        let (family, anchor) =
            if self.patch.is_some() && (self.v_hidden.is_some() || self.hfvit_hidden.is_some()) {
                let hidden = self.v_hidden.or(self.hfvit_hidden);
                let layers = if self.v_hidden.is_some() {
                    self.v_layers
                } else {
                    self.layer_max
                };
                put("layers", layers.map(|k| (k + 1).into()));
                put("hidden_size", hidden.map(Value::from));
                put(
                    "intermediate_size",
                    self.v_fc1.or(self.layer_inter).map(Value::from),
                );
                if let Some([_, chans, ph, pw]) = self.patch {
                    put(
                        "patch_size",
                        Some(if ph == pw {
                            ph.into()
                        } else {
                            vec![ph, pw].into()
                        }),
                    );
                    put("num_channels", Some(chans.into()));
                    // pos tokens = prefix tokens + grid²; a square grid gives the image size.
                    let prefix = u64::from(self.cls_token) + u64::from(self.dist_token);
                    if let Some(t) = self.pos_tokens {
                        let g = t.saturating_sub(prefix);
                        let side = g.isqrt();
                        if g > 0 && side * side == g && ph == pw {
                            put("image_size", Some((side * ph).into()));
                        }
                    }
                }
                ("vit", Anchor::Vit)
            } else if self.cx.iter().any(Option::is_some)
                && (self.anchors[Anchor::ConvNext as usize].is_some() || self.tv_layer_scale)
            {
                let stages: Vec<(u64, u64)> = self.cx.iter().flatten().copied().collect();
                let depths: Vec<u64> = stages.iter().map(|(m, _)| m + 1).collect();
                let dims: Vec<u64> = stages.iter().map(|(_, w)| *w).collect();
                let variant = CONVNEXT_VARIANTS
                    .iter()
                    .find(|(ds, w, _)| *ds == depths.as_slice() && dims.first() == Some(w))
                    .map(|(_, _, v)| *v);
                put("depths", Some(depths.into()));
                put("dims", Some(dims.into()));
                put("variant", variant.map(Value::from));
                let anchor = if self.anchors[Anchor::ConvNext as usize].is_some() {
                    Anchor::ConvNext
                } else {
                    Anchor::TorchVision
                };
                ("convnext", anchor)
            } else if let Some((stem, chans)) = self.t_stem {
                put("stem_channels", Some(stem.into()));
                put("num_channels", Some(chans.into()));
                let blocks: u64 = self.t_stages.iter().flatten().map(|m| m + 1).sum();
                let stages = self.t_stages.iter().flatten().count();
                // bn2 follows conv_head in EfficientNet and MobileNetV2, never in MobileNetV3
                // (whose head conv has a bias and no norm); squeeze-excite, EdgeResidual
                // (`conv_exp`) or 5x5 depthwise kernels set EfficientNet apart from MobileNetV2.
                let (family, version) = if self.t_bn2 {
                    if self.t_se || self.t_exp || self.t_k5 {
                        ("efficientnet", None)
                    } else {
                        ("mobilenet", Some("v2"))
                    }
                } else if self.t_head.is_some() || self.t_cn {
                    ("mobilenet", Some("v3"))
                } else if self.t_se && stages >= 7 {
                    ("efficientnet", None)
                } else {
                    ("mobilenet", None)
                };
                put("version", version.map(Value::from));
                put("num_features", self.t_head.map(Value::from));
                if family == "efficientnet" {
                    put("blocks", Some(blocks.into()));
                    put("variant", self.efficientnet_variant(blocks, self.t_head));
                }
                (family, Anchor::Timm)
            } else if self.tv_conv || self.tv_block || self.tv_nm_block {
                let (family, version) = if self.tv_nm_block {
                    ("efficientnet", None)
                } else if self.tv_block {
                    ("mobilenet", Some("v3"))
                } else {
                    ("mobilenet", Some("v2"))
                };
                if let Some((stem, chans)) = self.tv_stem {
                    put("stem_channels", Some(stem.into()));
                    put("num_channels", Some(chans.into()));
                }
                put("version", version.map(Value::from));
                let head = self.tv_last.filter(|(k, _)| *k > 0).map(|(_, c)| c);
                put("num_features", head.map(Value::from));
                if family == "efficientnet" {
                    let blocks: u64 = self.tv_stages.iter().flatten().map(|m| m + 1).sum();
                    put("blocks", Some(blocks.into()));
                    put("variant", self.efficientnet_variant(blocks, head));
                }
                (family, Anchor::TorchVision)
            } else if self.r_stages[0].is_some() {
                if let Some((stem, chans)) = self.conv1 {
                    put("stem_channels", Some(stem.into()));
                    put("num_channels", Some(chans.into()));
                }
                let per = if self.r_bottleneck { 3 } else { 2 };
                put(
                    "block",
                    Some(
                        if self.r_bottleneck {
                            "bottleneck"
                        } else {
                            "basic"
                        }
                        .into(),
                    ),
                );
                let blocks: Vec<u64> = self.r_stages.iter().flatten().map(|k| k + 1).collect();
                if blocks.len() == 4 {
                    put("depth", Some((blocks.iter().sum::<u64>() * per + 2).into()));
                }
                put("stage_blocks", Some(blocks.into()));
                ("resnet", Anchor::ResNet)
            } else {
                return None;
            };
        let at = self.anchors[anchor as usize].as_deref().unwrap_or("");
        let scoped = at
            .rsplit('.')
            .next()
            .is_some_and(|s| matches!(s, "encoder" | "backbone"));
        Some((family, anchor, scoped))
    }

    fn efficientnet_variant(&self, blocks: u64, head: Option<u64>) -> Option<Value> {
        let head = head?;
        EFFICIENTNET_VARIANTS
            .iter()
            .find(|(b, h, _)| *b == blocks && *h == head)
            .map(|(_, _, v)| (*v).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state dict under construction: names and shapes (float32), built by hand after the
    /// layouts torch/timm/transformers write.
    #[derive(Default)]
    struct Sd(Vec<(String, Vec<u64>)>);

    impl Sd {
        fn t(&mut self, name: impl Into<String>, shape: &[u64]) -> &mut Self {
            self.0.push((name.into(), shape.to_vec()));
            self
        }
        /// Linear / Conv1D with bias: `p.weight`, `p.bias`.
        fn lin(&mut self, p: &str, out: u64, inp: u64) -> &mut Self {
            self.t(format!("{p}.weight"), &[out, inp])
                .t(format!("{p}.bias"), &[out])
        }
        /// Conv2d without bias.
        fn conv(&mut self, p: &str, out: u64, inp: u64, k: u64) -> &mut Self {
            self.t(format!("{p}.weight"), &[out, inp, k, k])
        }
        /// Conv2d with bias.
        fn convb(&mut self, p: &str, out: u64, inp: u64, k: u64) -> &mut Self {
            self.conv(p, out, inp, k).t(format!("{p}.bias"), &[out])
        }
        /// BatchNorm2d: two parameters and three buffers.
        fn bn(&mut self, p: &str, c: u64) -> &mut Self {
            self.ln(p, c)
                .t(format!("{p}.running_mean"), &[c])
                .t(format!("{p}.running_var"), &[c])
                .t(format!("{p}.num_batches_tracked"), &[])
        }
        /// LayerNorm: weight and bias.
        fn ln(&mut self, p: &str, c: u64) -> &mut Self {
            self.t(format!("{p}.weight"), &[c])
                .t(format!("{p}.bias"), &[c])
        }
        fn without(&mut self, name: &str) -> &mut Self {
            self.0.retain(|(n, _)| n != name);
            self
        }
        fn prefixed(&self, f: impl Fn(&str) -> String) -> Sd {
            Sd(self.0.iter().map(|(n, s)| (f(n), s.clone())).collect())
        }
        fn run(&self) -> Inference {
            let sigs: Vec<TensorSig<'_>> = self
                .0
                .iter()
                .map(|(n, s)| TensorSig {
                    name: n,
                    shape: s,
                    dtype: "float32",
                })
                .collect();
            infer(&sigs)
        }
    }

    fn get(r: &Inference, k: &str) -> Option<u64> {
        r.details.get(k).and_then(Value::as_u64)
    }

    fn list(r: &Inference, k: &str) -> Vec<u64> {
        r.details
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    }

    fn s(r: &Option<String>) -> Option<&str> {
        r.as_deref()
    }

    // ---- GPT-2 -------------------------------------------------------------------------

    /// GPT2LMHeadModel's state dict; `buffers` adds the causal-mask buffers older
    /// transformers saved (`attn.bias` [1,1,n,n], `attn.masked_bias`).
    fn gpt2(vocab: u64, hidden: u64, positions: u64, layers: u64, buffers: bool) -> Sd {
        let mut sd = Sd::default();
        sd.t("transformer.wte.weight", &[vocab, hidden])
            .t("transformer.wpe.weight", &[positions, hidden]);
        for l in 0..layers {
            let p = format!("transformer.h.{l}");
            sd.ln(&format!("{p}.ln_1"), hidden);
            // Conv1D stores [in, out].
            sd.t(format!("{p}.attn.c_attn.weight"), &[hidden, 3 * hidden])
                .t(format!("{p}.attn.c_attn.bias"), &[3 * hidden])
                .t(format!("{p}.attn.c_proj.weight"), &[hidden, hidden])
                .t(format!("{p}.attn.c_proj.bias"), &[hidden]);
            if buffers {
                sd.t(format!("{p}.attn.bias"), &[1, 1, positions, positions])
                    .t(format!("{p}.attn.masked_bias"), &[]);
            }
            sd.ln(&format!("{p}.ln_2"), hidden)
                .t(format!("{p}.mlp.c_fc.weight"), &[hidden, 4 * hidden])
                .t(format!("{p}.mlp.c_fc.bias"), &[4 * hidden])
                .t(format!("{p}.mlp.c_proj.weight"), &[4 * hidden, hidden])
                .t(format!("{p}.mlp.c_proj.bias"), &[hidden]);
        }
        sd.ln("transformer.ln_f", hidden)
            .t("lm_head.weight", &[vocab, hidden]);
        sd
    }

    #[test]
    fn tiny_gpt2_like_formats_pytorch_model_bin() {
        // formats/pytorch_model.bin: vocab 128, hidden 32, 64 positions, 2 layers, lm_head
        // (tied to wte in storage: counted here because its name is given).
        let r = gpt2(128, 32, 64, 2, false).run();
        assert_eq!(s(&r.family), Some("gpt2"));
        assert_eq!(s(&r.head), Some("lm_head"));
        assert_eq!(get(&r, "layers"), Some(2));
        assert_eq!(get(&r, "hidden_size"), Some(32));
        assert_eq!(get(&r, "intermediate_size"), Some(128));
        assert_eq!(get(&r, "vocab_size"), Some(128));
        assert_eq!(get(&r, "max_positions"), Some(64));
        // Heads are not in GPT-2's weights: c_attn fuses them all.
        assert_eq!(get(&r, "heads"), None);
        assert_eq!(r.params, 35_712);
        assert!(r.stripped_prefixes.is_empty());
        assert_eq!(r.encoder, None);
        // The caller passing one name per storage (lm_head dropped) gets HF's count.
        let r = gpt2(128, 32, 64, 2, false).without("lm_head.weight").run();
        assert_eq!(r.params, 31_616);
        assert_eq!(r.head, None);
    }

    #[test]
    fn gpt2_without_wte_takes_vocab_from_lm_head() {
        // formats/model.safetensors: transformers drops the tied wte, keeps lm_head.
        let r = gpt2(128, 32, 64, 2, false)
            .without("transformer.wte.weight")
            .run();
        assert_eq!(s(&r.family), Some("gpt2"));
        assert_eq!(get(&r, "vocab_size"), Some(128));
        assert_eq!(r.params, 31_616);
    }

    #[test]
    fn gpt2_base_with_mask_buffers_counts_parameters_only() {
        let r = gpt2(50257, 768, 1024, 12, true)
            .without("lm_head.weight")
            .run();
        assert_eq!(s(&r.family), Some("gpt2"));
        assert_eq!(get(&r, "layers"), Some(12));
        assert_eq!(get(&r, "hidden_size"), Some(768));
        assert_eq!(get(&r, "intermediate_size"), Some(3072));
        assert_eq!(get(&r, "max_positions"), Some(1024));
        assert_eq!(r.params, 124_439_808); // GPT2Model.num_parameters()
        assert_eq!(r.details.get("dtype"), Some(&Value::from("float32")));
    }

    #[test]
    fn fsdp_ddp_and_compile_wrappers_are_stripped_and_reported() {
        let base = gpt2(16, 4, 8, 2, false);
        // fsdp/output/epoch-001-final-ckpt.pth: nested FSDP units, lm_head absent.
        let fsdp = base
            .prefixed(|n| {
                let n = n.replace("transformer.h.0.", "transformer.h.0._fsdp_wrapped_module.");
                let n = n.replace("transformer.h.1.", "transformer.h.1._fsdp_wrapped_module.");
                format!("_fsdp_wrapped_module.{n}")
            })
            .without("_fsdp_wrapped_module.lm_head.weight")
            .run();
        assert_eq!(s(&fsdp.family), Some("gpt2"));
        assert_eq!(get(&fsdp, "layers"), Some(2));
        assert_eq!(fsdp.stripped_prefixes, vec!["_fsdp_wrapped_module."]);
        assert_eq!(fsdp.params, 592);
        // examples/fsdp/ddp-epoch-002.pth and the compiled one.
        let ddp = base.prefixed(|n| format!("module.{n}")).run();
        assert_eq!(ddp.stripped_prefixes, vec!["module."]);
        assert_eq!((ddp.params, get(&ddp, "vocab_size")), (656, Some(16)));
        let compiled = base.prefixed(|n| format!("_orig_mod.{n}")).run();
        assert_eq!(compiled.stripped_prefixes, vec!["_orig_mod."]);
        assert_eq!(s(&compiled.family), Some("gpt2"));
        // Several at once, reported in WRAPPER_PREFIXES order.
        let mixed = base
            .prefixed(|n| format!("module._orig_mod._checkpoint_wrapped_module.{n}"))
            .run();
        assert_eq!(
            mixed.stripped_prefixes,
            vec!["_checkpoint_wrapped_module.", "_orig_mod.", "module."]
        );
        assert_eq!(s(&mixed.family), Some("gpt2"));
        // A submodule called `module` is not DDP's.
        let mut sd = Sd::default();
        sd.lin("encoder.module", 2, 2);
        assert!(sd.run().stripped_prefixes.is_empty());
    }

    #[test]
    fn flat_param_is_counted_but_not_recognized() {
        // fsdp/output/flat-param-epoch-005.pth
        let mut sd = Sd::default();
        sd.t("_fsdp_wrapped_module._flat_param", &[31_616]);
        let r = sd.run();
        assert_eq!(r.family, None);
        assert_eq!(r.params, 31_616);
        assert_eq!(r.details.get("flat_params"), Some(&Value::Bool(true)));
        assert_eq!(r.stripped_prefixes, vec!["_fsdp_wrapped_module."]);
    }

    // ---- Small MLPs and toys: nothing to recognize ----------------------------------------

    #[test]
    fn small_mlps_have_no_family_but_a_parameter_count() {
        // weightslab checkpoint_step_*.pt `model_state_dict`.
        let mut sd = Sd::default();
        sd.lin("fc1", 16, 10).lin("fc2", 2, 16);
        let r = sd.run();
        assert_eq!(
            (r.family.clone(), r.head.clone(), r.params),
            (None, None, 210)
        );
        // arcaff's "resnet18" is really a Sequential(conv, …, linear).
        let mut sd = Sd::default();
        sd.convb("model.0", 8, 1, 3).lin("model.4", 7, 8);
        let r = sd.run();
        assert_eq!((r.family.clone(), r.params), (None, 143));
        // Lightning's own demo modules.
        let mut sd = Sd::default();
        sd.lin("l1", 8, 4).lin("l2", 1, 8);
        assert_eq!(sd.run().family, None);
    }

    #[test]
    fn empty_and_hostile_inputs() {
        assert_eq!(infer(&[]), Inference::default());
        let deep = vec!["a"; 100].join(".");
        let shape = [u64::MAX, 3];
        let sigs = [
            TensorSig {
                name: "",
                shape: &[2],
                dtype: "float32",
            },
            TensorSig {
                name: "module",
                shape: &[],
                dtype: "int64",
            },
            TensorSig {
                name: &deep,
                shape: &[5],
                dtype: "float32",
            },
            TensorSig {
                name: "x..y.",
                shape: &shape,
                dtype: "float32",
            },
            TensorSig {
                name: "h.99999999999999999999.attn.c_attn.weight",
                shape: &[1],
                dtype: "float32",
            },
        ];
        let r = infer(&sigs);
        assert_eq!(r.params, u64::MAX);
        assert_eq!(r.family, None);
        assert!(r.stripped_prefixes.is_empty());
    }

    // ---- DBNet-like composites -----------------------------------------------------------

    /// The corpus's DBNet: encoder conv_stem/bn1/blocks.N.{0,1}, PAN decoder
    /// bottom_up/top_down/out, db head binarize/thresh.
    fn dbnet(p: &str) -> Sd {
        let mut sd = Sd::default();
        sd.conv(&format!("{p}encoder.conv_stem"), 16, 3, 3)
            .bn(&format!("{p}encoder.bn1"), 16);
        for (i, (out, inp)) in [(24, 16), (48, 24), (96, 48)].into_iter().enumerate() {
            sd.conv(&format!("{p}encoder.blocks.{i}.0"), out, inp, 3)
                .bn(&format!("{p}encoder.blocks.{i}.1"), out);
        }
        for (i, c) in [16, 24, 48, 96].into_iter().enumerate() {
            sd.convb(&format!("{p}decoder.bottom_up.{i}"), 96, c, 1);
        }
        for i in 0..3 {
            sd.convb(&format!("{p}decoder.top_down.{i}"), 96, 96, 3);
        }
        sd.convb(&format!("{p}decoder.out"), 128, 384, 3);
        for branch in ["binarize", "thresh"] {
            let q = format!("{p}head.{branch}");
            // The last is a ConvTranspose2d: weight [in, out, k, k], bias [out].
            sd.convb(&format!("{q}.0"), 32, 128, 3)
                .bn(&format!("{q}.1"), 32)
                .t(format!("{q}.2.weight"), &[32, 1, 2, 2])
                .t(format!("{q}.2.bias"), &[1]);
        }
        sd
    }

    #[test]
    fn dbnet_like_outputs_checkpoints() {
        // outputs/dbnet_hparams/checkpoints/last.ckpt (Lightning `net.`) and
        // outputs/sidecars/checkpoints/epoch=10.ckpt (`model.`).
        for p in ["net.", "model.", ""] {
            let r = dbnet(p).run();
            assert_eq!(s(&r.family), Some("dbnet"), "{p}");
            assert_eq!(s(&r.encoder), Some("mobilenet"));
            assert_eq!(s(&r.decoder), Some("pan"));
            assert_eq!(s(&r.head), Some("db_head"));
            assert_eq!(r.params, 839_938);
            assert_eq!(get(&r, "stem_channels"), Some(16));
            assert!(r.stripped_prefixes.is_empty());
        }
    }

    #[test]
    fn lateral_only_decoder_is_fpn() {
        // examples/lightning: one lateral conv, no top-down/bottom-up pair.
        let mut sd = Sd::default();
        sd.conv("model.encoder.conv_stem", 4, 3, 3)
            .bn("model.encoder.bn1", 4)
            .convb("model.decoder.lateral", 8, 4, 1)
            .convb("model.decoder.out", 4, 8, 1)
            .convb("model.head.binarize", 1, 4, 1)
            .convb("model.head.thresh", 1, 4, 1);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("dbnet"));
        assert_eq!(s(&r.decoder), Some("fpn"));
        assert_eq!(r.params, 202);
    }

    // ---- ResNet --------------------------------------------------------------------------

    fn resnet(sd: &mut Sd, p: &str, blocks: [u64; 4], bottleneck: bool, classes: Option<u64>) {
        sd.conv(&format!("{p}conv1"), 64, 3, 7)
            .bn(&format!("{p}bn1"), 64);
        let mut inp = 64;
        for (stage, nb) in blocks.into_iter().enumerate() {
            let w = 64 << stage;
            let out = if bottleneck { 4 * w } else { w };
            for b in 0..nb {
                let q = format!("{p}layer{}.{b}", stage + 1);
                if bottleneck {
                    sd.conv(&format!("{q}.conv1"), w, inp, 1)
                        .bn(&format!("{q}.bn1"), w)
                        .conv(&format!("{q}.conv2"), w, w, 3)
                        .bn(&format!("{q}.bn2"), w)
                        .conv(&format!("{q}.conv3"), out, w, 1)
                        .bn(&format!("{q}.bn3"), out);
                } else {
                    sd.conv(&format!("{q}.conv1"), w, inp, 3)
                        .bn(&format!("{q}.bn1"), w)
                        .conv(&format!("{q}.conv2"), w, w, 3)
                        .bn(&format!("{q}.bn2"), w);
                }
                if b == 0 && inp != out {
                    sd.conv(&format!("{q}.downsample.0"), out, inp, 1)
                        .bn(&format!("{q}.downsample.1"), out);
                }
                inp = out;
            }
        }
        if let Some(c) = classes {
            sd.lin(&format!("{p}fc"), c, inp);
        }
    }

    #[test]
    fn resnet18_and_resnet50() {
        let mut sd = Sd::default();
        resnet(&mut sd, "", [2, 2, 2, 2], false, Some(1000));
        let r = sd.run();
        assert_eq!(s(&r.family), Some("resnet"));
        assert_eq!(r.encoder, None);
        assert_eq!(s(&r.head), Some("classifier"));
        assert_eq!(get(&r, "num_classes"), Some(1000));
        assert_eq!(get(&r, "depth"), Some(18));
        assert_eq!(list(&r, "stage_blocks"), vec![2, 2, 2, 2]);
        assert_eq!(r.details.get("block"), Some(&Value::from("basic")));
        assert_eq!(r.params, 11_689_512); // torchvision resnet18
        // Lightning-wrapped, 3 classes.
        let mut sd = Sd::default();
        resnet(&mut sd, "model.backbone.", [3, 4, 6, 3], true, Some(3));
        let r = sd.run();
        assert_eq!(s(&r.family), Some("resnet"));
        assert_eq!(get(&r, "depth"), Some(50));
        assert_eq!(get(&r, "num_classes"), Some(3));
        assert_eq!(s(&r.encoder), Some("resnet")); // under a `backbone` scope
        let mut sd = Sd::default();
        resnet(&mut sd, "", [3, 4, 6, 3], true, Some(1000));
        assert_eq!(sd.run().params, 25_557_032); // torchvision resnet50
    }

    #[test]
    fn unet_with_resnet_encoder() {
        // segmentation_models_pytorch Unet(resnet34): encoder without fc, decoder blocks,
        // segmentation head.
        let mut sd = Sd::default();
        resnet(&mut sd, "encoder.", [3, 4, 6, 3], false, None);
        let chans = [(768, 256), (384, 128), (192, 64), (128, 32), (32, 16)];
        for (i, (inp, out)) in chans.into_iter().enumerate() {
            let q = format!("decoder.blocks.{i}");
            sd.conv(&format!("{q}.conv1.0"), out, inp, 3)
                .bn(&format!("{q}.conv1.1"), out)
                .conv(&format!("{q}.conv2.0"), out, out, 3)
                .bn(&format!("{q}.conv2.1"), out);
        }
        sd.convb("segmentation_head.0", 4, 16, 3);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("unet"));
        assert_eq!(s(&r.encoder), Some("resnet"));
        assert_eq!(s(&r.decoder), Some("unet"));
        assert_eq!(s(&r.head), Some("segmentation_head"));
        assert_eq!(get(&r, "num_classes"), Some(4));
        assert_eq!(get(&r, "depth"), Some(34));
    }

    #[test]
    fn fpn_neck_on_a_resnet_backbone() {
        let mut sd = Sd::default();
        resnet(&mut sd, "backbone.", [3, 4, 6, 3], true, None);
        for (i, c) in [256, 512, 1024, 2048].into_iter().enumerate() {
            sd.convb(&format!("neck.lateral_convs.{i}.conv"), 256, c, 1)
                .convb(&format!("neck.fpn_convs.{i}.conv"), 256, 256, 3);
        }
        let r = sd.run();
        assert_eq!(s(&r.family), Some("fpn"));
        assert_eq!(s(&r.encoder), Some("resnet"));
        assert_eq!(s(&r.decoder), Some("fpn"));
        assert_eq!(r.head, None);
    }

    // ---- EfficientNet / MobileNet ----------------------------------------------------------

    /// EfficientNet-B0 stages after the first: (kernel, out, repeats).
    const B0: [(u64, u64, u64); 6] = [
        (3, 24, 2),
        (5, 40, 2),
        (3, 80, 3),
        (5, 112, 3),
        (5, 192, 4),
        (3, 320, 1),
    ];

    #[test]
    fn timm_efficientnet_b0() {
        let mut sd = Sd::default();
        let se = |sd: &mut Sd, q: &str, c: u64, rd: u64| {
            sd.convb(&format!("{q}.se.conv_reduce"), rd, c, 1).convb(
                &format!("{q}.se.conv_expand"),
                c,
                rd,
                1,
            );
        };
        sd.conv("conv_stem", 32, 3, 3).bn("bn1", 32);
        sd.t("blocks.0.0.conv_dw.weight", &[32, 1, 3, 3])
            .bn("blocks.0.0.bn1", 32);
        se(&mut sd, "blocks.0.0", 32, 8);
        sd.conv("blocks.0.0.conv_pw", 16, 32, 1)
            .bn("blocks.0.0.bn2", 16);
        let mut inp = 16;
        for (s, (k, out, reps)) in B0.into_iter().enumerate() {
            for b in 0..reps {
                let q = format!("blocks.{}.{b}", s + 1);
                let mid = 6 * inp;
                sd.conv(&format!("{q}.conv_pw"), mid, inp, 1)
                    .bn(&format!("{q}.bn1"), mid)
                    .t(format!("{q}.conv_dw.weight"), &[mid, 1, k, k])
                    .bn(&format!("{q}.bn2"), mid);
                se(&mut sd, &q, mid, inp / 4);
                sd.conv(&format!("{q}.conv_pwl"), out, mid, 1)
                    .bn(&format!("{q}.bn3"), out);
                inp = out;
            }
        }
        sd.conv("conv_head", 1280, 320, 1)
            .bn("bn2", 1280)
            .lin("classifier", 1000, 1280);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("efficientnet"));
        assert_eq!(r.details.get("variant"), Some(&Value::from("b0")));
        assert_eq!(get(&r, "blocks"), Some(16));
        assert_eq!(get(&r, "num_features"), Some(1280));
        assert_eq!(s(&r.head), Some("classifier"));
        assert_eq!(get(&r, "num_classes"), Some(1000));
        assert_eq!(r.params, 5_288_548); // timm efficientnet_b0
    }

    #[test]
    fn torchvision_efficientnet_b0() {
        let mut sd = Sd::default();
        sd.conv("features.0.0", 32, 3, 3).bn("features.0.1", 32);
        sd.t("features.1.0.block.0.0.weight", &[32, 1, 3, 3])
            .bn("features.1.0.block.0.1", 32)
            .convb("features.1.0.block.1.fc1", 8, 32, 1)
            .convb("features.1.0.block.1.fc2", 32, 8, 1)
            .conv("features.1.0.block.2.0", 16, 32, 1)
            .bn("features.1.0.block.2.1", 16);
        let mut inp = 16;
        for (s, (k, out, reps)) in B0.into_iter().enumerate() {
            for b in 0..reps {
                let q = format!("features.{}.{b}.block", s + 2);
                let mid = 6 * inp;
                sd.conv(&format!("{q}.0.0"), mid, inp, 1)
                    .bn(&format!("{q}.0.1"), mid)
                    .t(format!("{q}.1.0.weight"), &[mid, 1, k, k])
                    .bn(&format!("{q}.1.1"), mid)
                    .convb(&format!("{q}.2.fc1"), inp / 4, mid, 1)
                    .convb(&format!("{q}.2.fc2"), mid, inp / 4, 1)
                    .conv(&format!("{q}.3.0"), out, mid, 1)
                    .bn(&format!("{q}.3.1"), out);
                inp = out;
            }
        }
        sd.conv("features.8.0", 1280, 320, 1)
            .bn("features.8.1", 1280)
            .lin("classifier.1", 1000, 1280);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("efficientnet"));
        assert_eq!(r.details.get("variant"), Some(&Value::from("b0")));
        assert_eq!(get(&r, "num_classes"), Some(1000));
        assert_eq!(r.params, 5_288_548); // torchvision efficientnet_b0
    }

    #[test]
    fn torchvision_mobilenet_v2() {
        let mut sd = Sd::default();
        sd.conv("features.0.0", 32, 3, 3).bn("features.0.1", 32);
        let settings = [
            (1, 16, 1),
            (6, 24, 2),
            (6, 32, 3),
            (6, 64, 4),
            (6, 96, 3),
            (6, 160, 3),
            (6, 320, 1),
        ];
        let (mut inp, mut f) = (32, 1);
        for (t, c, reps) in settings {
            for _ in 0..reps {
                let q = format!("features.{f}.conv");
                let hid = inp * t;
                let mut k = 0;
                if t != 1 {
                    sd.conv(&format!("{q}.0.0"), hid, inp, 1)
                        .bn(&format!("{q}.0.1"), hid);
                    k = 1;
                }
                sd.t(format!("{q}.{k}.0.weight"), &[hid, 1, 3, 3])
                    .bn(&format!("{q}.{k}.1"), hid)
                    .conv(&format!("{q}.{}", k + 1), c, hid, 1)
                    .bn(&format!("{q}.{}", k + 2), c);
                inp = c;
                f += 1;
            }
        }
        sd.conv(&format!("features.{f}.0"), 1280, 320, 1)
            .bn(&format!("features.{f}.1"), 1280)
            .lin("classifier.1", 1000, 1280);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("mobilenet"));
        assert_eq!(r.details.get("version"), Some(&Value::from("v2")));
        assert_eq!(get(&r, "num_features"), Some(1280));
        assert_eq!(get(&r, "num_classes"), Some(1000));
        assert_eq!(r.params, 3_504_872); // torchvision mobilenet_v2
    }

    #[test]
    fn timm_mobilenetv3_head_has_no_bn2() {
        let mut sd = Sd::default();
        sd.conv("conv_stem", 16, 3, 3)
            .bn("bn1", 16)
            .t("blocks.0.0.conv_dw.weight", &[16, 1, 3, 3])
            .bn("blocks.0.0.bn1", 16)
            .conv("blocks.0.0.conv_pw", 16, 16, 1)
            .bn("blocks.0.0.bn2", 16)
            .conv("blocks.1.0.conv_pw", 64, 16, 1)
            .t("blocks.1.0.conv_dw.weight", &[64, 1, 5, 5])
            .convb("blocks.1.0.se.conv_reduce", 16, 64, 1)
            .convb("blocks.1.0.se.conv_expand", 64, 16, 1)
            .conv("blocks.1.0.conv_pwl", 24, 64, 1)
            .conv("blocks.2.0.conv", 576, 24, 1)
            .bn("blocks.2.0.bn1", 576)
            .convb("conv_head", 1024, 576, 1)
            .lin("classifier", 10, 1024);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("mobilenet"));
        assert_eq!(r.details.get("version"), Some(&Value::from("v3")));
        assert_eq!(get(&r, "num_features"), Some(1024));
        assert_eq!(get(&r, "num_classes"), Some(10));
    }

    // ---- ConvNeXt ------------------------------------------------------------------------

    const TINY: [(u64, u64); 4] = [(3, 96), (3, 192), (9, 384), (3, 768)];

    #[test]
    fn timm_convnext_tiny() {
        let mut sd = Sd::default();
        sd.convb("stem.0", 96, 3, 4).ln("stem.1", 96);
        let mut prev = 96;
        for (s, (depth, d)) in TINY.into_iter().enumerate() {
            if s > 0 {
                sd.ln(&format!("stages.{s}.downsample.0"), prev).convb(
                    &format!("stages.{s}.downsample.1"),
                    d,
                    prev,
                    2,
                );
            }
            for b in 0..depth {
                let q = format!("stages.{s}.blocks.{b}");
                sd.t(format!("{q}.gamma"), &[d])
                    .t(format!("{q}.conv_dw.weight"), &[d, 1, 7, 7])
                    .t(format!("{q}.conv_dw.bias"), &[d])
                    .ln(&format!("{q}.norm"), d)
                    .lin(&format!("{q}.mlp.fc1"), 4 * d, d)
                    .lin(&format!("{q}.mlp.fc2"), d, 4 * d);
            }
            prev = d;
        }
        sd.ln("head.norm", 768).lin("head.fc", 1000, 768);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("convnext"));
        assert_eq!(list(&r, "depths"), vec![3, 3, 9, 3]);
        assert_eq!(list(&r, "dims"), vec![96, 192, 384, 768]);
        assert_eq!(r.details.get("variant"), Some(&Value::from("tiny")));
        assert_eq!(get(&r, "num_classes"), Some(1000));
        assert_eq!(r.params, 28_589_128); // timm convnext_tiny
    }

    #[test]
    fn torchvision_convnext_tiny() {
        let mut sd = Sd::default();
        sd.convb("features.0.0", 96, 3, 4).ln("features.0.1", 96);
        let mut prev = 96;
        for (s, (depth, d)) in TINY.into_iter().enumerate() {
            if s > 0 {
                sd.ln(&format!("features.{}.0", 2 * s), prev).convb(
                    &format!("features.{}.1", 2 * s),
                    d,
                    prev,
                    2,
                );
            }
            for b in 0..depth {
                let q = format!("features.{}.{b}", 2 * s + 1);
                sd.t(format!("{q}.layer_scale"), &[d, 1, 1])
                    .t(format!("{q}.block.0.weight"), &[d, 1, 7, 7])
                    .t(format!("{q}.block.0.bias"), &[d])
                    .ln(&format!("{q}.block.2"), d)
                    .lin(&format!("{q}.block.3"), 4 * d, d)
                    .lin(&format!("{q}.block.5"), d, 4 * d);
            }
            prev = d;
        }
        sd.ln("classifier.0", 768).lin("classifier.2", 1000, 768);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("convnext"));
        assert_eq!(list(&r, "depths"), vec![3, 3, 9, 3]);
        assert_eq!(r.details.get("variant"), Some(&Value::from("tiny")));
        assert_eq!(get(&r, "num_classes"), Some(1000));
        assert_eq!(r.params, 28_589_128);
    }

    // ---- ViT -----------------------------------------------------------------------------

    #[test]
    fn timm_vit_base_patch32_224() {
        let (dim, patch) = (768, 32);
        let mut sd = Sd::default();
        sd.t("cls_token", &[1, 1, dim])
            .t("pos_embed", &[1, 7 * 7 + 1, dim])
            .convb("patch_embed.proj", dim, 3, patch);
        for b in 0..12 {
            let q = format!("blocks.{b}");
            sd.ln(&format!("{q}.norm1"), dim)
                .lin(&format!("{q}.attn.qkv"), 3 * dim, dim)
                .lin(&format!("{q}.attn.proj"), dim, dim)
                .ln(&format!("{q}.norm2"), dim)
                .lin(&format!("{q}.mlp.fc1"), 4 * dim, dim)
                .lin(&format!("{q}.mlp.fc2"), dim, 4 * dim);
        }
        sd.ln("norm", dim).lin("head", 1000, dim);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("vit"));
        assert_eq!(get(&r, "layers"), Some(12));
        assert_eq!(get(&r, "hidden_size"), Some(768));
        assert_eq!(get(&r, "intermediate_size"), Some(3072));
        assert_eq!(get(&r, "patch_size"), Some(32));
        assert_eq!(get(&r, "image_size"), Some(224));
        assert_eq!(get(&r, "num_channels"), Some(3));
        assert_eq!(get(&r, "num_classes"), Some(1000));
        assert_eq!(get(&r, "heads"), None); // qkv is fused
        assert_eq!(r.params, 88_224_232); // timm vit_base_patch32_224
    }

    #[test]
    fn hf_vit_for_image_classification() {
        let dim = 768;
        let mut sd = Sd::default();
        sd.t("vit.embeddings.cls_token", &[1, 1, dim])
            .t("vit.embeddings.position_embeddings", &[1, 14 * 14 + 1, dim])
            .convb("vit.embeddings.patch_embeddings.projection", dim, 3, 16);
        for l in 0..12 {
            let q = format!("vit.encoder.layer.{l}");
            for x in ["query", "key", "value"] {
                sd.lin(&format!("{q}.attention.attention.{x}"), dim, dim);
            }
            sd.lin(&format!("{q}.attention.output.dense"), dim, dim)
                .lin(&format!("{q}.intermediate.dense"), 4 * dim, dim)
                .lin(&format!("{q}.output.dense"), dim, 4 * dim)
                .ln(&format!("{q}.layernorm_before"), dim)
                .ln(&format!("{q}.layernorm_after"), dim);
        }
        sd.ln("vit.layernorm", dim).lin("classifier", 1000, dim);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("vit"));
        assert_eq!(get(&r, "layers"), Some(12));
        assert_eq!(get(&r, "patch_size"), Some(16));
        assert_eq!(get(&r, "image_size"), Some(224));
        assert_eq!(get(&r, "intermediate_size"), Some(3072));
        assert_eq!(get(&r, "num_classes"), Some(1000));
        assert_eq!(r.params, 86_567_656); // vit-base-patch16-224
    }

    // ---- BERT / RoBERTa / T5 / Llama ---------------------------------------------------------

    fn bert(p: &str, vocab: u64, hidden: u64, layers: u64, types: u64) -> Sd {
        let mut sd = Sd::default();
        sd.t(
            format!("{p}embeddings.word_embeddings.weight"),
            &[vocab, hidden],
        )
        .t(
            format!("{p}embeddings.position_embeddings.weight"),
            &[512, hidden],
        )
        .t(
            format!("{p}embeddings.token_type_embeddings.weight"),
            &[types, hidden],
        )
        .ln(&format!("{p}embeddings.LayerNorm"), hidden)
        .t(format!("{p}embeddings.position_ids"), &[1, 512]);
        for l in 0..layers {
            let q = format!("{p}encoder.layer.{l}");
            for x in ["query", "key", "value"] {
                sd.lin(&format!("{q}.attention.self.{x}"), hidden, hidden);
            }
            sd.lin(&format!("{q}.attention.output.dense"), hidden, hidden)
                .ln(&format!("{q}.attention.output.LayerNorm"), hidden)
                .lin(&format!("{q}.intermediate.dense"), 4 * hidden, hidden)
                .lin(&format!("{q}.output.dense"), hidden, 4 * hidden)
                .ln(&format!("{q}.output.LayerNorm"), hidden);
        }
        sd
    }

    #[test]
    fn bert_base_uncased() {
        let mut sd = bert("", 30522, 768, 12, 2);
        sd.lin("pooler.dense", 768, 768);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("bert"));
        assert_eq!(get(&r, "layers"), Some(12));
        assert_eq!(get(&r, "hidden_size"), Some(768));
        assert_eq!(get(&r, "intermediate_size"), Some(3072));
        assert_eq!(get(&r, "vocab_size"), Some(30522));
        assert_eq!(get(&r, "max_positions"), Some(512));
        assert_eq!(get(&r, "type_vocab_size"), Some(2));
        assert_eq!(get(&r, "heads"), None); // query is [hidden, hidden]
        assert_eq!(r.head, None);
        assert_eq!(r.params, 109_482_240); // BertModel bert-base-uncased
    }

    #[test]
    fn roberta_sequence_classifier() {
        let mut sd = bert("roberta.", 50265, 64, 2, 1);
        sd.lin("classifier.dense", 64, 64)
            .lin("classifier.out_proj", 3, 64);
        let r = sd.run();
        assert_eq!(s(&r.family), Some("roberta"));
        assert_eq!(get(&r, "layers"), Some(2));
        assert_eq!(s(&r.head), Some("classifier"));
        assert_eq!(get(&r, "num_classes"), Some(3));
    }

    #[test]
    fn t5_small_states_its_head_count() {
        let (d, inner, ff, vocab) = (512, 512, 2048, 32128);
        let mut sd = Sd::default();
        // encoder/decoder.embed_tokens and lm_head share `shared`'s storage: one name given.
        sd.t("shared.weight", &[vocab, d]);
        for side in ["encoder", "decoder"] {
            for b in 0..6 {
                let q = format!("{side}.block.{b}.layer");
                for x in ["q", "k", "v"] {
                    sd.t(format!("{q}.0.SelfAttention.{x}.weight"), &[inner, d]);
                }
                sd.t(format!("{q}.0.SelfAttention.o.weight"), &[d, inner]);
                if b == 0 {
                    sd.t(
                        format!("{q}.0.SelfAttention.relative_attention_bias.weight"),
                        &[32, 8],
                    );
                }
                sd.t(format!("{q}.0.layer_norm.weight"), &[d]);
                let mut k = 1;
                if side == "decoder" {
                    for x in ["q", "k", "v"] {
                        sd.t(format!("{q}.1.EncDecAttention.{x}.weight"), &[inner, d]);
                    }
                    sd.t(format!("{q}.1.EncDecAttention.o.weight"), &[d, inner])
                        .t(format!("{q}.1.layer_norm.weight"), &[d]);
                    k = 2;
                }
                sd.t(format!("{q}.{k}.DenseReluDense.wi.weight"), &[ff, d])
                    .t(format!("{q}.{k}.DenseReluDense.wo.weight"), &[d, ff])
                    .t(format!("{q}.{k}.layer_norm.weight"), &[d]);
            }
            sd.t(format!("{side}.final_layer_norm.weight"), &[d]);
        }
        let r = sd.run();
        assert_eq!(s(&r.family), Some("t5"));
        assert_eq!(get(&r, "layers"), Some(6));
        assert_eq!(get(&r, "decoder_layers"), Some(6));
        assert_eq!(get(&r, "hidden_size"), Some(512));
        assert_eq!(get(&r, "heads"), Some(8));
        assert_eq!(get(&r, "d_kv"), Some(64));
        assert_eq!(get(&r, "intermediate_size"), Some(2048));
        assert_eq!(get(&r, "vocab_size"), Some(32128));
        assert_eq!(get(&r, "relative_attention_num_buckets"), Some(32));
        assert_eq!(r.details.get("gated_ffn"), Some(&Value::Bool(false)));
        assert_eq!(r.params, 60_506_624); // t5-small
    }

    fn llama(layers: u64, gate: bool) -> Sd {
        let (vocab, hidden, kv, inter) = (100, 64, 16, 172);
        let mut sd = Sd::default();
        sd.t("model.embed_tokens.weight", &[vocab, hidden]);
        for l in 0..layers {
            let q = format!("model.layers.{l}");
            sd.t(format!("{q}.self_attn.q_proj.weight"), &[hidden, hidden])
                .t(format!("{q}.self_attn.k_proj.weight"), &[kv, hidden])
                .t(format!("{q}.self_attn.v_proj.weight"), &[kv, hidden])
                .t(format!("{q}.self_attn.o_proj.weight"), &[hidden, hidden])
                .t(format!("{q}.self_attn.rotary_emb.inv_freq"), &[8])
                .t(format!("{q}.mlp.up_proj.weight"), &[inter, hidden])
                .t(format!("{q}.mlp.down_proj.weight"), &[hidden, inter])
                .t(format!("{q}.input_layernorm.weight"), &[hidden])
                .t(format!("{q}.post_attention_layernorm.weight"), &[hidden]);
            if gate {
                sd.t(format!("{q}.mlp.gate_proj.weight"), &[inter, hidden]);
            }
        }
        sd.t("model.norm.weight", &[hidden])
            .t("lm_head.weight", &[vocab, hidden]);
        sd
    }

    #[test]
    fn llama_with_grouped_query_attention() {
        let r = llama(3, true).run();
        assert_eq!(s(&r.family), Some("llama"));
        assert_eq!(s(&r.head), Some("lm_head"));
        assert_eq!(get(&r, "layers"), Some(3));
        assert_eq!(get(&r, "hidden_size"), Some(64));
        assert_eq!(get(&r, "intermediate_size"), Some(172));
        assert_eq!(get(&r, "vocab_size"), Some(100));
        assert_eq!(get(&r, "num_key_value_groups"), Some(4));
        // Head counts need a head_dim: not stated by the weights.
        assert_eq!(get(&r, "heads"), None);
        assert_eq!(get(&r, "num_key_value_heads"), None);
        assert_eq!(r.params, 143_040);
        // Lightning-wrapped the same.
        let wrapped = llama(3, true).prefixed(|n| format!("model.{n}")).run();
        assert_eq!(s(&wrapped.family), Some("llama"));
        assert_eq!(get(&wrapped, "layers"), Some(3));
        // Without a gated MLP (OPT, BART …) it is not a llama.
        assert_eq!(llama(3, false).run().family, None);
    }

    #[test]
    fn serializes_with_every_field() {
        let v = serde_json::to_value(gpt2(16, 4, 8, 1, false).run()).unwrap_or_default();
        for k in [
            "family",
            "encoder",
            "decoder",
            "head",
            "details",
            "params",
            "stripped_prefixes",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["family"], "gpt2");
    }

    #[test]
    fn ten_thousand_tensors_in_one_pass() {
        let mut sd = Sd::default();
        let mut l = 0;
        while sd.0.len() < 10_000 {
            for x in ["q_proj", "k_proj", "v_proj", "o_proj"] {
                sd.t(
                    format!("_fsdp_wrapped_module.model.layers.{l}._fsdp_wrapped_module.self_attn.{x}.weight"),
                    &[64, 64],
                );
            }
            sd.t(format!("model.layers.{l}.mlp.gate_proj.weight"), &[128, 64]);
            l += 1;
        }
        let t = std::time::Instant::now();
        let r = sd.run();
        // Debug build, shared machine: a generous bound that still catches quadratic work.
        assert!(t.elapsed().as_millis() < 500, "{:?}", t.elapsed());
        assert_eq!(s(&r.family), Some("llama"));
        assert_eq!(get(&r, "layers"), Some(l));
    }
}
