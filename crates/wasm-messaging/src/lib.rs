//! Messaging for the airssys wasm host, with no wasmtime in sight: the
//! correlation tracker and its timer driver, bounded mailboxes and their
//! registry, the policy step every send passes, audit records, and the
//! [`Router`] that implements [`wasm_core::MessageRouter`] for host functions.
//!
//! ```
//! use std::sync::Arc;
//! use wasm_core::{Codec, ComponentId, ComponentManifest, MessagePayload, MessageRouter, Origin};
//! use wasm_messaging::{Envelope, NoAudit, Policy, Router};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let router = Router::start(Arc::new(NoAudit));
//! let manifest: ComponentManifest = toml::from_str("[component]\nid = \"echo\"\nwasm = \"echo.wat\"").unwrap();
//! let id = manifest.component.id.clone();
//! let (_echo, mut inbox) = router.register(id, Policy::from_manifest(&manifest).unwrap(), &manifest.mailbox).unwrap();
//!
//! let host = ComponentId::host();
//! let hello = MessagePayload::encode(Codec::Raw, b"hello").into_bytes();
//! router.send_message(Origin { sender: &host, trace: None }, "echo", hello).unwrap();
//! let delivery = inbox.recv().await.unwrap();
//! assert!(matches!(delivery.envelope(), Envelope::Message { .. }));
//! // The actor settles what it takes: here, handled (a message's result goes nowhere).
//! delivery.handled(Ok(Vec::new()), wasm_core::TraceContext::new_root());
//! assert!(router.stats().balanced());
//! # });
//! ```
#![forbid(unsafe_code)]

mod accounting;
mod audit;
mod clock;
mod delivery;
mod envelope;
mod error;
mod mailbox;
mod policy;
mod registry;
mod reply;
mod router;
mod sync;
mod timer;
mod tracker;

#[cfg(test)]
mod tests;

pub use audit::{AuditCounts, AuditEvent, AuditRecord, AuditSink, NoAudit};
pub use clock::{ManualClock, MonotonicClock};
pub use delivery::{DROPPED_UNSETTLED, Delivery, Inbox, Taken};
pub use envelope::Envelope;
pub use error::{MailboxError, PolicyError, RegistryError};
pub use mailbox::{Mailbox, MailboxPermit, MailboxReceiver, mailbox};
pub use policy::{CodecSet, Policy};
pub use registry::{ActorRef, ActorRegistry, ActorStats, DeadLetterCause, QuotaSlot};
pub use reply::{Outcome, RemoteRequester, ReplyTo, Requester};
pub use router::{
    DEAD_LETTERS_KEPT, DeadLetter, DeadLetterObserver, REFUSALS_IN_FULL_PER_SECOND, REMOTE_CREDIT_POLL,
    REMOTE_RESPONSE_GRACE_MS, RequestTracker, Router, RouterStats, Target,
};
pub use timer::{TimerDriver, spawn_timer_driver};
pub use tracker::PendingRequests;
