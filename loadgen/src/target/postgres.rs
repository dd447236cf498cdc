//! Postgres doing the same work as svault would: a `cards` table with `CHECK (balance >= 0)`,
//! every operation one transaction that updates the card only if the funds are there and
//! appends to a journal, with `synchronous_commit = on` (the reply waits for the WAL fsync).
//!
//! Each operation is one statement (a data-modifying CTE: the guarded `UPDATE … RETURNING`
//! feeding the journal `INSERT`), so it is one transaction and one round trip — the fastest
//! honest form an application would write. What Postgres is not asked to do (svault's ladder
//! bonus, discount windows, timeout reversals) is listed in the report.

use super::{at_stake, Backend, Conn, Done, Loaded, TargetInfo, Unsupported};
use crate::stats::Outcome;
use crate::workload::{
    Action, ActionKind, Item, Minor, OpKind, Profile, Workload, FUNDING_MINOR, SETUP_SPEND_MINOR,
};
use anyhow::{anyhow, Context};
use std::time::Instant;
use tokio_postgres::{Client, NoTls, Statement};

const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const SPEND: &str = "WITH u AS (UPDATE cards SET balance = balance - $1 WHERE id = $2 AND balance - held >= $1 RETURNING id, balance) \
     INSERT INTO journal (card, kind, amount) SELECT id, 'spend', $1 FROM u RETURNING card";
const TOP_UP: &str =
    "WITH u AS (UPDATE cards SET balance = balance + $1 WHERE id = $2 RETURNING id) \
     INSERT INTO journal (card, kind, amount) SELECT id, 'top_up', $1 FROM u RETURNING card";
const HOLD: &str = "WITH u AS (UPDATE cards SET held = held + $1 WHERE id = $2 AND balance - held >= $1 RETURNING id), \
     h AS (INSERT INTO holds (id, card, amount) SELECT $3, id, $1 FROM u RETURNING card) \
     INSERT INTO journal (card, kind, amount) SELECT card, 'hold', $1 FROM h RETURNING card";
const CAPTURE: &str = "WITH h AS (DELETE FROM holds WHERE id = $2 AND amount >= $1 RETURNING card, amount), \
     u AS (UPDATE cards c SET balance = c.balance - $1, held = c.held - h.amount FROM h WHERE c.id = h.card RETURNING c.id) \
     INSERT INTO journal (card, kind, amount) SELECT id, 'capture', $1 FROM u RETURNING card";
const REFUND: &str = "WITH s AS (UPDATE spends SET refunded = refunded + $1 WHERE card = $2 AND refunded + $1 <= amount RETURNING card), \
     u AS (UPDATE cards c SET balance = c.balance + $1 FROM s WHERE c.id = s.card RETURNING c.id) \
     INSERT INTO journal (card, kind, amount) SELECT id, 'refund', $1 FROM u RETURNING card";

/// One Postgres session with its prepared statements.
pub struct PgConn {
    client: Option<Client>,
    url: String,
    schema: String,
    stmts: Vec<Statement>,
}

async fn session(url: &str, schema: &str) -> anyhow::Result<(Client, Vec<Statement>)> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(&format!(
            "SET synchronous_commit = on; SET search_path = {schema}"
        ))
        .await?;
    let mut stmts = Vec::new();
    for q in [SPEND, TOP_UP, HOLD, CAPTURE, REFUND] {
        stmts.push(
            client
                .prepare(q)
                .await
                .with_context(|| format!("preparing {q}"))?,
        );
    }
    Ok((client, stmts))
}

impl PgConn {
    /// Runs statement `s` with `params`; `Ok(true)` when it changed a row.
    async fn exec(
        &mut self,
        s: usize,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool, String> {
        if self.client.is_none() {
            let (c, st) = session(&self.url, &self.schema)
                .await
                .map_err(|_| "connect".to_string())?;
            self.client = Some(c);
            self.stmts = st;
        }
        let (Some(client), Some(stmt)) = (self.client.as_ref(), self.stmts.get(s)) else {
            return Err("connect".into());
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, client.query_opt(stmt, params)).await {
            Ok(Ok(row)) => Ok(row.is_some()),
            Ok(Err(e)) => {
                if client.is_closed() {
                    self.client = None;
                    Err("io".into())
                } else {
                    Err(format!("db_{}", e.code().map_or("error", |c| c.code())))
                }
            }
            Err(_) => {
                self.client = None;
                Err("timeout".into())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn op(
        &mut self,
        s: usize,
        op: OpKind,
        amount: Minor,
        card: i64,
        extra: Option<i64>,
        declined: &str,
        delta: Minor,
    ) -> Outcome {
        let r = match extra {
            Some(x) => self.exec(s, &[&amount, &card, &x]).await,
            None => self.exec(s, &[&amount, &card]).await,
        };
        match r {
            Ok(true) => Outcome::Approved { delta },
            Ok(false) => Outcome::Declined(declined.to_string()),
            Err(kind) => Outcome::Error {
                // A statement error rolled the transaction back; only a lost connection is unknown.
                at_stake: if kind.starts_with("db_") {
                    0
                } else {
                    at_stake(op, amount)
                },
                kind,
            },
        }
    }
}

impl Conn for PgConn {
    async fn run(&mut self, items: &[Item]) -> Vec<Done> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let now = |op, o| Done {
                item: i,
                op,
                outcome: o,
                sent: None,
                at: Instant::now(),
            };
            match item.action {
                Action::Spend { card, amount } | Action::SpendReversal { card, amount } => {
                    let o = self
                        .op(
                            0,
                            OpKind::Spend,
                            amount,
                            card as i64,
                            None,
                            "insufficient_funds",
                            -amount,
                        )
                        .await;
                    out.push(now(OpKind::Spend, o));
                    if matches!(item.action, Action::SpendReversal { .. }) {
                        out.push(now(OpKind::Reversal, Outcome::Unsupported));
                    }
                }
                Action::TopUp { card, amount } => {
                    let o = self
                        .op(
                            1,
                            OpKind::TopUp,
                            amount,
                            card as i64,
                            None,
                            "card_not_found",
                            amount,
                        )
                        .await;
                    out.push(now(OpKind::TopUp, o));
                }
                Action::HoldCapture {
                    card,
                    amount,
                    capture,
                } => {
                    let hold = item.seq as i64;
                    let o = self
                        .op(
                            2,
                            OpKind::Hold,
                            amount,
                            card as i64,
                            Some(hold),
                            "insufficient_funds",
                            0,
                        )
                        .await;
                    let ok = matches!(o, Outcome::Approved { .. });
                    out.push(now(OpKind::Hold, o));
                    if ok {
                        let sent = Instant::now();
                        let o = self
                            .op(
                                3,
                                OpKind::Capture,
                                capture,
                                hold,
                                None,
                                "over_capture",
                                -capture,
                            )
                            .await;
                        out.push(Done {
                            item: i,
                            op: OpKind::Capture,
                            outcome: o,
                            sent: Some(sent),
                            at: Instant::now(),
                        });
                    }
                }
                Action::Refund { card, amount } => {
                    let o = self
                        .op(
                            4,
                            OpKind::Refund,
                            amount,
                            card as i64,
                            None,
                            "over_refund",
                            amount,
                        )
                        .await;
                    out.push(now(OpKind::Refund, o));
                }
            }
        }
        out
    }
}

/// Postgres as a target.
pub struct Postgres {
    url: String,
    schema: String,
    keep: bool,
    info: TargetInfo,
}

impl Postgres {
    /// Names the run's schema (`loadgen_{run_id}`) without connecting; with `keep`, cleanup leaves
    /// the schema and its rows in place.
    pub fn new(url: &str, run_id: u64, keep: bool) -> Postgres {
        Postgres {
            url: url.to_string(),
            schema: format!("loadgen_{run_id}"),
            keep,
            info: TargetInfo {
                kind: "postgres".into(),
                url: url.to_string(),
                version: None,
                durability: String::new(),
                unsupported: Vec::new(),
            },
        }
    }

    async fn admin(&self) -> anyhow::Result<Client> {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .with_context(|| format!("connecting to {}", self.url))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

/// What Postgres is not asked to do in workload `w`.
fn unsupported(w: &Workload, who: &str) -> Vec<Unsupported> {
    let mut v = Vec::new();
    if w.profile == Profile::Campaign {
        v.push(Unsupported {
            what: "bonus ladder (first top-up +15, then 10 %, 5 %)".into(),
            instead: format!("{who} top-ups credit the amount only; no bonus"),
        });
        v.push(Unsupported {
            what: "evening discount window, tier discounts, points".into(),
            instead: format!("{who} spends are charged at face value"),
        });
    }
    if w.mix.has(ActionKind::Reversal) {
        v.push(Unsupported {
            what: "timeout reversal by idempotency key".into(),
            instead: format!("the spend is sent; its reversal is counted as unsupported, not sent ({who} keeps no idempotency keys)"),
        });
    }
    v.push(Unsupported {
        what: "idempotency keys (retries answered from the first answer)".into(),
        instead: format!("none: {who} executes every request once as sent"),
    });
    v
}

pub(crate) fn unsupported_for(w: &Workload, who: &str) -> Vec<Unsupported> {
    unsupported(w, who)
}

impl Backend for Postgres {
    type Conn = PgConn;

    fn info(&self) -> TargetInfo {
        self.info.clone()
    }

    async fn setup(&mut self, w: &Workload) -> anyhow::Result<Loaded> {
        let c = self.admin().await?;
        let show = |q: &'static str| {
            let c = &c;
            async move {
                c.query_one(q, &[])
                    .await
                    .map(|r| r.get::<_, String>(0))
                    .unwrap_or_else(|_| "?".into())
            }
        };
        let version = show("SHOW server_version").await;
        let fsync = show("SHOW fsync").await;
        c.batch_execute("SET synchronous_commit = on").await?;
        let sync = show("SHOW synchronous_commit").await;
        self.info.version = Some(version);
        self.info.durability = format!(
            "synchronous_commit={sync}, fsync={fsync}: each transaction's WAL is flushed before the reply (group commit by the WAL writer)"
        );
        self.info.unsupported = unsupported(w, "Postgres");
        let spend = if w.needs_setup_spend() {
            SETUP_SPEND_MINOR
        } else {
            0
        };
        let s = &self.schema;
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s}; SET search_path = {s};
             CREATE TABLE cards (id bigint PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0),
                                 held bigint NOT NULL DEFAULT 0 CHECK (held >= 0 AND held <= balance));
             CREATE TABLE journal (id bigserial PRIMARY KEY, card bigint NOT NULL, kind text NOT NULL,
                                   amount bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE holds (id bigint PRIMARY KEY, card bigint NOT NULL, amount bigint NOT NULL);
             CREATE TABLE spends (card bigint PRIMARY KEY, amount bigint NOT NULL,
                                  refunded bigint NOT NULL DEFAULT 0 CHECK (refunded <= amount));
             INSERT INTO cards (id, balance) SELECT g, {bal} FROM generate_series(0, {last}) g;
             INSERT INTO spends (card, amount) SELECT g, {spend} FROM generate_series(0, {last}) g WHERE {spend} > 0;
             ANALYZE cards; ANALYZE spends;",
            bal = FUNDING_MINOR - spend,
            last = w.cards as i64 - 1,
        ))
        .await
        .context("creating and loading the schema")?;
        Ok(Loaded {
            cards: w.cards,
            money_minor: i128::from(FUNDING_MINOR - spend) * i128::from(w.cards),
        })
    }

    async fn connect(&self) -> anyhow::Result<PgConn> {
        let (c, stmts) = session(&self.url, &self.schema).await?;
        Ok(PgConn {
            client: Some(c),
            url: self.url.clone(),
            schema: self.schema.clone(),
            stmts,
        })
    }

    async fn money(&self) -> anyhow::Result<i128> {
        let c = self.admin().await?;
        let q = format!(
            "SELECT COALESCE(SUM(balance), 0)::text FROM {}.cards",
            self.schema
        );
        let v: String = c.query_one(q.as_str(), &[]).await?.get(0);
        v.parse()
            .map_err(|_| anyhow!("SUM(balance) = {v:?} is not an integer"))
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        if !self.keep {
            let c = self.admin().await?;
            c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
                .await?;
        }
        Ok(())
    }
}
