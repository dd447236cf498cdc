//! `svault report --parquet DIR`: the transaction journal and the events of the replayed
//! history, as Parquet tables partitioned by local day (see [`super::hive`]).
//!
//! Why from the replay: the report already applies every record through `State::apply`, so
//! each approval is exactly what the server answered, and the card's history line
//! (`TxnRecord`, as `GET /v1/cards/{id}/transactions` shows it) adds how, where and why. The
//! events are numbered with the live feed's [`SeqClock`], from the start of the history, so
//! a row's `seq` is the one `GET /v1/events` gave.
//!
//! The journal holds one row per approved operation that moved money or points (top-ups,
//! spends, holds, increments, captures, voids, refunds, cash-outs, reversals, redeems,
//! grants, closes that forfeited bonus) and one per expiry a record caused (`hold_expired`,
//! `bonus_expired`, from the card's history). Opening, freezing and program changes move
//! nothing and have no row; idempotent replays and declines neither.

use super::hive::{ColumnDef, DayFiles, HiveError, Kind, Table};
use super::tally::Window;
use super::time;
use crate::events::SeqClock;
use svault_core::command::{CardId, Command, Millis, Query, Request};
use svault_core::outcome::{Approval, Event, EventKind, Outcome, Reply, TxnKind, TxnRecord};
use svault_core::state::{QueryAnswer, State};

const fn col(name: &'static str, kind: Kind) -> ColumnDef {
    ColumnDef {
        name,
        kind,
        nullable: false,
    }
}

const fn null(name: &'static str, kind: Kind) -> ColumnDef {
    ColumnDef {
        name,
        kind,
        nullable: true,
    }
}

/// The transaction journal's columns (README, "For finance and marketing", documents each).
pub static JOURNAL: Table = Table {
    name: "journal",
    columns: &[
        col("card_id", Kind::U64),
        col("txn_id", Kind::Str),
        col("kind", Kind::Str),
        col("at", Kind::Timestamp),
        col("local_date", Kind::Date),
        col("program", Kind::Str),
        col("currency", Kind::Str),
        col("amount", Kind::I64),
        col("principal", Kind::I64),
        col("bonus", Kind::I64),
        col("bonus_granted", Kind::I64),
        col("discount", Kind::I64),
        col("released", Kind::I64),
        col("forfeited", Kind::I64),
        col("points", Kind::I64),
        null("channel", Kind::Str),
        null("method", Kind::Str),
        null("store", Kind::Str),
        null("refers_to", Kind::Str),
        null("reason", Kind::Str),
        col("partial", Kind::Bool),
        col("shard", Kind::I32),
        col("lsn", Kind::I64),
    ],
};

/// The events' columns.
pub static EVENTS: Table = Table {
    name: "events",
    columns: &[
        col("seq", Kind::U64),
        col("kind", Kind::Str),
        col("card_id", Kind::U64),
        col("at", Kind::Timestamp),
        col("local_date", Kind::Date),
        col("program", Kind::Str),
        col("currency", Kind::Str),
        null("amount", Kind::I64),
        null("hold_id", Kind::Str),
        null("expires_at", Kind::Timestamp),
        null("count", Kind::I32),
        col("shard", Kind::I32),
        col("lsn", Kind::I64),
    ],
};

/// The most negative UTC offset a program may have (−14:00): once the batch time is past a
/// day there, no program's rows can fall on that day or an earlier one.
const WESTMOST_OFFSET_MINUTES: i16 = -14 * 60;

/// Rows and files one export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportCounts {
    pub journal_rows: u64,
    pub event_rows: u64,
    pub files: u64,
}

impl ExportCounts {
    /// Adds another shard's counts.
    pub fn merge(&mut self, o: &ExportCounts) {
        self.journal_rows += o.journal_rows;
        self.event_rows += o.event_rows;
        self.files += o.files;
    }
}

/// One shard's export, fed every applied record in log order.
pub struct ShardExport {
    shard: usize,
    window: Window,
    clock: SeqClock,
    journal: DayFiles,
    events: DayFiles,
    /// Days before this one are complete.
    closed_before: i64,
    /// Cards with expiries in the current record, and how many (scratch).
    expiries: Vec<(CardId, usize)>,
}

impl ShardExport {
    /// Writes under `out/journal/` and `out/events/` as shard `shard`.
    pub fn new(out: &std::path::Path, shard: usize, window: Window) -> Result<Self, HiveError> {
        Ok(ShardExport {
            shard,
            window,
            clock: SeqClock::new(shard),
            journal: DayFiles::new(out, &JOURNAL, shard)?,
            events: DayFiles::new(out, &EVENTS, shard)?,
            closed_before: i64::MIN,
            expiries: Vec::new(),
        })
    }

    /// Takes one applied record (`events` as `apply` produced them).
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        lsn: u64,
        now: Millis,
        request: &Request,
        reply: &Reply,
        events: &[Event],
        state: &State,
    ) -> Result<(), HiveError> {
        let horizon = time::local_day(now, WESTMOST_OFFSET_MINUTES);
        if horizon > self.closed_before {
            self.journal.close_before(horizon)?;
            self.events.close_before(horizon)?;
            self.closed_before = horizon;
        }
        let in_window = now >= self.window.from && now < self.window.to;
        // Every event takes a seq, in or out of the window, as the live feed numbers them.
        self.expiries.clear();
        for e in events {
            let seq = self.clock.next(e.at);
            if matches!(
                e.kind,
                EventKind::HoldExpired { .. } | EventKind::BonusExpired { .. }
            ) {
                match self.expiries.iter_mut().find(|(c, _)| *c == e.card_id) {
                    Some((_, n)) => *n += 1,
                    None => self.expiries.push((e.card_id, 1)),
                }
            }
            if in_window {
                self.event_row(seq, e, lsn, state)?;
            }
        }
        if !in_window {
            return Ok(());
        }
        if let (Outcome::Approved(a), false) = (&reply.outcome, reply.replayed) {
            self.approval_row(a, request, lsn, now, state)?;
        }
        for i in 0..self.expiries.len() {
            let Some(&(card, n)) = self.expiries.get(i) else {
                break;
            };
            self.expiry_rows(card, n, lsn, now, state)?;
        }
        Ok(())
    }

    /// Completes every file; what was written.
    pub fn finish(mut self) -> Result<ExportCounts, HiveError> {
        self.journal.finish()?;
        self.events.finish()?;
        Ok(ExportCounts {
            journal_rows: self.journal.rows,
            event_rows: self.events.rows,
            files: self.journal.files + self.events.files,
        })
    }

    fn counted(&self, program: &str) -> bool {
        self.window.program.as_deref().is_none_or(|p| p == program)
    }

    fn event_row(&mut self, seq: u64, e: &Event, lsn: u64, state: &State) -> Result<(), HiveError> {
        let Some(p) = state.program_of(e.card_id).and_then(|id| state.program(id)) else {
            return Ok(());
        };
        if !self.counted(&p.id) {
            return Ok(());
        }
        let (amount, hold_id, expires_at, count) = match &e.kind {
            EventKind::LowBalance { available } => (Some(available.0), None, None, None),
            EventKind::BonusExpiring { amount, expires_at } => {
                (Some(amount.0), None, Some(expires_at.0), None)
            }
            EventKind::BonusExpired { amount } | EventKind::QuickCashOut { amount } => {
                (Some(amount.0), None, None, None)
            }
            EventKind::HoldExpired { hold_id, amount } => {
                (Some(amount.0), Some(hold_id.to_string()), None, None)
            }
            EventKind::VelocityBreach => (None, None, None, None),
            EventKind::RepeatedDeclines { count } => (
                None,
                None,
                None,
                Some(i32::try_from(*count).unwrap_or(i32::MAX)),
            ),
        };
        let day = time::local_day(e.at, p.utc_offset_minutes);
        let shard = self.shard;
        self.events.push(day, |r| {
            r.u64(seq);
            r.str(e.kind.as_str());
            r.u64(e.card_id.0);
            r.timestamp(e.at.0);
            r.date(day);
            r.str(&p.id);
            r.str(p.currency.code());
            r.opt_i64(amount);
            r.opt_str(hold_id.as_deref());
            r.opt_timestamp(expires_at);
            r.opt_i32(count);
            r.i32(shard_i32(shard));
            r.i64(lsn_i64(lsn));
        })
    }

    fn approval_row(
        &mut self,
        a: &Approval,
        request: &Request,
        lsn: u64,
        now: Millis,
        state: &State,
    ) -> Result<(), HiveError> {
        let (Some(card), Some(txn)) = (&a.card, a.txn_id) else {
            return Ok(());
        };
        let moved = [
            a.amount,
            a.principal,
            a.bonus,
            a.bonus_granted,
            a.discount,
            a.released,
            a.forfeited,
        ]
        .iter()
        .any(|m| m.0 != 0)
            || a.points_earned != 0
            || a.points_spent != 0;
        if !moved || !self.counted(&card.program) {
            return Ok(());
        }
        let Some(p) = state.program(&card.program) else {
            return Ok(());
        };
        // How, where and why, from the card's history line (a capture's hold, a refund's spend).
        let line = history(state, txn.card, 1, Some(txn.seq.saturating_add(1)), now)
            .into_iter()
            .find(|r| r.txn_id == txn);
        let line = line.as_ref();
        // A history trimmed past this transaction cannot happen right after it was applied;
        // the request still says how a top-up was paid.
        let channel = line
            .and_then(|l| l.channel)
            .map(|c| c.as_str())
            .or_else(|| match &request.command {
                Command::TopUp { channel, .. } => Some(channel.as_str()),
                _ => None,
            });
        let day = time::local_day(now, p.utc_offset_minutes);
        let points = i64::try_from(a.points_earned).unwrap_or(i64::MAX)
            - i64::try_from(a.points_spent).unwrap_or(i64::MAX);
        let shard = self.shard;
        self.journal.push(day, |r| {
            r.u64(txn.card.0);
            r.str(&txn.to_string());
            r.str(a.kind.as_str());
            r.timestamp(now.0);
            r.date(day);
            r.str(&p.id);
            r.str(p.currency.code());
            r.i64(a.amount.0);
            r.i64(a.principal.0);
            r.i64(a.bonus.0);
            r.i64(a.bonus_granted.0);
            r.i64(a.discount.0);
            r.i64(a.released.0);
            r.i64(a.forfeited.0);
            r.i64(points);
            r.opt_str(channel);
            r.opt_str(line.and_then(|l| l.method).map(|m| m.as_str()));
            r.opt_str(line.and_then(|l| l.store.as_deref()));
            r.opt_str(
                line.and_then(|l| l.refers_to)
                    .map(|t| t.to_string())
                    .as_deref(),
            );
            r.opt_str(line.and_then(|l| l.reason).map(|x| x.as_str()));
            r.bool(a.partial || line.is_some_and(|l| l.partial));
            r.i32(shard_i32(shard));
            r.i64(lsn_i64(lsn));
        })
    }

    /// The `n` expiries the record caused on `card`: its newest expiry lines at `now`.
    fn expiry_rows(
        &mut self,
        card: CardId,
        n: usize,
        lsn: u64,
        now: Millis,
        state: &State,
    ) -> Result<(), HiveError> {
        let Some(p) = state.program_of(card).and_then(|id| state.program(id)) else {
            return Ok(());
        };
        if !self.counted(&p.id) {
            return Ok(());
        }
        // The record's own line may sit among them (a void that let overdue bonus expire).
        let limit = u32::try_from(n + 2).unwrap_or(u32::MAX);
        let mut lines: Vec<TxnRecord> = history(state, card, limit, None, now)
            .into_iter()
            .filter(|l| {
                l.at == now && matches!(l.kind, TxnKind::HoldExpired | TxnKind::BonusExpired)
            })
            .take(n)
            .collect();
        lines.reverse();
        let day = time::local_day(now, p.utc_offset_minutes);
        let shard = self.shard;
        for l in &lines {
            let (released, forfeited) = match l.kind {
                TxnKind::HoldExpired => (l.amount.0, 0),
                _ => (0, l.amount.0),
            };
            self.journal.push(day, |r| {
                r.u64(card.0);
                r.str(&l.txn_id.to_string());
                r.str(l.kind.as_str());
                r.timestamp(now.0);
                r.date(day);
                r.str(&p.id);
                r.str(p.currency.code());
                r.i64(l.amount.0);
                r.i64(l.principal.0);
                r.i64(l.bonus.0);
                r.i64(0);
                r.i64(0);
                r.i64(released);
                r.i64(forfeited);
                r.i64(l.points);
                r.opt_str(None);
                r.opt_str(l.method.map(|m| m.as_str()));
                r.opt_str(l.store.as_deref());
                r.opt_str(l.refers_to.map(|t| t.to_string()).as_deref());
                r.opt_str(None);
                r.bool(false);
                r.i32(shard_i32(shard));
                r.i64(lsn_i64(lsn));
            })?;
        }
        Ok(())
    }
}

/// The card's newest `limit` history lines before `before` (newest first).
fn history(
    state: &State,
    card_id: CardId,
    limit: u32,
    before: Option<u32>,
    now: Millis,
) -> Vec<TxnRecord> {
    let q = Query::Transactions {
        card_id,
        limit,
        before,
    };
    match state.query(&q, now) {
        QueryAnswer::Transactions(Some(list)) => list,
        _ => Vec::new(),
    }
}

fn shard_i32(shard: usize) -> i32 {
    i32::try_from(shard).unwrap_or(i32::MAX)
}

fn lsn_i64(lsn: u64) -> i64 {
    i64::try_from(lsn).unwrap_or(i64::MAX)
}
