//! Each reader on the fixtures `scripts/make_curves_fixtures.py` made (real Lightning and
//! torch outputs where the library was at hand), compared exactly with what the reference
//! readers (Python's `csv`, TensorBoard's `EventAccumulator`) made of the same files; then
//! hostile and truncated inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ckpt_curves::{
    Axis, Folder, Limits, Source, SourceKind, csv, mlflow, read, report, sources_in, tfevents,
    wandb,
};
use serde_json::Value;

type Got = (
    Vec<(String, Axis, Vec<(i64, f64)>)>,
    Vec<ckpt_curves::Warning>,
);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected(v: &Value) -> BTreeMap<String, Vec<(i64, f64)>> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, pts)| {
            let pts = pts
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    // Written as text (Python's repr): read exactly.
                    let v = p[1].as_str().unwrap().parse::<f64>().unwrap();
                    (p[0].as_i64().unwrap(), v)
                })
                .collect();
            (k.clone(), pts)
        })
        .collect()
}

fn as_map(got: &Got) -> BTreeMap<String, Vec<(i64, f64)>> {
    got.0
        .iter()
        .map(|(m, _, p)| (m.clone(), p.clone()))
        .collect()
}

fn warnings(got: &Got) -> Vec<String> {
    got.1.iter().map(ToString::to_string).collect()
}

fn load(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn lightning_csv_matches_pythons_csv_module() {
    let dir = fixtures().join("lightning");
    let exp = load(&dir.join("expected.json"));
    let got = csv::read(&dir.join("version_0/metrics.csv"), &Limits::default());
    assert_eq!(as_map(&got), expected(&exp["csv"]));
    assert!(got.0.iter().all(|s| s.1 == Axis::Step));
    assert!(got.1.is_empty(), "{:?}", warnings(&got));
}

#[test]
fn tensorboard_matches_event_accumulator_across_a_resume() {
    let dir = fixtures().join("lightning");
    let exp = load(&dir.join("expected.json"));
    let got = tfevents::read_dir(&dir.join("version_0"), &Limits::default());
    // Two event files (the resumed run wrote a second one), merged; the NaN of val_weird
    // left out with a warning.
    assert_eq!(as_map(&got), expected(&exp["tensorboard"]));
    assert_eq!(warnings(&got).len(), 1, "{:?}", warnings(&got));
    assert!(warnings(&got)[0].ends_with("val_weird: 1 NaN or infinite values left out"));
}

#[test]
fn tensorboard_tensor_scalars_and_non_scalars() {
    let dir = fixtures().join("tb_tensor");
    let exp = load(&dir.join("expected.json"));
    let got = tfevents::read_dir(&dir, &Limits::default());
    // new_style float and double tensors, simple values; the histogram and text left out.
    assert_eq!(as_map(&got), expected(&exp));
    assert!(got.1.is_empty(), "{:?}", warnings(&got));
}

#[test]
fn mlflow_file_store() {
    let got = mlflow::read(&fixtures().join("mlflow/metrics"), &Limits::default());
    let m = as_map(&got);
    assert_eq!(
        m["val/loss"],
        vec![(2, 1.2), (5, 1.1), (11, 0.9)],
        "the NaN at step 8 left out"
    );
    assert_eq!(m["val/acc"], vec![(2, 0.5), (5, 0.6), (8, 0.7), (11, 0.75)]);
    assert_eq!(m["epoch"], vec![(2, 0.0), (5, 1.0), (8, 2.0), (11, 3.0)]);
    assert_eq!(m["old_style"], vec![(0, 3.5), (1, 4.5)]);
    let axis: BTreeMap<&str, Axis> = got.0.iter().map(|s| (s.0.as_str(), s.1)).collect();
    assert_eq!(axis["old_style"], Axis::Row);
    assert_eq!(axis["val/acc"], Axis::Step);
    assert_eq!(
        warnings(&got),
        vec![format!(
            "{}: val/loss: 1 NaN or infinite values left out",
            fixtures().join("mlflow/metrics").display()
        )]
    );
}

#[test]
fn wandb_history_on_the_global_step() {
    let dir = fixtures().join("wandb");
    let exp = expected(&load(&dir.join("expected.json")));
    let run = dir.join("offline-run-20261122_064815-abcd1234");
    let got = wandb::read(&run, &Limits::default());
    let mut m = as_map(&got);
    // The record spanning two blocks: 1,800 filler metrics at step 20.
    let fillers: Vec<String> = m
        .keys()
        .filter(|k| k.starts_with("filler/"))
        .cloned()
        .collect();
    assert_eq!(fillers.len(), 1800);
    for (i, k) in fillers.iter().enumerate() {
        assert_eq!(m[k], vec![(20, i as f64 + 0.5)], "{k}");
        m.remove(k);
    }
    assert_eq!(m, exp);
    assert!(!m.contains_key("trainer/global_step") && !m.contains_key("_step"));
    assert_eq!(
        warnings(&got),
        vec![format!(
            "{}: val/loss: 1 NaN or infinite values left out",
            run.display()
        )]
    );
}

#[test]
fn wandb_summary_when_there_is_no_history() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run-20261122_064815-x");
    std::fs::create_dir_all(run.join("files")).unwrap();
    std::fs::copy(
        fixtures().join("wandb/offline-run-20261122_064815-abcd1234/files/wandb-summary.json"),
        run.join("files/wandb-summary.json"),
    )
    .unwrap();
    let got = wandb::read(&run, &Limits::default());
    assert_eq!(as_map(&got)["val/acc"], vec![(5, 0.7)]);
    assert_eq!(
        warnings(&got),
        vec![format!(
            "{}: no history in the run log: the summary's last values only",
            run.display()
        )]
    );
}

#[test]
fn json_reports_on_the_epoch_axis() {
    let got = report::read(&fixtures().join("reports"), &Limits::default());
    let m = as_map(&got);
    assert_eq!(
        m["train_loss"],
        vec![(0, 0.9), (1, 0.7), (2, 0.6), (3, 0.55)]
    );
    // The history's value at the best epoch and best_val_f1 agree: one point there.
    assert_eq!(m["val_f1"], vec![(0, 0.4), (1, 0.5), (2, 0.612), (3, 0.6)]);
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(got.0.iter().all(|s| s.1 == Axis::Epoch));
    assert!(got.1.is_empty());
}

#[test]
fn sources_of_each_folder_and_read_together() {
    let f = fixtures();
    let s = sources_in(Folder::Lightning, &f.join("lightning/version_0"));
    assert_eq!(
        s,
        vec![
            Source {
                kind: SourceKind::LightningCsv,
                path: f.join("lightning/version_0/metrics.csv")
            },
            Source {
                kind: SourceKind::Tensorboard,
                path: f.join("lightning/version_0")
            },
        ]
    );
    let c = read(s, &Limits::default());
    assert_eq!(c.series.iter().filter(|s| s.source == 0).count(), 5);
    assert_eq!(c.series.iter().filter(|s| s.source == 1).count(), 5);
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["sources"][0]["kind"], "lightning-csv");
    assert_eq!(json["sources"][1]["kind"], "tensorboard");
    assert_eq!(json["series"][0]["x"], "step");
    assert!(json["warnings"][0].as_str().unwrap().contains("val_weird"));
    assert_eq!(
        sources_in(Folder::Mlflow, &f.join("mlflow"))[0].kind,
        SourceKind::Mlflow
    );
    assert_eq!(
        sources_in(Folder::Reports, &f.join("reports"))[0].kind,
        SourceKind::JsonReport
    );
    assert!(sources_in(Folder::Reports, &f.join("mlflow")).is_empty());
    assert!(sources_in(Folder::Lightning, &f.join("nothing")).is_empty());
}

#[test]
fn run_budget_thins_series_in_proportion() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("metrics.csv");
    let mut text = String::from("step,a,b\n");
    for i in 0..3000 {
        text.push_str(&format!("{i},{i},{}\n", 2 * i));
    }
    std::fs::write(&p, text).unwrap();
    let limits = Limits {
        max_points_run: 1000,
        ..Limits::default()
    };
    let c = read(
        vec![Source {
            kind: SourceKind::LightningCsv,
            path: p,
        }],
        &limits,
    );
    for s in &c.series {
        assert_eq!(s.points.len(), 500);
        assert_eq!(s.points[0].0, 0);
        assert_eq!(s.points[499].0, 2999);
    }
}

// ---------------------------------------------------------------------------------------
// CSV: the cases a real file has and hostile ones

fn csv_text(text: &str) -> Got {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("metrics.csv");
    std::fs::write(&p, text).unwrap();
    let got = csv::read(&p, &Limits::default());
    // Warnings name the file: strip the temporary folder for the assertions.
    let w = got
        .1
        .into_iter()
        .map(|mut w| {
            w.path = PathBuf::from(w.path.file_name().unwrap());
            w
        })
        .collect();
    (got.0, w)
}

#[test]
fn csv_sparse_columns_resumed_rows_and_non_finite_cells() {
    // A resumed run (older CSVLogger) appended rows from step 4 again; `nan`, `inf` and
    // empty cells; a quoted metric name with a comma; CRLF endings.
    let got = csv_text(
        "epoch,step,train_loss,\"val,loss\",val_acc\r\n\
         0,1,0.9,,\r\n\
         0,4,,0.8,nan\r\n\
         1,6,0.7,,\r\n\
         1,9,,inf,0.6\r\n\
         1,4,,0.75,0.55\r\n\
         1,9,,0.5,0.65\r\n",
    );
    let m = as_map(&got);
    assert_eq!(m["train_loss"], vec![(1, 0.9), (6, 0.7)]);
    assert_eq!(m["val,loss"], vec![(4, 0.75), (9, 0.5)]);
    assert_eq!(m["val_acc"], vec![(4, 0.55), (9, 0.65)]);
    assert_eq!(m["epoch"], vec![(1, 0.0), (4, 1.0), (6, 1.0), (9, 1.0)]);
    assert_eq!(
        warnings(&got),
        vec![
            "metrics.csv: val,loss: 1 NaN or infinite values left out",
            "metrics.csv: val_acc: 1 NaN or infinite values left out",
        ]
    );
}

#[test]
fn csv_without_step_is_on_the_row_axis() {
    let got = csv_text("loss,acc\n1.0,0.1\n0.5,\n,0.3\n");
    assert_eq!(
        got.0[0],
        ("loss".into(), Axis::Row, vec![(0, 1.0), (1, 0.5)])
    );
    assert_eq!(
        got.0[1],
        ("acc".into(), Axis::Row, vec![(0, 0.1), (2, 0.3)])
    );
}

#[test]
fn csv_garbage_gives_warnings_with_lines() {
    let got = csv_text(
        "epoch,step,loss\n\
         0,1,0.5\n\
         epoch,step,loss\n\
         0,,0.4\n\
         0,2,tensor(0.3)\n\
         \u{1}\u{2}garbage without commas\n\
         0,3,0.2,extra,cells\n",
    );
    assert_eq!(as_map(&got)["loss"], vec![(1, 0.5), (3, 0.2)]);
    assert_eq!(
        warnings(&got),
        vec![
            "metrics.csv: line 4: no step: skipped",
            "metrics.csv: line 5: column \"loss\": \"tensor(0.3)\" is not a number",
            "metrics.csv: line 6: no step: skipped",
        ]
    );
    let got = csv_text("");
    assert_eq!(warnings(&got), vec!["metrics.csv: no header line"]);
    let mut bin = b"step,x\n1,2\n".to_vec();
    bin.extend_from_slice(&[0xff, 0xfe, b'\n', b'3', b',', b'4', b'\n']);
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("m.csv");
    std::fs::write(&p, bin).unwrap();
    let got = csv::read(&p, &Limits::default());
    assert_eq!(as_map(&got)["x"], vec![(1, 2.0), (3, 4.0)]);
    assert!(warnings(&got)[0].ends_with("m.csv: line 3: not UTF-8: skipped"));
}

#[test]
fn csv_bounds_line_length_and_file_size() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("metrics.csv");
    let mut text = String::from("step,x\n1,1\n");
    text.push_str(&"9".repeat(5000));
    text.push_str("\n2,2\n3,3\n");
    std::fs::write(&p, &text).unwrap();
    let limits = Limits {
        max_record_bytes: 1000,
        max_file_bytes: text.len() as u64 - 2,
        ..Limits::default()
    };
    let got = csv::read(&p, &limits);
    assert_eq!(as_map(&got)["x"], vec![(1, 1.0), (2, 2.0)]);
    let w = warnings(&got);
    assert!(w[0].ends_with(&format!(
        "metrics.csv: larger than {} bytes: only the first {} bytes are read",
        text.len() - 2,
        text.len() - 2
    )));
    assert!(w[1].ends_with("metrics.csv: line 3: longer than 1000 bytes: skipped"));
    // The row cut by the budget (`3,3` read as `3,`) is not taken for a row.
    assert!(
        w[2].ends_with("metrics.csv: line 5: no line end (cut short, or being written): skipped")
    );
    assert_eq!(w.len(), 3);
}

#[test]
fn csv_fifo_is_not_opened() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("metrics.csv");
    let st = std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    let started = Instant::now();
    let got = csv::read(&p, &Limits::default());
    assert!(got.0.is_empty());
    assert!(warnings(&got)[0].ends_with("metrics.csv: not a regular file"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------
// TensorBoard: hostile framing

fn tb_copy() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let src = fixtures().join("tb_tensor");
    let f = std::fs::read_dir(&src)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("events.out"))
        .unwrap()
        .path();
    let bytes = std::fs::read(&f).unwrap();
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("events.out.tfevents.1.test");
    (t, p, bytes)
}

/// Byte offsets of each record (length field) of a TFRecord stream.
fn record_offsets(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 12 <= b.len() {
        out.push(i);
        let n = u64::from_le_bytes(b[i..i + 8].try_into().unwrap()) as usize;
        i += 12 + n + 4;
    }
    out
}

fn tb_read(p: &Path, bytes: &[u8]) -> Got {
    std::fs::write(p, bytes).unwrap();
    tfevents::read_file(p, &Limits::default())
}

#[test]
fn tensorboard_bad_data_crc_skips_one_record() {
    let (_t, p, mut b) = tb_copy();
    let offs = record_offsets(&b);
    assert!(offs.len() > 10);
    // Flip a byte inside the data of record 3.
    b[offs[3] + 12] ^= 0xff;
    let got = tb_read(&p, &b);
    assert_eq!(
        warnings(&got),
        vec![format!(
            "{}: record 3 (byte {}): CRC mismatch in the record's data",
            p.display(),
            offs[3]
        )]
    );
    // Only what record 3 held is missing: the rest is there.
    assert!(!got.0.is_empty());
}

#[test]
fn tensorboard_bad_length_crc_stops_the_file() {
    let (_t, p, mut b) = tb_copy();
    let offs = record_offsets(&b);
    b[offs[5] + 8] ^= 0x01;
    let got = tb_read(&p, &b);
    assert_eq!(
        warnings(&got),
        vec![format!(
            "{}: record 5 (byte {}): CRC mismatch in the record's length",
            p.display(),
            offs[5]
        )]
    );
}

#[test]
fn tensorboard_truncated_last_record() {
    let (_t, p, b) = tb_copy();
    let cut = b.len() - 3;
    let got = tb_read(&p, &b[..cut]);
    let w = warnings(&got);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("truncated:"), "{w:?}");
    let full = tfevents::read_file(
        &fixtures().join("tb_tensor").join(p.file_name().unwrap()),
        &Limits::default(),
    );
    let _ = full;
    // Everything but the last record is read.
    assert!(!got.0.is_empty());
}

#[test]
fn tensorboard_huge_claimed_length_allocates_nothing() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("events.out.tfevents.0.x");
    for claimed in [u64::MAX, 1 << 40, 1 << 30] {
        let len = claimed.to_le_bytes();
        let mut b = len.to_vec();
        b.extend_from_slice(&tfevents::masked_crc(&len).to_le_bytes());
        b.extend_from_slice(b"only a few bytes");
        let started = Instant::now();
        let got = tb_read(&p, &b);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            warnings(&got),
            vec![format!(
                "{}: record 0 (byte 0): claims {claimed} bytes, more than the {} allowed",
                p.display(),
                16u64 << 20
            )]
        );
    }
    // Within the budget but more than the file holds.
    let len = 1000u64.to_le_bytes();
    let mut b = len.to_vec();
    b.extend_from_slice(&tfevents::masked_crc(&len).to_le_bytes());
    b.extend_from_slice(b"short");
    let got = tb_read(&p, &b);
    assert_eq!(
        warnings(&got),
        vec![format!(
            "{}: record 0 (byte 0): truncated: 1004 bytes needed, 5 left",
            p.display()
        )]
    );
}

#[test]
fn tensorboard_garbage_protobuf_is_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("events.out.tfevents.0.x");
    // A record whose data is not an Event: a length-delimited field running past the end.
    let data = [0x2a, 0xff, 0x01, 0x00];
    let len = (data.len() as u64).to_le_bytes();
    let mut b = len.to_vec();
    b.extend_from_slice(&tfevents::masked_crc(&len).to_le_bytes());
    b.extend_from_slice(&data);
    b.extend_from_slice(&tfevents::masked_crc(&data).to_le_bytes());
    let got = tb_read(&p, &b);
    let w = warnings(&got);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].starts_with(&format!(
            "{}: record 0 (byte 0): not a valid tensorflow.Event message:",
            p.display()
        )),
        "{w:?}"
    );
}

#[test]
fn tensorboard_random_bytes_end_quickly() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("events.out.tfevents.0.x");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let b: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let started = Instant::now();
    let got = tb_read(&p, &b);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(got.0.is_empty());
    assert!(warnings(&got)[0].contains("CRC mismatch in the record's length"));
}

// ---------------------------------------------------------------------------------------
// W&B: hostile framing

fn wandb_copy() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let src = fixtures().join("wandb/offline-run-20261122_064815-abcd1234/run-abcd1234.wandb");
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("offline-run-20261122_064815-abcd1234");
    std::fs::create_dir_all(&run).unwrap();
    (t, run, std::fs::read(src).unwrap())
}

fn wandb_read(run: &Path, bytes: &[u8]) -> Got {
    std::fs::write(run.join("run-abcd1234.wandb"), bytes).unwrap();
    wandb::read(run, &Limits::default())
}

#[test]
fn wandb_bad_crc_skips_the_record() {
    let (_t, run, mut b) = wandb_copy();
    // The first record's data (after the 7-byte file header and its 7-byte header).
    b[14] ^= 0xff;
    let got = wandb_read(&run, &b);
    let w = warnings(&got);
    assert_eq!(
        w[0],
        format!(
            "{}: record 0 (byte 7): CRC mismatch in the record's data",
            run.join("run-abcd1234.wandb").display()
        )
    );
    assert!(as_map(&got).contains_key("val/acc"));
}

#[test]
fn wandb_truncated_and_bad_header() {
    let (_t, run, b) = wandb_copy();
    // Cut inside the record spanning two blocks: its first half is dropped, with a warning.
    let got = wandb_read(&run, &b[..40_000]);
    let m = as_map(&got);
    assert!(m.contains_key("val/acc") && !m.keys().any(|k| k.starts_with("filler/")));
    assert!(
        warnings(&got).iter().any(|w| w.contains("truncated")),
        "{:?}",
        warnings(&got)
    );
    // Not a W&B log at all: a warning, then the summary.
    std::fs::create_dir_all(run.join("files")).unwrap();
    std::fs::write(
        run.join("files/wandb-summary.json"),
        "{\"acc\": 1.5, \"_step\": 3}",
    )
    .unwrap();
    let got = wandb_read(&run, b"PK\x03\x04 not a wandb log");
    assert_eq!(as_map(&got)["acc"], vec![(3, 1.5)]);
    let w = warnings(&got);
    assert_eq!(
        w[0],
        format!(
            "{}: record 0 (byte 0): not a W&B run log (bad file header)",
            run.join("run-abcd1234.wandb").display()
        )
    );
    assert!(w[1].ends_with("the summary's last values only"));
    // A summary that is not JSON.
    std::fs::write(run.join("files/wandb-summary.json"), "{nope").unwrap();
    let got = wandb_read(&run, b"");
    assert!(got.0.is_empty());
    assert!(warnings(&got).iter().any(|w| w.contains("not JSON")));
}

#[test]
fn wandb_length_past_its_block_resynchronizes() {
    let (_t, run, mut b) = wandb_copy();
    // The first record claims 65,535 bytes: more than a block holds.
    b[11] = 0xff;
    b[12] = 0xff;
    let started = Instant::now();
    let got = wandb_read(&run, &b);
    assert!(started.elapsed() < Duration::from_secs(1));
    let w = warnings(&got);
    assert!(
        w[0].ends_with("record 0 (byte 7): claims 65535 bytes, more than the 32754 allowed"),
        "{w:?}"
    );
    // The next block's records (the second half of the big row: a LAST with no FIRST) are
    // reported, and whatever follows is read.
    assert!(w.iter().any(|w| w.contains("out of place")), "{w:?}");
}

#[test]
fn wandb_random_bytes_after_the_header() {
    let (_t, run, b) = wandb_copy();
    let mut x: u64 = 42;
    let mut bad = b[..7].to_vec();
    bad.extend((0..200_000).map(|_| {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (x >> 33) as u8
    }));
    let started = Instant::now();
    let got = wandb_read(&run, &bad);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(got.0.is_empty());
    assert!(!got.1.is_empty());
}

// ---------------------------------------------------------------------------------------
// MLflow and reports: hostile

#[test]
fn mlflow_garbage_lines_and_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("metrics");
    std::fs::create_dir_all(m.join("val")).unwrap();
    std::fs::write(m.join("loss"), "1 0.5 0\nnot a line\n2 0.4 x\n3 0.3 2\n").unwrap();
    std::fs::write(t.path().join("outside"), "1 9.0 0\n").unwrap();
    std::os::unix::fs::symlink(t.path().join("outside"), m.join("val/leak")).unwrap();
    let got = mlflow::read(&m, &Limits::default());
    let map = as_map(&got);
    assert_eq!(map["loss"], vec![(0, 0.5), (2, 0.3)]);
    assert!(!map.contains_key("val/leak"), "a symlink is not followed");
    let w = warnings(&got);
    assert!(
        w[0].ends_with("loss: line 2: column \"value\": \"not a line\" is not a number"),
        "{w:?}"
    );
    assert!(
        w[1].ends_with("loss: line 3: column \"step\": \"x\" is not a number"),
        "{w:?}"
    );
}

#[test]
fn reports_not_json_or_too_large() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("training_summary.json"), "{\"best_epoch\": ").unwrap();
    std::fs::write(
        t.path().join("minimal_logging.json"),
        format!("{{\"x\": \"{}\"}}", "a".repeat(2000)),
    )
    .unwrap();
    let limits = Limits {
        max_record_bytes: 1000,
        ..Limits::default()
    };
    let got = report::read(t.path(), &limits);
    assert!(got.0.is_empty());
    let w = warnings(&got);
    assert!(w[0].contains("training_summary.json: not JSON"), "{w:?}");
    assert!(
        w[1].contains("minimal_logging.json: larger than 1000 bytes"),
        "{w:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The reference corpus (real wandb 0.31, tensorboard, MLflow outputs), when present.

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("CKPT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/data")
        });
    dir.join("loggers").is_dir().then_some(dir)
}

#[test]
#[ignore = "needs ../shared/corpus (run by .ci/run when present)"]
fn corpus_loggers() {
    let c = corpus().expect("corpus not found (set CKPT_CORPUS)");
    let l = Limits::default();
    // W&B 0.31 offline run written by Lightning's WandbLogger: val/loss, val/acc, epoch on
    // trainer/global_step (2, 5, 8).
    let run = std::fs::read_dir(c.join("loggers/wandb"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("offline-run-"))
        .unwrap()
        .path();
    let got = wandb::read(&run, &l);
    assert!(got.1.is_empty(), "{:?}", warnings(&got));
    let m = as_map(&got);
    assert_eq!(
        m["val/loss"],
        vec![
            (2, 1.2080845832824707),
            (5, 1.147918462753296),
            (8, 1.1004608869552612)
        ]
    );
    assert_eq!(
        m["val/acc"],
        vec![(2, 0.5), (5, 0.6000000238418579), (8, 0.699999988079071)]
    );
    assert_eq!(m["epoch"], vec![(2, 0.0), (5, 1.0), (8, 2.0)]);
    // TensorBoard (tensorboard's own writer, via Lightning's TensorBoardLogger).
    let got = tfevents::read_dir(&c.join("loggers/tb_logs/clf/version_0"), &l);
    assert!(got.1.is_empty(), "{:?}", warnings(&got));
    let m = as_map(&got);
    assert_eq!(
        m["val/acc"].iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![2, 5, 8]
    );
    assert_eq!(m["val/acc"][0].1, 0.5);
    assert_eq!(m["hp_metric"], vec![(0, -1.0)]);
    // MLflow's file store.
    let mlruns = c.join("loggers/mlruns");
    let mut metrics = Vec::new();
    for e in std::fs::read_dir(&mlruns).unwrap().flatten() {
        for r in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
            if r.path().join("metrics").is_dir() {
                metrics.push(r.path().join("metrics"));
            }
        }
    }
    assert_eq!(metrics.len(), 1);
    let got = mlflow::read(&metrics[0], &l);
    assert!(got.1.is_empty(), "{:?}", warnings(&got));
    let m = as_map(&got);
    assert_eq!(
        m["val/acc"].iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![2, 5, 8]
    );
    // Lightning CSVLogger.
    let got = csv::read(
        &c.join("lightning/lightning_logs/version_0/metrics.csv"),
        &l,
    );
    assert!(got.1.is_empty(), "{:?}", warnings(&got));
    assert!(!got.0.is_empty());
}

#[test]
fn a_source_of_many_files_is_bounded_as_a_whole() {
    // Two copies of the Lightning event files: with a budget of one file's size, the
    // second file is not read.
    let src = fixtures().join("lightning/version_0");
    let t = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("events.out") {
            std::fs::copy(e.path(), t.path().join(e.file_name())).unwrap();
            sizes.push(e.metadata().unwrap().len());
        }
    }
    sizes.sort();
    assert_eq!(sizes.len(), 2);
    let limits = Limits {
        max_file_bytes: 905,
        ..Limits::default()
    };
    let got = tfevents::read_dir(t.path(), &limits);
    let w = warnings(&got);
    assert!(
        w.iter().any(|w| w
            .ends_with("its files hold more than 905 bytes together: the later ones are not read")),
        "{w:?}"
    );
    // Only the first run's steps (up to 9): the resumed run's 11, 13, 14 are not there.
    assert!(as_map(&got)["epoch"].iter().all(|p| p.0 <= 9));
    // MLflow likewise.
    let m = fixtures().join("mlflow/metrics");
    let limits = Limits {
        max_file_bytes: 100,
        ..Limits::default()
    };
    let got = mlflow::read(&m, &limits);
    assert!(
        warnings(&got)
            .iter()
            .any(|w| w.contains("more than 100 bytes together"))
    );
    assert!(as_map(&got).len() < 4);
}
