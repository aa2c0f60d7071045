//! Property test: random operation sequences against the tracker, each
//! result checked against a reference model written without looking at the
//! tracker's data structures (a `HashMap` of pending requests by index and a
//! `Vec` of outcomes). Strategies live in [`strategies`], the model in
//! [`model`], the check in the test.

use std::collections::HashSet;

use proptest::prelude::*;
use wasm_core::{ComponentId, CorrelationId, CorrelationTracker, MessagingError, TrackerStats};

use self::model::{Model, Outcome, Who};
use self::strategies::Op;
use crate::{ManualClock, PendingRequests};

/// How to generate operation sequences.
mod strategies {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::model::Who;

    /// One operation on the tracker. `Index` picks one of the requests
    /// registered so far.
    #[derive(Clone, Debug)]
    pub(super) enum Op {
        Register { owner: Who, timeout_ms: u64 },
        Complete(Index),
        Fail(Index),
        Cancel { request: Index, by_owner: bool },
        Remove(Index),
        DrainOwner(Who),
        CompleteUnknown,
        Advance(u64),
        Cleanup,
    }

    fn who() -> impl Strategy<Value = Who> {
        prop_oneof![Just(Who::A), Just(Who::B)]
    }

    pub(super) fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (who(), 0..40u64).prop_map(|(owner, timeout_ms)| Op::Register { owner, timeout_ms }),
            2 => any::<Index>().prop_map(Op::Complete),
            1 => any::<Index>().prop_map(Op::Fail),
            2 => (any::<Index>(), any::<bool>()).prop_map(|(request, by_owner)| Op::Cancel { request, by_owner }),
            1 => any::<Index>().prop_map(Op::Remove),
            1 => who().prop_map(Op::DrainOwner),
            1 => Just(Op::CompleteUnknown),
            2 => (0..30u64).prop_map(Op::Advance),
            2 => Just(Op::Cleanup),
        ]
    }

    pub(super) fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(op(), 1..120)
    }

    /// Stale timer entries tolerated before compaction: small ones make
    /// the tracker compact often, the default never within a case.
    pub(super) fn compaction_floor() -> impl Strategy<Value = usize> {
        prop_oneof![Just(0usize), Just(1), Just(3), Just(4096)]
    }
}

/// The reference model: what each operation must return.
mod model {
    use std::collections::HashMap;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Who {
        A,
        B,
    }

    /// The result an operation must have.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Outcome {
        /// `complete`, `fail`, `remove` or `cancel` took the request.
        Taken,
        /// `complete` or `fail` found nothing (orphaned); `remove` found nothing.
        Missing,
        NotFound,
        NotOwner,
    }

    #[derive(Debug, Default)]
    pub(super) struct Model {
        pub(super) now_ms: u64,
        /// Pending requests by registration index: owner and deadline.
        pub(super) pending: HashMap<usize, (Who, u64)>,
        /// Number of outcomes each registered request has had.
        pub(super) outcomes: Vec<u32>,
        /// The outcome counts the model expects (`pending` unused: it is
        /// the size of `pending`).
        pub(super) counters: wasm_core::TrackerStats,
    }

    impl Model {
        pub(super) fn register(&mut self, owner: Who, timeout_ms: u64) -> usize {
            let index = self.outcomes.len();
            self.outcomes.push(0);
            self.pending.insert(index, (owner, self.now_ms + timeout_ms));
            self.counters.registered += 1;
            index
        }

        fn end(&mut self, index: usize) -> bool {
            if self.pending.remove(&index).is_some() {
                self.outcomes[index] += 1;
                true
            } else {
                false
            }
        }

        pub(super) fn complete(&mut self, index: Option<usize>) -> Outcome {
            if index.is_some_and(|index| self.end(index)) {
                self.counters.completed += 1;
                Outcome::Taken
            } else {
                self.counters.orphaned += 1;
                Outcome::Missing
            }
        }

        pub(super) fn fail(&mut self, index: usize) -> Outcome {
            if self.end(index) {
                self.counters.failed += 1;
                Outcome::Taken
            } else {
                self.counters.orphaned += 1;
                Outcome::Missing
            }
        }

        pub(super) fn remove(&mut self, index: usize) -> Outcome {
            if self.end(index) {
                self.counters.dropped += 1;
                Outcome::Taken
            } else {
                Outcome::Missing
            }
        }

        /// Indexes of the requests of `owner` that get dropped.
        pub(super) fn drain_owner(&mut self, owner: Who) -> Vec<usize> {
            let mut mine: Vec<usize> =
                self.pending.iter().filter(|(_, (who, _))| *who == owner).map(|(index, _)| *index).collect();
            mine.sort_unstable();
            for index in &mine {
                self.end(*index);
            }
            self.counters.dropped += mine.len() as u64;
            mine
        }

        pub(super) fn cancel(&mut self, index: usize, caller: Who) -> Outcome {
            match self.pending.get(&index) {
                None => Outcome::NotFound,
                Some(&(owner, _)) if owner != caller => Outcome::NotOwner,
                Some(_) => {
                    self.end(index);
                    self.counters.cancelled += 1;
                    Outcome::Taken
                }
            }
        }

        /// Indexes of the requests that expire now.
        pub(super) fn cleanup(&mut self) -> Vec<usize> {
            let now_ms = self.now_ms;
            let mut due: Vec<usize> =
                self.pending.iter().filter(|(_, (_, deadline))| *deadline <= now_ms).map(|(index, _)| *index).collect();
            due.sort_unstable();
            for index in &due {
                self.end(*index);
            }
            self.counters.timed_out += due.len() as u64;
            due
        }
    }
}

fn component(who: Who) -> ComponentId {
    ComponentId::parse(match who {
        Who::A => "a",
        Who::B => "b",
    })
    .expect("valid id")
}

fn other(who: Who) -> Who {
    match who {
        Who::A => Who::B,
        Who::B => Who::A,
    }
}

fn taken<T>(found: Option<T>) -> Outcome {
    if found.is_some() { Outcome::Taken } else { Outcome::Missing }
}

fn cancel_outcome<T>(result: Result<T, MessagingError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Taken,
        Err(MessagingError::RequestNotFound(_)) => Outcome::NotFound,
        Err(MessagingError::NotOwner(_)) => Outcome::NotOwner,
        Err(other) => panic!("cancel returned {other:?}"),
    }
}

fn expected_stats(model: &Model) -> TrackerStats {
    let mut stats = model.counters;
    stats.pending = model.pending.len() as u64;
    stats
}

proptest! {
    #[test]
    fn proptest_tracker_matches_the_model(ops in strategies::ops(), floor in strategies::compaction_floor()) {
        let clock = ManualClock::new(0);
        let mut tracker = PendingRequests::<ComponentId, _>::new(clock.clone());
        tracker.set_compaction_floor(floor);
        let mut model = Model::default();
        // Registered ids by index, with their owners, and the outcomes the
        // tracker itself reported for each.
        let mut requests: Vec<(CorrelationId, Who)> = Vec::new();
        let mut reported: Vec<u32> = Vec::new();

        for op in ops {
            let pick = |index: &proptest::sample::Index| (!requests.is_empty()).then(|| index.index(requests.len()));
            match op {
                Op::Register { owner, timeout_ms } => {
                    let id = tracker.register(component(owner), component(other(owner)), timeout_ms);
                    prop_assert_eq!(model.register(owner, timeout_ms), requests.len());
                    requests.push((id, owner));
                    reported.push(0);
                    prop_assert!(tracker.is_pending(&id));
                }
                Op::Complete(index) => {
                    let Some(index) = pick(&index) else { continue };
                    let got = taken(tracker.complete(&requests[index].0));
                    prop_assert_eq!(got, model.complete(Some(index)));
                    reported[index] += u32::from(got == Outcome::Taken);
                }
                Op::CompleteUnknown => {
                    let got = taken(tracker.complete(&CorrelationId::generate()));
                    prop_assert_eq!(got, model.complete(None));
                }
                Op::Fail(index) => {
                    let Some(index) = pick(&index) else { continue };
                    let got = taken(tracker.fail(&requests[index].0));
                    prop_assert_eq!(got, model.fail(index));
                    reported[index] += u32::from(got == Outcome::Taken);
                }
                Op::Remove(index) => {
                    let Some(index) = pick(&index) else { continue };
                    let got = taken(tracker.remove(&requests[index].0));
                    prop_assert_eq!(got, model.remove(index));
                    reported[index] += u32::from(got == Outcome::Taken);
                }
                Op::Cancel { request, by_owner } => {
                    let Some(index) = pick(&request) else { continue };
                    let (id, owner) = requests[index];
                    let caller = if by_owner { owner } else { other(owner) };
                    let got = cancel_outcome(tracker.cancel(&id, &component(caller)));
                    prop_assert_eq!(got, model.cancel(index, caller));
                    reported[index] += u32::from(got == Outcome::Taken);
                }
                Op::DrainOwner(owner) => {
                    let mut got: Vec<usize> = tracker
                        .drain_owner(&component(owner))
                        .iter()
                        .map(|(id, _)| requests.iter().position(|(known, _)| known == id).expect("a registered id"))
                        .collect();
                    got.sort_unstable();
                    prop_assert_eq!(&got, &model.drain_owner(owner));
                    for index in got {
                        reported[index] += 1;
                    }
                }
                Op::Advance(ms) => {
                    clock.advance(ms);
                    model.now_ms += ms;
                }
                Op::Cleanup => {
                    let expired = tracker.cleanup_expired();
                    let deadlines: Vec<u64> = expired.iter().map(|(_, request)| request.deadline_ms).collect();
                    prop_assert!(deadlines.is_sorted(), "earliest first: {:?}", deadlines);
                    let mut got: Vec<usize> = expired
                        .iter()
                        .map(|(id, _)| requests.iter().position(|(known, _)| known == id).expect("a registered id"))
                        .collect();
                    got.sort_unstable();
                    prop_assert_eq!(&got, &model.cleanup());
                    for index in got {
                        reported[index] += 1;
                    }
                    // No request whose deadline passed stays pending.
                    for (index, (id, _)) in requests.iter().enumerate() {
                        prop_assert_eq!(tracker.is_pending(id), model.pending.contains_key(&index));
                    }
                    prop_assert!(model.pending.values().all(|(_, deadline)| *deadline > model.now_ms));
                }
            }
            let stats = tracker.stats();
            prop_assert_eq!(stats, expected_stats(&model));
            prop_assert!(stats.balanced());
        }

        // Exactly one outcome per request, or still pending, by the
        // tracker's own results and by the model.
        for (index, (id, _)) in requests.iter().enumerate() {
            let pending = u32::from(tracker.is_pending(id));
            prop_assert_eq!(reported[index] + pending, 1, "request {}", index);
            prop_assert_eq!(model.outcomes[index] + pending, 1, "request {}", index);
        }
        let distinct: HashSet<_> = requests.iter().map(|(id, _)| *id).collect();
        prop_assert_eq!(distinct.len(), requests.len());
        prop_assert_eq!(tracker.next_deadline_ms(), model.pending.values().map(|(_, deadline)| *deadline).min());
    }
}
