//! `ckpt`: the binary — the command of the `ckpt` library on this process's arguments.

use std::process::ExitCode;

/// Decoding allocates many small strings and vectors on several threads at once; mimalloc
/// takes about a third off a catalog run compared with glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (include/mimalloc.h; the `-sys`
/// crate names no constant for it): how long freed memory stays resident before it is returned.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Milliseconds mimalloc waits before it returns freed pages to the system. Its default
/// (1000 ms) keeps everything a command freed resident for the whole of a
/// sub-second run, so the decodes `diff` does one after another add up in the peak RSS as if
/// they were all live; 10 ms returns them in time and costs little CPU (see README, issue 10).
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Commands that read a little of each file and hold a bounded amount per file, one file
/// after another: what they free is reused for the next file, so returning it to the system
/// after 10 ms only adds `madvise` calls and page faults (about an eighth of the CPU time of
/// cataloguing 20 checkpoints). They keep mimalloc's default delay.
const LISTING_COMMANDS: &[&str] = &["catalog", "experiments", "latest"];

/// Sets the purge delay before anything is allocated in earnest, unless the user chose one
/// with `MIMALLOC_PURGE_DELAY` (mimalloc has read that from the environment already) or the
/// command is one of [`LISTING_COMMANDS`].
fn purge_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // The subcommand is the first argument that is not an option (global options come
    // before it); anything unclear keeps the prompt purge.
    let command = std::env::args_os()
        .skip(1)
        .find(|a| !a.to_string_lossy().starts_with('-'));
    if command.is_some_and(|c| LISTING_COMMANDS.iter().any(|l| c == *l)) {
        return;
    }
    // Sound: `mi_option_set` takes two plain integers and writes one entry of mimalloc's
    // option table; the option exists in the linked mimalloc (v3, checked by
    // `allocator_option_index_is_purge_delay`), and the call is made before this process
    // starts any other thread, so the table is not read concurrently (the one requirement
    // mimalloc states: "not thread safe").
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

fn main() -> ExitCode {
    purge_freed_memory_promptly();
    ExitCode::from(ckpt::main_with(std::env::args_os()))
}

#[cfg(test)]
mod tests {
    use super::MI_OPTION_PURGE_DELAY;

    /// The index names purge_delay in the mimalloc this binary links: it and its neighbours
    /// hold their documented defaults (options.c of mimalloc v3), so a renumbered option
    /// table fails here rather than silently setting another option. (Run without
    /// `MIMALLOC_PURGE_DELAY` in the environment: it replaces the default read here.)
    #[test]
    fn allocator_option_index_is_purge_delay() {
        // Sound: reads of mimalloc's option table; nothing in this test sets an option.
        #[allow(unsafe_code)]
        let get = |o| unsafe { libmimalloc_sys::mi_option_get(o) };
        assert_eq!(get(MI_OPTION_PURGE_DELAY), 1000, "purge_delay default");
        assert_eq!(get(MI_OPTION_PURGE_DELAY + 3), 100, "os_tag default");
        assert_eq!(get(MI_OPTION_PURGE_DELAY + 4), 32, "max_errors default");
        assert_eq!(get(MI_OPTION_PURGE_DELAY + 5), 32, "max_warnings default");
    }
}
