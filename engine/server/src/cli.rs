//! The `svault` command line: `serve`, `replay`, `inspect`, `report`. It knows `serve` (whose
//! flags live with it, [`ServeArgs`]); `serve` knows nothing of the command line around it.

use crate::serve::ServeArgs;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "svault",
    version,
    about = "stored-value card authorization engine"
)]
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
    /// Finance and marketing views from the log (read-only; safe while the server runs).
    Report(ReportArgs),
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
    /// Replay from LSN 1, ignoring snapshots (needs the whole log).
    #[arg(long)]
    pub ignore_snapshots: bool,
}

/// Flags of `svault inspect`.
#[derive(clap::Args, Debug, Clone)]
pub struct InspectArgs {
    #[arg(long)]
    pub data: std::path::PathBuf,
}

/// Output form of `svault report`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

/// Flags of `svault report`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    #[arg(long)]
    pub data: std::path::PathBuf,
    /// RFC 3339 time: records at or after it (default: the first record).
    #[arg(long)]
    pub from: Option<String>,
    /// RFC 3339 time: records before it (default: just after the last record).
    #[arg(long)]
    pub to: Option<String>,
    /// Only this program.
    #[arg(long)]
    pub program: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// A card with no activity in this many days before --to has churned.
    #[arg(long, default_value_t = 30)]
    pub churn_days: u32,
    /// Custody ratio on the last quarter-end principal: 0.2 scale, 0.3 group, 0.4 brand issuers.
    #[arg(long, default_value = "0.4")]
    pub custody_ratio: String,
    /// Share of top-ups the payback period counts.
    #[arg(long, default_value = "0.3")]
    pub payback_factor: String,
    /// Also write the transaction journal and the events as Parquet, partitioned by local
    /// day (DIR/journal/day=YYYY-MM-DD/part-S.parquet, DIR/events/...); DIR must not hold
    /// an earlier export.
    #[arg(long, value_name = "DIR")]
    pub parquet: Option<std::path::PathBuf>,
}

/// Entry point of the `svault` binary.
pub fn main() -> ExitCode {
    // Before the state grows: see `runtime::pages` (huge-page faults stall the shard threads).
    if let Err(e) = runtime::pages::small_pages_only() {
        eprintln!(
            "svault: transparent huge pages stay on ({e}): expect longer stalls as memory grows"
        );
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Replay(args) => replay(args),
        Command::Inspect(args) => inspect(args),
        Command::Report(args) => report(args),
    }
}

fn report(args: ReportArgs) -> ExitCode {
    let time = |flag: &str,
                v: &Option<String>|
     -> Result<Option<svault_core::command::Millis>, ExitCode> {
        match v {
            None => Ok(None),
            Some(t) => runtime::replay::parse_rfc3339(t).map(Some).ok_or_else(|| {
                eprintln!("svault report: {flag} {t:?} is not an RFC 3339 time (e.g. 2026-11-24T09:30:00+08:00)");
                ExitCode::from(2)
            }),
        }
    };
    let rate = |flag: &str, v: &str| -> Result<svault_core::money::Rate, ExitCode> {
        svault_core::money::Rate::parse(v).map_err(|_| {
            eprintln!("svault report: {flag} {v:?} is not a decimal rate (e.g. 0.3)");
            ExitCode::from(2)
        })
    };
    let options = (|| {
        Ok::<_, ExitCode>(runtime::report::ReportOptions {
            from: time("--from", &args.from)?,
            to: time("--to", &args.to)?,
            program: args.program.clone(),
            churn_days: args.churn_days,
            custody_ratio: rate("--custody-ratio", &args.custody_ratio)?,
            payback_factor: rate("--payback-factor", &args.payback_factor)?,
            progress: true,
            parquet: args.parquet.clone(),
        })
    })();
    let options = match options {
        Ok(o) => o,
        Err(code) => return code,
    };
    let report = match runtime::report::run(&args.data, &options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("svault report: {e}");
            return ExitCode::FAILURE;
        }
    };
    use runtime::report::figures;
    let out = match args.format {
        ReportFormat::Table => figures::table(&report),
        ReportFormat::Json => figures::json(&report),
        ReportFormat::Csv => figures::csv(&report),
    };
    print!("{out}");
    if args.format == ReportFormat::Table {
        println!(
            "{} records in {:.3} s = {:.0} records/s",
            report.records,
            report.elapsed.as_secs_f64(),
            report.records_per_sec()
        );
    }
    if let (Some(c), Some(dir)) = (&report.parquet, &args.parquet) {
        // On stderr: JSON and CSV on stdout stay one document.
        eprintln!(
            "parquet: {} journal rows and {} events in {} files under {}",
            c.journal_rows,
            c.event_rows,
            c.files,
            dir.display()
        );
    }
    ExitCode::SUCCESS
}

fn serve(args: ServeArgs) -> ExitCode {
    crate::serve::main(args)
}

fn replay(args: ReplayArgs) -> ExitCode {
    use runtime::recovery::Until;
    let until = match (args.until_lsn, &args.until_time) {
        (Some(n), _) => Until::Lsn(n),
        (None, Some(t)) => match runtime::replay::parse_rfc3339(t) {
            Some(ms) => Until::Time(ms),
            None => {
                eprintln!("svault replay: --until-time {t:?} is not an RFC 3339 time (e.g. 2026-11-24T09:30:00+08:00)");
                return ExitCode::from(2);
            }
        },
        (None, None) => Until::End,
    };
    let options = runtime::replay::ReplayOptions {
        until,
        verify: args.verify,
        ignore_snapshots: args.ignore_snapshots,
    };
    let report = match runtime::replay::replay(&args.data, &options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("svault replay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cny = svault_core::money::Currency::Cny;
    println!(
        "svault replay of {} ({} shards)",
        args.data.display(),
        report.shards.len()
    );
    for s in &report.shards {
        println!(
            "shard {}: snapshot lsn {}, {} records applied in {:.3} s (through lsn {} of {}{}), {} cards, digest {:016x}{}",
            s.shard,
            s.snapshot_lsn,
            s.records,
            s.elapsed.as_secs_f64(),
            s.last_lsn,
            s.log_last_lsn,
            if s.stopped_early { ", stopped at the point asked for" } else { "" },
            s.cards,
            s.digest,
            s.torn_tail.as_ref().map(|t| format!(", ends in a torn tail a restart would cut (left in place): {t}")).unwrap_or_default()
        );
    }
    println!(
        "records: {} in {:.3} s = {:.0} records/s (shards in parallel, the log read in place)",
        report.records,
        report.elapsed.as_secs_f64(),
        report.records_per_sec()
    );
    println!(
        "{:<16} {:>18} {:>18} {:>18} {:>10}",
        "float", "principal", "bonus", "held", "cards"
    );
    let mut total = svault_core::outcome::FloatTotals::default();
    for (program, f) in &report.float {
        println!(
            "{:<16} {:>18} {:>18} {:>18} {:>10}",
            program,
            cny.format(f.principal),
            cny.format(f.bonus),
            cny.format(f.held),
            f.cards
        );
        total.principal += f.principal;
        total.bonus += f.bonus;
        total.held += f.held;
        total.cards += f.cards;
    }
    println!(
        "{:<16} {:>18} {:>18} {:>18} {:>10}",
        "total",
        cny.format(total.principal),
        cny.format(total.bonus),
        cny.format(total.held),
        total.cards
    );
    println!("digest: {:016x}", report.digest);
    if args.verify {
        let mut ok = true;
        for s in &report.shards {
            if let Some(Err(e)) = &s.verify {
                ok = false;
                println!("verify: shard {}: FAILED: {e}", s.shard);
            }
        }
        if !ok {
            return ExitCode::FAILURE;
        }
        println!("verify: ok");
    }
    ExitCode::SUCCESS
}

fn inspect(args: InspectArgs) -> ExitCode {
    match runtime::inspect::inspect_with(&args.data, true) {
        Ok(shards) => {
            let (text, bad) = runtime::inspect::render(&shards);
            print!("{text}");
            if bad {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("svault inspect: {e}");
            ExitCode::FAILURE
        }
    }
}
