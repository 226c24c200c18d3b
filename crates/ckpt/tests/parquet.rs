//! `ckpt catalog --format parquet --output FILE`: the file read back with the parquet crate
//! holds, row for row and field for field, what `--format json` prints for the same command
//! (the examples tree; a tree with a conflict and a checkpoint ckpt cannot read), with the
//! documented column types and the schema version in the key-value metadata.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    Array, BooleanArray, Int64Array, ListArray, MapArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use common::{ckpt, copy_tree, root};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value, json};

/// The file's batches (concatenated by the caller) and its key-value metadata.
fn read(path: &Path) -> (Vec<RecordBatch>, Vec<(String, String)>) {
    let f = std::fs::File::open(path).unwrap();
    let b = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let kv = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|k| (k.key, k.value.unwrap_or_default()))
        .collect();
    let batches = b.build().unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    (batches, kv)
}

fn json_out(args: &[&str]) -> Value {
    let o = ckpt()
        .args(["catalog", "--no-cache", "--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Runs `ckpt catalog --format parquet --output FILE ARGS` and reads the file back.
fn parquet_out(args: &[&str]) -> (Vec<RecordBatch>, Vec<(String, String)>) {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("cat.parquet");
    let o = ckpt()
        .args(["catalog", "--no-cache", "--format", "parquet", "--output"])
        .arg(&file)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty(), "nothing on stdout with --output");
    read(&file)
}

fn map_entries(m: &MapArray, row: usize) -> Vec<(String, arrow_array::ArrayRef, usize)> {
    let entries = m.value(row);
    let keys = entries
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    (0..entries.len())
        .map(|i| (keys.value(i).to_owned(), entries.column(1).clone(), i))
        .collect()
}

/// One cell as the JSON output spells the field.
fn cell(name: &str, col: &dyn Array, row: usize) -> Value {
    if col.is_null(row) {
        return Value::Null;
    }
    let any = col.as_any();
    match col.data_type() {
        DataType::Utf8 => {
            let s = any.downcast_ref::<StringArray>().unwrap().value(row);
            if matches!(name, "model" | "hparams" | "data") {
                serde_json::from_str(s).unwrap()
            } else {
                json!(s)
            }
        }
        DataType::Int64 => json!(any.downcast_ref::<Int64Array>().unwrap().value(row)),
        DataType::Boolean => json!(any.downcast_ref::<BooleanArray>().unwrap().value(row)),
        DataType::Map(..) => {
            let m = any.downcast_ref::<MapArray>().unwrap();
            let mut out = Map::new();
            for (k, vals, i) in map_entries(m, row) {
                out.insert(k, cell("", vals.as_ref(), i));
            }
            Value::Object(out)
        }
        DataType::Float64 => json!(
            any.downcast_ref::<arrow_array::Float64Array>()
                .unwrap()
                .value(row)
        ),
        DataType::List(_) => {
            // conflicts: list<struct<field, values: list<struct<source, value, chosen>>>>
            let l = any.downcast_ref::<ListArray>().unwrap().value(row);
            let s = l.as_any().downcast_ref::<StructArray>().unwrap();
            (0..s.len())
                .map(|i| {
                    let field = s.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                    let vals = s.column(1).as_any().downcast_ref::<ListArray>().unwrap();
                    let vs = vals.value(i);
                    let vs = vs.as_any().downcast_ref::<StructArray>().unwrap();
                    let src = vs.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                    let val = vs.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                    let ch = vs
                        .column(2)
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .unwrap();
                    let values: Vec<Value> = (0..vs.len())
                        .map(|j| {
                            json!({
                                "source": src.value(j),
                                "value": serde_json::from_str::<Value>(val.value(j)).unwrap(),
                                "chosen": ch.value(j),
                            })
                        })
                        .collect();
                    json!({"field": field.value(i), "values": values})
                })
                .collect()
        }
        other => panic!("{name}: unexpected type {other}"),
    }
}

/// Every row of the file as the JSON output's entry (the derived columns checked apart).
fn rows_as_json(batches: &[RecordBatch]) -> Vec<Value> {
    let mut out = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            let mut e = Map::new();
            for (f, col) in b.schema().fields().iter().zip(b.columns()) {
                let name = f.name().as_str();
                if name.ends_with("_leaves") || name == "modified_at" {
                    continue;
                }
                e.insert(name.to_owned(), cell(name, col.as_ref(), row));
            }
            out.push(Value::Object(e));
        }
    }
    out
}

/// The file equals the JSON output, and its derived columns (`*_leaves`, `modified_at`) agree
/// with the fields they derive from.
fn assert_same(json: &Value, batches: &[RecordBatch]) {
    let expected = json["checkpoints"].as_array().unwrap();
    let rows = rows_as_json(batches);
    assert_eq!(rows.len(), expected.len());
    for (r, e) in rows.iter().zip(expected) {
        assert_eq!(r, e, "row of {}", e["path"]);
    }
    let mut i = 0;
    for b in batches {
        let leaves = b
            .column_by_name("model_leaves")
            .unwrap()
            .as_any()
            .downcast_ref::<MapArray>()
            .unwrap();
        let ts = b
            .column_by_name("modified_at")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        for row in 0..b.num_rows() {
            let e = &expected[i];
            i += 1;
            for (k, vals, j) in map_entries(leaves, row) {
                let v = vals
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .value(j);
                let pointer = format!("/model/{}", k.replace('.', "/"));
                let want = e.pointer(&pointer).unwrap_or_else(|| panic!("{pointer}"));
                let want = want
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| want.to_string());
                assert_eq!(v, want, "{pointer}");
            }
            let modified = e["modified"].as_str().unwrap();
            assert_eq!(
                ts.is_valid(row).then(|| ts.value(row)),
                ckpt_catalog::parquet::parse_modified(modified),
                "{modified}"
            );
            if !modified.is_empty() {
                assert!(ts.is_valid(row), "{modified} is ckpt's ISO shape");
            }
        }
    }
}

#[test]
fn parquet_columns_have_the_documented_types_and_version() {
    let (batches, kv) = parquet_out(&["examples"]);
    let schema = batches[0].schema();
    let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
    for n in [
        "path",
        "experiment",
        "run",
        "format",
        "modified",
        "model",
        "error",
    ] {
        assert_eq!(ty(n), DataType::Utf8, "{n}");
    }
    for n in ["epoch", "global_step", "save_top_k", "params", "size_bytes"] {
        assert_eq!(ty(n), DataType::Int64, "{n}");
    }
    for n in ["is_best", "is_last", "save_last"] {
        assert_eq!(ty(n), DataType::Boolean, "{n}");
    }
    assert_eq!(
        ty("modified_at"),
        DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
    );
    let map_value = |n: &str| match ty(n) {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(f) => {
                assert_eq!(f[0].data_type(), &DataType::Utf8);
                f[1].data_type().clone()
            }
            other => panic!("{other}"),
        },
        other => panic!("{n}: {other}"),
    };
    assert_eq!(map_value("metrics"), DataType::Float64);
    for n in ["sources", "model_leaves", "hparams_leaves", "data_leaves"] {
        assert_eq!(map_value(n), DataType::Utf8, "{n}");
    }
    let DataType::List(item) = ty("conflicts") else {
        panic!("conflicts")
    };
    let DataType::Struct(f) = item.data_type() else {
        panic!("conflicts item")
    };
    assert_eq!(f[0].name(), "field");
    assert!(matches!(f[1].data_type(), DataType::List(_)));
    assert!(kv.contains(&(
        "ckpt.catalog.schema_version".to_owned(),
        ckpt_catalog::parquet::SCHEMA_VERSION.to_owned()
    )));
    assert!(kv.iter().any(
        |(k, v)| k == "ckpt.catalog.warnings" && serde_json::from_str::<Vec<String>>(v).is_ok()
    ));
    // The same columns whatever the rows: the writer's schema is the file's.
    assert_eq!(
        schema.fields(),
        ckpt_catalog::parquet::schema().unwrap().fields()
    );
}

#[test]
fn parquet_rows_are_the_json_entries_for_the_examples() {
    let json = json_out(&["examples"]);
    assert!(json["checkpoints"].as_array().unwrap().len() >= 6);
    let (batches, _) = parquet_out(&["examples"]);
    assert_same(&json, &batches);
}

#[test]
fn parquet_follows_filters_sort_and_best_like_json() {
    for args in [
        &["examples/lightning", "--sort", "epoch", "--desc"][..],
        &["examples/lightning", "--filter", "epoch >= 2"],
        &["examples", "--best"],
        &["examples", "--latest"],
    ] {
        let json = json_out(args);
        let (batches, _) = parquet_out(args);
        assert_same(&json, &batches);
    }
}

/// A run whose Hydra config disagrees with the file (a conflict), an unreadable checkpoint
/// (an error entry), and a checkpoint with no metadata at all (empty maps, null columns).
#[test]
fn parquet_rows_carry_conflicts_and_errors() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("outputs");
    copy_tree(
        &root().join("fixtures/outputs/dictconfig"),
        &dir.join("run"),
    );
    let cfg = dir.join("run/.hydra/config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("model_name: mobilenetv3_small_050", "model_name: resnet50"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("broken")).unwrap();
    std::fs::write(
        dir.join("broken/epoch=1.ckpt"),
        b"PK\x03\x04 not a zip at all",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let json = json_out(&[d]);
    let entries = json["checkpoints"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| !e["conflicts"].as_array().unwrap().is_empty()),
        "{json}"
    );
    assert!(entries.iter().any(|e| e["error"].is_string()), "{json}");
    let (batches, _) = parquet_out(&[d]);
    assert_same(&json, &batches);
}

#[test]
fn parquet_without_output_is_refused_in_one_line() {
    let o = ckpt()
        .args(["catalog", "--no-cache", "--format", "parquet", "examples"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--output FILE"), "{err}");
}

/// `--explain` prints for a person: `--output` with it is a usage error, not a silent stdout.
#[test]
fn output_with_explain_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("x.json");
    let o = ckpt()
        .args(["catalog", "--no-cache", "examples", "--explain"])
        .arg("examples/lightning/checkpoints/last.ckpt")
        .arg("--output")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--output") && err.contains("--explain"),
        "{err}"
    );
    assert!(!file.exists());
}

/// `--output` writes the other formats too: the same bytes stdout gets, nothing on stdout;
/// a folder that is not there is an error naming the file, and no file is left.
#[test]
fn output_writes_every_format_to_a_file() {
    let t = tempfile::tempdir().unwrap();
    for format in ["json", "jsonl", "csv", "table"] {
        let stdout = ckpt()
            .args(["catalog", "--no-cache", "--format", format, "examples"])
            .output()
            .unwrap();
        assert!(stdout.status.success());
        let file = t.path().join(format!("cat.{format}"));
        let o = ckpt()
            .args([
                "catalog",
                "--no-cache",
                "--format",
                format,
                "examples",
                "-o",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout.is_empty());
        assert_eq!(std::fs::read(&file).unwrap(), stdout.stdout, "{format}");
    }
    let missing = t.path().join("no/such/dir/cat.parquet");
    let o = ckpt()
        .args([
            "catalog",
            "--no-cache",
            "--format",
            "parquet",
            "examples",
            "--output",
        ])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot write") && err.contains("cat.parquet"),
        "{err}"
    );
    assert!(!missing.exists());
    assert_eq!(
        std::fs::read_dir(t.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .count(),
        0,
        "no temporary file left"
    );
}

/// The type as the README's table spells it.
fn spelled(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "string".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float64 => "float64".into(),
        DataType::Boolean => "bool".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => format!("timestamp[us, {tz}]"),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(f) => format!(
                "map<{}, {}>",
                spelled(f[0].data_type()),
                spelled(f[1].data_type())
            ),
            other => panic!("{other}"),
        },
        DataType::List(item) => format!("list<{}>", spelled(item.data_type())),
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), spelled(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => panic!("no spelling for {other}"),
    }
}

/// The README's column table is the writer's schema: names, order, types, nullability.
#[test]
fn readme_documents_the_parquet_schema() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("| column | type | what |").unwrap();
    let documented: Vec<(String, String)> = readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect();
    let schema = ckpt_catalog::parquet::schema().unwrap();
    let actual: Vec<(String, String)> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = format!("`{}`", spelled(f.data_type()));
            let t = if f.is_nullable() {
                t
            } else {
                format!("{t} not null")
            };
            (f.name().clone(), t)
        })
        .collect();
    assert_eq!(documented, actual);
}
