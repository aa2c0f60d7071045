//! The timer driver: the thin async layer that fires the deadlines of a
//! [`PendingRequests`]. One tokio task per tracker, never one per
//! request.
//!
//! The driver loops: take every expired request
//! ([`CorrelationTracker::cleanup_expired`]) and hand each to `on_expired`;
//! plan the next wake-up ([`PendingRequests::plan_next_wake`]); sleep
//! until then, until `register` wakes it for an earlier deadline (through a
//! [`tokio::sync::Notify`] installed as the tracker's waker), or until shut
//! down. An idle tracker costs nothing: with nothing pending the driver
//! sleeps until woken.

use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use wasm_core::{Clock, CorrelationId, CorrelationTracker, PendingRequest, RequestOwner};

use crate::sync::unmodelled::Arc;
use crate::tracker::PendingRequests;

/// Spawns the one task that fires the deadlines of `tracker`, calling
/// `on_expired` for each request that timed out (in the router: deliver
/// `err(timeout)` to the requester's callback). Deadlines are in ms on the
/// tracker's clock; the driver sleeps on tokio's timer for the difference,
/// so with [`crate::MonotonicClock`] it fires within tokio's 1 ms timer
/// resolution of the deadline. Moving a [`crate::ManualClock`] does not wake
/// the driver: it notices when its tokio sleep ends, which under tokio's
/// paused time (`start_paused`) is as soon as the runtime is idle; that is
/// the deterministic test setup. Do not combine `MonotonicClock` with paused
/// time (tokio's clock then no longer follows it).
///
/// The driver installs its own waker on `tracker`
/// ([`PendingRequests::set_waker`]), so build the tracker with
/// [`PendingRequests::new`]. It keeps a clone of `tracker` until it
/// stops: when the returned [`TimerDriver`] is shut down or dropped.
///
/// `on_expired` runs on the driver task, outside the tracker's lock, and may
/// call the tracker; it must not block for long (it delays later timeouts)
/// and must not panic (the driver stops, and the rest of that batch of
/// timeouts is lost).
///
/// ```
/// use std::sync::Arc;
/// use wasm_core::{ComponentId, CorrelationTracker};
/// use wasm_messaging::{PendingRequests, MonotonicClock, spawn_timer_driver};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let tracker = Arc::new(PendingRequests::<ComponentId>::new(MonotonicClock::new()));
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let driver = spawn_timer_driver(Arc::clone(&tracker), move |id, _request| {
///     let _ = tx.send(id);
/// });
/// let id = tracker.register(ComponentId::parse("a").unwrap(), ComponentId::parse("b").unwrap(), 5);
/// assert_eq!(rx.recv().await, Some(id));
/// driver.shutdown().await;
/// assert_eq!(tracker.stats().timed_out, 1);
/// # });
/// ```
///
/// # Panics
/// When called outside a tokio runtime (as [`tokio::spawn`]), or when
/// `tracker` already has a waker (a tracker has one timer driver).
pub fn spawn_timer_driver<O, C, F>(tracker: Arc<PendingRequests<O, C>>, on_expired: F) -> TimerDriver
where
    O: RequestOwner,
    C: Clock + 'static,
    F: FnMut(CorrelationId, PendingRequest<O>) + Send + 'static,
{
    let notify = Arc::new(Notify::new());
    let wake = Arc::clone(&notify);
    let installed = tracker.set_waker(Arc::new(move || wake.notify_one()));
    assert!(
        installed.is_ok(),
        "spawn_timer_driver: the tracker already has a waker; build it with PendingRequests::new"
    );
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(drive(tracker, notify, on_expired, stop_rx));
    TimerDriver { stop: Some(stop_tx), task: Some(task) }
}

/// The running timer driver of [`spawn_timer_driver`]. Dropping it stops
/// the driver (at its next await point, after finishing the batch of
/// timeouts it is delivering); [`TimerDriver::shutdown`] also waits for that.
#[derive(Debug)]
pub struct TimerDriver {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TimerDriver {
    /// Stops the driver and waits until its task has ended and released its
    /// clone of the tracker. Requests still pending stay in the tracker; no
    /// further timeouts fire.
    ///
    /// # Cancel safety
    /// Cancel safe in the sense that matters: the stop signal is sent on
    /// the first poll, and dropping the future (even unpolled) drops the
    /// `TimerDriver` and so stops the driver too; only the waiting is lost.
    ///
    /// # Panics
    /// Resumes the panic of `on_expired` if the driver task panicked.
    pub async fn shutdown(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }

    /// True once the driver task has ended (shut down, or `on_expired`
    /// panicked).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for TimerDriver {
    fn drop(&mut self) {
        // Dropping the sender closes the channel: the driver's select sees it.
        drop(self.stop.take());
    }
}

/// The driver task's loop.
async fn drive<O, C, F>(
    tracker: Arc<PendingRequests<O, C>>,
    notify: Arc<Notify>,
    mut on_expired: F,
    mut stop: oneshot::Receiver<()>,
) where
    O: RequestOwner,
    C: Clock,
    F: FnMut(CorrelationId, PendingRequest<O>),
{
    loop {
        let expired = tracker.cleanup_expired();
        if !expired.is_empty() {
            tracing::trace!(count = expired.len(), "correlation tracker: requests timed out");
        }
        for (id, request) in expired {
            on_expired(id, request);
        }
        // From here on, `register` wakes us for any earlier deadline; a
        // wake-up sent before we await is kept as a `Notify` permit.
        let nap_ms = tracker.plan_next_wake().map(|at_ms| at_ms.saturating_sub(tracker.clock().now_ms()));
        tokio::select! {
            biased;
            _ = &mut stop => return,
            () = notify.notified() => {}
            () = nap(nap_ms) => {}
        }
    }
}

/// Sleeps `ms` on tokio's timer; forever for `None`; only yields for 0.
async fn nap(ms: Option<u64>) {
    match ms {
        None => std::future::pending().await,
        Some(0) => tokio::task::yield_now().await,
        Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio::time::timeout;
    use wasm_core::ComponentId;

    use super::*;
    use crate::{ManualClock, MonotonicClock};

    /// Generous bound on waiting for an event; reaching it fails the test.
    const PATIENCE: Duration = Duration::from_secs(20);

    fn ids() -> (ComponentId, ComponentId) {
        (ComponentId::parse("a").expect("valid id"), ComponentId::parse("b").expect("valid id"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn driver_delivers_a_timeout_exactly_once() {
        let (a, b) = ids();
        let tracker = Arc::new(PendingRequests::<ComponentId>::new(MonotonicClock::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let counted = Arc::clone(&calls);
        let driver = spawn_timer_driver(Arc::clone(&tracker), move |id, request: PendingRequest<ComponentId>| {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send((id, request.owner));
        });
        let id = tracker.register(a.clone(), b, 20);
        let delivered = timeout(PATIENCE, rx.recv()).await.expect("timeout delivered in time");
        assert_eq!(delivered, Some((id, a)));
        driver.shutdown().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(Arc::strong_count(&tracker), 1, "the stopped driver released the tracker");
        assert!(tracker.complete(&id).is_none());
        let stats = tracker.stats();
        assert_eq!((stats.timed_out, stats.orphaned, stats.pending), (1, 1, 0));
        assert!(stats.balanced());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn driver_wakes_for_a_deadline_earlier_than_planned() {
        let (a, b) = ids();
        let tracker = Arc::new(PendingRequests::<ComponentId>::new(MonotonicClock::new()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = spawn_timer_driver(Arc::clone(&tracker), move |id, _request| {
            let _ = tx.send(id);
        });
        // Once the driver has planned for the hour-long deadline, only the
        // waker can get it to the short one in time.
        let long = tracker.register(a.clone(), b.clone(), 3_600_000);
        let short = tracker.register(a, b, 10);
        let delivered = timeout(PATIENCE, rx.recv()).await.expect("woken for the earlier deadline");
        assert_eq!(delivered, Some(short));
        assert!(tracker.is_pending(&long));
        driver.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn driver_follows_a_manual_clock_under_paused_time() {
        let (a, b) = ids();
        let clock = ManualClock::new(0);
        let tracker = Arc::new(PendingRequests::<ComponentId, _>::new(clock.clone()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = spawn_timer_driver(Arc::clone(&tracker), move |id, _request| {
            let _ = tx.send(id);
        });
        let id = tracker.register(a, b, 1_000);
        // Let the driver plan and go to sleep, then move both clocks.
        tokio::task::yield_now().await;
        clock.advance(1_000);
        let delivered = timeout(PATIENCE, rx.recv()).await.expect("delivered once tokio time caught up");
        assert_eq!(delivered, Some(id));
        assert!(!driver.is_finished());
        drop(driver);
        assert_eq!(tracker.stats().timed_out, 1);
    }

    #[tokio::test]
    #[should_panic(expected = "already has a waker")]
    async fn a_tracker_takes_one_driver() {
        let tracker = Arc::new(PendingRequests::<ComponentId>::new(MonotonicClock::new()));
        let _first = spawn_timer_driver(Arc::clone(&tracker), |_, _| {});
        let _second = spawn_timer_driver(tracker, |_, _| {});
    }
}
