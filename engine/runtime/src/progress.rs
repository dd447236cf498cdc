//! Progress bars for long offline work (`svault replay`, `report`, `inspect`): drawn on
//! stderr when it is a terminal, silent when piped or redirected, so scripts and tests see
//! only the result.
//!
//! A bar advances by bytes of log read (known up front, so the time left is an estimate over
//! the whole job) and says how many records that was and how many per second.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A byte-counting progress bar that may be hidden. Cheap to clone and to share between the
/// threads of several shards.
#[derive(Clone)]
pub struct Progress(Option<Arc<Shown>>);

struct Shown {
    bar: indicatif::ProgressBar,
    what: String,
    records: AtomicU64,
    started: Instant,
}

impl Progress {
    /// A bar over `total_bytes` of log, labelled `what`; hidden unless stderr is a terminal.
    pub fn new(total_bytes: u64, what: &str) -> Progress {
        if !std::io::stderr().is_terminal() || total_bytes == 0 {
            return Progress(None);
        }
        Progress::shown(
            total_bytes,
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({eta} left)",
            what,
        )
    }

    /// A drawn bar of `len` bytes with `template`.
    fn shown(len: u64, template: &str, what: &str) -> Progress {
        let bar = indicatif::ProgressBar::new(len);
        let style = indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        Progress(Some(Arc::new(Shown {
            bar,
            what: what.to_string(),
            records: AtomicU64::new(0),
            started: Instant::now(),
        })))
    }

    /// A bar that never draws.
    pub fn hidden() -> Progress {
        Progress(None)
    }

    /// Whether the bar draws (stderr is a terminal).
    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }

    /// `bytes` more of the log are done.
    pub fn inc(&self, bytes: u64) {
        if let Some(s) = &self.0 {
            s.bar.inc(bytes);
        }
    }

    /// `bytes` more of the log are done, and they held `records` records.
    pub fn inc_records(&self, bytes: u64, records: u64) {
        if let Some(s) = &self.0 {
            let n = s.records.fetch_add(records, Ordering::Relaxed) + records;
            let secs = s.started.elapsed().as_secs_f64().max(1e-3);
            s.bar.set_message(format!(
                "{}: {n} records, {:.0} records/s",
                s.what,
                n as f64 / secs
            ));
            s.bar.inc(bytes);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(s) = &self.0 {
            s.bar.finish_and_clear();
        }
    }
}
