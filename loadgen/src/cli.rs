//! The command line: `svault-loadgen --target URL …` runs a load test;
//! `svault-loadgen compare A.json B.json … --html cmp.html` merges reports.

use crate::report::Report;
use crate::run::{run, RunSpec};
use crate::workload::{Dist, Mix, Profile};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # svault over HTTP, open loop at 20 000 requests/s for 30 s, hot cards
  svault-loadgen --target http://127.0.0.1:8080 --cards 100000 --dist zipf:0.99 --rate 20000 \\
      --duration 30s --connections 64 --out http.json --html http.html
  # svault over the binary protocol, as fast as it answers, 1024 requests per frame, 4 frames in flight
  svault-loadgen --target tcp://127.0.0.1:7070 --cards 1000000 --rate 0 --batch 1024 \\
      --connections 2 --pipeline 4 --out tcp.json
  # the same workload on Postgres and Redis (schema, script and keys are created by the tool)
  svault-loadgen --target postgres://postgres@127.0.0.1:5432/postgres --cards 100000 --connections 16 --out pg.json
  svault-loadgen --target redis://127.0.0.1:6379 --cards 100000 --connections 50 --out redis.json
  # a campaign: top-up surge over the bonus ladder, evening discount, hot cards
  svault-loadgen --target http://127.0.0.1:8080 --profile campaign --rate 5000
  # your own mix
  svault-loadgen --target http://127.0.0.1:8080 --mix spend=90,top_up=10
  # several reports on one page
  svault-loadgen compare tcp.json http.json pg.json redis.json --html compare.html

Exit status: 0 when the money check passed, 3 when the target's money does not match the
generator's count, 1 on any other failure.";

fn duration(s: &str) -> Result<Duration, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// `svault-loadgen`: load tests of svault, with Postgres and Redis doing the same work.
#[derive(Debug, Parser)]
#[command(name = "svault-loadgen", version, about, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands; without one, the flags of [`RunArgs`] run a load test.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Merge several `--out` reports into one comparison page and table.
    Compare {
        /// Report files written with --out.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Write the comparison page here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Write the side-by-side table (Markdown) here.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
}

/// Flags of a load test.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// http://HOST:PORT | tcp://HOST:PORT | postgres://USER@HOST:PORT/DB | redis://HOST:PORT
    #[arg(long)]
    pub target: Option<String>,
    /// svault's HTTP address for a tcp:// target (programs are created over HTTP) [default: HOST:8080]
    #[arg(long)]
    pub admin: Option<String>,
    /// Cards to open and fund (each gets 1000.00) in the untimed setup.
    #[arg(long, default_value_t = 10_000)]
    pub cards: u64,
    /// Card choice: uniform | zipf:THETA [default: the profile's]
    #[arg(long)]
    pub dist: Option<Dist>,
    #[arg(long, value_enum, default_value_t = Profile::Steady)]
    pub profile: Profile,
    /// Your own weights, e.g. spend=70,top_up=20,hold_capture=5,refund=5,reversal=0 [default: the profile's]
    #[arg(long)]
    pub mix: Option<Mix>,
    /// Items per second, open loop (latency from each item's intended send time); 0 = closed loop.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Measured time after the warm-up (30s, 2m, or seconds).
    #[arg(long, value_parser = duration, default_value = "30s")]
    pub duration: Duration,
    /// Time before measuring (requests count for money, not for latency).
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub warmup: Duration,
    /// Connections to the target.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Workers per connection (requests or frames in flight per connection).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Items per request frame (tcp:// only; 1 = one request per frame).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Seed of the request stream: the same seed gives the same stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Names this run's program, cards, keys and tables [default: the Unix time].
    #[arg(long)]
    pub run_id: Option<u64>,
    /// Name of the run in tables and legends [default: the target kind].
    #[arg(long)]
    pub label: Option<String>,
    /// Write the full report as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a self-contained HTML page.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Leave the run's schema/keys on Postgres or Redis.
    #[arg(long)]
    pub keep: bool,
    /// svault http:// target: open and fund the cards over this tcp:// door (faster setup).
    #[arg(long)]
    pub setup_via: Option<String>,
    /// svault targets: how the server makes replies durable, for the report (e.g. "group").
    #[arg(long)]
    pub durability_note: Option<String>,
    /// No progress bar or setup messages.
    #[arg(long, short)]
    pub quiet: bool,
}

impl RunArgs {
    fn spec(&self) -> Result<RunSpec, String> {
        let target = self
            .target
            .clone()
            .ok_or("--target is required (see --help)")?;
        if self.batch > 1 && !target.starts_with("tcp://") {
            return Err("--batch applies to tcp:// targets only".into());
        }
        let run_id = self.run_id.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        Ok(RunSpec {
            target,
            admin: self.admin.clone(),
            cards: self.cards,
            dist: self.dist,
            profile: self.profile,
            mix: self.mix.clone(),
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            connections: self.connections.max(1),
            pipeline: self.pipeline.max(1),
            batch: self.batch.max(1),
            seed: self.seed,
            run_id,
            label: self.label.clone(),
            keep: self.keep,
            quiet: self.quiet,
            setup_via: self.setup_via.clone(),
            durability_note: self.durability_note.clone(),
        })
    }
}

fn write(path: &PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Writes the outputs a run asked for.
pub fn write_outputs(
    report: &Report,
    out: Option<&PathBuf>,
    html: Option<&PathBuf>,
) -> Result<(), String> {
    if let Some(p) = out {
        let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
        write(p, &json)?;
    }
    if let Some(p) = html {
        write(p, &crate::html::run_page(report))?;
    }
    Ok(())
}

fn compare(
    reports: &[PathBuf],
    html: Option<&PathBuf>,
    markdown: Option<&PathBuf>,
) -> Result<(), String> {
    let mut rs = Vec::new();
    for p in reports {
        let text =
            std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        let r: Report = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a report: {e}", p.display()))?;
        rs.push(r);
    }
    let table = crate::html::compare_markdown(&rs);
    println!("{table}");
    if let Some(p) = markdown {
        write(p, &table)?;
    }
    if let Some(p) = html {
        write(p, &crate::html::compare_page(&rs))?;
    }
    Ok(())
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Compare {
        reports,
        html,
        markdown,
    }) = &cli.command
    {
        return match compare(reports, html.as_ref(), markdown.as_ref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("svault-loadgen: {e}");
                ExitCode::from(1)
            }
        };
    }
    let spec = match cli.run.spec() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("svault-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("svault-loadgen: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let report = match rt.block_on(run(&spec)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("svault-loadgen: {e:#}");
            return ExitCode::from(1);
        }
    };
    print!("{}", report.summary());
    if let Err(e) = write_outputs(&report, cli.run.out.as_ref(), cli.run.html.as_ref()) {
        eprintln!("svault-loadgen: {e}");
        return ExitCode::from(1);
    }
    if !report.check.ok {
        eprintln!(
            "\n*** svault-loadgen: MONEY CHECK FAILED: {} ***\n",
            report.check.message
        );
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}
