//! The output folder, written whole or not at all: a temporary folder beside the target,
//! renamed into place when complete; `--force` replaces only a folder a conversion wrote.

use std::path::{Path, PathBuf};

use ckpt_torch::{Checkpoint, DType};
use serde_json::Value;

use crate::base::{BASE_FILES, dominant_dtype, read_base_config, write_hf_files};
use crate::error::{ConvertError, Result};
use crate::options::{ConvertOptions, Target};
use crate::plan::Planned;
use crate::report::Converted;
use crate::safetensors::out_nbytes;
use crate::shard::write_weights;

/// Refuse an existing output, read the base config, and say whether heads are tied.
pub(crate) fn prepare(output: &Path, opts: &ConvertOptions) -> Result<(Option<Value>, bool)> {
    if output.symlink_metadata().is_ok() {
        if !opts.force {
            return Err(ConvertError::Exists {
                path: output.to_path_buf(),
            });
        }
        replaceable(output)?;
    }
    let base_cfg = match (&opts.target, &opts.base_model) {
        (Target::HuggingFace, Some(b)) => {
            Some(read_base_config(Some(b)).ok_or_else(|| ConvertError::Base {
                path: b.clone(),
                detail: "no readable config.json".into(),
            })?)
        }
        (Target::HuggingFace, None) => {
            return Err(ConvertError::Base {
                path: output.to_path_buf(),
                detail: "a Hugging Face folder needs --base-model (or use --to safetensors)".into(),
            });
        }
        // Bare safetensors: the base model is only compared with, when it has a config.
        (Target::Safetensors, Some(b)) => read_base_config(Some(b)),
        (Target::Safetensors, None) => None,
    };
    let tie = base_cfg
        .as_ref()
        .and_then(|c| c.get("tie_word_embeddings"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok((base_cfg, tie))
}

/// Whether `--force` may replace `output`: only a folder holding nothing but what a conversion
/// writes (weights, index, config, generation config, tokenizer files). Anything else — a
/// file, a symlink, a folder with a checkpoint or a DCP save in it (`--output-dir` pointed at
/// the input's own folder) — is the user's, and `--force` does not reach it.
pub(crate) fn replaceable(output: &Path) -> Result<()> {
    let refuse = |detail: String| ConvertError::NotReplaced {
        path: output.to_path_buf(),
        detail,
    };
    let meta = output
        .symlink_metadata()
        .map_err(|source| ConvertError::Io {
            path: output.to_path_buf(),
            source,
        })?;
    if !meta.is_dir() {
        return Err(refuse(
            "it is not a folder; only a folder written by ckpt convert is replaced".into(),
        ));
    }
    let entries = std::fs::read_dir(output).map_err(|source| ConvertError::Io {
        path: output.to_path_buf(),
        source,
    })?;
    for e in entries {
        let e = e.map_err(|source| ConvertError::Io {
            path: output.to_path_buf(),
            source,
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = e.file_type().is_ok_and(|t| t.is_file())
            && (name == "model.safetensors"
                || name == "model.safetensors.index.json"
                || name == "config.json"
                || BASE_FILES.contains(&name.as_str())
                || (name.starts_with("model-") && name.ends_with(".safetensors")));
        if !ours {
            return Err(refuse(format!(
                "it holds {name}, which ckpt convert does not write"
            )));
        }
    }
    Ok(())
}

/// Write the output folder: into a temporary folder beside the target, renamed into place
/// when complete (an existing target is replaced only with --force, and only then).
pub(crate) fn emit(
    cks: &[Checkpoint],
    tensors: &[Planned],
    output: &Path,
    opts: &ConvertOptions,
    base_cfg: Option<&Value>,
    report: Converted,
) -> Result<Converted> {
    let mut report = report;
    report.bytes = tensors.iter().map(|p| out_nbytes(&p.t, opts.dtype)).sum();
    if opts.dry_run {
        return Ok(report);
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|source| ConvertError::Io {
        path: parent.to_path_buf(),
        source,
    })?;
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "converted".into());
    // A fresh temporary folder of our own: whatever already has such a name is left alone.
    let tmp = fresh_name(parent, &name, "tmp", |p| std::fs::create_dir(p)).map_err(|source| {
        ConvertError::Io {
            path: output.to_path_buf(),
            source,
        }
    })?;
    // Removed on every way out but success — including a panic unwinding through here (a bug,
    // caught and reported per checkpoint by the binary): no `.name.tmp-PID` folder is left.
    let mut guard = RemoveDirOnDrop {
        path: &tmp,
        armed: true,
    };
    let all: u64 = tensors.iter().map(|p| out_nbytes(&p.t, opts.dtype)).sum();
    let written = std::sync::atomic::AtomicU64::new(0);
    let tick = |n: u64| {
        let now = written.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        if let Some(p) = &opts.progress {
            p(now, all);
        }
    };
    let result = (|| {
        // Flushed now or later (before the rename): flushing as we go overlaps it with the copy.
        let flush = opts.sync || output.exists();
        write_weights(
            cks,
            tensors,
            &tmp,
            opts.max_shard_size,
            opts.dtype,
            &tick,
            flush,
        )?;
        if opts.target == Target::HuggingFace
            && let Some(b) = &opts.base_model
        {
            let dt = opts
                .dtype
                .map(DType::name)
                .or_else(|| dominant_dtype(tensors));
            write_hf_files(b, &tmp, base_cfg, dt)?;
        }
        let replacing = output.exists();
        if opts.sync || replacing {
            // The old folder is removed right after the rename: the new one must be on disk
            // first, or a power loss in between would leave the user with neither.
            sync_folder(&tmp)?;
        }
        if replacing {
            // --force: the old folder goes only once the new one is complete.
            // (rename(2) would replace an empty folder of that name: the name must be free.)
            let old = fresh_name(parent, &name, "old", |p| {
                if p.symlink_metadata().is_ok() {
                    return Err(std::io::ErrorKind::AlreadyExists.into());
                }
                std::fs::rename(output, p)
            })
            .map_err(|source| ConvertError::Io {
                path: output.to_path_buf(),
                source,
            })?;
            if let Err(source) = std::fs::rename(&tmp, output) {
                // Put the old folder back: the user never ends up with neither.
                let _ = std::fs::rename(&old, output);
                return Err(ConvertError::Io {
                    path: output.to_path_buf(),
                    source,
                });
            }
            sync_dir(parent)?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&tmp, output).map_err(|source| ConvertError::Io {
                path: output.to_path_buf(),
                source,
            })?;
            if opts.sync {
                sync_dir(parent)?;
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            guard.armed = false;
            Ok(report)
        }
        Err(e) => Err(relabel(e, &tmp, output)),
    }
}

/// Removes a temporary folder of ours when dropped, unless disarmed.
pub(crate) struct RemoveDirOnDrop<'a> {
    path: &'a Path,
    armed: bool,
}

impl Drop for RemoveDirOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(self.path);
        }
    }
}

/// `parent/.{name}.{what}-{pid}` (then `-{pid}-1`, `-{pid}-2` …): the first name `make`
/// succeeds with, skipping names that exist already.
pub(crate) fn fresh_name(
    parent: &Path,
    name: &str,
    what: &str,
    mut make: impl FnMut(&Path) -> std::io::Result<()>,
) -> std::io::Result<PathBuf> {
    let pid = std::process::id();
    for n in 0..1000u32 {
        let p = if n == 0 {
            parent.join(format!(".{name}.{what}-{pid}"))
        } else {
            parent.join(format!(".{name}.{what}-{pid}-{n}"))
        };
        match make(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::ErrorKind::AlreadyExists.into())
}

/// An error met while writing the temporary folder, naming the output the user asked for
/// instead (`out/epoch-001/model.safetensors`, not `out/.epoch-001.tmp-4242/…`).
pub(crate) fn relabel(e: ConvertError, tmp: &Path, output: &Path) -> ConvertError {
    let fix = |p: PathBuf| match p.strip_prefix(tmp) {
        Ok(rest) if rest.as_os_str().is_empty() => output.to_path_buf(),
        Ok(rest) => output.join(rest),
        Err(_) => p,
    };
    use ckpt_torch::Error as T;
    match e {
        ConvertError::Io { path, source } => ConvertError::Io {
            path: fix(path),
            source,
        },
        ConvertError::Read(T::Output { path, detail }) => ConvertError::Read(T::Output {
            path: fix(path),
            detail,
        }),
        ConvertError::Read(T::Io { path, source }) => ConvertError::Read(T::Io {
            path: fix(path),
            source,
        }),
        ConvertError::Read(T::Tensor { path, at, detail }) => ConvertError::Read(T::Tensor {
            path: fix(path),
            at,
            detail,
        }),
        ConvertError::Dcp { path, detail } => ConvertError::Dcp {
            path: fix(path),
            detail,
        },
        other => other,
    }
}

/// Flush every file of a freshly written (flat) folder and then the folder itself.
pub(crate) fn sync_folder(dir: &Path) -> Result<()> {
    let io = |path: &Path, source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    };
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let p = e.map_err(|e| io(dir, e))?.path();
        if p.is_file() {
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&p, e))?;
        }
    }
    sync_dir(dir)
}

/// Flush a folder's entries (a rename into it, a file created in it).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|source| ConvertError::Io {
            path: dir.to_path_buf(),
            source,
        })
}
