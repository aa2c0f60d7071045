//! Core contracts of the airssys wasm host: the vocabulary every other crate
//! speaks, with no runtime attached (no tokio, no wasmtime).
//!
//! - [`ComponentId`]: validated names, `name` or `name@node`.
//! - [`CorrelationId`]: UUID v4 request ids, keyed by [`CorrelationKey`] in maps.
//! - [`MessagePayload`] and [`Codec`]: multicodec-prefixed payloads;
//!   [`Payload`] and [`Message`]: the same, typed with serde (features
//!   `json`, `cbor`, `messagepack`), for the host and the guest SDK.
//! - [`MessagingError`], [`RequestError`], [`ComponentError`]: the WIT error
//!   variants, one to one.
//! - [`MessageRouter`] (host functions call it) and [`CorrelationTracker`]
//!   (the router keeps requests in it): the seams between layers.
//! - [`Capabilities`] and the manifest types.
//!
//! ```
//! use wasm_core::{Codec, ComponentId, CorrelationId, MessagePayload};
//!
//! let target = ComponentId::parse("echo").unwrap();
//! let payload = MessagePayload::encode(Codec::Raw, b"ping");
//! let id = CorrelationId::generate();
//! assert_eq!(payload.as_bytes(), b"\x55ping");
//! assert_eq!(target.as_str(), "echo");
//! assert_eq!(CorrelationId::parse(id.as_str()).unwrap(), id);
//! ```
#![forbid(unsafe_code)]

mod capability;
mod correlation;
mod error;
mod id;
mod manifest;
mod payload;
mod remote;
mod trace;
mod traits;
mod typed;

pub use capability::Capabilities;
pub use correlation::{CorrelationId, CorrelationKey};
pub use error::{
    CapabilityError, ComponentError, CorrelationIdError, IdError, MessagingError, PayloadError, RequestError, SendError,
};
pub use id::{ComponentId, HOST_ID, MAX_COMPONENT_ID_BYTES};
pub use manifest::{
    AppManifest, AppSection, CapabilitySection, ClusterSection, CodecSection, ComponentManifest, ComponentSection,
    DEFAULT_FUEL_PER_CALL, DEFAULT_MAILBOX_BYTES, DEFAULT_MAILBOX_CAPACITY, DEFAULT_MAX_INSTANCES,
    DEFAULT_MAX_MEMORIES, DEFAULT_MAX_PENDING, DEFAULT_MAX_TABLES, DEFAULT_MAX_TIMEOUT_MS, DEFAULT_MEMORY_BYTES,
    DEFAULT_TABLE_ELEMENTS, DEFAULT_TIME_PER_CALL_MS, DEFAULT_TIMEOUT_MS, DirGrant, Injection, Limits, MailboxSection,
    PlacementSection, RateSection, RequestsSection, RestartSection, SocketGrant, WasiSection, timeout_ms,
};
pub use payload::{Codec, DEFAULT_MAX_MESSAGE_BYTES, MessagePayload, decode_prefix};
pub use remote::{
    DeliveryLoss, LocalComponent, RemoteEnvelope, RemoteInbound, RemoteKind, RemoteNodeStats, RemoteOutcome,
    RemoteTransport, RemoteUndelivered,
};
pub use trace::TraceContext;
pub use traits::{Clock, CorrelationTracker, MessageRouter, Origin, PendingRequest, RequestOwner, TrackerStats};
pub use typed::{DecodeError, EncodeError, Message, Payload};
