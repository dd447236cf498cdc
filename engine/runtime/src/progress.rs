//! Progress bars for long offline work (`svault replay`, `report`, `inspect`): drawn on
//! stderr when it is a terminal, silent when piped or redirected, so scripts and tests see
//! only the result.

use std::io::IsTerminal;

/// A byte-counting progress bar that may be hidden. Cheap to clone and to share between the
/// threads of several shards.
#[derive(Clone)]
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    /// A bar over `total_bytes` of log, labelled `what`; hidden unless stderr is a terminal.
    pub fn new(total_bytes: u64, what: &str) -> Progress {
        if !std::io::stderr().is_terminal() || total_bytes == 0 {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(total_bytes);
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        Progress(Some(bar))
    }

    /// A bar that never draws.
    pub fn hidden() -> Progress {
        Progress(None)
    }

    /// `bytes` more of the log are done.
    pub fn inc(&self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
