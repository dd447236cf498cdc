//! The systems under load: svault over HTTP and over its binary protocol, Postgres and Redis.
//!
//! Why one trait pair: the driver, the statistics and the correctness check must be the same
//! for every system, or the side-by-side comparison means nothing. A [`Backend`] prepares
//! the run untimed (program, cards and balances; schema and script) and reads the money
//! back at the end; a [`Conn`] is one connection that turns stream items into requests.

use crate::stats::Outcome;
use crate::workload::{Item, Minor, OpKind, Workload};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Instant;

pub mod postgres;
pub mod proto;
pub mod redis;
pub mod svault_http;
pub mod svault_tcp;

/// One request's answer as a connection reports it.
#[derive(Debug, Clone)]
pub struct Done {
    /// Index of the item in the slice given to [`Conn::run`] (for a capture carried to a later
    /// call, in the slice of the call its hold came from; it is timed from `sent`).
    pub item: usize,
    pub op: OpKind,
    pub outcome: Outcome,
    /// When this request was sent, for the second request of an item (a capture after its
    /// hold); `None` for an item's first request, whose latency counts from the item's
    /// intended send time.
    pub sent: Option<Instant>,
    pub at: Instant,
}

/// One connection to the target.
pub trait Conn: Send + 'static {
    /// Sends every request of `items` (a batching target may put them in one frame) and
    /// reports each answer.
    fn run(&mut self, items: &[Item]) -> impl Future<Output = Vec<Done>> + Send;

    /// Once the run is over: sends what the connection still owes (a batched svault worker
    /// carries the captures of one frame's holds to its next frame) and reports it.
    fn finish(&mut self) -> impl Future<Output = Vec<Done>> + Send {
        async { Vec::new() }
    }
}

/// What the report says about the target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetInfo {
    /// `svault-http`, `svault-tcp`, `postgres`, `redis`.
    pub kind: String,
    pub url: String,
    /// Server version as the server reports it, when it does.
    pub version: Option<String>,
    /// How an acknowledged request is made durable (as read back from the server).
    pub durability: String,
    /// Operations or rules this target cannot express, and what the run did instead.
    pub unsupported: Vec<Unsupported>,
}

/// An operation or rule a target cannot express.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unsupported {
    pub what: String,
    pub instead: String,
}

/// What setup loaded, as the generator counted it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Loaded {
    pub cards: u64,
    /// Money the cards hold after setup (funding + setup bonus − setup spends), minor units.
    pub money_minor: i128,
}

/// A system under load.
pub trait Backend: Send + Sync {
    /// The connection [`Backend::connect`] opens; the driver opens one per worker.
    type Conn: Conn;
    /// What the report says about the target; asked after the run, so it includes what setup read
    /// back (Postgres's and Redis's durability settings).
    fn info(&self) -> TargetInfo;
    /// Creates what the run needs and loads the cards, untimed.
    fn setup(&mut self, w: &Workload) -> impl Future<Output = anyhow::Result<Loaded>> + Send;
    /// Opens one connection for one worker; called after setup, untimed.
    fn connect(&self) -> impl Future<Output = anyhow::Result<Self::Conn>> + Send;
    /// The money the target holds for this run's cards, read back from it (minor units).
    fn money(&self) -> impl Future<Output = anyhow::Result<i128>> + Send;
    /// Removes what setup created, when the target keeps it and the user did not ask to keep it.
    fn cleanup(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The money a request that failed with `kind` could have moved: nothing when it failed to
/// connect (it was never sent: a server down between a kill and its restart), else
/// [`at_stake`].
pub fn at_stake_after(kind: &str, op: OpKind, amount: Minor) -> Minor {
    if kind == "connect" {
        0
    } else {
        at_stake(op, amount)
    }
}

/// The most money an unanswered request of `op` for `amount` could have moved: a top-up up to
/// twice its amount (it may carry ladder bonus), anything else its amount.
pub fn at_stake(op: OpKind, amount: Minor) -> Minor {
    match op {
        // A top-up may carry ladder bonus: up to the amount again.
        OpKind::TopUp => amount.saturating_mul(2),
        _ => amount,
    }
}

/// Parses a decimal money string of the svault API (`"115.00"`, `"-3.5"`) into minor units
/// of a 2-decimal currency. No floats.
pub fn parse_minor(s: &str) -> Option<Minor> {
    use rust_decimal::prelude::ToPrimitive;
    let d: rust_decimal::Decimal = s.parse().ok()?;
    let m = d.checked_mul(rust_decimal::Decimal::ONE_HUNDRED)?;
    if !m.fract().is_zero() {
        return None;
    }
    m.to_i64()
}

/// Formats minor units as major units with 2 decimals (`12345` → `"123.45"`).
pub fn format_minor(m: i128) -> String {
    let sign = if m < 0 { "-" } else { "" };
    let a = m.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_strings_round_trip() {
        assert_eq!(parse_minor("115.00"), Some(11_500));
        assert_eq!(parse_minor("-3.5"), Some(-350));
        assert_eq!(parse_minor("0.001"), None);
        assert_eq!(parse_minor("x"), None);
        assert_eq!(format_minor(12_345), "123.45");
        assert_eq!(format_minor(-5), "-0.05");
    }
}
