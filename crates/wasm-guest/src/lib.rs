//! The guest SDK of the airssys wasm host: a component is a plain Rust type.
//!
//! A component implements [`Component`] (one method per export of
//! `wit/world.wit`) and names itself once with [`export!`]. Inside a handler it
//! talks to other components through the host with [`send`], [`request`] and
//! [`cancel`], and reads and writes typed payloads with [`Message::decode`] and
//! the [`Payload`] constructors. No wit-bindgen, no multicodec bytes and no
//! `unsafe` appear in the component's own code.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use serde::{Deserialize, Serialize};
//! use wasm_guest::{Callback, Component, HandlerError, Message, Payload, Requests};
//!
//! #[derive(Deserialize)]
//! struct Order { sku: String, qty: u32 }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Reserve { sku: String, qty: u32 }
//!
//! #[derive(Default)]
//! struct Orders {
//!     /// Why each reservation request was sent: the customer's order number.
//!     reservations: Requests<u64>,
//!     next_order: u64,
//! }
//!
//! impl Component for Orders {
//!     fn handle_message(&mut self, _sender: &str, message: Message) -> Result<Payload, HandlerError> {
//!         let order: Order = message.decode()?; // any serde codec the sender chose
//!         self.next_order += 1;
//!         let reserve = Payload::json(&Reserve { sku: order.sku, qty: order.qty })?;
//!         self.reservations.request("inventory", &reserve, Duration::from_millis(500), self.next_order)?;
//!         Ok(Payload::json(&self.next_order)?)
//!     }
//!
//!     fn handle_callback(&mut self, callback: Callback) -> Result<(), HandlerError> {
//!         // Every outcome (response, timeout, cancel, error) clears the entry.
//!         let (order, outcome) = self.reservations.settle(callback);
//!         match outcome {
//!             Ok(reply) => println!("order {order:?} reserved: {}", reply.decode::<bool>()?),
//!             Err(why) => eprintln!("order {order:?} not reserved: {why}"),
//!         }
//!         Ok(())
//!     }
//! }
//!
//! wasm_guest::export!(Orders);
//! ```
//!
//! # Building
//!
//! A component crate is a `cdylib` built for `wasm32-wasip2`; the Rust target
//! links it as a component directly (`cargo build --release --target
//! wasm32-wasip2`, or `wasm-system build` on its manifest). On the host the
//! crate compiles too, so `cargo test` and clippy cover it; the host functions
//! are unreachable there (calling one panics).
//!
//! # Codecs
//!
//! Payloads carry a multicodec prefix (SPEC section 3). The table is
//! `wasm_core::Codec`, the same one the host checks, re-exported here as
//! [`Codec`]. Typed encoding and decoding uses serde for `json` (feature
//! `json`, serde_json), `cbor` (feature `cbor`, ciborium) and `messagepack`
//! (feature `messagepack`, rmp-serde); all three are default features. `raw`
//! bodies are bytes ([`Payload::raw`], [`Message::body`], [`Message::text`]).
//! Bodies of the table's other codecs (`protobuf`, `borsh`, `bincode`) are
//! encoded by the component with the library of its choice and wrapped with
//! [`Payload::encoded`]; [`Message::body`] hands them back.
//!
//! # State
//!
//! [`export!`] keeps one value of the component type per instance, created
//! with `Default` before the first call. The host never calls into an instance
//! while it is inside a handler, so handlers get `&mut self`. A panic in a
//! handler traps the instance: the host answers the pending request with
//! `target-failed` and its supervisor restarts the component with fresh state.
//!
//! # Batches
//!
//! [`export!`] exports world `batch-component`: when fire-and-forget messages
//! queue up, the host hands a run of them (up to 64) to one
//! `handle-messages` call, and the SDK takes each with the `inbox` import
//! and calls [`Component::handle_message`] for it, in mailbox order, then
//! reports its outcome as it takes the next. Nothing changes for the
//! component: each message gets the whole fuel and time budget, its own
//! handler error, span and counters; a panic fails only the message it
//! happened in, and the messages not yet taken go to the restarted
//! instance. Requests and callbacks are never batched. One call instead of
//! one per message is what makes a busy sink cheap (see the host's
//! `guest_to_guest` bench).
//!
//! # Output
//!
//! `println!` and `eprintln!` go to the host's log, one event per line, rate
//! limited per instance (see the host's ARCHITECTURE.md, "Guest output").

#![deny(unsafe_code)]

// The generated bindings name the runtime as `::wasm_guest::...`, which must
// resolve inside this crate too.
extern crate self as wasm_guest;

mod host;
mod requests;

#[doc(hidden)]
pub mod __private;

pub use host::{Callback, HandlerError, RequestId, cancel, request, request_with_default_timeout, send};
pub use requests::Requests;
/// The host's own types, shared so a guest and the host cannot disagree: the
/// multicodec table, the typed payloads, and the WIT errors one to one.
pub use wasm_core::{Codec, ComponentError, DecodeError, EncodeError, Message, MessagingError, Payload, RequestError};

/// A component: what the host calls when a message or a callback arrives.
///
/// The type must be `Default`: [`export!`] creates the instance's value with
/// it before the first call (and again after a crash and restart, since a
/// restart is a fresh instance).
pub trait Component: Default + 'static {
    /// Handles a message or a request from `sender` (a component id, or
    /// `"host"` for the embedding program).
    ///
    /// For a request, `Ok` is the response (its codec must be one the
    /// requester accepts) and `Err` reaches the requester as
    /// [`RequestError::HandlerError`]. For a fire-and-forget message both are
    /// discarded by the host; return [`Payload::empty`].
    ///
    /// # Errors
    /// Whatever the component decides; `?` works on [`DecodeError`],
    /// [`EncodeError`] and [`MessagingError`] (see [`HandlerError`] for the
    /// codes they get).
    fn handle_message(&mut self, sender: &str, message: Message) -> Result<Payload, HandlerError>;

    /// Handles the one outcome of a request this instance sent: the response,
    /// or why there is none (timeout, cancellation, the target's error or
    /// crash, a delivery failure). Exactly one callback arrives per accepted
    /// request. The default implementation ignores it.
    ///
    /// # Errors
    /// Whatever the component decides; the host logs and counts it.
    fn handle_callback(&mut self, callback: Callback) -> Result<(), HandlerError> {
        let _ = callback;
        Ok(())
    }
}

/// Exports a [`Component`] type as this crate's component.
///
/// Use it once per component crate, at the top level, with a type that
/// implements [`Component`]:
///
/// ```ignore
/// wasm_guest::export!(MyComponent);
/// ```
///
/// It expands to the canonical-ABI exports of `component-lifecycle` and
/// `batch-lifecycle` (world `batch-component`: the host hands queued
/// fire-and-forget messages over in batches, each still one
/// [`Component::handle_message`] call, in order, with the same outcome as
/// alone; the SDK's wit-bindgen bindings, so no wit-bindgen dependency is
/// needed in the component crate) and to the per-instance value of the type. The exported
/// functions are `unsafe extern "C"` items, so a crate that uses the macro
/// cannot be `#![forbid(unsafe_code)]` (`deny` is fine: the expansion allows
/// it locally).
#[macro_export]
macro_rules! export {
    ($component:ty) => {
        #[allow(unsafe_code, reason = "the canonical-ABI exports wit-bindgen generates")]
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: ::std::cell::RefCell<::std::option::Option<$component>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct Export;

            impl $crate::__private::Guest for Export {
                fn handle_message(
                    sender: ::std::string::String,
                    message: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::__private::ComponentError> {
                    $crate::__private::handle_message(&INSTANCE, sender, message)
                }

                fn handle_callback(
                    request_id: ::std::string::String,
                    outcome: ::std::result::Result<::std::vec::Vec<u8>, $crate::__private::WitRequestError>,
                ) -> ::std::result::Result<(), $crate::__private::ComponentError> {
                    $crate::__private::handle_callback(&INSTANCE, request_id, outcome)
                }
            }

            impl $crate::__private::BatchGuest for Export {
                fn handle_messages() {
                    $crate::__private::handle_messages(&INSTANCE)
                }
            }

    $crate::__private::bindings::__export_component!(Export with_types_in $crate::__private::bindings);
        };
    };
}
