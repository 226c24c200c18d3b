//! Vision backbones: ViT (timm `patch_embed`/`blocks.N.attn.qkv`, HF `patch_embeddings`),
//! ResNet (`layer1..4.N`), timm EfficientNet/MobileNet (`conv_stem`, `blocks.STAGE.BLOCK`),
//! torchvision's `features.N…` (MobileNetV2/V3, EfficientNet, ConvNeXt) and ConvNeXt
//! (`stages.N…dwconv`), with their published variants where the weights pin them.

use serde_json::Value;

use super::name::{Name, first, num, raise};
use super::{Anchor, Scan};

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

impl Scan<'_> {
    /// Match segment `i` (`s`) of a name against the backbone patterns; false when none
    /// applies.
    pub(super) fn visit_vision(&mut self, nm: &Name<'_>, i: usize, s: &str) -> bool {
        match s {
            // ViT embeddings (timm patch_embed.proj, HF patch_embeddings.projection).
            "patch_embed" if nm.seg(i + 1) == "proj" && nm.w4(i + 2) => {
                first(&mut self.patch, [nm.d(0), nm.d(1), nm.d(2), nm.d(3)]);
            }
            "patch_embeddings" if nm.seg(i + 1) == "projection" && nm.w4(i + 2) => {
                first(&mut self.patch, [nm.d(0), nm.d(1), nm.d(2), nm.d(3)]);
            }
            "cls_token" if i + 1 == nm.n => self.cls_token = true,
            "dist_token" if i + 1 == nm.n => self.dist_token = true,
            "pos_embed" if i + 1 == nm.n && nm.shape.len() == 3 => {
                first(&mut self.pos_tokens, nm.d(1))
            }
            "blocks" => {
                let Some(k) = num(nm.seg(i + 1)) else {
                    return true;
                };
                if nm.in_dec && nm.seg(i + 2) == "conv1" {
                    // segmentation_models_pytorch's U-Net decoder.
                    self.unet_dec = true;
                } else if nm.prev_num(i) {
                    // stages.N.blocks / layers.N.blocks (ConvNeXt, Swin): not these.
                } else if let Some(m) = num(nm.seg(i + 2)) {
                    // timm EfficientNet/MobileNet: blocks.STAGE.BLOCK.*
                    if let Some(slot) = self.t_stages.get_mut(k as usize) {
                        raise(slot, m);
                    }
                    match nm.seg(i + 3) {
                        "conv_dw" if nm.w4(i + 4) && nm.d(3) == 5 => self.t_k5 = true,
                        "se" => self.t_se = true,
                        "conv_exp" => self.t_exp = true,
                        "conv" => self.t_cn = true,
                        _ => {}
                    }
                } else if nm.seg(i + 2) == "attn" && nm.seg(i + 3) == "qkv" && nm.w2(i + 4) {
                    raise(&mut self.v_layers, k);
                    first(&mut self.v_hidden, nm.d(1));
                    self.note(Anchor::Vit, nm.prefix(i));
                } else if nm.seg(i + 2) == "mlp" && nm.seg(i + 3) == "fc1" && nm.w2(i + 4) {
                    first(&mut self.v_fc1, nm.d(0));
                }
            }
            // ResNet: layer1..layer4.N.{conv1, conv2, conv3, bn*, downsample}.
            "layer1" | "layer2" | "layer3" | "layer4" => {
                let Some(k) = num(nm.seg(i + 1)) else {
                    return true;
                };
                let stage = usize::from(s.as_bytes()[5] - b'1');
                match nm.seg(i + 2) {
                    "conv3" => self.r_bottleneck = true,
                    "conv1" | "conv2" | "bn1" | "bn2" | "bn3" | "downsample" => {}
                    _ => return true,
                }
                raise(&mut self.r_stages[stage], k);
                self.note(Anchor::ResNet, nm.prefix(i));
            }
            "conv1" if !nm.prev_num(i) && nm.w4(i + 1) => {
                first(&mut self.conv1, (nm.d(0), nm.d(1)))
            }
            // timm EfficientNet/MobileNet stem and head.
            "conv_stem" if nm.w4(i + 1) => {
                first(&mut self.t_stem, (nm.d(0), nm.d(1)));
                self.note(Anchor::Timm, nm.prefix(i));
            }
            "bn2" if !nm.prev_num(i) && nm.ends(i + 1, "weight") => self.t_bn2 = true,
            "conv_head" if !nm.prev_num(i) && nm.w4(i + 1) => first(&mut self.t_head, nm.d(0)),
            // torchvision MobileNetV2/V3, EfficientNet, ConvNeXt: features.N…
            "features" => {
                let Some(k) = num(nm.seg(i + 1)) else {
                    return true;
                };
                self.note(Anchor::TorchVision, nm.prefix(i));
                let inner = num(nm.seg(i + 3));
                match (nm.seg(i + 2), num(nm.seg(i + 2))) {
                    ("conv", _) if inner.is_some() => self.tv_conv = true,
                    ("block", _) if inner.is_some() => self.tv_block = true,
                    (_, Some(m)) => match nm.seg(i + 3) {
                        "block" => {
                            self.tv_nm_block = true;
                            if let Some(slot) = self.tv_stages.get_mut(k as usize) {
                                raise(slot, m);
                            }
                            if nm.seg(i + 4) == "0" && nm.w4(i + 5) && nm.d(1) == 1 && nm.d(2) == 7
                            {
                                self.convnext_stage(k, m, nm.d(0));
                            }
                        }
                        "layer_scale" => self.tv_layer_scale = true,
                        "weight" if nm.w4(i + 3) => {
                            if k == 0 && m == 0 {
                                first(&mut self.tv_stem, (nm.d(0), nm.d(1)));
                            }
                            if nm.d(2) == 1
                                && nm.d(3) == 1
                                && self.tv_last.is_none_or(|(l, _)| k > l)
                            {
                                self.tv_last = Some((k, nm.d(0)));
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
                let Some(k) = num(nm.seg(i + 1)) else {
                    return true;
                };
                let (m, at) = match (nm.seg(i + 2), num(nm.seg(i + 2))) {
                    ("blocks" | "layers", _) => (num(nm.seg(i + 3)), i + 4),
                    (_, Some(m)) => (Some(m), i + 3),
                    _ => return true,
                };
                if let Some(m) = m
                    && matches!(nm.seg(at), "conv_dw" | "dwconv")
                    && nm.w4(at + 1)
                    && nm.d(1) == 1
                    && nm.d(2) == 7
                {
                    self.convnext_stage(k, m, nm.d(0));
                    self.note(Anchor::ConvNext, nm.prefix(i));
                }
            }
            _ => return false,
        }
        true
    }

    fn convnext_stage(&mut self, stage: u64, block: u64, width: u64) {
        if let Some(slot) = self.cx.get_mut(stage as usize) {
            let m = slot.map_or(block, |(o, _)| o.max(block));
            *slot = Some((m, width));
        }
    }

    /// The vision backbone: family, where it was found, and whether it sits under an
    /// `encoder`/`backbone` scope. Puts its sizes.
    pub(super) fn backbone(
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
