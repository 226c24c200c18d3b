#![no_main]

//! The body lives in `ckpt_fuzz_targets::torch_open` (crates/ckpt-fuzz-targets), which the replay
//! test also calls on every committed input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ckpt_fuzz_targets::torch_open(data);
});
