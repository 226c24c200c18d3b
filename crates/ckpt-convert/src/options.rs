//! What a conversion is asked to do: the target, the base model, names, shards, casts, and how
//! carefully to write.

use std::path::PathBuf;

use ckpt_torch::DType;

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A folder transformers loads: weights, config, tokenizer.
    HuggingFace,
    /// Just the tensors, as `model.safetensors` in the output folder.
    Safetensors,
}

/// Called as tensor bytes are written: (bytes written, bytes to write) for the current file.
pub type Progress = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;

#[derive(Clone)]
pub struct ConvertOptions {
    pub target: Target,
    /// The base model folder (config, tokenizer, generation config).
    pub base_model: Option<PathBuf>,
    /// Dotted path of the state dict inside the checkpoint.
    pub key: Option<String>,
    pub strip_prefix: Vec<String>,
    pub add_prefix: Option<String>,
    pub force: bool,
    /// Flush the output to disk (files, the folder, its parent) before and after the rename
    /// into place. Without it the rename still makes an interrupted *process* leave no half
    /// folder, as `cp`, `save_file` and `save_pretrained` do; with it the folder also survives a
    /// power loss. Replacing an existing folder (`force`) always flushes, since the old folder
    /// is removed right after.
    pub sync: bool,
    pub dry_run: bool,
    /// Largest shard in bytes; above it, `model-0000N-of-0000M.safetensors` + an index.
    pub max_shard_size: u64,
    /// Cast floating-point tensors to this dtype (`--dtype bf16|fp16|fp32`); `None` keeps.
    pub dtype: Option<DType>,
    /// Progress reports (the CLI draws a bar in bytes on a terminal).
    pub progress: Option<Progress>,
}

impl ConvertOptions {
    /// Plain safetensors output: no base model, no renaming, no fsync, no progress; shards
    /// above `max_shard_size` bytes, floating-point tensors cast to `dtype` when given.
    pub fn safetensors(max_shard_size: u64, dtype: Option<DType>) -> ConvertOptions {
        ConvertOptions {
            target: Target::Safetensors,
            base_model: None,
            key: None,
            strip_prefix: Vec::new(),
            add_prefix: None,
            force: false,
            sync: false,
            dry_run: false,
            max_shard_size,
            dtype,
            progress: None,
        }
    }
}

impl std::fmt::Debug for ConvertOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvertOptions")
            .field("target", &self.target)
            .field("base_model", &self.base_model)
            .field("key", &self.key)
            .field("max_shard_size", &self.max_shard_size)
            .field("dtype", &self.dtype)
            .field("force", &self.force)
            .field("sync", &self.sync)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// Parse `5GB`, `500MB`, `10KB`, `1024` (decimal units, as Hugging Face writes them; `GiB`
/// and friends are binary).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 1.0).then_some(v as u64)
}
