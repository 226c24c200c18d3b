//! Properties: what a writer puts in an event file or a W&B log reads back exactly; any
//! bytes at all give warnings, never a panic, in bounded time.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use prost::Message as _;

use crate::tfevents::{Event, Summary, SummaryValue, masked_crc};
use crate::wandb::{HistoryItem, HistoryRecord, Record, record_crc};
use crate::{Limits, csv, tfevents, wandb};

fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = len.to_vec();
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// W&B's framing of whole records: 32 KiB blocks, FULL/FIRST/MIDDLE/LAST fragments.
fn leveldb_log(records: &[Vec<u8>]) -> Vec<u8> {
    const BLOCK: usize = 32 * 1024;
    let mut out = b":W&B".to_vec();
    out.extend_from_slice(&0xBEE1u16.to_le_bytes());
    out.push(0);
    for r in records {
        let mut rest: &[u8] = r;
        let mut first = true;
        loop {
            let left = BLOCK - out.len() % BLOCK;
            if left < 7 {
                out.extend(std::iter::repeat_n(0u8, left));
                continue;
            }
            let room = left - 7;
            let (part, more) = if rest.len() <= room {
                (rest, false)
            } else {
                (&rest[..room], true)
            };
            let kind = match (first, more) {
                (true, false) => 1,
                (true, true) => 2,
                (false, true) => 3,
                (false, false) => 4,
            };
            out.extend_from_slice(&record_crc(kind, part).to_le_bytes());
            out.extend_from_slice(&(part.len() as u16).to_le_bytes());
            out.push(kind);
            out.extend_from_slice(part);
            rest = &rest[part.len()..];
            first = false;
            if !more {
                break;
            }
        }
    }
    out
}

/// Per tag, sorted by step, the last value written for a step.
fn expected(points: &[(u8, i64, f32)]) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut m: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for &(tag, step, v) in points {
        m.entry(format!("t{tag}"))
            .or_default()
            .insert(step, f64::from(v));
    }
    m.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn event_files_read_back(points in proptest::collection::vec((0u8..4, -5i64..50, -1e6f32..1e6), 0..200)) {
        let mut bytes = Vec::new();
        for &(tag, step, v) in &points {
            let ev = Event {
                wall_time: 0.0,
                step,
                summary: Some(Summary { value: vec![SummaryValue {
                    tag: format!("t{tag}"),
                    simple_value: Some(v),
                    tensor: None,
                    metadata: None,
                }] }),
            };
            bytes.extend(tfrecord(&ev.encode_to_vec()));
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.out.tfevents.0.p");
        std::fs::write(&p, bytes).unwrap();
        let (series, w) = tfevents::read_file(&p, &Limits::default());
        prop_assert!(w.is_empty());
        let got: BTreeMap<String, Vec<(i64, f64)>> = series.into_iter().map(|(m, _, p)| (m, p)).collect();
        prop_assert_eq!(got, expected(&points));
    }

    #[test]
    fn wandb_logs_read_back(rows in proptest::collection::vec((0u8..4, 0i64..50, -1e6f32..1e6, 0usize..3000), 0..60)) {
        // Each row: one metric at a step, padded with a long ignored key so records cross
        // block boundaries as FIRST/MIDDLE/LAST fragments.
        let records: Vec<Vec<u8>> = rows.iter().map(|&(tag, step, v, pad)| {
            let item = |k: &str, v: String| HistoryItem { key: k.into(), nested_key: vec![], value_json: v };
            Record {
                num: 0,
                history: Some(HistoryRecord {
                    item: vec![
                        item(&format!("t{tag}"), format!("{}", f64::from(v))),
                        item("_step", step.to_string()),
                        item("_pad", format!("\"{}\"", "x".repeat(pad * 20))),
                    ],
                    step: None,
                }),
                metric: None,
            }.encode_to_vec()
        }).collect();
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run-20260101_000000-p");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("run-p.wandb"), leveldb_log(&records)).unwrap();
        let (series, w) = wandb::read(&run, &Limits::default());
        prop_assert!(w.is_empty(), "{:?}", w);
        let got: BTreeMap<String, Vec<(i64, f64)>> = series.into_iter().map(|(m, _, p)| (m, p)).collect();
        let pts: Vec<(u8, i64, f32)> = rows.iter().map(|&(t, s, v, _)| (t, s, v)).collect();
        prop_assert_eq!(got, expected(&pts));
    }

    #[test]
    fn any_bytes_are_warnings_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let dir = tempfile::tempdir().unwrap();
        let l = Limits::default();
        let p = dir.path().join("events.out.tfevents.0.x");
        std::fs::write(&p, &bytes).unwrap();
        let _ = tfevents::read_file(&p, &l);
        let run = dir.path().join("run-20260101_000000-x");
        std::fs::create_dir(&run).unwrap();
        let mut log = b":W&B\xe1\xbe\x00".to_vec();
        log.extend_from_slice(&bytes);
        std::fs::write(run.join("run-x.wandb"), &log).unwrap();
        let _ = wandb::read(&run, &l);
        let c = dir.path().join("metrics.csv");
        std::fs::write(&c, &bytes).unwrap();
        let _ = csv::read(&c, &l);
    }
}
