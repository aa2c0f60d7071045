//! What `run` shows a person: the live progress line (on a terminal only),
//! the log and the printed lines, kept from tearing through each other.
//!
//! The progress line is an indicatif bar on stderr, redrawn 4 times a second.
//! Everything else that reaches the terminal while it shows (the log, the
//! outcomes of injected requests) is written while the bar is suspended:
//! indicatif clears the line, the text is written, the line is drawn again.
//! When stderr is not a terminal the bar stays hidden and never draws, so a
//! redirected log holds no escape codes.

use std::convert::Infallible;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::MissedTickBehavior;
use tracing_subscriber::fmt::MakeWriter;
use wasm_system::System;

/// How often the progress line is refreshed: 4 times a second.
const REFRESH: Duration = Duration::from_millis(250);

/// The live progress line: hidden until [`Progress::show`], and then only on
/// a terminal.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A progress line that draws nothing yet.
    pub(crate) fn hidden() -> Self {
        Self { bar: ProgressBar::hidden() }
    }

    /// The log's writer: stderr, each event written whole while this line
    /// is suspended.
    pub(crate) fn log_writer(&self) -> LogWriter {
        LogWriter { bar: self.bar.clone() }
    }

    /// Starts drawing on stderr, if stderr is a terminal; returns whether it
    /// does.
    pub(crate) fn show(&self) -> bool {
        if !std::io::stderr().is_terminal() {
            return false;
        }
        let style =
            ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner());
        self.bar.set_style(style);
        self.bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        self.bar.set_message("starting");
        true
    }

    /// Refreshes the line every 250 ms until dropped: time since `started`,
    /// messages per second (messages, requests and callbacks handled, over
    /// the last interval, from [`System::stats`]), pending requests and
    /// crashes so far. Never returns; pending forever when the line is
    /// hidden.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads counters and redraws.
    pub(crate) async fn follow(&self, system: &System, started: Instant) -> Infallible {
        if self.bar.is_hidden() {
            return std::future::pending().await;
        }
        // The first refresh after one interval, so the first rate has one to count over.
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH, REFRESH);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last = (Instant::now(), 0_u64);
        loop {
            ticks.tick().await;
            let stats = system.stats();
            let handled = stats.handled + stats.callbacks_handled;
            let now = Instant::now();
            let seconds = now.duration_since(last.0).as_secs_f64().max(0.001);
            let per_second = handled.saturating_sub(last.1) as f64 / seconds;
            last = (now, handled);
            let crashes: u64 = system.component_stats().iter().map(|(_, c)| c.crashes).sum();
            self.bar.set_message(format!(
                "{:.1}s  {per_second:.0} msg/s  handled {handled}  pending requests {}  crashes {crashes}",
                started.elapsed().as_secs_f64(),
                stats.requests.pending,
            ));
        }
    }

    /// Says that the run is shutting down (draining for up to `drain`); the
    /// spinner keeps turning meanwhile.
    pub(crate) fn shutting_down(&self, drain: Duration) {
        if !self.bar.is_hidden() {
            self.bar.set_message(format!("shutting down (draining for up to {})", humantime::format_duration(drain)));
            self.bar.enable_steady_tick(REFRESH);
        }
    }

    /// Clears the line for good (before the summary prints).
    pub(crate) fn clear(&self) {
        self.bar.finish_and_clear();
    }

    /// Runs `write` with the line cleared, then draws it again.
    fn suspend<R>(&self, write: impl FnOnce() -> R) -> R {
        self.bar.suspend(write)
    }
}

/// The [`MakeWriter`] of the log: stderr, each event written whole while
/// the progress line is suspended.
#[derive(Debug)]
pub(crate) struct LogWriter {
    bar: ProgressBar,
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> LogLine<'a> {
        LogLine { bar: &self.bar, text: Vec::with_capacity(256) }
    }
}

/// One log event, collected, then written to stderr in one piece when the
/// subscriber drops it.
#[derive(Debug)]
pub(crate) struct LogLine<'a> {
    bar: &'a ProgressBar,
    text: Vec<u8>,
}

impl Write for LogLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine<'_> {
    fn drop(&mut self) {
        if !self.text.is_empty() {
            // A log line that cannot be written has nowhere else to go.
            self.bar.suspend(|| {
                let _ = std::io::stderr().lock().write_all(&self.text);
            });
        }
    }
}

/// Where `run` prints for people: stdout, or stderr when stdout carries the
/// JSON report (`--json -`); every line written around the progress line.
#[derive(Clone, Debug)]
pub(crate) struct Console {
    progress: Progress,
    to_stderr: bool,
}

impl Console {
    /// Prints to stdout, or to stderr when `to_stderr`, around `progress`.
    pub(crate) fn new(progress: Progress, to_stderr: bool) -> Self {
        Self { progress, to_stderr }
    }

    /// The progress line.
    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Prints `text` and a newline.
    pub(crate) fn line(&self, text: &str) {
        self.progress.suspend(|| {
            // As `println!`, but a closed pipe is not a panic.
            let _ = if self.to_stderr {
                writeln!(std::io::stderr().lock(), "{text}")
            } else {
                writeln!(std::io::stdout().lock(), "{text}")
            };
        });
    }
}
