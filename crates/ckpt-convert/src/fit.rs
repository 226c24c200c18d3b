//! Whether the tensors fit the base model: its config (embedding and layer sizes of a known
//! `model_type`) and its own weights' names and shapes, with a hint when the names differ by a
//! prefix.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use crate::base::base_weights;
use crate::plan::Planned;
use ckpt_model::tied::is_tied_alias;

/// When the output's names and the base model's differ by a leading prefix (a Lightning
/// module's `model.` attribute, a wrapper we do not know), the `--strip-prefix` or
/// `--add-prefix` that maps most of the unexpected names onto missing ones.
pub(crate) fn prefix_hint(missing: &[String], unexpected: &[String]) -> Option<String> {
    if missing.is_empty() || unexpected.is_empty() {
        return None;
    }
    let miss: std::collections::HashSet<&str> = missing.iter().map(String::as_str).collect();
    let unexp: std::collections::HashSet<&str> = unexpected.iter().map(String::as_str).collect();
    // (prefix, strip?) -> names it explains
    let mut counts: HashMap<(&str, bool), usize> = HashMap::new();
    for (names, other, strip) in [(unexpected, &miss, true), (missing, &unexp, false)] {
        for n in names {
            for (i, _) in n.match_indices('.') {
                let (prefix, rest) = n.split_at(i + 1);
                if other.contains(rest) {
                    *counts.entry((prefix, strip)).or_default() += 1;
                }
            }
        }
    }
    let ((prefix, strip), n) = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.0.len().cmp(&a.0.0.len())))?;
    let (flag, of) = if strip {
        ("--strip-prefix", unexpected.len())
    } else {
        ("--add-prefix", missing.len())
    };
    // Only a prefix that explains most of them is worth saying.
    (n * 2 > of).then(|| {
        format!(
            "{n} of the {of} {} names match the base model's with {flag} {prefix}",
            if strip { "unexpected" } else { "missing" }
        )
    })
}

/// How a known `model_type` names its input embedding and its layers, and which config keys
/// give the sizes the tensors must have.
pub(crate) struct Arch {
    /// The embedding's name ends with this; its shape is [vocab_size, hidden].
    embedding: &'static str,
    /// Other names it may have in a checkpoint that transformers still loads (T5 without
    /// `shared.weight`: its encoder's `embed_tokens`, which it ties to `shared`).
    also: &'static [&'static str],
    /// Config keys for the embedding width, the first present wins.
    hidden: &'static [&'static str],
    /// Layers are `…<segment>.<N>.…`; `None`: not checked (T5 counts encoder and decoder
    /// blocks separately).
    layers: Option<(&'static str, &'static [&'static str])>,
}

pub(crate) fn arch(model_type: &str) -> Option<Arch> {
    const LAYERS: Option<(&str, &[&str])> = Some(("layers", &["num_hidden_layers"]));
    Some(match model_type {
        "gpt2" => Arch {
            embedding: "wte.weight",
            also: &[],
            hidden: &["n_embd", "hidden_size"],
            layers: Some(("h", &["n_layer", "num_hidden_layers"])),
        },
        "llama" | "mistral" | "mixtral" | "qwen2" | "qwen3" | "gemma" | "gemma2" | "phi"
        | "phi3" => Arch {
            embedding: "embed_tokens.weight",
            also: &[],
            hidden: &["hidden_size"],
            layers: LAYERS,
        },
        "opt" => Arch {
            embedding: "embed_tokens.weight",
            also: &[],
            hidden: &["word_embed_proj_dim", "hidden_size"],
            layers: LAYERS,
        },
        "gpt_neox" => Arch {
            embedding: "embed_in.weight",
            also: &[],
            hidden: &["hidden_size"],
            layers: LAYERS,
        },
        "bert" | "roberta" => Arch {
            embedding: "word_embeddings.weight",
            also: &[],
            hidden: &["hidden_size"],
            layers: Some(("layer", &["num_hidden_layers"])),
        },
        "t5" => Arch {
            embedding: "shared.weight",
            also: &["encoder.embed_tokens.weight"],
            hidden: &["d_model"],
            layers: None,
        },
        _ => return None,
    })
}

/// The model types whose embedding name `name` has, to say what a checkpoint looks like.
pub(crate) fn looks_like(name: &str) -> Option<&'static str> {
    [
        ("wte.weight", "gpt2"),
        ("word_embeddings.weight", "bert"),
        ("embed_in.weight", "gpt_neox"),
        ("shared.weight", "t5"),
        ("embed_tokens.weight", "llama"),
    ]
    .into_iter()
    .find(|(e, _)| name.ends_with(e))
    .map(|(_, t)| t)
}

/// Reasons the tensors cannot be the model `cfg` describes, from what a config can check for
/// a known `model_type`: the input embedding is there under that architecture's name, its
/// shape is [vocab_size, hidden size], and the layers counted in the names are as many as the
/// config says. Nothing is checked for other model types.
pub(crate) fn config_misfits(cfg: &Value, tensors: &[Planned], tied: &[String]) -> Vec<String> {
    let mut why = Vec::new();
    let Some(mt) = cfg.get("model_type").and_then(Value::as_str) else {
        return why;
    };
    let Some(a) = arch(mt) else {
        return why;
    };
    let names = || {
        tensors
            .iter()
            .map(|p| (p.name.as_str(), Some(&p.t.shape)))
            .chain(tied.iter().map(|n| (n.as_str(), None)))
    };
    let emb = tensors
        .iter()
        .find(|p| p.name.ends_with(a.embedding) && !is_tied_alias(&p.name))
        .or_else(|| {
            tensors
                .iter()
                .find(|p| a.also.iter().any(|e| p.name.ends_with(e)))
        });
    match emb {
        None => {
            let other = names().find_map(|(n, _)| looks_like(n).map(|t| (n, t)));
            why.push(match other {
                Some((n, t)) if t != mt => format!(
                    "config.json says model_type {mt:?} but no tensor is named *{}; its input embedding is {n}, as {t} names it",
                    a.embedding
                ),
                _ => format!(
                    "config.json says model_type {mt:?} but no tensor is named *{}",
                    a.embedding
                ),
            });
        }
        Some(p) => {
            let want_vocab = cfg.get("vocab_size").and_then(Value::as_u64);
            let want_hidden = a
                .hidden
                .iter()
                .find_map(|k| cfg.get(*k).and_then(Value::as_u64).map(|v| (*k, v)));
            let shape = &p.t.shape;
            if let (Some(v), Some(rows)) = (want_vocab, shape.first())
                && *rows != v
            {
                why.push(format!(
                    "{} has {rows} rows but config.json says vocab_size {v}",
                    p.name
                ));
            }
            if let (Some((k, h)), Some(cols)) = (want_hidden, shape.get(1))
                && *cols != h
            {
                why.push(format!(
                    "{} is {cols} wide but config.json says {k} {h}",
                    p.name
                ));
            }
        }
    }
    if let Some((segment, keys)) = a.layers
        && let Some((k, want)) = keys
            .iter()
            .find_map(|k| cfg.get(*k).and_then(Value::as_u64).map(|v| (*k, v)))
    {
        let seg = format!("{segment}.");
        let mut count: Option<u64> = None;
        for (n, _) in names() {
            for (i, _) in n.match_indices(&seg) {
                if i > 0 && n.as_bytes().get(i - 1) != Some(&b'.') {
                    continue;
                }
                let rest = n.get(i + seg.len()..).unwrap_or("");
                if let Some(idx) = rest.split('.').next().and_then(|x| x.parse::<u64>().ok()) {
                    count = Some(count.unwrap_or(0).max(idx.saturating_add(1)));
                }
            }
        }
        match count {
            Some(c) if c != want => why.push(format!(
                "the checkpoint has {c} layers (…{seg}N.…) but config.json says {k} {want}"
            )),
            None if emb.is_some() => why.push(format!(
                "config.json says {k} {want} but no tensor name has …{seg}N.…"
            )),
            _ => {}
        }
    }
    why
}

/// Compare the planned tensors with the base model: its config (`config_misfits`) and, when
/// the folder has weights of its own, their names and shapes. Ok: the names the base has that
/// the output lacks, and the reverse (tied names, left out on purpose, count as present).
/// Err: why the checkpoint does not fit — no name in common, a common name with another shape,
/// or what the config contradicts.
#[allow(clippy::type_complexity)]
pub(crate) fn check_fit(
    base: &Path,
    cfg: Option<&Value>,
    tensors: &[Planned],
    tied: &[String],
) -> std::result::Result<(Vec<String>, Vec<String>, Option<String>), String> {
    let mut why = cfg.map_or_else(Vec::new, |c| config_misfits(c, tensors, tied));
    let (mut missing, mut unexpected, mut hint) = (Vec::new(), Vec::new(), None);
    if let Some(want) = base_weights(base) {
        let have: BTreeMap<&str, &[u64]> = tensors
            .iter()
            .map(|p| (p.name.as_str(), p.t.shape.as_slice()))
            .collect();
        missing = want
            .keys()
            .filter(|n| !have.contains_key(n.as_str()) && !tied.contains(n))
            .cloned()
            .collect();
        unexpected = have
            .keys()
            .filter(|n| !want.contains_key(**n))
            .map(|n| (*n).to_owned())
            .collect();
        hint = prefix_hint(&missing, &unexpected);
        let common = have.keys().filter(|n| want.contains_key(**n)).count();
        if common == 0 && !have.is_empty() {
            let first = |v: &[String]| v.iter().take(2).cloned().collect::<Vec<_>>().join(", ");
            why.insert(
                0,
                format!(
                    "none of its {} tensor names is among the base model's {} (it has {}, …; the base model has {}, …){}",
                    have.len(),
                    want.len(),
                    first(&unexpected),
                    first(&missing),
                    hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default()
                ),
            );
        }
        let mut differ = Vec::new();
        for (n, shape) in &have {
            if let Some(Some(w)) = want.get(*n)
                && w.as_slice() != *shape
            {
                differ.push(format!("{n} is {shape:?} here, {w:?} in the base model"));
            }
        }
        if !differ.is_empty() {
            let n = differ.len();
            let more = if n > 3 { ", …" } else { "" };
            differ.truncate(3);
            why.push(format!(
                "{n} tensor{} differ in shape from the base model's: {}{more}",
                if n == 1 { "" } else { "s" },
                differ.join("; ")
            ));
        }
    }
    if why.is_empty() {
        Ok((missing, unexpected, hint))
    } else {
        Err(why.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::From;
    use ckpt_torch::{DType, TensorRef};
    use serde_json::json;

    #[test]
    fn a_prefix_between_output_and_base_names_is_pointed_out() {
        let v = |xs: &[&str]| xs.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        // A LightningModule's `model.` attribute in front of every name.
        let h = prefix_hint(
            &v(&[
                "transformer.wte.weight",
                "transformer.h.0.attn.c_attn.weight",
                "lm_head.weight",
            ]),
            &v(&[
                "model.transformer.wte.weight",
                "model.transformer.h.0.attn.c_attn.weight",
            ]),
        );
        assert_eq!(
            h.as_deref(),
            Some("2 of the 2 unexpected names match the base model's with --strip-prefix model.")
        );
        // The other way: the base wants `transformer.`.
        let h = prefix_hint(
            &v(&["transformer.wte.weight", "transformer.ln_f.weight"]),
            &v(&["wte.weight", "ln_f.weight", "extra.bias"]),
        );
        assert_eq!(
            h.as_deref(),
            Some("2 of the 2 missing names match the base model's with --add-prefix transformer.")
        );
        // Unrelated differences: nothing to say.
        assert_eq!(prefix_hint(&v(&["a.weight"]), &v(&["b.weight"])), None);
        assert_eq!(prefix_hint(&[], &v(&["b.weight"])), None);
    }

    fn planned(name: &str, shape: &[u64]) -> Planned<'static> {
        Planned {
            name: name.to_owned(),
            t: crate::plan::Tref::Owned(Box::new(TensorRef {
                dtype: DType::F32,
                shape: shape.to_vec(),
                stride: vec![1; shape.len()],
                offset: 0,
                storage: None,
                requires_grad: false,
                kind: ckpt_torch::TensorKind::Tensor,
            })),
            from: From::Chunks(Vec::new()),
        }
    }

    #[test]
    fn a_config_is_checked_for_the_architectures_it_names() {
        let llama = json!({"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
                           "num_hidden_layers": 2});
        let mut t = vec![
            planned("model.embed_tokens.weight", &[10, 8]),
            planned("model.layers.0.mlp.up_proj.weight", &[16, 8]),
            planned("model.layers.1.mlp.up_proj.weight", &[16, 8]),
            planned("lm_head.weight", &[10, 8]),
        ];
        assert!(config_misfits(&llama, &t, &[]).is_empty());
        t.push(planned("model.layers.2.mlp.up_proj.weight", &[16, 8]));
        assert_eq!(
            config_misfits(&llama, &t, &[]),
            ["the checkpoint has 3 layers (…layers.N.…) but config.json says num_hidden_layers 2"]
        );
        // An `lm_head.weight` is not the input embedding, even when nothing else is.
        let heads = vec![planned("lm_head.weight", &[10, 8])];
        assert!(config_misfits(&llama, &heads, &[])[0].contains("no tensor is named"));
        // T5 without `shared.weight`: its encoder's token embedding stands in.
        let t5 = json!({"model_type": "t5", "vocab_size": 12, "d_model": 4});
        let t = vec![
            planned("encoder.embed_tokens.weight", &[12, 4]),
            planned("encoder.block.0.layer.0.SelfAttention.q.weight", &[4, 4]),
        ];
        assert!(config_misfits(&t5, &t, &[]).is_empty());
        let t = vec![planned("encoder.embed_tokens.weight", &[12, 6])];
        assert_eq!(
            config_misfits(&t5, &t, &[]),
            ["encoder.embed_tokens.weight is 6 wide but config.json says d_model 4"]
        );
        // Unknown model types: nothing is checked.
        let other = json!({"model_type": "mamba", "vocab_size": 1});
        assert!(config_misfits(&other, &t, &[]).is_empty());
    }
}
