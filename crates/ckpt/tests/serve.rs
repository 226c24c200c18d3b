//! `ckpt serve` through the real binary: it is started on a free port (`--port 0`, the bound
//! address read from its first stdout line), asked over plain HTTP/1.1 on a `TcpStream`, and
//! its answers are compared with `ckpt catalog --format json` of the same tree.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `ckpt serve`, killed when dropped (a failing test leaves no server behind).
struct Server {
    child: Child,
    port: u16,
    token: Option<String>,
    /// The rest of its stdout, line by line.
    _lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Server {
    start_in(&common::root(), args)
}

fn start_in(dir: &Path, args: &[&str]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ckpt"));
    cmd.current_dir(dir)
        .env_clear()
        .env("HOME", common::test_home())
        .arg("serve")
        .args(["--port", "0", "--no-cache"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("ckpt serve printed no first line within 60 s");
    let addr = first
        .strip_prefix("ckpt serve: listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let port = addr.parse::<SocketAddr>().unwrap().port();
    let mut server = Server {
        child,
        port,
        token: None,
        _lines: rx,
    };
    if args.contains(&"--host") {
        let second = server
            ._lines
            .recv_timeout(Duration::from_secs(5))
            .expect("no token line");
        let token = second
            .strip_prefix("ckpt serve: access token ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected second line {second:?}"));
        assert_eq!(token.len(), 32, "{second}");
        server.token = Some(token.to_owned());
    }
    server
}

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
    let out = common::ckpt()
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
fn the_catalog_is_rebuilt_on_refresh_only() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let src = common::root().join("examples/fsdp/epoch-001.pth");
    std::fs::copy(&src, tree.join("a.pth")).unwrap();
    let s = start_in(tmp.path(), &["tree"]);
    let (_, page) = get(s.port, "/api/checkpoints");
    assert_eq!(page["total"], 1);

    std::fs::copy(&src, tree.join("b.pth")).unwrap();
    // Not yet: the catalog is the one built at start until a refresh is asked for.
    let (_, page) = get(s.port, "/api/checkpoints");
    assert_eq!(page["total"], 1);
    let (_, health) = get(s.port, "/api/health");
    assert_eq!(health["checkpoints"], 1);
    let (status, page) = get(s.port, "/api/checkpoints?refresh=1");
    assert_eq!(status, 200);
    assert_eq!(page["total"], 2);
    let (_, health) = get(s.port, "/api/health");
    assert_eq!(health["checkpoints"], 2);
    let (status, one) = get(s.port, "/api/checkpoint?path=tree%2Fb.pth");
    assert_eq!(status, 200);
    assert_eq!(one["path"], "tree/b.pth");
}
