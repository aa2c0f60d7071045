//! Clocks for the correlation tracker: [`MonotonicClock`] in production,
//! [`ManualClock`] where tests, proptest and loom drive time by hand.

use std::fmt;

use wasm_core::Clock;

use crate::sync::{Arc, AtomicU64, Ordering};

/// Milliseconds elapsed since the clock was created, read from the CPU's
/// time-stamp counter through `quanta` (calibrated against the OS monotonic
/// clock; quanta falls back to the OS clock where the TSC is not invariant).
///
/// Why not [`std::time::Instant`]: on this project's reference VM a
/// `clock_gettime` read costs 52-63 ns, a third of a whole register+complete
/// in the tracker, while a TSC read and scale costs about 10 ns (see
/// `benches/tracker.rs`, `monotonic_clock_now_ms`). Deadlines only need ms.
///
/// `now_ms` starts at 0 and never decreases.
///
/// ```
/// use wasm_core::Clock;
/// use wasm_messaging::MonotonicClock;
/// let clock = MonotonicClock::new();
/// let a = clock.now_ms();
/// assert!(clock.now_ms() >= a);
/// ```
#[derive(Clone)]
pub struct MonotonicClock {
    clock: quanta::Clock,
    origin: u64,
}

impl MonotonicClock {
    /// A clock whose origin (0 ms) is now.
    #[must_use]
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        Self { clock, origin }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MonotonicClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonotonicClock").field("now_ms", &self.now_ms()).finish()
    }
}

impl MonotonicClock {
    /// Nanoseconds elapsed since the clock was created (the same TSC read
    /// as [`Clock::now_ms`], about 10 ns).
    #[must_use]
    pub fn now_ns(&self) -> u64 {
        self.clock.delta_as_nanos(self.origin, self.clock.raw())
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        self.clock.delta_as_nanos(self.origin, self.clock.raw()) / 1_000_000
    }
}

/// A clock that moves only when told to: [`ManualClock::advance`] and
/// [`ManualClock::set`], in ms. Clones share one time, so a test keeps a
/// clone to move the clock of a tracker that owns another.
///
/// ```
/// use wasm_core::Clock;
/// use wasm_messaging::ManualClock;
/// let clock = ManualClock::new(100);
/// let shared = clock.clone();
/// clock.advance(5);
/// assert_eq!(shared.now_ms(), 105);
/// shared.set(200);
/// assert_eq!(clock.now_ms(), 200);
/// ```
#[derive(Clone)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `start_ms` until moved.
    #[must_use]
    pub fn new(start_ms: u64) -> Self {
        Self { now_ms: Arc::new(AtomicU64::new(start_ms)) }
    }

    /// Moves the clock forward by `ms` (saturating at `u64::MAX`) and returns
    /// the new time in ms.
    pub fn advance(&self, ms: u64) -> u64 {
        let previous = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| Some(now.saturating_add(ms)))
            .unwrap_or_else(|now| now);
        previous.saturating_add(ms)
    }

    /// Sets the clock to `now_ms`.
    ///
    /// # Panics
    /// When `now_ms` is earlier than the current time: a [`Clock`] never
    /// goes back. The clock is left at the later of the two.
    pub fn set(&self, now_ms: u64) {
        let previous = self.now_ms.fetch_max(now_ms, Ordering::SeqCst);
        assert!(previous <= now_ms, "ManualClock::set({now_ms}) would move the clock back from {previous} ms");
    }
}

impl Default for ManualClock {
    /// A clock at 0 ms.
    fn default() -> Self {
        Self::new(0)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock").field("now_ms", &self.now_ms()).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_forward_only() {
        let clock = ManualClock::default();
        assert_eq!(clock.advance(7), 7);
        clock.set(10);
        assert_eq!(clock.now_ms(), 10);
        assert_eq!(clock.advance(u64::MAX), u64::MAX);
        let back = std::panic::catch_unwind(|| ManualClock::new(5).set(4));
        assert!(back.is_err());
    }
}
