//! What the user typed. Validation into working configuration happens in each command.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Know everything about your checkpoints: no torch, no pickle code executed, no tensor data
/// read that is not needed.
#[derive(Debug, Parser)]
#[command(name = "ckpt", version, about, long_about = None)]
pub struct Cli {
    /// The endpoint of an S3-compatible store (MinIO, Ceph, a local test server …) for
    /// `s3://` paths; overrides `AWS_ENDPOINT_URL`. An `http://` endpoint given here allows
    /// plain HTTP (through the environment that takes `AWS_ALLOW_HTTP=true`).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,
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
    /// Print a JSON Schema: the sidecar's (default), or a command's `--format json` output.
    Schema(SchemaArgs),
    /// List checkpoints under paths with everything known about them (cached).
    Catalog(CatalogArgs),
    /// The catalog's cache: where it is, how big, or remove it.
    Cache(CacheArgs),
    /// A deterministic experiment identity: architecture + hyperparameters + data.
    Hash(HashArgs),
    /// What changed between two checkpoints (exit 1 when their identities differ).
    Diff(DiffArgs),
    /// Checkpoints grouped into experiments, with latest step, best score, size and hash.
    Experiments(ExperimentsArgs),
    /// Print the path of the newest checkpoint (or the one at --step), for scripts.
    Latest(LatestArgs),
    /// Keep the top-k (and best, last, newest …) per experiment; delete the rest with --yes.
    Prune(PruneArgs),
    /// N checkpoints or runs side by side: what differs in metrics, hyperparameters, model,
    /// tensors and identity.
    Compare(CompareArgs),
    /// Convert FSDP/DDP/compiled checkpoints into Hugging Face folders or safetensors.
    Convert(ConvertArgs),
    /// Watch trees: write each new checkpoint's sidecar once it is complete, remove those of
    /// deleted ones, keep the catalog cache fresh.
    Watch(WatchArgs),
    /// Serve the catalog of trees over HTTP: a web UI and its JSON API (`/api/checkpoints`,
    /// `/api/fields`, `/api/events`, …; docs/serve-api.md), updated live as checkpoints
    /// appear, change or go; read-only unless --allow-writes; loopback only unless --host
    /// says otherwise.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Folders (or checkpoint files) to serve, recursively (default: the current folder).
    /// Nothing outside them is ever served.
    pub paths: Vec<PathBuf>,
    /// The port to listen on; 0 picks a free one (the first line printed says which).
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    /// The address to listen on. Anything but loopback requires the access token printed at
    /// start (`?token=` or `Authorization: Bearer`).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The catalog cache (default: `ckpt catalog`'s).
    #[arg(long, value_name = "FILE", conflicts_with = "no_cache")]
    pub cache_file: Option<PathBuf>,
    /// Neither read nor write the catalog cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Open the page in the desktop's browser (xdg-open, or open on macOS) once listening;
    /// without one, a line says so and serving goes on.
    #[arg(long)]
    pub open: bool,
    /// See changes by listing the trees every second instead of using inotify (network
    /// filesystems); automatic when inotify cannot watch them.
    #[arg(long)]
    pub poll: bool,
    /// Seconds between two listings of a bucket root (`s3://…`): a bucket sends no events,
    /// so it is listed again (an unchanged bucket costs its listings, no GET).
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub relist: f64,
    /// Allow the UI to write sidecars and prune checkpoints under the served paths (each
    /// write shows its plan first and needs its confirmation); without it every write is
    /// refused (403).
    #[arg(long)]
    pub allow_writes: bool,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Folders (or checkpoint files) to watch, recursively.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// List the trees every --interval instead of using inotify (network filesystems);
    /// automatic when inotify cannot watch them.
    #[arg(long)]
    pub poll: bool,
    /// Seconds between two listings with --poll.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub interval: f64,
    /// Catch up (write missing sidecars, remove orphaned ones ckpt wrote) and exit: for cron
    /// and tests.
    #[arg(long)]
    pub once: bool,
    /// The catalog cache to keep fresh (default: `ckpt catalog`'s).
    #[arg(long, value_name = "FILE")]
    pub cache_file: Option<PathBuf>,
    /// Leave the catalog cache alone.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// A checkpoint file or DCP directory, or a folder of them; every checkpoint converts into
    /// a folder named after it under --output-dir.
    pub input: Option<PathBuf>,
    /// A task file (`task: convert`, `convert: {base_model, checkpoint_path, initial_format,
    /// final_format, output_dir}`, paths relative to the file); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A Hugging Face model folder, or a model id in the local Hugging Face cache.
    #[arg(long, value_name = "DIR|ID")]
    pub base_model: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// fsdp | ddp | compiled | dcp | auto (wrapper prefixes are removed in every case).
    #[arg(long, value_name = "FORMAT")]
    pub from: Option<String>,
    /// huggingface (default) | safetensors.
    #[arg(long, value_name = "FORMAT")]
    pub to: Option<String>,
    /// Dotted path of the state dict inside the checkpoint.
    #[arg(long, value_name = "PATH")]
    pub key: Option<String>,
    /// Remove this prefix from tensor names (after wrapper prefixes); repeatable.
    #[arg(long, value_name = "P")]
    pub strip_prefix: Vec<String>,
    /// Put this prefix in front of every tensor name.
    #[arg(long, value_name = "P")]
    pub add_prefix: Option<String>,
    /// Shard the weights above this size (`5GB`, `500MB`, bytes).
    #[arg(long, value_name = "SIZE", default_value = "5GB")]
    pub max_shard_size: String,
    /// keep | bf16 | fp16 | fp32: cast floating-point tensors.
    #[arg(long, value_name = "DTYPE", default_value = "keep")]
    pub dtype: String,
    /// Replace an existing output folder (the new folder is flushed to disk before the old
    /// one is removed).
    #[arg(long)]
    pub force: bool,
    /// Flush every written file and folder to disk before renaming the output into place,
    /// so that the folder survives a power loss too (slower: waits for the disk).
    #[arg(long)]
    pub sync: bool,
    /// Report what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct HashArgs {
    /// A checkpoint file, or a hash-named experiment folder.
    pub path: PathBuf,
    /// Hyperparameters from this YAML or JSON file instead of the checkpoint's.
    #[arg(long, value_name = "FILE")]
    pub hparams: Option<PathBuf>,
    /// Active sample UIDs: one per line, a JSON array, or a CSV column.
    #[arg(long, value_name = "FILE")]
    pub data_uids: Option<PathBuf>,
    /// The CSV column holding UIDs.
    #[arg(long, value_name = "NAME")]
    pub uid_column: Option<String>,
    /// Drop a hyperparameter (dotted path) before hashing; repeatable.
    #[arg(long, value_name = "KEY.PATH")]
    pub ignore: Vec<String>,
    /// The identity algorithm: `v2` (the run's full config) or `v1` (as computed before v2).
    #[arg(long, value_name = "VERSION", default_value = "v2")]
    pub algorithm: ckpt_identity::Algorithm,
    /// Check that PATH is experiment HASH (`v1:…` or `v2:…`, as `ckpt hash` printed it, in
    /// the algorithm its prefix names); exit 1 when it is not.
    #[arg(long, value_name = "HASH", conflicts_with = "algorithm")]
    pub expect: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    pub a: PathBuf,
    pub b: PathBuf,
    /// Drop a hyperparameter (dotted path) before comparing; repeatable.
    #[arg(long, value_name = "KEY.PATH")]
    pub ignore: Vec<String>,
    /// The identity algorithm: `v2` (the run's full config) or `v1` (as computed before v2).
    #[arg(long, value_name = "VERSION", default_value = "v2")]
    pub algorithm: ckpt_identity::Algorithm,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Checkpoints (files or DCP folders), or run folders (their best checkpoint by the
    /// monitored metric, else their newest).
    #[arg(required = true, num_args = 2..)]
    pub paths: Vec<PathBuf>,
    /// Show model and hyperparameter fields that are the same everywhere too.
    #[arg(long)]
    pub all: bool,
    /// Most differing tensors listed (all are counted).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_tensors: usize,
    /// Do not fit the table to the terminal's width.
    #[arg(long)]
    pub wide: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct ExperimentsArgs {
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Neither read nor write the catalog cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Group per run (a Hydra job, a Lightning version …) or per experiment.
    #[arg(long, value_enum, default_value_t = GroupByArg::Run)]
    pub group_by: GroupByArg,
}

#[derive(Debug, clap::Args)]
pub struct LatestArgs {
    /// An experiment folder (or any folder of checkpoints).
    pub path: PathBuf,
    /// Only this experiment (as `ckpt experiments` names it).
    #[arg(long)]
    pub experiment: Option<String>,
    /// The checkpoint at this global step instead of the newest.
    #[arg(long)]
    pub step: Option<i64>,
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Keep the best K per experiment by --monitor.
    #[arg(long, value_name = "K")]
    pub keep_top: usize,
    /// The metric that ranks checkpoints (`val/hmean`, `val_f1` …).
    #[arg(long)]
    pub monitor: String,
    #[arg(long, value_parser = ["max", "min"])]
    pub mode: String,
    /// Also keep the newest N per experiment.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: usize,
    /// Also keep checkpoints whose global step is a multiple of STEPS.
    #[arg(long, value_name = "STEPS")]
    pub keep_every: Option<u64>,
    /// Delete. Without it, only the plan is printed.
    #[arg(long)]
    pub yes: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    #[arg(long)]
    pub no_cache: bool,
    /// Group per run (a Hydra job, a Lightning version …) or per experiment.
    #[arg(long, value_enum, default_value_t = GroupByArg::Run)]
    pub group_by: GroupByArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupByArg {
    Run,
    Experiment,
}

impl GroupByArg {
    pub fn get(self) -> ckpt_catalog::query::GroupBy {
        match self {
            GroupByArg::Run => ckpt_catalog::query::GroupBy::Run,
            GroupByArg::Experiment => ckpt_catalog::query::GroupBy::Experiment,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CatalogFormat {
    Table,
    Json,
    Jsonl,
    Csv,
    Parquet,
}

#[derive(Debug, clap::Args)]
pub struct CatalogArgs {
    /// Folders or checkpoint files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format (`json` and `parquet` are stable contracts; `parquet`, one row per
    /// checkpoint, needs `--output FILE`).
    #[arg(long, value_enum, default_value_t = CatalogFormat::Table)]
    pub format: CatalogFormat,
    /// Write the output to FILE (atomically: complete or not at all) instead of stdout;
    /// required for `--format parquet`.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Sort by a field: `epoch`, `global_step`, `size_bytes`, `modified`, a metric (`hmean`,
    /// `metrics.val_f1`) or a model field (`architecture`).
    #[arg(long, value_name = "FIELD")]
    pub sort: Option<String>,
    /// Sort descending.
    #[arg(long)]
    pub desc: bool,
    /// Keep entries matching `FIELD OP VALUE` (ops: = != > >= < <= ~); repeatable.
    #[arg(long, value_name = "EXPR")]
    pub filter: Vec<String>,
    /// One checkpoint per experiment: the best by its monitor and mode (or --by/--mode).
    #[arg(long)]
    pub best: bool,
    /// The metric --best ranks by.
    #[arg(long, value_name = "METRIC")]
    pub by: Option<String>,
    /// Whether --by is maximized or minimized.
    #[arg(long, value_parser = ["max", "min"])]
    pub mode: Option<String>,
    /// One checkpoint per experiment: the newest.
    #[arg(long)]
    pub latest: bool,
    /// Only the given folders, not their subfolders.
    #[arg(long)]
    pub no_recursive: bool,
    /// Descend at most N folders below each path.
    #[arg(long, value_name = "N")]
    pub max_depth: Option<usize>,
    /// Neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// The cache file (default: $CKPT_CACHE_DIR, $XDG_CACHE_HOME/ckpt or ~/.cache/ckpt).
    #[arg(long, value_name = "PATH")]
    pub cache_file: Option<PathBuf>,
    /// Say how many checkpoints were opened, cached, or described by sidecars.
    #[arg(long, short)]
    pub verbose: bool,
    /// Rank `--best`/`--latest` within each run (a Hydra job, a Lightning version …) or across
    /// every run of an experiment.
    #[arg(long, value_enum, default_value_t = GroupByArg::Run)]
    pub group_by: GroupByArg,
    /// Show every field of this checkpoint with the source it came from, and the sources
    /// that disagree.
    #[arg(long, value_name = "PATH")]
    pub explain: Option<PathBuf>,
    /// Table columns, comma-separated field names (`epoch,metrics.val_loss,hparams.lr,model.encoder`).
    #[arg(long, value_name = "FIELDS", value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Do not fit the table to the terminal's width.
    #[arg(long)]
    pub wide: bool,
}

#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
    /// The cache file (default: $CKPT_CACHE_DIR, $XDG_CACHE_HOME/ckpt or ~/.cache/ckpt).
    #[arg(long, value_name = "PATH", global = true)]
    pub cache_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CacheCommand {
    /// Where the cache is, its schema version, entries and size.
    Info,
    /// Remove the cache file.
    Clear,
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
#[command(after_help = schema_list())]
pub struct SchemaArgs {
    /// Which schema (default: sidecar).
    #[arg(value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(crate::schema::names()))]
    pub name: Option<String>,
}

/// The `Schemas:` list under `ckpt schema --help`.
fn schema_list() -> String {
    let mut s = String::from("Schemas:");
    for e in crate::schema::SCHEMAS {
        s.push_str(&format!("\n  {:<10} {}", e.name, e.about));
    }
    s
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
    /// Files or directories (every file under a directory is scanned, whatever its name).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}
