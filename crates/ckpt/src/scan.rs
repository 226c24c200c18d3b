//! `ckpt scan`: a security verdict per file from the globals its pickles reference.
//! Exit 0: every file safe; 1: any unknown or dangerous; 2: any file could not be read.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use ckpt_torch::scan::{ScanReport, Verdict, scan_pickle};
use ckpt_torch::{Checkpoint, Options};
use serde_json::json;

use crate::Outcome;
use crate::cli::{OutputFormat, ScanArgs};

/// File extensions a directory scan looks at.
const EXTENSIONS: &[&str] = &["ckpt", "pt", "pth", "bin", "pkl", "pickle", "safetensors"];

enum FileResult {
    Report(ScanReport),
    Error(String),
}

pub fn run(a: &ScanArgs) -> Result<Outcome> {
    let mut files = Vec::new();
    let mut walk_errors = Vec::new();
    for p in &a.paths {
        collect(p, &mut files, &mut walk_errors);
    }
    let mut results: Vec<(PathBuf, FileResult)> = Vec::new();
    for f in files {
        let r = match scan_file(&f) {
            Ok(r) => FileResult::Report(r),
            Err(e) => FileResult::Error(e.to_string()),
        };
        results.push((f, r));
    }
    for e in &walk_errors {
        eprintln!("ckpt: error: {e}");
    }
    let mut worst = Verdict::Safe;
    let mut unreadable = !walk_errors.is_empty();
    match a.format {
        OutputFormat::Json => {
            let mut arr = Vec::new();
            for (p, r) in &results {
                arr.push(match r {
                    FileResult::Report(rep) => {
                        worst = worst.max(rep.verdict());
                        json!({
                            "path": p.display().to_string(),
                            "verdict": rep.verdict().as_str(),
                            "globals": rep.findings.iter().map(|f| json!({
                                "name": f.name,
                                "class": f.class.as_str(),
                                "offset": f.offset,
                                "entry": f.entry,
                                "usage": f.usage,
                                "reason": f.reason,
                            })).collect::<Vec<_>>(),
                        })
                    }
                    FileResult::Error(e) => {
                        unreadable = true;
                        eprintln!("ckpt: error: {e}");
                        json!({"path": p.display().to_string(), "verdict": "error", "error": e})
                    }
                });
            }
            let mut s = serde_json::to_string_pretty(&arr)?;
            s.push('\n');
            crate::print_stdout(&s)?;
        }
        OutputFormat::Table => {
            let mut out = String::new();
            for (p, r) in &results {
                match r {
                    FileResult::Report(rep) => {
                        let v = rep.verdict();
                        worst = worst.max(v);
                        let safe = rep
                            .findings
                            .iter()
                            .filter(|f| f.class == Verdict::Safe)
                            .count();
                        let n = rep.findings.len();
                        let _ = writeln!(
                            out,
                            "{:<9}  {}  ({n} global{}, {safe} on the allowlist)",
                            v.as_str(),
                            p.display(),
                            if n == 1 { "" } else { "s" },
                        );
                        for f in rep.findings.iter().filter(|f| f.class != Verdict::Safe) {
                            let _ = writeln!(
                                out,
                                "           {} {} ({} at byte {} of {}): {}",
                                f.class.as_str(),
                                f.name,
                                f.usage,
                                f.offset,
                                f.entry,
                                f.reason
                            );
                        }
                    }
                    FileResult::Error(e) => {
                        unreadable = true;
                        let _ = writeln!(out, "{:<9}  {}", "error", p.display());
                        eprintln!("ckpt: error: {e}");
                    }
                }
            }
            crate::print_stdout(&out)?;
        }
    }
    if unreadable {
        anyhow::bail!("some files could not be read (see above)");
    }
    Ok(if worst == Verdict::Safe {
        Outcome::Ok
    } else {
        Outcome::Findings
    })
}

/// Decode every pickle in the file, without giving values their torch meaning (a hostile
/// pickle may be malformed as a checkpoint and still deserve a verdict).
pub fn scan_file(path: &Path) -> Result<ScanReport, ckpt_torch::Error> {
    let opts = Options {
        classify: false,
        ..Options::default()
    };
    let ck = Checkpoint::open_with(path, &opts)?;
    let mut report = ScanReport::default();
    if ck.format != ckpt_torch::Format::Safetensors {
        report.merge(scan_pickle(&ck.doc.pickle, &ck.pickle_entry));
    }
    for (entry, p) in &ck.aux_pickles {
        report.merge(scan_pickle(p, entry));
    }
    // TorchScript: constants.pkl, names as torch.jit.load resolves them, the code itself.
    ckpt_torch::torchscript::scan_archive(&ck, &mut report);
    Ok(report)
}

fn collect(p: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    if !p.is_dir() {
        out.push(p.to_path_buf());
        return;
    }
    // Iterative, sorted, never following symlinked directories (no loops).
    let mut stack = vec![p.to_path_buf()];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                errors.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == ".metadata")
                || path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    out.extend(found);
}
