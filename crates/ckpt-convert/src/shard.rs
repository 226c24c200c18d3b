//! Sharding: the weights as one `model.safetensors`, or as `model-0000N-of-0000M.safetensors`
//! written in parallel plus `model.safetensors.index.json`.

use std::ops::Range;
use std::path::Path;

use ckpt_torch::{Checkpoint, DType};
use serde_json::json;

use crate::error::{ConvertError, Result};
use crate::plan::Planned;
use crate::safetensors::{out_nbytes, write_safetensors};

/// Split tensors (already sorted by name) into shards of at most `max` bytes; a tensor larger
/// than `max` gets a shard of its own. A shard is a range of `tensors` (not a copy of its
/// plans).
pub(crate) fn shard(tensors: &[Planned], max: u64, cast: Option<DType>) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    let mut size = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        let n = out_nbytes(&t.t, cast);
        if i > start && size.saturating_add(n) > max {
            out.push(start..i);
            start = i;
            size = 0;
        }
        size = size.saturating_add(n);
    }
    if start < tensors.len() {
        out.push(start..tensors.len());
    }
    out
}

/// Write the weights into `dir`: one `model.safetensors` when they fit in one shard of
/// `max_shard_size`, else the shards and their `model.safetensors.index.json`. `tick` is told
/// of bytes as they are written; `flush` syncs each file as it is completed.
pub(crate) fn write_weights(
    cks: &[Checkpoint],
    tensors: &[Planned],
    dir: &Path,
    max_shard_size: u64,
    cast: Option<DType>,
    tick: &(dyn Fn(u64) + Sync),
    flush: bool,
) -> Result<()> {
    let shards = shard(tensors, max_shard_size, cast);
    if shards.len() <= 1 {
        write_safetensors(
            cks,
            tensors,
            &dir.join("model.safetensors"),
            cast,
            tick,
            flush,
        )?;
    } else {
        // Shards are separate files, written in parallel: one file's writes serialize on
        // its inode, two files' do not (on 2 cores, 2 shards take the time of one).
        let n = shards.len();
        let files: Vec<String> = (1..=n)
            .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
            .collect();
        let jobs: Vec<(&[Planned], &String)> = shards
            .iter()
            .map(|r| tensors.get(r.clone()).unwrap_or(&[]))
            .zip(&files)
            .collect();
        let failed = std::sync::atomic::AtomicBool::new(false);
        let results = ckpt_torch::par::map(&jobs, |(part, file)| {
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(0); // another shard failed: the folder is discarded anyway
            }
            let r = write_safetensors(cks, part, &dir.join(file), cast, tick, flush);
            if r.is_err() {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            r
        });
        for r in results {
            r?;
        }
        let mut weight_map = serde_json::Map::new();
        let mut total: u64 = 0;
        for (part, file) in &jobs {
            for p in part.iter() {
                weight_map.insert(p.name.clone(), json!(file));
                total += out_nbytes(&p.t, cast);
            }
        }
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let p = dir.join("model.safetensors.index.json");
        let mut text = serde_json::to_string_pretty(&index).map_err(|e| ConvertError::Io {
            path: p.clone(),
            source: e.into(),
        })?;
        text.push('\n');
        std::fs::write(&p, text).map_err(|source| ConvertError::Io {
            path: p.clone(),
            source,
        })?;
    }
    Ok(())
}
