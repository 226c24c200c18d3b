//! Text transformers: GPT-2 (`transformer.h.N.attn.c_attn`, `wte`, `wpe`), Llama-style
//! decoders and their mixture-of-experts variants (`layers.N.self_attn.q_proj`,
//! `mlp.gate_proj`), BERT/RoBERTa (`layer.N.attention.self.query`; HF ViT shares the `layer.N`
//! shape and is told apart here) and T5 (`block.N.layer.K.SelfAttention`). Their names are the
//! most specific, so they are decided before any vision backbone.

use serde_json::Value;

use super::name::{Name, first, num, raise};
use super::{Anchor, Inference, Scan};

impl Scan<'_> {
    /// Match segment `i` (`s`) of a name against the text patterns; false when none applies.
    pub(super) fn visit_text(&mut self, nm: &Name<'_>, i: usize, s: &str) -> bool {
        match s {
            // GPT-2: transformer.h.N.{attn.c_attn, mlp.c_fc, ln_1, ln_2}, wte, wpe.
            "h" => {
                let Some(k) = num(nm.seg(i + 1)) else {
                    return true;
                };
                match nm.seg(i + 2) {
                    "attn" => {
                        if nm.seg(i + 3) == "c_attn" && nm.w2(i + 4) {
                            first(&mut self.g_c_attn, (nm.d(0), nm.d(1)));
                            self.note(Anchor::Gpt2, nm.prefix(i));
                        }
                    }
                    "mlp" => {
                        if nm.seg(i + 3) == "c_fc" && nm.w2(i + 4) {
                            first(&mut self.g_fc, nm.d(1));
                        }
                    }
                    "ln_1" | "ln_2" => {}
                    _ => return true,
                }
                raise(&mut self.g_layers, k);
            }
            "wte" if nm.w2(i + 1) => first(&mut self.wte, (nm.d(0), nm.d(1))),
            "wpe" if nm.w2(i + 1) => first(&mut self.wpe, (nm.d(0), nm.d(1))),
            "lm_head" => {
                self.lm_head = true;
                if nm.w2(i + 1) {
                    first(&mut self.lm_head_shape, (nm.d(0), nm.d(1)));
                }
            }
            // Llama-style: layers.N.{self_attn.q_proj, mlp.gate_proj, …}.
            "layers" => {
                let Some(k) = num(nm.seg(i + 1)) else {
                    return true;
                };
                match nm.seg(i + 2) {
                    "self_attn" => match nm.seg(i + 3) {
                        "q_proj" => {
                            if nm.w2(i + 4) {
                                first(&mut self.l_q, (nm.d(0), nm.d(1)));
                                self.note(Anchor::Llama, nm.prefix(i));
                            } else if nm.ends(i + 4, "bias") {
                                self.l_q_bias = true;
                            }
                        }
                        "k_proj" if nm.w2(i + 4) => first(&mut self.l_k, nm.d(0)),
                        _ => {}
                    },
                    "mlp" | "block_sparse_moe" => match nm.seg(i + 3) {
                        "gate_proj" if nm.w2(i + 4) => first(&mut self.l_gate, nm.d(0)),
                        "experts" => {
                            if let Some(e) = num(nm.seg(i + 4)) {
                                raise(&mut self.l_experts, e);
                                if matches!(nm.seg(i + 5), "w1" | "gate_proj") && nm.w2(i + 6) {
                                    first(&mut self.l_gate, nm.d(0));
                                }
                            }
                        }
                        _ => {}
                    },
                    "input_layernorm" | "post_attention_layernorm" => {}
                    _ => return true,
                }
                raise(&mut self.l_layers, k);
            }
            "embed_tokens" if nm.w2(i + 1) => first(&mut self.embed_tokens, (nm.d(0), nm.d(1))),
            // BERT (layer.N.attention.self.query) and HF ViT (layer.N.attention.attention.query).
            "layer" => {
                let Some(k) = num(nm.seg(i + 1)) else {
                    return true;
                };
                match nm.seg(i + 2) {
                    "attention" => match (nm.seg(i + 3), nm.seg(i + 4)) {
                        ("self", "query") if nm.w2(i + 5) => {
                            first(&mut self.bert_hidden, nm.d(0));
                            self.roberta |= nm.prefix(i).contains("roberta");
                            self.note(Anchor::Bert, nm.prefix(i));
                        }
                        ("attention", "query") if nm.w2(i + 5) => {
                            first(&mut self.hfvit_hidden, nm.d(0));
                            self.note(Anchor::Vit, nm.prefix(i));
                        }
                        _ => {}
                    },
                    "intermediate" => {
                        if nm.seg(i + 3) == "dense" && nm.w2(i + 4) {
                            first(&mut self.layer_inter, nm.d(0));
                        }
                    }
                    "output" => {}
                    _ => return true,
                }
                raise(&mut self.layer_max, k);
            }
            "word_embeddings" if nm.w2(i + 1) => first(&mut self.word_emb, (nm.d(0), nm.d(1))),
            "position_embeddings" => {
                if nm.w2(i + 1) {
                    first(&mut self.pos_emb_rows, nm.d(0));
                } else if i + 1 == nm.n && nm.shape.len() == 3 {
                    first(&mut self.pos_tokens, nm.d(1));
                }
            }
            "token_type_embeddings" if nm.w2(i + 1) => first(&mut self.type_rows, nm.d(0)),
            "cls" if nm.seg(i + 1) == "predictions" => self.mlm = true,
            // T5: {encoder,decoder}.block.N.layer.K.{SelfAttention, DenseReluDense, …}.
            "block" => {
                let (Some(k), true, Some(_)) = (
                    num(nm.seg(i + 1)),
                    nm.seg(i + 2) == "layer",
                    num(nm.seg(i + 3)),
                ) else {
                    return true;
                };
                match nm.seg(i + 4) {
                    "SelfAttention" => match nm.seg(i + 5) {
                        "q" if nm.w2(i + 6) => {
                            first(&mut self.t5_q, (nm.d(0), nm.d(1)));
                            self.note(Anchor::T5, nm.prefix(i));
                        }
                        "relative_attention_bias" if nm.w2(i + 6) => {
                            first(&mut self.t5_rel, (nm.d(0), nm.d(1)));
                        }
                        _ => {}
                    },
                    "DenseReluDense" => match nm.seg(i + 5) {
                        "wi" if nm.w2(i + 6) => first(&mut self.t5_ff, nm.d(0)),
                        "wi_0" if nm.w2(i + 6) => {
                            first(&mut self.t5_ff, nm.d(0));
                            self.t5_gated = true;
                        }
                        _ => {}
                    },
                    "EncDecAttention" | "layer_norm" => {}
                    _ => return true,
                }
                match if i > 0 { nm.segs[i - 1] } else { "" } {
                    "encoder" => raise(&mut self.t5_enc, k),
                    "decoder" => raise(&mut self.t5_dec, k),
                    _ => {}
                }
            }
            "shared" if nm.w2(i + 1) => first(&mut self.shared, (nm.d(0), nm.d(1))),
            _ => return false,
        }
        true
    }

    /// The text family found, with its sizes; false when none was.
    pub(super) fn finish_text(
        &self,
        out: &mut Inference,
        put: &mut impl FnMut(&str, Option<Value>),
    ) -> bool {
        let vocab_from_head = self.lm_head_shape.map(|(v, _)| v);

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
            out.head = self.text_head(Anchor::Llama, put);
        } else if let Some((hidden, _)) = self.g_c_attn {
            out.family = Some("gpt2".into());
            put("layers", self.g_layers.map(|k| (k + 1).into()));
            put("hidden_size", Some(hidden.into()));
            put("intermediate_size", self.g_fc.map(Value::from));
            let vocab = self.wte.map(|(v, _)| v).or(vocab_from_head);
            put("vocab_size", vocab.map(Value::from));
            put("max_positions", self.wpe.map(|(p, _)| p.into()));
            out.head = self.text_head(Anchor::Gpt2, put);
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
            return false;
        }
        true
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
}
