//! Issue 10, data loss: `--cache-file` is a path the user types, and ckpt must never delete,
//! move or overwrite a file it did not create itself. Every test runs the real binary against a
//! real checkpoint (a copy of `examples/lightning`) named as the cache by mistake, and checks
//! that the file's bytes, its name and its folder are exactly as they were.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{ckpt, copy_tree, root, run};

/// A copy of `examples/lightning` in a temp dir; returns (tempdir, the tree, one checkpoint).
fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lightning");
    copy_tree(&root().join("examples/lightning"), &dir);
    let ckpt_file = dir.join("checkpoints/last.ckpt");
    assert!(ckpt_file.is_file());
    (tmp, dir, ckpt_file)
}

/// Every file under `dir` with its bytes, sorted: the whole state a command must not change.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

fn assert_refused(code: i32, stderr: &str, path: &Path) {
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("is not a ckpt cache"), "{stderr}");
}

#[test]
fn cache_clear_refuses_to_delete_a_checkpoint() {
    let (_tmp, dir, file) = tree();
    let before = snapshot(&dir);
    let (code, out, err) = run(&[
        "cache".as_ref(),
        "clear".as_ref(),
        "--cache-file".as_ref(),
        file.as_os_str(),
    ]);
    assert_refused(code, &err, &file);
    assert_eq!(out, "");
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn catalog_with_a_checkpoint_as_cache_file_leaves_it_alone() {
    let (_tmp, dir, file) = tree();
    let before = snapshot(&dir);
    let (code, _out, err) = run(&[
        "catalog".as_ref(),
        dir.as_os_str(),
        "--cache-file".as_ref(),
        file.as_os_str(),
    ]);
    assert_refused(code, &err, &file);
    // No `last.ckpt.corrupt-N`, no SQLite file in its place, no -wal/-shm beside it.
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn cache_info_with_a_checkpoint_as_cache_file_leaves_it_alone() {
    let (_tmp, dir, file) = tree();
    let before = snapshot(&dir);
    let (code, _out, err) = run(&[
        "cache".as_ref(),
        "info".as_ref(),
        "--cache-file".as_ref(),
        file.as_os_str(),
    ]);
    assert_refused(code, &err, &file);
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn commands_reading_the_catalog_refuse_a_foreign_default_cache() {
    // The commands that read the catalog take the default cache path from CKPT_CACHE_DIR;
    // a foreign file there is refused the same way, never replaced.
    let (tmp, dir, _file) = tree();
    let cache_dir = tmp.path().join("cachedir");
    std::fs::create_dir(&cache_dir).unwrap();
    let foreign = cache_dir.join("catalog.sqlite3");
    std::fs::write(&foreign, b"my notes, not a database\n").unwrap();
    for args in [vec!["catalog"], vec!["experiments"], vec!["latest"]] {
        let o = ckpt()
            .env("CKPT_CACHE_DIR", &cache_dir)
            .args(&args)
            .arg(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("is not a ckpt cache"), "{args:?}: {err}");
        assert_eq!(
            std::fs::read(&foreign).unwrap(),
            b"my notes, not a database\n"
        );
        assert_eq!(std::fs::read_dir(&cache_dir).unwrap().count(), 1);
    }
}

#[test]
fn cache_info_never_writes() {
    let (tmp, dir, _file) = tree();
    let cache = tmp.path().join("c/catalog.sqlite3");
    // No cache yet: info says so and creates nothing (not even the folder).
    let (code, out, err) = run(&[
        "cache".as_ref(),
        "info".as_ref(),
        "--cache-file".as_ref(),
        cache.as_os_str(),
    ]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.starts_with("no cache at "), "{out}");
    assert!(!tmp.path().join("c").exists());
    // Make one, then info leaves the folder byte for byte as it was (no -wal/-shm appear).
    ckpt()
        .args(["catalog", "--format", "json", "--cache-file"])
        .arg(&cache)
        .arg(&dir)
        .assert()
        .success();
    let before = snapshot(&tmp.path().join("c"));
    let (code, out, err) = run(&[
        "cache".as_ref(),
        "info".as_ref(),
        "--cache-file".as_ref(),
        cache.as_os_str(),
    ]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.contains("entries         3"), "{out}");
    assert_eq!(snapshot(&tmp.path().join("c")), before);
}

#[test]
fn cache_clear_removes_only_its_own_files() {
    let (tmp, dir, _file) = tree();
    let c = tmp.path().join("c");
    let cache = c.join("catalog.sqlite3");
    ckpt()
        .args(["catalog", "--format", "json", "--cache-file"])
        .arg(&cache)
        .arg(&dir)
        .assert()
        .success();
    // Neighbours with similar names are not companions and stay.
    std::fs::write(c.join("catalog.sqlite3.bak"), b"keep").unwrap();
    std::fs::write(c.join("notes.txt"), b"keep").unwrap();
    let (code, out, err) = run(&[
        "cache".as_ref(),
        "clear".as_ref(),
        "--cache-file".as_ref(),
        cache.as_os_str(),
    ]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, format!("removed {}\n", cache.display()));
    let mut left: Vec<String> = std::fs::read_dir(&c)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["catalog.sqlite3.bak", "notes.txt"]);
    // Clearing again is not an error: nothing to remove.
    let (code, out, _) = run(&[
        "cache".as_ref(),
        "clear".as_ref(),
        "--cache-file".as_ref(),
        cache.as_os_str(),
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("no cache at "), "{out}");
    // A symbolic link named as the cache is neither followed nor removed.
    #[cfg(unix)]
    {
        ckpt()
            .args(["catalog", "--format", "json", "--cache-file"])
            .arg(&cache)
            .arg(&dir)
            .assert()
            .success();
        let link = c.join("link.sqlite3");
        std::os::unix::fs::symlink(&cache, &link).unwrap();
        let (code, _, err) = run(&[
            "cache".as_ref(),
            "clear".as_ref(),
            "--cache-file".as_ref(),
            link.as_os_str(),
        ]);
        assert_refused(code, &err, &link);
        assert!(link.exists() && cache.exists());
    }
}

#[test]
fn cache_another_programs_database_is_refused_untouched() {
    let (tmp, dir, _file) = tree();
    // An SQLite database that is not ours (what `sqlite3 mine.db 'create table t(x)'` makes).
    let db = tmp.path().join("mine.db");
    let mut bytes = vec![0u8; 4096];
    bytes[..16].copy_from_slice(b"SQLite format 3\0");
    bytes[16..18].copy_from_slice(&4096u16.to_be_bytes());
    std::fs::write(&db, &bytes).unwrap();
    for args in [vec!["cache", "clear"], vec!["cache", "info"]] {
        let o = ckpt()
            .args(&args)
            .arg("--cache-file")
            .arg(&db)
            .output()
            .unwrap();
        assert_refused(
            o.status.code().unwrap_or(-1),
            &String::from_utf8_lossy(&o.stderr),
            &db,
        );
    }
    let o = ckpt()
        .arg("catalog")
        .arg(&dir)
        .arg("--cache-file")
        .arg(&db)
        .output()
        .unwrap();
    assert_refused(
        o.status.code().unwrap_or(-1),
        &String::from_utf8_lossy(&o.stderr),
        &db,
    );
    assert_eq!(std::fs::read(&db).unwrap(), bytes);
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
