//! The host side of `airssys:wasm/host-services`: each call asks the injected
//! [`MessageRouter`] on behalf of the instance's own id (a guest cannot
//! forge its sender).

use std::sync::Arc;

use wasm_core::{ComponentId, MessageRouter, MessagingError, Origin, TraceContext};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::airssys::wasm::{host_services, types};
use crate::limits::InstanceLimiter;

/// What a [`wasmtime::Store`] holds for one instance.
pub(crate) struct HostState {
    pub(crate) id: ComponentId,
    pub(crate) router: Arc<dyn MessageRouter>,
    /// Trace context of the message being handled, set around each call.
    pub(crate) trace: Option<TraceContext>,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: InstanceLimiter,
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

impl host_services::Host for HostState {
    fn send_message(&mut self, target: String, message: Vec<u8>) -> Result<(), types::MessagingError> {
        self.router.send_message(self.origin(), &target, message).map_err(to_wit)
    }

    fn send_request(
        &mut self,
        target: String,
        request: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<String, types::MessagingError> {
        self.router
            .send_request(self.origin(), &target, request, timeout_ms)
            .map(|id| id.as_str().to_owned())
            .map_err(to_wit)
    }

    fn cancel_request(&mut self, request_id: String) -> Result<(), types::MessagingError> {
        self.router.cancel_request(self.origin(), &request_id).map_err(to_wit)
    }
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
