//! The NATS transport between airssys wasm hosts (SPEC section 5):
//! [`NatsTransport`] implements [`wasm_core::RemoteTransport`], so a
//! component id `name@node` of another node reaches that node's host, and
//! hands what other hosts send to this host's [`wasm_core::RemoteInbound`]
//! (its router).
//!
//! ```no_run
//! use std::sync::{Arc, Weak};
//! use wasm_cluster::{ClusterConfig, NatsTransport};
//! use wasm_core::{Codec, LocalComponent, RemoteInbound, RemoteTransport};
//!
//! # async fn run(router: Arc<dyn RemoteInbound>) -> Result<(), wasm_cluster::ClusterError> {
//! let transport = NatsTransport::connect(ClusterConfig::new("nats://127.0.0.1:4222", "node-1")).await?;
//! transport.start(Arc::downgrade(&router)).await?;
//! transport.announce(vec![LocalComponent { name: "echo".into(), accepts: vec![Codec::Json] }]);
//! // ... the router sends with `transport.send(envelope)` ...
//! transport.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Why async-nats
//! `async-nats` is the NATS maintainers' own Rust client (nats-io/nats.rs),
//! on tokio like the rest of the host; it reconnects by itself (here without
//! limit) and re-subscribes after a reconnect, speaks NATS headers, TLS
//! (rustls) and every NATS credential kind. The older synchronous `nats`
//! crate is deprecated in its favour.
//!
//! # Wire format
//! Subjects, with `<prefix>` `airssys` by default:
//!
//! | subject | what | who subscribes |
//! |---|---|---|
//! | `<prefix>.c.<node>.<name>` | an envelope for `name@node` | the host of `node` (`<prefix>.c.<node>.>`) |
//! | `<prefix>.r.<node>` | an outcome for a requester on `node` | the host of `node` |
//! | `<prefix>.dir` | a host's directory announcement (JSON) | every host |
//! | `<prefix>.dir.hello` | a starting host asks the others to announce (body: its node) | every host |
//! | `<prefix>.sync.<node>` | `start`'s round trip: a request nobody answers | nobody |
//!
//! Names and nodes may contain `.`, so subjects only route; the headers are
//! authoritative: a host drops (and counts in
//! [`ClusterStats::dropped_wrong_node`]) an envelope whose target
//! names another node. (An id with an empty dot-token,
//! such as `a..b`, has its dots written `_` in subjects, which NATS would
//! otherwise drop.)
//!
//! An envelope's NATS headers are two: `airssys-envelope`, its routing line
//! `<kind> <sender> <target> <session> <seq> [<correlation-id> <timeout-ms>]`
//! (space-separated: `message` or `request`; sender and target `name@node`;
//! the sending transport's session and the envelope's sequence number to
//! that node, decimal u64; for a request its correlation id (UUID v4) and
//! timeout in decimal ms; for example `message pinger@a echo@b 8417223301 42`),
//! and `traceparent` (W3C trace context); its body is the payload,
//! multicodec prefix included. One header rather than one per field: each
//! NATS header costs allocations on both sides.
//!
//! An outcome's headers are `airssys-requester`,
//! `airssys-correlation-id`, `airssys-outcome` (`response` or the
//! request-error kind: `timeout`, `cancelled`, `handler-error`,
//! `target-failed`, `delivery-failed`), `airssys-error-code` (decimal, for
//! `handler-error`), `airssys-error` (the error's message, with `%`,
//! control characters and leading or trailing spaces percent-encoded) and
//! `traceparent`; its body is the response bytes (empty for an error).
//! Acknowledgements go to the sender's outcome subject with
//! `airssys-kind: ack` and a JSON body
//! `{"node": "b", "session": 7, "from": 1, "upto": 10, "nacks": [[4, "queue full"]], "lost": [[6, 7]], "credits": {"echo": 100}}`
//! (the protocol is in the `flow` module's docs: cumulative acknowledgements,
//! credit-based flow control counted from `upto` as a TCP window, every
//! envelope ending acknowledged or undelivered with a
//! [`wasm_core::DeliveryLoss`]).
//!
//! A message with a missing or invalid header is dropped and counted in
//! [`ClusterStats::dropped_malformed`]; a missing or invalid `traceparent`
//! starts a new trace instead.
//!
//! An announcement is
//! `{"node": "b", "heartbeat_ms": 1000, "components": [{"name": "echo", "accepts": ["json"], "credit": 1024}]}`
//! (codec names as in manifests; an empty `accepts` means every codec;
//! `credit` is the credit each other host starts with for the component,
//! its free mailbox slots divided among the live hosts). It
//! replaces the node's entry for 3 of the announcer's heartbeats
//! (`heartbeat_ms`, else the receiver's own); an empty `components` list
//! removes it at once.
#![forbid(unsafe_code)]

mod config;
mod directory;
mod error;
mod flow;
mod stats;
mod transport;
mod wire;

pub use config::{
    ClusterAuth, ClusterConfig, DEFAULT_ACK_TIMEOUT, DEFAULT_CLIENT_CAPACITY, DEFAULT_HEARTBEAT,
    DEFAULT_OUTGOING_QUEUE, DEFAULT_PREFIX, TlsConfig,
};
pub use error::{BoxError, ClusterError};
pub use stats::ClusterStats;
pub use transport::NatsTransport;
