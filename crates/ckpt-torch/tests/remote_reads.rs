//! The readers against the real remote source (ckpt-io's `RemoteObject`: block cache,
//! read-ahead, prefetch, If-Match) over an in-memory bucket that counts requests: what the
//! hints buy in requests per checkpoint (issue 15 §2.3), with no server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use ckpt_io::Scheme;
use ckpt_io::remote::testing::CountingStore;
use ckpt_torch::{Checkpoint, Options};

/// A Lightning checkpoint (ModelCheckpoint scores mid-file, optimizer state) of about
/// `bytes` bytes.
fn lightning(bytes: u64) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.ckpt");
    ckpt_test_support::write_lightning_checkpoint(
        &p,
        &ckpt_test_support::model_tensors(8, bytes / 3),
    )
    .unwrap();
    std::fs::read(&p).unwrap()
}

/// Scan, open and summarize as the catalog does; the summary's scores are read.
fn catalog_like(path: &Path, known: Option<&ckpt_io::Identity>) {
    let limits = ckpt_torch::scan::ScanLimits::default();
    let opts = Options::default();
    let (scan, ck) = match known {
        Some(id) => Checkpoint::scan_and_open_known(path, id, &limits, &opts),
        None => Checkpoint::scan_and_open(path, &limits, &opts),
    };
    assert!(scan.problems.is_empty(), "{:?}", scan.problems);
    let ck = ck.unwrap();
    let s = ck.summary_with(Vec::new());
    assert!(
        s.callbacks[0].best_model_score.is_some(),
        "{:?}",
        s.warnings
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

/// A 6 MB Lightning checkpoint costs three GETs (head, tail, the scores), whether its
/// identity comes from a listing or from the first response, and every GET after the
/// identity is known carries If-Match.
#[test]
fn a_lightning_checkpoint_in_a_bucket_costs_three_gets() {
    let bucket = CountingStore::bucket(Scheme::S3, "ckpt-torch-reads");
    let bytes = lightning(6 << 20);
    bucket.put("run/checkpoints/epoch=3.ckpt", &bytes).unwrap();
    bucket.put("run/checkpoints/epoch=4.ckpt", &bytes).unwrap();

    // Opened by URL alone (`inspect`): the identity comes with the first responses.
    catalog_like(
        Path::new("s3://ckpt-torch-reads/run/checkpoints/epoch=3.ckpt"),
        None,
    );
    let first: Vec<_> = bucket
        .log()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(first.len(), 3, "{first:#?}");

    // With the identity a listing gave (the catalog): no request to learn it.
    let listed = ckpt_io::read_dir(Path::new("s3://ckpt-torch-reads/run/checkpoints")).unwrap();
    let e = listed
        .entries
        .iter()
        .find(|e| e.path.ends_with("epoch=4.ckpt"))
        .unwrap();
    let id = e.identity.clone().unwrap();
    let before = bucket.log().len();
    catalog_like(&e.path, Some(&id));
    let log = bucket.log();
    let gets: Vec<_> = log[before..].iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 3, "{gets:#?}");
    assert!(gets.iter().all(|r| r.if_match), "{gets:#?}");
}
