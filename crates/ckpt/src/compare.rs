//! `ckpt compare A B C …`: N checkpoints or runs side by side. Each path is catalogued (the
//! same entry `ckpt catalog` gives), a run folder stands for its best checkpoint (else its
//! newest), and `ckpt_identity::compare` lines them up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use ckpt_catalog::CatalogEntry;
use ckpt_catalog::catalog::{Options, build};
use ckpt_catalog::query::{self, GroupBy};
use ckpt_identity::compare::{Comparison, Side, compare};
use ckpt_identity::{HashOptions, gather, identity};
use serde_json::Value;

use crate::Outcome;
use crate::catalog::{middle_truncate, terminal_width, trim_float};
use crate::cli::{CompareArgs, OutputFormat};

/// The entry a path stands for: a checkpoint's own, or a run folder's best (else newest).
fn entry_for(path: &Path, cache: Option<PathBuf>) -> Result<CatalogEntry> {
    crate::inputs::check_paths(&[path])?;
    let opts = Options {
        cache,
        ..Options::default()
    };
    let cat = build(&[path.to_path_buf()], &opts)?;
    let first_error = cat.entries.iter().find_map(|e| e.error.clone());
    let entries: Vec<CatalogEntry> = cat
        .entries
        .into_iter()
        .filter(|e| e.error.is_none())
        .collect();
    if entries.is_empty() {
        // Say why (a dangerous pickle, a damaged zip …), as the catalog would.
        match first_error {
            Some(e) => bail!("{e}"),
            None => bail!("{}: no checkpoint in it", path.display()),
        }
    }
    if entries.len() == 1 {
        return Ok(entries.into_iter().next().unwrap_or_default());
    }
    let best = query::best(entries.clone(), None, None, GroupBy::Experiment);
    if best.len() == 1
        && let Some(b) = best.into_iter().next()
        && b.monitor.is_some()
    {
        return Ok(b);
    }
    Ok(query::latest(entries, GroupBy::Experiment)
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// An entry's fields as dotted leaves (`model.encoder.model_name`, `hparams.optimizer.lr`).
fn leaves(e: &CatalogEntry) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, depth: usize, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if depth < 4 && !m.is_empty() => {
                for (k, x) in m {
                    walk(&format!("{prefix}.{k}"), x, depth + 1, out);
                }
            }
            Value::Null => {}
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Value::Object(m) = e.to_value() {
        for (k, v) in m {
            if matches!(k.as_str(), "sources" | "conflicts" | "data") {
                continue;
            }
            match (k.as_str(), &v) {
                ("metrics" | "model" | "hparams", Value::Object(inner)) => {
                    for (ik, iv) in inner {
                        walk(&format!("{k}.{ik}"), iv, 1, &mut out);
                    }
                }
                (_, Value::Null) => {}
                _ => {
                    out.insert(k, v);
                }
            }
        }
    }
    out
}

/// `ckpt compare --format json`'s comparison of `paths` (`ckpt serve`'s compare shows its
/// rows), reading and writing the catalog cache `cache`.
pub fn comparison(
    paths: &[PathBuf],
    cache: Option<PathBuf>,
    all: bool,
    max_tensors: usize,
) -> Result<Comparison> {
    let mut sides = Vec::with_capacity(paths.len());
    for p in paths {
        let e = entry_for(p, cache.clone())?;
        let inputs = gather(Path::new(&e.path), &HashOptions::default()).ok();
        let id = inputs.as_ref().map(identity);
        let file = e.file_name().to_owned();
        sides.push(Side {
            label: file,
            path: e.path.clone(),
            fields: leaves(&e),
            inputs,
            identity: id,
        });
    }
    // Columns named by file, with the run (or folder) when two files share a name.
    let labels: Vec<String> = sides.iter().map(|s| s.label.clone()).collect();
    for s in &mut sides {
        if labels.iter().filter(|l| **l == s.label).count() > 1 {
            let run = s
                .fields
                .get("run")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| s.path.clone());
            s.label = format!("{run}/{}", s.label);
        }
    }
    Ok(compare(&sides, all, max_tensors))
}

pub fn run(a: &CompareArgs) -> Result<Outcome> {
    let c = comparison(
        &a.paths,
        Some(ckpt_catalog::cache::Cache::default_path()),
        a.all,
        a.max_tensors,
    )?;
    match a.format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&c)?;
            s.push('\n');
            crate::print_stdout(&s)?;
        }
        OutputFormat::Table => {
            let width = if a.wide { None } else { terminal_width() };
            crate::print_stdout(&table(&c, width))?;
        }
    }
    Ok(Outcome::Ok)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => n.as_f64().map(trim_float).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// FIELD and one column per checkpoint; `*` marks a field that differs. Long cells lose
/// their middle to fit `width`.
fn table(c: &Comparison, width: Option<usize>) -> String {
    let n = c.checkpoints.len();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["FIELD".to_owned()];
    header.extend(c.checkpoints.iter().map(|x| x.label.clone()));
    let mut section = String::new();
    for r in &c.rows {
        if r.section != section {
            section = r.section.clone();
            let mut sep = vec![format!("[{section}]")];
            sep.extend(std::iter::repeat_n(String::new(), n));
            rows.push(sep);
        }
        let mark = if r.differs { "* " } else { "  " };
        let mut row = vec![format!("{mark}{}", r.field)];
        row.extend(r.values.iter().map(|v| {
            let t = cell(v);
            // Identity digests are long: their first 12 hex digits tell them apart.
            if r.section == "identity" && r.field != "hash" && t.len() > 12 {
                t[..12].to_owned()
            } else {
                t
            }
        }));
        rows.push(row);
    }
    let mut sep = vec!["[tensors]".to_owned()];
    sep.extend(std::iter::repeat_n(String::new(), n));
    rows.push(sep);
    let mut count = vec!["  count".to_owned()];
    count.extend(
        c.tensors
            .counts
            .iter()
            .map(|x| x.map_or("-".to_owned(), |k| k.to_string())),
    );
    rows.push(count);
    for t in &c.tensors.rows {
        let mut row = vec![format!("* {}", t.name)];
        row.extend(t.values.iter().map(|v| match v {
            None => "-".to_owned(),
            Some(s) => format!(
                "{} [{}]",
                s.dtype,
                s.shape
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }));
        rows.push(row);
    }
    let cols = n + 1;
    let mut widths = vec![0usize; cols];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (i, x) in r.iter().enumerate() {
            widths[i] = widths[i].max(x.chars().count());
        }
    }
    if let Some(limit) = width {
        let total = |w: &[usize]| w.iter().sum::<usize>() + 2 * (cols - 1);
        while total(&widths) > limit {
            let Some((i, _)) = widths
                .iter()
                .enumerate()
                .filter(|(_, w)| **w > 10)
                .max_by_key(|(_, w)| **w)
            else {
                break;
            };
            widths[i] -= 1;
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, x) in r.iter().enumerate() {
            let x = middle_truncate(x, widths[i]);
            let _ = write!(line, "{x:<w$}  ", w = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if c.tensors.differing > c.tensors.rows.len() {
        let _ = writeln!(
            out,
            "… {} more differing tensors (--max-tensors N)",
            c.tensors.differing - c.tensors.rows.len()
        );
    }
    let differing = c.rows.iter().filter(|r| r.differs).count();
    let _ = writeln!(
        out,
        "{n} checkpoints; {differing} fields and {} tensors differ (*)",
        c.tensors.differing
    );
    out
}
