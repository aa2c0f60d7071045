//! The composition root of the airssys wasm host: it wires the messaging
//! layer (router, tracker, mailboxes) to the runtime (engine, instances),
//! runs one actor per component with supervision, reads manifests, writes the
//! audit log, and provides the `wasm-system` CLI.
//!
//! ```no_run
//! use std::time::Duration;
//! use wasm_core::{Codec, MessagePayload};
//! use wasm_system::{System, load_app};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let app = load_app("examples/request-reply/app.toml".as_ref())?;
//! let mut builder = System::builder();
//! for component in &app.components {
//!     builder = builder.loaded(component);
//! }
//! let system = builder.start().await?;
//! system.try_send("client", MessagePayload::encode(Codec::Raw, b"go").into_bytes())?;
//! system.wait_quiescent(Duration::from_secs(5)).await;
//! let report = system.shutdown(Duration::from_secs(1)).await;
//! println!("{:?}", report.stats.requests);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod actor;
mod audit_log;
mod batch;
mod error;
mod events;
mod guest_build;
mod manifest;
mod shards;
mod stop;
mod supervisor;
mod system;

pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;

pub use audit_log::{AUDIT_QUEUE_RECORDS, AuditLog, to_json};
pub use error::{ManifestError, SystemError};
pub use events::SystemEvent;
pub use guest_build::{GUEST_TARGET, GuestBuildError, build_guest, ensure_guest_target};
pub use manifest::{LoadedApp, LoadedComponent, injection_payload, load_app, load_component};
pub use system::{
    ComponentRef, ComponentSource, ComponentStats, HostHandle, HostRequest, ShutdownReport, System, SystemBuilder,
};
// The types this crate's public signatures use, so an embedder depends on
// wasm-system alone.
pub use wasm_core::{
    Codec, ComponentError, ComponentId, ComponentManifest, CorrelationId, DecodeError, EncodeError, Limits, Message,
    MessagePayload, MessageRouter, MessagingError, Origin, Payload, RequestError, SendError, TraceContext,
    TrackerStats,
};
pub use wasm_messaging::{
    ActorStats, AuditEvent, AuditRecord, AuditSink, DeadLetter, DeadLetterCause, NoAudit, REFUSALS_IN_FULL_PER_SECOND,
    RegistryError, RouterStats,
};
pub use wasm_runtime::{CompiledComponent, EngineConfig, RuntimeError, WasmEngine};
