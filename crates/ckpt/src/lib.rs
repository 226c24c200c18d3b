//! The `ckpt` command: parse arguments, call the libraries, print, map results to exit codes
//! (0 ok, 1 "found something" for `scan`, 2 bad input or usage, 3 a bug in ckpt). A library
//! so that the binary and the Python package run the very same commands: [`main_with`] is
//! the whole command, [`run_captured`] the same with its output captured.

mod catalog;
pub mod cli;
mod compare;
mod convert;
mod dump;
mod experiments;
mod identity;
mod inputs;
mod inspect;
mod meta;
mod scan;
mod schema;
mod serve;
pub mod sink;
mod validate;
mod watch;

use std::ffi::OsString;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;

/// The outcome of a command that ran to completion.
pub enum Outcome {
    Ok,
    /// The command worked and found what it reports with exit 1 (`scan`: unsafe files).
    Findings,
}

/// Decoding is iterative everywhere, but we still give the worker thread a roomy stack:
/// recursion that is bounded by a constant (set elements, Python reprs) stays well inside it.
const STACK_BYTES: usize = 64 << 20;

/// Set once any unit of work hit a bug (see [`report_bug`]): the process then exits 3.
static BUG_SEEN: AtomicBool = AtomicBool::new(false);

/// Exit code for "this is a bug in ckpt".
const EXIT_BUG: u8 = 3;

/// Report that working on `path` hit a bug in ckpt (a caught panic): one line on stderr naming
/// the command and the file, and exit 3 at the end — after the rest of the batch is done.
pub fn report_bug(command: &str, path: &std::path::Path, panic: &ckpt_torch::bug::Panic) {
    BUG_SEEN.store(true, Ordering::SeqCst);
    let _ = writeln!(
        sink::stderr(),
        "ckpt: error: ckpt {command}: {}: {panic}",
        path.display()
    );
}

/// Exit 3 at the end, for a bug already reported once in the command's own output (a `failed`
/// line of `convert`'s table, say).
pub fn mark_bug() {
    BUG_SEEN.store(true, Ordering::SeqCst);
}

/// The whole `ckpt` command on `args` (the program name first, as `std::env::args_os`
/// gives it): returns the exit code. Usage errors and `--help` are printed, never a process
/// exit, so a caller in the same process (Python) goes on.
pub fn main_with<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // No panic ever prints a backtrace at the user: every panic is caught (per file in batches,
    // here for the rest) and reported as one line.
    ckpt_torch::bug::install_quiet_hook();
    BUG_SEEN.store(false, Ordering::SeqCst);
    let parsed = match cli::Cli::try_parse_from(&args) {
        Ok(p) => p,
        Err(e) => {
            let to_stderr = e.use_stderr();
            if sink::capturing() {
                let text = e.render().to_string();
                let _ = if to_stderr {
                    sink::stderr().write_all(text.as_bytes())
                } else {
                    sink::stdout().write_all(text.as_bytes())
                };
            } else {
                let _ = e.print();
            }
            return if to_stderr { 2 } else { 0 };
        }
    };
    let worker = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || ckpt_torch::bug::catch(move || run(parsed)));
    let result = match worker {
        Ok(handle) => match handle.join() {
            Ok(Ok(r)) => r,
            Ok(Err(panic)) => {
                // A panic outside any per-file guard: name the command line, which names the files.
                let line: Vec<String> = args
                    .iter()
                    .skip(1)
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                let _ = writeln!(
                    sink::stderr(),
                    "ckpt: error: ckpt {}: {panic}",
                    line.join(" ")
                );
                return EXIT_BUG;
            }
            Err(_) => Err(anyhow::anyhow!(
                "this is a bug in ckpt (the worker thread could not be joined); please report it"
            )),
        },
        Err(e) => Err(anyhow::anyhow!("cannot start worker thread: {e}")),
    };
    if BUG_SEEN.load(Ordering::SeqCst) && !result.as_ref().is_err_and(is_broken_pipe) {
        if let Err(e) = &result {
            let _ = writeln!(sink::stderr(), "ckpt: error: {}", one_line(e));
        }
        return EXIT_BUG;
    }
    match result {
        Ok(Outcome::Ok) => 0,
        Ok(Outcome::Findings) => 1,
        Err(e) => {
            if is_broken_pipe(&e) {
                return 0;
            }
            let _ = writeln!(sink::stderr(), "ckpt: error: {}", one_line(&e));
            2
        }
    }
}

/// [`main_with`] with everything the command writes captured: (exit code, stdout, stderr).
/// `args` are the arguments after the program name.
pub fn run_captured(args: &[String]) -> (u8, Vec<u8>, Vec<u8>) {
    run_captured_with(args, None)
}

/// [`run_captured`], telling `progress` (bytes done, bytes to do) as a long command goes.
pub fn run_captured_with(
    args: &[String],
    progress: Option<sink::Progress>,
) -> (u8, Vec<u8>, Vec<u8>) {
    let mut argv = vec!["ckpt".to_owned()];
    argv.extend(args.iter().cloned());
    sink::captured_with(progress, || main_with(argv))
}

/// The error and its causes, joined on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = format!("{e}");
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg.replace('\n', " ")
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
    // Before the first remote request (the input check may list a prefix); local runs never
    // start the object-storage runtime, whatever is configured here.
    ckpt_io::remote::configure(ckpt_io::remote::Config {
        endpoint: args.endpoint.clone(),
    });
    let result = run_command(args);
    print_io_stats();
    result
}

/// `CKPT_IO_STATS=1`: one line on stderr at the end of the command with what was asked of
/// object storage (requests by kind, bytes received), for benchmarks and for a user who
/// wants to see what a command cost. Nothing is printed when no request was made.
fn print_io_stats() {
    if std::env::var_os("CKPT_IO_STATS").is_none_or(|v| v.is_empty() || v == "0") {
        return;
    }
    let s = ckpt_io::remote::stats();
    let requests = s.get + s.list + s.head;
    if requests == 0 {
        return;
    }
    // The format of ckpt_io::remote::format_stats (slice A), which this can call once merged.
    let _ = writeln!(
        sink::stderr(),
        "ckpt-io: {requests} request{} ({} GET, {} LIST, {} HEAD), {} bytes",
        if requests == 1 { "" } else { "s" },
        s.get,
        s.list,
        s.head,
        s.bytes
    );
}

fn run_command(args: cli::Cli) -> anyhow::Result<Outcome> {
    inputs::check(&args.command)?;
    match args.command {
        cli::Command::Inspect(a) => inspect::run(&a),
        cli::Command::Dump(a) => dump::run(&a),
        cli::Command::Scan(a) => scan::run(&a),
        cli::Command::ConvertLegacy(a) => meta::convert_legacy(&a),
        cli::Command::Validate(a) => validate::run(&a),
        cli::Command::Schema(a) => schema::run(a.name.as_deref()),
        cli::Command::Catalog(a) => catalog::run(&a),
        cli::Command::Cache(a) => catalog::cache(&a),
        cli::Command::Hash(a) => identity::hash(&a),
        cli::Command::Diff(a) => identity::diff(&a),
        cli::Command::Experiments(a) => experiments::experiments(&a),
        cli::Command::Latest(a) => experiments::latest(&a),
        cli::Command::Prune(a) => experiments::prune(&a),
        cli::Command::Compare(a) => compare::run(&a),
        cli::Command::Convert(a) => convert::run(&a),
        cli::Command::Watch(a) => watch::run(&a),
        cli::Command::Serve(a) => serve::run(&a),
    }
}

/// Write all of `text` to stdout (a closed pipe ends the program quietly, see `main`).
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = sink::stdout();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
