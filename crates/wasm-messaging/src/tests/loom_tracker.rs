//! Loom models of the tracker's races. Each model has two threads and one or
//! two requests, and checks that every request ends exactly once: counting
//! the `Some`/`Ok` results across threads, and through the counters.

use std::sync::Arc as StdArc;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use wasm_core::{ComponentId, CorrelationId, CorrelationTracker, MessagingError, TrackerStats};

use crate::{ManualClock, PendingRequests};

type Tracker = PendingRequests<ComponentId, ManualClock>;

fn ids() -> (ComponentId, ComponentId) {
    (ComponentId::parse("a").expect("valid id"), ComponentId::parse("b").expect("valid id"))
}

/// A tracker at 0 ms with one request from `a` to `b` due at `timeout_ms`.
fn one_request(timeout_ms: u64) -> (Arc<Tracker>, ManualClock, CorrelationId) {
    let (a, b) = ids();
    let clock = ManualClock::new(0);
    let tracker = Arc::new(Tracker::new(clock.clone()));
    let id = tracker.register(a, b, timeout_ms);
    (tracker, clock, id)
}

fn assert_ended_once(stats: TrackerStats) {
    assert!(stats.balanced(), "{stats:?}");
    assert_eq!(stats.pending, 0, "{stats:?}");
    assert_eq!(stats.completed + stats.failed + stats.timed_out + stats.cancelled + stats.dropped, 1, "{stats:?}");
}

#[test]
fn loom_complete_vs_timeout() {
    loom::model(|| {
        let (tracker, clock, id) = one_request(10);
        clock.advance(10);
        let completer = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.complete(&id).is_some())
        };
        let expired = tracker.cleanup_expired();
        let completed = completer.join().expect("completer thread");
        assert!(expired.iter().all(|(expired_id, _)| *expired_id == id));
        assert_eq!(usize::from(completed) + expired.len(), 1);
        let stats = tracker.stats();
        assert_ended_once(stats);
        assert_eq!((stats.completed, stats.timed_out), (u64::from(completed), u64::from(!completed)));
        assert_eq!(stats.orphaned, u64::from(!completed));
    });
}

#[test]
fn loom_complete_vs_cancel() {
    loom::model(|| {
        let (a, _) = ids();
        let (tracker, _clock, id) = one_request(10);
        let canceller = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.cancel(&id, &a))
        };
        let completed = tracker.complete(&id).is_some();
        let cancelled = canceller.join().expect("canceller thread");
        match &cancelled {
            Ok(_) => assert!(!completed),
            Err(MessagingError::RequestNotFound(_)) => assert!(completed),
            Err(other) => panic!("unexpected {other:?}"),
        }
        let stats = tracker.stats();
        assert_ended_once(stats);
        assert_eq!((stats.completed, stats.cancelled), (u64::from(completed), u64::from(cancelled.is_ok())));
    });
}

#[test]
fn loom_cancel_vs_cancel() {
    loom::model(|| {
        let (a, _) = ids();
        let (tracker, _clock, id) = one_request(10);
        let other = {
            let tracker = Arc::clone(&tracker);
            let a = a.clone();
            thread::spawn(move || tracker.cancel(&id, &a))
        };
        let mine = tracker.cancel(&id, &a);
        let theirs = other.join().expect("canceller thread");
        let oks = usize::from(mine.is_ok()) + usize::from(theirs.is_ok());
        assert_eq!(oks, 1);
        for result in [mine, theirs] {
            assert!(matches!(result, Ok(_) | Err(MessagingError::RequestNotFound(_))));
        }
        let stats = tracker.stats();
        assert_ended_once(stats);
        assert_eq!(stats.cancelled, 1);
    });
}

#[test]
fn loom_cancel_by_non_owner_vs_owner() {
    loom::model(|| {
        let (a, b) = ids();
        let (tracker, _clock, id) = one_request(10);
        let intruder = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.cancel(&id, &b))
        };
        let mine = tracker.cancel(&id, &a);
        let theirs = intruder.join().expect("intruder thread");
        assert!(mine.is_ok());
        assert!(matches!(theirs, Err(MessagingError::NotOwner(_) | MessagingError::RequestNotFound(_))));
        let stats = tracker.stats();
        assert_ended_once(stats);
        assert_eq!(stats.cancelled, 1);
    });
}

#[test]
fn loom_register_vs_cleanup() {
    loom::model(|| {
        let (a, b) = ids();
        let clock = ManualClock::new(5);
        let tracker = Arc::new(Tracker::new(clock.clone()));
        let registrar = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.register(a, b, 0))
        };
        let first = tracker.cleanup_expired();
        let id = registrar.join().expect("registrar thread");
        let second = tracker.cleanup_expired();
        assert_eq!(first.len() + second.len(), 1);
        assert!(first.iter().chain(&second).all(|(expired_id, _)| *expired_id == id));
        assert!(!tracker.is_pending(&id));
        let stats = tracker.stats();
        assert_ended_once(stats);
        assert_eq!(stats.timed_out, 1);
    });
}

#[test]
fn loom_fail_vs_remove_with_two_requests() {
    loom::model(|| {
        let (a, b) = ids();
        let clock = ManualClock::new(0);
        let tracker = Arc::new(Tracker::new(clock));
        let first = tracker.register(a.clone(), b.clone(), 10);
        let second = tracker.register(a, b, 10);
        let remover = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || {
                usize::from(tracker.remove(&second).is_some()) + usize::from(tracker.remove(&first).is_some())
            })
        };
        let failed = usize::from(tracker.fail(&first).is_some()) + usize::from(tracker.fail(&second).is_some());
        let removed = remover.join().expect("remover thread");
        assert_eq!(failed + removed, 2);
        let stats = tracker.stats();
        assert!(stats.balanced(), "{stats:?}");
        assert_eq!((stats.failed, stats.dropped, stats.pending), (failed as u64, removed as u64, 0));
        assert_eq!(stats.orphaned, removed as u64, "each fail that lost is orphaned");
    });
}

/// The driver's plan and a concurrent `register`: either the plan covers
/// the new deadline or the waker is called, so no wake-up is ever lost. The
/// driver has just fired its planned deadline (5 ms), so the published plan
/// is earlier than the new deadline: only a plan made and published in one
/// step can see the new request or make `register` wake it.
#[test]
fn loom_register_vs_plan_never_loses_a_wake_up() {
    loom::model(|| {
        let (a, b) = ids();
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&wakes);
        let clock = ManualClock::new(0);
        let tracker = Arc::new(Tracker::with_waker(
            clock.clone(),
            StdArc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        ));
        tracker.register(a.clone(), b.clone(), 5);
        assert_eq!(tracker.plan_next_wake(), Some(5));
        clock.advance(5);
        assert_eq!(tracker.cleanup_expired().len(), 1);
        let before = wakes.load(Ordering::SeqCst);
        let registrar = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.register(a, b, 5))
        };
        let plan = tracker.plan_next_wake();
        registrar.join().expect("registrar thread");
        let woken = wakes.load(Ordering::SeqCst) > before;
        assert!(woken || plan == Some(10), "plan {plan:?} and no wake-up");
    });
}
