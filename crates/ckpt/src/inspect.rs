//! `ckpt inspect`: a human summary per checkpoint, or the same as JSON (a list of
//! [`ckpt_torch::summary::InspectItem`]; `ckpt schema inspect` prints its JSON Schema).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use ckpt_model::Summarize;
use ckpt_torch::Checkpoint;
use ckpt_torch::summary::{DcpSummary, InspectItem as Item, Summary};

use crate::Outcome;
use crate::cli::{InspectArgs, OutputFormat};

/// One line per dtype: tensors, elements, bytes.
fn dtype_lines(out: &mut String, by_dtype: &[ckpt_torch::summary::DTypeTotal]) {
    for d in by_dtype {
        let _ = writeln!(
            out,
            "    {:<10} {:>5} tensors {:>14} elements {:>10}",
            d.dtype,
            d.tensors,
            thousands(d.elements),
            human_bytes(d.bytes)
        );
    }
}

fn render_dcp(out: &mut String, d: &DcpSummary) {
    let _ = writeln!(out, "{}", d.path);
    let mut fmt = String::from("torch.distributed.checkpoint");
    if let Some(v) = &d.version {
        let _ = write!(fmt, " (metadata {v})");
    }
    let _ = write!(
        fmt,
        ", {} file{}, {} chunks",
        d.files.len(),
        if d.files.len() == 1 { "" } else { "s" },
        d.chunks
    );
    line(out, "format", &fmt);
    if d.epoch.is_some() || d.global_step.is_some() {
        let show = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |x| x.to_string());
        line(
            out,
            "epoch / step",
            &format!("{} / {}", show(d.epoch), show(d.global_step)),
        );
    }
    let _ = writeln!(
        out,
        "  tensors: {} ({} sharded across ranks), {} parameters, {}",
        d.tensors,
        d.sharded_tensors,
        thousands(d.elements),
        human_bytes(d.bytes)
    );
    dtype_lines(out, &d.by_dtype);
    if !d.other_keys.is_empty() {
        line(out, "other keys", &d.other_keys.join(", "));
    }
}

/// One path's element of `ckpt inspect --format json`: a DCP folder's summary or a file's
/// (`ckpt serve`'s detail shows the same value).
pub fn item(path: &Path) -> ckpt_torch::Result<Item> {
    if ckpt_torch::dcp::is_dcp_dir(path) {
        DcpSummary::open(path).map(|d| Item::Dcp(Box::new(d)))
    } else {
        Checkpoint::open(path).map(|ck| Item::File(Box::new(ck.summary())))
    }
}

pub fn run(a: &InspectArgs) -> Result<Outcome> {
    let mut summaries = Vec::new();
    let mut failed = 0usize;
    for f in &a.files {
        match item(f) {
            Ok(i) => summaries.push(i),
            Err(e) => {
                failed += 1;
                crate::sink_eprintln!("ckpt: error: {e}");
            }
        }
    }
    match a.format {
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(&summaries)?;
            s.push('\n');
            crate::print_stdout(&s)?;
        }
        OutputFormat::Table => {
            let mut out = String::new();
            for (i, s) in summaries.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                match s {
                    Item::File(s) => render(&mut out, s),
                    Item::Dcp(d) => render_dcp(&mut out, d),
                }
            }
            crate::print_stdout(&out)?;
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} file(s) could not be read", a.files.len());
    }
    Ok(Outcome::Ok)
}

/// `12.3 KB` style sizes (powers of 1024, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn file_name(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.to_owned())
}

fn score(v: Option<f64>) -> String {
    match v {
        Some(x) => {
            let s = format!("{x:.6}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            s.to_owned()
        }
        None => "-".into(),
    }
}

fn render(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "{}", s.path);
    let mut fmt = s.format.clone();
    if let Some(r) = &s.zip_root {
        let _ = write!(fmt, " (root {r}/)");
    }
    if s.format != "safetensors" {
        let _ = write!(
            fmt,
            ", pickle protocol {}, {} of pickle",
            s.pickle_protocol,
            human_bytes(s.pickle_bytes)
        );
    }
    let _ = write!(fmt, ", file {}", human_bytes(s.size_bytes));
    if s.byteorder != "little" {
        let _ = write!(fmt, ", {}-endian", s.byteorder);
    }
    line(out, "format", &fmt);
    if let Some(v) = &s.lightning_version {
        line(out, "lightning", v);
    }
    if s.epoch.is_some() || s.global_step.is_some() {
        let e = s.epoch.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let g = s
            .global_step
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into());
        line(out, "epoch / step", &format!("{e} / {g}"));
    }
    line(out, "top level", &s.top_level);
    if !s.keys.is_empty() && s.format != "safetensors" {
        let _ = writeln!(out, "  keys");
        let width = s
            .keys
            .iter()
            .map(|k| k.key.chars().count())
            .max()
            .unwrap_or(0)
            .min(40);
        for k in s.keys.iter().take(50) {
            let _ = writeln!(out, "    {:<width$}  {}", truncate(&k.key, 60), k.kind);
        }
        if s.keys.len() > 50 {
            let _ = writeln!(out, "    … {} more", s.keys.len() - 50);
        }
    }
    for ns in &s.namespaces {
        let n = ns.fields.as_object().map_or(0, serde_json::Map::len);
        let _ = writeln!(out, "  {} ({}, {n} fields)", ns.key, ns.class);
        yamlish(out, &ns.fields, 2);
    }
    if let Some(ts) = &s.torchscript {
        render_torchscript(out, ts);
    }
    if let Some(hp) = &s.hyper_parameters {
        let title = match &s.hparams_name {
            Some(n) => format!("hyper_parameters ({n})"),
            None => "hyper_parameters".into(),
        };
        let _ = writeln!(out, "  {title}");
        yamlish(out, hp, 2);
    }
    if let Some(hp) = &s.datamodule_hyper_parameters {
        let _ = writeln!(out, "  datamodule_hyper_parameters");
        yamlish(out, hp, 2);
    }
    if !s.callbacks.is_empty() {
        let _ = writeln!(out, "  callbacks");
        for c in &s.callbacks {
            let mut parts = Vec::new();
            if let Some(m) = &c.monitor {
                parts.push(format!("monitor={m}"));
            }
            if let Some(m) = &c.mode {
                parts.push(format!("mode={m}"));
            }
            if c.best_model_score.is_some() {
                parts.push(format!("best={}", score(c.best_model_score)));
            }
            if c.current_score.is_some() {
                parts.push(format!("current={}", score(c.current_score)));
            }
            if let Some(k) = c.best_k_models {
                parts.push(format!("top-k kept={k}"));
            }
            for (k, v) in c.fields.iter().take(6) {
                if matches!(k.as_str(), "dirpath" | "kth_best_model_path" | "kth_value") {
                    continue;
                }
                parts.push(format!("{k}={v}"));
            }
            let _ = writeln!(out, "    {}  {}", c.kind, parts.join(" "));
            if let Some(p) = &c.best_model_path
                && !p.is_empty()
            {
                let _ = writeln!(out, "      best path  {}", file_name(p));
            }
            if let Some(p) = &c.last_model_path
                && !p.is_empty()
            {
                let _ = writeln!(out, "      last path  {}", file_name(p));
            }
        }
    }
    for sd in &s.state_dicts {
        let name = if sd.path.is_empty() {
            "(top level)".to_owned()
        } else {
            sd.path.clone()
        };
        let _ = writeln!(
            out,
            "  state dict {name}: {} tensors, {} parameters, {}",
            sd.tensors,
            thousands(sd.elements),
            human_bytes(sd.bytes)
        );
        dtype_lines(out, &sd.by_dtype);
        if !sd.groups.is_empty() {
            let gs: Vec<String> = sd
                .groups
                .iter()
                .take(12)
                .map(|g| format!("{} ({})", g.prefix, thousands(g.elements)))
                .collect();
            let more = if sd.groups.len() > 12 {
                format!(", … {} more", sd.groups.len() - 12)
            } else {
                String::new()
            };
            let _ = writeln!(out, "    modules    {}{more}", gs.join(", "));
        }
        if !sd.wrapper_prefixes.is_empty() {
            let _ = writeln!(out, "    wrappers   {}", sd.wrapper_prefixes.join(" "));
        }
        if !sd.shared.is_empty() {
            let _ = writeln!(
                out,
                "    shared     {} (storage shared with an earlier tensor)",
                sd.shared
                    .iter()
                    .take(8)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if sd.flat_params {
            let _ = writeln!(
                out,
                "    note       flattened FSDP parameters (_flat_param): not splittable without FSDP's metadata"
            );
        }
    }
    for o in &s.optimizers {
        let lr: Vec<String> =
            o.lr.iter()
                .map(|x| ckpt_torch::pyrepr::float_repr(*x))
                .collect();
        let mut text = format!(
            "{}: {} optimizer(s), {} param group(s)",
            o.key, o.optimizers, o.param_groups
        );
        if !o.state_fields.is_empty() {
            let _ = write!(text, ", state {}", o.state_fields.join("/"));
        }
        if !lr.is_empty() {
            let _ = write!(text, ", lr {}", lr.join(" "));
        }
        line(out, "optimizer", &text);
    }
    if let Some(n) = s.lr_schedulers {
        line(out, "schedulers", &n.to_string());
    }
    if !s.safetensors_metadata.is_empty() {
        let _ = writeln!(out, "  metadata");
        for (k, v) in &s.safetensors_metadata {
            let _ = writeln!(out, "    {k}: {}", truncate(v, 100));
        }
    }
    for w in &s.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
}

/// Most lines listed per group (code files, parameters, buffers) in the table.
const LIST_MAX: usize = 50;

fn render_torchscript(out: &mut String, ts: &ckpt_torch::summary::TorchScriptSummary) {
    let mut head = match (&ts.original_name, &ts.qualified_name) {
        (Some(o), Some(q)) => format!("{o} ({q})"),
        _ => "no module at the top".to_owned(),
    };
    let _ = write!(
        head,
        ", {} module{}",
        ts.modules,
        if ts.modules == 1 { "" } else { "s" }
    );
    let others: Vec<&str> = ts
        .module_classes
        .iter()
        .skip(1)
        .map(|c| ckpt_torch::torchscript::original_name(c))
        .collect();
    if !others.is_empty() {
        let mut uniq: Vec<&str> = Vec::new();
        for o in others {
            if !uniq.contains(&o) {
                uniq.push(o);
            }
        }
        let _ = write!(head, ": {}", uniq.join(", "));
    }
    line(out, "torchscript", &head);
    line(
        out,
        "code",
        &format!(
            "{} file{}, {} (TorchScript: torch.jit.load compiles and runs it; ckpt never does)",
            ts.code_files.len(),
            if ts.code_files.len() == 1 { "" } else { "s" },
            human_bytes(ts.code_bytes)
        ),
    );
    let width = ts
        .code_files
        .iter()
        .take(LIST_MAX)
        .map(|f| f.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(80);
    for f in ts.code_files.iter().take(LIST_MAX) {
        let _ = writeln!(out, "    {:<width$}  {:>9}", f.name, human_bytes(f.bytes));
    }
    if ts.code_files.len() > LIST_MAX {
        let _ = writeln!(out, "    … {} more", ts.code_files.len() - LIST_MAX);
    }
    if !ts.setstate_classes.is_empty() {
        line(
            out,
            "runs at load",
            &format!(
                "{} (TorchScript __setstate__, run by torch.jit.load)",
                ts.setstate_classes.join(", ")
            ),
        );
    }
    let mut consts = format!(
        "{} value{}",
        ts.constants,
        if ts.constants == 1 { "" } else { "s" }
    );
    if !ts.constant_tensors.is_empty() {
        let list: Vec<String> = ts
            .constant_tensors
            .iter()
            .take(12)
            .map(|t| format!("{} {} {:?}", t.name, t.dtype, t.shape))
            .collect();
        let _ = write!(
            consts,
            ", {} tensor{}: {}",
            ts.constant_tensors.len(),
            if ts.constant_tensors.len() == 1 {
                ""
            } else {
                "s"
            },
            list.join(", ")
        );
        if ts.constant_tensors.len() > 12 {
            consts.push_str(", …");
        }
    }
    line(out, "constants", &consts);
    if !ts.other_pickles.is_empty() {
        line(out, "other pickles", &ts.other_pickles.join(", "));
    }
    if !ts.extra_files.is_empty() {
        let list: Vec<String> = ts
            .extra_files
            .iter()
            .take(12)
            .map(|f| format!("{} ({})", f.name, human_bytes(f.bytes)))
            .collect();
        let more = if ts.extra_files.len() > 12 {
            ", …"
        } else {
            ""
        };
        line(out, "extra files", &format!("{}{more}", list.join(", ")));
    }
    for (label, list) in [("parameters", &ts.parameters), ("buffers", &ts.buffers)] {
        let Some(list) = list else {
            line(
                out,
                label,
                "not known: set by TorchScript __setstate__ when torch.jit.load runs it",
            );
            continue;
        };
        line(out, label, &list.len().to_string());
        let width = list
            .iter()
            .take(LIST_MAX)
            .map(|t| t.name.chars().count())
            .max()
            .unwrap_or(0)
            .min(60);
        for t in list.iter().take(LIST_MAX) {
            let _ = writeln!(
                out,
                "    {:<width$}  {:<9} {:?}",
                truncate(&t.name, 60),
                t.dtype,
                t.shape
            );
        }
        if list.len() > LIST_MAX {
            let _ = writeln!(out, "    … {} more", list.len() - LIST_MAX);
        }
    }
}

fn line(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {label:<13} {value}");
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Nested values as indented `key: value` lines (bounded depth and width).
fn yamlish(out: &mut String, v: &serde_json::Value, indent: usize) {
    use serde_json::Value as J;
    let pad = "  ".repeat(indent);
    match v {
        J::Object(m) if !m.contains_key("__tensor__") && !m.contains_key("__object__") => {
            for (k, val) in m.iter().take(100) {
                match val {
                    J::Object(inner)
                        if !inner.is_empty()
                            && !inner.contains_key("__tensor__")
                            && !inner.contains_key("__object__")
                            && !inner.contains_key("__float__")
                            && indent < 12 =>
                    {
                        let _ = writeln!(out, "{pad}{k}:");
                        yamlish(out, val, indent + 1);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}{k}: {}", scalar_text(val));
                    }
                }
            }
            if m.len() > 100 {
                let _ = writeln!(out, "{pad}… {} more", m.len() - 100);
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar_text(other));
        }
    }
}

fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => truncate(s, 120),
        serde_json::Value::Object(m) if m.contains_key("__tensor__") => {
            let t = &m["__tensor__"];
            format!(
                "tensor {} {}",
                t["dtype"].as_str().unwrap_or("?"),
                t["shape"]
            )
        }
        // nan / inf / -inf, as the JSON mapping spells them
        serde_json::Value::Object(m) if m.len() == 1 && m.contains_key("__float__") => {
            m["__float__"].as_str().unwrap_or("?").to_owned()
        }
        other => truncate(&other.to_string(), 120),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2048), "2.0 KB");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
