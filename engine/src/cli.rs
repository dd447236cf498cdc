//! The `svault` command line: `serve`, `replay`, `inspect`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "svault", version, about = "stored-value card authorization engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (HTTP + binary TCP) on embedded defaults.
    Serve(ServeArgs),
    /// Rebuild state offline from snapshot + WAL; print totals, float and digest.
    Replay(ReplayArgs),
    /// Show segments, LSN ranges, snapshots and torn tails.
    Inspect(InspectArgs),
}

/// Flags of `svault serve` (SPEC.md).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[arg(long, default_value = "./svault-data")]
    pub data: std::path::PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: String,
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub tcp: String,
    #[arg(long)]
    pub shards: Option<usize>,
    #[arg(long, value_enum, default_value_t = crate::runtime::Durability::Group)]
    pub durability: crate::runtime::Durability,
    #[arg(long)]
    pub api_keys: Option<std::path::PathBuf>,
}

/// Flags of `svault replay`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    #[arg(long)]
    pub data: std::path::PathBuf,
    #[arg(long, conflicts_with = "until_time")]
    pub until_lsn: Option<u64>,
    /// RFC 3339 time.
    #[arg(long)]
    pub until_time: Option<String>,
    #[arg(long)]
    pub verify: bool,
}

/// Flags of `svault inspect`.
#[derive(clap::Args, Debug, Clone)]
pub struct InspectArgs {
    #[arg(long)]
    pub data: std::path::PathBuf,
}

/// Entry point of the `svault` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Replay(args) => replay(args),
        Command::Inspect(args) => inspect(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    crate::serve::main(args)
}

fn replay(args: ReplayArgs) -> ExitCode {
    let _ = args;
    eprintln!("svault replay: not built yet");
    ExitCode::FAILURE
}

fn inspect(args: InspectArgs) -> ExitCode {
    let _ = args;
    eprintln!("svault inspect: not built yet");
    ExitCode::FAILURE
}
