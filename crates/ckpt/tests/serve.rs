//! `ckpt serve` through the real binary: it is started on a free port (`--port 0`, the bound
//! address read from its first stdout line), asked over plain HTTP/1.1 on a `TcpStream`, and
//! its answers are compared with `ckpt catalog --format json` of the same tree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "common/server.rs"]
mod server;

use server::{start, start_in, start_with};

/// One GET on a fresh connection: the status and the body parsed as JSON (`Null` if empty).
fn get_with(port: u16, target: &str, headers: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"))
    };
    (status, body)
}

fn get(port: u16, target: &str) -> (u16, Value) {
    get_with(port, target, "")
}

/// `ckpt catalog --format json` of the same tree: its `checkpoints`.
fn catalog(args: &[&str]) -> Vec<Value> {
    catalog_in(&common::root(), args)
}

/// The same, run in `dir`.
fn catalog_in(dir: &Path, args: &[&str]) -> Vec<Value> {
    let out = common::ckpt()
        .current_dir(dir)
        .args(["catalog", "--format", "json", "--no-cache"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["checkpoints"].as_array().unwrap().clone()
}

/// `ckpt catalog`'s error line for these arguments, without `ckpt: error: `.
fn catalog_error(args: &[&str]) -> String {
    let out = common::ckpt()
        .args(["catalog", "--format", "json", "--no-cache"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    err.trim_end()
        .strip_prefix("ckpt: error: ")
        .unwrap_or_else(|| panic!("{err}"))
        .to_owned()
}

#[test]
fn list_health_and_one_entry_are_the_catalogs_entries() {
    let expected = catalog(&["examples"]);
    assert!(expected.len() >= 3, "{expected:?}");
    let s = start(&["examples"]);

    let (status, health) = get(s.port, "/api/health");
    assert_eq!(status, 200);
    assert_eq!(
        health,
        serde_json::json!({"ok": true, "checkpoints": expected.len()})
    );

    let (status, page) = get(s.port, "/api/checkpoints");
    assert_eq!(status, 200);
    assert_eq!(page["total"], expected.len());
    assert_eq!(page["checkpoints"].as_array().unwrap(), &expected);

    for e in &expected {
        let path = e["path"].as_str().unwrap();
        let (status, one) = get(s.port, &format!("/api/checkpoint?path={}", encode(path)));
        assert_eq!(status, 200, "{path}");
        assert_eq!(&one, e, "{path}");
    }
    // Another spelling of the same file is resolved to it.
    let first = expected[0]["path"].as_str().unwrap();
    let (dir, name) = first.rsplit_once('/').unwrap();
    let parent = dir.rsplit('/').next().unwrap();
    let respelled = format!("{dir}/../{parent}/{name}");
    let (status, one) = get(
        s.port,
        &format!("/api/checkpoint?path={}", encode(&respelled)),
    );
    assert_eq!(status, 200, "{respelled}");
    assert_eq!(&one, &expected[0]);

    let (status, err) = get(s.port, "/api/checkpoint?path=examples%2Fnope.pt");
    assert_eq!(status, 404);
    assert_eq!(err["error"], "examples/nope.pt: not in the catalog");
    let (status, err) = get(s.port, "/api/checkpoint");
    assert_eq!(status, 400);
    assert!(err["error"].is_string(), "{err}");
    // Not UTF-8 once decoded (read as U+FFFD): no such entry, a JSON error like every other.
    let (status, err) = get(s.port, "/api/checkpoint?path=%FF");
    assert_eq!(status, 404);
    assert!(err["error"].is_string(), "{err}");
    let (status, err) = get(s.port, "/api/nothing");
    assert_eq!(status, 404);
    assert_eq!(err["error"], "no such endpoint");
}

/// Percent-encoding of everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn paging_filter_sort_and_their_errors() {
    let all = catalog(&["examples"]);
    let n = all.len();
    let s = start(&["examples"]);

    let (status, page) = get(s.port, "/api/checkpoints?offset=1&limit=2");
    assert_eq!(status, 200);
    assert_eq!(page["total"], n);
    assert_eq!(page["checkpoints"].as_array().unwrap(), &all[1..3]);
    let (status, page) = get(s.port, &format!("/api/checkpoints?offset={n}"));
    assert_eq!(status, 200);
    assert_eq!(page["total"], n);
    assert_eq!(page["checkpoints"], serde_json::json!([]));
    let (status, err) = get(s.port, "/api/checkpoints?limit=1001");
    assert_eq!(status, 400);
    assert_eq!(err["error"], "limit=1001: at most 1000");
    let (status, err) = get(s.port, "/api/checkpoints?limt=3");
    assert_eq!(status, 400);
    assert!(
        err["error"].as_str().unwrap().contains("unknown parameter"),
        "{err}"
    );

    // The CLI's filter and sort, and the same answer.
    let expected = catalog(&[
        "examples",
        "--filter",
        "experiment=lightning",
        "--filter",
        "global_step>4",
        "--sort",
        "hmean",
        "--desc",
    ]);
    assert!(
        !expected.is_empty() && expected.len() < n,
        "{}",
        expected.len()
    );
    let (status, page) = get(
        s.port,
        &format!(
            "/api/checkpoints?filter={}&filter={}&sort=hmean&desc=1&refresh=1",
            encode("experiment=lightning"),
            encode("global_step>4")
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(page["total"], expected.len());
    assert_eq!(page["checkpoints"].as_array().unwrap(), &expected);

    // A bad filter, an unknown field: 400 with the CLI's own message.
    for bad in ["epoch", "epocj>1"] {
        let (status, err) = get(s.port, &format!("/api/checkpoints?filter={}", encode(bad)));
        assert_eq!(status, 400, "{bad}");
        assert_eq!(
            err,
            serde_json::json!({"error": catalog_error(&["examples", "--filter", bad])}),
            "{bad}"
        );
    }
    let (status, err) = get(s.port, "/api/checkpoints?sort=hmaen");
    assert_eq!(status, 400);
    assert_eq!(
        err["error"],
        catalog_error(&["examples", "--sort", "hmaen"])
    );
}

#[test]
fn nothing_outside_the_roots_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let inner = tmp.path().join("inner");
    let outer = tmp.path().join("outer");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::create_dir_all(&outer).unwrap();
    let src = common::root().join("examples/fsdp/epoch-001.pth");
    std::fs::copy(&src, inner.join("a.pth")).unwrap();
    std::fs::copy(&src, outer.join("secret.pth")).unwrap();
    std::os::unix::fs::symlink(outer.join("secret.pth"), inner.join("escape.pth")).unwrap();

    let s = start_in(tmp.path(), &["inner"]);
    let (status, page) = get(s.port, "/api/checkpoints");
    assert_eq!(status, 200);
    let paths: Vec<&str> = page["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    // The symlink out of the root is left out; the file inside is there.
    assert_eq!(paths, ["inner/a.pth"]);
    assert_eq!(page["total"], 1);

    let (status, _) = get(s.port, "/api/checkpoint?path=inner%2Fa.pth");
    assert_eq!(status, 200);
    let secret = outer.join("secret.pth");
    for p in [
        "inner/escape.pth".to_owned(),
        "inner/../outer/secret.pth".to_owned(),
        "outer/secret.pth".to_owned(),
        secret.display().to_string(),
        "/etc/passwd".to_owned(),
        "inner/../../../../etc/passwd".to_owned(),
    ] {
        let (status, err) = get(s.port, &format!("/api/checkpoint?path={}", encode(&p)));
        assert_eq!(status, 404, "{p}: {err}");
        assert!(
            err["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{p}: ")),
            "{p}: {err}"
        );
    }
    // Encoded once more: `%2e%2e` decodes to `..` once, never twice.
    let (status, _) = get(
        s.port,
        "/api/checkpoint?path=inner%2F%252e%252e%2Fouter%2Fsecret.pth",
    );
    assert_eq!(status, 404);
}

#[test]
fn another_host_needs_the_printed_token() {
    let s = start(&["examples", "--host", "0.0.0.0"]);
    let token = s.token.clone().unwrap();
    for target in ["/api/health", "/api/checkpoints", "/api/nothing"] {
        let (status, err) = get(s.port, target);
        assert_eq!(status, 401, "{target}");
        assert!(err["error"].is_string(), "{err}");
    }
    let (status, _) = get(s.port, "/api/health?token=wrong");
    assert_eq!(status, 401);
    // The page and its files hold no data: they load without the token (and say it is needed).
    for target in ["/", "/assets/app.js", "/assets/app.css"] {
        let (status, _) = status_as(s.port, "127.0.0.1", target);
        assert_eq!(status, 200, "{target}");
    }
    let (status, _) = status_as(s.port, "127.0.0.1", "/assets/nothing.js");
    assert_eq!(status, 404);
    let (status, _) = get_with(s.port, "/api/health", "Authorization: Bearer wrong\r\n");
    assert_eq!(status, 401);

    let (status, health) = get(s.port, &format!("/api/health?token={token}"));
    assert_eq!(status, 200);
    assert_eq!(health["ok"], true);
    let (status, page) = get_with(
        s.port,
        "/api/checkpoints?limit=1",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(status, 200);
    assert_eq!(page["checkpoints"].as_array().unwrap().len(), 1);
    let (status, page) = get(s.port, &format!("/api/checkpoints?limit=1&token={token}"));
    assert_eq!(status, 200, "{page}");
}

#[test]
fn loopback_needs_no_token() {
    let s = start(&["examples"]);
    assert!(s.token.is_none());
    let (status, _) = get(s.port, "/api/health");
    assert_eq!(status, 200);
}

/// The status line and body of one request sent with the given `Host` line (none if empty).
fn status_as(port: u16, host: &str, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let host = if host.is_empty() {
        String::new()
    } else {
        format!("Host: {host}\r\n")
    };
    write!(
        s,
        "GET {target} HTTP/1.1\r\n{host}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

/// Without a token, the `Host` keeps other sites out: a page whose name was rebound to
/// 127.0.0.1 is same-origin to the browser and could otherwise read everything served.
#[test]
fn loopback_serves_only_a_loopback_host() {
    let s = start(&["examples"]);
    let port = s.port;
    for target in [
        "/",
        "/assets/app.js",
        "/api/checkpoints",
        "/api/health",
        "/api/events",
    ] {
        for host in [
            format!("evil.example:{port}"),
            "evil.example".to_owned(),
            String::new(),
        ] {
            let (status, body) = status_as(port, &host, target);
            assert_eq!(status, 403, "Host {host:?} {target}: {body}");
            assert!(body.contains("is not a loopback name"), "{body}");
        }
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "LOCALHOST".to_owned(),
    ] {
        let (status, body) = status_as(port, &host, "/api/health");
        assert_eq!(status, 200, "Host {host:?}: {body}");
    }
}

#[test]
fn sigterm_and_sigint_stop_it_within_two_seconds() {
    for sig in ["TERM", "INT"] {
        let mut s = start(&["examples"]);
        // A client holding an idle keep-alive connection does not keep it up.
        let idle = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let (status, _) = get(s.port, "/api/health");
        assert_eq!(status, 200);
        let t0 = Instant::now();
        let kill = Command::new("kill")
            .args(["-s", sig, &s.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let code = loop {
            if let Some(st) = s.child.try_wait().unwrap() {
                break st.code();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "SIG{sig}: still running after 2 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(code, Some(0), "SIG{sig}");
        drop(idle);
    }
}

#[test]
fn refresh_rebuilds_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let src = common::root().join("examples/fsdp/epoch-001.pth");
    std::fs::copy(&src, tree.join("a.pth")).unwrap();
    let s = start_in(tmp.path(), &["tree"]);
    let (_, page) = get(s.port, "/api/checkpoints");
    assert_eq!(page["total"], 1);
    assert_eq!(page["generation"], 0);

    std::fs::copy(&src, tree.join("b.pth")).unwrap();
    // Whatever the watcher has done yet, `refresh=1` answers from a catalog built after the
    // request came.
    let (status, page) = get(s.port, "/api/checkpoints?refresh=1");
    assert_eq!(status, 200);
    assert_eq!(page["total"], 2);
    assert_eq!(page["generation"], 1);
    let (_, health) = get(s.port, "/api/health");
    assert_eq!(health["checkpoints"], 2);
    let (status, one) = get(s.port, "/api/checkpoint?path=tree%2Fb.pth");
    assert_eq!(status, 200);
    assert_eq!(one["path"], "tree/b.pth");
    // A rebuild that finds nothing new keeps the catalog (and its generation).
    let (_, page) = get(s.port, "/api/checkpoints?refresh=1");
    assert_eq!(page["generation"], 1);
}

/// An open `/api/events` stream: its events as `(name, data)`, read by a thread. HTTP/1.0,
/// so the body comes as it is (no chunks) until the server closes it.
struct Events {
    rx: mpsc::Receiver<(String, Value)>,
    _stream: TcpStream,
}

impl Events {
    fn open(port: u16) -> Events {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET /api/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut name, mut data) = (String::new(), String::new());
            for line in r.lines() {
                let Ok(line) = line else { break };
                if line.is_empty() {
                    if !data.is_empty() {
                        let v = serde_json::from_str(&data)
                            .unwrap_or_else(|e| panic!("{name}: {e}: {data}"));
                        if tx.send((std::mem::take(&mut name), v)).is_err() {
                            break;
                        }
                    }
                    data.clear();
                } else if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
        });
        Events { rx, _stream: s }
    }

    /// The next event, waiting at most `secs` seconds (a bound, not a speed requirement).
    fn next(&self, secs: u64) -> (String, Value) {
        self.rx
            .recv_timeout(Duration::from_secs(secs))
            .unwrap_or_else(|e| panic!("no event within {secs} s: {e}"))
    }
}

/// A catalog entry of `dir`'s tree by path, as `ckpt catalog --format json` prints it.
fn entry_in(dir: &Path, root: &str, path: &str) -> Value {
    catalog_in(dir, &[root])
        .into_iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not in the catalog"))
}

#[test]
fn events_say_what_was_added_changed_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let fsdp = common::root().join("examples/fsdp/epoch-001.pth");
    let lightning = common::root().join("examples/lightning/checkpoints/last.ckpt");
    std::fs::copy(&fsdp, tree.join("a.pth")).unwrap();
    let s = start_in(tmp.path(), &["tree"]);
    let ev = Events::open(s.port);
    assert_eq!(
        ev.next(10),
        (
            "hello".to_owned(),
            serde_json::json!({"generation": 0, "total": 1})
        )
    );

    // Added: the entry exactly as the catalog has it.
    std::fs::copy(&fsdp, tree.join("b.pth")).unwrap();
    let (name, data) = ev.next(30);
    assert_eq!(name, "added", "{data}");
    assert_eq!(data["generation"], 1);
    assert_eq!(data["entry"], entry_in(tmp.path(), "tree", "tree/b.pth"));
    let (_, page) = get(s.port, "/api/checkpoints");
    assert_eq!(
        (page["total"].clone(), page["generation"].clone()),
        (2.into(), 1.into())
    );

    // Changed: another checkpoint written over it (a rename, as savers do).
    std::fs::copy(&lightning, tree.join("b.pth.tmp")).unwrap();
    std::fs::rename(tree.join("b.pth.tmp"), tree.join("b.pth")).unwrap();
    let (name, data) = ev.next(30);
    assert_eq!(name, "changed", "{data}");
    assert_eq!(data["generation"], 2);
    assert_eq!(data["entry"], entry_in(tmp.path(), "tree", "tree/b.pth"));
    assert_eq!(data["entry"]["format"], "zip");

    // Removed: its path.
    std::fs::remove_file(tree.join("a.pth")).unwrap();
    let (name, data) = ev.next(30);
    assert_eq!(name, "removed", "{data}");
    assert_eq!(
        data,
        serde_json::json!({"generation": 3, "path": "tree/a.pth"})
    );
    let (_, page) = get(s.port, "/api/checkpoints");
    assert_eq!(page["total"], 1);
    assert_eq!(page["generation"], 3);

    let (status, err) = get(s.port, "/api/events?since=1");
    assert_eq!(status, 400);
    assert!(
        err["error"].as_str().unwrap().contains("unknown parameter"),
        "{err}"
    );

    // A client connecting now is told where things stand.
    let late = Events::open(s.port);
    assert_eq!(
        late.next(10),
        (
            "hello".to_owned(),
            serde_json::json!({"generation": 3, "total": 1})
        )
    );
}

#[test]
fn a_checkpoint_being_written_appears_once_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let bytes =
        std::fs::read(common::root().join("examples/lightning/checkpoints/last.ckpt")).unwrap();
    let s = start_in(tmp.path(), &["tree"]);
    let ev = Events::open(s.port);
    assert_eq!(ev.next(10).0, "hello");
    // Half a zip, a pause longer than the watcher's quiet time, then the rest: the first
    // event is the whole checkpoint (a half file shown would be an `added` with an error).
    let mut f = std::fs::File::create(tree.join("c.ckpt")).unwrap();
    f.write_all(&bytes[..bytes.len() / 2]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(f);
    let (name, data) = ev.next(30);
    assert_eq!(name, "added", "{data}");
    assert_eq!(data["entry"]["error"], Value::Null, "{data}");
    assert_eq!(data["entry"], entry_in(tmp.path(), "tree", "tree/c.ckpt"));
}

#[test]
fn search_totals_generation_and_fields() {
    let all = catalog(&["examples"]);
    let s = start(&["examples"]);
    let sum = |es: &[&Value]| -> u64 { es.iter().map(|e| e["size_bytes"].as_u64().unwrap()).sum() };

    let (status, page) = get(s.port, "/api/checkpoints?limit=1");
    assert_eq!(status, 200);
    assert_eq!(page["total"], all.len());
    assert_eq!(page["size_bytes"], sum(&all.iter().collect::<Vec<_>>()));
    assert_eq!(page["generation"], 0);
    assert_eq!(page["checkpoints"].as_array().unwrap().len(), 1);

    // q: every word, case-insensitively, in the path, experiment, run, task or architecture.
    let text = |e: &Value| {
        ["path", "experiment", "run", "task"]
            .iter()
            .map(|k| e[*k].as_str().unwrap_or("").to_lowercase())
            .chain([e["model"]["architecture"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()])
            .collect::<Vec<_>>()
    };
    for q in [
        "LIGHTNING",
        "dbnet last",
        "fsdp epoch",
        "nothing-like-this",
        "  ",
    ] {
        let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
        let expected: Vec<&Value> = all
            .iter()
            .filter(|e| {
                let t = text(e);
                words
                    .iter()
                    .all(|w| t.iter().any(|f| f.contains(w.as_str())))
            })
            .collect();
        let (status, page) = get(s.port, &format!("/api/checkpoints?q={}", encode(q)));
        assert_eq!(status, 200, "{q}");
        let got: Vec<&Value> = page["checkpoints"].as_array().unwrap().iter().collect();
        assert_eq!(got, expected, "q={q:?}");
        assert_eq!(page["total"], expected.len(), "{q}");
        assert_eq!(page["size_bytes"], sum(&expected), "{q}");
    }
    let (_, page) = get(s.port, "/api/checkpoints?q=dbnet");
    assert!(page["total"].as_u64().unwrap() >= 2, "{page}");
    // `q` repeated: the words of all of them.
    assert_eq!(
        get(s.port, "/api/checkpoints?q=dbnet&q=LAST"),
        get(s.port, "/api/checkpoints?q=dbnet+last")
    );
    assert!(page["total"].as_u64().unwrap() < all.len() as u64, "{page}");

    // q with a filter and a sort: the filter's and sort's answer, less what q leaves out.
    let sorted = catalog(&[
        "examples",
        "--filter",
        "global_step>0",
        "--sort",
        "epoch",
        "--desc",
    ]);
    let (_, page) = get(
        s.port,
        &format!(
            "/api/checkpoints?filter={}&sort=epoch&desc=1&q=lightning",
            encode("global_step>0")
        ),
    );
    let expected: Vec<&Value> = sorted
        .iter()
        .filter(|e| text(e).iter().any(|f| f.contains("lightning")))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        page["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        expected
    );

    // fields: each field with its kind and how many entries have it.
    let (status, fields) = get(s.port, "/api/fields");
    assert_eq!(status, 200);
    let fields = fields["fields"].as_array().unwrap();
    let find = |n: &str| {
        fields
            .iter()
            .find(|f| f["name"] == n)
            .unwrap_or_else(|| panic!("{n} not in {fields:?}"))
            .clone()
    };
    let count = |pred: &dyn Fn(&Value) -> bool| all.iter().filter(|e| pred(e)).count();
    assert_eq!(
        find("path"),
        serde_json::json!({"name": "path", "kind": "string", "count": all.len()})
    );
    assert_eq!(
        find("epoch"),
        serde_json::json!({"name": "epoch", "kind": "number",
                           "count": count(&|e| !e["epoch"].is_null())})
    );
    assert_eq!(find("is_best")["kind"], "bool");
    assert_eq!(
        find("metrics.hmean"),
        serde_json::json!({"name": "metrics.hmean", "kind": "number",
                           "count": count(&|e| !e["metrics"]["hmean"].is_null())})
    );
    assert_eq!(find("model.architecture")["kind"], "string");
    // Leaves of nested objects, by their dotted path.
    let lr = find("hparams.optimizer.lr");
    assert_eq!(lr["kind"], "number");
    assert_eq!(
        lr["count"],
        count(&|e| !e["hparams"]["optimizer"]["lr"].is_null())
    );
    assert_eq!(find("model.decoder.in_channels")["kind"], "array");
    // Containers are listed by their leaves only; no field without an entry having it.
    for f in fields {
        let n = f["name"].as_str().unwrap();
        assert!(
            ![
                "metrics",
                "model",
                "hparams",
                "data",
                "sources",
                "conflicts"
            ]
            .contains(&n)
        );
        assert!(f["count"].as_u64().unwrap() > 0, "{f}");
    }
    // Every field listed can be sorted and filtered on (the CLI knows it).
    for f in fields.iter().filter(|f| f["kind"] == "number").take(20) {
        let n = f["name"].as_str().unwrap();
        let (status, page) = get(s.port, &format!("/api/checkpoints?sort={}", encode(n)));
        assert_eq!(status, 200, "{n}: {page}");
        assert_eq!(
            page["checkpoints"].as_array().unwrap(),
            &catalog(&["examples", "--sort", n]),
            "{n}"
        );
    }
    let (status, err) = get(s.port, "/api/fields?x=1");
    assert_eq!(status, 400);
    assert!(
        err["error"].as_str().unwrap().contains("unknown parameter"),
        "{err}"
    );
}

/// A tree of `folders` x `per` hard links of one small Lightning checkpoint (as
/// scripts/bench_catalog.py builds its 10,000).
fn many(dir: &Path, folders: usize, per: usize) {
    let one = dir.join("one.ckpt");
    std::fs::copy(
        common::root().join("examples/lightning/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt"),
        &one,
    )
    .unwrap();
    for i in 0..folders {
        let d = dir.join(format!("t/exp{i:02}/checkpoints"));
        std::fs::create_dir_all(&d).unwrap();
        for j in 0..per {
            std::fs::hard_link(&one, d.join(format!("epoch={j:02}-step={j}.ckpt"))).unwrap();
        }
    }
}

#[test]
fn fifty_concurrent_clients_get_the_single_client_answers() {
    let tmp = tempfile::tempdir().unwrap();
    many(tmp.path(), 40, 50);
    let targets: Vec<String> = vec![
        "/api/checkpoints?limit=100".into(),
        "/api/checkpoints?offset=1234&limit=50".into(),
        "/api/checkpoints?sort=hmean&desc=1&offset=700&limit=100".into(),
        "/api/checkpoints?sort=path&desc=1&offset=1950&limit=100".into(),
        format!(
            "/api/checkpoints?filter={}&filter={}&sort=experiment&desc=1&limit=100",
            encode("path~step=1"),
            encode("experiment>=exp20")
        ),
        "/api/checkpoints?q=exp1+checkpoints&sort=modified&offset=10&limit=20".into(),
        "/api/checkpoints?q=EXP3&limit=1000".into(),
        "/api/checkpoints?sort=global_step&offset=500&limit=1000".into(),
        format!("/api/checkpoints?filter={}", encode("epocj>1")),
        "/api/fields".into(),
    ];
    // The single-client answers, from one server…
    let single: Vec<(u16, Value)> = {
        let s = start_in(tmp.path(), &["t"]);
        let (_, page) = get(s.port, "/api/checkpoints?limit=1");
        assert_eq!(page["total"], 2000);
        targets.iter().map(|t| get(s.port, t)).collect()
    };
    assert_eq!(single[8].0, 400);
    assert!(single.iter().filter(|(st, _)| *st == 200).count() == targets.len() - 1);
    assert_eq!(single[4].1["total"], 20 * 11);
    // …and 50 clients at once on a fresh one (its memos are filled by the rush itself).
    let s = start_in(tmp.path(), &["t"]);
    let port = s.port;
    let rounds = 8;
    let handles: Vec<_> = (0..50)
        .map(|c| {
            let targets = targets.clone();
            let single = single.clone();
            std::thread::spawn(move || {
                let mut wrong = Vec::new();
                for r in 0..rounds {
                    let i = (c + r) % targets.len();
                    let got = get(port, &targets[i]);
                    if got != single[i] {
                        wrong.push(format!("client {c}: {}: status {}", targets[i], got.0));
                    }
                }
                wrong
            })
        })
        .collect();
    let wrong: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        wrong.is_empty(),
        "{} wrong answers: {wrong:#?}",
        wrong.len()
    );
}

#[test]
fn encoded_traversal_and_symlinked_folders_out_are_not_served() {
    let tmp = tempfile::tempdir().unwrap();
    let inner = tmp.path().join("inner");
    let outer = tmp.path().join("outer");
    std::fs::create_dir_all(inner.join("sub")).unwrap();
    std::fs::create_dir_all(&outer).unwrap();
    let src = common::root().join("examples/fsdp/epoch-001.pth");
    std::fs::copy(&src, inner.join("sub/a.pth")).unwrap();
    std::fs::copy(&src, outer.join("secret.pth")).unwrap();
    // A folder inside the root that is a symlink to one outside.
    std::os::unix::fs::symlink(&outer, inner.join("linked")).unwrap();

    let s = start_in(tmp.path(), &["inner"]);
    let (_, page) = get(s.port, "/api/checkpoints");
    let paths: Vec<&str> = page["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["inner/sub/a.pth"]);
    let (_, page) = get(
        s.port,
        &format!("/api/checkpoints?q=secret&filter={}", encode("path~outer")),
    );
    assert_eq!(page["total"], 0);

    let secret = outer.join("secret.pth").display().to_string();
    for target in [
        // `..` encoded once (decoded once by the query parser: still `..`).
        "inner%2Fsub%2F%2e%2e%2F%2e%2e%2Fouter%2Fsecret.pth".to_owned(),
        "inner/sub/%2e%2e/%2e%2e/outer/secret.pth".to_owned(),
        "inner%2F%2E%2E%2Fouter%2Fsecret.pth".to_owned(),
        // Encoded slashes and dots throughout.
        "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd".to_owned(),
        // Through the symlinked folder.
        "inner%2Flinked%2Fsecret.pth".to_owned(),
        "inner/linked/secret.pth".to_owned(),
        // Absolute paths outside the roots.
        encode(&secret),
        encode(&outer.display().to_string()),
        "%2Fetc%2Fpasswd".to_owned(),
        "%2F%2E%2E%2Fetc%2Fpasswd".to_owned(),
        // Empty segments and a NUL.
        "inner%2F%2F..%2F..%2Fouter%2Fsecret.pth".to_owned(),
        "inner%2Fsub%2Fa.pth%00".to_owned(),
    ] {
        let (status, err) = get(s.port, &format!("/api/checkpoint?path={target}"));
        assert_eq!(status, 404, "{target}: {err}");
        assert!(err["error"].is_string(), "{target}: {err}");
    }
    // The real file, through spellings that stay inside: found.
    for target in [
        "inner%2Fsub%2Fa.pth",
        "inner/sub/../sub/a.pth",
        "inner%2F.%2Fsub%2Fa.pth",
    ] {
        let (status, one) = get(s.port, &format!("/api/checkpoint?path={target}"));
        assert_eq!(status, 200, "{target}: {one}");
        assert_eq!(one["path"], "inner/sub/a.pth");
    }
}

#[test]
fn sigterm_stops_it_promptly_with_event_streams_open() {
    let mut s = start(&["examples"]);
    let streams: Vec<Events> = (0..3).map(|_| Events::open(s.port)).collect();
    for ev in &streams {
        assert_eq!(ev.next(10).0, "hello");
    }
    let t0 = Instant::now();
    let kill = Command::new("kill")
        .args(["-s", "TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let code = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM with event streams open"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(code, Some(0));
    // The streams were ended, not left hanging.
    for ev in &streams {
        assert!(matches!(
            ev.rx.recv_timeout(Duration::from_secs(5)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}

#[test]
fn open_starts_the_desktops_opener_or_says_it_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Without an opener on PATH: one line, and it serves all the same.
    let err_file = tmp.path().join("stderr.txt");
    let s = start_with(
        &common::root(),
        &["examples", "--open"],
        Some(bin.clone().into_os_string()),
        Some(std::fs::File::create(&err_file).unwrap()),
    );
    let (status, _) = get(s.port, "/api/health");
    assert_eq!(status, 200);
    let err = std::fs::read_to_string(&err_file).unwrap();
    let expected = format!(
        "ckpt serve: could not open a browser (no xdg-open or open on PATH); open http://127.0.0.1:{}/\n",
        s.port
    );
    assert!(err.contains(&expected), "{err:?}");
    drop(s);

    // With one: it is given the page's address.
    let got = tmp.path().join("opened.txt");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\necho \"$@\" > {}.tmp && mv {0}.tmp {0}\n",
            got.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths([bin.clone(), "/bin".into(), "/usr/bin".into()]).unwrap();
    let s = start_with(&common::root(), &["examples", "--open"], Some(path), None);
    let t0 = Instant::now();
    while !got.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "xdg-open was not run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&got).unwrap(),
        format!("http://127.0.0.1:{}/\n", s.port)
    );
}

#[test]
fn events_come_from_listing_the_trees_with_poll() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("run")).unwrap();
    let fsdp = common::root().join("examples/fsdp/epoch-001.pth");
    let s = start_in(tmp.path(), &["tree", "--poll"]);
    let ev = Events::open(s.port);
    assert_eq!(
        ev.next(10),
        (
            "hello".to_owned(),
            serde_json::json!({"generation": 0, "total": 0})
        )
    );
    std::fs::copy(&fsdp, tree.join("run/a.pth")).unwrap();
    let (name, data) = ev.next(30);
    assert_eq!(name, "added", "{data}");
    assert_eq!(
        data["entry"],
        entry_in(tmp.path(), "tree", "tree/run/a.pth")
    );
    std::fs::remove_file(tree.join("run/a.pth")).unwrap();
    let (name, data) = ev.next(30);
    assert_eq!(
        (name.as_str(), data),
        (
            "removed",
            serde_json::json!({"generation": 2, "path": "tree/run/a.pth"})
        )
    );
}
