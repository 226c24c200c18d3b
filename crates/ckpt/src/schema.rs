//! `ckpt schema [NAME]`: the JSON Schemas of what ckpt writes. `sidecar` (the default) is the
//! `.metadata.yaml` sidecar's schema; every other name is the schema of a command's
//! `--format json` output, derived (schemars, draft 2020-12, as the output serializes) from
//! the very types that command serializes, so schema and output cannot drift apart.
//!
//! To add a command's schema: one line in [`SCHEMAS`].

use anyhow::Result;
use ckpt_catalog::entry::CatalogOutput;
use ckpt_meta::check::SidecarCheck;
use ckpt_torch::scan::ScanRecord;
use ckpt_torch::summary::InspectItem;
use serde_json::Value;

use crate::Outcome;

/// One schema `ckpt schema NAME` prints.
pub struct Entry {
    pub name: &'static str,
    /// What it describes (shown by `ckpt schema --help`; the title of an output schema).
    pub about: &'static str,
    pub schema: fn() -> Value,
}

impl Entry {
    const fn new(name: &'static str, about: &'static str, schema: fn() -> Value) -> Entry {
        Entry {
            name,
            about,
            schema,
        }
    }
}

/// Every schema, the default first. A command's output: `output::<ItsTopLevelType>`.
#[rustfmt::skip]
pub const SCHEMAS: &[Entry] = &[
    Entry::new("sidecar", "the .metadata.yaml sidecar (default)", ckpt_meta::schema::json_schema),
    Entry::new("scan", "ckpt scan --format json", output::<Vec<ScanRecord>>),
    Entry::new("inspect", "ckpt inspect --format json", output::<Vec<InspectItem>>),
    Entry::new("validate", "ckpt validate --format json", output::<Vec<SidecarCheck>>),
    Entry::new("catalog", "ckpt catalog --format json", output::<CatalogOutput>),
    Entry::new("convert", "ckpt convert --format json", output::<ckpt_convert::ConvertRun>),
    Entry::new("hash", "ckpt hash --format json", ckpt_identity::hash_schema),
    Entry::new("diff", "ckpt diff --format json", ckpt_identity::diff_schema),
    Entry::new("compare", "ckpt compare --format json", ckpt_identity::compare::compare_schema),
];

/// The names `ckpt schema` knows, in [`SCHEMAS`] order.
pub fn names() -> impl Iterator<Item = &'static str> {
    SCHEMAS.iter().map(|e| e.name)
}

/// The schema `ckpt schema` prints without a name.
pub const DEFAULT: &str = "sidecar";

/// The schema named `name`, if there is one.
pub fn get(name: &str) -> Option<Value> {
    let e = SCHEMAS.iter().find(|e| e.name == name)?;
    let schema = (e.schema)();
    if e.name == DEFAULT {
        // Printed exactly as before `ckpt schema` took a name.
        return Some(schema);
    }
    Some(titled(schema, e.about))
}

/// `$schema` first, then `title` (what the schema describes, instead of schemars'
/// `Array_of_T`), then the rest in schemars' order.
fn titled(schema: Value, title: &str) -> Value {
    let Value::Object(map) = schema else {
        return schema;
    };
    let mut out = serde_json::Map::new();
    if let Some(v) = map.get("$schema") {
        out.insert("$schema".into(), v.clone());
    }
    out.insert("title".into(), Value::String(title.to_owned()));
    for (k, v) in map {
        if k != "$schema" && k != "title" {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

/// The JSON Schema of `T` as ckpt serializes it: every field is required (ckpt always writes
/// every field, `null` when it has no value) and objects admit no other property, so a field
/// added to an output type changes this schema, and a field written without it fails the
/// contract tests.
pub fn output<T: schemars::JsonSchema>() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

pub fn run(name: Option<&str>) -> Result<Outcome> {
    let name = name.unwrap_or(DEFAULT);
    let Some(schema) = get(name) else {
        // clap checks the name against `names()` first; this is the net under it.
        anyhow::bail!(
            "unknown schema {name:?} (known: {})",
            names().collect::<Vec<_>>().join(", ")
        );
    };
    let mut s = serde_json::to_string_pretty(&schema)?;
    s.push('\n');
    crate::print_stdout(&s)?;
    Ok(Outcome::Ok)
}
