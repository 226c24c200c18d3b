//! The paths a command was given are checked before any work: a mistyped folder is an error
//! (exit 2, naming it as typed), not an empty answer with exit 0; a URL ckpt cannot read
//! (`https://…`) says so plainly instead of "No such file or directory"; and a FIFO or device
//! is refused before anything opens it (a read would block forever).
//!
//! Objects in buckets (`s3://`, `gs://`, `az://`) are inputs like local paths: their existence
//! is asked of `ckpt_io::stat` (a lookup in the listing of the parent prefix, which the walk
//! then reuses), so a missing object or prefix is the same one line and exit 2 as a missing
//! file. Commands that would write beside their inputs (`prune --yes`, `convert-legacy`,
//! `watch`, `serve`) refuse URLs up front: ckpt reads buckets, it does not write to them.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::cli::Command;

/// The input paths of a command (what it reads; not outputs, caches or option files that have
/// their own checks).
fn inputs(cmd: &Command) -> Vec<&Path> {
    fn target(t: &crate::cli::Target) -> Vec<&Path> {
        [&t.checkpoint, &t.exp_dir, &t.outputs_dir]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect()
    }
    match cmd {
        Command::Inspect(a) => a.files.iter().map(PathBuf::as_path).collect(),
        Command::Dump(a) => vec![a.file.as_path()],
        Command::Scan(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::ConvertLegacy(a) => target(&a.target),
        Command::Validate(a) => target(&a.target),
        Command::Catalog(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Hash(a) => [Some(&a.path), a.hparams.as_ref(), a.data_uids.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect(),
        Command::Diff(a) => vec![a.a.as_path(), a.b.as_path()],
        Command::Experiments(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Latest(a) => vec![a.path.as_path()],
        Command::Prune(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Compare(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Convert(a) => [&a.input, &a.config]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect(),
        Command::Watch(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Serve(a) => a.paths.iter().map(PathBuf::as_path).collect(),
        Command::Schema(_) | Command::Cache(_) => Vec::new(),
    }
}

/// Inputs of commands that write sidecars, delete files or watch for changes: local only.
fn local_only(cmd: &Command) -> Option<&'static str> {
    match cmd {
        Command::Prune(a) if a.yes => Some("prune --yes deletes files"),
        Command::ConvertLegacy(_) => Some("convert-legacy writes sidecars beside the checkpoints"),
        Command::Watch(_) => Some("watch follows local file-system events"),
        Command::Serve(a) if a.allow_writes => {
            Some("serve --allow-writes writes sidecars and deletes files")
        }
        _ => None,
    }
}

/// `s3://…`, `gs://…`, `https://…`: a scheme followed by `://`.
fn url_scheme(p: &Path) -> Option<&str> {
    let s = p.to_str()?;
    let (scheme, _) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// Fail (exit 2) on the first URL ckpt cannot read, or on every input path that does not
/// exist, named as typed.
pub fn check(cmd: &Command) -> Result<()> {
    let paths = inputs(cmd);
    if let Some(why) = local_only(cmd)
        && let Some(p) = paths.iter().find(|p| ckpt_io::is_remote(p))
    {
        bail!(
            "{}: object storage is read-only for ckpt and {why}; give a local folder",
            p.display()
        );
    }
    if let Command::Convert(a) = cmd
        && let Some(out) = a.output_dir.as_deref().filter(|p| ckpt_io::is_remote(p))
    {
        bail!(
            "{}: converted folders are written to a local --output-dir (writing to a bucket \
             is not supported)",
            out.display()
        );
    }
    // Files ckpt writes (an output, its cache): local, or they would land in a folder named
    // `s3:` beside the current one.
    let written: Vec<(&str, &Path)> = match cmd {
        Command::Catalog(a) => [("--output", &a.output), ("--cache-file", &a.cache_file)]
            .into_iter()
            .filter_map(|(o, p)| Some((o, p.as_deref()?)))
            .collect(),
        Command::Cache(a) => a
            .cache_file
            .iter()
            .map(|p| ("--cache-file", p.as_path()))
            .collect(),
        _ => Vec::new(),
    };
    if let Some((opt, p)) = written.iter().find(|(_, p)| ckpt_io::is_remote(p)) {
        bail!(
            "{}: {opt} is a local file (writing to a bucket is not supported)",
            p.display()
        );
    }
    check_paths(&paths)
}

/// [`check`] for paths a command learns later (a task file's `checkpoint_path`).
pub fn check_paths(paths: &[&Path]) -> Result<()> {
    for p in paths {
        if ckpt_io::is_remote(p) {
            continue;
        }
        if let Some(scheme) = url_scheme(p) {
            // `s3://` alone: a bucket URL with no bucket.
            if ["s3", "gs", "az"].contains(&scheme) {
                bail!("{}: no bucket named (s3://BUCKET/PREFIX)", p.display());
            }
            bail!(
                "{}: {scheme}:// paths are not supported; ckpt reads local paths and s3://, \
                 gs:// and az:// URLs",
                p.display()
            );
        }
    }
    let mut missing: Vec<String> = Vec::new();
    for p in paths {
        if ckpt_io::is_remote(p) {
            // One LIST of the parent prefix, memoized: the walk or the open reuses it.
            match ckpt_io::stat(p) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing.push(p.display().to_string());
                }
                Err(e) => {
                    let (url, msg) = (p.display().to_string(), e.to_string());
                    // Remote errors name the object themselves.
                    if msg.starts_with(&url) {
                        bail!("{msg}");
                    }
                    bail!("{url}: {msg}");
                }
            }
        // symlink_metadata: a dangling symlink exists (commands report it themselves).
        } else if std::fs::symlink_metadata(p)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        {
            missing.push(p.display().to_string());
        }
    }
    match missing.as_slice() {
        [] => {}
        [one] if ckpt_io::is_remote(Path::new(one)) => bail!("{one}: no such object or prefix"),
        [one] => bail!("{one}: no such file or directory"),
        many if many.iter().all(|m| ckpt_io::is_remote(Path::new(m))) => {
            bail!("{}: no such objects or prefixes", many.join(", "))
        }
        many => bail!("{}: no such files or directories", many.join(", ")),
    }
    // A FIFO, socket or device would block a reader or never end: refused before it is opened.
    for p in paths.iter().filter(|p| !ckpt_io::is_remote(p)) {
        if let Ok(m) = std::fs::metadata(p)
            && !m.is_file()
            && !m.is_dir()
        {
            bail!(
                "{}: {}, not a regular file or a folder",
                p.display(),
                ckpt_torch::open::kind_of(m.file_type())
            );
        }
    }
    Ok(())
}
