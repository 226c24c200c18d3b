//! `ckpt`: the binary. Thin: parse arguments, call the libraries, print, map results to exit
//! codes (0 ok, 1 "found something" for `scan`, 2 bad input or usage).

mod catalog;
mod cli;
mod convert;
mod dump;
mod experiments;
mod inspect;
mod meta;
mod scan;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// Decoding allocates many small strings and vectors on several threads at once; mimalloc
/// takes about a third off a catalog run compared with glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The outcome of a command that ran to completion.
pub enum Outcome {
    Ok,
    /// The command worked and found what it reports with exit 1 (`scan`: unsafe files).
    Findings,
}

/// Decoding is iterative everywhere, but we still give the worker thread a roomy stack:
/// recursion that is bounded by a constant (set elements, Python reprs) stays well inside it.
const STACK_BYTES: usize = 64 << 20;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let worker = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || run(args));
    let result = match worker {
        Ok(handle) => match handle.join() {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "internal error (the worker thread panicked)"
            )),
        },
        Err(e) => Err(anyhow::anyhow!("cannot start worker thread: {e}")),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let mut msg = format!("{e}");
            // One line: the error and its causes, joined.
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            let _ = writeln!(std::io::stderr(), "ckpt: error: {}", msg.replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn run(args: cli::Cli) -> anyhow::Result<Outcome> {
    match args.command {
        cli::Command::Inspect(a) => inspect::run(&a),
        cli::Command::Dump(a) => dump::run(&a),
        cli::Command::Scan(a) => scan::run(&a),
        cli::Command::ConvertLegacy(a) => meta::convert_legacy(&a),
        cli::Command::Validate(a) => meta::validate(&a),
        cli::Command::Schema => meta::schema(),
        cli::Command::Catalog(a) => catalog::run(&a),
        cli::Command::Cache(a) => catalog::cache(&a),
        cli::Command::Hash(a) => experiments::hash(&a),
        cli::Command::Diff(a) => experiments::diff(&a),
        cli::Command::Experiments(a) => experiments::experiments(&a),
        cli::Command::Latest(a) => experiments::latest(&a),
        cli::Command::Prune(a) => experiments::prune(&a),
        cli::Command::Convert(a) => convert::run(&a),
    }
}

/// Write all of `text` to stdout (a closed pipe ends the program quietly, see `main`).
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    lock.write_all(text.as_bytes())?;
    lock.flush()?;
    Ok(())
}
