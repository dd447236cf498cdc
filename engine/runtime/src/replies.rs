//! Replies waiting for the log. Every answer a shard computes carries the LSN of its record
//! (or, for reads and refusals, the last LSN the state had seen when it answered), and only a
//! commit covering that LSN releases it: whatever path a request took (a single submit, one
//! request of a binary-protocol frame, a read), nothing leaves the shard ahead of the log.
//!
//! A frame is answered in one message, so it leaves once every request in it is released.
//! When the log fails, every answer not yet released becomes `Unavailable`; answers of a frame
//! that an earlier commit already covered stay as they were (they are durable).
//!
//! `async` durability is the one exception SPEC allows: there the shard releases answers once
//! their records are appended ([`Replies::release_unsynced`]), not synced.

use super::SubmitError;
use std::collections::VecDeque;
use svault_core::outcome::Reply;
use svault_core::state::QueryAnswer;
use tokio::sync::oneshot;
use wal::{Committed, Lsn};

/// One request's answer.
pub(crate) type Answer = Result<Reply, SubmitError>;
/// Where a single request's answer goes.
pub(crate) type OneTx = oneshot::Sender<Answer>;
/// Where a frame's answers go, each with its index in the frame.
pub(crate) type FrameTx = oneshot::Sender<Vec<(usize, Answer)>>;
/// Where a read's answer goes.
pub(crate) type QueryTx = oneshot::Sender<Result<QueryAnswer, SubmitError>>;
/// One read's answer, with its index in the frame.
pub(crate) type IndexedRead = (usize, Result<QueryAnswer, SubmitError>);
/// Where a frame's reads' answers go.
pub(crate) type QueriesTx = oneshot::Sender<Vec<IndexedRead>>;

enum Waiter {
    One {
        tx: OneTx,
        answer: Answer,
        lsn: Lsn,
    },
    Query {
        tx: QueryTx,
        answer: Result<QueryAnswer, SubmitError>,
        lsn: Lsn,
    },
    /// A frame's reads, all answered at once (so with one last-seen LSN).
    Queries {
        tx: QueriesTx,
        answers: Vec<IndexedRead>,
        lsn: Lsn,
    },
    Frame {
        tx: FrameTx,
        /// `(index in the frame, answer, LSN)`, LSNs non-decreasing.
        answers: Vec<(usize, Answer, Lsn)>,
        /// The shard is still executing this frame.
        open: bool,
    },
}

impl Waiter {
    /// The LSN that must be released before this waiter may leave.
    fn lsn(&self) -> Lsn {
        match self {
            Waiter::One { lsn, .. } | Waiter::Query { lsn, .. } | Waiter::Queries { lsn, .. } => {
                *lsn
            }
            Waiter::Frame { answers, .. } => answers.last().map_or(Lsn(0), |(_, _, l)| *l),
        }
    }

    fn open(&self) -> bool {
        matches!(self, Waiter::Frame { open: true, .. })
    }

    /// Replaces every answer whose LSN is past `released` by `err`.
    fn fail_after(&mut self, released: Lsn, err: &SubmitError) {
        match self {
            Waiter::One { answer, lsn, .. } if *lsn > released => *answer = Err(err.clone()),
            Waiter::Query { answer, lsn, .. } if *lsn > released => *answer = Err(err.clone()),
            Waiter::Queries { answers, lsn, .. } if *lsn > released => {
                for (_, answer) in answers.iter_mut() {
                    *answer = Err(err.clone());
                }
            }
            Waiter::Frame { answers, .. } => {
                for (_, answer, lsn) in answers.iter_mut() {
                    if *lsn > released {
                        *answer = Err(err.clone());
                    }
                }
            }
            _ => {}
        }
    }

    fn send(self) {
        // A caller that went away (timed out, disconnected) is not an error of the shard.
        match self {
            Waiter::One { tx, answer, .. } => {
                let _ = tx.send(answer);
            }
            Waiter::Query { tx, answer, .. } => {
                let _ = tx.send(answer);
            }
            Waiter::Queries { tx, answers, .. } => {
                let _ = tx.send(answers);
            }
            Waiter::Frame { tx, answers, .. } => {
                let _ = tx.send(answers.into_iter().map(|(i, a, _)| (i, a)).collect());
            }
        }
    }
}

/// The answers of one shard that wait for the log, in the order they were computed (so in
/// LSN order).
pub(crate) struct Replies {
    queue: VecDeque<Waiter>,
    /// Every answer with an LSN up to this one may leave.
    released: Lsn,
    /// Set once the log failed: nothing past `released` is ever released.
    failed: Option<SubmitError>,
}

impl Replies {
    /// `durable`: what the log already holds at start (recovered records are durable).
    pub(crate) fn new(durable: Lsn, capacity: usize) -> Replies {
        Replies {
            queue: VecDeque::with_capacity(capacity),
            released: durable,
            failed: None,
        }
    }

    /// A single request's answer; `lsn` is its record's (or the last seen, without a record).
    pub(crate) fn one(&mut self, tx: OneTx, answer: Answer, lsn: Lsn) {
        self.push(Waiter::One { tx, answer, lsn });
    }

    /// A read's answer; `lsn` is the last record the state had applied when it answered.
    pub(crate) fn query(
        &mut self,
        tx: QueryTx,
        answer: Result<QueryAnswer, SubmitError>,
        lsn: Lsn,
    ) {
        self.push(Waiter::Query { tx, answer, lsn });
    }

    /// A frame's reads (see [`Replies::query`]); `lsn`: the last record applied when they
    /// were answered.
    pub(crate) fn queries(&mut self, tx: QueriesTx, answers: Vec<IndexedRead>, lsn: Lsn) {
        self.push(Waiter::Queries { tx, answers, lsn });
    }

    /// Starts a frame: its answers follow with [`Replies::frame_answer`], then
    /// [`Replies::close_frame`]. One frame is open at a time.
    pub(crate) fn open_frame(&mut self, tx: FrameTx, len: usize) {
        debug_assert!(!self.queue.back().is_some_and(Waiter::open));
        self.queue.push_back(Waiter::Frame {
            tx,
            answers: Vec::with_capacity(len),
            open: true,
        });
    }

    /// The answer to request `index` of the open frame.
    pub(crate) fn frame_answer(&mut self, index: usize, mut answer: Answer, lsn: Lsn) {
        if lsn > self.released {
            if let Some(err) = &self.failed {
                answer = Err(err.clone());
            }
        }
        match self.queue.back_mut() {
            Some(Waiter::Frame {
                answers,
                open: true,
                ..
            }) => {
                debug_assert!(answers.last().is_none_or(|(_, _, l)| *l <= lsn));
                answers.push((index, answer, lsn));
            }
            _ => debug_assert!(false, "frame_answer without an open frame"),
        }
    }

    /// The open frame is complete; it leaves once its last record is released.
    pub(crate) fn close_frame(&mut self) {
        if let Some(Waiter::Frame { open, .. }) = self.queue.back_mut() {
            *open = false;
        }
        self.send_ready();
    }

    /// A commit returned: every answer it covers leaves.
    pub(crate) fn release(&mut self, committed: Committed) {
        self.advance(committed.through);
    }

    /// `async` durability only: answers leave once their records are appended, before any
    /// sync (SPEC: async replies before the fsync and says so at start-up).
    pub(crate) fn release_unsynced(&mut self, appended: Lsn) {
        self.advance(appended);
    }

    /// The log failed: every answer not released yet (and every later one past `released`)
    /// is `err`; they all leave now, except a frame still executing (it leaves when closed).
    pub(crate) fn fail(&mut self, err: SubmitError) {
        for w in self.queue.iter_mut() {
            w.fail_after(self.released, &err);
        }
        self.failed.get_or_insert(err);
        self.send_ready();
    }

    /// Nothing waits (every answer computed so far has left).
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn advance(&mut self, through: Lsn) {
        if self.failed.is_none() && through > self.released {
            self.released = through;
        }
        self.send_ready();
    }

    fn push(&mut self, mut w: Waiter) {
        if let Some(err) = &self.failed {
            w.fail_after(self.released, err);
        }
        self.queue.push_back(w);
        self.send_ready();
    }

    /// Sends, in order, every waiter whose answers are all released (all of them once the log
    /// failed: their unreleased answers are errors by then).
    fn send_ready(&mut self) {
        while let Some(front) = self.queue.front() {
            let ready = !front.open() && (self.failed.is_some() || front.lsn() <= self.released);
            if !ready {
                break;
            }
            if let Some(w) = self.queue.pop_front() {
                w.send();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svault_core::outcome::{Outcome, Reply};

    fn ok() -> Answer {
        Ok(Reply {
            outcome: Outcome::Rejected(svault_core::outcome::Rejection::IdempotencyKeyReused),
            replayed: false,
        })
    }

    fn committed_through(n: u64) -> Committed {
        // Only the log makes a `Committed`; a real one from a scratch log.
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = wal::Wal::open(
            dir.path(),
            wal::WalOptions {
                segment_size_bytes: 1 << 16,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..n {
            log.append(b"x").unwrap();
        }
        log.commit().unwrap()
    }

    #[test]
    fn an_answer_leaves_only_once_a_commit_covers_its_lsn() {
        let mut r = Replies::new(Lsn(0), 4);
        let (tx, mut rx) = oneshot::channel();
        r.one(tx, ok(), Lsn(2));
        r.release(committed_through(1));
        assert!(
            rx.try_recv().is_err(),
            "LSN 2 is not covered by a commit through 1"
        );
        r.release(committed_through(2));
        assert!(rx.try_recv().unwrap().is_ok());
        assert!(r.is_empty());
    }

    #[test]
    fn a_failed_log_fails_what_it_did_not_release_and_keeps_what_it_did() {
        let mut r = Replies::new(Lsn(0), 4);
        let (ftx, mut frx) = oneshot::channel();
        r.open_frame(ftx, 3);
        r.frame_answer(0, ok(), Lsn(1));
        r.release(committed_through(1));
        r.frame_answer(1, ok(), Lsn(2));
        r.fail(SubmitError::Unavailable("disk".into()));
        r.frame_answer(2, ok(), Lsn(3));
        assert!(frx.try_recv().is_err(), "an open frame does not leave");
        r.close_frame();
        let answers = frx.try_recv().unwrap();
        assert!(answers[0].1.is_ok(), "LSN 1 was durable");
        assert!(answers[1].1.is_err() && answers[2].1.is_err());
        // Later answers past the released LSN fail too, even if a commit were to claim more.
        let (tx, mut rx) = oneshot::channel();
        r.one(tx, ok(), Lsn(4));
        r.release(committed_through(4));
        assert!(rx.try_recv().unwrap().is_err());
    }

    /// A frame's reads leave together, once a commit covers the last record they saw; the
    /// reads of a log that failed before that are all refused (they may show what never
    /// became durable).
    #[test]
    fn a_frames_reads_wait_for_what_they_saw_and_fail_with_the_log() {
        let read = |i| (i, Ok(QueryAnswer::Card(None)));
        let mut r = Replies::new(Lsn(0), 4);
        let (tx, mut rx) = oneshot::channel();
        r.queries(tx, vec![read(3), read(0)], Lsn(2));
        r.release(committed_through(1));
        assert!(rx.try_recv().is_err(), "they saw LSN 2, not yet durable");
        r.release(committed_through(2));
        let answers = rx.try_recv().unwrap();
        assert_eq!(answers.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [3, 0]);
        assert!(answers.iter().all(|(_, a)| a.is_ok()));

        let (tx, mut rx) = oneshot::channel();
        r.queries(tx, vec![read(1), read(2)], Lsn(3));
        r.fail(SubmitError::Unavailable("disk".into()));
        let answers = rx.try_recv().unwrap();
        assert!(answers.iter().all(|(_, a)| a.is_err()), "{answers:?}");
    }
}
