//! The `[[inject]]` entries of an app, sent by the host (sender `host`) on
//! their schedule: `after_ms` after the components run, then `every_ms`
//! apart, `repeat` times; messages, or requests whose outcomes are printed.
//!
//! One task sends everything, in order of the time each send is due and,
//! for sends due at the same time, in manifest order (so entries without
//! `after_ms` and `every_ms` go out in manifest order, back to back, as they
//! always did). A request's outcome is awaited by a task of its own, so a
//! slow answer holds up neither later sends nor other answers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wasm_core::{CorrelationId, Injection, RequestError};
use wasm_system::{HostHandle, System, injection_payload};

use crate::cli::console::Console;
use crate::cli::payload::describe;

/// The injections of a run, being sent.
#[derive(Debug)]
pub(crate) struct Injector {
    scheduler: JoinHandle<()>,
    /// Closed once the scheduler and every request's waiter have ended
    /// (each holds a sender; no one sends).
    outstanding: mpsc::Receiver<()>,
}

/// One `[[inject]]` entry, ready to send.
struct Planned {
    /// The host's sending handle.
    host: HostHandle,
    /// A component of this app, or `name@node` of another node.
    target: String,
    payload: Vec<u8>,
    after: Duration,
    every: Duration,
    left: u32,
    /// `Some(timeout)` for a request (`None` inside: the host's default).
    request: Option<Option<Duration>>,
}

impl Injector {
    /// Starts sending `injections` to the components of `system`; request
    /// outcomes are printed to `console`.
    ///
    /// # Errors
    /// When an injection names a component of this app that does not run,
    /// or a component of another node (`name@node`) while this host is not
    /// in a cluster.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub(crate) fn start(system: &System, injections: &[Injection], console: &Console) -> anyhow::Result<Self> {
        let plan = injections
            .iter()
            .map(|injection| {
                let host = system.host_handle();
                if host.is_remote(injection.to.as_str()) {
                    // The directory check happens at each send (and `run`
                    // waited for the target to be announced).
                } else if injection.to.node().is_some() && system.node().is_none() {
                    anyhow::bail!(
                        "injecting into {}: a component of another node needs a cluster (`--node` and `--nats`, or `[cluster]`)",
                        injection.to
                    );
                } else {
                    // A component of this host, named alone or as `name@<this node>`.
                    system.component(injection.to.name()).with_context(|| format!("injecting into {}", injection.to))?;
                }
                Ok(Planned {
                    host,
                    target: injection.to.to_string(),
                    payload: injection_payload(injection),
                    after: Duration::from_millis(injection.after_ms),
                    every: Duration::from_millis(injection.every_ms),
                    left: injection.repeat,
                    request: injection.request.then_some(injection.timeout_ms.map(Duration::from_millis)),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (alive, outstanding) = mpsc::channel(1);
        let scheduler = tokio::spawn(send_on_schedule(plan, console.clone(), alive));
        Ok(Self { scheduler, outstanding })
    }

    /// Waits until every injection has been sent and the outcome of every
    /// injected request has been printed.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only waits.
    pub(crate) async fn finished(&mut self) {
        while self.outstanding.recv().await.is_some() {}
    }

    /// Stops sending (the run was interrupted or reached its duration).
    /// Requests already sent still get their outcomes printed: they are
    /// answered, or, at the latest, the shutdown ends them.
    ///
    /// # Cancel safety
    /// Cancel-safe: the sending task is aborted before the first await;
    /// dropping the future only stops waiting for it to be gone.
    pub(crate) async fn stop_sending(&mut self) {
        self.scheduler.abort();
        // Wait for the task to be gone, so that nothing is sent from here on.
        let _ = (&mut self.scheduler).await;
    }
}

/// Sends every planned injection at its time: the earliest due first, ties
/// in manifest order.
async fn send_on_schedule(mut plan: Vec<Planned>, console: Console, alive: mpsc::Sender<()>) {
    let started = Instant::now();
    let mut due: BinaryHeap<Reverse<(Duration, usize)>> =
        plan.iter().enumerate().filter(|(_, p)| p.left > 0).map(|(i, p)| Reverse((p.after, i))).collect();
    while let Some(Reverse((at, index))) = due.pop() {
        let wait = at.saturating_sub(started.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let planned = &mut plan[index];
        send(planned, &console, &alive);
        planned.left -= 1;
        if planned.left > 0 {
            due.push(Reverse((at.saturating_add(planned.every), index)));
        }
    }
}

/// Sends one message or request; a request's outcome is awaited (and
/// printed) by a task of its own, which holds `alive` until then.
fn send(planned: &Planned, console: &Console, alive: &mpsc::Sender<()>) {
    let target = planned.target.as_str();
    let Some(timeout) = planned.request else {
        if let Err(error) = planned.host.try_send(target, planned.payload.clone()) {
            tracing::warn!(target_id = %target, %error, "injected message refused");
        }
        return;
    };
    match planned.host.request(target, planned.payload.clone(), timeout) {
        Ok(request) => {
            let (console, alive, target) = (console.clone(), alive.clone(), target.to_string());
            tokio::spawn(async move {
                let id = request.id();
                let outcome = request.await;
                console.line(&request_outcome(&target, id, &outcome));
                drop(alive);
            });
        }
        Err(error) => tracing::warn!(target_id = %target, %error, "injected request refused"),
    }
}

/// The line printed for an injected request's outcome:
/// `response from <to> (<id>): <codec> <preview>` or
/// `request to <to> (<id>) failed: <error>`.
fn request_outcome(target: &str, id: CorrelationId, outcome: &Result<Vec<u8>, RequestError>) -> String {
    match outcome {
        Ok(response) => {
            let (codec, preview) = describe(response);
            let codec = codec.map_or("unknown-codec", |c| c.name());
            format!("response from {target} ({id}): {codec} {preview}")
        }
        Err(error) => format!("request to {target} ({id}) failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use wasm_core::{Codec, ComponentError, MessagePayload};

    use super::*;

    #[test]
    fn outcomes_read_as_lines() {
        let id = CorrelationId::generate();
        let ok = Ok(MessagePayload::encode(Codec::Raw, b"hello").into_bytes());
        assert_eq!(request_outcome("echo", id, &ok), format!("response from echo ({id}): raw hello"));
        let rejected = Err(RequestError::HandlerError(ComponentError { code: 42, message: "rejected".into() }));
        assert_eq!(
            request_outcome("rejecter", id, &rejected),
            format!("request to rejecter ({id}) failed: handler error: component error 42: rejected")
        );
        assert_eq!(
            request_outcome("slow", id, &Err(RequestError::Timeout)),
            format!("request to slow ({id}) failed: timeout")
        );
    }
}
