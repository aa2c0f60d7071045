//! Restart policy (Erlang/OTP style): a crashed instance is replaced after a
//! backoff; more than `max_restarts` crashes within `within_ms` stops the
//! component for good (maximum restart intensity).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use wasm_core::RestartSection;

/// The restart bookkeeping of one component.
#[derive(Debug)]
pub(crate) struct RestartIntensity {
    policy: RestartSection,
    crashes: VecDeque<Instant>,
    consecutive: u32,
}

impl RestartIntensity {
    pub(crate) fn new(policy: RestartSection) -> Self {
        Self { policy, crashes: VecDeque::new(), consecutive: 0 }
    }

    /// Records a crash at `now`. `Ok(delay)` to restart after `delay`
    /// (`backoff_ms * 2^(consecutive crashes - 1)`, capped at
    /// `max_backoff_ms`); `Err(reason)` when the intensity is exceeded.
    pub(crate) fn on_crash(&mut self, now: Instant) -> Result<Duration, String> {
        let window = Duration::from_millis(self.policy.within_ms);
        self.crashes.push_back(now);
        while self.crashes.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.crashes.pop_front();
        }
        if self.crashes.len() > self.policy.max_restarts as usize {
            return Err(format!(
                "restart intensity exceeded: {} crashes within {} ms (max_restarts {})",
                self.crashes.len(),
                self.policy.within_ms,
                self.policy.max_restarts
            ));
        }
        let exponent = self.consecutive.min(20);
        self.consecutive = self.consecutive.saturating_add(1);
        let delay_ms = self.policy.backoff_ms.saturating_mul(1u64 << exponent).min(self.policy.max_backoff_ms);
        Ok(Duration::from_millis(delay_ms))
    }

    /// A handler returned normally: the backoff starts over.
    pub(crate) fn on_success(&mut self) {
        self.consecutive = 0;
    }

    /// Crashes within the current window.
    pub(crate) fn recent(&self) -> u32 {
        u32::try_from(self.crashes.len()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_exponentially_then_gives_up() {
        let policy = RestartSection { max_restarts: 3, within_ms: 1_000, backoff_ms: 10, max_backoff_ms: 25 };
        let mut intensity = RestartIntensity::new(policy);
        let t = Instant::now();
        assert_eq!(intensity.on_crash(t), Ok(Duration::from_millis(10)));
        assert_eq!(intensity.on_crash(t), Ok(Duration::from_millis(20)));
        assert_eq!(intensity.on_crash(t), Ok(Duration::from_millis(25)));
        assert!(intensity.on_crash(t).is_err());
        // Old crashes leave the window.
        let mut intensity = RestartIntensity::new(RestartSection { max_restarts: 1, within_ms: 100, ..policy });
        assert!(intensity.on_crash(t).is_ok());
        assert!(intensity.on_crash(t + Duration::from_millis(150)).is_ok());
        intensity.on_success();
        assert_eq!(intensity.recent(), 1);
    }
}
