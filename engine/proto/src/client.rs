//! Async client of the binary TCP protocol, with batching and pipelining.
//!
//! Why: the load generator and gateways written in Rust need the fast path without
//! re-implementing frames. One [`Client`] is one connection; clone it freely: every clone
//! shares the connection. Calls made at the same time from many tasks are coalesced into one
//! BATCH frame by a writer task, and up to [`FRAMES_IN_FLIGHT_MAX`] frames are on the wire at
//! once (pipelining); past that callers wait, so memory stays bounded.
//!
//! ```no_run
//! # async fn demo() -> Result<(), proto::client::ClientError> {
//! use proto::client::{Client, Call, Command};
//! use svault_core::command::{CardId, Channel};
//! use svault_core::money::Amount;
//! let client = Client::connect("127.0.0.1:7070", None).await?;
//! let answer = client
//!     .call(Call::new(Some("top-up-1".into()), Command::TopUp { card_id: CardId(42), amount: Amount(10000), channel: Channel::Wechat }))
//!     .await?;
//! println!("{:?} {:?}", answer.status, answer.card);
//! # Ok(()) }
//! ```

use crate::codec::{self, kind, FrameError};
pub use crate::codec::{Answer, Balances, Call, NotOnTheWire, Status};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
/// The commands a [`Call`] carries: core's, as the server applies them.
pub use svault_core::command::Command;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Frames of one connection on the wire at once.
pub const FRAMES_IN_FLIGHT_MAX: usize = 32;
/// Most requests the writer coalesces into one frame.
pub const COALESCE_REQUESTS_MAX: usize = 8192;
/// Queued call groups waiting for the writer.
const QUEUE_MAX: usize = 4096;

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent an ERROR frame (bad key, malformed frame, shutting down).
    #[error("refused by server (code {code}): {message}")]
    Refused { code: u16, message: String },
    #[error("connection closed")]
    Closed,
    #[error("batch of {0} requests is above the frame limit")]
    BatchTooLarge(usize),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The call has no frame in the binary protocol (an HTTP-only command); nothing was sent.
    #[error(transparent)]
    NotOnTheWire(#[from] NotOnTheWire),
}

enum ReplyTo {
    One(oneshot::Sender<Answer>),
    Many(oneshot::Sender<Vec<Answer>>),
}

struct Outgoing {
    calls: Vec<Call>,
    reply: ReplyTo,
}

/// The segments of one frame on the wire: how many answers go to which caller.
struct PendingFrame {
    segments: Vec<(usize, ReplyTo)>,
    _permit: OwnedSemaphorePermit,
}

struct Shared {
    pending: Mutex<HashMap<u64, PendingFrame>>,
    /// Set when the server sent an ERROR frame, to tell callers why.
    refused: Mutex<Option<(u16, String)>>,
    /// Set when the reader stopped: nothing more will be answered.
    closed: AtomicBool,
}

/// A connection to a svault binary-protocol server. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
}

impl Client {
    /// Connects, sends HELLO with `api_key` (when the server has keys), waits for WELCOME.
    pub async fn connect(
        addr: impl ToSocketAddrs,
        api_key: Option<&str>,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::with_capacity(256 * 1024, rd);
        let mut hello = Vec::new();
        codec::encode_hello(&mut hello, api_key);
        wr.write_all(&hello).await?;
        match codec::read_frame(&mut rd).await {
            Ok(Some((kind::WELCOME, _))) => {}
            Ok(Some((kind::ERROR, body))) => {
                let (code, message) =
                    codec::decode_error(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
                return Err(ClientError::Refused { code, message });
            }
            Ok(Some((k, _))) => {
                return Err(ClientError::Protocol(format!(
                    "expected WELCOME, got frame kind {k:#04x}"
                )))
            }
            Ok(None) => return Err(ClientError::Closed),
            Err(e) => return Err(frame_error(e)),
        }
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            refused: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(write_loop(wr, rx, shared.clone()));
        tokio::spawn(read_loop(rd, shared.clone()));
        Ok(Client { tx, shared })
    }

    fn closed_error(&self) -> ClientError {
        match self.shared.refused.lock().clone() {
            Some((code, message)) => ClientError::Refused { code, message },
            None => ClientError::Closed,
        }
    }

    /// Sends one request (coalesced with concurrent ones) and waits for its answer.
    pub async fn call(&self, call: Call) -> Result<Answer, ClientError> {
        codec::op_code(&call)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Outgoing {
                calls: vec![call],
                reply: ReplyTo::One(reply),
            })
            .await
            .map_err(|_| self.closed_error())?;
        rx.await.map_err(|_| self.closed_error())
    }

    /// Sends many requests in one frame and waits for all answers, in the same order.
    pub async fn call_batch(&self, calls: Vec<Call>) -> Result<Vec<Answer>, ClientError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        if calls.len() > codec::REQUESTS_PER_FRAME_MAX as usize {
            return Err(ClientError::BatchTooLarge(calls.len()));
        }
        for call in &calls {
            codec::op_code(call)?;
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Outgoing {
                calls,
                reply: ReplyTo::Many(reply),
            })
            .await
            .map_err(|_| self.closed_error())?;
        rx.await.map_err(|_| self.closed_error())
    }
}

fn frame_error(e: FrameError) -> ClientError {
    match e {
        FrameError::Io(e) => ClientError::Io(e),
        other => ClientError::Protocol(other.to_string()),
    }
}

async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let permits = Arc::new(Semaphore::new(FRAMES_IN_FLIGHT_MAX));
    let mut next_id: u64 = 1;
    let mut carried: Option<Outgoing> = None;
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let first = match carried.take() {
            Some(o) => o,
            None => match rx.recv().await {
                Some(o) => o,
                None => break,
            },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let mut group = vec![first];
        let mut count = group.iter().map(|o| o.calls.len()).sum::<usize>();
        while count < COALESCE_REQUESTS_MAX {
            match rx.try_recv() {
                Ok(o) if count + o.calls.len() <= codec::REQUESTS_PER_FRAME_MAX as usize => {
                    count += o.calls.len();
                    group.push(o);
                }
                Ok(o) => {
                    carried = Some(o);
                    break;
                }
                Err(_) => break,
            }
        }
        let first_id = next_id;
        next_id += count as u64;
        buf.clear();
        let calls = group.iter().flat_map(|o| o.calls.iter());
        let at = codec::begin_frame(&mut buf, kind::BATCH);
        buf.extend_from_slice(&(count as u32).to_le_bytes());
        for (i, call) in calls.enumerate() {
            // Every call was checked by `op_code` when it was queued.
            let encoded = codec::encode_request(&mut buf, first_id + i as u64, call);
            debug_assert!(encoded.is_ok(), "a queued call has a frame");
        }
        codec::end_frame(&mut buf, at);
        let segments = group
            .into_iter()
            .map(|o| (o.calls.len(), o.reply))
            .collect();
        shared.pending.lock().insert(
            first_id,
            PendingFrame {
                segments,
                _permit: permit,
            },
        );
        if shared.closed.load(Ordering::SeqCst) {
            shared.pending.lock().clear();
            break;
        }
        if wr.write_all(&buf).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop(mut rd: BufReader<tokio::net::tcp::OwnedReadHalf>, shared: Arc<Shared>) {
    loop {
        let (k, body) = match codec::read_frame(&mut rd).await {
            Ok(Some(f)) => f,
            _ => break,
        };
        match k {
            kind::RESULTS => {
                let Ok(answers) = codec::decode_results(&body) else {
                    break;
                };
                let Some(first) = answers.first() else {
                    continue;
                };
                let Some(frame) = shared.pending.lock().remove(&first.req_id) else {
                    break;
                };
                let mut answers = answers.into_iter();
                for (n, reply) in frame.segments {
                    let part: Vec<Answer> = answers.by_ref().take(n).collect();
                    if part.len() != n {
                        break;
                    }
                    match reply {
                        ReplyTo::One(tx) => {
                            if let Some(a) = part.into_iter().next() {
                                let _ = tx.send(a);
                            }
                        }
                        ReplyTo::Many(tx) => {
                            let _ = tx.send(part);
                        }
                    }
                }
            }
            kind::ERROR => {
                if let Ok(err) = codec::decode_error(&body) {
                    *shared.refused.lock() = Some(err);
                }
                break;
            }
            _ => break,
        }
    }
    // Fail every waiting caller: dropping the senders wakes them with `Closed`/`Refused`.
    shared.closed.store(true, Ordering::SeqCst);
    shared.pending.lock().clear();
}
