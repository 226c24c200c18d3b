//! Every read-side command on `s3://` paths, against a real S3-compatible server on loopback
//! (moto behind scripts/s3_server.py's counting, fault-injecting middleware, one per test; see
//! tests/common/s3.rs): the output equals the local one apart from paths (and modification
//! times, which for an object are its upload time), what was fetched is counted by the server,
//! and faults (503s, a server that dies, a truncated object, an object replaced while read, a
//! listing that fails) give clear errors and never a corrupt cache.
//!
//! `#[ignore]`d: they need Python with moto. `scripts/test` runs them
//! (`CKPT_S3_PYTHON=… cargo test -p ckpt --test object_store -- --ignored --test-threads=2`);
//! `scripts/test --s3` runs only them.
//!
//! Trees are uploaded under the same relative path they have in the repository
//! (`fixtures/outputs` → `s3://ckpt-test/fixtures/outputs`), so folder names, experiment names
//! and the order of entries are the same on both sides, and "equal apart from paths" is a plain
//! replacement of `s3://ckpt-test/` by nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/s3.rs"]
mod s3;
#[path = "common/server.rs"]
mod server;

use std::path::Path;

use serde_json::Value;

use common::root;
use s3::S3;

const BUCKET: &str = "ckpt-test";
const URL: &str = "s3://ckpt-test/";

/// A server with the repository's `rel` folders uploaded under the same keys.
fn server_with(rels: &[&str]) -> S3 {
    let s = S3::start();
    for rel in rels {
        let n = s.upload_dir(BUCKET, rel, &root().join(rel));
        assert!(n > 0, "{rel}: nothing uploaded");
    }
    s.reset();
    s
}

/// `rel` as an object URL.
fn url(rel: &str) -> String {
    format!("{URL}{rel}")
}

/// Remote output made comparable with the local one: the bucket's URL prefix dropped.
fn unurl(text: &str) -> String {
    text.replace(URL, "")
}

/// `text` as JSON, with every `modified` and `last_modified` key dropped (an object's
/// Last-Modified is when it was uploaded, a file's mtime when it was checked out).
fn json_without_times(text: &str) -> Value {
    let mut v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"));
    drop_keys(&mut v, &["modified", "last_modified"]);
    v
}

fn drop_keys(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(o) => {
            for k in keys {
                o.remove(*k);
            }
            for x in o.values_mut() {
                drop_keys(x, keys);
            }
        }
        Value::Array(a) => {
            for x in a {
                drop_keys(x, keys);
            }
        }
        _ => {}
    }
}

/// Run `ckpt ARGS` locally (the repository root) with the same scrubbed environment.
fn local(args: &[&str]) -> (i32, String, String) {
    common::run(args)
}

/// `catalog --cache-file CACHE --format json s3://…/rel`: the cached runs of the fault tests.
fn catalog_json_cached(cache: &Path, rel: &str) -> [String; 6] {
    [
        "catalog".to_owned(),
        "--cache-file".to_owned(),
        cache.to_string_lossy().into_owned(),
        "--format".to_owned(),
        "json".to_owned(),
        url(rel),
    ]
}

/// `args` with every `@rel` turned into `rel` (local) or its URL (remote).
fn both(s: &S3, args: &[&str]) -> ((i32, String, String), (i32, String, String)) {
    let l: Vec<String> = args
        .iter()
        .map(|a| a.strip_prefix('@').unwrap_or(a).to_owned())
        .collect();
    let r: Vec<String> = args
        .iter()
        .map(|a| a.strip_prefix('@').map_or_else(|| (*a).to_owned(), url))
        .collect();
    let lo = local(&l.iter().map(String::as_str).collect::<Vec<_>>());
    let ro = s.run(&r);
    (lo, ro)
}

/// The local and remote runs of `args` agree: same exit code, same stdout and stderr apart
/// from the URL prefix.
fn assert_same_text(s: &S3, args: &[&str]) {
    let (l, r) = both(s, args);
    assert_eq!(r.0, l.0, "exit code of {args:?}\nremote stderr:\n{}", r.2);
    assert_eq!(unurl(&r.1), l.1, "stdout of {args:?}");
    assert_eq!(unurl(&r.2), l.2, "stderr of {args:?}");
}

/// [`assert_same_text`] for `--format json` output, `modified` dropped.
fn assert_same_json(s: &S3, args: &[&str]) -> Value {
    let (l, r) = both(s, args);
    assert_eq!(r.0, l.0, "exit code of {args:?}\nremote stderr:\n{}", r.2);
    let lv = json_without_times(&l.1);
    let rv = json_without_times(&unurl(&r.1));
    assert_eq!(
        rv, lv,
        "JSON of {args:?} differs apart from paths and times"
    );
    assert_eq!(unurl(&r.2), l.2, "stderr of {args:?}");
    rv
}

/// A local checkpoint that exercises everything inspect prints: Lightning, callbacks with 0-d
/// scores, hyperparameters.
const LIGHTNING: &str = "examples/lightning/checkpoints/epoch=02-step=6-hmean=0.7718.ckpt";

// 1 -------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn inspect_of_an_object_equals_the_local_file_with_at_most_four_gets() {
    let s = server_with(&["examples"]);
    let (l, r) = both(&s, &["inspect", &format!("@{LIGHTNING}")]);
    let st = s.stats();
    assert_eq!(r.0, 0, "{}", r.2);
    assert_eq!(l.0, 0);
    // The first line is the path; the rest is the same.
    let (lfirst, lrest) = l.1.split_once('\n').unwrap();
    let (rfirst, rrest) = r.1.split_once('\n').unwrap();
    assert_eq!(lfirst, LIGHTNING);
    assert_eq!(rfirst, url(LIGHTNING));
    assert_eq!(rrest, lrest);
    // Issue 15: at most 4 requests, listings included (this 20 KB file is read whole: one
    // LIST for its existence, one GET; a 500 MB one is measured by scripts/bench_s3.sh).
    assert!(
        st.requests <= 4,
        "inspect made {} requests (issue 15: at most 4):\n{}",
        st.requests,
        st.show()
    );
    assert_eq!(st.put, 0, "{}", st.show());
    // The JSON too.
    s.reset();
    assert_same_json(
        &s,
        &["inspect", "--format", "json", &format!("@{LIGHTNING}")],
    );
}

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn a_missing_object_or_prefix_is_one_line_and_exit_2() {
    let s = server_with(&["examples/lightning"]);
    for args in [
        vec!["inspect".to_owned(), url("examples/lightning/nope.ckpt")],
        vec![
            "catalog".to_owned(),
            "--no-cache".to_owned(),
            url("examples/nope"),
        ],
        vec!["scan".to_owned(), url("nope/x.pt")],
    ] {
        let (code, out, err) = s.run(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert_eq!(
            err,
            format!(
                "ckpt: error: {}: no such object or prefix\n",
                args[args.len() - 1]
            ),
            "{args:?}"
        );
    }
}

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn endpoint_flag_replaces_the_environment_and_stats_line_matches_the_server() {
    let s = server_with(&["examples"]);
    // No AWS_ENDPOINT_URL, no AWS_ALLOW_HTTP: `--endpoint http://…` is both.
    let o = common::ckpt()
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("CKPT_IO_STATS", "1")
        .args(["--endpoint", &s.url, "inspect", &url(LIGHTNING)])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let st = s.stats();
    // `ckpt-io: N requests (G GET, L LIST, H HEAD), B bytes`, the same counts as the server's.
    let line = err
        .lines()
        .find(|l| l.starts_with("ckpt-io: "))
        .unwrap_or_else(|| panic!("no ckpt-io line in {err}"));
    assert!(
        line.contains(&format!(
            "({} GET, {} LIST, {} HEAD)",
            st.get, st.list, st.head
        )),
        "{line} vs server {st:?}"
    );
    assert!(
        line.starts_with(&format!("ckpt-io: {} request", st.get + st.list + st.head)),
        "{line}"
    );
    // Without CKPT_IO_STATS, nothing of the kind.
    let (code, _, err) = s.run(&["inspect", &url(LIGHTNING)]);
    assert_eq!(code, 0);
    assert!(!err.contains("ckpt-io:"), "{err}");
}

// 2, 3 ----------------------------------------------------------------------------------------

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn catalog_of_a_bucket_equals_the_local_tree() {
    let s = server_with(&["fixtures/outputs"]);
    let v = assert_same_json(
        &s,
        &[
            "catalog",
            "--no-cache",
            "--format",
            "json",
            "@fixtures/outputs",
        ],
    );
    assert!(
        v["checkpoints"].as_array().is_some_and(|c| c.len() > 10),
        "{v}"
    );
    let st = s.stats();
    let n = v["checkpoints"].as_array().unwrap().len() as f64;
    assert!(st.list > 0, "{}", st.show());
    // Issue 15's figure (≤ 2.5 GETs per checkpoint; the design argues ~3 for Lightning files
    // with scores): pinned loosely here, measured by scripts/bench_s3.sh.
    assert!(
        (st.get as f64) / n <= 4.0,
        "{} GETs for {n} checkpoints:\n{}",
        st.get,
        st.show()
    );
    assert_eq!(st.put, 0);
    // The table too (paths are shown relative to nothing: the same replacement).
    s.reset();
    assert_same_text(&s, &["catalog", "--no-cache", "@fixtures/outputs"]);
}

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn an_unchanged_bucket_is_recatalogued_with_listings_only() {
    let s = server_with(&["fixtures/outputs"]);
    let cache = tempfile::tempdir().unwrap();
    let cache_file = cache.path().join("cache.sqlite3");
    let args = catalog_json_cached(&cache_file, "fixtures/outputs");
    let (code, first, err) = s.run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(s.stats().get > 0);
    s.reset();
    let (code, second, err) = s.run(&args);
    assert_eq!(code, 0, "{err}");
    let st = s.stats();
    assert_eq!(
        st.get,
        0,
        "an unchanged bucket re-read objects:\n{}",
        st.show()
    );
    assert_eq!(st.head, 0, "{}", st.show());
    assert!(st.list > 0, "{}", st.show());
    assert_eq!(json_without_times(&second), json_without_times(&first));
    // And it is what the local tree gives.
    let (_, l, _) = local(&[
        "catalog",
        "--no-cache",
        "--format",
        "json",
        "fixtures/outputs",
    ]);
    assert_eq!(json_without_times(&unurl(&second)), json_without_times(&l));
}

// 4 -------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn listings_are_paginated() {
    let s = server_with(&["fixtures/outputs"]);
    s.max_keys(2);
    assert_same_json(
        &s,
        &[
            "catalog",
            "--no-cache",
            "--format",
            "json",
            "@fixtures/outputs",
        ],
    );
    let st = s.stats();
    // Some prefix was listed over several pages (same prefix, several LIST requests).
    let mut per_prefix = std::collections::BTreeMap::<&str, usize>::new();
    for r in st.log.iter().filter(|r| r.0 == "LIST") {
        *per_prefix.entry(r.1.as_str()).or_default() += 1;
    }
    assert!(
        per_prefix.values().any(|&n| n > 1),
        "no prefix listed over several pages:\n{}",
        st.show()
    );
    s.reset();
    assert_same_json(&s, &["scan", "--format", "json", "@fixtures/outputs"]);
}

// 5 -------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn slow_down_is_retried() {
    let s = server_with(&["examples"]);
    s.fail(&format!(
        "method=GET&status=503&code=SlowDown&count=2&key={}",
        LIGHTNING.replace('=', "%3D")
    ));
    let (l, r) = both(&s, &["inspect", &format!("@{LIGHTNING}")]);
    assert_eq!(r.0, 0, "{}", r.2);
    assert_eq!(unurl(&r.1), l.1);
    let st = s.stats();
    let failed = st.log.iter().filter(|r| r.3 == 503).count();
    assert_eq!(failed, 2, "{}", st.show());
}

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn slow_down_forever_names_the_object_the_status_and_the_request_id() {
    let s = server_with(&["examples"]);
    s.fail(&format!(
        "method=GET&status=503&code=SlowDown&count=100&key={}",
        LIGHTNING.replace('=', "%3D")
    ));
    let t = std::time::Instant::now();
    let (code, out, err) = s.run(&["inspect", &url(LIGHTNING)]);
    assert_ne!(code, 0);
    assert_ne!(code, 3, "a bug, not an error: {err}");
    assert_eq!(out, "");
    for want in [url(LIGHTNING).as_str(), "503", "SlowDown", "CKPTFAULT"] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    // CKPT_IO_RETRIES=2: a few attempts, not object_store's default of 10 over minutes.
    let st = s.stats();
    assert!(st.get <= 2 * 3, "{}", st.show());
    assert!(t.elapsed().as_secs() < 60, "{:?}", t.elapsed());
}

// 6 -------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn a_server_that_dies_mid_catalog_leaves_a_sound_cache_and_a_rerun_finishes() {
    let cache = tempfile::tempdir().unwrap();
    let cache_file = cache.path().join("cache.sqlite3");
    let args = catalog_json_cached(&cache_file, "fixtures/outputs");
    // How many requests a whole run makes, on a first server (no cache written).
    let total = {
        let s = server_with(&["fixtures/outputs"]);
        let (code, _, err) = s.run(&[
            "catalog",
            "--no-cache",
            "--format",
            "json",
            &url("fixtures/outputs"),
        ]);
        assert_eq!(code, 0, "{err}");
        s.stats().requests
    };
    assert!(total > 6, "{total}");
    {
        let mut s = server_with(&["fixtures/outputs"]);
        s.die_after(total / 2);
        let (code, _, err) = s.run(&args);
        assert!(s.exited(), "the server was to stop mid-run");
        assert_ne!(code, 0, "{err}");
        assert_ne!(code, 3, "a bug, not an error: {err}");
        assert!(err.contains(URL), "the error names no object: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    if cache_file.exists() {
        let db = rusqlite::Connection::open(&cache_file).unwrap();
        let ok: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
    // A fresh server with the same bucket: the rerun finishes, with the local tree's answer.
    let s = server_with(&["fixtures/outputs"]);
    let (code, out, err) = s.run(&args);
    assert_eq!(code, 0, "{err}");
    let (_, l, _) = local(&[
        "catalog",
        "--no-cache",
        "--format",
        "json",
        "fixtures/outputs",
    ]);
    assert_eq!(json_without_times(&unurl(&out)), json_without_times(&l));
}

// 7 -------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn a_truncated_object_says_what_a_truncated_file_says() {
    let s = S3::start();
    let d = tempfile::tempdir().unwrap();
    let whole = std::fs::read(root().join(LIGHTNING)).unwrap();
    for (name, len) in [("half.ckpt", whole.len() / 2), ("head.ckpt", 100)] {
        let f = d.path().join(name);
        std::fs::write(&f, &whole[..len]).unwrap();
        s.upload_file(BUCKET, &format!("trunc/{name}"), &f);
        let lo = local(&["inspect", f.to_str().unwrap()]);
        let ro = s.run(&["inspect", &format!("{URL}trunc/{name}")]);
        assert_eq!(ro.0, lo.0, "{}", ro.2);
        assert_ne!(lo.0, 0);
        assert_eq!(
            ro.2.replace(&format!("{URL}trunc/"), ""),
            lo.2.replace(&format!("{}/", d.path().display()), ""),
            "{name}"
        );
        // And a catalog entry's error is the same too.
        let lc = local(&[
            "catalog",
            "--no-cache",
            "--format",
            "json",
            f.to_str().unwrap(),
        ]);
        let rc = s.run(&[
            "catalog",
            "--no-cache",
            "--format",
            "json",
            &format!("{URL}trunc/{name}"),
        ]);
        let lv = json_without_times(&lc.1);
        let rv = json_without_times(&rc.1);
        assert_eq!(
            rv["checkpoints"][0]["error"]
                .as_str()
                .map(|e| e.replace(&format!("{URL}trunc/"), "")),
            lv["checkpoints"][0]["error"]
                .as_str()
                .map(|e| e.replace(&format!("{}/", d.path().display()), "")),
            "{name}"
        );
    }
}

// 8 -------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn an_object_replaced_while_read_is_reported_changed_and_not_cached() {
    let s = server_with(&["examples/lightning"]);
    let cache = tempfile::tempdir().unwrap();
    let cache_file = cache.path().join("cache.sqlite3");
    let args = catalog_json_cached(&cache_file, "examples/lightning");
    s.replace_on_get(BUCKET, LIGHTNING);
    let (code, out, err) = s.run(&args);
    assert_eq!(code, 1, "{err}");
    // Warned (named), and said why: in the warning or in the entry's error.
    assert!(err.contains(&url(LIGHTNING)), "{err}");
    assert!(
        err.contains("changed while it was being read")
            || out.contains("changed while it was being read"),
        "no 'changed' message:\n{err}\n{out}"
    );
    let st = s.stats();
    assert!(
        st.log.iter().any(|r| r.3 == 412),
        "no If-Match was refused:\n{}",
        st.show()
    );
    // The rerun reads that object again (nothing was cached for it) and succeeds.
    s.reset();
    let (code, out, err) = s.run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(s.stats().gets_of(LIGHTNING) > 0, "{}", s.stats().show());
    let v = json_without_times(&out);
    let entry = v["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == url(LIGHTNING))
        .unwrap_or_else(|| panic!("{} not catalogued: {v}", url(LIGHTNING)));
    // What is catalogued now is the replacement (same size, first byte flipped), read anew.
    assert_eq!(
        entry["size_bytes"].as_u64(),
        Some(std::fs::metadata(root().join(LIGHTNING)).unwrap().len()),
        "{entry}"
    );
}

// 9 -------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn scan_of_a_bucket_equals_scan_of_the_tree() {
    let s = server_with(&["fixtures/outputs", "fixtures/hostile"]);
    assert_same_json(&s, &["scan", "--format", "json", "@fixtures/outputs"]);
    assert_same_text(&s, &["scan", "@fixtures/hostile"]);
}

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn dump_of_an_object_equals_dump_of_the_file() {
    let s = server_with(&["examples"]);
    assert_same_text(&s, &["dump", "--tensor-hashes", &format!("@{LIGHTNING}")]);
    assert_same_text(&s, &["dump", "@examples/fsdp/epoch-001.pth"]);
}

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn hash_and_diff_of_objects_equal_the_local_ones() {
    let s = server_with(&["examples", "fixtures/outputs"]);
    assert_same_json(&s, &["hash", "--format", "json", &format!("@{LIGHTNING}")]);
    assert_same_json(
        &s,
        &[
            "hash",
            "--format",
            "json",
            "@fixtures/outputs/dictconfig/checkpoints/last.ckpt",
        ],
    );
    assert_same_text(
        &s,
        &[
            "diff",
            "@examples/lightning/checkpoints/last.ckpt",
            &format!("@{LIGHTNING}"),
        ],
    );
    assert_same_json(
        &s,
        &[
            "diff",
            "--format",
            "json",
            "@examples/fsdp/epoch-001.pth",
            "@examples/fsdp/ddp-epoch-002.pth",
        ],
    );
}

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn experiments_and_latest_of_a_bucket_equal_the_local_ones() {
    let s = server_with(&["fixtures/outputs", "examples"]);
    assert_same_json(
        &s,
        &[
            "experiments",
            "--no-cache",
            "--format",
            "json",
            "@fixtures/outputs",
        ],
    );
    assert_same_text(&s, &["latest", "--no-cache", "@examples/lightning"]);
    assert_same_text(
        &s,
        &["latest", "--no-cache", "--step", "4", "@examples/lightning"],
    );
}

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn validate_of_a_bucket_equals_validate_of_the_tree() {
    let s = server_with(&["fixtures/outputs"]);
    assert_same_json(
        &s,
        &[
            "validate",
            "--outputs-dir",
            "@fixtures/outputs",
            "--format",
            "json",
        ],
    );
    assert_same_text(
        &s,
        &[
            "validate",
            "--checkpoint",
            "@fixtures/outputs/existing_sidecar/checkpoints/epoch=00-step=2-hmean=0.7172.ckpt",
        ],
    );
}

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn convert_from_a_bucket_writes_what_convert_from_the_folder_writes() {
    // (Not the whole of fixtures/convert/dcp: `conv_bn_linear/` and `conv_bn_linear.pth` there
    // both convert to `conv_bn_linear/`, and which of the two wins is a race.)
    let s = server_with(&["examples/fsdp", "fixtures/convert/dcp/fsdp2_dim0"]);
    let d = tempfile::tempdir().unwrap();
    for (input, to) in [
        ("examples/fsdp/epoch-001.pth", "safetensors"),
        ("examples/fsdp", "safetensors"),
        ("fixtures/convert/dcp/fsdp2_dim0", "safetensors"),
    ] {
        let lo_dir = d.path().join(format!("local-{}", input.replace('/', "_")));
        let ro_dir = d.path().join(format!("remote-{}", input.replace('/', "_")));
        let lo = local(&[
            "convert",
            input,
            "--to",
            to,
            "--output-dir",
            lo_dir.to_str().unwrap(),
        ]);
        let ro = s.run(&[
            "convert",
            &url(input),
            "--to",
            to,
            "--output-dir",
            ro_dir.to_str().unwrap(),
        ]);
        assert_eq!(ro.0, lo.0, "{input}: {}", ro.2);
        assert_eq!(lo.0, 0, "{input}: {}", lo.2);
        let norm = |t: &str, dir: &Path| t.replace(URL, "").replace(dir.to_str().unwrap(), "OUT");
        assert_eq!(norm(&ro.1, &ro_dir), norm(&lo.1, &lo_dir), "{input}");
        // The same files, byte for byte.
        let lf = files_under(&lo_dir);
        let rf = files_under(&ro_dir);
        assert!(!lf.is_empty(), "{input}: nothing converted");
        assert_eq!(
            rf.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            lf.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            "{input}"
        );
        for ((p, a), (_, b)) in rf.iter().zip(&lf) {
            assert!(a == b, "{input}: {p} differs");
        }
    }
}

/// Every file under `dir` (relative path, bytes), sorted.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    common::files(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

// 10 ------------------------------------------------------------------------------------------

#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn a_failed_listing_of_a_sub_prefix_is_partial_and_keeps_its_rows() {
    let s = server_with(&["fixtures/outputs"]);
    let cache = tempfile::tempdir().unwrap();
    let cache_file = cache.path().join("cache.sqlite3");
    let args = catalog_json_cached(&cache_file, "fixtures/outputs");
    let (code, whole, err) = s.run(&args);
    assert_eq!(code, 0, "{err}");
    let sub = "fixtures/outputs/dictconfig/";
    s.reset();
    s.fail(&format!(
        "method=LIST&status=500&code=InternalError&count=1000&prefix={sub}"
    ));
    let (code, out, err) = s.run(&args);
    assert_eq!(code, 1, "a partial listing is exit 1: {err}");
    assert!(
        err.contains(&url("fixtures/outputs/dictconfig")),
        "the partial prefix is not named: {err}"
    );
    assert!(
        err.contains("incomplete") || err.contains("partial"),
        "not reported as partial: {err}"
    );
    // What was listed is still catalogued.
    let v = json_without_times(&out);
    assert!(
        v["checkpoints"].as_array().is_some_and(|c| !c.is_empty()),
        "{v}"
    );
    // The rows under the failed prefix survived in the cache: with the fault gone, the next
    // run reads none of those objects again, and answers the whole tree.
    s.reset();
    let (code, again, err) = s.run(&args);
    assert_eq!(code, 0, "{err}");
    let st = s.stats();
    assert_eq!(
        st.log
            .iter()
            .filter(|r| r.0 == "GET" && r.1.starts_with(sub))
            .count(),
        0,
        "rows under {sub} were forgotten:\n{}",
        st.show()
    );
    assert_eq!(json_without_times(&again), json_without_times(&whole));
}

// serve ----------------------------------------------------------------------------------------

/// `serve` on a bucket root: the list and a checkpoint's detail are what `serve` of the tree
/// gives apart from paths and times; an object uploaded later shows up after a relisting
/// (`--relist`), without a restart; `--allow-writes` is refused for a bucket.
#[test]
#[ignore = "needs CKPT_S3_PYTHON (scripts/test --s3)"]
fn serve_of_a_bucket_equals_serve_of_the_tree_and_sees_new_objects() {
    let s = server_with(&["examples"]);
    let path = std::env::var_os("PATH");
    let local = server::start_with(&root(), &["examples"], path.clone(), None);
    let remote = server::start_with_env(
        &root(),
        &[&url("examples"), "--relist", "0.5"],
        path,
        None,
        &s.env(),
    );
    let list = "/api/checkpoints?limit=1000";
    let (lc, lv) = local.get(list);
    let (rc, rv) = remote.get(list);
    assert_eq!((lc, rc), (200, 200), "{rv}");
    let n = lv["total"].as_u64().unwrap();
    assert!(n > 0, "{lv}");
    assert_eq!(
        json_without_times(&unurl(&rv.to_string())),
        json_without_times(&lv.to_string()),
        "the bucket's list differs from the tree's apart from paths and times"
    );
    let (lc, ld) = local.get(&format!("/api/detail?path={}", server::enc(LIGHTNING)));
    let (rc, rd) = remote.get(&format!(
        "/api/detail?path={}",
        server::enc(&url(LIGHTNING))
    ));
    assert_eq!((lc, rc), (200, 200), "{rd}");
    assert_eq!(
        json_without_times(&unurl(&rd.to_string())),
        json_without_times(&ld.to_string()),
        "the detail of an object differs from the file's apart from paths and times"
    );

    // A new object: seen at the next relisting, as one more entry.
    let key = "examples/lightning/checkpoints/uploaded-later.ckpt";
    s.upload_file(BUCKET, key, &root().join(LIGHTNING));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, v) = remote.get(list);
        if v["total"].as_u64() == Some(n + 1) {
            let paths: Vec<&str> = v["checkpoints"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["path"].as_str())
                .collect();
            assert!(paths.contains(&url(key).as_str()), "{paths:?}");
            assert!(v["generation"].as_u64().unwrap() >= 1, "{v}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the uploaded object never appeared: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Writes are local only.
    let (code, out, err) = s.run(&["serve", &url("examples"), "--allow-writes", "--port", "0"]);
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("s3://ckpt-test/examples") && err.contains("--allow-writes"),
        "{err}"
    );
}
