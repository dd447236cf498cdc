//! svault over its HTTP/JSON API: keep-alive HTTP/1.1 connections, one request in
//! flight per connection, as a gateway's connection pool does.
//!
//! Also the admin side every svault run needs, whichever door carries the load: the run's
//! program (`POST /v1/programs`), the float read back at the end (`GET /v1/float`).

use super::{
    at_stake, at_stake_after, format_minor, parse_minor, Backend, Conn, Done, Loaded, TargetInfo,
    Unsupported,
};
use crate::stats::Outcome;
use crate::workload::{
    Action, Item, Minor, OpKind, Profile, Workload, FUNDING_MINOR, SETUP_SPEND_MINOR,
};
use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one request may take before it counts as an error (`timeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight during setup.
const SETUP_CONCURRENCY: usize = 64;
/// Setup requests refused by an overloaded server are sent again this many times at most...
pub const SETUP_RETRIES: usize = 1000;
/// ...after this pause.
pub const SETUP_RETRY_PAUSE: Duration = Duration::from_millis(20);
/// First card id of a run: runs get disjoint id ranges of 10^10 cards.
const CARD_ID_BASE: u64 = 6_300_000_000_000_000;
/// Hold lifetime: long enough that no hold of a run expires before its capture.
const HOLD_TTL_SECONDS: u32 = 600;

/// What every svault connection of a run shares: names and setup results.
#[derive(Debug)]
pub struct SvaultRun {
    /// Prefix of every idempotency key and of the program id.
    pub run: String,
    pub program: String,
    pub card_base: u64,
    /// For refunds: the transaction seq of each card's setup spend (0 = none).
    pub setup_spends: parking_lot::RwLock<Vec<u32>>,
}

impl SvaultRun {
    /// Names for run `run_id` (any number; a timestamp by default).
    pub fn new(run_id: u64) -> SvaultRun {
        SvaultRun {
            run: format!("lg{run_id}"),
            program: format!("loadgen-{run_id}"),
            card_base: CARD_ID_BASE + (run_id % 100_000) * 10_000_000_000,
            setup_spends: parking_lot::RwLock::new(Vec::new()),
        }
    }
    /// svault's id of card `ix`: runs get disjoint ranges of 10^10 ids, so a run never meets the
    /// cards of an earlier one.
    pub fn card_id(&self, ix: u64) -> u64 {
        self.card_base + ix
    }
    /// The idempotency key of request `step` of item `seq`.
    pub fn key(&self, seq: u64, step: u8) -> String {
        format!("{}-{seq}-{step}", self.run)
    }
    /// The transaction id (`CARD-SEQ`) of card `ix`'s setup spend, when it has one.
    pub fn setup_spend(&self, ix: u64) -> Option<(u64, u32)> {
        let seq = *self.setup_spends.read().get(ix as usize)?;
        (seq != 0).then(|| (self.card_id(ix), seq))
    }
}

/// The program a run creates: rules chosen by the profile, caps far above what a run reaches,
/// so results never depend on `demo`'s caps.
pub fn program_spec(profile: Profile, id: &str, now_utc_minutes: i64) -> Value {
    let mut p = json!({
        "id": id,
        "currency": "CNY",
        "utc_offset": "+08:00",
        "top_up": {"min": "0.01", "max_single": "100000", "max_balance": "10000000",
                   "max_balance_anonymous": "10000000"},
        "refund_lock_days": 0,
    });
    if profile == Profile::Campaign {
        // Put the run at 20:30 local time, inside the evening discount window.
        let mut off = 20 * 60 + 30 - now_utc_minutes.rem_euclid(24 * 60);
        if off > 14 * 60 {
            off -= 24 * 60;
        }
        if off < -14 * 60 {
            off += 24 * 60;
        }
        let sign = if off < 0 { '-' } else { '+' };
        p["utc_offset"] = json!(format!("{sign}{:02}:{:02}", off.abs() / 60, off.abs() % 60));
        p["bonus_ladder"] = json!([
            {"nth": 1, "min": "100", "bonus": "15"},
            {"nth": 2, "min": "100", "rate": "0.10"},
            {"nth": 3, "min": "100", "rate": "0.05"}
        ]);
        p["bonus_expiry_days"] = json!(365);
        p["points"] = json!({"earn_per_unit": "1", "redeem_rate": 100});
        p["tiers"] = json!([
            {"name": "silver", "lifetime_top_up": "1000", "points_multiplier": "1.5"},
            {"name": "gold", "lifetime_top_up": "5000", "points_multiplier": "2", "discount": "0.05"}
        ]);
        p["discount_windows"] = json!([{"from": "20:00", "to": "24:00", "rate": "0.10"}]);
    }
    p
}

/// Minutes since midnight UTC, now.
pub fn utc_minutes_now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ((secs / 60) % (24 * 60)) as i64
}

/// The durability note of a svault target when the user gave none (`--durability-note`).
pub const DURABILITY_UNKNOWN: &str =
    "as the server was started (--durability; default group: fsync before every reply)";

/// An HTTP answer: status, JSON body (`null` if none, or as `B` reads it), whether it said
/// `Retry-After`.
#[derive(Debug, Clone)]
pub struct HttpAnswer<B = Value> {
    pub status: u16,
    pub body: B,
    pub retry_after: bool,
}

/// An answer's JSON as a load run reads it: a few string fields.
pub trait Body: serde::de::DeserializeOwned + Default {
    /// Field `f` when it is a string.
    fn str_field(&self, f: &str) -> Option<&str>;
    /// Field `f` is present and not `null`.
    fn has(&self, f: &str) -> bool;
}

impl Body for Value {
    fn str_field(&self, f: &str) -> Option<&str> {
        self.get(f).and_then(Value::as_str)
    }
    fn has(&self, f: &str) -> bool {
        self.get(f).is_some_and(|v| !v.is_null())
    }
}

/// The only fields of an answer the measured requests look at. Parsing into it skips the
/// rest (the card view and every other field) without building it: as a `Value`, each answer
/// cost a tree of maps and strings, and the load generator shares its cores with the server.
#[derive(Debug, Default, serde::Deserialize)]
pub struct RunReply {
    error: Option<Value>,
    code: Option<Value>,
    amount: Option<Value>,
    bonus_granted: Option<Value>,
    hold_id: Option<Value>,
    reversed_txn: Option<serde::de::IgnoredAny>,
}

impl Body for RunReply {
    fn str_field(&self, f: &str) -> Option<&str> {
        let v = match f {
            "error" => &self.error,
            "code" => &self.code,
            "amount" => &self.amount,
            "bonus_granted" => &self.bonus_granted,
            "hold_id" => &self.hold_id,
            _ => {
                debug_assert!(false, "RunReply does not read {f}");
                return None;
            }
        };
        v.as_ref().and_then(Value::as_str)
    }
    fn has(&self, f: &str) -> bool {
        debug_assert_eq!(f, "reversed_txn", "RunReply only checks reversed_txn");
        self.reversed_txn.is_some()
    }
}

/// One keep-alive HTTP/1.1 connection; reconnects after a failure.
///
/// Why not a general HTTP client: the load generator shares the two cores with the server it
/// measures, so every microsecond it spends is one the server does not get. A request here is
/// one `write` of bytes laid out in a reused buffer, the answer one or two `read`s parsed in
/// place (`httparse`); hyper's client, with its connection task, channel and header map, cost
/// about twice the load generator's CPU per request. It speaks what svault's answers use:
/// `Content-Length` bodies, keep-alive, `Connection: close`.
pub struct Http {
    addr: String,
    conn: Option<Wire>,
}

/// An open connection and its buffers, kept across requests.
struct Wire {
    stream: TcpStream,
    /// The request being sent.
    out: Vec<u8>,
    /// Its JSON body, laid out before the head that gives its length.
    body: Vec<u8>,
    /// Bytes read and not yet consumed (the start of an answer).
    input: Vec<u8>,
    /// When its last answer arrived.
    last_used: Instant,
}

/// A connection unused for this long is checked for a close by the peer before it carries a
/// request (svault closes keep-alive connections idle for its header timeout, 10 s by default),
/// so a slow open-loop run reconnects instead of counting an error. Busy connections skip the
/// check and its system call.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);

/// Largest answer head or body accepted: far above any svault answer, so a runaway peer ends
/// the request with an error instead of memory.
const ANSWER_MAX: usize = 1 << 20;

/// Most headers an answer may have.
const HEADERS_MAX: usize = 32;

impl Http {
    /// Does not connect yet: the first request connects, and the next request after a failure
    /// reconnects.
    pub fn new(addr: &str) -> Http {
        Http {
            addr: addr.to_string(),
            conn: None,
        }
    }

    /// Sends one request; `Err(kind)` when no HTTP answer came (`connect`, `io`, `timeout`).
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        self.send_full(method, path, key, body)
            .await
            .map(|a| (a.status, a.body))
    }

    /// [`Http::send`], with the headers a load run looks at.
    pub async fn send_full(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<HttpAnswer, String> {
        self.send_as(method, path, key, body).await
    }

    /// [`Http::send_full`], the answer read as `B` (its default if it is not that JSON).
    pub async fn send_as<B: Body>(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<HttpAnswer<B>, String> {
        if self
            .conn
            .as_ref()
            .is_some_and(|w| w.last_used.elapsed() >= IDLE_CHECK_AFTER && w.peer_closed())
        {
            self.conn = None;
        }
        let fut = async {
            if self.conn.is_none() {
                let stream = TcpStream::connect(&self.addr)
                    .await
                    .map_err(|_| "connect".to_string())?;
                let _ = stream.set_nodelay(true);
                self.conn = Some(Wire {
                    stream,
                    out: Vec::with_capacity(512),
                    body: Vec::with_capacity(256),
                    input: Vec::with_capacity(4096),
                    last_used: Instant::now(),
                });
            }
            let wire = self.conn.as_mut().ok_or_else(|| "connect".to_string())?;
            wire.request(&self.addr, method, path, key, body)?;
            wire.stream
                .write_all(&wire.out)
                .await
                .map_err(|_| "io".to_string())?;
            wire.answer().await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(Ok((a, keep))) => {
                match &mut self.conn {
                    Some(w) if keep => w.last_used = Instant::now(),
                    _ => self.conn = None,
                }
                Ok(a)
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err("timeout".into())
            }
        }
    }
}

impl Wire {
    /// The peer closed the connection, or sent bytes no request asked for: either way it cannot
    /// carry the next request.
    fn peer_closed(&self) -> bool {
        !matches!(
            self.stream.try_read(&mut [0u8; 1]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    /// Lays out one request in `out`.
    fn request(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(), String> {
        use std::io::Write;
        let bad = |_| "request".to_string();
        self.body.clear();
        if let Some(b) = body {
            serde_json::to_writer(&mut self.body, b).map_err(|_| "request".to_string())?;
        }
        let out = &mut self.out;
        out.clear();
        write!(out, "{method} {path} HTTP/1.1\r\nhost: {host}\r\n").map_err(bad)?;
        if let Some(k) = key {
            write!(out, "idempotency-key: {k}\r\n").map_err(bad)?;
        }
        if body.is_some() {
            out.extend_from_slice(b"content-type: application/json\r\n");
        }
        write!(out, "content-length: {}\r\n\r\n", self.body.len()).map_err(bad)?;
        out.extend_from_slice(&self.body);
        Ok(())
    }

    /// Reads one answer; also says whether the connection stays open.
    async fn answer<B: Body>(&mut self) -> Result<(HttpAnswer<B>, bool), String> {
        // The head: read until it parses whole, then take what the answer needs from it.
        let (head_len, status, len, retry_after, keep) = loop {
            let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.input) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = parsed.code.ok_or_else(|| "io".to_string())?;
                    let (len, retry_after, keep) = head_fields(&parsed)?;
                    break (head_len, status, len, retry_after, keep);
                }
                Ok(httparse::Status::Partial) if self.input.len() < ANSWER_MAX => {
                    self.fill().await?;
                }
                _ => return Err("io".into()),
            }
        };
        while self.input.len() < head_len + len {
            self.fill().await?;
        }
        let body =
            serde_json::from_slice(&self.input[head_len..head_len + len]).unwrap_or_default();
        self.input.drain(..head_len + len);
        Ok((
            HttpAnswer {
                status,
                body,
                retry_after,
            },
            keep,
        ))
    }

    /// Reads what the peer sent next; an end of stream is an error (an answer was due).
    async fn fill(&mut self) -> Result<(), String> {
        let n = self
            .stream
            .read_buf(&mut self.input)
            .await
            .map_err(|_| "io".to_string())?;
        if n == 0 {
            return Err("io".into());
        }
        Ok(())
    }
}

/// From a parsed answer head: the body's length, whether it asks to retry later
/// (`Retry-After`), and whether the connection stays open.
fn head_fields(head: &httparse::Response<'_, '_>) -> Result<(usize, bool, bool), String> {
    let mut len = 0usize;
    let mut retry_after = false;
    let mut keep = head.version == Some(1);
    for h in head.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|&n| n <= ANSWER_MAX)
                .ok_or_else(|| "io".to_string())?;
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep = !h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // svault's API answers carry a length; a chunked answer is not one of them.
            return Err("io".into());
        }
    }
    Ok((len, retry_after, keep))
}

fn field_minor<B: Body>(v: &B, f: &str) -> Minor {
    v.str_field(f).and_then(parse_minor).unwrap_or(0)
}

/// Turns an HTTP answer into an outcome; `approved` computes the delta of an approval.
///
/// `503 overloaded` with `Retry-After` is a refusal: svault refuses before anything is applied,
/// so it moves no money and counts apart from errors. A `503` without `Retry-After` or for
/// another reason (the log not writable) stays an error with its amount at stake.
fn outcome<B: Body>(
    r: Result<HttpAnswer<B>, String>,
    op: OpKind,
    amount: Minor,
    approved: impl FnOnce(&B) -> Minor,
) -> (Outcome, Option<B>) {
    let a = match r {
        Ok(a) => a,
        Err(kind) => {
            return (
                Outcome::Error {
                    at_stake: at_stake_after(&kind, op, amount),
                    kind,
                },
                None,
            )
        }
    };
    let overloaded = a.body.str_field("error") == Some("overloaded");
    if a.status == 503 && a.retry_after && overloaded {
        return (Outcome::Refused, Some(a.body));
    }
    match (a.status, a.body) {
        (200, v) => {
            let delta = approved(&v);
            (Outcome::Approved { delta }, Some(v))
        }
        (402, v) => {
            let code = v.str_field("code").unwrap_or("unknown");
            (Outcome::Declined(code.to_string()), Some(v))
        }
        (s, v) => (
            Outcome::Error {
                kind: format!("http_{s}"),
                // 4xx never applied anything; a 5xx or no answer may have.
                at_stake: if (400..500).contains(&s) {
                    0
                } else {
                    at_stake(op, amount)
                },
            },
            Some(v),
        ),
    }
}

/// One HTTP connection of a run.
pub struct HttpConn {
    http: Http,
    run: Arc<SvaultRun>,
}

impl HttpConn {
    async fn spend(&mut self, card: u64, amount: Minor, key: &str) -> (Outcome, Option<RunReply>) {
        let path = format!("/v1/cards/{card}/spends");
        let body = json!({"amount": format_minor(amount.into()), "method": "qr"});
        let r = self
            .http
            .send_as("POST", &path, Some(key), Some(&body))
            .await;
        outcome(r, OpKind::Spend, amount, |v| -field_minor(v, "amount"))
    }
}

impl Conn for HttpConn {
    async fn run(&mut self, items: &[Item]) -> Vec<Done> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let run = self.run.clone();
            let card = |ix| run.card_id(ix);
            let k0 = run.key(item.seq, 0);
            match item.action {
                Action::Spend { card: c, amount } => {
                    let (o, _) = self.spend(card(c), amount, &k0).await;
                    out.push(done(i, OpKind::Spend, o, None));
                }
                Action::TopUp { card: c, amount } => {
                    let path = format!("/v1/cards/{}/top-ups", card(c));
                    let body = json!({"amount": format_minor(amount.into()), "channel": "wechat"});
                    let r = self
                        .http
                        .send_as::<RunReply>("POST", &path, Some(&k0), Some(&body))
                        .await;
                    let (o, _) = outcome(r, OpKind::TopUp, amount, |v| {
                        field_minor(v, "amount") + field_minor(v, "bonus_granted")
                    });
                    out.push(done(i, OpKind::TopUp, o, None));
                }
                Action::HoldCapture {
                    card: c,
                    amount,
                    capture,
                } => {
                    let path = format!("/v1/cards/{}/holds", card(c));
                    let body = json!({"amount": format_minor(amount.into()),
                                      "ttl_seconds": HOLD_TTL_SECONDS, "method": "card"});
                    let r = self
                        .http
                        .send_as::<RunReply>("POST", &path, Some(&k0), Some(&body))
                        .await;
                    let (o, v) = outcome(r, OpKind::Hold, 0, |_| 0);
                    let hold_id = v
                        .as_ref()
                        .and_then(|v| v.str_field("hold_id"))
                        .map(str::to_owned);
                    let approved = matches!(o, Outcome::Approved { .. });
                    out.push(done(i, OpKind::Hold, o, None));
                    if let (true, Some(h)) = (approved, hold_id) {
                        let sent = Instant::now();
                        let path = format!("/v1/holds/{h}/capture");
                        let body = json!({"amount": format_minor(capture.into())});
                        let k1 = run.key(item.seq, 1);
                        let r = self
                            .http
                            .send_as::<RunReply>("POST", &path, Some(&k1), Some(&body))
                            .await;
                        let (o, _) =
                            outcome(r, OpKind::Capture, capture, |v| -field_minor(v, "amount"));
                        out.push(done(i, OpKind::Capture, o, Some(sent)));
                    }
                }
                Action::Refund { card: c, amount } => {
                    let o = match run.setup_spend(c) {
                        None => Outcome::Unsupported,
                        Some((tc, ts)) => {
                            let body = json!({"txn_id": format!("{tc}-{ts}"),
                                              "amount": format_minor(amount.into())});
                            let r = self
                                .http
                                .send_as::<RunReply>("POST", "/v1/refunds", Some(&k0), Some(&body))
                                .await;
                            outcome(r, OpKind::Refund, amount, |v| field_minor(v, "amount")).0
                        }
                    };
                    out.push(done(i, OpKind::Refund, o, None));
                }
                Action::SpendReversal { card: c, amount } => {
                    let id = card(c);
                    let (o, _) = self.spend(id, amount, &k0).await;
                    let charged = match o {
                        Outcome::Approved { delta } => -delta,
                        _ => 0,
                    };
                    out.push(done(i, OpKind::Spend, o, None));
                    let sent = Instant::now();
                    let path = format!("/v1/cards/{id}/reversals");
                    let body = json!({"idempotency_key": k0});
                    let k1 = run.key(item.seq, 1);
                    let r = self
                        .http
                        .send_as::<RunReply>("POST", &path, Some(&k1), Some(&body))
                        .await;
                    let (o, _) = outcome(r, OpKind::Reversal, charged, |v| {
                        // Something was undone only when the answer names the transaction;
                        // its `amount` is then the signed change to the card.
                        if v.has("reversed_txn") {
                            field_minor(v, "amount")
                        } else {
                            0
                        }
                    });
                    out.push(done(i, OpKind::Reversal, o, Some(sent)));
                }
            }
        }
        out
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

/// Host and port of an `http://HOST:PORT[/]` URL.
pub fn host_port(url: &str, scheme: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| anyhow!("expected {scheme}://HOST:PORT, got {url}"))?;
    let hp = rest.trim_end_matches('/');
    if hp.is_empty() || hp.contains('/') {
        bail!("expected {scheme}://HOST:PORT, got {url}");
    }
    Ok(hp.to_string())
}

/// Creates the run's program through `admin` (an `HTTP` address).
pub async fn create_program(admin: &str, run: &SvaultRun, profile: Profile) -> anyhow::Result<()> {
    let mut http = Http::new(admin);
    let spec = program_spec(profile, &run.program, utc_minutes_now());
    let key = format!("{}-program", run.run);
    let (status, v) = http
        .send("POST", "/v1/programs", Some(&key), Some(&spec))
        .await
        .map_err(|e| anyhow!("creating program {} at {admin}: {e}", run.program))?;
    if status != 200 {
        bail!(
            "creating program {} at {admin}: HTTP {status} {v}",
            run.program
        );
    }
    Ok(())
}

/// The run's float (principal + bonus of its program's cards) from `GET /v1/float`.
pub async fn float_money(admin: &str, run: &SvaultRun) -> anyhow::Result<i128> {
    let mut http = Http::new(admin);
    let (status, v) = http
        .send("GET", "/v1/float", None, None)
        .await
        .map_err(|e| anyhow!("GET /v1/float at {admin}: {e}"))?;
    if status != 200 {
        bail!("GET /v1/float at {admin}: HTTP {status} {v}");
    }
    let line = v.get("programs").and_then(Value::as_array).and_then(|ps| {
        ps.iter()
            .find(|p| p.get("program").and_then(Value::as_str) == Some(&run.program))
    });
    let Some(line) = line else {
        return Ok(0);
    };
    Ok(i128::from(field_minor(line, "principal")) + i128::from(field_minor(line, "bonus")))
}

/// svault over HTTP.
pub struct SvaultHttp {
    url: String,
    addr: String,
    pub run: Arc<SvaultRun>,
    /// What the report says about durability (the server does not tell).
    pub durability: String,
    /// Open and fund the cards over this `tcp://` door instead of HTTP (much faster).
    pub setup_via: Option<String>,
}

impl SvaultHttp {
    /// For `http://HOST:PORT`: names the run's program and cards after `run_id`; `durability` stays
    /// unknown unless the caller sets it.
    pub fn new(url: &str, run_id: u64) -> anyhow::Result<SvaultHttp> {
        Ok(SvaultHttp {
            url: url.to_string(),
            addr: host_port(url, "http")?,
            run: Arc::new(SvaultRun::new(run_id)),
            durability: DURABILITY_UNKNOWN.into(),
            setup_via: None,
        })
    }
}

/// Unsupported notes common to svault doors.
pub fn svault_unsupported(w: &Workload, tcp: bool) -> Vec<Unsupported> {
    let mut v = Vec::new();
    if tcp && w.mix.has(crate::workload::ActionKind::Reversal) {
        v.push(Unsupported {
            what: "reversal (POST /v1/cards/{id}/reversals) over the binary protocol".into(),
            instead: "the spend is sent; its reversal is counted as unsupported, not sent (the binary protocol has no reversal)".into(),
        });
    }
    v
}

impl Backend for SvaultHttp {
    type Conn = HttpConn;

    fn info(&self) -> TargetInfo {
        TargetInfo {
            kind: "svault-http".into(),
            url: self.url.clone(),
            version: None,
            durability: self.durability.clone(),
            unsupported: Vec::new(),
        }
    }

    async fn setup(&mut self, w: &Workload) -> anyhow::Result<Loaded> {
        if let Some(tcp) = &self.setup_via {
            let mut t =
                super::svault_tcp::SvaultTcp::with_run(tcp, &self.addr, self.run.clone(), 1)?;
            return t.setup(w).await;
        }
        create_program(&self.addr, &self.run, w.profile).await?;
        let spend = w.needs_setup_spend();
        *self.run.setup_spends.write() = vec![0; w.cards as usize];
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..SETUP_CONCURRENCY {
            let (run, addr, next, cards) =
                (self.run.clone(), self.addr.clone(), next.clone(), w.cards);
            tasks.push(tokio::spawn(async move {
                let mut http = Http::new(&addr);
                let mut got = Vec::new();
                loop {
                    let ix = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if ix >= cards {
                        return Ok::<_, anyhow::Error>(got);
                    }
                    got.push(setup_card_http(&mut http, &run, ix, spend).await?);
                }
            }));
        }
        let mut loaded = Loaded {
            cards: w.cards,
            money_minor: 0,
        };
        for t in tasks {
            let got = t.await.context("setup task")??;
            let mut spends = self.run.setup_spends.write();
            for (ix, money, seq) in got {
                loaded.money_minor += i128::from(money);
                if let Some(s) = spends.get_mut(ix as usize) {
                    *s = seq;
                }
            }
        }
        Ok(loaded)
    }

    async fn connect(&self) -> anyhow::Result<HttpConn> {
        Ok(HttpConn {
            http: Http::new(&self.addr),
            run: self.run.clone(),
        })
    }

    async fn money(&self) -> anyhow::Result<i128> {
        float_money(&self.addr, &self.run).await
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Opens, funds and (when refunds need it) spends on card `ix`; returns its money and the
/// setup spend's transaction seq.
async fn setup_card_http(
    http: &mut Http,
    run: &SvaultRun,
    ix: u64,
    spend: bool,
) -> anyhow::Result<(u64, Minor, u32)> {
    let id = run.card_id(ix);
    setup_post(
        http,
        "/v1/cards".into(),
        format!("{}-open-{ix}", run.run),
        json!({"program": run.program, "card_id": id.to_string(), "registered": true}),
    )
    .await
    .context("opening a card")?;
    let v = setup_post(
        http,
        format!("/v1/cards/{id}/top-ups"),
        format!("{}-fund-{ix}", run.run),
        json!({"amount": format_minor(FUNDING_MINOR.into()), "channel": "cash"}),
    )
    .await?;
    let mut money = field_minor(&v, "amount") + field_minor(&v, "bonus_granted");
    let mut seq = 0;
    if spend {
        let v = setup_post(
            http,
            format!("/v1/cards/{id}/spends"),
            format!("{}-setup-spend-{ix}", run.run),
            json!({"amount": format_minor(SETUP_SPEND_MINOR.into()), "method": "qr"}),
        )
        .await?;
        money -= field_minor(&v, "amount");
        seq = v
            .get("txn_id")
            .and_then(Value::as_str)
            .and_then(|t| t.rsplit_once('-'))
            .and_then(|(_, s)| s.parse().ok())
            .ok_or_else(|| anyhow!("setup spend answer without txn_id: {v}"))?;
    }
    Ok((ix, money, seq))
}

/// A setup request that must be approved; refused by an overloaded server, it is sent again
/// (same idempotency key) after a pause, as `Retry-After` asks.
async fn setup_post(
    http: &mut Http,
    path: String,
    key: String,
    body: Value,
) -> anyhow::Result<Value> {
    for _ in 0..SETUP_RETRIES {
        match outcome(
            http.send_full("POST", &path, Some(&key), Some(&body)).await,
            OpKind::TopUp,
            0,
            |_| 0,
        ) {
            (Outcome::Refused, _) => tokio::time::sleep(SETUP_RETRY_PAUSE).await,
            (Outcome::Approved { .. }, Some(v)) => return Ok(v),
            (o, v) => bail!("setup {path}: {o:?} {}", v.unwrap_or(Value::Null)),
        }
    }
    bail!("setup {path}: still refused (overloaded) after {SETUP_RETRIES} tries")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Reads one request head and its body (by `content-length`) from `s`.
    async fn read_request(s: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut b = [0u8; 1024];
        loop {
            let n = s.read(&mut b).await.expect("read");
            assert!(n > 0, "client closed before its request was whole");
            got.extend_from_slice(&b[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("a content-length");
                if got.len() >= end + 4 + len {
                    return text;
                }
            }
        }
    }

    /// Accepts one connection, reads one request, sends `answer` and closes; returns the request.
    async fn answer_once(listener: &TcpListener, answer: &[u8]) -> String {
        let (mut s, _) = listener.accept().await.expect("accept");
        let request = read_request(&mut s).await;
        s.write_all(answer).await.expect("write");
        request
    }

    /// Answers as a server may: a head split across writes, `Connection: close`, a silent close
    /// of an idle keep-alive connection. The client reads each answer whole, sends every request
    /// whole (head, key, body with its length) and reconnects whenever the connection ended,
    /// never counting a closed connection as a failed request. Each step fails without the
    /// client's handling of it (split reads, the close header, the idle check).
    #[tokio::test]
    async fn answers_split_closed_and_idle_connections_are_handled() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            // Connection 1: two answers, the first split inside its head, the second closing.
            let (mut s, _) = listener.accept().await.expect("accept");
            seen.push(read_request(&mut s).await);
            let body = r#"{"code":"insufficient_funds","amount":"5.00"}"#;
            let answer = format!(
                "HTTP/1.1 402 Payment Required\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let (a, b) = answer.split_at(20);
            s.write_all(a.as_bytes()).await.expect("write");
            tokio::time::sleep(Duration::from_millis(30)).await;
            s.write_all(b.as_bytes()).await.expect("write");
            seen.push(read_request(&mut s).await);
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 22\r\n\r\n{\"error\":\"overloaded\"}")
                .await
                .expect("write");
            drop(s);
            // Connection 2: one answer, then closed while idle, as a header timeout does.
            seen.push(
                answer_once(&listener, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await,
            );
            // Connection 3: the request after the idle close.
            seen.push(
                answer_once(
                    &listener,
                    b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n{\"hold_id\":\"h-1\"}",
                )
                .await,
            );
            seen
        });
        let mut http = Http::new(&addr);
        let body = json!({"amount": "5.00", "method": "qr"});
        let a = http
            .send_as::<RunReply>("POST", "/v1/cards/7/spends", Some("k-1"), Some(&body))
            .await
            .expect("a split answer");
        assert_eq!(a.status, 402);
        assert_eq!(a.body.str_field("code"), Some("insufficient_funds"));
        let a = http
            .send_full("GET", "/v1/float", None, None)
            .await
            .expect("a closing answer");
        assert_eq!((a.status, a.retry_after), (503, true));
        assert_eq!(a.body.str_field("error"), Some("overloaded"));
        let (status, _) = http
            .send("GET", "/v1/cards/7", None, None)
            .await
            .expect("a new connection after connection: close");
        assert_eq!(status, 200);
        tokio::time::sleep(IDLE_CHECK_AFTER + Duration::from_millis(200)).await;
        let a = http
            .send_as::<RunReply>("POST", "/v1/cards/7/holds", Some("k-2"), Some(&body))
            .await
            .expect("a new connection after an idle close");
        assert_eq!(a.body.str_field("hold_id"), Some("h-1"));
        let seen = server.await.expect("server");
        let body_text = r#"{"amount":"5.00","method":"qr"}"#;
        let post = |path: &str, key: &str| {
            format!(
                "POST {path} HTTP/1.1\r\nhost: {addr}\r\nidempotency-key: {key}\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n{body_text}",
                body_text.len()
            )
        };
        let get = |path: &str| {
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\n\r\n")
        };
        assert_eq!(
            seen,
            [
                post("/v1/cards/7/spends", "k-1"),
                get("/v1/float"),
                get("/v1/cards/7"),
                post("/v1/cards/7/holds", "k-2"),
            ]
        );
    }

    /// A chunked answer, a head that never ends and a peer that closes mid-body are errors,
    /// never an answer made up from part of one.
    #[tokio::test]
    async fn answers_it_cannot_read_whole_are_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let answers: [&[u8]; 2] = [
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{\"amount\":",
            ];
            for a in answers {
                answer_once(&listener, a).await;
            }
        });
        let mut http = Http::new(&addr);
        for _ in 0..2 {
            let r = http.send("GET", "/v1/float", None, None).await;
            assert_eq!(r.err().as_deref(), Some("io"));
        }
        server.await.expect("server");
    }

    /// The typed answer reads what the whole JSON tree reads, for every answer shape a run
    /// meets: approvals with a card view, declines, refusals, reversals with and without a
    /// transaction, and bodies that are not JSON.
    #[test]
    fn a_run_reply_reads_the_fields_a_value_reads() {
        let bodies = [
            r#"{"txn_id":"6300000000000001-7","amount":"-12.30","bonus_granted":"1.50",
                "card":{"card_id":"6300000000000001","program":"p","principal":"987.70",
                        "tier":null,"amount":"999"},"hold_id":"h-1","reversed_txn":null}"#,
            r#"{"error":"overloaded","message":"queue full"}"#,
            r#"{"code":"insufficient_funds","amount":"5.00","card":{"held":"1.00"}}"#,
            r#"{"reversed_txn":"6300000000000001-7","amount":"12.30","extra":[1,2,{"a":"b"}]}"#,
            r#"{"amount":12.3,"code":7,"error":{"nested":"overloaded"}}"#,
            "not json",
            "",
        ];
        for b in bodies {
            let v: Value = serde_json::from_str(b).unwrap_or_default();
            let r: RunReply = serde_json::from_str(b).unwrap_or_default();
            for f in ["error", "code", "amount", "bonus_granted", "hold_id"] {
                assert_eq!(v.str_field(f), r.str_field(f), "{f} of {b}");
            }
            assert_eq!(v.has("reversed_txn"), r.has("reversed_txn"), "{b}");
            assert_eq!(field_minor(&v, "amount"), field_minor(&r, "amount"), "{b}");
        }
    }
}
