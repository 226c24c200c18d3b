//! The base model folder: where it is (a folder or a model id in the local Hugging Face cache),
//! its config and weights as read, and the files (config, tokenizer, generation config) copied
//! from it into the output.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ckpt_torch::{Checkpoint, DType, View};
use serde_json::{Value, json};

use crate::error::{ConvertError, Result};
use crate::plan::Planned;

/// The most a base model's JSON file (config, weight index) may hold: the index of a large
/// sharded model is a few MB; anything bigger is not one, and is not read into memory.
pub(crate) const BASE_JSON_LIMIT: u64 = 64 << 20;

/// A small text file of the base model folder: regular files only (a FIFO there would block
/// forever), at most `limit` bytes.
pub(crate) fn read_base_text(p: &Path, limit: u64) -> Option<String> {
    ckpt_torch::open::read_small_text(p, limit).ok()
}

pub(crate) fn read_base_config(base: Option<&Path>) -> Option<Value> {
    let text = read_base_text(&base?.join("config.json"), BASE_JSON_LIMIT)?;
    serde_json::from_str(&text).ok()
}

/// The base folder's own weights: each name with its shape when the file holding it could be
/// read (an index whose shards are absent gives names only). `None` when it has none.
pub(crate) fn base_weights(base: &Path) -> Option<BTreeMap<String, Option<Vec<u64>>>> {
    // Names and shapes of the tensors at the top level of a weights file.
    let read = |p: &Path| -> Option<Vec<(String, Vec<u64>)>> {
        let ck = Checkpoint::open(p).ok()?;
        let items = ck.doc.dict(ck.doc.root())?;
        Some(
            items
                .iter()
                .filter_map(|(k, v)| match ck.doc.view(*v) {
                    View::Tensor(t) => {
                        Some((ckpt_torch::pyrepr::key_str(&ck.doc, *k), t.shape.clone()))
                    }
                    _ => None,
                })
                .collect(),
        )
    };
    for idx in [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ] {
        if let Some(text) = read_base_text(&base.join(idx), BASE_JSON_LIMIT)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && let Some(m) = v.get("weight_map").and_then(Value::as_object)
        {
            let mut names: BTreeMap<String, Option<Vec<u64>>> =
                m.keys().map(|k| (k.clone(), None)).collect();
            let shards: std::collections::BTreeSet<&str> =
                m.values().filter_map(Value::as_str).collect();
            for shard in shards {
                // Only a plain file name inside the folder.
                if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
                    continue;
                }
                for (n, shape) in read(&base.join(shard)).unwrap_or_default() {
                    if let Some(slot) = names.get_mut(&n) {
                        *slot = Some(shape);
                    }
                }
            }
            return Some(names);
        }
    }
    for file in ["model.safetensors", "pytorch_model.bin"] {
        let p = base.join(file);
        if p.is_file() {
            return read(&p).map(|v| v.into_iter().map(|(n, s)| (n, Some(s))).collect());
        }
    }
    None
}

/// Files copied from the base model folder when present.
pub(crate) const BASE_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
];

/// `architectures` for a config that lacks it, by `model_type`.
pub(crate) fn default_architecture(model_type: &str) -> Option<&'static str> {
    Some(match model_type {
        "gpt2" => "GPT2LMHeadModel",
        "llama" => "LlamaForCausalLM",
        "mistral" => "MistralForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        "gemma" => "GemmaForCausalLM",
        "opt" => "OPTForCausalLM",
        "gpt_neox" => "GPTNeoXForCausalLM",
        "phi" => "PhiForCausalLM",
        "bert" => "BertModel",
        "t5" => "T5ForConditionalGeneration",
        _ => return None,
    })
}

pub(crate) fn write_hf_files(
    base: &Path,
    out: &Path,
    cfg: Option<&Value>,
    dtype: Option<&str>,
) -> Result<()> {
    let io = |p: &Path, source| ConvertError::Io {
        path: p.to_path_buf(),
        source,
    };
    if let Some(cfg) = cfg {
        let mut cfg = cfg.clone();
        if let Some(m) = cfg.as_object_mut() {
            if !m.contains_key("architectures")
                && let Some(a) = m
                    .get("model_type")
                    .and_then(Value::as_str)
                    .and_then(default_architecture)
            {
                m.insert("architectures".into(), json!([a]));
            }
            if let Some(d) = dtype {
                m.insert("dtype".into(), json!(d));
            }
        }
        let p = out.join("config.json");
        let mut text = serde_json::to_string_pretty(&cfg).map_err(|e| io(&p, e.into()))?;
        text.push('\n');
        std::fs::write(&p, text).map_err(|e| io(&p, e))?;
        // transformers writes a generation config from the model config; do the same when the
        // base has none.
        if !base.join("generation_config.json").is_file() {
            let mut g = serde_json::Map::new();
            g.insert("_from_model_config".into(), json!(true));
            for k in [
                "bos_token_id",
                "eos_token_id",
                "pad_token_id",
                "decoder_start_token_id",
            ] {
                if let Some(v) = cfg.get(k).filter(|v| !v.is_null()) {
                    g.insert(k.into(), v.clone());
                }
            }
            if let Some(v) = cfg.get("transformers_version") {
                g.insert("transformers_version".into(), v.clone());
            }
            g.insert("output_attentions".into(), json!(false));
            g.insert("output_hidden_states".into(), json!(false));
            g.insert(
                "use_cache".into(),
                cfg.get("use_cache").cloned().unwrap_or(json!(true)),
            );
            let p = out.join("generation_config.json");
            let mut text =
                serde_json::to_string_pretty(&Value::Object(g)).map_err(|e| io(&p, e.into()))?;
            text.push('\n');
            std::fs::write(&p, text).map_err(|e| io(&p, e))?;
        }
    }
    for f in BASE_FILES {
        let src = base.join(f);
        if src.is_file() {
            std::fs::copy(&src, out.join(f)).map_err(|e| io(&src, e))?;
        }
    }
    Ok(())
}

/// The dtype transformers records for the weights: the one holding most elements.
pub(crate) fn dominant_dtype(tensors: &[Planned]) -> Option<&'static str> {
    let mut by: HashMap<DType, u64> = HashMap::new();
    for Planned { t, .. } in tensors {
        *by.entry(t.dtype).or_default() += t.numel();
    }
    by.into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(d, _)| d.name())
}

/// The Hugging Face hub cache, found as `huggingface_hub` finds it: `$HF_HUB_CACHE`, else
/// (its older name) `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. Empty variables count as
/// unset.
pub fn hub_cache() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HF_HUB_CACHE")
        .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
}

/// A base model given as a folder, or a model id found in the local Hugging Face cache
/// (`hub_cache`: `models--org--name/snapshots/<revision>/`, the revision `refs/main` names
/// when present).
/// Never the network.
pub fn resolve_base_model(spec: &str, relative_to: Option<&Path>) -> Option<PathBuf> {
    let direct = match relative_to {
        Some(d) => d.join(spec),
        None => PathBuf::from(spec),
    };
    if direct.join("config.json").is_file() {
        return Some(direct);
    }
    let hub = hub_cache()?;
    let repo = hub.join(format!("models--{}", spec.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Some(rev) = read_base_text(&repo.join("refs/main"), 4096) {
        let p = snapshots.join(rev.trim());
        if p.join("config.json").is_file() {
            return Some(p);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("config.json").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_config_is_a_base_model() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), "{}").unwrap();
        assert_eq!(
            resolve_base_model(d.path().to_str().unwrap(), None),
            Some(d.path().to_path_buf())
        );
        assert_eq!(resolve_base_model("config.json-less", Some(d.path())), None);
    }
}
