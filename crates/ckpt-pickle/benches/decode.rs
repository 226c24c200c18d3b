//! What decoding a pickle of millions of small values costs: the two shapes of
//! scripts/make_memory_inputs.py that cost the most per byte; and what one small Lightning
//! `data.pkl` costs (`lightning_data.pkl`, the `archive/data.pkl` of
//! examples/lightning/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt): the catalog decodes one
//! per checkpoint, ten thousand in a tree.
//!
//!     cargo bench -p ckpt-pickle --bench decode
//!
//! (Peak memory is not something criterion measures: `cargo run --release -p ckpt-pickle
//! --example decode_cost -- FILE` prints the arena's size and the process's peak RSS, and
//! scripts/check_hostile_budget.sh runs every command under /usr/bin/time.)

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

/// A list of `n` empty lists appended in batches of 1,000, no memo: one byte a value.
fn batched_lists(n: usize) -> Vec<u8> {
    let mut b = b"\x80\x02]".to_vec();
    for _ in 0..n / 1000 {
        b.push(b'(');
        b.extend(std::iter::repeat_n(b']', 1000));
        b.push(b'e');
    }
    b.push(b'.');
    b
}

/// What `pickle.dumps([[] for _ in range(n)], protocol=4)` writes, without the frames:
/// every list memoized.
fn memo_lists(n: usize) -> Vec<u8> {
    let mut b = b"\x80\x04]\x94".to_vec();
    for _ in 0..n / 1000 {
        b.push(b'(');
        for _ in 0..1000 {
            b.extend_from_slice(b"]\x94");
        }
        b.push(b'e');
    }
    b.push(b'.');
    b
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    for (name, data) in [
        ("batched_lists_3.3M", batched_lists(3_300_000)),
        ("memo_lists_4.9M", memo_lists(4_900_000)),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| match ckpt_pickle::decode(black_box(&data)) {
                Ok(p) => p.len(),
                Err(e) => panic!("{e}"),
            })
        });
    }
    let small: &[u8] = include_bytes!("lightning_data.pkl");
    g.sample_size(50);
    g.bench_function("lightning_data_pkl_7.8KB", |b| {
        b.iter(|| match ckpt_pickle::decode(black_box(small)) {
            Ok(p) => p.len(),
            Err(e) => panic!("{e}"),
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
