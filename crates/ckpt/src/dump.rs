//! `ckpt dump`: the decoded object as JSON in the corpus mapping.

use anyhow::{Context, Result, bail};
use std::io::Write as _;

use ckpt_torch::json::{JsonError, JsonOptions, write_json};
use ckpt_torch::pyrepr::key_str;
use ckpt_torch::{Checkpoint, Doc, NodeId, View};

use crate::Outcome;
use crate::cli::DumpArgs;

pub fn run(a: &DumpArgs) -> Result<Outcome> {
    let ck = Checkpoint::open(&a.file)?;
    // What torch.load returns: the pickle's root, or for a TorchScript archive the
    // RecursiveScriptModule torch.jit.load builds (its parameters and buffers).
    let top = ck.doc.loaded_root();
    let root = match &a.at {
        Some(path) => find_path(&ck.doc, top, path)
            .with_context(|| format!("{}: no value at {path:?}", a.file.display()))?,
        None => top,
    };
    let opts = JsonOptions {
        max_nodes: a.max_nodes,
        indent: if a.compact { None } else { Some(1) },
        ..JsonOptions::default()
    };
    let hashes = a.tensor_hashes;
    let mut hasher = |t: &ckpt_torch::TensorRef| -> Result<Option<String>, String> {
        if !hashes {
            return Ok(None);
        }
        ck.tensor_sha256(t, "dump")
            .map(Some)
            .map_err(|e| e.to_string())
    };
    // Written as it is produced: the JSON of a document is never held whole in memory.
    let mut out = std::io::BufWriter::with_capacity(64 << 10, crate::sink::stdout());
    match write_json(&ck.doc, root, &opts, &mut hasher, &mut out) {
        Ok(()) => {}
        Err(JsonError::Tensor(msg)) => bail!("{msg}"),
        Err(JsonError::Io(e)) => return Err(e.into()),
        Err(e) => bail!("{}: {e}", a.file.display()),
    }
    if a.compact {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

/// Resolve a dotted path. Keys may themselves contain dots (`net.encoder.weight`,
/// `ModelCheckpoint{'monitor': 'val/hmean', ...}`), so at each level the longest key that
/// matches a prefix of the remaining path wins.
pub fn find_path(doc: &Doc, start: NodeId, path: &str) -> Option<NodeId> {
    let mut cur = start;
    let mut rest = path;
    while !rest.is_empty() {
        let next = match doc.view(cur) {
            View::Dict(items) => {
                let mut best: Option<(usize, NodeId)> = None;
                for (k, v) in items {
                    let ks = key_str(doc, *k);
                    let matches = rest == ks
                        || (rest.starts_with(ks.as_str())
                            && rest.as_bytes().get(ks.len()) == Some(&b'.'));
                    if matches && best.is_none_or(|(l, _)| ks.len() > l) {
                        best = Some((ks.len(), *v));
                    }
                }
                let (len, v) = best?;
                rest = rest.get(len..).unwrap_or("");
                v
            }
            View::List(items) | View::Tuple(items) => {
                let (head, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let i: usize = head.parse().ok()?;
                rest = if tail.is_empty() {
                    ""
                } else {
                    &rest[head.len()..]
                };
                *items.get(i)?
            }
            View::Object(o) => {
                let (head, _) = rest.split_once('.').unwrap_or((rest, ""));
                match head {
                    "state" => {
                        rest = &rest[head.len()..];
                        o.state?
                    }
                    "args" => {
                        rest = &rest[head.len()..];
                        // args are addressed by index next
                        let tail = rest.strip_prefix('.').unwrap_or(rest);
                        let (idx, _) = tail.split_once('.').unwrap_or((tail, ""));
                        let i: usize = idx.parse().ok()?;
                        rest = &tail[idx.len()..];
                        *o.args.get(i)?
                    }
                    _ => {
                        // Look inside the state dict directly (dataclass fields).
                        let s = o.state?;
                        return find_path(doc, s, rest);
                    }
                }
            }
            _ => return None,
        };
        cur = next;
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(cur)
}
