//! The batched binary TCP protocol server (frames: [`proto::codec`]; reference: docs/protocol.md).
//!
//! Why batches: one frame carries up to thousands of requests and goes to the engine as one
//! `submit_batch`, so a gateway pays one syscall and one group commit for the lot. Frames are
//! pipelined: a connection may have up to [`TcpLimits::frames_in_flight_max`] frames being
//! served at once; past that the server stops reading and TCP pushes back, so memory per
//! connection is bounded. Each BATCH frame is answered by exactly one RESULTS frame with the
//! results in request order; RESULTS frames may come back in another order than their BATCHes.
//!
//! A malformed or oversize frame gets an ERROR frame and closes that connection only. A slow
//! or silent client is cut off ([`TcpLimits::frame_timeout`], [`TcpLimits::idle_timeout`]).

use proto::codec;

use crate::auth::{Auth, Caller};
use codec::{
    error_code, kind, Answer, Balances, Call, DecodedRequest, FrameError, InvalidField, Status,
};
use runtime::{Engine, SubmitError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use svault_core::command::{Command, Query};
use svault_core::outcome::{Approval, CardView, NotFoundKind, Outcome, Rejection, Reply};
use svault_core::state::QueryAnswer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Limits of the binary protocol server.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections served at once; further ones wait in the listen backlog.
    pub connections_max: usize,
    /// BATCH frames of one connection being served at once.
    pub frames_in_flight_max: usize,
    /// How long shutdown waits for in-flight frames.
    pub drain_timeout_ms: u64,
    /// Frame bytes read and not yet answered, over all connections, in KiB. A frame waits
    /// for room before its body is read, so input memory stays bounded however many
    /// connections push at once.
    pub in_flight_kib_max: u32,
    /// Once a frame's first byte has come, the rest must come within this long (a frame sent
    /// a byte at a time, or cut short, closes the connection).
    pub frame_timeout: Duration,
    /// A connection with nothing in flight on which no frame begins for this long is closed,
    /// and so is one whose answer cannot be written for this long (a client that never reads).
    pub idle_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            connections_max: 1024,
            frames_in_flight_max: 16,
            drain_timeout_ms: 10_000,
            in_flight_kib_max: 256 * 1024,
            frame_timeout: Duration::from_secs(crate::http::HEADER_TIMEOUT_SECS_DEFAULT),
            idle_timeout: Duration::from_secs(crate::http::IDLE_TIMEOUT_SECS_DEFAULT),
        }
    }
}

/// Serves the binary protocol until `shutdown` resolves; then stops reading, answers what is
/// in flight, and returns.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    auth: Auth,
    limits: TcpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.connections_max.max(1)));
    let frame_kib_max = codec::FRAME_BYTES_MAX / 1024 + 1;
    let budget = Arc::new(Semaphore::new(
        limits.in_flight_kib_max.max(frame_kib_max) as usize
    ));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        while conns.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let (engine, auth, stop) = (engine.clone(), auth.clone(), stop_rx.clone());
                let budget = budget.clone();
                conns.spawn(async move {
                    connection(stream, engine, auth, limits, budget, stop).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("tcp accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(
        std::time::Duration::from_millis(limits.drain_timeout_ms),
        drain,
    )
    .await
    .is_err()
    {
        tracing::warn!("tcp: connections still busy after the drain timeout; closing them");
    }
    Ok(())
}

fn error_frame(code: u16, message: &str) -> Vec<u8> {
    let mut f = Vec::new();
    codec::encode_error(&mut f, code, message);
    f
}

async fn connection(
    stream: TcpStream,
    engine: Engine,
    auth: Auth,
    limits: TcpLimits,
    budget: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let in_flight_max = limits.frames_in_flight_max.max(1);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(in_flight_max + 2);
    let idle = limits.idle_timeout;
    let writer = tokio::spawn(async move {
        while let Some(buf) = rx.recv().await {
            // A client that does not read its answers is cut off: dropping `rx` tells the
            // reader loop (and the batches in flight) to stop.
            match tokio::time::timeout(idle, wr.write_all(&buf)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::debug!("tcp: an answer could not be written for {idle:?}; closing");
                    break;
                }
            }
        }
        drop(rx);
        let _ = tokio::time::timeout(idle, wr.shutdown()).await;
    });
    let frames = Arc::new(Semaphore::new(in_flight_max));
    let mut caller: Option<Caller> = if auth.is_on() {
        None
    } else {
        Some(Caller::unrestricted())
    };
    let mut closing: Option<Vec<u8>> = None;
    loop {
        let Ok(permit) = frames.clone().acquire_owned().await else {
            break;
        };
        let in_flight = || frames.available_permits() + 1 < in_flight_max;
        let frame = tokio::select! {
            f = read_frame_within(&mut rd, &budget, &limits, in_flight) => f,
            _ = stop.changed() => {
                closing = Some(error_frame(error_code::SHUTTING_DOWN, "server shutting down"));
                break;
            }
            // The writer gave up on a client that does not read.
            _ = tx.closed() => break,
        };
        let (k, body, room) = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    tracing::debug!("tcp: {e}; closing");
                }
                break;
            }
            Err(e @ FrameError::TooLarge { .. }) => {
                closing = Some(error_frame(error_code::TOO_LARGE, &e.to_string()));
                break;
            }
            Err(e @ FrameError::Empty) => {
                closing = Some(error_frame(error_code::MALFORMED, &e.to_string()));
                break;
            }
        };
        match k {
            kind::HELLO => match codec::decode_hello(&body) {
                Ok(key) => match auth.check(key.as_deref()) {
                    Ok(c) => {
                        caller = Some(c);
                        let mut f = Vec::new();
                        codec::encode_welcome(&mut f);
                        if tx.send(f).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => {
                        closing = Some(error_frame(
                            error_code::UNAUTHORIZED,
                            "missing or unknown API key",
                        ));
                        break;
                    }
                },
                Err(e) => {
                    closing = Some(error_frame(error_code::BAD_HELLO, &e.to_string()));
                    break;
                }
            },
            kind::BATCH => {
                let Some(c) = caller.clone() else {
                    closing = Some(error_frame(
                        error_code::UNAUTHORIZED,
                        "send HELLO with an API key first",
                    ));
                    break;
                };
                let requests = match codec::decode_batch(&body) {
                    Ok(r) => r,
                    Err(e) => {
                        closing = Some(error_frame(error_code::MALFORMED, &e.to_string()));
                        break;
                    }
                };
                drop(body);
                let (engine, tx) = (engine.clone(), tx.clone());
                tokio::spawn(async move {
                    let answers = serve_batch(&engine, &c, requests).await;
                    let mut f = Vec::new();
                    codec::encode_results_frame(&mut f, &answers);
                    let _ = tx.send(f).await;
                    drop(permit);
                    drop(room);
                });
            }
            other => {
                closing = Some(error_frame(
                    error_code::UNEXPECTED_FRAME,
                    &format!("unexpected frame kind {other:#04x}"),
                ));
                break;
            }
        }
    }
    // Answer what is in flight, then say why we close (if we do for a reason), then close.
    let _ = frames.acquire_many(in_flight_max as u32).await;
    if let Some(f) = closing {
        let _ = tx.send(f).await;
    }
    drop(tx);
    let _ = writer.await;
}

/// Reads one frame once `budget` has room for it (KiB permits, held until it is answered).
///
/// Waits for the frame's first byte at most [`TcpLimits::idle_timeout`] while nothing is in
/// flight (`in_flight()` false; a connection waiting for its answers is not idle), then for
/// the rest of the frame at most [`TcpLimits::frame_timeout`] (the wait for `budget` aside).
/// Either limit passed is `FrameError::Io` of kind `TimedOut`.
async fn read_frame_within<R: tokio::io::AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    budget: &Arc<Semaphore>,
    limits: &TcpLimits,
    in_flight: impl Fn() -> bool,
) -> Result<Option<(u8, Vec<u8>, OwnedSemaphorePermit)>, FrameError> {
    let timed_out = |what: &str, after: Duration| {
        FrameError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} for {after:?}"),
        ))
    };
    // `fill_buf` consumes nothing, so a wait cut short by the timer loses no byte.
    loop {
        match tokio::time::timeout(limits.idle_timeout, r.fill_buf()).await {
            Ok(Ok([])) => return Ok(None),
            Ok(Ok(_)) => break,
            Ok(Err(e)) => return Err(FrameError::Io(e)),
            Err(_) if in_flight() => continue,
            Err(_) => return Err(timed_out("no frame began", limits.idle_timeout)),
        }
    }
    let mut len = [0u8; 4];
    match tokio::time::timeout(limits.frame_timeout, r.read_exact(&mut len)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(Err(e)) => return Err(FrameError::Io(e)),
        Err(_) => return Err(timed_out("a frame stayed incomplete", limits.frame_timeout)),
    }
    let len = u32::from_le_bytes(len);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > codec::FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { len });
    }
    let room = budget
        .clone()
        .acquire_many_owned(len / 1024 + 1)
        .await
        .map_err(|_| FrameError::Io(std::io::ErrorKind::BrokenPipe.into()))?;
    let mut kind = [0u8; 1];
    let mut body = vec![0u8; len as usize - 1];
    let rest = async {
        r.read_exact(&mut kind).await?;
        r.read_exact(&mut body).await
    };
    match tokio::time::timeout(limits.frame_timeout, rest).await {
        Ok(Ok(_)) => Ok(Some((kind[0], body, room))),
        Ok(Err(e)) => Err(FrameError::Io(e)),
        Err(_) => Err(timed_out("a frame stayed incomplete", limits.frame_timeout)),
    }
}

/// Serves one BATCH: mutations go to the engine as one batch, then the reads as another.
pub async fn serve_batch(
    engine: &Engine,
    caller: &Caller,
    requests: Vec<DecodedRequest>,
) -> Vec<Answer> {
    let scope = caller.scope();
    let mut answers: Vec<Answer> = Vec::with_capacity(requests.len());
    let mut batch = Vec::with_capacity(requests.len());
    let mut slots = Vec::with_capacity(requests.len());
    let mut reads = Vec::new();
    for (i, (req_id, call)) in requests.into_iter().enumerate() {
        answers.push(Answer::bare(
            req_id,
            Status::Invalid,
            InvalidField::Rules as u8,
        ));
        match call {
            Err(field) => answers
                .last_mut()
                .into_iter()
                .for_each(|a| a.detail = field as u8),
            Ok(Call::GetCard { card_id }) => reads.push((i, card_id)),
            Ok(Call::Write(request)) => match &request.command {
                Command::OpenCard { program, .. } if !caller.may_use_program(program) => answers
                    .last_mut()
                    .into_iter()
                    .for_each(|a| a.status = Status::Forbidden),
                _ => {
                    batch.push(request);
                    slots.push(i);
                }
            },
        }
    }
    if !batch.is_empty() {
        let replies = engine.submit_batch_as(batch, &scope, caller.id).await;
        for (i, reply) in slots.into_iter().zip(replies) {
            if let Some(a) = answers.get_mut(i) {
                *a = answer_of(a.req_id, reply);
            }
        }
    }
    // After the mutations (so the reads see them), as one message per shard.
    let queries = reads
        .iter()
        .map(|&(_, card_id)| Query::Card { card_id })
        .collect();
    let got = engine.query_batch(queries, &scope).await;
    for (&(i, _), got) in reads.iter().zip(got) {
        if let Some(a) = answers.get_mut(i) {
            *a = read_answer(a.req_id, got);
        }
    }
    answers
}

/// The answer to one GET_CARD of a frame: its card, not found, or why it was refused.
fn read_answer(req_id: u64, got: Result<QueryAnswer, SubmitError>) -> Answer {
    match got {
        Ok(QueryAnswer::Card(Some(v))) => {
            let mut ans = Answer::bare(req_id, Status::Card, 0);
            ans.card = Some(balances(&v));
            ans
        }
        Ok(_) => Answer::bare(
            req_id,
            Status::NotFound,
            not_found_detail(NotFoundKind::Card),
        ),
        Err(e) => submit_error_answer(req_id, &e),
    }
}

fn balances(v: &CardView) -> Balances {
    Balances {
        principal: v.principal,
        bonus: v.bonus,
        held: v.held,
        available: v.available,
        points: v.points,
        status: v.status,
    }
}

fn not_found_detail(k: NotFoundKind) -> u8 {
    match k {
        NotFoundKind::Card => 0,
        NotFoundKind::Hold => 1,
        NotFoundKind::Txn => 2,
        NotFoundKind::Program => 3,
        NotFoundKind::IdempotencyKey => 4,
        NotFoundKind::TrimmedTxn => 5,
    }
}

fn submit_error_status(e: &SubmitError) -> Status {
    match e {
        SubmitError::Overloaded => Status::Overloaded,
        SubmitError::Forbidden => Status::Forbidden,
        SubmitError::Invalid(_) => Status::Invalid,
        _ => Status::Unavailable,
    }
}

/// An engine refusal as a result record: an input rule names its field (`detail`).
fn submit_error_answer(req_id: u64, e: &SubmitError) -> Answer {
    let detail = match e {
        SubmitError::Invalid(invalid) => invalid_field(invalid.field) as u8,
        _ => 0,
    };
    Answer::bare(req_id, submit_error_status(e), detail)
}

/// The protocol's name for a field an input rule names ([`svault_core::rules::Invalid`]).
fn invalid_field(field: &str) -> InvalidField {
    match field {
        "card_id" => InvalidField::CardId,
        "amount" | "bonus" => InvalidField::Amount,
        "idempotency_key" => InvalidField::IdempotencyKey,
        "store" => InvalidField::Store,
        "program" | "id" => InvalidField::Program,
        "ttl_seconds" => InvalidField::TtlSeconds,
        "hold_id" | "txn_id" => InvalidField::TxnId,
        _ => InvalidField::Rules,
    }
}

fn approved(req_id: u64, a: &Approval) -> Answer {
    let mut ans = Answer::bare(req_id, Status::Approved, 0);
    ans.kind = Some(a.kind);
    ans.txn_id = a.txn_id;
    ans.amount = a.amount;
    // A top-up reports the ladder bonus credited, whichever field the state put it in.
    ans.bonus_granted = if a.kind == svault_core::outcome::TxnKind::TopUp {
        a.bonus_granted.max(a.bonus)
    } else {
        a.bonus_granted
    };
    ans.card = a.card.as_ref().map(balances);
    ans.partial = a.partial;
    ans
}

/// One engine reply as a result record.
pub fn answer_of(req_id: u64, reply: Result<Reply, SubmitError>) -> Answer {
    let reply = match reply {
        Ok(r) => r,
        Err(e) => return submit_error_answer(req_id, &e),
    };
    let mut ans = match &reply.outcome {
        Outcome::Approved(a) => approved(req_id, a),
        Outcome::Declined { code, card } => {
            let detail = svault_core::outcome::DeclineCode::ALL
                .iter()
                .position(|c| c == code)
                .unwrap_or(0) as u8;
            let mut ans = Answer::bare(req_id, Status::Declined, detail);
            ans.card = card.as_ref().map(balances);
            ans
        }
        Outcome::Rejected(Rejection::NotFound { what }) => {
            Answer::bare(req_id, Status::NotFound, not_found_detail(*what))
        }
        Outcome::Rejected(Rejection::IdempotencyKeyReused) => {
            Answer::bare(req_id, Status::IdempotencyKeyReused, 0)
        }
        Outcome::Rejected(Rejection::CardExists) => Answer::bare(req_id, Status::CardExists, 0),
        Outcome::Rejected(Rejection::Invalid { .. }) => {
            Answer::bare(req_id, Status::Invalid, InvalidField::Rules as u8)
        }
    };
    ans.replayed = reply.replayed;
    ans
}
