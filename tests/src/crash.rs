//! The line protocol between the crash driver (`src/bin/crash-driver.rs`) and the crash test:
//! every acknowledged request is printed as `ACK <request as hex rkyv> <outcome shape>`, so the
//! test can resubmit exactly that request after a kill and compare the answer.

use svault_core::command::{Millis, Request};
use svault_core::outcome::Outcome;
use svault_core::record::{self, LogRecord, LOG_RECORD_VERSION};

/// First card id of the pool the driver uses (every round shares it, so later rounds build on
/// earlier balances).
pub const POOL_FIRST: u64 = 6_200_000_000_000_000;
/// Cards in the pool.
pub const POOL_CARDS: u64 = 48;

/// The engine limits the crash driver and the crash test both use: small segments and frequent
/// snapshots, so kills also land during segment rotation, snapshot writes and segment removal.
pub fn driver_tuning() -> runtime::Tuning {
    let mut t = runtime::Tuning {
        snapshot_every_records: 3_000,
        ..Default::default()
    };
    t.wal.segment_size_bytes = 1 << 20;
    t
}

/// What must be identical when an acknowledged request is answered again from its key.
pub fn shape(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Approved(a) => format!(
            "approved:{}:{}:{}:{}:{}",
            a.kind.as_str(),
            a.txn_id.map(|t| t.to_string()).unwrap_or_default(),
            a.amount.0,
            a.principal.0,
            a.bonus.0
        ),
        Outcome::Declined { code, .. } => format!("declined:{}", code.as_str()),
        Outcome::Rejected(r) => format!("rejected:{r:?}").replace(' ', "_"),
    }
}

/// One `ACK` line for an acknowledged request.
pub fn ack_line(request: &Request, outcome: &Outcome) -> String {
    let rec = LogRecord {
        version: LOG_RECORD_VERSION,
        now: Millis(0),
        caller: svault_core::command::CallerId::DEFAULT,
        request: request.clone(),
    };
    let mut buf = rkyv::util::AlignedVec::<16>::new();
    let hex = match record::encode_into(&rec, &mut buf) {
        Ok(()) => buf.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        Err(_) => String::new(),
    };
    format!("ACK {hex} {}", shape(outcome))
}

/// Parses an `ACK` line back into the request and its outcome shape; `None` for anything else
/// (including a line cut by the kill).
pub fn parse_ack(line: &str) -> Option<(Request, String)> {
    let mut parts = line.split(' ');
    if parts.next()? != "ACK" {
        return None;
    }
    let hex = parts.next()?;
    let shape = parts.next()?.to_string();
    if parts.next().is_some() || hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let rec = record::decode(&bytes?).ok()?;
    Some((rec.request, shape))
}
