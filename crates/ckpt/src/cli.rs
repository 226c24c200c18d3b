//! What the user typed. Validation into working configuration happens in each command.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Know everything about your checkpoints: no torch, no pickle code executed, no tensor data
/// read that is not needed.
#[derive(Debug, Parser)]
#[command(name = "ckpt", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Summarize checkpoints: format, versions, keys, epoch/step, hyperparameters, callbacks,
    /// state dicts, optimizer.
    Inspect(InspectArgs),
    /// Print the whole decoded object as JSON (what torch.load would return, mapped to JSON).
    Dump(DumpArgs),
    /// Security verdict per file from the globals its pickle references.
    Scan(ScanArgs),
    /// Write `<stem>.metadata.yaml` sidecars for checkpoints that have none.
    #[command(name = "convert-legacy")]
    ConvertLegacy(ConvertLegacyArgs),
    /// Check sidecars: valid, invalid (with field paths), missing, or stale.
    Validate(ValidateArgs),
    /// Print the sidecar's JSON Schema.
    Schema,
}

/// Which checkpoints: one file, one experiment folder, or a whole outputs tree.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
pub struct Target {
    /// One checkpoint file.
    #[arg(long, value_name = "PATH", group = "target")]
    pub checkpoint: Option<PathBuf>,
    /// An experiment folder (its checkpoints, recursively).
    #[arg(long, value_name = "PATH", group = "target")]
    pub exp_dir: Option<PathBuf>,
    /// An outputs folder holding experiments; sidecar paths are relative to it.
    #[arg(long, value_name = "PATH", group = "target")]
    pub outputs_dir: Option<PathBuf>,
    /// Only the folder itself, not its subfolders.
    #[arg(long)]
    pub no_recursive: bool,
}

#[derive(Debug, clap::Args)]
pub struct ConvertLegacyArgs {
    #[command(flatten)]
    pub target: Target,
    /// Rewrite existing sidecars (unknown keys in them are kept).
    #[arg(long)]
    pub force: bool,
    /// Write nothing; print what would be written.
    #[arg(long)]
    pub dry_run: bool,
    /// Log each source tried and what it gave (DEBUG lines).
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub target: Target,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Readable text.
    Table,
    /// JSON (a stable contract).
    Json,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Checkpoint files (.ckpt .pt .pth .bin .safetensors).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// The checkpoint file.
    pub file: PathBuf,
    /// Add each tensor's sha256 (of its logical row-major little-endian bytes); reads tensor
    /// data.
    #[arg(long)]
    pub tensor_hashes: bool,
    /// Dump only the value at this dotted path (e.g. `callbacks`, `state_dict.net.weight`, or
    /// `optimizer_states.0.param_groups`). Keys containing dots are matched whole first.
    #[arg(long, value_name = "KEY.PATH")]
    pub at: Option<String>,
    /// One line of JSON instead of indented output.
    #[arg(long)]
    pub compact: bool,
    /// Refuse to write more than this many values (shared values count at each place).
    #[arg(long, default_value_t = 5_000_000, value_name = "N")]
    pub max_nodes: u64,
}

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Files or directories (directories are searched for .ckpt .pt .pth .bin .pkl files).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}
