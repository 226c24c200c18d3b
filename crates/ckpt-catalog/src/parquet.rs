//! `ckpt catalog --format parquet`: the catalog as one Parquet file, one row per checkpoint,
//! for the engines teams already query fleets with (DuckDB, pyarrow/pandas, Polars, Spark).
//!
//! It lives here, behind the `parquet` feature, because its schema is a second contract of
//! [`CatalogEntry`] (beside the JSON one `ckpt schema catalog` derives from the same type):
//! one column per top-level field, in [`TOP_FIELDS`] order, and a test fails when a field is
//! added to the entry without a column. The CLI enables the feature; a library user (the
//! Python package) can write the same file without the command.
//!
//! Types are chosen for what engines query well:
//! - integers are `int64` (sizes and counts too: Spark, Trino and BigQuery have no unsigned
//!   64-bit type; a value past `i64::MAX` is an error, never a wrapped number);
//! - `metrics` is `map<string, float64>`, `sources` `map<string, string>`;
//! - `model`, `hparams`, `data` are arbitrary JSON trees: each is a string column holding the
//!   part's JSON text (exactly the JSON output's value; DuckDB's `->>`/`json_extract`, Spark's
//!   `from_json` read it) **plus** a `<part>_leaves` `map<string, string>` of its leaves by
//!   dotted path (`encoder.model_name`), strings as themselves and other values as their JSON
//!   text — so the common question (`model_leaves['architecture'] = 'resnet'`) needs no JSON
//!   function at all. A struct per part was rejected: its fields would change from one file to
//!   the next (every hparam a column), and two catalogs could no longer be unioned;
//! - `conflicts` is `list<struct<field, values: list<struct<source, value (JSON text), chosen>>>>`;
//! - `modified` stays the JSON output's string, and `modified_at` adds it as a UTC
//!   `timestamp[us]` when it has the ISO shape ckpt writes (null otherwise).
//!
//! The file's key-value metadata carries [`SCHEMA_VERSION_KEY`] (bumped on any change of a
//! column's name, type or meaning), the ckpt version, and the run's warnings (a JSON array).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, ListArray, MapArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{ArrowError, DataType, Field, Fields, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::entry::CatalogEntry;
#[cfg(test)]
use crate::entry::TOP_FIELDS;

/// The key of the schema version in the file's key-value metadata.
pub const SCHEMA_VERSION_KEY: &str = "ckpt.catalog.schema_version";
/// The schema version this writer writes (see the module doc for what bumps it).
pub const SCHEMA_VERSION: &str = "1";
/// The key of the run's warnings (a JSON array of strings) in the key-value metadata.
pub const WARNINGS_KEY: &str = "ckpt.catalog.warnings";
/// The key of the writing ckpt's version in the key-value metadata.
pub const WRITER_KEY: &str = "ckpt.version";

/// Rows per record batch (and so at most per row group): bounded memory while encoding.
const BATCH_ROWS: usize = 8192;

/// Why the file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// A value the schema's type cannot hold (named by the entry's path and the field).
    #[error("{path}: {field} = {value} does not fit the column's int64")]
    OutOfRange {
        path: String,
        field: &'static str,
        value: u64,
    },
    /// More nested values than Arrow's 32-bit offsets address in one batch.
    #[error("{what}: more than 2^31 values in one batch")]
    TooMany { what: &'static str },
}

/// The columns, in order: what every file this version writes has, rows or not.
pub fn schema() -> Result<SchemaRef, ParquetError> {
    Ok(batch(&[])?.schema())
}

/// `entries` as a Parquet file (snappy-compressed), with the run's `warnings` and the
/// writer's `version` in its key-value metadata.
pub fn to_parquet(
    entries: &[CatalogEntry],
    warnings: &[String],
    version: &str,
) -> Result<Vec<u8>, ParquetError> {
    // Both in the Arrow schema's metadata (what pyarrow shows as `schema.metadata`) and as the
    // file's own key-value metadata (what Parquet readers show: DuckDB's
    // `parquet_kv_metadata`, the parquet crate's `key_value_metadata`).
    let meta = std::collections::HashMap::from([
        (SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_owned()),
        (WRITER_KEY.to_owned(), version.to_owned()),
        (
            WARNINGS_KEY.to_owned(),
            serde_json::to_string(warnings).unwrap_or_else(|_| "[]".to_owned()),
        ),
    ]);
    let mut kv: Vec<KeyValue> = meta
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    kv.sort_by(|a, b| a.key.cmp(&b.key));
    let schema = Arc::new(schema()?.as_ref().clone().with_metadata(meta));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(BATCH_ROWS))
        .set_key_value_metadata(Some(kv))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))?;
    for chunk in entries.chunks(BATCH_ROWS) {
        w.write(&batch(chunk)?.with_schema(schema.clone())?)?;
    }
    w.close()?;
    Ok(out)
}

fn int(path: &str, field: &'static str, v: Option<u64>) -> Result<Option<i64>, ParquetError> {
    v.map(|x| {
        i64::try_from(x).map_err(|_| ParquetError::OutOfRange {
            path: path.to_owned(),
            field,
            value: x,
        })
    })
    .transpose()
}

fn offset(n: usize, what: &'static str) -> Result<i32, ParquetError> {
    i32::try_from(n).map_err(|_| ParquetError::TooMany { what })
}

/// A `map<string, V>` column: the rows' (key, value) pairs, `values` holding every row's
/// values in order, `lens` the number of pairs per row.
fn map_column(
    keys: Vec<String>,
    values: ArrayRef,
    lens: &[usize],
    what: &'static str,
) -> Result<ArrayRef, ParquetError> {
    let key_field = Arc::new(Field::new("key", DataType::Utf8, false));
    let value_field = Arc::new(Field::new("value", values.data_type().clone(), false));
    let entries = StructArray::try_new(
        Fields::from(vec![key_field, value_field]),
        vec![Arc::new(StringArray::from(keys)) as ArrayRef, values],
        None,
    )?;
    let entries_field = Arc::new(Field::new("key_value", entries.data_type().clone(), false));
    let offsets = offsets(lens, what)?;
    Ok(Arc::new(MapArray::try_new(
        entries_field,
        offsets,
        entries,
        None,
        false,
    )?))
}

fn offsets(lens: &[usize], what: &'static str) -> Result<OffsetBuffer<i32>, ParquetError> {
    let mut v = Vec::with_capacity(lens.len() + 1);
    let mut total = 0usize;
    v.push(0i32);
    for l in lens {
        total = total
            .checked_add(*l)
            .ok_or(ParquetError::TooMany { what })?;
        v.push(offset(total, what)?);
    }
    Ok(OffsetBuffer::new(v.into()))
}

/// A string → string map column of the rows' maps.
fn string_map(
    rows: impl Iterator<Item = Vec<(String, String)>>,
    what: &'static str,
) -> Result<ArrayRef, ParquetError> {
    let mut keys = Vec::new();
    let mut vals = Vec::new();
    let mut lens = Vec::new();
    for row in rows {
        lens.push(row.len());
        for (k, v) in row {
            keys.push(k);
            vals.push(v);
        }
    }
    map_column(keys, Arc::new(StringArray::from(vals)), &lens, what)
}

/// A JSON tree's leaves by dotted path: objects are walked, anything else (arrays included)
/// is a leaf — a string as itself, any other value as its compact JSON text.
fn leaves(m: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    fn walk(prefix: String, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(o) if !o.is_empty() => {
                for (k, v) in o {
                    walk(format!("{prefix}.{k}"), v, out);
                }
            }
            Value::String(s) => out.push((prefix, s.clone())),
            other => out.push((prefix, other.to_string())),
        }
    }
    let mut out = Vec::new();
    for (k, v) in m {
        walk(k.clone(), v, &mut out);
    }
    out
}

fn json_text(m: &BTreeMap<String, Value>) -> String {
    serde_json::to_string(m).unwrap_or_else(|_| "{}".to_owned())
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]` (UTC, as ckpt writes `modified`) in microseconds since the
/// epoch; `None` for any other shape.
pub fn parse_modified(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let rest = s.get(19..)?;
    let rest = rest.strip_suffix('Z').unwrap_or(rest);
    let micros = match rest.strip_prefix('.') {
        None if rest.is_empty() => 0,
        None => return None,
        Some(f) if !f.is_empty() && f.len() <= 6 && f.bytes().all(|c| c.is_ascii_digit()) => {
            let v: i64 = f.parse().ok()?;
            v * 10i64.pow(6 - f.len() as u32)
        }
        Some(_) => return None,
    };
    // Days from civil (Howard Hinnant's algorithm, the inverse of `iso_time`'s).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = if mo > 2 { mo - 3 } else { mo + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// One record batch of `entries`: the column order and types are the schema.
fn batch(entries: &[CatalogEntry]) -> Result<RecordBatch, ParquetError> {
    let n = entries.len();
    let strings = |f: &dyn Fn(&CatalogEntry) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, 0);
        for e in entries {
            b.append_option(f(e));
        }
        Arc::new(b.finish())
    };
    let ints = |f: &dyn Fn(&CatalogEntry) -> Result<Option<i64>, ParquetError>| -> Result<ArrayRef, ParquetError> {
        let mut b = Int64Builder::with_capacity(n);
        for e in entries {
            b.append_option(f(e)?);
        }
        Ok(Arc::new(b.finish()))
    };
    let bools = |f: &dyn Fn(&CatalogEntry) -> Option<bool>| -> ArrayRef {
        let mut b = BooleanBuilder::with_capacity(n);
        for e in entries {
            b.append_option(f(e));
        }
        Arc::new(b.finish())
    };

    // metrics: map<string, float64>
    let mut mkeys = Vec::new();
    let mut mvals = Float64Builder::new();
    let mut mlens = Vec::with_capacity(n);
    for e in entries {
        mlens.push(e.metrics.len());
        for (k, v) in &e.metrics {
            mkeys.push(k.clone());
            mvals.append_value(*v);
        }
    }
    let metrics = map_column(mkeys, Arc::new(mvals.finish()), &mlens, "metrics")?;

    let parts = |f: &dyn Fn(&CatalogEntry) -> &BTreeMap<String, Value>,
                 what: &'static str|
     -> Result<(ArrayRef, ArrayRef), ParquetError> {
        let text: ArrayRef = Arc::new(StringArray::from_iter_values(
            entries.iter().map(|e| json_text(f(e))),
        ));
        let flat = string_map(entries.iter().map(|e| leaves(f(e))), what)?;
        Ok((text, flat))
    };
    let (model, model_leaves) = parts(&|e| &e.model, "model")?;
    let (hparams, hparams_leaves) = parts(&|e| &e.hparams, "hparams")?;
    let (data, data_leaves) = parts(&|e| &e.data, "data")?;
    let sources = string_map(
        entries.iter().map(|e| {
            e.sources
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        "sources",
    )?;

    let mut modified_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    for e in entries {
        modified_at.append_option(parse_modified(&e.modified));
    }

    let columns: Vec<(&str, ArrayRef, bool)> = vec![
        ("path", strings(&|e| Some(e.path.as_str())), false),
        ("experiment", strings(&|e| e.experiment.as_deref()), true),
        ("run", strings(&|e| e.run.as_deref()), true),
        ("task", strings(&|e| e.task.as_deref()), true),
        ("format", strings(&|e| e.format.as_deref()), true),
        ("epoch", ints(&|e| Ok(e.epoch))?, true),
        ("global_step", ints(&|e| Ok(e.global_step))?, true),
        (
            "training_phase",
            strings(&|e| e.training_phase.as_deref()),
            true,
        ),
        ("metrics", metrics, false),
        ("monitor", strings(&|e| e.monitor.as_deref()), true),
        ("mode", strings(&|e| e.mode.as_deref()), true),
        ("save_top_k", ints(&|e| Ok(e.save_top_k))?, true),
        ("save_last", bools(&|e| e.save_last), true),
        ("model", model, false),
        ("model_leaves", model_leaves, false),
        ("hparams", hparams, false),
        ("hparams_leaves", hparams_leaves, false),
        ("data", data, false),
        ("data_leaves", data_leaves, false),
        ("params", ints(&|e| int(&e.path, "params", e.params))?, true),
        (
            "tensors",
            ints(&|e| int(&e.path, "tensors", e.tensors))?,
            true,
        ),
        (
            "size_bytes",
            ints(&|e| int(&e.path, "size_bytes", Some(e.size_bytes)))?,
            false,
        ),
        ("modified", strings(&|e| Some(e.modified.as_str())), false),
        ("modified_at", Arc::new(modified_at.finish()), true),
        ("is_best", bools(&|e| Some(e.is_best)), false),
        ("is_last", bools(&|e| Some(e.is_last)), false),
        ("security", strings(&|e| e.security.as_deref()), true),
        (
            "lightning_version",
            strings(&|e| e.lightning_version.as_deref()),
            true,
        ),
        ("sources", sources, false),
        ("conflicts", conflicts(entries)?, false),
        ("error", strings(&|e| e.error.as_deref()), true),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a, nullable)| Field::new(*name, a.data_type().clone(), *nullable))
        .collect();
    let arrays: Vec<ArrayRef> = columns.into_iter().map(|(_, a, _)| a).collect();
    Ok(RecordBatch::try_new(
        Arc::new(arrow_schema::Schema::new(fields)),
        arrays,
    )?)
}

/// `list<struct<field: string, values: list<struct<source: string, value: string (JSON),
/// chosen: bool>>>>`.
fn conflicts(entries: &[CatalogEntry]) -> Result<ArrayRef, ParquetError> {
    let mut per_entry = Vec::with_capacity(entries.len());
    let mut fields = Vec::new();
    let mut per_conflict = Vec::new();
    let mut sources = Vec::new();
    let mut values = Vec::new();
    let mut chosen = Vec::new();
    for e in entries {
        per_entry.push(e.conflicts.len());
        for c in &e.conflicts {
            fields.push(c.field.clone());
            per_conflict.push(c.values.len());
            for v in &c.values {
                sources.push(v.source.clone());
                values.push(v.value.to_string());
                chosen.push(v.chosen);
            }
        }
    }
    let value_struct = StructArray::try_new(
        Fields::from(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, false),
            Field::new("chosen", DataType::Boolean, false),
        ]),
        vec![
            Arc::new(StringArray::from(sources)) as ArrayRef,
            Arc::new(StringArray::from(values)),
            Arc::new(BooleanArray::from(chosen)),
        ],
        None,
    )?;
    let value_list = ListArray::try_new(
        Arc::new(Field::new(
            "element",
            value_struct.data_type().clone(),
            false,
        )),
        offsets(&per_conflict, "conflicts.values")?,
        Arc::new(value_struct),
        None,
    )?;
    let conflict_struct = StructArray::try_new(
        Fields::from(vec![
            Field::new("field", DataType::Utf8, false),
            Field::new("values", value_list.data_type().clone(), false),
        ]),
        vec![
            Arc::new(StringArray::from(fields)) as ArrayRef,
            Arc::new(value_list),
        ],
        None,
    )?;
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new(
            "element",
            conflict_struct.data_type().clone(),
            false,
        )),
        offsets(&per_entry, "conflicts")?,
        Arc::new(conflict_struct),
        None,
    )?))
}

/// The timestamp column's type (documented with the schema).
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_top_level_field_has_a_column_in_order() {
        let s = schema().unwrap();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        let tops: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !n.ends_with("_leaves") && *n != "modified_at")
            .collect();
        assert_eq!(tops, TOP_FIELDS);
        assert_eq!(
            s.field_with_name("modified_at").unwrap().data_type(),
            &timestamp_type()
        );
    }

    #[test]
    fn modified_parses_as_ckpt_writes_it() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_717_171_717_123_456);
        let s = ckpt_meta::sources::names::iso_time(t);
        assert_eq!(parse_modified(&s), Some(1_717_171_717_123_456));
        assert_eq!(parse_modified("1970-01-01T00:00:00"), Some(0));
        assert_eq!(
            parse_modified("2024-02-29T12:00:00.5Z"),
            Some(1_709_208_000_500_000)
        );
        assert_eq!(parse_modified("yesterday"), None);
        assert_eq!(parse_modified(""), None);
        assert_eq!(parse_modified("2024-13-01T00:00:00"), None);
    }

    #[test]
    fn leaves_walk_objects_and_keep_other_values_as_json() {
        let mut m = BTreeMap::new();
        m.insert(
            "encoder".to_owned(),
            serde_json::json!({"model_name": "resnet50", "depth": 50, "x": {"y": null}}),
        );
        m.insert("layers".to_owned(), serde_json::json!([1, 2]));
        assert_eq!(
            leaves(&m),
            vec![
                ("encoder.model_name".to_owned(), "resnet50".to_owned()),
                ("encoder.depth".to_owned(), "50".to_owned()),
                ("encoder.x.y".to_owned(), "null".to_owned()),
                ("layers".to_owned(), "[1,2]".to_owned()),
            ]
        );
    }
}
