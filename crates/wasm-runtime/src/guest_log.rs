//! Guest stdout and stderr, forwarded to the host's `tracing` log one line
//! at a time, tagged with the component id.
//!
//! What a guest writes is cut into lines (a partial line waits for its
//! newline, or for the end of the handler call); each line becomes one
//! `tracing` event on target `guest` at INFO (stdout) or WARN (stderr), with
//! fields `component` and `stream`. Two bounds keep one guest from flooding
//! the log: a line longer than [`GuestLogLimits::max_line_bytes`] is cut
//! there (the rest of it is counted, not logged), and the lines of one
//! instance (stdout and stderr together) pass a GCRA rate limit
//! (`governor`); lines over the limit are dropped and counted, and the count
//! is logged with the next line that passes.

use std::io;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::io::AsyncWrite;
use wasmtime_wasi::async_trait;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// One clock for every instance's limiter: making a clock (`quanta`) reads
/// the CPU's features each time, a few microseconds per instance started.
static CLOCK: LazyLock<DefaultClock> = LazyLock::new(DefaultClock::default);

/// How much of a guest's output reaches the host log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestLogLimits {
    /// Sustained lines per second per instance, stdout and stderr together
    /// (GCRA; at least 1). Default 100.
    pub lines_per_second: u32,
    /// Lines allowed at once above the sustained rate (at least 1). Default 1,000.
    pub burst: u32,
    /// Longest line logged, in bytes; the rest of a longer line is dropped
    /// and counted. Default 4,096.
    pub max_line_bytes: usize,
}

impl Default for GuestLogLimits {
    fn default() -> Self {
        Self { lines_per_second: 100, burst: 1_000, max_line_bytes: 4_096 }
    }
}

/// Room offered to the guest per write, in bytes (what wasmtime-wasi's own
/// streams offer); a write is turned into lines at once, so it never waits.
const WRITE_PERMIT_BYTES: usize = 64 * 1024;

/// The output of one instance: its two line buffers and its rate limiter.
#[derive(Debug)]
pub(crate) struct GuestLog {
    component: Arc<str>,
    limits: GuestLogLimits,
    limiter: DefaultDirectRateLimiter,
    /// Lines dropped by the rate limit since the last line logged.
    suppressed: AtomicU64,
    /// Bytes of over-long lines dropped since the last line logged.
    truncated: AtomicU64,
    stdout: Mutex<Vec<u8>>,
    stderr: Mutex<Vec<u8>>,
    /// Whether a write may have left a partial line in a buffer, so that
    /// [`GuestLog::flush_partial`] after a call that wrote nothing costs one
    /// atomic read instead of two locks.
    partial: AtomicBool,
}

impl GuestLog {
    pub(crate) fn new(component: &str, limits: GuestLogLimits) -> Arc<Self> {
        let per_second = NonZeroU32::new(limits.lines_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
        Arc::new(Self {
            component: component.into(),
            limits,
            limiter: RateLimiter::direct_with_clock(Quota::per_second(per_second).allow_burst(burst), CLOCK.clone()),
            suppressed: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            stdout: Mutex::new(Vec::new()),
            stderr: Mutex::new(Vec::new()),
            partial: AtomicBool::new(false),
        })
    }

    /// The stream a WASI context writes stdout (`stderr == false`) or stderr to.
    pub(crate) fn stream(self: &Arc<Self>, stderr: bool) -> GuestLogStream {
        GuestLogStream { log: Arc::clone(self), stderr }
    }

    fn buffer(&self, stderr: bool) -> MutexGuard<'_, Vec<u8>> {
        let buffer = if stderr { &self.stderr } else { &self.stdout };
        buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `bytes` and logs every line they complete.
    fn write(&self, stderr: bool, bytes: &[u8]) {
        let mut buffer = self.buffer(stderr);
        self.partial.store(true, Ordering::Relaxed);
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let room = self.limits.max_line_bytes.saturating_sub(buffer.len());
            let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            let kept = body.len().min(room);
            buffer.extend_from_slice(&body[..kept]);
            self.truncated.fetch_add((body.len() - kept) as u64, Ordering::Relaxed);
            if chunk.ends_with(b"\n") {
                self.emit(stderr, &buffer);
                buffer.clear();
            }
        }
    }

    /// Logs a partial line left at the end of a handler call.
    pub(crate) fn flush_partial(&self) {
        // Set under the buffer's lock by every write; the flag may be stale
        // only towards `true` (a flush then finds empty buffers).
        if !self.partial.swap(false, Ordering::Relaxed) {
            return;
        }
        for stderr in [false, true] {
            let mut buffer = self.buffer(stderr);
            if !buffer.is_empty() {
                self.emit(stderr, &buffer);
                buffer.clear();
            }
        }
    }

    /// Lines dropped by the rate limit and not yet reported.
    #[cfg(test)]
    fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    fn emit(&self, stderr: bool, line: &[u8]) {
        if self.limiter.check().is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        let truncated = self.truncated.swap(0, Ordering::Relaxed);
        let text = String::from_utf8_lossy(line);
        let component = &*self.component;
        if stderr {
            tracing::warn!(target: "guest", component = %component, stream = "stderr", suppressed, truncated, "{text}");
        } else {
            tracing::info!(target: "guest", component = %component, stream = "stdout", suppressed, truncated, "{text}");
        }
    }
}

/// One of an instance's two output streams, as WASI sees it.
#[derive(Clone, Debug)]
pub(crate) struct GuestLogStream {
    log: Arc<GuestLog>,
    stderr: bool,
}

impl IsTerminal for GuestLogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait]
impl Pollable for GuestLogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestLogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write(self.stderr, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT_BYTES)
    }
}

impl AsyncWrite for GuestLogStream {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.log.write(self.stderr, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_floods_are_rate_limited() {
        let limits = GuestLogLimits { lines_per_second: 1, burst: 3, max_line_bytes: 8 };
        let log = GuestLog::new("flooder", limits);
        log.write(false, b"0123456789abcdef");
        assert_eq!(*log.buffer(false), b"01234567", "a long line is cut at the cap");
        assert_eq!(log.truncated.load(Ordering::Relaxed), 8, "the cut part of the long line is counted");
        log.write(false, b"\npartial");
        assert_eq!(log.truncated.load(Ordering::Relaxed), 0, "the count is reported with the line");
        assert_eq!(*log.buffer(false), b"partial", "a partial line waits for its newline");
        log.flush_partial();
        assert!(log.buffer(false).is_empty());
        for _ in 0..100 {
            log.write(true, b"spam\n");
        }
        // 3 lines of burst: the long line, the partial one, one spam line.
        assert_eq!(log.suppressed(), 99, "lines over the rate are dropped and counted");
    }
}
