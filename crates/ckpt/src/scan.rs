//! `ckpt scan`: a security verdict for every file under the paths, decided by content.
//!
//! Every regular file gets a record (a file that holds no pickle is listed as `no-pickle`),
//! and the table ends with how many files were scanned and skipped. Exit 0: every file safe
//! or without pickles; 1: any unknown or dangerous; 2: any file could not be read or decoded
//! completely (an `error` verdict), which is never taken for safe.
//!
//! `--format json` is a list of [`ScanRecord`]s, one per file (`ckpt schema scan` prints its
//! JSON Schema).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use ckpt_torch::scan::{
    FileScan, FileVerdict, ScanFormat, ScanLimits, ScanRecord, Verdict, scan_path,
};

use crate::Outcome;
use crate::cli::{OutputFormat, ScanArgs};

/// One path found by the walk.
enum Found {
    /// A file to scan (regular, or a symlink to one, or a path the user named).
    File(PathBuf),
    /// Something that is not a regular file (FIFO, socket, device): never opened.
    Special(PathBuf),
    /// A directory or link that could not be read.
    Broken(PathBuf, String),
}

pub fn run(a: &ScanArgs) -> Result<Outcome> {
    let mut found = Vec::new();
    for p in &a.paths {
        collect(p, &mut found);
    }
    let results = scan_found(found);

    let mut worst = FileVerdict::NoPickle;
    let (mut safe, mut unknown, mut dangerous, mut errors, mut skipped) = (0, 0, 0, 0, 0);
    for (_, s) in &results {
        let v = s.verdict();
        worst = worst.max(v);
        match v {
            FileVerdict::NoPickle => skipped += 1,
            FileVerdict::Safe => safe += 1,
            FileVerdict::Unknown => unknown += 1,
            FileVerdict::Error => errors += 1,
            FileVerdict::Dangerous => dangerous += 1,
        }
    }
    match a.format {
        OutputFormat::Json => {
            let arr: Vec<ScanRecord> = results.iter().map(|(p, s)| ScanRecord::new(p, s)).collect();
            let mut text = serde_json::to_string_pretty(&arr)?;
            text.push('\n');
            crate::print_stdout(&text)?;
        }
        OutputFormat::Table => {
            let mut out = String::new();
            for (p, s) in &results {
                table_row(&mut out, p, s);
            }
            let scanned = safe + unknown + dangerous + errors;
            // Only the verdicts that occur, so `grep dangerous` finds only dangerous files.
            let parts: Vec<String> = [
                (safe, "safe"),
                (unknown, "unknown"),
                (dangerous, "dangerous"),
                (errors, "error"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            let detail = if parts.is_empty() {
                String::new()
            } else {
                format!(" ({})", parts.join(", "))
            };
            let _ = writeln!(
                out,
                "{} file{}: {scanned} scanned{detail}, {skipped} skipped (no pickle)",
                results.len(),
                if results.len() == 1 { "" } else { "s" },
            );
            crate::print_stdout(&out)?;
        }
    }
    if errors > 0 {
        anyhow::bail!(
            "{errors} file{} could not be read or decoded completely (see above); not safe",
            if errors == 1 { "" } else { "s" }
        );
    }
    Ok(match worst {
        FileVerdict::NoPickle | FileVerdict::Safe => Outcome::Ok,
        _ => Outcome::Findings,
    })
}

/// `ckpt scan --format json`'s records for one path: the file's, or one per file under a
/// folder (a DCP checkpoint's `.metadata` and shards), sorted as the command lists them.
/// With `within` (`ckpt serve`'s roots), a file that resolves outside them (a symlink out of
/// a served DCP folder, say) is not opened: its record is an `error` saying so.
pub fn records(path: &Path, within: Option<&[PathBuf]>) -> Vec<ScanRecord> {
    let mut found = Vec::new();
    collect(path, &mut found);
    if let Some(roots) = within {
        for f in &mut found {
            if let Found::File(p) = f
                && !crate::serve::resolve(p).is_ok_and(|r| roots.iter().any(|x| r.starts_with(x)))
            {
                let msg = format!(
                    "{}: resolves outside the served paths: not opened",
                    p.display()
                );
                *f = Found::Broken(p.clone(), msg);
            }
        }
    }
    scan_found(found)
        .iter()
        .map(|(p, s)| ScanRecord::new(p, s))
        .collect()
}

/// Scan what the walk found, in its order.
fn scan_found(found: Vec<Found>) -> Vec<(PathBuf, FileScan)> {
    let limits = ScanLimits::default();
    found
        .into_iter()
        .map(|f| match f {
            Found::File(p) => {
                // A panic is a bug in ckpt: that file's record says so (an `error`, never
                // safe), the others are scanned, and the exit code is 3.
                let s = ckpt_torch::bug::catch(|| scan_path(&p, &limits)).unwrap_or_else(|panic| {
                    crate::mark_bug();
                    FileScan {
                        problems: vec![panic.to_string()],
                        ..FileScan::default()
                    }
                });
                (p, s)
            }
            Found::Special(p) => (
                p,
                FileScan {
                    format: ScanFormat::Special,
                    note: Some("not a regular file (not opened)".into()),
                    ..FileScan::default()
                },
            ),
            Found::Broken(p, e) => (
                p,
                FileScan {
                    format: ScanFormat::Other,
                    problems: vec![e],
                    ..FileScan::default()
                },
            ),
        })
        .collect()
}

fn table_row(out: &mut String, p: &Path, s: &FileScan) {
    let v = s.verdict();
    match v {
        FileVerdict::NoPickle => {
            let _ = writeln!(
                out,
                "{:<9}  {}  ({})",
                v.as_str(),
                p.display(),
                s.note.as_deref().unwrap_or("no pickle")
            );
        }
        _ => {
            let n = s.report.findings.len();
            let on_list = s
                .report
                .findings
                .iter()
                .filter(|f| f.class == Verdict::Safe)
                .count();
            let k = s.pickles.len();
            let _ = writeln!(
                out,
                "{:<9}  {}  ({}: {k} pickle{}, {n} global{}, {on_list} on the allowlist)",
                v.as_str(),
                p.display(),
                s.format,
                if k == 1 { "" } else { "s" },
                if n == 1 { "" } else { "s" },
            );
        }
    }
    for f in s
        .report
        .findings
        .iter()
        .filter(|f| f.class != Verdict::Safe)
    {
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
    for e in &s.problems {
        let _ = writeln!(out, "           problem: {e}");
    }
}

/// Every file under `p`, sorted; symlinked directories are not followed (no loops), symlinks
/// to files are (torch.load would follow them).
fn collect(p: &Path, out: &mut Vec<Found>) {
    if ckpt_io::is_remote(p) {
        collect_remote(p, out);
        return;
    }
    if !p.is_dir() {
        // A path the user named: scanned whatever it is (scan_path refuses what is not a
        // regular file without opening it).
        out.push(Found::File(p.to_path_buf()));
        return;
    }
    let mut stack = vec![p.to_path_buf()];
    let mut found = Vec::new();
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                found.push(Found::Broken(
                    dir.clone(),
                    format!("{}: {e}", dir.display()),
                ));
                continue;
            }
        };
        for entry in rd {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    found.push(Found::Broken(
                        dir.clone(),
                        format!("{}: {e}", dir.display()),
                    ));
                    continue;
                }
            };
            let path = entry.path();
            let Ok(ft) = entry.file_type() else {
                found.push(Found::Broken(
                    path.clone(),
                    format!("{}: cannot stat", path.display()),
                ));
                continue;
            };
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                found.push(Found::File(path));
            } else if ft.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => found.push(Found::File(path)),
                    // A link to a directory: not followed.
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => found.push(Found::Special(path)),
                    Err(e) => {
                        let msg = format!("{}: {e}", path.display());
                        found.push(Found::Broken(path, msg));
                    }
                }
            } else {
                found.push(Found::Special(path));
            }
        }
    }
    found.sort_by(|a, b| key(a).cmp(key(b)));
    out.extend(found);
}

/// [`collect`] for a prefix in a bucket: a breadth-first walk of delimiter listings (one LIST
/// per prefix, memoized by ckpt_io so the scan of each object reuses the identity listed). A
/// bucket has no symlinks or devices. A prefix whose listing failed part-way is a `Broken`
/// record (never a clean scan of what happened to be listed).
fn collect_remote(p: &Path, out: &mut Vec<Found>) {
    match ckpt_io::stat(p) {
        Ok(s) if s.kind == ckpt_io::Kind::Dir => {}
        // An object, or whatever the open will say about it.
        _ => {
            out.push(Found::File(p.to_path_buf()));
            return;
        }
    }
    let mut queue = std::collections::VecDeque::from([p.to_path_buf()]);
    let mut found = Vec::new();
    while let Some(dir) = queue.pop_front() {
        let listing = match ckpt_io::read_dir(&dir) {
            Ok(l) => l,
            Err(e) => {
                found.push(Found::Broken(dir.clone(), remote_message(&dir, &e)));
                continue;
            }
        };
        if !listing.complete {
            let msg = format!(
                "{}: listing incomplete (some pages failed): not every object under it was scanned",
                dir.display()
            );
            found.push(Found::Broken(dir.clone(), msg));
        }
        for e in listing.entries {
            match e.kind {
                ckpt_io::Kind::Dir => queue.push_back(e.path),
                ckpt_io::Kind::File => found.push(Found::File(e.path)),
                ckpt_io::Kind::Other(_) => found.push(Found::Special(e.path)),
            }
        }
    }
    found.sort_by(|a, b| key(a).cmp(key(b)));
    out.extend(found);
}

/// `URL: error`, unless the error names the URL already (remote errors do).
fn remote_message(p: &Path, e: &std::io::Error) -> String {
    let (url, msg) = (p.display().to_string(), e.to_string());
    if msg.starts_with(&url) {
        msg
    } else {
        format!("{url}: {msg}")
    }
}

fn key(f: &Found) -> &Path {
    match f {
        Found::File(p) | Found::Special(p) | Found::Broken(p, _) => p,
    }
}
