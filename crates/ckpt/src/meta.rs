//! `ckpt convert-legacy`: metadata sidecars for whole trees (and the `--checkpoint | --exp-dir |
//! --outputs-dir` discovery `ckpt validate` shares).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use ckpt_meta::extract::{gather_for_sidecar, iso_time};
use ckpt_meta::sidecar::{self, Sidecar};
use ckpt_meta::sources::{Around, DirCache};
use ckpt_meta::{Field, Layout, Source};
use ckpt_meta::{config, schema};
use ckpt_model::Summarize;
use ckpt_torch::Checkpoint;
use serde_json::Value;

use crate::Outcome;
use crate::cli::{ConvertLegacyArgs, Target};

/// The checkpoints a `--checkpoint | --exp-dir | --outputs-dir` target names, sorted, and the
/// outputs dir their paths are relative to.
pub fn discover(t: &Target) -> Result<(Vec<PathBuf>, Option<PathBuf>)> {
    if let Some(c) = &t.checkpoint {
        if ckpt_io::is_remote(c) {
            // An object: what it is comes from the listing of its prefix (no local stat).
            return match ckpt_io::stat(c) {
                Ok(s) if s.kind == ckpt_io::Kind::File => Ok((vec![c.clone()], None)),
                Ok(_) => bail!("{}: a prefix, not a checkpoint object", c.display()),
                Err(_) => bail!("{}: no such checkpoint object", c.display()),
            };
        }
        if !c.is_file() {
            // Say what it is when it exists: a FIFO or a device is refused, never opened.
            if let Ok(m) = std::fs::metadata(c) {
                bail!(
                    "{}: {}, not a regular file",
                    c.display(),
                    ckpt_torch::open::kind_of(m.file_type())
                );
            }
            bail!("{}: no such checkpoint file", c.display());
        }
        return Ok((vec![c.clone()], None));
    }
    let (dir, outputs) = match (&t.exp_dir, &t.outputs_dir) {
        (Some(e), None) => (e.clone(), e.parent().map(Path::to_path_buf)),
        (None, Some(o)) => (o.clone(), Some(o.clone())),
        _ => bail!("give exactly one of --checkpoint, --exp-dir, --outputs-dir"),
    };
    // `Path::is_dir` would ask the local file system about `s3://…`.
    if !ckpt_io::stat(&dir).is_ok_and(|s| s.kind == ckpt_io::Kind::Dir) {
        bail!("{}: not a directory", dir.display());
    }
    // The one walker and the one rule for what is a checkpoint (`ckpt catalog`'s): sidecars
    // describe single files, so DCP and sharded folders are left out.
    let (cands, warnings) = ckpt_catalog::discover::discover(
        std::slice::from_ref(&dir),
        &ckpt_catalog::discover::WalkOptions {
            recursive: !t.no_recursive,
            max_depth: None,
        },
    );
    for w in warnings {
        log("WARNING", &w);
    }
    let mut found: Vec<PathBuf> = cands
        .into_iter()
        .filter(|c| c.kind == ckpt_catalog::discover::Kind::File)
        .map(|c| c.path)
        .collect();
    found.sort();
    Ok((found, outputs))
}

/// A log line in the existing tool's style: `2025-10-17 22:00:16,030 - INFO - message`.
pub fn log(level: &str, msg: &str) {
    let now = iso_time(std::time::SystemTime::now());
    let (date, time) = now.split_once('T').unwrap_or((&now, ""));
    let (hms, frac) = time.split_once('.').unwrap_or((time, "000"));
    crate::sink_eprintln!(
        "{date} {hms},{} - {level} - {msg}",
        &frac[..frac.len().min(3)]
    );
}

/// What became of one checkpoint's sidecar (also `ckpt watch`'s, which writes through here).
pub(crate) enum Converted {
    Written {
        sidecar: PathBuf,
        text: String,
    },
    Skipped(PathBuf),
    Failed(String),
    /// The sidecar could not be written (a read-only folder, say): reported per folder, so a
    /// read-only target is one line, not one per checkpoint.
    Unwritable {
        sidecar: PathBuf,
        error: std::io::Error,
    },
}

pub(crate) struct Job<'a> {
    pub(crate) outputs: Option<&'a Path>,
    pub(crate) force: bool,
    pub(crate) dry_run: bool,
    pub(crate) verbose: bool,
    /// Folders and configs parsed once for every checkpoint of the run.
    pub(crate) dirs: &'a DirCache,
}

pub(crate) fn convert_one(job: &Job<'_>, ckpt: &Path, debug: &mut Vec<String>) -> Converted {
    // The YAML sidecar is what this command writes; a `.metadata.json` beside it (often
    // partial) is a source, and is left as it is.
    let yaml = sidecar::yaml_path(ckpt);
    let existing = yaml.is_file().then(|| yaml.clone());
    if existing.is_some() && !job.force {
        return Converted::Skipped(yaml);
    }
    let ck = match Checkpoint::open(ckpt) {
        Ok(ck) => ck,
        Err(e) => return Converted::Failed(e.to_string()),
    };
    let layout = Layout::new(ckpt, job.outputs);
    let root = job.outputs.unwrap_or(&layout.outputs_dir).to_path_buf();
    let is_file = |p: &Path| p.is_file();
    let around = Around {
        dirs: job.dirs,
        root: &root,
        is_file: &is_file,
    };
    if job.verbose {
        match ckpt_meta::sources::config_sidecar_path(ckpt, &is_file) {
            Some(p) => debug.push(format!("config sidecar: {}", p.display())),
            None => debug.push("config sidecar: none found".into()),
        }
        match job.dirs.hydra_for(ckpt, &root) {
            Some(h) => debug.push(format!("hydra config: {}", h.display())),
            None => debug.push("hydra config: none found".into()),
        }
        let json = sidecar::json_path(ckpt);
        if json.is_file() {
            debug.push(format!("existing JSON sidecar: {}", json.display()));
        }
    }
    // The same facts and the same engine as `ckpt catalog`: the sidecar is a projection of
    // what the catalog says about this file.
    let (facts, error) = gather_for_sidecar(ckpt, &ck, &around);
    if let Some(e) = error {
        return Converted::Failed(e);
    }
    // hyper_parameters over a budget: the sidecar would lack what they say; not written.
    if let Some(w) = facts
        .iter()
        .find(|f| f.field == Field::Warning && f.source == Source::Hparams)
        .and_then(|f| f.value.as_str())
    {
        return Converted::Failed(w.trim_end_matches("; hyper_parameters ignored").to_owned());
    }
    let resolution = ckpt_meta::resolve(facts);
    for w in &resolution.warnings {
        debug.push(w.clone());
    }
    let summary = ck.summary();
    let mut value = ckpt_meta::project(&resolution, &ck, &summary, &layout);
    if job.verbose
        && let Some(p) = value.get("provenance").and_then(Value::as_object)
    {
        for (field, src) in p {
            let v = config::lookup(&value, field)
                .cloned()
                .unwrap_or(Value::Null);
            debug.push(format!(
                "{field} = {v} (from {})",
                src.as_str().unwrap_or("?")
            ));
        }
    }
    let target = match &existing {
        Some(old_path) => {
            // --force: rewrite in place, keeping what the old file had that we do not write.
            if let Ok(old) = Sidecar::read(old_path) {
                // Never downgrade a sidecar written by a newer tool.
                if let Some(v) = old.value.get("schema_version")
                    && schema::major_version(v).is_some_and(|m| m > schema::SUPPORTED_MAJOR)
                {
                    return Converted::Failed(format!(
                        "{}: schema version {} is newer than this ckpt understands ({}.x); not rewritten",
                        old_path.display(),
                        v.as_str().unwrap_or("?"),
                        schema::SUPPORTED_MAJOR
                    ));
                }
                sidecar::merge_unknown(&mut value, &old.value);
                value = sidecar::ordered(value);
            }
            old_path.clone()
        }
        None => yaml,
    };
    // What we write must pass our own `validate`: a sidecar that other tools would reject is
    // worse than none.
    if let Some(p) = schema::validate(&value).first() {
        return Converted::Failed(format!(
            "{}: not written: the sidecar built for it would not validate ({p})",
            target.display()
        ));
    }
    let text = sidecar::render(&target, &value);
    if !job.dry_run
        && let Err(e) = sidecar::write_atomic(&target, &text, job.force)
    {
        return Converted::Unwritable {
            sidecar: target,
            error: e,
        };
    }
    Converted::Written {
        sidecar: target,
        text,
    }
}

pub fn convert_legacy(a: &ConvertLegacyArgs) -> Result<Outcome> {
    let (files, outputs) = discover(&a.target)?;
    let dirs = DirCache::default();
    let job = Job {
        outputs: outputs.as_deref(),
        force: a.force,
        dry_run: a.dry_run,
        verbose: a.verbose,
        dirs: &dirs,
    };
    log(
        "INFO",
        &format!(
            "Found {} checkpoint(s){}",
            files.len(),
            if a.dry_run {
                " (dry run: nothing will be written)"
            } else {
                ""
            }
        ),
    );
    let results = ckpt_catalog::par::map(&files, |f| {
        let mut debug = Vec::new();
        // A panic is a bug in ckpt: that checkpoint fails (reported once, exit 3), the rest go on.
        let r = ckpt_torch::bug::catch(|| convert_one(&job, f, &mut debug));
        (r, debug)
    });
    let (mut converted, mut skipped, mut failed) = (0, 0, 0);
    let mut dry = String::new();
    // (folder, error) -> (checkpoint, sidecar) of each write that failed that way.
    let mut unwritable: BTreeMap<(PathBuf, String), Vec<(PathBuf, PathBuf)>> = BTreeMap::new();
    for (f, (r, debug)) in files.iter().zip(results) {
        for d in debug {
            log("DEBUG", &format!("{}: {d}", f.display()));
        }
        let r = match r {
            Ok(r) => r,
            Err(panic) => {
                failed += 1;
                crate::report_bug("convert-legacy", f, &panic);
                continue;
            }
        };
        match r {
            Converted::Written { sidecar, text } => {
                converted += 1;
                if a.dry_run {
                    log("INFO", &format!("Would write {}", sidecar.display()));
                    dry.push_str(&format!("# {}\n{text}\n", sidecar.display()));
                } else {
                    log(
                        "INFO",
                        &format!("Converted {} -> {}", f.display(), sidecar.display()),
                    );
                }
            }
            Converted::Skipped(s) => {
                skipped += 1;
                log(
                    "INFO",
                    &format!(
                        "Skipped {} (sidecar exists: {}; use --force to rewrite)",
                        f.display(),
                        s.display()
                    ),
                );
            }
            Converted::Failed(e) => {
                failed += 1;
                log("ERROR", &format!("Failed {}: {e}", f.display()));
            }
            Converted::Unwritable { sidecar, error } => {
                failed += 1;
                let folder = sidecar.parent().map(Path::to_path_buf).unwrap_or_default();
                unwritable
                    .entry((folder, error.to_string()))
                    .or_default()
                    .push((f.clone(), sidecar));
            }
        }
    }
    for ((folder, error), files) in &unwritable {
        match files.as_slice() {
            [(f, sidecar)] => log(
                "ERROR",
                &format!(
                    "Failed {}: {}: cannot write: {error}",
                    f.display(),
                    sidecar.display()
                ),
            ),
            many => log(
                "ERROR",
                &format!(
                    "Failed {} checkpoints in {}: cannot write their sidecars there: {error}",
                    many.len(),
                    folder.display()
                ),
            ),
        }
    }
    let line = "=".repeat(60);
    let mut out = dry;
    out.push_str(&format!(
        "{line}\nConversion Summary{}\n{line}\nTotal checkpoints found: {}\nConverted: {converted}\nSkipped (existing): {skipped}\nFailed: {failed}\n{line}\n",
        if a.dry_run { " (dry run)" } else { "" },
        files.len()
    ));
    crate::print_stdout(&out)?;
    if failed > 0 {
        return Ok(Outcome::Findings);
    }
    Ok(Outcome::Ok)
}
