//! The parts around a backbone: decoders (PAN, FPN, U-Net), heads (DBNet's binarize/thresh
//! branches, segmentation heads, classifiers scoped to the backbone they follow) and how a
//! vision model is named from them (`dbnet`, else the decoder, else the backbone).

use serde_json::Value;

use super::name::{Name, first, num, scopes, upn};
use super::{Anchor, Inference, Scan};

/// A linear layer that may be the classifier (`fc`, `head`, `head.fc`, `classifier[.N]`,
/// `classifier.out_proj`, `last_linear`, `score`).
pub(super) struct Candidate {
    prefix: String,
    index: u64,
    classes: u64,
}

impl Scan<'_> {
    /// Match segment `i` (`s`) of a name against decoder and head patterns; false when none
    /// applies.
    pub(super) fn visit_parts(&mut self, nm: &Name<'_>, i: usize, s: &str) -> bool {
        match s {
            // Decoders.
            "bottom_up" => self.bottom_up = true,
            "top_down" => self.top_down = true,
            "pafpn_convs" => self.pafpn = true,
            "inner_blocks" | "layer_blocks" | "seg_blocks" | "skip_conv" => self.fpn = true,
            "in2" | "in3" | "in4" | "in5" | "out2" | "out3" | "out4" | "out5" | "p5" | "p4"
                if nm.in_dec =>
            {
                self.fpn = true;
            }
            "up" | "ups" | "upconv" | "upconvs" | "up_convs" | "upsamples" if nm.in_dec => {
                self.unet_dec = true;
            }
            "up_blocks" => self.up_blocks = true,
            "down_blocks" => self.down_blocks = true,
            // Heads.
            "binarize" => self.binarize = true,
            "thresh" => self.thresh = true,
            "segmentation_head" => {
                self.seg_head = true;
                if num(nm.seg(i + 1)).is_some() && nm.w4(i + 2) {
                    first(&mut self.seg_classes, nm.d(0));
                }
            }
            "fc" | "head" | "classifier" | "last_linear" | "score" => {
                let index = num(nm.seg(i + 1));
                let ok = nm.w2(i + 1)
                    || (s == "head" && nm.seg(i + 1) == "fc" && nm.w2(i + 2))
                    || (s == "classifier" && index.is_some() && nm.w2(i + 2))
                    || (s == "classifier" && nm.seg(i + 1) == "out_proj" && nm.w2(i + 2));
                if ok {
                    self.candidates.push(Candidate {
                        prefix: nm.prefix(i).to_owned(),
                        index: index.unwrap_or(0),
                        classes: nm.d(0),
                    });
                }
            }
            _ => return false,
        }
        true
    }

    /// Decoder parts named by a prefix and an index (`lateral*`, `fpn*`, `upN`, `downN`), for a
    /// segment no pattern matched.
    pub(super) fn visit_part_prefix(&mut self, nm: &Name<'_>, s: &str) {
        let b = s.as_bytes();
        match b.first() {
            Some(b'l') if s.starts_with("lateral") => self.lateral = true,
            Some(b'f') if s.starts_with("fpn") => self.fpn = true,
            Some(b'u') if upn(s, "up") => {
                self.up_n = true;
                self.unet_dec |= nm.in_dec;
            }
            Some(b'd') if upn(s, "down") => self.down_n = true,
            _ => {}
        }
    }

    /// The classifier head scoped at (or above) the backbone found at `anchor`.
    pub(super) fn classifier(&self, anchor: Anchor) -> Option<u64> {
        let at = self.anchors[anchor as usize].as_deref()?;
        self.candidates
            .iter()
            .filter(|c| scopes(&c.prefix, at))
            .max_by_key(|c| (c.prefix.len(), c.index))
            .map(|c| c.classes)
    }

    /// Vision backbones, decoders and heads.
    pub(super) fn finish_vision(
        &self,
        out: &mut Inference,
        put: &mut impl FnMut(&str, Option<Value>),
    ) {
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
}
