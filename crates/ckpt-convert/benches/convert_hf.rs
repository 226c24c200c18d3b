//! `ckpt convert` in-process, against a plain byte copy of the same file: a GPT-2-small-shaped
//! FSDP checkpoint (about 0.5 GB of float32, `CKPT_BENCH_SIZE=small|tiny`) to safetensors, the
//! same tensors as a 4-rank DCP directory, a bf16 cast, and `std::fs::copy` of the checkpoint.
//! The ratio convert / copy is the figure to watch (the whole-process comparison with `cp` and
//! Python is `scripts/bench_convert_hf.sh`).
//!
//!     cargo bench -p ckpt-convert --bench convert_hf

use std::path::Path;

use ckpt_convert::{ConvertOptions, convert_dcp, convert_file};
use ckpt_test_support::{gpt2_fsdp_tensors, write_dcp_checkpoint, write_state_dict_checkpoint};
use criterion::{Criterion, criterion_group, criterion_main};

fn options(dtype: Option<ckpt_torch::DType>) -> ConvertOptions {
    ConvertOptions::safetensors(5_000_000_000, dtype)
}

fn fresh(out: &Path) {
    if out.exists()
        && let Err(e) = std::fs::remove_dir_all(out)
    {
        panic!("{}: {e}", out.display());
    }
}

fn bench(c: &mut Criterion) {
    let dir = match tempfile::tempdir_in(std::env::var_os("CKPT_BENCH_DIR").unwrap_or(".".into())) {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let tensors = match std::env::var("CKPT_BENCH_SIZE").as_deref() {
        Ok("tiny") => gpt2_fsdp_tensors(2, 32, 128, 64),
        _ => gpt2_fsdp_tensors(12, 768, 50257, 1024),
    };
    let file = dir.path().join("model.pth");
    let dcp = dir.path().join("dcp");
    let out = dir.path().join("out");
    if let Err(e) = write_state_dict_checkpoint(&file, &tensors) {
        panic!("{e}");
    }
    if let Err(e) = write_dcp_checkpoint(&dcp, &tensors, 4) {
        panic!("{e}");
    }
    let mut g = c.benchmark_group("convert_gpt2_small");
    g.sample_size(10);
    g.bench_function("copy_file", |b| {
        b.iter(|| {
            let copy = dir.path().join("copy.pth");
            match std::fs::copy(&file, &copy) {
                Ok(n) => n,
                Err(e) => panic!("{e}"),
            }
        })
    });
    for (name, dtype) in [
        ("to_safetensors", None),
        ("to_bf16", Some(ckpt_torch::DType::BF16)),
    ] {
        let opts = options(dtype);
        g.bench_function(name, |b| {
            b.iter(|| {
                fresh(&out);
                match convert_file(&file, &out, &opts) {
                    Ok(r) => r.tensors,
                    Err(e) => panic!("{e}"),
                }
            })
        });
    }
    let opts = options(None);
    g.bench_function("dcp_4_ranks", |b| {
        b.iter(|| {
            fresh(&out);
            match convert_dcp(&dcp, &out, &opts) {
                Ok(r) => r.tensors,
                Err(e) => panic!("{e}"),
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
