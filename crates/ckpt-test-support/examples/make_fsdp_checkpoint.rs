//! Write an FSDP-style GPT-2 training checkpoint without torch, for conversion benchmarks:
//!
//!     cargo run --release -p ckpt-torch --example make_fsdp_checkpoint -- OUT.pth [medium|small|tiny] [RANKS]
//!
//! `medium` is GPT-2-medium's shape (24 layers, 1024 wide, 50,257 tokens: about 1.4 GB of
//! float32), `small` GPT-2's (12 × 768: about 0.5 GB), `tiny` 2 × 32. Names carry FSDP's
//! `_fsdp_wrapped_module.` prefixes; the state dict is under `"model"`. With RANKS, OUT is
//! instead a `torch.distributed.checkpoint` directory saved by that many ranks (every tensor
//! split along dimension 0), holding the same tensor bytes.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: make_fsdp_checkpoint OUT [medium|small|tiny] [RANKS]";
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().ok_or(usage)?);
    let (layers, hidden, vocab, pos) = match args.next().as_deref().unwrap_or("medium") {
        "medium" => (24, 1024, 50257, 1024),
        "small" => (12, 768, 50257, 1024),
        "tiny" => (2, 32, 128, 64),
        other => return Err(format!("unknown size {other}").into()),
    };
    let ranks: Option<u64> = args.next().map(|r| r.parse()).transpose()?;
    let tensors = ckpt_test_support::gpt2_fsdp_tensors(layers, hidden, vocab, pos);
    let total = match ranks {
        Some(r) => ckpt_test_support::write_dcp_checkpoint(&out, &tensors, r)?,
        None => ckpt_test_support::write_state_dict_checkpoint(&out, &tensors)?,
    };
    eprintln!(
        "wrote {} ({} tensors, {total} bytes)",
        out.display(),
        tensors.len()
    );
    Ok(())
}
