//! `svault serve`: open the engine, create `demo` on first start, run HTTP and the binary
//! protocol until SIGINT/SIGTERM, then drain and shut down cleanly.
//!
//! Why embedded defaults: `cargo run --release -- serve` on a fresh machine must just work:
//! data in `./svault-data`, HTTP on 127.0.0.1:8080, TCP on 127.0.0.1:7070, auth off and
//! therefore loopback only. Tests pass `--http 127.0.0.1:0 --tcp 127.0.0.1:0` and read the
//! actual ports from the `svault listening http=ADDR tcp=ADDR` line.

use crate::auth::{ApiKeys, Auth};
use runtime::{Durability, Engine, EngineConfig, Scope};
use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use svault_core::command::{Command, Request};
use svault_core::program::Program;
use tokio::sync::watch;

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
    #[arg(long, value_enum, default_value_t = DurabilityArg::Group)]
    pub durability: DurabilityArg,
    #[arg(long)]
    pub api_keys: Option<std::path::PathBuf>,
    /// Size of each WAL segment file in MiB (default 64). Not in SPEC: tests that fill a
    /// small disk use small segments so that a rotation, and the refusal, come quickly.
    #[arg(long, hide = true)]
    pub wal_segment_mib: Option<u64>,
    /// Delete archived log segments (shard-N/archive/) last written more than N days ago.
    /// Default: keep the whole history.
    #[arg(long)]
    pub log_retention_days: Option<u32>,
    /// Snapshot every N records (default 10 M); small values exercise snapshots in tests.
    #[arg(long, hide = true)]
    pub snapshot_every_records: Option<u64>,
    /// Log (warn) every shard batch whose queue wait, apply, commit and reply add up to at
    /// least this many milliseconds, with its parts and what else the shard did meanwhile
    /// (segment rotation, preallocation, snapshot, tick, index growth). 0 logs every batch.
    #[arg(long, default_value_t = runtime::SLOW_BATCH_MS_DEFAULT)]
    pub slow_batch_ms: u64,
    /// Seconds a client has to send a request: an HTTP request's head, counted from when the
    /// connection began waiting for it (it opened, or the previous answer went out; so it is
    /// also how long an idle keep-alive connection stays open), then as long again for its body
    /// (`408 request_timeout`), or the rest of a binary frame once its first byte came. Slower
    /// clients are disconnected.
    #[arg(long, default_value_t = crate::http::HEADER_TIMEOUT_SECS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a connection may wait with nothing moving: HTTP, no byte either way while the
    /// server waits to read or to write (a client that never reads its answers); binary
    /// protocol, no frame begun while nothing is in flight, or an answer not written.
    #[arg(long, default_value_t = crate::http::IDLE_TIMEOUT_SECS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Messages (an HTTP request, a binary frame's share for the shard) waiting per shard
    /// beyond which new requests are refused with `503` + `Retry-After` (binary: OVERLOADED):
    /// it bounds the memory and the queueing delay of an overload.
    #[arg(long, default_value_t = runtime::Tuning::default().queue_depth_max as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub queue_depth: u64,
    /// Added to the wall clock (ms): lets crash drills and tests move days ahead across a
    /// restart (batch time never goes back, so only forward moves take effect).
    #[arg(long, hide = true, default_value_t = 0)]
    pub clock_offset_ms: i64,
}

/// `--durability` as the command line spells it; the runtime's [`runtime::Durability`] knows
/// nothing of clap.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DurabilityArg {
    /// fsync every batch before replying (batches are small).
    Sync,
    /// one fsync shared by every request that arrived together (default).
    #[default]
    Group,
    /// reply before the fsync; a timer flushes. Loses a window on crash.
    Async,
}

impl From<DurabilityArg> for runtime::Durability {
    fn from(d: DurabilityArg) -> runtime::Durability {
        match d {
            DurabilityArg::Sync => runtime::Durability::Sync,
            DurabilityArg::Group => runtime::Durability::Group,
            DurabilityArg::Async => runtime::Durability::Async,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Keys(#[from] crate::auth::KeyFileError),
    #[error("cannot resolve {what} address {addr:?}: {reason}")]
    Address {
        what: &'static str,
        addr: String,
        reason: String,
    },
    #[error("refusing to listen on {addr} ({what}) without --api-keys: auth is off, so svault binds loopback addresses only")]
    NotLoopback {
        what: &'static str,
        addr: SocketAddr,
    },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot open the engine: {0}")]
    Engine(#[from] runtime::EngineError),
    #[error("cannot create the demo program: {0}")]
    Demo(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs `svault serve` and maps errors to a non-zero exit.
pub fn main(args: ServeArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets plain `key=value`.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("svault: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn resolve(what: &'static str, addr: &str) -> Result<Vec<SocketAddr>, ServeError> {
    let err = |reason: String| ServeError::Address {
        what,
        addr: addr.to_string(),
        reason,
    };
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(err("no address".into()));
    }
    Ok(addrs)
}

/// Starts everything and blocks until a signal has been handled.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    let auth = match &args.api_keys {
        Some(path) => Auth::Keys(Arc::new(ApiKeys::load(path)?)),
        None => Auth::Off,
    };
    let http_addrs = resolve("http", &args.http)?;
    let tcp_addrs = resolve("tcp", &args.tcp)?;
    if !auth.is_on() {
        for (what, addrs) in [("http", &http_addrs), ("tcp", &tcp_addrs)] {
            if let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                return Err(ServeError::NotLoopback { what, addr: *addr });
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("svault-io")
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(serve(args, auth, http_addrs, tcp_addrs))
}

async fn bind(
    what: &'static str,
    addrs: &[SocketAddr],
) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addrs)
        .await
        .map_err(|source| ServeError::Bind {
            what,
            addr: addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(","),
            source,
        })
}

async fn serve(
    args: ServeArgs,
    auth: Auth,
    http_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
) -> Result<(), ServeError> {
    // Bind first: a busy port must fail before anything is written to the data directory.
    let http = bind("http", &http_addrs).await?;
    let tcp = bind("tcp", &tcp_addrs).await?;
    let config = EngineConfig {
        data_dir: args.data.clone(),
        shards: args.shards,
        durability: args.durability.into(),
    };
    let mut tuning = runtime::Tuning {
        log_retention_days: args.log_retention_days,
        slow_batch_ms: args.slow_batch_ms,
        snapshot_every_records: args
            .snapshot_every_records
            .unwrap_or(runtime::Tuning::default().snapshot_every_records),
        clock: {
            let offset = args.clock_offset_ms;
            std::sync::Arc::new(move || {
                svault_core::command::Millis(runtime::wall_clock().0.saturating_add(offset))
            })
        },
        queue_depth_max: usize::try_from(args.queue_depth).unwrap_or(usize::MAX),
        ..runtime::Tuning::default()
    };
    if let Some(mib) = args.wal_segment_mib {
        tuning.wal.segment_size_bytes = mib.saturating_mul(1 << 20);
    }
    let engine = tokio::task::spawn_blocking(move || Engine::open_with(config, tuning))
        .await
        .map_err(|e| ServeError::Demo(format!("engine open panicked: {e}")))??;
    // `demo` is created when no shard knows any program yet: on a new directory, and also after
    // a first start that died before the program was committed (programs are never deleted).
    let demo_created = no_programs(&engine).await? && {
        let request = Request {
            idempotency_key: None,
            command: Command::UpsertProgram(Program::demo()),
        };
        let reply = engine
            .submit(request, &Scope::All)
            .await
            .map_err(|e| ServeError::Demo(e.to_string()))?;
        if !matches!(reply.outcome, svault_core::outcome::Outcome::Approved(_)) {
            return Err(ServeError::Demo(format!("{:?}", reply.outcome)));
        }
        true
    };
    let http_addr = http.local_addr().map_err(|source| ServeError::Bind {
        what: "http",
        addr: args.http.clone(),
        source,
    })?;
    let tcp_addr = tcp.local_addr().map_err(|source| ServeError::Bind {
        what: "tcp",
        addr: args.tcp.clone(),
        source,
    })?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let app = crate::http::AppState::new(engine.clone(), auth.clone());
    let http_task = tokio::spawn(crate::http::serve(
        http,
        app,
        crate::http::HttpLimits {
            header_timeout: Duration::from_secs(args.header_timeout_secs),
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            ..crate::http::HttpLimits::default()
        },
        stopped(stop_rx.clone()),
    ));
    let tcp_task = tokio::spawn(crate::tcp::serve(
        tcp,
        engine.clone(),
        auth.clone(),
        crate::tcp::TcpLimits {
            frame_timeout: Duration::from_secs(args.header_timeout_secs),
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            ..crate::tcp::TcpLimits::default()
        },
        stopped(stop_rx.clone()),
    ));

    print_banner(&args, &auth, http_addr, tcp_addr, demo_created);
    wait_for_signal().await;
    println!("svault: shutting down (finishing in-flight requests)");
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = http_task.await {
        tracing::warn!("http server: {e}");
    }
    if let Ok(Err(e)) = tcp_task.await {
        tracing::warn!("tcp server: {e}");
    }
    let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
    println!("svault: stopped");
    let _ = std::io::stdout().flush();
    Ok(())
}

/// `true` when no shard has any program (asks the shard threads; cold path, once at start).
async fn no_programs(engine: &Engine) -> Result<bool, ServeError> {
    let engine = engine.clone();
    let counts =
        tokio::task::spawn_blocking(move || engine.with_states(|state| state.programs().count()))
            .await
            .map_err(|e| ServeError::Demo(format!("program check panicked: {e}")))?
            .map_err(|e| ServeError::Demo(e.to_string()))?;
    Ok(counts.iter().all(|&n| n == 0))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print_banner(args: &ServeArgs, auth: &Auth, http: SocketAddr, tcp: SocketAddr, created: bool) {
    let durability = match Durability::from(args.durability) {
        Durability::Sync => "sync (one fsync per request)",
        Durability::Group => "group (one fsync per group of requests; every reply is durable)",
        Durability::Async => {
            "ASYNC (replies before fsync: a crash loses the last moments; for load tests only)"
        }
    };
    let auth_line = if auth.is_on() {
        "auth: on (Authorization: Bearer KEY required)".to_string()
    } else {
        "auth: OFF (no --api-keys): listening on loopback only".to_string()
    };
    let bearer = if auth.is_on() {
        " -H 'Authorization: Bearer YOUR_KEY'"
    } else {
        ""
    };
    let base = format!("http://{http}");
    let card = "6200000000000001";
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "svault {} — data {}",
        env!("CARGO_PKG_VERSION"),
        args.data.display()
    );
    if created {
        let _ = writeln!(
            out,
            "new data directory: created the `demo` program (first top-up of 100 gets +15.00)"
        );
    }
    let _ = writeln!(out, "durability: {durability}");
    let _ = writeln!(out, "{auth_line}");
    let _ = writeln!(out, "try it:");
    let _ = writeln!(
        out,
        "  curl -s -X POST {base}/v1/cards{bearer} -H 'Idempotency-Key: open-{card}' -H 'Content-Type: application/json' -d '{{\"program\":\"demo\",\"card_id\":\"{card}\",\"registered\":true}}'"
    );
    let _ = writeln!(
        out,
        "  curl -s -X POST {base}/v1/cards/{card}/top-ups{bearer} -H 'Idempotency-Key: top-up-1' -H 'Content-Type: application/json' -d '{{\"amount\":\"100.00\",\"channel\":\"wechat\"}}'"
    );
    let _ = writeln!(out, "  curl -s {base}/v1/cards/{card}{bearer}");
    let _ = writeln!(out, "API document: {base}/openapi.json   metrics: {base}/metrics   binary protocol: docs/protocol.md");
    let _ = writeln!(out, "svault listening http={http} tcp={tcp}");
    let _ = out.flush();
}
