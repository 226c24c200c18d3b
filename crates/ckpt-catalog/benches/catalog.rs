//! Catalog speed: a tree of small Lightning-shaped checkpoints, uncached (every file opened)
//! and cached (nothing reopened), and a few big checkpoints uncached (cost independent of
//! size). Trees are written by ckpt's own torch-zip writer; no torch needed.
//!
//!     cargo bench -p ckpt-catalog --bench catalog
//!
//! `CKPT_BENCH_SMALL` (default 1000 files) and `CKPT_BENCH_BIG_MB` (default 500; 4 files).
//! The whole-process figures for the sizes (10,000 small, 20 x 500 MB) come from
//! `scripts/bench_catalog.sh`.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use ckpt_catalog::catalog::{Options, build};
use ckpt_test_support::{model_tensors, write_lightning_checkpoint};
use criterion::{Criterion, criterion_group, criterion_main};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tree(dir: &Path, count: usize, kb: u64, per_exp: usize) {
    let proto = dir.join("proto.ckpt");
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| {
        write_lightning_checkpoint(&proto, &model_tensors(8, (kb << 10) / 3)).map(|_| ())
    }) {
        panic!("{e}");
    }
    for i in 0..count {
        let exp = dir
            .join(format!("exp_{:03}", i / per_exp))
            .join("checkpoints");
        let n = i % per_exp;
        let f = exp.join(format!("epoch={n:02}-step={}.ckpt", (n + 1) * 100));
        if let Err(e) =
            std::fs::create_dir_all(&exp).and_then(|()| std::fs::copy(&proto, &f).map(|_| ()))
        {
            panic!("{e}");
        }
    }
    let _ = std::fs::remove_file(&proto);
}

fn count(roots: &[PathBuf], opts: &Options) -> usize {
    match build(roots, opts) {
        Ok(c) => c.entries.len(),
        Err(e) => panic!("{e}"),
    }
}

fn bench(c: &mut Criterion) {
    let tmp = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let small_n = env("CKPT_BENCH_SMALL", 1000) as usize;
    let small = tmp.path().join("small");
    tree(&small, small_n, 32, 100);
    let big_mb = env("CKPT_BENCH_BIG_MB", 500);
    let big = tmp.path().join("big/exp/checkpoints");
    if let Err(e) = std::fs::create_dir_all(&big) {
        panic!("{e}");
    }
    for i in 0..4 {
        let p = big.join(format!("epoch={i:02}.ckpt"));
        if let Err(e) = write_lightning_checkpoint(&p, &model_tensors(60, (big_mb << 20) / 3)) {
            panic!("{e}");
        }
    }
    let roots_small = vec![small.clone()];
    let roots_big = vec![tmp.path().join("big")];
    let uncached = Options {
        cache: None,
        ..Options::default()
    };
    let cache_file = tmp.path().join("cache.sqlite3");
    let cached = Options {
        cache: Some(cache_file),
        ..Options::default()
    };
    count(&roots_small, &cached); // fill the cache
    let mut g = c.benchmark_group("catalog");
    g.sample_size(10);
    g.bench_function(format!("{small_n}_small_uncached"), |b| {
        b.iter(|| black_box(count(&roots_small, &uncached)))
    });
    g.bench_function(format!("{small_n}_small_cached"), |b| {
        b.iter(|| black_box(count(&roots_small, &cached)))
    });
    g.bench_function(format!("4_x_{big_mb}MB_uncached"), |b| {
        b.iter(|| black_box(count(&roots_big, &uncached)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
