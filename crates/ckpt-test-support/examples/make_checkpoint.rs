//! Write a Lightning-shaped checkpoint of a given size without torch, for benchmarks:
//!
//!     cargo run --release -p ckpt-torch --example make_checkpoint -- OUT.ckpt SIZE_MB [TENSORS]
//!
//! The state dict has TENSORS weight tensors (default 60) plus biases; AdamW state doubles it,
//! so the file is about SIZE_MB. Files of different sizes with the same TENSORS have the same
//! pickle, which is what makes "inspect costs the same at 3 MB and 500 MB" a fair comparison.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: make_checkpoint OUT.ckpt SIZE_MB [TENSORS]";
    let out = PathBuf::from(args.next().ok_or(usage)?);
    let mb: u64 = args.next().ok_or(usage)?.parse()?;
    let n: usize = match args.next() {
        Some(s) => s.parse()?,
        None => 60,
    };
    // weights + exp_avg + exp_avg_sq: the weights are a third of the file.
    let tensors = ckpt_test_support::model_tensors(n, (mb << 20) / 3);
    let total = ckpt_test_support::write_lightning_checkpoint(&out, &tensors)?;
    eprintln!(
        "wrote {} ({} bytes of pickle and tensor data)",
        out.display(),
        total
    );
    Ok(())
}
