//! A `ckpt serve` for tests: started on a free port (`--port 0`, the bound address read from
//! its first stdout line), asked over plain HTTP/1.1 on a `TcpStream`, killed when dropped.
//! Include it with `#[path = "common/server.rs"] mod server;` next to `mod common;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A running `ckpt serve`, killed when dropped (a failing test leaves no server behind).
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// The printed access token, when it listens off loopback (`--host`).
    pub token: Option<String>,
    /// The rest of its stdout, line by line.
    pub lines: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ckpt serve --port 0 --no-cache ARGS…`, run in `dir` with the tests' scrubbed environment.
pub fn start_in(dir: &Path, args: &[&str]) -> Server {
    start_with(dir, args, std::env::var_os("PATH"), None)
}

/// [`start_in`] with this `PATH`, its stderr to `stderr` (else inherited). With `--host` in
/// `args`, the second line's access token is read into [`Server::token`].
pub fn start_with(
    dir: &Path,
    args: &[&str],
    path: Option<std::ffi::OsString>,
    stderr: Option<std::fs::File>,
) -> Server {
    start_with_env(dir, args, path, stderr, &[])
}

/// [`start_with`] with `env` added to the scrubbed environment (a bucket's endpoint and
/// credentials, say).
pub fn start_with_env(
    dir: &Path,
    args: &[&str],
    path: Option<std::ffi::OsString>,
    stderr: Option<std::fs::File>,
    env: &[(&str, String)],
) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ckpt"));
    cmd.current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HOME", crate::common::test_home())
        .arg("serve")
        .args(["--port", "0", "--no-cache"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr.map_or_else(Stdio::inherit, Stdio::from));
    if let Some(path) = path {
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
        lines: rx,
    };
    if args.contains(&"--host") {
        let second = server
            .lines
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

/// [`start_in`] the workspace root.
pub fn start(args: &[&str]) -> Server {
    start_in(&crate::common::root(), args)
}

impl Server {
    /// One request on a fresh connection: see [`request`].
    pub fn request(&self, method: &str, target: &str) -> (u16, Value) {
        request(self.port, method, target)
    }

    pub fn get(&self, target: &str) -> (u16, Value) {
        self.request("GET", target)
    }

    pub fn post(&self, target: &str) -> (u16, Value) {
        self.request("POST", target)
    }

    /// Bytes the server process has read so far (`rchar` of `/proc/PID/io`: every `read`
    /// and `pread`, files and sockets alike).
    pub fn bytes_read(&self) -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.child.id())).unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// One request to the server on `port`, on a fresh connection: the status and the body parsed
/// as JSON (`Null` when empty). A free function, for threads that share only the port.
pub fn request(port: u16, method: &str, target: &str) -> (u16, Value) {
    request_as(port, "127.0.0.1", method, target)
}

/// [`request`] with this `Host` header.
pub fn request_as(port: u16, host: &str, method: &str, target: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"))
    };
    (status, body)
}

/// A query value, percent-encoded (paths hold `=`, spaces …).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
