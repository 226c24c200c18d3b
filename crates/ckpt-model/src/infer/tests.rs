//! Inference on state dicts built by hand after the layouts torch, timm and transformers write.

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
