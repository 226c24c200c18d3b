//! `GET /api/curves` through the real binary: `ckpt serve --port 0` on Lightning-like trees
//! built here (version folders with `metrics.csv`, a TensorBoard event file and the example
//! checkpoints; a W&B run), asked over plain HTTP/1.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[path = "common/server.rs"]
mod server;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use server::{enc as encode, start_in};

fn get(port: u16, target: &str) -> (u16, Value) {
    server::request(port, "GET", target)
}

fn curves(port: u16, paths: &[&str]) -> (u16, Value) {
    let q: Vec<String> = paths
        .iter()
        .map(|p| format!("path={}", encode(p)))
        .collect();
    get(port, &format!("/api/curves?{}", q.join("&")))
}

fn curves_fixtures() -> PathBuf {
    common::root().join("crates/ckpt-curves/tests/fixtures")
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// The example Lightning checkpoints (global steps 4, 6, 6; the second is the best, the
/// third `last.ckpt`) in `lightning_logs/version_0/checkpoints/`, with a CSVLogger
/// `metrics.csv` and a TensorBoard event file; `version_1/` holds a checkpoint that knows
/// only its epoch (2) and a `metrics.csv` whose epoch 2 ends at step 29.
fn lightning_tree(t: &Path) {
    let ex = common::root().join("examples/lightning/checkpoints");
    let v0 = t.join("lightning_logs/version_0");
    for n in [
        "epoch=01-step=4-hmean=0.7445.ckpt",
        "epoch=02-step=6-hmean=0.7718.ckpt",
        "last.ckpt",
    ] {
        copy(&ex.join(n), &v0.join("checkpoints").join(n));
    }
    std::fs::write(
        v0.join("metrics.csv"),
        "epoch,step,train_loss,val_loss,val/hmean\n\
         0,1,0.9,,\n\
         0,2,,0.8,0.7\n\
         1,3,0.7,,\n\
         1,4,,0.6,0.7445\n\
         2,5,0.5,,\n\
         2,6,,0.4,0.7718\n",
    )
    .unwrap();
    let tb = curves_fixtures().join("tb_tensor");
    let ev = std::fs::read_dir(&tb)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("events.out"))
        .unwrap();
    copy(&ev.path(), &v0.join(ev.file_name()));
    let v1 = t.join("lightning_logs/version_1");
    copy(
        &common::root().join("fixtures/outputs/filename_only/best-epoch02-val_f1-0.847.ckpt"),
        &v1.join("checkpoints/best-epoch02-val_f1-0.847.ckpt"),
    );
    std::fs::write(
        v1.join("metrics.csv"),
        "epoch,step,val_f1\n0,9,0.5\n1,19,0.7\n2,29,0.847\n",
    )
    .unwrap();
}

/// The catalog's entries as the server lists them, by file name.
fn entries(port: u16) -> Vec<Value> {
    let (status, page) = get(port, "/api/checkpoints?limit=1000");
    assert_eq!(status, 200);
    page["checkpoints"].as_array().unwrap().clone()
}

fn path_of(entries: &[Value], name: &str) -> String {
    entries
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .find(|p| p.ends_with(name))
        .unwrap_or_else(|| panic!("no entry {name}"))
}

fn series<'a>(run: &'a Value, metric: &str) -> &'a Value {
    run["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metric"] == metric)
        .unwrap_or_else(|| panic!("no series {metric} in {run}"))
}

#[test]
fn curves_of_a_lightning_run_with_its_checkpoints_marked() {
    let t = tempfile::tempdir().unwrap();
    lightning_tree(t.path());
    let s = start_in(t.path(), &["."]);
    let all = entries(s.port);
    let best = path_of(&all, "epoch=02-step=6-hmean=0.7718.ckpt");
    let first = path_of(&all, "epoch=01-step=4-hmean=0.7445.ckpt");
    let last = path_of(&all, "version_0/checkpoints/last.ckpt");
    let entry = all.iter().find(|e| e["path"] == best.as_str()).unwrap();

    let (status, body) = curves(s.port, &[&best]);
    assert_eq!(status, 200, "{body}");
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{body}");
    let run = &runs[0];
    assert_eq!(run["experiment"], entry["experiment"]);
    assert_eq!(run["run"], entry["run"]);
    let v0 = best.rsplit_once("/checkpoints/").unwrap().0;
    assert_eq!(
        run["sources"],
        json!([
            {"kind": "lightning-csv", "path": format!("{v0}/metrics.csv")},
            {"kind": "tensorboard", "path": v0},
        ])
    );
    let val = series(run, "val_loss");
    assert_eq!(val["source"], 0);
    assert_eq!(val["x"], "step");
    assert_eq!(val["points"], json!([[2, 0.8], [4, 0.6], [6, 0.4]]));
    assert_eq!(
        series(run, "val/hmean")["points"],
        json!([[2, 0.7], [4, 0.7445], [6, 0.7718]])
    );
    assert_eq!(
        series(run, "train_loss")["points"],
        json!([[1, 0.9], [3, 0.7], [5, 0.5]])
    );
    assert_eq!(
        series(run, "epoch")["points"],
        json!([[1, 0.0], [2, 0.0], [3, 1.0], [4, 1.0], [5, 2.0], [6, 2.0]])
    );
    let lr = series(run, "lr");
    assert_eq!(lr["source"], 1);
    assert_eq!(lr["points"][0], json!([0, 0.10000000149011612]));
    assert_eq!(lr["points"].as_array().unwrap().len(), 5);
    // Every checkpoint of the run, at its global step; best and last as the catalog says.
    let mut marks = run["checkpoints"].as_array().unwrap().clone();
    marks.sort_by_key(|m| m["path"].as_str().unwrap().to_owned());
    assert_eq!(
        marks,
        vec![
            json!({"path": first, "step": 4, "epoch": 1, "is_best": false, "is_last": false}),
            json!({"path": best, "step": 6, "epoch": 2, "is_best": true, "is_last": false}),
            json!({"path": last, "step": 6, "epoch": 2, "is_best": false, "is_last": true}),
        ]
    );
    assert_eq!(run["warnings"], json!([]));

    // Two checkpoints of the same run: still one run.
    let (status, body) = curves(s.port, &[&best, &last, &best]);
    assert_eq!(status, 200);
    assert_eq!(body["runs"].as_array().unwrap().len(), 1);
}

#[test]
fn runs_in_request_order_and_an_epoch_placed_on_the_step_axis() {
    let t = tempfile::tempdir().unwrap();
    lightning_tree(t.path());
    let s = start_in(t.path(), &["."]);
    let all = entries(s.port);
    let v1 = path_of(&all, "best-epoch02-val_f1-0.847.ckpt");
    let v0 = path_of(&all, "version_0/checkpoints/last.ckpt");
    let (status, body) = curves(s.port, &[&v1, &v0]);
    assert_eq!(status, 200, "{body}");
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        series(&runs[0], "val_f1")["points"],
        json!([[9, 0.5], [19, 0.7], [29, 0.847]])
    );
    // No global_step in that checkpoint: epoch 2 ends at step 29 in the run's metrics.csv.
    assert_eq!(
        runs[0]["checkpoints"],
        json!([{"path": v1, "step": 29, "epoch": 2, "is_best": true, "is_last": false}])
    );
    assert_eq!(runs[1]["checkpoints"].as_array().unwrap().len(), 3);
    // Another spelling of the same file is the same checkpoint.
    let (dir, name) = v1.rsplit_once('/').unwrap();
    let respelled = format!("{dir}/../checkpoints/{name}");
    let (status, again) = curves(s.port, &[&respelled]);
    assert_eq!(status, 200);
    assert_eq!(again["runs"][0], runs[0]);
}

#[test]
fn bad_requests_and_paths_outside_the_catalog() {
    let t = tempfile::tempdir().unwrap();
    lightning_tree(t.path());
    std::fs::write(t.path().join("not-a-checkpoint.ckpt"), "hello").unwrap();
    let s = start_in(t.path(), &["lightning_logs"]);
    let all = entries(s.port);
    let one = path_of(&all, "last.ckpt");

    let (status, err) = get(s.port, "/api/curves");
    assert_eq!(status, 400);
    assert_eq!(err["error"], "path=: required");
    let many: Vec<&str> = std::iter::repeat_n(one.as_str(), 33).collect();
    let (status, err) = curves(s.port, &many);
    assert_eq!(status, 400);
    assert_eq!(err["error"], "33 paths: at most 32");
    let (status, err) = get(s.port, &format!("/api/curves?path={}&step=1", encode(&one)));
    assert_eq!(status, 400);
    assert_eq!(err["error"], "\"step\": unknown parameter (path)");
    for (p, why) in [
        ("lightning_logs/nope.ckpt", "not in the catalog"),
        ("../etc/passwd", "not in the catalog"),
        ("/etc/passwd", "not under the served paths"),
        ("not-a-checkpoint.ckpt", "not under the served paths"),
        ("lightning_logs/version_0/metrics.csv", "not in the catalog"),
    ] {
        let (status, err) = curves(s.port, &[&one, p]);
        assert_eq!(status, 404, "{p}: {err}");
        assert_eq!(err["error"], format!("{p}: {why}"), "{p}");
    }
    let (status, err) = get(
        s.port,
        "/api/curves?path=lightning_logs%2F..%2F..%2Fetc%2Fpasswd",
    );
    assert_eq!(status, 404, "{err}");
}

#[test]
fn hostile_logs_are_warnings_and_the_server_stays_up() {
    let t = tempfile::tempdir().unwrap();
    let ex = common::root().join("examples/lightning/checkpoints/last.ckpt");
    let v = t.path().join("lightning_logs/version_0");
    copy(&ex, &v.join("checkpoints/last.ckpt"));
    std::fs::write(
        v.join("metrics.csv"),
        "epoch,step,loss\n0,1,0.5\n\u{0}garbage\n0,x,0.1\n0,3,abc\n0,4,0.25\n",
    )
    .unwrap();
    // An event file whose first record claims 2^60 bytes.
    let len = (1u64 << 60).to_le_bytes();
    let mut ev = len.to_vec();
    ev.extend_from_slice(&[0, 0, 0, 0]);
    ev.extend_from_slice(b"rest");
    std::fs::write(v.join("events.out.tfevents.1.host"), ev).unwrap();
    let s = start_in(t.path(), &["."]);
    let all = entries(s.port);
    let p = path_of(&all, "last.ckpt");
    let (status, body) = curves(s.port, &[&p]);
    assert_eq!(status, 200, "{body}");
    let run = &body["runs"][0];
    assert_eq!(series(run, "loss")["points"], json!([[1, 0.5], [4, 0.25]]));
    let dir = p.rsplit_once("/checkpoints/").unwrap().0;
    assert_eq!(
        run["warnings"],
        json!([
            format!("{dir}/metrics.csv: line 3: no step: skipped"),
            format!("{dir}/metrics.csv: line 4: no step: skipped"),
            format!("{dir}/metrics.csv: line 5: column \"loss\": \"abc\" is not a number"),
            format!(
                "{dir}/events.out.tfevents.1.host: record 0 (byte 0): CRC mismatch in the record's length"
            ),
        ])
    );
    let (status, health) = get(s.port, "/api/health");
    assert_eq!(status, 200);
    assert_eq!(health["ok"], true);
}

/// Lightning's WandbLogger layout: checkpoints in `<save_dir>/<project>/<id>/checkpoints/`,
/// the run in `<save_dir>/wandb/offline-run-…-<id>/`. Served from the save dir, the run's
/// history is read; with the project folder as the only root, the W&B folder is outside it
/// and is not read.
#[test]
fn wandb_run_read_only_under_the_roots() {
    let t = tempfile::tempdir().unwrap();
    let save = t.path().join("save");
    let run = "wandb/offline-run-20261122_064815-abcd1234";
    copy(
        &curves_fixtures().join(run).join("run-abcd1234.wandb"),
        &save.join(run).join("run-abcd1234.wandb"),
    );
    copy(
        &common::root().join("examples/lightning/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt"),
        &save.join("proj/abcd1234/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt"),
    );
    let s = start_in(&save, &["."]);
    let p = path_of(&entries(s.port), "epoch=01-step=4-hmean=0.7445.ckpt");
    let (status, body) = curves(s.port, &[&p]);
    assert_eq!(status, 200, "{body}");
    let r = &body["runs"][0];
    assert_eq!(r["sources"][0]["kind"], "wandb");
    assert_eq!(
        series(r, "val/acc")["points"],
        json!([[4, 0.5], [9, 0.6000000238418579], [14, 0.699999988079071]])
    );
    assert_eq!(r["checkpoints"][0]["step"], 4);
    drop(s);

    let s = start_in(&save, &["proj"]);
    let p = path_of(&entries(s.port), "epoch=01-step=4-hmean=0.7445.ckpt");
    let (status, body) = curves(s.port, &[&p]);
    assert_eq!(status, 200, "{body}");
    let r = &body["runs"][0];
    assert_eq!(r["sources"], json!([]));
    let w = r["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    let w = w[0].as_str().unwrap();
    assert!(
        w.ends_with("offline-run-20261122_064815-abcd1234: outside the served paths: not read"),
        "{w}"
    );
}
