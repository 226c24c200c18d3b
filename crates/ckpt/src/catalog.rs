//! `ckpt catalog` and `ckpt cache`: what checkpoints there are, which is best, what they are.

use std::fmt::Write as _;
use std::io::IsTerminal;

use anyhow::Result;
use ckpt_catalog::cache::Cache;
use ckpt_catalog::catalog::{Options, build_streaming};
use ckpt_catalog::discover::WalkOptions;
use ckpt_catalog::query;
use std::io::Write as _;

use serde_json::Value;

use crate::Outcome;
use crate::cli::{CacheArgs, CacheCommand, CatalogArgs, CatalogFormat};
use crate::inspect::{human_bytes, thousands};

pub fn run(a: &CatalogArgs) -> Result<Outcome> {
    let filters = a
        .filter
        .iter()
        .map(|f| query::parse_filter(f).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let tty = std::io::stderr().is_terminal();
    // A bar on stderr, only on a terminal: stdout stays pure data.
    let progress: Option<ckpt_catalog::catalog::Progress> = tty.then(|| {
        std::sync::Arc::new(|done: usize, total: usize| {
            const W: usize = 30;
            let filled = (done * W).checked_div(total).unwrap_or(W);
            eprint!(
                "\r[{}{}] {done}/{total} checkpoints",
                "#".repeat(filled),
                ".".repeat(W - filled)
            );
        }) as ckpt_catalog::catalog::Progress
    });
    let opts = Options {
        walk: WalkOptions {
            recursive: !a.no_recursive,
            max_depth: a.max_depth,
        },
        cache: if a.no_cache {
            None
        } else {
            Some(a.cache_file.clone().unwrap_or_else(Cache::default_path))
        },
        progress,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let streaming = !a.best
        && !a.latest
        && a.sort.is_none()
        && matches!(a.format, CatalogFormat::Json | CatalogFormat::Jsonl);
    // Every field a query names must exist in some entry: a typo is an error, not an empty
    // (or unsorted) answer.
    let mut queried: Vec<(&str, &str)> = filters
        .iter()
        .map(|f| ("--filter", f.field.as_str()))
        .collect();
    queried.extend(a.sort.as_deref().map(|s| ("--sort", s)));
    queried.extend(a.by.as_deref().map(|b| ("--by", b)));
    let mut fields = FieldCheck::new(queried);
    let keep = |e: &Value| filters.iter().all(|f| f.matches(e));
    // Without queries that need every entry at once, JSON is written as each folder is
    // done: memory stays flat however big the tree is.
    let (cat, mut entries) = if streaming {
        let mut first = true;
        let mut io_err: Option<std::io::Error> = None;
        if a.format == CatalogFormat::Json {
            out.write_all(b"{\n  \"checkpoints\": [")?;
        }
        let cat = build_streaming(&a.paths, &opts, &mut |e| {
            fields.see(&e);
            if io_err.is_some() || !keep(&e) {
                return;
            }
            let r = if a.format == CatalogFormat::Json {
                write_indented(&mut out, &e, first)
            } else {
                serde_json::to_writer(&mut out, &e)
                    .map_err(std::io::Error::other)
                    .and_then(|()| out.write_all(b"\n"))
            };
            first = false;
            if let Err(err) = r {
                io_err = Some(err);
            }
        })?;
        if let Some(e) = io_err {
            return Err(e.into());
        }
        if a.format == CatalogFormat::Json {
            out.write_all(if first { b"],\n" } else { b"\n  ],\n" })?;
            out.write_all(b"  \"warnings\": ")?;
            serde_json::to_writer(&mut out, &cat.warnings)?;
            out.write_all(b"\n}\n")?;
        }
        (cat, Vec::new())
    } else {
        let mut kept = Vec::new();
        let cat = build_streaming(&a.paths, &opts, &mut |e| {
            fields.see(&e);
            if keep(&e) {
                kept.push(e);
            }
        })?;
        (cat, kept)
    };
    if tty {
        eprint!("\x1b[2K\r");
    }
    for w in &cat.warnings {
        eprintln!("ckpt: warning: {w}");
    }
    for b in &cat.bugs {
        crate::report_bug("catalog", &b.path, &b.panic);
    }
    if a.verbose {
        eprintln!(
            "ckpt: {} checkpoint(s): {} opened, {} from cache, {} described by fresh sidecars; {} cache rows forgotten",
            cat.stats.candidates,
            cat.stats.opened,
            cat.stats.cached,
            cat.stats.skipped_by_sidecar,
            cat.stats.forgotten
        );
    }
    if streaming {
        out.flush()?;
        fields.check()?;
        return Ok(Outcome::Ok);
    }
    fields.check()?;
    if a.best {
        entries = query::best(entries, a.by.as_deref(), a.mode.as_deref());
    }
    if a.latest {
        entries = query::latest(entries);
    }
    if let Some(s) = &a.sort {
        query::sort(&mut entries, s, a.desc);
    }
    match a.format {
        CatalogFormat::Json => {
            #[derive(serde::Serialize)]
            struct Output<'a> {
                checkpoints: &'a [Value],
                warnings: &'a [String],
            }
            serde_json::to_writer_pretty(
                &mut out,
                &Output {
                    checkpoints: &entries,
                    warnings: &cat.warnings,
                },
            )?;
            out.write_all(b"\n")?;
        }
        CatalogFormat::Jsonl => {
            for e in &entries {
                serde_json::to_writer(&mut out, e)?;
                out.write_all(b"\n")?;
            }
        }
        CatalogFormat::Csv => out.write_all(csv(&entries).as_bytes())?,
        CatalogFormat::Table => out.write_all(table(&entries).as_bytes())?,
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

/// One entry inside the streamed `checkpoints` array, pretty-printed at depth 2.
fn write_indented(out: &mut impl std::io::Write, e: &Value, first: bool) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(e).map_err(std::io::Error::other)?;
    out.write_all(if first { b"\n" } else { b",\n" })?;
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.write_all(b"\n")?;
        }
        out.write_all(b"    ")?;
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(m)) => m
            .get("name")
            .or_else(|| m.get("model_name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| Value::Object(m.clone()).to_string()),
        Some(other) => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

const CSV_COLUMNS: &[&str] = &[
    "path",
    "experiment",
    "format",
    "epoch",
    "global_step",
    "monitor",
    "mode",
    "architecture",
    "encoder",
    "decoder",
    "head",
    "loss",
    "family",
    "params",
    "size_bytes",
    "modified",
    "is_best",
    "is_last",
    "error",
];

fn csv(entries: &[Value]) -> String {
    let mut metric_names: Vec<String> = Vec::new();
    for e in entries {
        if let Some(m) = e.get("metrics").and_then(Value::as_object) {
            for k in m.keys() {
                if !metric_names.contains(k) {
                    metric_names.push(k.clone());
                }
            }
        }
    }
    metric_names.sort();
    let mut out = String::new();
    let header: Vec<String> = CSV_COLUMNS
        .iter()
        .map(|c| (*c).to_owned())
        .chain(metric_names.iter().map(|m| format!("metrics.{m}")))
        .map(|h| csv_field(&h))
        .collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for e in entries {
        let mut row: Vec<String> = Vec::new();
        for c in CSV_COLUMNS {
            let v = match *c {
                "architecture" | "encoder" | "decoder" | "head" | "loss" | "family" => {
                    e.get("model").and_then(|m| m.get(*c))
                }
                other => e.get(other),
            };
            row.push(csv_field(&text_of(v)));
        }
        for m in &metric_names {
            row.push(csv_field(&text_of(e.get("metrics").and_then(|x| x.get(m)))));
        }
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

fn table(entries: &[Value]) -> String {
    let headers = [
        "EXPERIMENT",
        "CHECKPOINT",
        "EPOCH",
        "STEP",
        "SCORE",
        "MODEL",
        "PARAMS",
        "SIZE",
        "",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for e in entries {
        let path = e["path"].as_str().unwrap_or("");
        let name = std::path::Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_owned());
        let score = match e.get("monitor").and_then(Value::as_str) {
            Some(m) => match ckpt_catalog::resolve::metric_value(e, m) {
                Some(v) => format!("{m}={}", trim_float(v)),
                None => m.to_owned(),
            },
            None => e
                .get("metrics")
                .and_then(Value::as_object)
                .and_then(|m| m.iter().next())
                .map(|(k, v)| format!("{k}={}", v.as_f64().map(trim_float).unwrap_or_default()))
                .unwrap_or_default(),
        };
        let model = e.get("model");
        let arch = [
            text_of(model.and_then(|m| m.get("architecture"))),
            text_of(model.and_then(|m| m.get("family"))),
        ]
        .into_iter()
        .filter(|s| !s.is_empty() && s != "unknown")
        .collect::<Vec<_>>()
        .join("/");
        let mut flags = Vec::new();
        if e["is_best"] == Value::Bool(true) {
            flags.push("best".to_owned());
        }
        if e["is_last"] == Value::Bool(true) {
            flags.push("last".to_owned());
        }
        if let Some(err) = e.get("error").and_then(Value::as_str) {
            flags.push(format!("error: {err}"));
        }
        rows.push(vec![
            text_of(e.get("experiment")),
            name,
            text_of(e.get("epoch")),
            text_of(e.get("global_step")),
            score,
            arch,
            e.get("params")
                .and_then(Value::as_u64)
                .map(thousands)
                .unwrap_or_default(),
            e.get("size_bytes")
                .and_then(Value::as_u64)
                .map(human_bytes)
                .unwrap_or_default(),
            flags.join(" "),
        ]);
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(headers.len() - 1) {
            widths[i] = widths[i].max(c.chars().count()).min(60);
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let _ = write!(s, "{:<w$}  ", c, w = widths[i]);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(
        &mut out,
        &headers.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    );
    for r in &rows {
        line(&mut out, r);
    }
    let _ = writeln!(out, "{} checkpoint(s)", rows.len());
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The fields named by `--filter`, `--sort`, `--by` (or `prune --monitor`), checked against
/// every entry the catalog produced (kept by the filters or not).
pub struct FieldCheck<'a> {
    queried: Vec<(&'a str, &'a str)>,
    found: Vec<bool>,
    known: std::collections::BTreeSet<String>,
    seen: usize,
}

impl<'a> FieldCheck<'a> {
    /// `(option, field)` pairs, e.g. `("--sort", "hmean")`.
    pub fn new(queried: Vec<(&'a str, &'a str)>) -> Self {
        let found = vec![false; queried.len()];
        FieldCheck {
            queried,
            found,
            known: std::collections::BTreeSet::new(),
            seen: 0,
        }
    }

    pub fn see(&mut self, e: &Value) {
        if self.queried.is_empty() {
            return;
        }
        self.seen += 1;
        query::field_names(e, &mut self.known);
        for ((_, name), found) in self.queried.iter().zip(&mut self.found) {
            *found = *found || query::has_field(e, name);
        }
    }

    /// Exit 2 with the nearest known field for the first field no entry has.
    pub fn check(&self) -> Result<()> {
        for ((option, name), found) in self.queried.iter().zip(&self.found) {
            if let Some(msg) = query::unknown_field(option, name, self.seen, &self.known, *found) {
                anyhow::bail!(msg);
            }
        }
        Ok(())
    }
}

pub fn cache(a: &CacheArgs) -> Result<Outcome> {
    let path = a.cache_file.clone().unwrap_or_else(Cache::default_path);
    match a.command {
        CacheCommand::Info => match Cache::read_info(&path)? {
            None => crate::print_stdout(&format!("no cache at {}\n", path.display()))?,
            Some(i) => crate::print_stdout(&format!(
                "path            {}\nschema version  {}\nentries         {}\nsize            {}\n",
                i.path,
                i.schema_version,
                i.entries,
                human_bytes(i.size_bytes)
            ))?,
        },
        CacheCommand::Clear => {
            if Cache::clear(&path)? {
                crate::print_stdout(&format!("removed {}\n", path.display()))?;
            } else {
                crate::print_stdout(&format!("no cache at {}\n", path.display()))?;
            }
        }
    }
    Ok(Outcome::Ok)
}
