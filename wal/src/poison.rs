//! The poison latch: the first failed sync stops every later acknowledgement.
//!
//! Linux marks pages clean after a failed writeback, so a retried fsync "succeeds" over
//! lost data (fsyncgate, 2018). The only honest answer is to never retry: the first
//! failed msync/fdatasync/fsync flips this latch, every later `append`/`commit` returns
//! [`WalError::Poisoned`](crate::WalError::Poisoned), and a restart recovers from what the
//! disk really holds.

use crate::WalError;

/// Set once, never cleared.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    poisoned: bool,
}

impl Poison {
    pub fn check(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Flips the latch and hands back the error that caused it.
    pub fn set(&mut self, cause: std::io::Error) -> WalError {
        self.poisoned = true;
        WalError::Sync(cause)
    }

    pub fn is_set(&self) -> bool {
        self.poisoned
    }
}
