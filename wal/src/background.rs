//! The log's sync thread: writes one batch and syncs it while the writer goes on staging the
//! next one in memory ([`crate::Wal::begin_commit`]).
//!
//! Why: a shard that waits in `fdatasync` applies nothing meanwhile. Measured on this disk, a
//! commit is about two thirds of a busy shard's turn; the rest (applying the next requests,
//! releasing answers) can run during the sync instead of after it. Durability does not
//! change: the next batch's bytes reach the file only after this one's sync returned (the
//! writer keeps them in memory until then), so a durable batch start still proves every byte
//! before it durable, and nobody is answered before the sync covering their record returned.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Called on the sync thread after each batch's outcome is ready, so the writer, which may be
/// blocked waiting for other work, looks at it.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// One batch to write at `offset` and sync.
struct Job {
    file: Arc<File>,
    bytes: Vec<u8>,
    offset: u64,
}

/// A finished job: the sync's result and the buffer, returned for reuse.
pub(crate) struct Done {
    pub result: io::Result<()>,
    pub bytes: Vec<u8>,
}

/// The thread and its two queues (one job in flight at a time, by the writer's rule).
pub(crate) struct Syncer {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    pub fn start(notify: Notify) -> io::Result<Syncer> {
        let (jobs, job_rx) = channel::<Job>();
        let (done_tx, done) = channel::<Done>();
        let thread = std::thread::Builder::new()
            .name("svault-wal-sync".into())
            .spawn(move || {
                while let Ok(job) = job_rx.recv() {
                    let result = job
                        .file
                        .write_all_at(&job.bytes, job.offset)
                        .and_then(|()| job.file.sync_data());
                    if done_tx
                        .send(Done {
                            result,
                            bytes: job.bytes,
                        })
                        .is_err()
                    {
                        return;
                    }
                    notify();
                }
            })?;
        Ok(Syncer {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// Queues a batch; `false` when the thread is gone (it panicked).
    pub fn send(&self, file: Arc<File>, bytes: Vec<u8>, offset: u64) -> bool {
        self.jobs.as_ref().is_some_and(|j| {
            j.send(Job {
                file,
                bytes,
                offset,
            })
            .is_ok()
        })
    }

    /// The finished job, if there is one; `Err` when the thread is gone.
    pub fn try_done(&self) -> Result<Option<Done>, ()> {
        match self.done.try_recv() {
            Ok(d) => Ok(Some(d)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(()),
        }
    }

    /// Waits for the job in flight; `Err` when the thread is gone.
    pub fn wait_done(&self) -> Result<Done, ()> {
        self.done.recv().map_err(|_| ())
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once its job (if any) is synced.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
