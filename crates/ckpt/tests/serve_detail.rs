//! `ckpt serve`'s in-depth endpoints through the real binary: `/api/detail`, `/api/tensor`,
//! `/api/compare`, and the `--allow-writes` plans with `/api/apply`. Each answer is compared
//! with what the CLI prints for the same files (`ckpt inspect|scan|hash|compare|diff|prune
//! --format json`, `ckpt convert-legacy --dry-run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/server.rs"]
mod server;

use std::path::Path;

use serde_json::{Value, json};
use server::{enc, start, start_in};

/// `ckpt ARGS… --format json` from the workspace root: Ok(stdout as JSON) on exit 0 or 1,
/// else Err(its error line without `ckpt: error: `).
fn cli_json(args: &[&str]) -> Result<Value, String> {
    let out = common::ckpt()
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    match out.status.code() {
        Some(0 | 1) => Ok(serde_json::from_slice(&out.stdout).unwrap()),
        _ => {
            let err = String::from_utf8(out.stderr).unwrap();
            let first = err.lines().next().unwrap_or_default();
            Err(first
                .strip_prefix("ckpt: error: ")
                .unwrap_or_else(|| panic!("{args:?}: {err}"))
                .to_owned())
        }
    }
}

/// `ckpt ARGS… --format json`'s stdout as JSON, whatever its exit code (`scan` exits 2 when
/// a file could not be decoded, after printing its records).
fn cli_stdout(args: &[&str]) -> Value {
    let out = common::ckpt()
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"))
}

/// A detail part compared with the CLI's value: equal, or the same error.
fn same_as_cli(part: &Value, cli: Result<Value, String>, what: &str) {
    match cli {
        Ok(v) => assert_eq!(part, &v, "{what}"),
        Err(e) => assert_eq!(part, &json!({ "error": e }), "{what}"),
    }
}

#[test]
fn detail_parts_are_what_inspect_scan_and_hash_print() {
    let s = start(&["fixtures/benign", "fixtures/bad", "examples"]);
    let files = [
        "fixtures/benign/dcp",
        "fixtures/benign/model.safetensors",
        "fixtures/bad/hostile_os_system.ckpt",
        "fixtures/bad/hostile_os_system_raw_pickle.pt",
        "fixtures/bad/truncated_zip.ckpt",
        "examples/lightning/checkpoints/last.ckpt",
    ];
    for f in files {
        let (status, d) = s.get(&format!("/api/detail?path={}", enc(f)));
        assert_eq!(status, 200, "{f}: {d}");
        let (_, entry) = s.get(&format!("/api/checkpoint?path={}", enc(f)));
        assert_eq!(d["entry"], entry, "{f}");
        // inspect prints a list (one element per file); the detail holds the element.
        same_as_cli(
            &d["inspect"],
            cli_json(&["inspect", f]).map(|v| v[0].clone()),
            &format!("{f}: inspect"),
        );
        let scan = cli_stdout(&["scan", f]);
        assert_eq!(d["scan"]["files"], scan, "{f}: scan");
        same_as_cli(
            &d["identity"],
            cli_json(&["hash", f]),
            &format!("{f}: hash"),
        );
    }
    // The hostile files show their verdict and the reason; the server is still up.
    let (_, d) = s.get("/api/detail?path=fixtures/bad/hostile_os_system.ckpt");
    assert_eq!(d["scan"]["verdict"], "dangerous", "{d}");
    assert!(
        d["scan"]["files"][0]["globals"]
            .to_string()
            .contains("os.system"),
        "{d}"
    );
    let (_, d) = s.get("/api/detail?path=fixtures/bad/truncated_zip.ckpt");
    assert!(
        d["inspect"]["error"].as_str().unwrap().contains("zip"),
        "{d}"
    );
    assert!(d["tensors"]["error"].is_string(), "{d}");
    // A DCP folder: one scan record per file, its tensors from `.metadata`.
    let (_, d) = s.get("/api/detail?path=fixtures/benign/dcp");
    assert_eq!(d["scan"]["verdict"], "safe");
    assert_eq!(d["scan"]["files"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(
        d["tensors"]["tensors"].as_array().unwrap().len() as u64,
        d["inspect"]["tensors"].as_u64().unwrap()
    );
    // The safetensors file's tensor list, as its inspect keys name them.
    let (_, d) = s.get("/api/detail?path=fixtures/benign/model.safetensors");
    assert_eq!(
        d["tensors"],
        json!({"state_dict": "", "tensors": [{"name": "w", "dtype": "float32", "shape": [4]}],
               "other_entries": 0})
    );
    let (status, h) = s.get("/api/health");
    assert_eq!((status, &h["ok"]), (200, &json!(true)));
}

#[test]
fn detail_tensor_and_compare_serve_only_catalog_entries_under_the_roots() {
    let s = start(&["--allow-writes", "fixtures/benign"]);
    let outside = [
        "/etc/passwd",
        "fixtures/benign/../bad/hostile_os_system.ckpt",
        "fixtures/benign/%2e%2e/bad/empty.ckpt",
        "fixtures/README.md",
        // Under the root, but not a checkpoint the catalog lists.
        "fixtures/benign/dcp/.metadata",
    ];
    for p in outside {
        for target in [
            format!("/api/detail?path={p}"),
            format!("/api/tensor?path={p}&name=w"),
            format!("/api/compare?path={p}&path=fixtures/benign/model.safetensors"),
        ] {
            let (status, body) = s.get(&target);
            assert_eq!(status, 404, "{target}: {body}");
            assert!(body["error"].is_string(), "{target}: {body}");
        }
        let (status, body) = s.post(&format!("/api/plan/sidecar?path={p}"));
        assert_eq!(status, 404, "{p}: {body}");
    }
    let (status, body) = s.post("/api/plan/prune?path=/tmp&keep_top=1&monitor=loss&mode=min");
    assert_eq!(status, 404, "{body}");
    // Usage mistakes are 400s naming the parameter.
    for (target, says) in [
        ("/api/detail", "path"),
        ("/api/detail?path=fixtures/benign/dcp&pth=x", "pth"),
        ("/api/tensor?path=fixtures/benign/model.safetensors", "name"),
        (
            "/api/tensor?path=fixtures/benign/model.safetensors&name=w&max_bytes=16777217",
            "max_bytes",
        ),
        ("/api/compare?path=fixtures/benign/dcp", "path"),
    ] {
        let (status, body) = s.get(target);
        assert_eq!(status, 400, "{target}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{target}: {body}"
        );
    }
}

/// Every value of a nested list, in row-major order.
fn flat(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
        other => out.push(other.clone()),
    }
}

#[test]
fn tensor_values_are_decoded_by_dtype() {
    let s = start(&["fixtures/formats"]);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("fixtures/formats/dtypes.values.json"))
            .unwrap(),
    )
    .unwrap();
    let decoded = [
        "float32", "float64", "float16", "bfloat16", "int8", "int16", "int32", "int64", "uint8",
        "uint16", "uint32", "uint64", "bool",
    ];
    let mut seen = 0;
    for (name, e) in expected.as_object().unwrap() {
        let (status, t) = s.get(&format!(
            "/api/tensor?path=fixtures/formats/dtypes.pt&name={name}"
        ));
        if decoded.contains(&name.as_str()) {
            seen += 1;
            assert_eq!(status, 200, "{name}: {t}");
            let mut want = Vec::new();
            flat(&e["values"], &mut want);
            let got = t["values"].as_array().unwrap();
            assert_eq!(got.len(), want.len(), "{name}: {t}");
            for (g, w) in got.iter().zip(&want) {
                // Floats by value (-0.0 == 0.0); integers, bools and nan/inf exactly.
                if g.is_f64() || w.is_f64() {
                    assert!(g.as_f64() == w.as_f64(), "{name}: {g} vs {w}");
                } else {
                    assert_eq!(g, w, "{name}");
                }
            }
            assert_eq!(t["dtype"], e["dtype"]);
            assert_eq!(t["shape"], e["shape"]);
            assert_eq!(t["truncated"], false);
        } else {
            assert_eq!(status, 422, "{name}: {t}");
            let msg = t["error"].as_str().unwrap();
            assert!(msg.contains(e["dtype"].as_str().unwrap()), "{name}: {msg}");
        }
    }
    assert_eq!(seen, decoded.len());
    // A strided view is read in row-major order: views.pt's `transposed` is base.t() of
    // base = arange(24).view(4, 6).
    let (status, t) = s.get("/api/tensor?path=fixtures/formats/views.pt&name=transposed");
    assert_eq!(status, 200, "{t}");
    let want: Vec<Value> = (0..6)
        .flat_map(|i| (0..4).map(move |j| json!(f64::from(j * 6 + i))))
        .collect();
    assert_eq!(t["values"], Value::Array(want));
    // Unknown names are 404s naming the tensor.
    let (status, t) = s.get("/api/tensor?path=fixtures/formats/dtypes.pt&name=no.such.tensor");
    assert_eq!(status, 404, "{t}");
    assert!(
        t["error"].as_str().unwrap().contains("no.such.tensor"),
        "{t}"
    );
}

/// A safetensors file of one float32 tensor `big` holding 0.5 * i for i in 0..n.
fn big_safetensors(path: &Path, n: usize) {
    let mut header = format!(
        r#"{{"big":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
        n * 4
    );
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + header.len() + n * 4);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for i in 0..n {
        bytes.extend_from_slice(&(i as f32 * 0.5).to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn tensor_reads_no_more_than_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let n = 4 << 20; // 16 MiB of data
    let file = dir.path().join("big.safetensors");
    big_safetensors(&file, n);
    let s = start_in(dir.path(), &["."]);
    let target = |max: Option<u64>| {
        let mut t = "/api/tensor?path=big.safetensors&name=big".to_owned();
        if let Some(m) = max {
            t.push_str(&format!("&max_bytes={m}"));
        }
        t
    };
    for (max, count) in [(Some(4096), 1024usize), (None, 16384), (Some(6), 1)] {
        let before = s.bytes_read();
        let (status, t) = s.get(&target(max));
        let read = s.bytes_read() - before;
        assert_eq!(status, 200, "{t}");
        let values = t["values"].as_array().unwrap();
        assert_eq!(values.len(), count);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(v.as_f64().unwrap(), i as f64 * 0.5);
        }
        assert_eq!(t["truncated"], true);
        assert_eq!(t["shape"], json!([n]));
        // The header, the request and the asked bytes: far from the 16 MiB tensor.
        let asked = max.unwrap_or(65536);
        assert!(
            read < asked + (256 << 10),
            "read {read} bytes for max_bytes={asked}"
        );
    }
    // The whole tensor when it fits the cap.
    let (status, t) = s.get(&target(Some(16 << 20)));
    assert_eq!(status, 200);
    assert_eq!(t["values"].as_array().unwrap().len(), n);
    assert_eq!(t["truncated"], false);
}

#[test]
fn compare_is_the_clis_compare_rows_and_diffs() {
    let s = start(&["examples"]);
    let paths = [
        "examples/lightning/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt",
        "examples/lightning/checkpoints/epoch=02-step=6-hmean=0.7718.ckpt",
        "examples/fsdp/epoch-001.pth",
    ];
    let query: Vec<String> = paths.iter().map(|p| format!("path={}", enc(p))).collect();
    let (status, c) = s.get(&format!("/api/compare?{}", query.join("&")));
    assert_eq!(status, 200, "{c}");
    let mut args = vec!["compare", "--all"];
    args.extend(paths);
    let cli = cli_json(&args).unwrap();
    assert_eq!(c["fields"], cli["rows"]);
    assert_eq!(c["paths"], json!(paths));
    let labels: Vec<Value> = cli["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["label"].clone())
        .collect();
    assert_eq!(c["labels"], Value::Array(labels));
    assert!(
        c["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["differs"] == true)
    );
    let mut tensors = json!({"added": [], "removed": [], "reshaped": [], "retyped": []});
    let mut identity = Vec::new();
    for other in &paths[1..] {
        let d = cli_json(&["diff", paths[0], other]).unwrap();
        if identity.is_empty() {
            identity.push(
                json!({"path": d["a"]["path"], "hash": d["a"]["identity"]["hash"],
                "components": d["a"]["identity"]["components"]}),
            );
        }
        identity.push(
            json!({"path": d["b"]["path"], "hash": d["b"]["identity"]["hash"],
            "components": d["b"]["identity"]["components"]}),
        );
        let arch = &d["diff"]["architecture"];
        for kind in ["added", "removed"] {
            for t in arch[kind].as_array().unwrap() {
                tensors[kind]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"path": other, "name": t[0], "dtype": t[1], "shape": t[2]}));
            }
        }
        for kind in ["reshaped", "retyped"] {
            for t in arch[kind].as_array().unwrap() {
                tensors[kind]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"path": other, "name": t[0], "from": t[1], "to": t[2]}));
            }
        }
    }
    assert_eq!(c["tensors"], tensors);
    assert!(!c["tensors"]["added"].as_array().unwrap().is_empty());
    assert_eq!(c["identity"], Value::Array(identity));
    // More than 16 is refused.
    let many: Vec<String> = (0..17).map(|_| format!("path={}", enc(paths[0]))).collect();
    let (status, body) = s.get(&format!("/api/compare?{}", many.join("&")));
    assert_eq!(status, 400, "{body}");
}

#[test]
fn every_write_is_refused_without_allow_writes() {
    let s = start(&["examples"]);
    for target in [
        "/api/plan/sidecar?path=examples/fsdp/epoch-001.pth",
        "/api/plan/prune?path=examples/lightning&keep_top=1&monitor=val/hmean&mode=max",
        "/api/apply?confirm=0123456789abcdef0123456789abcdef",
    ] {
        let (status, body) = s.post(target);
        assert_eq!(status, 403, "{target}: {body}");
        assert!(body["error"].as_str().unwrap().contains("--allow-writes"));
    }
    assert!(
        !common::root()
            .join("examples/fsdp/epoch-001.metadata.yaml")
            .exists()
    );
    // The wrong method is a JSON 405 too.
    for (method, target) in [
        ("GET", "/api/apply?confirm=x"),
        ("GET", "/api/plan/sidecar?path=x"),
        ("POST", "/api/detail?path=x"),
    ] {
        let (status, body) = s.request(method, target);
        assert_eq!(status, 405, "{method} {target}: {body}");
        assert!(body["error"].as_str().unwrap().contains("POST"), "{body}");
    }
}

/// A copy of `examples/<name>` in a fresh folder.
fn copy_example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(common::root().join("examples").join(name))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

#[test]
fn a_sidecar_plan_shows_the_yaml_and_apply_writes_it_once() {
    let dir = copy_example("fsdp");
    let root = dir.path().to_str().unwrap();
    let s = start_in(dir.path(), &["--allow-writes", root]);
    let ck = format!("{root}/fsdp/epoch-001.pth");
    let yaml = format!("{root}/fsdp/epoch-001.metadata.yaml");
    let (status, p) = s.post(&format!("/api/plan/sidecar?path={}", enc(&ck)));
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["plan"]["action"], "create");
    assert_eq!(p["plan"]["exists"], false);
    assert_eq!(p["plan"]["sidecar"], yaml.as_str());
    let text = p["plan"]["yaml"].as_str().unwrap();
    // The text `ckpt convert-legacy --checkpoint --dry-run` shows; nothing written yet.
    let dry = common::ckpt()
        .args(["convert-legacy", "--dry-run", "--checkpoint", &ck])
        .output()
        .unwrap();
    let dry = String::from_utf8(dry.stdout).unwrap();
    assert!(dry.starts_with(&format!("# {yaml}\n{text}\n")), "{dry}");
    assert!(!Path::new(&yaml).exists());
    let token = p["confirm"].as_str().unwrap();
    // Writes come only from a loopback name: a page that rebound its own name to 127.0.0.1
    // cannot plan or confirm.
    let port = s.port;
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        String::new(),
    ] {
        for target in [
            format!("/api/plan/sidecar?path={}", enc(&ck)),
            format!("/api/apply?confirm={token}"),
        ] {
            let (status, body) = server::request_as(port, &host, "POST", &target);
            assert_eq!(status, 403, "Host: {host}: {target}: {body}");
        }
    }
    let (status, _) = server::request_as(
        port,
        &format!("localhost:{port}"),
        "POST",
        &format!("/api/plan/sidecar?path={}", enc(&ck)),
    );
    assert_eq!(status, 200);
    let (status, a) = s.post(&format!("/api/apply?confirm={token}"));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["applied"]["written"], yaml.as_str());
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), text);
    // A token is good once.
    let (status, again) = s.post(&format!("/api/apply?confirm={token}"));
    assert_eq!(status, 404, "{again}");
    // ckpt's own sidecar may be replaced (as --force would); a hand-written one never.
    let (_, p) = s.post(&format!("/api/plan/sidecar?path={}", enc(&ck)));
    assert_eq!(
        (&p["plan"]["action"], &p["plan"]["written_by_ckpt"]),
        (&json!("replace"), &json!(true)),
        "{p}"
    );
    std::fs::write(&yaml, "mine: true\n").unwrap();
    let (status, p) = s.post(&format!("/api/plan/sidecar?path={}", enc(&ck)));
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["plan"]["action"], "none");
    assert_eq!(p["plan"]["written_by_ckpt"], false);
    assert_eq!(p["confirm"], Value::Null);
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), "mine: true\n");
}

#[test]
fn a_sidecar_that_appeared_after_the_plan_is_a_409_and_is_left_alone() {
    let dir = copy_example("fsdp");
    let root = dir.path().to_str().unwrap();
    let s = start_in(dir.path(), &["--allow-writes", root]);
    let ck = format!("{root}/fsdp/ddp-epoch-002.pth");
    let yaml = format!("{root}/fsdp/ddp-epoch-002.metadata.yaml");
    let (_, p) = s.post(&format!("/api/plan/sidecar?path={}", enc(&ck)));
    std::fs::write(&yaml, "written: meanwhile\n").unwrap();
    let (status, a) = s.post(&format!(
        "/api/apply?confirm={}",
        p["confirm"].as_str().unwrap()
    ));
    assert_eq!(status, 409, "{a}");
    assert_eq!(
        std::fs::read_to_string(&yaml).unwrap(),
        "written: meanwhile\n"
    );
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

const PRUNE: &str = "keep_top=1&monitor=val/hmean&mode=max";

#[test]
fn a_prune_plan_is_the_clis_and_apply_deletes_exactly_it() {
    let dir = copy_example("lightning");
    let root = dir.path().to_str().unwrap();
    let folder = format!("{root}/lightning");
    let s = start_in(dir.path(), &["--allow-writes", root]);
    let (status, p) = s.post(&format!("/api/plan/prune?path={}&{PRUNE}", enc(&folder)));
    assert_eq!(status, 200, "{p}");
    let cli = common::ckpt()
        .args([
            "prune",
            &folder,
            "--keep-top",
            "1",
            "--monitor",
            "val/hmean",
        ])
        .args(["--mode", "max", "--no-cache", "--format", "json"])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{cli:?}");
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(p["plan"], cli["plan"]);
    let planned: Vec<&str> = p["plan"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "delete")
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(planned.len(), 1, "{p}");
    let before = files(dir.path());
    let (_, list) = s.get("/api/checkpoints");
    assert!(list.to_string().contains(planned[0]));
    let (status, a) = s.post(&format!(
        "/api/apply?confirm={}",
        p["confirm"].as_str().unwrap()
    ));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["applied"]["executed"]["deleted"], json!(planned));
    assert_eq!(a["applied"]["executed"]["skipped"], json!([]));
    let gone = Path::new(planned[0])
        .strip_prefix(dir.path())
        .unwrap()
        .display()
        .to_string();
    let expected: Vec<String> = before.into_iter().filter(|f| *f != gone).collect();
    assert_eq!(files(dir.path()), expected);
    // The catalog was rebuilt: the deleted checkpoint is no longer listed.
    let (_, list) = s.get("/api/checkpoints");
    assert!(!list.to_string().contains(planned[0]), "{list}");
    // Spent.
    let (status, _) = s.post(&format!(
        "/api/apply?confirm={}",
        p["confirm"].as_str().unwrap()
    ));
    assert_eq!(status, 404);
}

#[test]
fn a_tree_changed_after_the_prune_plan_is_a_409_and_nothing_is_deleted() {
    let dir = copy_example("lightning");
    let root = dir.path().to_str().unwrap();
    let folder = format!("{root}/lightning");
    let s = start_in(dir.path(), &["--allow-writes", root]);
    let before = files(dir.path());
    // A checkpoint whose mtime moved: the plan was made from another file.
    let (_, p) = s.post(&format!("/api/plan/prune?path={}&{PRUNE}", enc(&folder)));
    let doomed = p["plan"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] == "delete")
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::File::options()
        .write(true)
        .open(&doomed)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    let (status, a) = s.post(&format!(
        "/api/apply?confirm={}",
        p["confirm"].as_str().unwrap()
    ));
    assert_eq!(status, 409, "{a}");
    assert_eq!(files(dir.path()), before);
    // A new checkpoint in the folder: the plan was made without it.
    let (_, p) = s.post(&format!("/api/plan/prune?path={}&{PRUNE}", enc(&folder)));
    std::fs::copy(&doomed, format!("{folder}/checkpoints/copy.ckpt")).unwrap();
    let (status, a) = s.post(&format!(
        "/api/apply?confirm={}",
        p["confirm"].as_str().unwrap()
    ));
    assert_eq!(status, 409, "{a}");
    assert!(Path::new(&doomed).exists());
    // Prune's own argument checks are the CLI's: a mistyped monitor is a 400.
    let (status, body) = s.post(&format!(
        "/api/plan/prune?path={}&keep_top=1&monitor=val/hmaen&mode=max",
        enc(&folder)
    ));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("val/hmaen"),
        "{body}"
    );
    for (query, says) in [
        (PRUNE.to_owned(), "path"),
        (
            format!("path={}&monitor=val/hmean&mode=max", enc(&folder)),
            "keep_top",
        ),
        (
            format!(
                "path={}&keep_top=1&monitor=val/hmean&mode=avg",
                enc(&folder)
            ),
            "mode",
        ),
        (
            format!("path={}&{PRUNE}&keep_evry=2", enc(&folder)),
            "keep_evry",
        ),
    ] {
        let (status, body) = s.post(&format!("/api/plan/prune?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
    assert!(Path::new(&doomed).exists());
}

#[test]
fn dcp_tensor_values_are_its_row_chunks_in_order() {
    let s = start(&["fixtures/convert/dcp"]);
    let (mut matched, mut refused) = (0, 0);
    for case in [
        "conv_bn_linear",
        "fsdp2_dim0",
        "fsdp2_bf16",
        "dtensor_mixed",
    ] {
        let dir = format!("fixtures/convert/dcp/{case}");
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(common::root().join(format!("{dir}.json"))).unwrap(),
        )
        .unwrap();
        let (_, d) = s.get(&format!("/api/detail?path={dir}"));
        let listed: Vec<&str> = d["tensors"]["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        for t in meta["tensors"].as_array().unwrap() {
            let key = t["dcp_key"].as_str().unwrap();
            assert!(listed.contains(&key), "{case}: {key} not in {listed:?}");
            let (status, got) = s.get(&format!(
                "/api/tensor?path={dir}&name={}&max_bytes=16777216",
                enc(key)
            ));
            // Sharded along an inner dimension: refused, saying so.
            let inner = t["chunks"].as_array().unwrap().iter().any(|c| {
                c["offsets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .skip(1)
                    .any(|o| o != 0)
            });
            if inner {
                assert_eq!(status, 422, "{case} {key}: {got}");
                assert!(
                    got["error"].as_str().unwrap().contains("inner dimension"),
                    "{got}"
                );
                refused += 1;
                continue;
            }
            assert_eq!(status, 200, "{case} {key}: {got}");
            let (status, want) = s.get(&format!(
                "/api/tensor?path={dir}.expected.safetensors&name={}&max_bytes=16777216",
                enc(t["name"].as_str().unwrap())
            ));
            assert_eq!(status, 200, "{want}");
            assert_eq!(got["values"], want["values"], "{case} {key}");
            assert_eq!((&got["shape"], &got["dtype"]), (&t["shape"], &t["dtype"]));
            assert_eq!(got["truncated"], false);
            matched += 1;
        }
    }
    assert!(
        matched >= 20 && refused >= 1,
        "{matched} matched, {refused} refused"
    );
    // A cap that ends in the second chunk: `wte.weight` [11, 8] is rows 0..6 and 6..11.
    let dir = "fixtures/convert/dcp/fsdp2_dim0";
    let (_, got) = s.get(&format!(
        "/api/tensor?path={dir}&name=model.wte.weight&max_bytes={}",
        4 * 60
    ));
    let (_, want) = s.get(&format!(
        "/api/tensor?path={dir}.expected.safetensors&name=wte.weight&max_bytes={}",
        4 * 60
    ));
    assert_eq!(got["values"].as_array().unwrap().len(), 60, "{got}");
    assert_eq!(got["values"], want["values"]);
    assert_eq!(got["truncated"], true);
}

#[test]
fn a_file_linked_out_of_a_served_dcp_folder_is_not_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let dcp = dir.path().join("dcp");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(common::root().join("fixtures/benign/dcp"))
        .arg(&dcp)
        .status()
        .unwrap();
    assert!(status.success());
    let outside = common::root().join("fixtures/bad/hostile_os_system.ckpt");
    std::os::unix::fs::symlink(&outside, dcp.join("extra.distcp")).unwrap();
    let s = start_in(dir.path(), &["."]);
    let (status, d) = s.get("/api/detail?path=dcp");
    assert_eq!(status, 200, "{d}");
    let files = d["scan"]["files"].as_array().unwrap();
    let linked = files
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("extra.distcp"))
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(linked["verdict"], "error", "{linked}");
    assert!(
        linked["problems"][0]
            .as_str()
            .unwrap()
            .contains("outside the served paths"),
        "{linked}"
    );
    // Never read: none of its globals are reported.
    assert_eq!(linked["globals"], json!([]), "{linked}");
    assert_eq!(d["scan"]["verdict"], "error");
}

#[test]
fn many_detail_requests_at_once_all_get_the_same_answer() {
    let s = start(&["examples"]);
    let target = format!(
        "/api/detail?path={}",
        enc("examples/lightning/checkpoints/last.ckpt")
    );
    let (_, first) = s.get(&target);
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|_| {
                let (port, target) = (s.port, target.clone());
                scope.spawn(move || server::request(port, "GET", &target))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in answers {
        assert_eq!(status, 200);
        assert_eq!(body, first);
    }
    assert!(first["identity"]["hash"].is_string(), "{first}");
}

#[test]
fn pending_plans_are_bounded_and_the_oldest_goes_first() {
    let dir = copy_example("fsdp");
    let root = dir.path().to_str().unwrap();
    let s = start_in(dir.path(), &["--allow-writes", root]);
    let target = format!(
        "/api/plan/sidecar?path={}",
        enc(&format!("{root}/fsdp/epoch-001.pth"))
    );
    let tokens: Vec<String> = (0..33)
        .map(|_| {
            let (status, p) = s.post(&target);
            assert_eq!(status, 200, "{p}");
            p["confirm"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut unique = tokens.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), tokens.len(), "tokens repeat");
    // 32 wait at most: the first was pushed out by the 33rd.
    let (status, body) = s.post(&format!("/api/apply?confirm={}", tokens[0]));
    assert_eq!(status, 404, "{body}");
    assert!(!Path::new(&format!("{root}/fsdp/epoch-001.metadata.yaml")).exists());
    let (status, body) = s.post(&format!("/api/apply?confirm={}", tokens[32]));
    assert_eq!(status, 200, "{body}");
    // Any other plan of the same file was made before that write: the tree changed.
    let (status, body) = s.post(&format!("/api/apply?confirm={}", tokens[1]));
    assert_eq!(status, 409, "{body}");
}
