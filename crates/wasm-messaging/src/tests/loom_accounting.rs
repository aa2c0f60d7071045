//! Loom model of the router's envelope accounting (`accounting.rs`): count,
//! try-send, roll back on refusal; settle once per envelope taken. A
//! capacity-1 queue stands in for the mailbox, so one of two concurrent
//! sends can be refused and rolled back while the actor takes and settles
//! the other.
//!
//! What it checks, in every interleaving:
//! - an observer reading the counters (settled first, as `Router::stats`
//!   does) never sees more envelopes settled than enqueued, which is what
//!   counting *after* the send would break (the actor could settle first);
//! - a refused send leaves no count behind, and at the end every accepted
//!   envelope was settled exactly once (`enqueued == settled == accepted`).
//!
//! The three threads count in stripes of their own (the counters are
//! striped per thread), so the observer's sums cross stripes.

use std::collections::VecDeque;

use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::accounting::{Accounting, Enqueued, Settled};

/// A bounded queue of capacity 1, standing in for a mailbox.
#[derive(Default)]
struct Queue(Mutex<VecDeque<u8>>);

impl Queue {
    fn try_send(&self, value: u8) -> Result<(), u8> {
        let mut queue = self.0.lock().expect("not poisoned");
        if queue.is_empty() {
            queue.push_back(value);
            Ok(())
        } else {
            Err(value)
        }
    }

    fn try_recv(&self) -> Option<u8> {
        self.0.lock().expect("not poisoned").pop_front()
    }
}

fn assert_settled_never_ahead(accounting: &Accounting) {
    let settled = accounting.settled();
    let enqueued = accounting.enqueued();
    assert!(settled <= enqueued, "settled {settled} ran ahead of enqueued {enqueued}");
}

#[test]
fn loom_accounting_count_try_send_roll_back_settle() {
    loom::model(|| {
        let accounting = Arc::new(Accounting::default());
        let queue = Arc::new(Queue::default());
        let senders: Vec<_> = [(1u8, Enqueued::Message), (2u8, Enqueued::Callback)]
            .into_iter()
            .map(|(value, kind)| {
                let (accounting, queue) = (Arc::clone(&accounting), Arc::clone(&queue));
                thread::spawn(move || accounting.enqueue(kind, || queue.try_send(value)).is_ok())
            })
            .collect();
        let actor = {
            let (accounting, queue) = (Arc::clone(&accounting), Arc::clone(&queue));
            thread::spawn(move || {
                let mut taken = 0;
                for _ in 0..2 {
                    if queue.try_recv().is_some() {
                        taken += 1;
                        accounting.settle(Settled::Handled);
                    }
                    assert_settled_never_ahead(&accounting);
                }
                taken
            })
        };
        assert_settled_never_ahead(&accounting);
        let accepted = senders.into_iter().map(|s| u64::from(s.join().expect("sender"))).sum::<u64>();
        let mut taken = actor.join().expect("actor");
        // A settle reports catching up only to an observer that waits.
        let waiting = accounting.waiting();
        while queue.try_recv().is_some() {
            taken += 1;
            assert!(!accounting.caught_up(), "an envelope still queued is not settled");
            assert!(accounting.settle(Settled::DeadLettered), "the last settle catches up");
        }
        assert!(accepted >= 1, "the queue had room for at least one");
        assert_eq!(taken, accepted, "every accepted envelope was taken once");
        assert_eq!(accounting.enqueued(), accepted, "refused sends left no count");
        drop(waiting);
        assert_eq!(accounting.settled(), accepted);
        assert!(accounting.caught_up());
    });
}
