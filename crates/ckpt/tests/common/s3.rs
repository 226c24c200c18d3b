//! A real S3-compatible server for the object-storage tests: `scripts/s3_server.py` (moto's
//! S3 behind a counting, fault-injecting middleware) on a free loopback port, one per test,
//! killed when dropped. Include it with `#[path = "common/s3.rs"] mod s3;` next to
//! `mod common;`.
//!
//! The Python comes from `CKPT_S3_PYTHON` (scripts/test sets it to the interpreter of the venv
//! it makes from scripts/s3-requirements.txt); the tests that use this are `#[ignore]`d, so a
//! plain `cargo test` never needs it, and running them without it fails with a message saying
//! how to run them instead of passing without testing anything.
//!
//! The server counts what ckpt asks of it (`/_ckpt/stats`): request counts are the figures the
//! tests pin, never wall time.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The environment variable naming the Python that has moto (scripts/s3-requirements.txt).
pub const PYTHON_ENV: &str = "CKPT_S3_PYTHON";

/// A running `scripts/s3_server.py`; killed (its own pid) when dropped.
pub struct S3 {
    child: Child,
    /// Held open: the server exits when its stdin closes, so it cannot outlive this process
    /// even when the test process is killed before `Drop` runs.
    _stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    addr: SocketAddr,
    /// The ckpt cache folder of this test (`CKPT_CACHE_DIR`), fresh per server.
    pub cache_dir: tempfile::TempDir,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the server counted since the last reset (`GET /_ckpt/stats`).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub get: u64,
    pub list: u64,
    pub head: u64,
    pub put: u64,
    pub other: u64,
    pub requests: u64,
    pub bytes_out: u64,
    /// `[method, key, range, status, bytes]` per request, in arrival order.
    pub log: Vec<(String, String, String, u64, u64)>,
}

impl Stats {
    fn from_json(v: &Value) -> Stats {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let log = v["log"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r[0].as_str().unwrap_or("").to_owned(),
                            r[1].as_str().unwrap_or("").to_owned(),
                            r[2].as_str().unwrap_or("").to_owned(),
                            r[3].as_u64().unwrap_or(0),
                            r[4].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Stats {
            get: n("GET"),
            list: n("LIST"),
            head: n("HEAD"),
            put: n("PUT"),
            other: n("OTHER"),
            requests: n("requests"),
            bytes_out: n("bytes_out"),
            log,
        }
    }

    /// GETs of objects (not listings) whose key ends with `suffix`.
    pub fn gets_of(&self, suffix: &str) -> usize {
        self.log
            .iter()
            .filter(|r| r.0 == "GET" && r.1.ends_with(suffix))
            .count()
    }

    /// The log, one request a line, for assertion messages.
    pub fn show(&self) -> String {
        self.log
            .iter()
            .map(|(m, k, r, s, b)| format!("  {m} {k} {r} -> {s} ({b} bytes)"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn python() -> String {
    match std::env::var(PYTHON_ENV) {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "{PYTHON_ENV} is not set: these tests need a real S3-compatible server \
             (scripts/s3_server.py, moto). Run them with `scripts/test --s3`, which makes the \
             venv from scripts/s3-requirements.txt and sets {PYTHON_ENV}; or by hand: \
             {PYTHON_ENV}=/path/to/venv/bin/python cargo test -p ckpt --test object_store -- --ignored"
        ),
    }
}

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

impl S3 {
    /// Start a server on a free loopback port and wait for its `READY` line (30 s at most).
    pub fn start() -> S3 {
        let script = root().join("scripts/s3_server.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .env_remove("AWS_PROFILE")
            .env_remove("MOTO_S3_DEFAULT_MAX_KEYS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("scripts/s3_server.py printed no READY line within 30 s");
            }
        };
        let Some(url) = line.trim().strip_prefix("READY ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scripts/s3_server.py did not start: first line {line:?}");
        };
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| panic!("READY url {url}: {e}"));
        S3 {
            child,
            _stdin: stdin,
            url,
            addr,
            cache_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// One control request (`/_ckpt/WHAT?QUERY`) over plain HTTP/1.1; the JSON answer.
    fn control(&self, method: &str, what: &str) -> Value {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
        write!(
            s,
            "{method} /_ckpt/{what} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let text = String::from_utf8_lossy(&resp);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).unwrap_or("");
        assert_eq!(status, "200", "/_ckpt/{what}: {head}\n{body}");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("/_ckpt/{what}: {e}: {body}"))
    }

    /// Create `bucket` if needed and upload every file under `dir` to `prefix/<relative
    /// path>`; returns the number of objects.
    pub fn upload_dir(&self, bucket: &str, prefix: &str, dir: &Path) -> u64 {
        let v = self.control(
            "POST",
            &format!(
                "upload?bucket={}&prefix={}&dir={}",
                enc(bucket),
                enc(prefix),
                enc(&dir.canonicalize().unwrap().to_string_lossy())
            ),
        );
        v["objects"].as_u64().unwrap()
    }

    /// Upload one file as `bucket/key` (the bucket is created if needed).
    pub fn upload_file(&self, bucket: &str, key: &str, file: &Path) {
        self.control(
            "POST",
            &format!(
                "upload?bucket={}&key={}&file={}",
                enc(bucket),
                enc(key),
                enc(&file.canonicalize().unwrap().to_string_lossy())
            ),
        );
    }

    /// Upload `bytes` as `bucket/key`.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("object");
        std::fs::write(&f, bytes).unwrap();
        self.upload_file(bucket, key, &f);
    }

    /// The counts since the last [`S3::reset`].
    pub fn stats(&self) -> Stats {
        Stats::from_json(&self.control("GET", "stats"))
    }

    /// Zero the counts and drop pending faults.
    pub fn reset(&self) {
        self.control("POST", "reset");
    }

    /// Fail the next requests that match: `query` is the `/_ckpt/fail` query string, e.g.
    /// `method=GET&status=503&code=SlowDown&count=2&key=run/last.ckpt`.
    pub fn fail(&self, query: &str) {
        self.control("POST", &format!("fail?{query}"));
    }

    /// Serve `k` more data requests, then exit on the next one.
    pub fn die_after(&self, k: u64) {
        self.control("POST", &format!("die-after?requests={k}"));
    }

    /// Overwrite `bucket/key` with different bytes of the same length just before its next
    /// GET is served.
    pub fn replace_on_get(&self, bucket: &str, key: &str) {
        self.control(
            "POST",
            &format!("replace-on-get?bucket={}&key={}", enc(bucket), enc(key)),
        );
    }

    /// List at most `n` keys per page (forces pagination on small trees).
    pub fn max_keys(&self, n: u64) {
        self.control("POST", &format!("max-keys?n={n}"));
    }

    /// The environment the ckpt binary needs to talk to this server, and only this server:
    /// static test credentials (so no instance-metadata probe is ever made), its endpoint
    /// with plain HTTP allowed, and fast retries (2, short backoff) so that fault tests take
    /// seconds.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("CKPT_IO_RETRIES", "2".into()),
            ("CKPT_IO_RETRY_TIMEOUT_MS", "5000".into()),
            ("CKPT_IO_BACKOFF_MS", "50".into()),
            (
                "CKPT_CACHE_DIR",
                self.cache_dir.path().to_string_lossy().into_owned(),
            ),
        ]
    }

    /// `common::ckpt()` (scrubbed environment, repository root) with [`S3::env`].
    pub fn ckpt(&self) -> assert_cmd::Command {
        let mut c = crate::common::ckpt();
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c.timeout(Duration::from_secs(120));
        c
    }

    /// Run `ckpt ARGS…` against this server: (exit code, stdout, stderr).
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> (i32, String, String) {
        let o = self.ckpt().args(args).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Whether the server process has exited (after [`S3::die_after`]).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// Percent-encoding for a query value (unreserved characters and `/` pass).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
