//! Observing a running system: every handled message, delivered callback and
//! lifecycle event, for embedders, the CLI and tests. Events are built only
//! while someone subscribes, so an unobserved system pays one atomic load
//! per envelope.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use wasm_core::{ComponentError, ComponentId, CorrelationId, RequestError, TraceContext};
use wasm_messaging::DeadLetter;

/// Something that happened in the system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemEvent {
    /// A component's `handle-message` returned for a message or request.
    Handled {
        /// The component that handled it.
        component: ComponentId,
        /// Who sent it.
        sender: ComponentId,
        /// The correlation id when it was a request.
        request_id: Option<CorrelationId>,
        /// The payload handled.
        payload: Vec<u8>,
        /// What the handler returned (for a request: the response).
        result: Result<Vec<u8>, ComponentError>,
        /// The handler's span: same trace id as the sender's, a new span id.
        trace: TraceContext,
        /// The sender's span, carried by the message (W3C `traceparent`).
        parent: TraceContext,
    },
    /// A component's `handle-callback` ran for one of its requests.
    Callback {
        /// The requester.
        component: ComponentId,
        /// The request.
        request_id: CorrelationId,
        /// What `handle-callback` was given.
        outcome: Result<Vec<u8>, RequestError>,
        /// What `handle-callback` returned.
        result: Result<(), ComponentError>,
        /// The callback handler's span.
        trace: TraceContext,
        /// The span that produced the outcome (the responder's handler, the
        /// canceller's; for a timeout, the span that sent the request).
        parent: TraceContext,
    },
    /// A message, request or callback was dead-lettered.
    DeadLettered(DeadLetter),
    /// An instance trapped or exceeded a limit and was discarded.
    Crashed {
        /// The component.
        component: ComponentId,
        /// Why.
        reason: String,
    },
    /// The supervisor started a new instance after a crash.
    Restarted {
        /// The component.
        component: ComponentId,
        /// Restarts within the current intensity window.
        restarts: u32,
    },
    /// The component stopped for good.
    Stopped {
        /// The component.
        component: ComponentId,
        /// Why.
        reason: String,
    },
}

/// Fan-out of [`SystemEvent`]s to subscribers (unbounded, so a slow test
/// or tool loses nothing).
#[derive(Default)]
pub(crate) struct EventHub {
    active: AtomicBool,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<SystemEvent>>>,
}

impl EventHub {
    pub(crate) fn subscribe(&self) -> mpsc::UnboundedReceiver<SystemEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subscribers = self.subscribers.lock();
        subscribers.push(tx);
        self.active.store(true, Ordering::Release);
        rx
    }

    /// True while anyone listens; check before building an event.
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub(crate) fn emit(&self, event: SystemEvent) {
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|tx| tx.send(event.clone()).is_ok());
        if subscribers.is_empty() {
            self.active.store(false, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").field("subscribers", &self.subscribers.lock().len()).finish()
    }
}
