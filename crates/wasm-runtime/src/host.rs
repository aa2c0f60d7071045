//! The host side of `airssys:wasm/host-services`: each call asks the injected
//! [`MessageRouter`] on behalf of the instance's own id (a guest cannot
//! forge its sender). And of `airssys:wasm/inbox`: during a batch
//! (`handle-messages`), `next-message` asks the [`MessageSource`] the
//! embedder installed for the call.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use wasm_core::{ComponentError, ComponentId, MessageRouter, MessagingError, Origin, TraceContext};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, ResourceTable, WasmList, WasmStr};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::airssys::wasm::{inbox, types};
use crate::limits::InstanceLimiter;

/// Where a batch's messages come from: the embedder's side of
/// `airssys:wasm/inbox`, installed in an instance for one
/// [`crate::ComponentInstance::handle_messages`] call.
///
/// The guest calls `next-message` once per message and once more to learn
/// that the batch is over; each call arrives here as [`MessageSource::next`],
/// synchronously, on the thread that drives the guest call.
pub trait MessageSource: Any + Send {
    /// Settles the message handed out last with `previous` (`None`: the
    /// first call of a batch, or the guest did not say), then hands out the
    /// next message of the batch, or `None` to end it. After `None` the
    /// runtime answers the guest's further calls with `none` itself, without
    /// asking the source again, until the next batch.
    ///
    /// A message whose sender is the one of the message handed out just
    /// before it may say so (`InboundMessage::sender` `None`) instead of
    /// naming it again: the guest gets `none` and keeps the id it has. The
    /// first message of a batch must name its sender; a `None` there fails
    /// the call as a trap would (a host bug, reported as
    /// [`crate::GuestFailure::Trap`]).
    ///
    /// # Panics
    /// A panic here unwinds out of the guest call and resumes in the
    /// caller of `handle_messages`.
    fn next(&mut self, previous: Option<Result<(), ComponentError>>) -> Option<InboundMessage>;
}

/// One message handed to a batch: what `handle-message` would receive, and
/// the trace context that sends made while handling it carry as their parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// Who sent it, set by the host (a component id, or `host`); `None`
    /// when it is the sender of the message the same batch handed out just
    /// before it (WIT `inbound-message`: the guest keeps the id it was
    /// given). The first message of a batch must name its sender: the
    /// runtime refuses a `None` there as a host bug (the call fails; see
    /// [`MessageSource::next`]).
    pub sender: Option<String>,
    /// Its multicodec-prefixed payload.
    pub message: Vec<u8>,
    /// The handler's trace context for this message (`None`: no parent for
    /// the sends it makes).
    pub trace: Option<TraceContext>,
}

/// What an instance's store keeps for batched delivery.
pub(crate) struct BatchState {
    /// The source of the batch under way; `None` outside `handle-messages`
    /// (then `next-message` answers `none`).
    pub(crate) source: Option<Box<dyn MessageSource>>,
    /// Messages handed out over the instance's life: the call's time budget
    /// starts again whenever it moves (see `engine::within_each`).
    pub(crate) taken: Arc<AtomicU32>,
    /// The fuel each message gets when it is taken.
    pub(crate) fuel_per_message: u64,
    /// The source said `None`: the batch is over, and later calls in the
    /// same `handle-messages` get `none` (so a guest that keeps asking
    /// cannot take messages that arrive after the end).
    pub(crate) ended: bool,
    /// A sender was handed to the guest in this `handle-messages` call, so
    /// a message whose sender is `None` (the same as before) can follow.
    pub(crate) named: bool,
}

/// What a [`wasmtime::Store`] holds for one instance.
pub(crate) struct HostState {
    pub(crate) id: ComponentId,
    pub(crate) router: Arc<dyn MessageRouter>,
    /// Trace context of the message being handled, set around each call.
    pub(crate) trace: Option<TraceContext>,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: InstanceLimiter,
    pub(crate) batch: BatchState,
}

impl HostState {
    fn origin(&self) -> Origin<'_> {
        Origin { sender: &self.id, trace: self.trace.as_ref() }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for HostState {}

/// Links `airssys:wasm/host-services` by hand rather than by the generated
/// trait: the target id (and a request id) is read in place from the
/// guest's memory (`WasmStr`), not copied into a `String` first, which
/// saves an allocation per send. The payload is copied once, into the
/// envelope. Invalid UTF-8 traps, as the generated lifting does.
pub(crate) fn add_host_services_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let mut services = linker.instance("airssys:wasm/host-services@0.1.0")?;
    services.func_wrap(
        "send-message",
        |store: StoreContextMut<'_, HostState>, (target, message): (WasmStr, WasmList<u8>)| {
            let target = target.to_str(&store)?;
            let message = message.as_le_slice(&store).to_vec();
            let state = store.data();
            Ok((state.router.send_message(state.origin(), &target, message).map_err(to_wit),))
        },
    )?;
    services.func_wrap(
        "send-request",
        |store: StoreContextMut<'_, HostState>, (target, request, timeout_ms): (WasmStr, WasmList<u8>, u64)| {
            let target = target.to_str(&store)?;
            let request = request.as_le_slice(&store).to_vec();
            let state = store.data();
            let sent = state.router.send_request(state.origin(), &target, request, timeout_ms);
            Ok((sent.map(|id| id.as_str().to_owned()).map_err(to_wit),))
        },
    )?;
    services.func_wrap("cancel-request", |store: StoreContextMut<'_, HostState>, (request_id,): (WasmStr,)| {
        let request_id = request_id.to_str(&store)?;
        let state = store.data();
        Ok((state.router.cancel_request(state.origin(), &request_id).map_err(to_wit),))
    })
}

/// Links `airssys:wasm/inbox`'s `next-message`. By hand rather than by the
/// generated trait, because taking a message re-arms the store's fuel,
/// which a `Host` method (given only the store's data) cannot reach.
pub(crate) fn add_inbox_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type Previous = Option<Result<(), types::ComponentError>>;
    linker.instance("airssys:wasm/inbox@0.1.0")?.func_wrap(
        "next-message",
        |mut store: StoreContextMut<'_, HostState>, (previous,): (Previous,)| {
            let state = store.data_mut();
            let Some(source) = state.batch.source.as_mut().filter(|_| !state.batch.ended) else {
                return Ok((None,));
            };
            let previous =
                previous.map(|outcome| outcome.map_err(|e| ComponentError { code: e.code, message: e.message }));
            let Some(next) = source.next(previous) else {
                state.batch.ended = true;
                state.trace = None;
                return Ok((None,));
            };
            if next.sender.is_none() && !state.batch.named {
                // The guest would have no sender to keep.
                return Err(wasmtime::format_err!("host bug: the first message of a batch has no sender"));
            }
            state.batch.named = true;
            state.trace = next.trace;
            state.batch.taken.fetch_add(1, Ordering::Relaxed);
            let fuel = state.batch.fuel_per_message;
            store.set_fuel(fuel)?;
            Ok((Some(inbox::InboundMessage { sender: next.sender, message: next.message }),))
        },
    )
}

fn to_wit(error: MessagingError) -> types::MessagingError {
    use types::MessagingError as W;
    match error {
        MessagingError::TargetNotFound(s) => W::TargetNotFound(s),
        MessagingError::PermissionDenied(s) => W::PermissionDenied(s),
        MessagingError::RateLimited(s) => W::RateLimited(s),
        MessagingError::QueueFull => W::QueueFull,
        MessagingError::InvalidMessage(s) => W::InvalidMessage(s),
        MessagingError::TooManyPending(s) => W::TooManyPending(s),
        MessagingError::RequestNotFound(s) => W::RequestNotFound(s),
        MessagingError::NotOwner(s) => W::NotOwner(s),
        MessagingError::DeliveryFailed(s) => W::DeliveryFailed(s),
    }
}
