//! The signal that tells one actor to stop: a reason set once and an
//! [`AtomicWaker`] for the one task (the actor's) that waits for it.
//!
//! The actor waits for its stop signal beside its mailbox every time it goes
//! idle, so the wait is on the hot path of every round trip. A
//! `tokio::sync::watch` channel, which this replaces, registers each wait in
//! a `Notify`'s waiter list under a mutex and takes it out again under the
//! same mutex when the mailbox wins; here a wait is a load, an
//! `AtomicWaker::register` (two atomic operations, and no waker clone when
//! the task is the same as last time) and a second load. One waiter is all
//! it supports, which is all an actor needs: only the actor's task waits,
//! and it waits in one place at a time.
//!
//! The first reason sent is the one the actor sees: a component the host
//! stopped is no longer among the system's actors when a shutdown follows,
//! and a shutdown signal sent twice says the same thing. Dropping the
//! sending side without a reason is a shutdown, as when the system is gone.
//! The waker protocol is the one [`AtomicWaker`] documents: the sender sets
//! the reason and then wakes; the waiter registers and then checks again.

use std::future::poll_fn;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::system::SHUTDOWN;

/// What both ends share.
#[derive(Default)]
struct Signal {
    /// Why the actor must stop, once it must.
    reason: OnceLock<&'static str>,
    /// The actor's task while it waits.
    waker: AtomicWaker,
}

/// The system's end of one actor's stop signal. Dropping it stops the
/// actor with [`SHUTDOWN`] unless a reason was sent before.
pub(crate) struct StopSender(Arc<Signal>);

/// The actor's end of its stop signal.
pub(crate) struct StopReceiver(Arc<Signal>);

/// A new stop signal, not yet sent.
pub(crate) fn stop_signal() -> (StopSender, StopReceiver) {
    let signal = Arc::new(Signal::default());
    (StopSender(Arc::clone(&signal)), StopReceiver(signal))
}

impl StopSender {
    /// Tells the actor to stop for `reason` and wakes it if it waits. Only
    /// the first reason sent counts; later ones are ignored.
    pub(crate) fn send(&self, reason: &'static str) {
        let _ = self.0.reason.set(reason);
        self.0.waker.wake();
    }
}

impl Drop for StopSender {
    fn drop(&mut self) {
        self.send(SHUTDOWN);
    }
}

impl StopReceiver {
    /// The reason to stop, if the actor was told to (one atomic load).
    pub(crate) fn signalled(&self) -> Option<&'static str> {
        self.0.reason.get().copied()
    }

    /// Waits until the actor is told to stop, and returns why.
    ///
    /// # Cancel safety
    /// Cancel-safe: the wait holds nothing, and a reason sent meanwhile
    /// stays readable. The waker it leaves registered is replaced by the
    /// next wait (or woken for nothing once).
    pub(crate) async fn wait(&self) -> &'static str {
        poll_fn(|cx| self.poll_wait(cx)).await
    }

    /// [`StopReceiver::wait`] as a poll: `Ready(reason)` once the actor is
    /// told to stop; otherwise `Pending`, with `cx`'s waker registered (it
    /// replaces the one registered before).
    pub(crate) fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<&'static str> {
        if let Some(reason) = self.signalled() {
            return Poll::Ready(reason);
        }
        self.0.waker.register(cx.waker());
        // A reason sent between the load above and the registration woke
        // the waker registered before, if any: look again.
        match self.signalled() {
            Some(reason) => Poll::Ready(reason),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// What the waiting task returned; fails (instead of hanging) if it was
    /// never woken.
    async fn woken(waiter: tokio::task::JoinHandle<&'static str>) -> &'static str {
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiting task was woken")
            .expect("the waiting task ran")
    }

    #[tokio::test]
    async fn a_waiting_actor_wakes_with_the_first_reason_sent() {
        let (sender, receiver) = stop_signal();
        assert_eq!(receiver.signalled(), None);
        let waiter = tokio::spawn(async move { receiver.wait().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "no reason sent yet");
        sender.send("first");
        sender.send("second");
        assert_eq!(woken(waiter).await, "first");
    }

    #[tokio::test]
    async fn dropping_the_sender_is_a_shutdown_unless_a_reason_was_sent() {
        let (sender, receiver) = stop_signal();
        let waiter = tokio::spawn(async move { receiver.wait().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(sender);
        assert_eq!(woken(waiter).await, SHUTDOWN);

        let (sender, receiver) = stop_signal();
        sender.send("stopped by the host");
        drop(sender);
        assert_eq!(receiver.signalled(), Some("stopped by the host"));
        assert_eq!(receiver.wait().await, "stopped by the host");
    }

    #[tokio::test]
    async fn a_wait_abandoned_for_another_branch_still_wakes_the_next_wait() {
        // As in the actor's idle select: the wait loses to the mailbox many
        // times, and a later wait must still be woken.
        let (sender, receiver) = stop_signal();
        for _ in 0..3 {
            tokio::select! {
                biased;
                () = tokio::task::yield_now() => {}
                _ = receiver.wait() => panic!("no reason sent"),
            }
        }
        let waiter = tokio::spawn(async move { receiver.wait().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        sender.send("told");
        assert_eq!(woken(waiter).await, "told");
    }
}
