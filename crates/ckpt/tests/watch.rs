//! `ckpt watch`, through the real binary, while checkpoints are written the way training
//! writes them: slowly in chunks with pauses, into a temporary name then renamed, cut off
//! and never finished, 200 at once, deleted. Every wait polls against a deadline; the 2 s
//! promises (sidecar after completion, stop after SIGTERM) are measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ckpt_test_support::{model_tensors, write_dcp_checkpoint, write_lightning_checkpoint};
use common::{ckpt, test_home};

/// Held by the tests that measure a 2 s promise and by the ones that load the machine most
/// (200 files, catalog runs in a loop), so that a measurement never shares two cores with a
/// burst.
static TIMED: Mutex<()> = Mutex::new(());

fn timed() -> std::sync::MutexGuard<'static, ()> {
    TIMED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running `ckpt watch`, its output lines gathered as they come.
struct Watcher {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

fn gather(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(line) => l.lock().unwrap().push(line),
                Err(_) => break,
            }
        }
    });
    lines
}

impl Watcher {
    /// Start `ckpt watch ARGS… DIR` (cwd: `dir`'s parent, so lines name `DIR/…` relative) and
    /// wait until it says it is watching.
    fn start(dir: &Path, cache: &Path, extra: &[&str]) -> Watcher {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ckpt"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", test_home())
            .current_dir(dir.parent().unwrap())
            .arg("watch")
            .args(extra)
            .arg("--cache-file")
            .arg(cache)
            .arg(dir.file_name().unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let out = gather(child.stdout.take().unwrap());
        let err = gather(child.stderr.take().unwrap());
        let w = Watcher { child, out, err };
        w.wait_err(|l| l.starts_with("ckpt: watching"), Duration::from_secs(10));
        w
    }

    fn out(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    fn err(&self) -> Vec<String> {
        self.err.lock().unwrap().clone()
    }

    /// Wait (polling) until some stdout line satisfies `f`; the line.
    fn wait_out(&self, f: impl Fn(&str) -> bool, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            if let Some(l) = self.out().into_iter().find(|l| f(l)) {
                return l;
            }
            assert!(
                Instant::now() < end,
                "no such line within {within:?}; stdout: {:?}; stderr: {:?}",
                self.out(),
                self.err()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_err(&self, f: impl Fn(&str) -> bool, within: Duration) {
        let end = Instant::now() + within;
        while !self.err().iter().any(|l| f(l)) {
            assert!(
                Instant::now() < end,
                "no such stderr line within {within:?}; stderr: {:?}",
                self.err()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGTERM, then the exit status, which must come within 2 s.
    fn stop(mut self) -> (i32, Vec<String>, Vec<String>) {
        self.signal("-TERM");
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                let took = start.elapsed();
                assert!(took < Duration::from_secs(2), "stopped after {took:?}");
                // Let the readers drain what was printed last.
                std::thread::sleep(Duration::from_millis(50));
                return (s.code().unwrap_or(-1), self.out(), self.err());
            }
            if start.elapsed() > Duration::from_secs(2) {
                let _ = self.child.kill();
                panic!("still running 2 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes of a small Lightning checkpoint (made outside the watched tree).
fn checkpoint_bytes(n: usize, kib: u64) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.ckpt");
    write_lightning_checkpoint(&p, &model_tensors(n, kib << 10)).unwrap();
    std::fs::read(p).unwrap()
}

fn wait_until(what: &str, within: Duration, f: impl Fn() -> bool) {
    let end = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < end, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sidecar(p: &Path) -> PathBuf {
    let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
    p.with_file_name(format!("{stem}.metadata.yaml"))
}

struct Tree {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    cache: PathBuf,
}

fn tree() -> Tree {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("runs");
    std::fs::create_dir(&dir).unwrap();
    let cache = tmp.path().join("cache.sqlite3");
    Tree {
        _tmp: tmp,
        dir,
        cache,
    }
}

/// Written in 8 chunks with 400 ms pauses (longer than the watcher's settle time, so the
/// unfinished file sits unchanged between two of its checks): no sidecar until the last
/// byte; then one, within 2 s, with what `convert-legacy --checkpoint` writes.
fn slow_writer(extra: &[&str]) {
    let _timed = timed();
    let t = tree();
    let w = Watcher::start(&t.dir, &t.cache, extra);
    let bytes = checkpoint_bytes(6, 256);
    let p = t.dir.join("epoch=3-step=120.ckpt");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = bytes.len().div_ceil(8);
    let parts: Vec<&[u8]> = bytes.chunks(chunk).collect();
    let (last, first) = parts.split_last().unwrap();
    for part in first {
        f.write_all(part).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert!(!sidecar(&p).exists(), "a sidecar before the file was whole");
    }
    f.write_all(last).unwrap();
    drop(f);
    let done = Instant::now();
    wait_until("the sidecar", Duration::from_secs(2), || {
        sidecar(&p).exists()
    });
    let took = done.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    w.wait_out(
        |l| l == "wrote runs/epoch=3-step=120.metadata.yaml",
        Duration::from_secs(2),
    );
    let (code, out, err) = w.stop();
    assert_eq!(code, 0, "{err:?}");
    assert_eq!(
        out,
        ["wrote runs/epoch=3-step=120.metadata.yaml"],
        "{err:?}"
    );
    // The same values as convert-legacy --checkpoint (but the write times).
    let ours = std::fs::read_to_string(sidecar(&p)).unwrap();
    std::fs::remove_file(sidecar(&p)).unwrap();
    ckpt()
        .args(["convert-legacy", "--checkpoint"])
        .arg(&p)
        .assert()
        .success();
    let theirs = std::fs::read_to_string(sidecar(&p)).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn a_checkpoint_written_slowly_gets_its_sidecar_once_complete() {
    slow_writer(&[]);
}

#[test]
fn polling_sees_a_slow_writer_too() {
    slow_writer(&["--poll", "--interval", "0.2"]);
}

/// `torch.save(tmp); os.replace(tmp, final)`: the temporary name never gets a sidecar.
#[test]
fn a_checkpoint_renamed_into_place_gets_the_sidecar_of_its_final_name() {
    let _timed = timed();
    let t = tree();
    let w = Watcher::start(&t.dir, &t.cache, &[]);
    let tmp = t.dir.join("last.ckpt.tmp");
    std::fs::write(&tmp, checkpoint_bytes(3, 64)).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let p = t.dir.join("last.ckpt");
    std::fs::rename(&tmp, &p).unwrap();
    let done = Instant::now();
    wait_until("the sidecar", Duration::from_secs(2), || {
        sidecar(&p).exists()
    });
    assert!(done.elapsed() < Duration::from_secs(2));
    let (code, out, _) = w.stop();
    assert_eq!(code, 0);
    assert_eq!(out, ["wrote runs/last.metadata.yaml"]);
    assert!(!t.dir.join("last.ckpt.metadata.yaml").exists());
}

/// A file cut off for good: reported incomplete, no sidecar, and the watcher goes on.
#[test]
fn a_truncated_checkpoint_is_reported_incomplete_and_gets_no_sidecar() {
    let t = tree();
    let w = Watcher::start(&t.dir, &t.cache, &[]);
    let bytes = checkpoint_bytes(3, 64);
    let p = t.dir.join("cut.ckpt");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let line = w.wait_out(
        |l| l.starts_with("skipped runs/cut.ckpt"),
        Duration::from_secs(5),
    );
    assert!(line.contains("(incomplete: "), "{line}");
    // Still watching: a good file after it is handled.
    let good = t.dir.join("good.ckpt");
    std::fs::write(&good, &bytes).unwrap();
    w.wait_out(
        |l| l == "wrote runs/good.metadata.yaml",
        Duration::from_secs(3),
    );
    let (code, out, err) = w.stop();
    assert_eq!(code, 0);
    assert!(!sidecar(&p).exists());
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(err.iter().all(|l| !l.contains("error")), "{err:?}");
}

/// 200 checkpoints at once (as a sweep's jobs finish together): every one gets its sidecar.
#[test]
fn a_burst_of_200_checkpoints_all_get_sidecars() {
    let _timed = timed();
    let t = tree();
    let w = Watcher::start(&t.dir, &t.cache, &[]);
    let bytes = checkpoint_bytes(2, 8);
    let paths: Vec<PathBuf> = (0..200)
        .map(|i| {
            t.dir
                .join(format!("job{:03}/epoch=0-step={i}.ckpt", i % 20))
        })
        .collect();
    for p in &paths {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &bytes).unwrap();
    }
    wait_until("200 sidecars", Duration::from_secs(30), || {
        paths.iter().all(|p| sidecar(p).exists())
    });
    wait_until("200 lines", Duration::from_secs(5), || {
        w.out().iter().filter(|l| l.starts_with("wrote ")).count() == 200
    });
    let (code, out, err) = w.stop();
    assert_eq!(code, 0, "{err:?}");
    assert_eq!(out.len(), 200, "{out:?}");
    assert!(
        err.iter().all(|l| l.starts_with("ckpt: watching")),
        "{err:?}"
    );
}

/// A deleted checkpoint takes the sidecar ckpt wrote; a hand-written one is left and said.
#[test]
fn deleting_a_checkpoint_removes_only_a_sidecar_ckpt_wrote() {
    let t = tree();
    let bytes = checkpoint_bytes(2, 8);
    let ours = t.dir.join("a.ckpt");
    let theirs = t.dir.join("b.ckpt");
    std::fs::write(&ours, &bytes).unwrap();
    std::fs::write(&theirs, &bytes).unwrap();
    let hand = "schema_version: '1.0'\nexp_name: mine\nnotes: written by hand\n";
    std::fs::write(sidecar(&theirs), hand).unwrap();
    let w = Watcher::start(&t.dir, &t.cache, &[]);
    // The catch-up wrote a.ckpt's and left b.ckpt's hand-written sidecar alone.
    wait_until("a's sidecar", Duration::from_secs(3), || {
        sidecar(&ours).exists()
    });
    std::fs::remove_file(&ours).unwrap();
    std::fs::remove_file(&theirs).unwrap();
    w.wait_out(
        |l| l == "removed runs/a.metadata.yaml",
        Duration::from_secs(2),
    );
    w.wait_out(
        |l| l == "kept runs/b.metadata.yaml (its checkpoint is gone; not written by ckpt)",
        Duration::from_secs(2),
    );
    let (code, _, _) = w.stop();
    assert_eq!(code, 0);
    assert!(!sidecar(&ours).exists());
    assert_eq!(std::fs::read_to_string(sidecar(&theirs)).unwrap(), hand);
}

/// After a crash (SIGKILL) checkpoints came and went: the next start catches up.
#[test]
fn a_restart_catches_up_on_what_it_missed() {
    let t = tree();
    let bytes = checkpoint_bytes(2, 8);
    let kept = t.dir.join("kept.ckpt");
    let doomed = t.dir.join("doomed.ckpt");
    std::fs::write(&kept, &bytes).unwrap();
    std::fs::write(&doomed, &bytes).unwrap();
    let w = Watcher::start(&t.dir, &t.cache, &[]);
    wait_until("sidecars", Duration::from_secs(3), || {
        sidecar(&kept).exists() && sidecar(&doomed).exists()
    });
    w.signal("-KILL");
    drop(w);
    // While it was down: one deleted, one added, a hand-written orphan, an unchanged one.
    std::fs::remove_file(&doomed).unwrap();
    let new = t.dir.join("sub/new.ckpt");
    std::fs::create_dir(t.dir.join("sub")).unwrap();
    std::fs::write(&new, &bytes).unwrap();
    std::fs::write(t.dir.join("orphan.metadata.yaml"), "exp_name: by hand\n").unwrap();
    let before = std::fs::read_to_string(sidecar(&kept)).unwrap();
    let out = ckpt()
        .current_dir(t.dir.parent().unwrap())
        .args(["watch", "--once", "--cache-file"])
        .arg(&t.cache)
        .arg("runs")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "kept runs/orphan.metadata.yaml (its checkpoint is gone; not written by ckpt)",
            "removed runs/doomed.metadata.yaml (its checkpoint is gone)",
            "wrote runs/sub/new.metadata.yaml",
        ]
    );
    assert!(sidecar(&new).exists() && !sidecar(&doomed).exists());
    // Unchanged checkpoint, fresh sidecar: not rewritten.
    assert_eq!(std::fs::read_to_string(sidecar(&kept)).unwrap(), before);
    // Run again: nothing left to do.
    let again = ckpt()
        .current_dir(t.dir.parent().unwrap())
        .args(["watch", "--once", "--cache-file"])
        .arg(&t.cache)
        .arg("runs")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "kept runs/orphan.metadata.yaml (its checkpoint is gone; not written by ckpt)\n"
    );
}

/// SIGINT and SIGTERM stop it cleanly (exit 0) within 2 s, also while it is busy.
#[test]
fn sigint_and_sigterm_stop_it_within_2_seconds() {
    let _timed = timed();
    let t = tree();
    let w = Watcher::start(&t.dir, &t.cache, &[]);
    let (code, _, err) = w.stop();
    assert_eq!(code, 0, "{err:?}");
    let w = Watcher::start(&t.dir, &t.cache, &["--poll", "--interval", "0.1"]);
    let bytes = checkpoint_bytes(2, 8);
    for i in 0..50 {
        std::fs::write(t.dir.join(format!("{i}.ckpt")), &bytes).unwrap();
    }
    w.signal("-INT");
    let start = Instant::now();
    let mut w = w;
    let status = loop {
        if let Some(s) = w.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "still running after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
}

/// A DCP directory is judged by its `.metadata` (written last) and catalogued; sidecars are
/// for single files.
#[test]
fn a_dcp_directory_is_catalogued_once_its_metadata_is_written() {
    let t = tree();
    let w = Watcher::start(&t.dir, &t.cache, &[]);
    let dcp = t.dir.join("step_100");
    std::fs::create_dir(&dcp).unwrap();
    write_dcp_checkpoint(&dcp, &model_tensors(2, 4 << 10), 2).unwrap();
    w.wait_out(
        |l| l == "catalogued runs/step_100 (a folder: no sidecar)",
        Duration::from_secs(3),
    );
    let (code, out, _) = w.stop();
    assert_eq!(code, 0);
    assert_eq!(out.len(), 1, "{out:?}");
}

/// One cache, many users: `catalog` runs while `watch` writes sidecars and refreshes entries;
/// none waits past the busy timeout or falls back to running uncached, and afterwards the
/// catalog is served from what watch stored.
#[test]
fn watch_and_catalog_share_one_cache_concurrently() {
    let _timed = timed();
    let t = tree();
    let w = Watcher::start(&t.dir, &t.cache, &[]);
    let bytes = checkpoint_bytes(2, 8);
    let paths: Vec<PathBuf> = (0..40)
        .map(|i| t.dir.join(format!("run{}/epoch={i}.ckpt", i % 4)))
        .collect();
    let writer = {
        let paths = paths.clone();
        std::thread::spawn(move || {
            for p in &paths {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, &bytes).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let catalog = || {
        ckpt()
            .current_dir(t.dir.parent().unwrap())
            .args(["catalog", "--verbose", "--format", "json", "--cache-file"])
            .arg(&t.cache)
            .arg("runs")
            .output()
            .unwrap()
    };
    let mut runs = 0;
    while !writer.is_finished() || runs < 3 {
        let o = catalog();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(
            !err.contains("without the cache") && !err.contains("locked"),
            "{err}"
        );
        runs += 1;
    }
    writer.join().unwrap();
    wait_until("40 sidecars", Duration::from_secs(10), || {
        paths.iter().all(|p| sidecar(p).exists())
    });
    wait_until("40 lines", Duration::from_secs(5), || {
        w.out().iter().filter(|l| l.starts_with("wrote ")).count() == 40
    });
    let (code, _, err) = w.stop();
    assert_eq!(code, 0, "{err:?}");
    let o = catalog();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["checkpoints"].as_array().unwrap().len(), 40);
    // Every entry was stored by watch: nothing is opened again.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("40 checkpoint(s): 0 opened"), "{err}");
}

/// `last.ckpt` saved again (a new epoch): the sidecar ckpt wrote is rewritten to describe the
/// new file (what `convert-legacy --checkpoint` writes for it); a hand-written one is kept.
#[test]
fn an_overwritten_checkpoint_gets_a_new_sidecar_unless_its_sidecar_is_hand_written() {
    let t = tree();
    let last = t.dir.join("last.ckpt");
    let mine = t.dir.join("mine.ckpt");
    std::fs::write(&last, checkpoint_bytes(2, 8)).unwrap();
    std::fs::write(&mine, checkpoint_bytes(2, 8)).unwrap();
    let hand = "schema_version: '1.0'\nexp_name: mine\n";
    std::fs::write(sidecar(&mine), hand).unwrap();
    let w = Watcher::start(&t.dir, &t.cache, &[]);
    wait_until("last's sidecar", Duration::from_secs(3), || {
        sidecar(&last).exists()
    });
    let first = std::fs::read_to_string(sidecar(&last)).unwrap();
    for p in [&last, &mine] {
        let tmp = p.with_extension("ckpt.tmp");
        std::fs::write(&tmp, checkpoint_bytes(3, 16)).unwrap();
        std::fs::rename(&tmp, p).unwrap();
    }
    w.wait_out(
        |l| l == "kept runs/mine.metadata.yaml (not written by ckpt)",
        Duration::from_secs(3),
    );
    wait_until("a new sidecar", Duration::from_secs(3), || {
        std::fs::read_to_string(sidecar(&last)).is_ok_and(|s| s != first)
    });
    let (code, out, _) = w.stop();
    assert_eq!(code, 0);
    assert_eq!(
        out.iter()
            .filter(|l| *l == "wrote runs/last.metadata.yaml")
            .count(),
        2,
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(sidecar(&mine)).unwrap(), hand);
    let ours = std::fs::read_to_string(sidecar(&last)).unwrap();
    std::fs::remove_file(sidecar(&last)).unwrap();
    ckpt()
        .args(["convert-legacy", "--checkpoint"])
        .arg(&last)
        .assert()
        .success();
    assert_eq!(ours, std::fs::read_to_string(sidecar(&last)).unwrap());
    // Nothing left beside them but the checkpoints and their sidecars.
    let mut names: Vec<String> = std::fs::read_dir(&t.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "last.ckpt",
            "last.metadata.yaml",
            "mine.ckpt",
            "mine.metadata.yaml"
        ]
    );
}

/// A complete but broken file: one error line naming it, no sidecar, and watching goes on.
#[test]
fn a_broken_checkpoint_is_one_error_line_and_watching_goes_on() {
    let t = tree();
    let w = Watcher::start(&t.dir, &t.cache, &[]);
    let bad = t.dir.join("bad.ckpt");
    std::fs::copy(common::root().join("fixtures/bad/bad_opcode.ckpt"), &bad).unwrap();
    w.wait_err(
        |l| l.starts_with("ckpt: error: runs/bad.ckpt: "),
        Duration::from_secs(3),
    );
    let good = t.dir.join("good.ckpt");
    std::fs::write(&good, checkpoint_bytes(2, 8)).unwrap();
    w.wait_out(
        |l| l == "wrote runs/good.metadata.yaml",
        Duration::from_secs(3),
    );
    let (code, out, err) = w.stop();
    assert_eq!(code, 0);
    assert_eq!(out, ["wrote runs/good.metadata.yaml"]);
    let errors: Vec<&String> = err.iter().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{err:?}");
    assert!(errors[0].contains("unknown opcode"), "{err:?}");
    assert!(!sidecar(&bad).exists());
}

/// Bad input is exit 2 before anything is watched: a missing path (named as typed), an
/// interval that is not a number of seconds.
#[test]
fn a_missing_path_or_a_bad_interval_is_exit_2() {
    let t = tree();
    let o = ckpt()
        .current_dir(t.dir.parent().unwrap())
        .args(["watch", "--once", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere"));
    for bad in ["0", "-1", "nan"] {
        let o = ckpt()
            .current_dir(t.dir.parent().unwrap())
            .args(["watch", "--poll", &format!("--interval={bad}"), "runs"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--interval"),
            "{bad}"
        );
    }
}
