//! Redis doing the same work as svault would: one Lua script per request that checks the
//! funds, changes the card's hash and appends to a journal stream, atomically; the server
//! runs with `appendonly yes` and `appendfsync always` (every write fsynced before the reply).
//!
//! `--pipeline P` puts P workers on each multiplexed connection, so up to P scripts are in
//! flight on it. What Redis is not asked to do is listed in the report.

use super::postgres::unsupported_for;
use super::{at_stake, Backend, Conn, Done, Loaded, TargetInfo};
use crate::stats::Outcome;
use crate::workload::{Action, Item, Minor, OpKind, Workload, FUNDING_MINOR, SETUP_SPEND_MINOR};
use anyhow::Context;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use std::sync::Arc;
use std::time::Instant;

const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Commands per pipeline during setup, read-back and cleanup.
const CHUNK: u64 = 10_000;

/// KEYS: card hash, journal stream, hold key. ARGV: op, amount.
/// Returns ≥ 0 (approved: the new balance) or a negative decline code.
const SCRIPT: &str = r#"
local op, amt = ARGV[1], tonumber(ARGV[2])
local card, journal = KEYS[1], KEYS[2]
if redis.call('EXISTS', card) == 0 then return -2 end
local nb = 0
if op == 'spend' or op == 'hold' then
  local v = redis.call('HMGET', card, 'b', 'h')
  if tonumber(v[1]) - tonumber(v[2]) < amt then return -1 end
  if op == 'spend' then
    nb = redis.call('HINCRBY', card, 'b', -amt)
  else
    redis.call('HINCRBY', card, 'h', amt)
    redis.call('SET', KEYS[3], amt)
  end
elseif op == 'top_up' then
  nb = redis.call('HINCRBY', card, 'b', amt)
elseif op == 'capture' then
  local held = redis.call('GET', KEYS[3])
  if not held then return -3 end
  held = tonumber(held)
  if amt > held then return -4 end
  redis.call('DEL', KEYS[3])
  redis.call('HINCRBY', card, 'h', -held)
  nb = redis.call('HINCRBY', card, 'b', -amt)
elseif op == 'refund' then
  local v = redis.call('HMGET', card, 's', 'r')
  if tonumber(v[2]) + amt > tonumber(v[1]) then return -5 end
  redis.call('HINCRBY', card, 'r', amt)
  nb = redis.call('HINCRBY', card, 'b', amt)
else
  return redis.error_reply('unknown op ' .. op)
end
redis.call('XADD', journal, '*', 'card', card, 'kind', op, 'amount', ARGV[2])
return nb
"#;

/// Names of a run's keys.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn card(&self, ix: u64) -> String {
        format!("{}:c:{ix}", self.prefix)
    }
    fn hold(&self, seq: u64) -> String {
        format!("{}:hold:{seq}", self.prefix)
    }
    fn journal(&self) -> String {
        format!("{}:journal", self.prefix)
    }
}

/// One worker on a (possibly shared) multiplexed connection.
pub struct RedisConn {
    conn: MultiplexedConnection,
    script: Arc<redis::Script>,
    keys: Keys,
}

fn decline(code: i64) -> Outcome {
    let c = match code {
        -1 => "insufficient_funds",
        -3 => {
            return Outcome::Error {
                kind: "hold_not_found".into(),
                at_stake: 0,
            }
        }
        -4 => "over_capture",
        -5 => "over_refund",
        _ => {
            return Outcome::Error {
                kind: "card_not_found".into(),
                at_stake: 0,
            }
        }
    };
    Outcome::Declined(c.into())
}

impl RedisConn {
    async fn call(
        &mut self,
        op: OpKind,
        amount: Minor,
        card: u64,
        hold: Option<u64>,
        delta: Minor,
    ) -> Outcome {
        let mut inv = self.script.prepare_invoke();
        inv.key(self.keys.card(card)).key(self.keys.journal());
        if let Some(h) = hold {
            inv.key(self.keys.hold(h));
        }
        inv.arg(op.as_str()).arg(amount);
        match tokio::time::timeout(REQUEST_TIMEOUT, inv.invoke_async::<i64>(&mut self.conn)).await {
            Ok(Ok(r)) if r >= 0 => Outcome::Approved { delta },
            Ok(Ok(r)) => decline(r),
            Ok(Err(e)) => Outcome::Error {
                kind: if e.is_io_error() {
                    "io".into()
                } else {
                    "redis_error".into()
                },
                at_stake: if e.is_io_error() {
                    at_stake(op, amount)
                } else {
                    0
                },
            },
            Err(_) => Outcome::Error {
                kind: "timeout".into(),
                at_stake: at_stake(op, amount),
            },
        }
    }
}

impl Conn for RedisConn {
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
                    let o = self.call(OpKind::Spend, amount, card, None, -amount).await;
                    out.push(now(OpKind::Spend, o));
                    if matches!(item.action, Action::SpendReversal { .. }) {
                        out.push(now(OpKind::Reversal, Outcome::Unsupported));
                    }
                }
                Action::TopUp { card, amount } => {
                    let o = self.call(OpKind::TopUp, amount, card, None, amount).await;
                    out.push(now(OpKind::TopUp, o));
                }
                Action::HoldCapture {
                    card,
                    amount,
                    capture,
                } => {
                    let o = self
                        .call(OpKind::Hold, amount, card, Some(item.seq), 0)
                        .await;
                    let ok = matches!(o, Outcome::Approved { .. });
                    out.push(now(OpKind::Hold, o));
                    if ok {
                        let sent = Instant::now();
                        let o = self
                            .call(OpKind::Capture, capture, card, Some(item.seq), -capture)
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
                    let o = self.call(OpKind::Refund, amount, card, None, amount).await;
                    out.push(now(OpKind::Refund, o));
                }
            }
        }
        out
    }
}

/// Redis as a target.
pub struct Redis {
    url: String,
    client: redis::Client,
    keys: Keys,
    cards: u64,
    keep: bool,
    pipeline: usize,
    script: Arc<redis::Script>,
    info: TargetInfo,
    shared: parking_lot::Mutex<(usize, Option<MultiplexedConnection>)>,
}

impl Redis {
    /// Parses `url` without connecting. Keys live under `loadgen:{run_id}` and stay after the run
    /// with `keep`; `pipeline` workers share each multiplexed connection.
    pub fn new(url: &str, run_id: u64, keep: bool, pipeline: usize) -> anyhow::Result<Redis> {
        Ok(Redis {
            url: url.to_string(),
            client: redis::Client::open(url).with_context(|| format!("bad Redis URL {url}"))?,
            keys: Keys {
                prefix: format!("loadgen:{run_id}"),
            },
            cards: 0,
            keep,
            pipeline: pipeline.max(1),
            script: Arc::new(redis::Script::new(SCRIPT)),
            info: TargetInfo {
                kind: "redis".into(),
                url: url.to_string(),
                version: None,
                durability: String::new(),
                unsupported: Vec::new(),
            },
            shared: parking_lot::Mutex::new((0, None)),
        })
    }

    async fn conn(&self) -> anyhow::Result<MultiplexedConnection> {
        self.client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connecting to {}", self.url))
    }
}

async fn config(c: &mut MultiplexedConnection, name: &str) -> String {
    let v: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(c)
        .await;
    v.ok()
        .and_then(|v| v.get(1).cloned())
        .unwrap_or_else(|| "?".into())
}

impl Backend for Redis {
    type Conn = RedisConn;

    fn info(&self) -> TargetInfo {
        self.info.clone()
    }

    async fn setup(&mut self, w: &Workload) -> anyhow::Result<Loaded> {
        let mut c = self.conn().await?;
        let aof = config(&mut c, "appendonly").await;
        let fsync = config(&mut c, "appendfsync").await;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        self.info.version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_string());
        self.info.durability = format!(
            "appendonly={aof}, appendfsync={fsync}{}",
            if aof == "yes" && fsync == "always" {
                ": every write is fsynced to the AOF before the reply"
            } else {
                ": NOT durable per request (start Redis with --appendonly yes --appendfsync always)"
            }
        );
        self.info.unsupported = unsupported_for(w, "Redis");
        let spend = if w.needs_setup_spend() {
            SETUP_SPEND_MINOR
        } else {
            0
        };
        self.cards = w.cards;
        let mut from = 0;
        while from < w.cards {
            let to = (from + CHUNK).min(w.cards);
            let mut p = redis::pipe();
            for ix in from..to {
                p.cmd("HSET")
                    .arg(self.keys.card(ix))
                    .arg("b")
                    .arg(FUNDING_MINOR - spend)
                    .arg("h")
                    .arg(0)
                    .arg("s")
                    .arg(spend)
                    .arg("r")
                    .arg(0)
                    .ignore();
            }
            p.query_async::<()>(&mut c).await.context("loading cards")?;
            from = to;
        }
        self.script
            .prepare_invoke()
            .load_async(&mut c)
            .await
            .context("loading the script")?;
        Ok(Loaded {
            cards: w.cards,
            money_minor: i128::from(FUNDING_MINOR - spend) * i128::from(w.cards),
        })
    }

    async fn connect(&self) -> anyhow::Result<RedisConn> {
        let existing = {
            let mut s = self.shared.lock();
            if !s.0.is_multiple_of(self.pipeline) {
                s.0 += 1;
                s.1.clone()
            } else {
                None
            }
        };
        let conn = match existing {
            Some(c) => c,
            None => {
                let c = self.conn().await?;
                let mut s = self.shared.lock();
                s.0 += 1;
                s.1 = Some(c.clone());
                c
            }
        };
        Ok(RedisConn {
            conn,
            script: self.script.clone(),
            keys: self.keys.clone(),
        })
    }

    async fn money(&self) -> anyhow::Result<i128> {
        let mut c = self.conn().await?;
        let mut sum: i128 = 0;
        let mut from = 0;
        while from < self.cards {
            let to = (from + CHUNK).min(self.cards);
            let mut p = redis::pipe();
            for ix in from..to {
                p.cmd("HGET").arg(self.keys.card(ix)).arg("b");
            }
            let v: Vec<i64> = p
                .query_async(&mut c)
                .await
                .context("reading balances back")?;
            sum += v.iter().map(|&b| i128::from(b)).sum::<i128>();
            from = to;
        }
        Ok(sum)
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        if self.keep {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let mut from = 0;
        while from < self.cards {
            let to = (from + CHUNK).min(self.cards);
            let mut p = redis::pipe();
            for ix in from..to {
                p.cmd("UNLINK").arg(self.keys.card(ix)).ignore();
            }
            p.query_async::<()>(&mut c).await?;
            from = to;
        }
        let holds: Vec<String> = {
            let mut it: redis::AsyncIter<String> =
                c.scan_match(format!("{}:hold:*", self.keys.prefix)).await?;
            let mut v = Vec::new();
            while let Some(k) = it.next_item().await {
                v.push(k);
            }
            v
        };
        for chunk in holds.chunks(CHUNK as usize) {
            redis::cmd("UNLINK")
                .arg(chunk)
                .query_async::<()>(&mut c)
                .await?;
        }
        redis::cmd("UNLINK")
            .arg(self.keys.journal())
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }
}
