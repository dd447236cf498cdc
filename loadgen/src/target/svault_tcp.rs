//! svault over its binary protocol (`docs/protocol.md`) through the Rust client.
//!
//! `--batch 1` sends one request per frame; a larger batch puts that many stream items in one
//! BATCH frame. `--pipeline P` lets P workers share each connection, so up to P frames are on
//! the wire at once (the client coalesces calls made at the same moment into one frame).
//! The run's program is created over HTTP (`--admin`), as programs are HTTP-only.

use super::proto::{
    Amount, Answer, Call, CardId, Channel, Client, Command, DeclineCode, Method, Status, TxnId,
};
use super::svault_http::{
    create_program, svault_unsupported, SvaultRun, REQUEST_TIMEOUT, SETUP_RETRIES,
    SETUP_RETRY_PAUSE,
};
use super::{at_stake, at_stake_after, Backend, Conn, Done, Loaded, TargetInfo};
use crate::stats::Outcome;
use crate::workload::{Action, Item, Minor, OpKind, Workload, FUNDING_MINOR, SETUP_SPEND_MINOR};
use anyhow::{anyhow, bail};
use std::sync::Arc;
use std::time::Instant;

/// Requests per frame during setup and read-back.
const SETUP_FRAME_REQUESTS: usize = 8_192;
const HOLD_TTL_SECONDS: u32 = 600;

fn decline_name(detail: u8) -> String {
    DeclineCode::ALL
        .get(usize::from(detail))
        .map_or_else(|| format!("decline_{detail}"), |c| c.as_str().to_string())
}

/// An answer as an outcome; `delta` computes an approval's money change.
fn outcome(a: &Answer, op: OpKind, amount: Minor, delta: impl FnOnce(&Answer) -> Minor) -> Outcome {
    match a.status {
        Status::Approved => Outcome::Approved { delta: delta(a) },
        Status::Declined => Outcome::Declined(decline_name(a.detail)),
        // Refused before anything was applied (the shard's queue was full).
        Status::Overloaded => Outcome::Refused,
        Status::Unavailable => Outcome::Error {
            kind: "unavailable".into(),
            at_stake: at_stake(op, amount),
        },
        other => Outcome::Error {
            kind: format!("{other:?}").to_lowercase(),
            at_stake: 0,
        },
    }
}

/// One worker's share of a connection.
pub struct TcpConn {
    client: Option<Client>,
    addr: String,
    run: Arc<SvaultRun>,
    /// Captures owed for holds approved in the last frame: a batched worker sends them with
    /// its next frame (and [`Conn::finish`] the last ones), as a batching gateway would,
    /// instead of waiting a round trip for them before its next frame.
    owed: Vec<Owed>,
}

impl TcpConn {
    async fn call_batch(&mut self, calls: Vec<Call>) -> Result<Vec<Answer>, String> {
        if self.client.is_none() {
            self.client = Some(
                Client::connect(&self.addr, None)
                    .await
                    .map_err(|_| "connect".to_string())?,
            );
        }
        let Some(client) = self.client.as_ref() else {
            return Err("connect".into());
        };
        let n = calls.len();
        match tokio::time::timeout(REQUEST_TIMEOUT, client.call_batch(calls)).await {
            Ok(Ok(a)) if a.len() == n => Ok(a),
            Ok(Ok(_)) => {
                self.client = None;
                Err("protocol".into())
            }
            Ok(Err(_)) => {
                self.client = None;
                Err("io".into())
            }
            Err(_) => {
                self.client = None;
                Err("timeout".into())
            }
        }
    }
}

/// The first request of an item and what it needs to be counted.
struct First {
    item: usize,
    op: OpKind,
    amount: Minor,
}

/// A capture owed for an approved hold: the item it belongs to and what to capture.
struct Owed {
    item: usize,
    seq: u64,
    hold: TxnId,
    amount: Minor,
}

impl Owed {
    fn call(&self, run: &SvaultRun) -> Call {
        Call::new(
            Some(run.key(self.seq, 1)),
            Command::Capture {
                hold_id: self.hold,
                amount: Some(Amount(self.amount)),
            },
        )
    }

    /// What became of `owed`, sent at `sent` as the answers from index `first` on.
    fn report(
        owed: &[Owed],
        answers: &Result<Vec<Answer>, String>,
        first: usize,
        sent: Instant,
    ) -> Vec<Done> {
        owed.iter()
            .enumerate()
            .map(|(n, o)| {
                let outcome = o.outcome(answers, first + n);
                done(o.item, OpKind::Capture, outcome, Some(sent))
            })
            .collect()
    }

    /// The capture's outcome from its place in a frame's answers.
    fn outcome(&self, answers: &Result<Vec<Answer>, String>, n: usize) -> Outcome {
        match answers.as_ref().map(|a| a.get(n)) {
            Ok(Some(a)) => outcome(a, OpKind::Capture, self.amount, |a| -a.amount.0),
            Ok(None) => Outcome::Error {
                kind: "protocol".into(),
                at_stake: self.amount,
            },
            Err(kind) => Outcome::Error {
                at_stake: if kind == "connect" { 0 } else { self.amount },
                kind: kind.clone(),
            },
        }
    }
}

impl TcpConn {
    /// Sends `owed` in a frame of their own and reports them, each at `item` (an index into
    /// the items of the `run` call they belong to).
    async fn capture(&mut self, owed: Vec<Owed>) -> Vec<Done> {
        if owed.is_empty() {
            return Vec::new();
        }
        let sent = Instant::now();
        let calls = owed.iter().map(|o| o.call(&self.run)).collect();
        let answers = self.call_batch(calls).await;
        Owed::report(&owed, &answers, 0, sent)
    }
}

impl Conn for TcpConn {
    async fn run(&mut self, items: &[Item]) -> Vec<Done> {
        let run = self.run.clone();
        let mut out = Vec::with_capacity(items.len() + 4);
        let mut calls = Vec::with_capacity(items.len());
        let mut firsts = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let key = Some(run.key(item.seq, 0));
            let id = |c| CardId(run.card_id(c));
            let (op, amount, call) = match item.action {
                Action::Spend { card, amount } | Action::SpendReversal { card, amount } => (
                    OpKind::Spend,
                    amount,
                    Command::Spend {
                        card_id: id(card),
                        amount: Amount(amount),
                        method: Method::Qr,
                        store: None,
                        allow_partial: false,
                    },
                ),
                Action::TopUp { card, amount } => (
                    OpKind::TopUp,
                    amount,
                    Command::TopUp {
                        card_id: id(card),
                        amount: Amount(amount),
                        channel: Channel::Wechat,
                    },
                ),
                Action::HoldCapture { card, amount, .. } => (
                    OpKind::Hold,
                    0,
                    Command::Hold {
                        card_id: id(card),
                        amount: Amount(amount),
                        ttl_seconds: HOLD_TTL_SECONDS,
                        method: Method::Card,
                        store: None,
                        allow_partial: false,
                    },
                ),
                Action::Refund { card, amount } => match run.setup_spend(card) {
                    Some((c, seq)) => (
                        OpKind::Refund,
                        amount,
                        Command::Refund {
                            txn_id: TxnId {
                                card: CardId(c),
                                seq,
                            },
                            amount: Amount(amount),
                        },
                    ),
                    None => {
                        out.push(done(i, OpKind::Refund, Outcome::Unsupported, None));
                        continue;
                    }
                },
            };
            calls.push(Call::new(key, call));
            firsts.push(First {
                item: i,
                op,
                amount,
            });
        }
        // A batch carries the captures the previous one owes, after its own requests; one
        // request per frame stays one request per frame (its capture follows on its own).
        let batched = items.len() > 1;
        let carried = if batched {
            std::mem::take(&mut self.owed)
        } else {
            Vec::new()
        };
        calls.extend(carried.iter().map(|o| o.call(&run)));
        let sent = Instant::now();
        let answers = self.call_batch(calls).await;
        let mut captures = Vec::new();
        for (n, f) in firsts.iter().enumerate() {
            let o = match &answers {
                Err(kind) => Outcome::Error {
                    kind: kind.clone(),
                    at_stake: at_stake_after(kind, f.op, f.amount),
                },
                Ok(a) => match a.get(n) {
                    None => Outcome::Error {
                        kind: "protocol".into(),
                        at_stake: at_stake(f.op, f.amount),
                    },
                    Some(a) => {
                        let o = outcome(a, f.op, f.amount, |a| match f.op {
                            OpKind::TopUp => a.amount.0 + a.bonus_granted.0,
                            OpKind::Refund => a.amount.0,
                            OpKind::Hold => 0,
                            _ => -a.amount.0,
                        });
                        if let (OpKind::Hold, Outcome::Approved { .. }, Some(hold)) =
                            (f.op, &o, a.txn_id)
                        {
                            captures.push((f.item, hold));
                        }
                        o
                    }
                },
            };
            out.push(done(f.item, f.op, o, None));
            if let Some(Action::SpendReversal { .. }) = items.get(f.item).map(|it| it.action) {
                out.push(done(f.item, OpKind::Reversal, Outcome::Unsupported, None));
            }
        }
        out.extend(Owed::report(&carried, &answers, firsts.len(), sent));
        let owed = captures
            .into_iter()
            .filter_map(|(i, hold)| match items.get(i) {
                Some(Item {
                    seq,
                    action: Action::HoldCapture { capture, .. },
                }) => Some(Owed {
                    item: i,
                    seq: *seq,
                    hold,
                    amount: *capture,
                }),
                _ => None,
            })
            .collect();
        if batched {
            self.owed = owed;
        } else {
            out.extend(self.capture(owed).await);
        }
        out
    }

    async fn finish(&mut self) -> Vec<Done> {
        let owed = std::mem::take(&mut self.owed);
        self.capture(owed).await
    }
}

fn done(item: usize, op: OpKind, outcome: Outcome, sent: Option<Instant>) -> Done {
    Done {
        item,
        op,
        outcome,
        sent,
        at: Instant::now(),
    }
}

/// svault over the binary protocol.
pub struct SvaultTcp {
    url: String,
    addr: String,
    admin: String,
    pub run: Arc<SvaultRun>,
    /// Workers per connection.
    pipeline: usize,
    unsupported: Vec<super::Unsupported>,
    /// What the report says about durability (the server does not tell).
    pub durability: String,
    shared: parking_lot::Mutex<(usize, Option<Client>)>,
}

impl SvaultTcp {
    /// `admin` is the server's HTTP address (`HOST:PORT`), for the run's program.
    pub fn new(url: &str, admin: &str, run_id: u64, pipeline: usize) -> anyhow::Result<SvaultTcp> {
        SvaultTcp::with_run(url, admin, Arc::new(SvaultRun::new(run_id)), pipeline)
    }

    /// Shares `run` (names and setup results) with another door of the same server.
    pub fn with_run(
        url: &str,
        admin: &str,
        run: Arc<SvaultRun>,
        pipeline: usize,
    ) -> anyhow::Result<SvaultTcp> {
        Ok(SvaultTcp {
            url: url.to_string(),
            addr: super::svault_http::host_port(url, "tcp")?,
            admin: admin.to_string(),
            run,
            pipeline: pipeline.max(1),
            unsupported: Vec::new(),
            durability: super::svault_http::DURABILITY_UNKNOWN.into(),
            shared: parking_lot::Mutex::new((0, None)),
        })
    }

    async fn client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.addr, None)
            .await
            .map_err(|e| anyhow!("connecting to {}: {e}", self.addr))
    }
}

fn approved(a: &Answer, what: &str) -> anyhow::Result<()> {
    if a.status != Status::Approved {
        bail!("setup {what}: {:?} (detail {})", a.status, a.detail);
    }
    Ok(())
}

impl Backend for SvaultTcp {
    type Conn = TcpConn;

    fn info(&self) -> TargetInfo {
        TargetInfo {
            kind: "svault-tcp".into(),
            url: self.url.clone(),
            version: None,
            durability: self.durability.clone(),
            unsupported: self.unsupported.clone(),
        }
    }

    async fn setup(&mut self, w: &Workload) -> anyhow::Result<Loaded> {
        self.unsupported = svault_unsupported(w, true);
        create_program(&self.admin, &self.run, w.profile).await?;
        let spend = w.needs_setup_spend();
        let per_card = if spend { 3 } else { 2 };
        let cards_per_frame = (SETUP_FRAME_REQUESTS / per_card) as u64;
        let client = self.client().await?;
        let mut loaded = Loaded {
            cards: w.cards,
            money_minor: 0,
        };
        let mut spends = vec![0u32; w.cards as usize];
        let mut frames = futures::stream::FuturesOrdered::new();
        let mut start = 0u64;
        let run = self.run.clone();
        let build = |from: u64| {
            let to = (from + cards_per_frame).min(w.cards);
            let mut calls = Vec::with_capacity(((to - from) as usize) * per_card);
            for ix in from..to {
                let card_id = CardId(run.card_id(ix));
                calls.push(Call::new(
                    Some(format!("{}-open-{ix}", run.run)),
                    Command::OpenCard {
                        card_id,
                        program: run.program.clone(),
                        registered: true,
                        birthday: None,
                    },
                ));
                calls.push(Call::new(
                    Some(format!("{}-fund-{ix}", run.run)),
                    Command::TopUp {
                        card_id,
                        amount: Amount(FUNDING_MINOR),
                        channel: Channel::Cash,
                    },
                ));
                if spend {
                    calls.push(Call::new(
                        Some(format!("{}-setup-spend-{ix}", run.run)),
                        Command::Spend {
                            card_id,
                            amount: Amount(SETUP_SPEND_MINOR),
                            method: Method::Qr,
                            store: None,
                            allow_partial: false,
                        },
                    ));
                }
            }
            (from, to, calls)
        };
        let send = |from: u64, calls: Vec<Call>| {
            let c = client.clone();
            async move { (from, c.call_batch(calls).await) }
        };
        use futures::StreamExt;
        let mut retries = 0;
        loop {
            while frames.len() < 8 && start < w.cards {
                let (from, to, calls) = build(start);
                start = to;
                frames.push_back(send(from, calls));
            }
            let Some((from, answers)) = frames.next().await else {
                break;
            };
            let answers = answers.map_err(|e| anyhow!("setup frame: {e}"))?;
            if answers.iter().any(|a| a.status == Status::Overloaded) {
                // Refused by an overloaded server: the whole frame again (same keys, so what
                // was applied answers as before), after a pause.
                retries += 1;
                if retries > SETUP_RETRIES {
                    bail!("setup frame: still refused (overloaded) after {SETUP_RETRIES} tries");
                }
                tokio::time::sleep(SETUP_RETRY_PAUSE).await;
                let (_, _, calls) = build(from);
                frames.push_back(send(from, calls));
                continue;
            }
            for (k, chunk) in answers.chunks(per_card).enumerate() {
                let ix = from + k as u64;
                let [open, fund, rest @ ..] = chunk else {
                    bail!("setup frame: short answer")
                };
                approved(open, "open")?;
                approved(fund, "top-up")?;
                loaded.money_minor += i128::from(fund.amount.0 + fund.bonus_granted.0);
                if let Some(s) = rest.first() {
                    approved(s, "spend")?;
                    loaded.money_minor -= i128::from(s.amount.0);
                    let seq = s
                        .txn_id
                        .map(|t| t.seq)
                        .ok_or_else(|| anyhow!("setup spend without txn id"))?;
                    if let Some(slot) = spends.get_mut(ix as usize) {
                        *slot = seq;
                    }
                }
            }
        }
        *self.run.setup_spends.write() = spends;
        Ok(loaded)
    }

    async fn connect(&self) -> anyhow::Result<TcpConn> {
        // Every `pipeline` workers share one connection.
        let existing = {
            let mut s = self.shared.lock();
            if !s.0.is_multiple_of(self.pipeline) {
                s.0 += 1;
                s.1.clone()
            } else {
                None
            }
        };
        let client = match existing {
            Some(c) => c,
            None => {
                let c = self.client().await?;
                let mut s = self.shared.lock();
                s.0 += 1;
                s.1 = Some(c.clone());
                c
            }
        };
        Ok(TcpConn {
            client: Some(client),
            addr: self.addr.clone(),
            run: self.run.clone(),
            owed: Vec::new(),
        })
    }

    async fn money(&self) -> anyhow::Result<i128> {
        let client = self.client().await?;
        let cards = self.run.setup_spends.read().len() as u64;
        let mut sum: i128 = 0;
        let mut from = 0;
        while from < cards {
            let to = (from + SETUP_FRAME_REQUESTS as u64 * 4).min(cards);
            let calls = (from..to)
                .map(|ix| Call::get_card(CardId(self.run.card_id(ix))))
                .collect();
            let answers = client
                .call_batch(calls)
                .await
                .map_err(|e| anyhow!("reading cards back: {e}"))?;
            for a in answers {
                let b = a.card.ok_or_else(|| {
                    anyhow!("reading cards back: {:?} without balances", a.status)
                })?;
                sum += i128::from(b.principal.0) + i128::from(b.bonus.0);
            }
            from = to;
        }
        Ok(sum)
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        Ok(())
    }
}
