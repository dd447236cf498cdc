//! Appends and commits forever, printing each committed LSN after `commit` returned.
//!
//! Used by the crash test (`wal/tests/crash.rs`), which SIGKILLs it at random moments and
//! checks that every LSN it printed survived. Payloads derive from the LSN
//! (`wal::testkit::payload_for`) so the test can check every byte.
//!
//! Usage: `wal-crash-writer DIR SEGMENT_BYTES msync|pwrite SEED`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use wal::{SyncMethod, Wal, WalOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(size), Some(method), Some(seed)) =
        (args.get(1), args.get(2), args.get(3), args.get(4))
    else {
        eprintln!("usage: wal-crash-writer DIR SEGMENT_BYTES msync|pwrite SEED");
        return ExitCode::from(2);
    };
    let (Ok(segment_size_bytes), Ok(seed)) = (size.parse::<u64>(), seed.parse::<u64>()) else {
        eprintln!("bad number");
        return ExitCode::from(2);
    };
    let sync_method = if method == "pwrite" {
        SyncMethod::PwriteFdatasync
    } else {
        SyncMethod::Msync
    };
    match run(
        PathBuf::from(dir),
        WalOptions {
            segment_size_bytes,
            sync_method,
            ..WalOptions::default()
        },
        seed,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wal-crash-writer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: PathBuf, options: WalOptions, seed: u64) -> Result<(), Box<dyn std::error::Error>> {
    let (mut log, _) = Wal::open(&dir, options)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut x = seed | 1;
    let mut payload = Vec::new();
    // Never outlive a test that forgot us: stop after a while (a dead parent also ends us
    // through EPIPE on stdout).
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(30) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let batch = 1 + x % 40;
        for _ in 0..batch {
            wal::testkit::payload_for(log.next_lsn().0, &mut payload);
            log.append(&payload)?;
        }
        let done = log.commit()?;
        writeln!(out, "{}", done.through.0)?;
        out.flush()?;
    }
    Ok(())
}
