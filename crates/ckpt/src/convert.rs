//! `ckpt convert`: checkpoints into Hugging Face folders or safetensors files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ckpt_convert::{
    Conversion, ConvertOptions, ConvertRun, Target, convert_file, resolve_base_model,
};
use serde_json::json;

use crate::Outcome;
use crate::cli::{ConvertArgs, OutputFormat};
use crate::inspect::human_bytes;

/// Extensions of checkpoint files a batch converts.
const EXTENSIONS: &[&str] = ckpt_torch::names::CHECKPOINT_EXTENSIONS;

/// The task file's `convert:` section (paths relative to the file).
struct Task {
    base_model: Option<String>,
    checkpoint_path: Option<PathBuf>,
    initial_format: Option<String>,
    final_format: Option<String>,
    output_dir: Option<PathBuf>,
    dir: PathBuf,
}

fn read_task(path: &Path) -> Result<Task> {
    let v = ckpt_meta::config::read_config(path)?;
    if let Some(t) = v.get("task").and_then(|t| t.as_str())
        && t != "convert"
    {
        bail!("{}: task is {t:?}, not \"convert\"", path.display());
    }
    let c = v
        .get("convert")
        .with_context(|| format!("{}: no `convert:` section", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let s = |k: &str| c.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    Ok(Task {
        base_model: s("base_model"),
        checkpoint_path: s("checkpoint_path").map(|p| dir.join(p)),
        initial_format: s("initial_format"),
        final_format: s("final_format"),
        output_dir: s("output_dir").map(|p| dir.join(p)),
        dir,
    })
}

pub fn run(a: &ConvertArgs) -> Result<Outcome> {
    let task = match &a.config {
        Some(p) => Some(read_task(p)?),
        None => None,
    };
    let input = a
        .input
        .clone()
        .or_else(|| task.as_ref().and_then(|t| t.checkpoint_path.clone()))
        .context("give an INPUT checkpoint (or --config with convert.checkpoint_path)")?;
    let output_dir = a
        .output_dir
        .clone()
        .or_else(|| task.as_ref().and_then(|t| t.output_dir.clone()))
        .context("give --output-dir (or --config with convert.output_dir)")?;
    let to =
        a.to.clone()
            .or_else(|| task.as_ref().and_then(|t| t.final_format.clone()))
            .unwrap_or_else(|| "huggingface".into());
    let target = match to.as_str() {
        "huggingface" | "hf" => Target::HuggingFace,
        "safetensors" => Target::Safetensors,
        other => bail!("unknown output format {other:?} (huggingface or safetensors)"),
    };
    let from = a
        .from
        .clone()
        .or_else(|| task.as_ref().and_then(|t| t.initial_format.clone()))
        .unwrap_or_else(|| "auto".into());
    if !matches!(from.as_str(), "auto" | "fsdp" | "ddp" | "compiled" | "dcp") {
        bail!("unknown input format {from:?} (fsdp, ddp, compiled, dcp or auto)");
    }
    let base_spec = a
        .base_model
        .clone()
        .or_else(|| task.as_ref().and_then(|t| t.base_model.clone()));
    let base_model = match &base_spec {
        Some(spec) => Some(
            resolve_base_model(spec, task.as_ref().map(|t| t.dir.as_path()))
                .or_else(|| resolve_base_model(spec, None))
                .with_context(|| {
                    format!(
                        "base model {spec:?}: not a folder with config.json, and not in the local Hugging Face cache ({}); ckpt never downloads",
                        ckpt_convert::hub_cache().map_or_else(
                            || "none: HF_HUB_CACHE, HF_HOME and HOME are unset".to_owned(),
                            |h| h.display().to_string()
                        )
                    )
                })?,
        ),
        None => None,
    };
    // What every checkpoint would fail on alike is a usage error, said once.
    match (&base_model, target) {
        (None, Target::HuggingFace) => bail!(
            "a Hugging Face folder needs --base-model (a folder with config.json, or a model id in the local Hugging Face cache); or use --to safetensors"
        ),
        (Some(b), _) => {
            let p = b.join("config.json");
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("base model {}: cannot read config.json", b.display()))?;
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .filter(serde_json::Value::is_object)
                .with_context(|| {
                    format!(
                        "base model {}: config.json is not a JSON object",
                        b.display()
                    )
                })?;
        }
        (None, Target::Safetensors) => {}
    }
    let max_shard_size = ckpt_convert::parse_size(&a.max_shard_size).with_context(|| {
        format!(
            "--max-shard-size {:?}: not a size like 5GB",
            a.max_shard_size
        )
    })?;
    let dtype = match a.dtype.as_str() {
        "keep" => None,
        "bf16" | "bfloat16" => Some(ckpt_torch::DType::BF16),
        "fp16" | "float16" | "half" => Some(ckpt_torch::DType::F16),
        "fp32" | "float32" | "float" => Some(ckpt_torch::DType::F32),
        other => bail!("--dtype {other:?}: keep, bf16, fp16 or fp32"),
    };
    let opts = ConvertOptions {
        progress: None,
        max_shard_size,
        dtype,
        target,
        base_model,
        key: a.key.clone(),
        strip_prefix: a.strip_prefix.clone(),
        add_prefix: a.add_prefix.clone(),
        force: a.force,
        sync: a.sync,
        dry_run: a.dry_run,
    };
    // The input may come from a task file: the same checks as for typed paths.
    crate::inputs::check_paths(&[input.as_path()])?;
    // Every checkpoint converts into a folder named after it under the output directory: a
    // file without its extension, a DCP directory by its own name — one checkpoint alone as
    // each one of a folder of them (`step_100/`, `step_200/`, `epoch-001.pth` …).
    let is_dcp = ckpt_torch::dcp::is_dcp_dir;
    let jobs: Vec<(PathBuf, PathBuf)> = if is_dcp(&input) {
        // A DCP directory is one checkpoint.
        vec![(input.clone(), output_dir.join(output_name(&input)))]
    } else if is_dir(&input) {
        // The one walker and the one rule for what is a checkpoint (`ckpt catalog`'s), one
        // level deep: files and DCP directories of this folder.
        let (cands, _) = ckpt_catalog::discover::discover(
            std::slice::from_ref(&input),
            &ckpt_catalog::discover::WalkOptions {
                recursive: true,
                max_depth: Some(1),
            },
        );
        use ckpt_catalog::discover::Kind;
        let mut files: Vec<PathBuf> = cands
            .into_iter()
            .filter(|c| match c.kind {
                Kind::File => c.path.parent() == Some(input.as_path()),
                Kind::Dcp => c.path.parent() == Some(input.as_path()),
                Kind::HfSharded => false,
            })
            .filter(|c| match from.as_str() {
                // `--from dcp` takes only DCP directories, the other formats only files.
                "dcp" => c.kind == Kind::Dcp,
                "auto" => true,
                _ => c.kind == Kind::File,
            })
            .map(|c| c.path)
            .collect();
        files.sort();
        if files.is_empty() {
            bail!(
                "{}: no checkpoint to convert in this folder ({})",
                input.display(),
                match from.as_str() {
                    "dcp" => "--from dcp takes torch.distributed.checkpoint directories".to_owned(),
                    "auto" => format!(
                        "files *.{} or torch.distributed.checkpoint directories",
                        EXTENSIONS.join(", *.")
                    ),
                    _ => format!("files *.{}", EXTENSIONS.join(", *.")),
                }
            );
        }
        files
            .into_iter()
            .map(|f| {
                let out = output_dir.join(output_name(&f));
                (f, out)
            })
            .collect()
    } else if from == "dcp" {
        bail!(
            "{}: --from dcp needs a torch.distributed.checkpoint directory (.metadata + *.distcp), or a folder of them",
            input.display()
        );
    } else {
        vec![(input.clone(), output_dir.join(output_name(&input)))]
    };
    // An output directory that cannot be written fails once, here, not once per checkpoint.
    let made_output_dir = if a.dry_run {
        false
    } else {
        prepare_output_dir(&output_dir)?
    };
    // Checkpoints convert in parallel (separate output files do not serialize on one inode);
    // one bar in bytes on stderr, on a terminal only, covers them all.
    // A caller in the same process (Python's `ckpt.convert(progress=…)`) gets the same sums.
    let listener = crate::sink::progress();
    let bar = (crate::sink::stderr_is_terminal() || listener.is_some())
        .then(|| std::sync::Arc::new(Bar::new(jobs.len(), listener)));
    let indexed: Vec<(usize, &(PathBuf, PathBuf))> = jobs.iter().enumerate().collect();
    let outcomes = ckpt_catalog::par::map(&indexed, |(i, (src, dst))| {
        let mut opts = opts.clone();
        if let Some(bar) = &bar {
            let (bar, i) = (bar.clone(), *i);
            opts.progress = Some(std::sync::Arc::new(move |done: u64, total: u64| {
                bar.report(i, done, total)
            }));
        }
        // A failure is reported once, in the summary below (the table says why); a panic is
        // a bug in ckpt that fails this checkpoint only (exit 3 at the end).
        ckpt_torch::bug::catch(|| {
            if is_dir(src) {
                ckpt_convert::convert_dcp(src, dst, &opts)
            } else {
                convert_file(src, dst, &opts)
            }
        })
    });
    if bar.as_ref().is_some_and(|b| b.listener.is_none()) {
        crate::sink_eprint!("\r\x1b[2K");
    }
    if made_output_dir {
        // Created by this run and left empty (every conversion failed): not left behind.
        // `remove_dir` removes only an empty folder.
        let _ = std::fs::remove_dir(&output_dir);
    }
    let mut conversions = Vec::new();
    let mut failed = 0;
    for ((src, _), r) in jobs.iter().zip(outcomes) {
        let r = r.map_err(|panic| {
            crate::mark_bug();
            panic.to_string()
        });
        let r = match r {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(bug) => Err(bug),
        };
        let input = src.display().to_string();
        conversions.push(match r {
            Ok(r) => Conversion::succeeded(input, r),
            Err(e) => {
                failed += 1;
                Conversion::failed(input, e)
            }
        });
    }
    let run = ConvertRun {
        conversions,
        failed,
    };
    match a.format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&run)?;
            s.push('\n');
            crate::print_stdout(&s)?;
        }
        OutputFormat::Table => crate::print_stdout(&table(&run, a.dry_run))?,
    }
    Ok(if failed > 0 {
        Outcome::Findings
    } else {
        Outcome::Ok
    })
}

/// The run as text: a line per checkpoint (and what to know about it), then the totals.
fn table(run: &ConvertRun, dry_run: bool) -> String {
    let mut s = String::new();
    for c in &run.conversions {
        let input = c.input();
        match c {
            Conversion::Succeeded(ok) => {
                let rep = &ok.report;
                let _ = writeln!(
                    s,
                    "succeeded  {input} -> {}  ({} tensors, {}{}{})",
                    rep.output,
                    rep.tensors,
                    human_bytes(rep.bytes),
                    if rep.tied.is_empty() {
                        String::new()
                    } else {
                        format!(", tied: {}", json!(rep.tied))
                    },
                    if dry_run {
                        ", dry run: nothing written"
                    } else {
                        ""
                    }
                );
                // Compared with the base model's own weights, when it has some.
                for (n, what) in [
                    (
                        &rep.missing_keys,
                        "missing (the base model has them, the output not)",
                    ),
                    (
                        &rep.unexpected_keys,
                        "unexpected (the output has them, the base model not)",
                    ),
                ] {
                    if !n.is_empty() {
                        let shown: Vec<&str> = n.iter().take(3).map(String::as_str).collect();
                        let more = if n.len() > 3 { ", …" } else { "" };
                        let _ = writeln!(
                            s,
                            "           {} {what}: {}{more}",
                            n.len(),
                            shown.join(", ")
                        );
                    }
                }
                // Entries beside the state dict that are not tensors: reported, not converted.
                let other = &rep.other_keys;
                if !other.is_empty() {
                    let shown: Vec<&str> = other.iter().take(8).map(String::as_str).collect();
                    let more = if other.len() > 8 { ", …" } else { "" };
                    let _ = writeln!(
                        s,
                        "           not converted (not tensors): {}{more}",
                        shown.join(", ")
                    );
                }
                if let Some(h) = &rep.hint {
                    let _ = writeln!(s, "           hint: {h}");
                }
            }
            Conversion::Failed(f) => {
                // The checkpoint first, then why (an error about the output names it).
                let e = f.error.as_str();
                let why = e.strip_prefix(&format!("{input}: ")).unwrap_or(e);
                let _ = writeln!(s, "failed     {input}: {why}");
            }
        }
    }
    let _ = writeln!(
        s,
        "{} converted, {} failed",
        run.conversions.len() - run.failed,
        run.failed
    );
    s
}

/// Whether `p` is a folder, or a prefix in a bucket (ckpt_io's stat: `Path::is_dir` would ask
/// the local file system about `s3://…`).
fn is_dir(p: &Path) -> bool {
    ckpt_io::stat(p).is_ok_and(|s| s.kind == ckpt_io::Kind::Dir)
}

/// The name of a checkpoint's output folder: a file's name without its extension
/// (`epoch-001.pth` → `epoch-001`), a directory's whole name (`step.200/` stays `step.200`).
fn output_name(input: &Path) -> String {
    let name = if is_dir(input) {
        input
            .file_name()
            .map(std::ffi::OsStr::to_os_string)
            .or_else(|| {
                // `.` or `..`: the name of the folder it is.
                std::fs::canonicalize(input)
                    .ok()
                    .and_then(|p| p.file_name().map(std::ffi::OsStr::to_os_string))
            })
    } else {
        input.file_stem().map(std::ffi::OsStr::to_os_string)
    };
    name.map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "converted".into())
}

/// Create the output directory if needed and make sure a folder can be created in it, so
/// that an unwritable target is one error (exit 2) instead of one failure per checkpoint.
/// Returns whether this run created the directory.
fn prepare_output_dir(dir: &Path) -> Result<bool> {
    let existed = dir.exists();
    if existed && !dir.is_dir() {
        bail!("{}: --output-dir exists and is not a folder", dir.display());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the output folder", dir.display()))?;
    // What every conversion does first: a temporary folder inside it.
    let probe = dir.join(format!(".ckpt-convert-probe-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            if !existed {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e).with_context(|| {
                format!("{}: cannot write into the output folder", dir.display())
            });
        }
    }
    Ok(!existed)
}

/// The progress bar of a batch: bytes written over bytes to write, summed over every
/// conversion started so far.
struct Bar {
    slots: std::sync::Mutex<Vec<(u64, u64)>>,
    /// Told the sums instead of drawing them, when a caller listens.
    listener: Option<crate::sink::Progress>,
}

impl Bar {
    fn new(jobs: usize, listener: Option<crate::sink::Progress>) -> Self {
        Bar {
            slots: std::sync::Mutex::new(vec![(0, 0); jobs]),
            listener,
        }
    }

    fn report(&self, job: usize, done: u64, total: u64) {
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        if let Some(s) = slots.get_mut(job) {
            *s = (done, total);
        }
        let (done, total) = slots
            .iter()
            .fold((0u64, 0u64), |(d, t), (a, b)| (d + a, t + b));
        if let Some(l) = &self.listener {
            drop(slots);
            l(done, total);
            return;
        }
        let started = slots.iter().filter(|(_, t)| *t > 0).count();
        const W: u64 = 30;
        let filled = (done * W).checked_div(total).unwrap_or(W).min(W) as usize;
        let files = if slots.len() > 1 {
            format!("  ({started} of {} files started)", slots.len())
        } else {
            String::new()
        };
        crate::sink_eprint!(
            "\r[{}{}] {} / {}{files}\x1b[K",
            "#".repeat(filled),
            ".".repeat(W as usize - filled),
            human_bytes(done),
            human_bytes(total)
        );
    }
}
