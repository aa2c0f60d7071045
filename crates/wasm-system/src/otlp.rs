//! The actors' handler spans exported as OpenTelemetry traces over OTLP/HTTP
//! (protobuf), through `tracing-opentelemetry` and `opentelemetry-otlp`.
//!
//! Each handled envelope is one span (see the actor's `handle` span: target
//! `wasm_system::actor`, level `debug`) with attributes `component`, `kind`,
//! `sender`, `correlation_id`, `outcome` and, for callbacks,
//! `request_outcome`. The exported span carries the host's own W3C ids: its
//! trace id and span id are the ones the handler's outgoing messages carry in
//! their `traceparent`, and its parent is the span that sent the envelope. So
//! a chain of requests across components, including a timeout or a
//! cancellation (whose callback stays in the requester's trace), is one trace
//! with the right parents.
//!
//! `tracing-opentelemetry` lets a span choose its parent but not its own ids,
//! and the SDK's tracer takes ids only from its `IdGenerator`; so
//! [`OtlpTracing`] wraps the SDK tracer: when a span has `trace_id`,
//! `span_id` (and `parent_span_id`) fields, it hands exactly those ids to the
//! id generator for the one build call (a thread-local, set and cleared
//! around it) and gives the span a remote parent made of them.
//!
//! Export runs on the SDK's batch processor thread with a blocking HTTP
//! client: the message path only queues finished spans (at most 2,048; more
//! are dropped, as the SDK documents), and an unreachable collector costs
//! retries on that thread, never a stalled actor.

use std::cell::Cell;
use std::time::Duration;

use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target whose spans are exported: the actors' handler spans.
pub const SPAN_TARGET: &str = "wasm_system::actor";

/// How long one export request may take before the batch processor gives
/// up on it (and how long [`OtlpTracing::shutdown`] waits at most per try).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the OTLP span exporter: {0}")]
pub struct OtlpError(#[from] opentelemetry_otlp::ExporterBuildError);

/// A tracer provider exporting to one OTLP/HTTP endpoint; give its
/// [`OtlpTracing::layer`] to a `tracing_subscriber` registry. Dropping it
/// (or [`OtlpTracing::shutdown`]) flushes the spans still queued.
#[derive(Debug)]
pub struct OtlpTracing {
    provider: SdkTracerProvider,
}

impl OtlpTracing {
    /// An exporter to `endpoint`, the full traces URL (for example
    /// `http://127.0.0.1:4318/v1/traces`). With `None` the standard
    /// variables decide: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended, or
    /// `http://localhost:4318/v1/traces`. The service name is `service`
    /// (resource attribute `service.name`).
    ///
    /// # Errors
    /// [`OtlpError`] when the exporter cannot be built (for example an
    /// invalid endpoint URL).
    pub fn new(endpoint: Option<&str>, service: &str) -> Result<Self, OtlpError> {
        let mut exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT);
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(endpoint);
        }
        let exporter = exporter.build()?;
        let provider = SdkTracerProvider::builder()
            .with_id_generator(HostIds::default())
            .with_resource(Resource::builder().with_service_name(service.to_owned()).build())
            .with_batch_exporter(exporter)
            .build();
        Ok(Self { provider })
    }

    /// The layer that exports the handler spans (and only them: a per-layer
    /// filter on [`SPAN_TARGET`] at `debug`, so other layers keep their own
    /// filters and the spans cost nothing when no such layer is installed).
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(HostIdTracer(self.provider.tracer("wasm-system")))
            .with_level(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(Targets::new().with_target(SPAN_TARGET, tracing::Level::DEBUG))
    }

    /// Exports every span queued so far and waits for it.
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "flushing OTLP spans");
        }
    }

    /// Flushes and stops the exporter.
    pub fn shutdown(self) {
        // Drop does it.
    }
}

impl Drop for OtlpTracing {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "shutting down the OTLP exporter");
        }
    }
}

thread_local! {
    /// The ids the next span built on this thread must have.
    static FORCED: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Random ids, except during a [`HostIdTracer`] build that sets them.
#[derive(Debug, Default)]
struct HostIds(RandomIdGenerator);

impl IdGenerator for HostIds {
    fn new_trace_id(&self) -> TraceId {
        FORCED.with(Cell::get).map_or_else(|| self.0.new_trace_id(), |(trace, _)| trace)
    }

    fn new_span_id(&self) -> SpanId {
        FORCED.with(Cell::get).map_or_else(|| self.0.new_span_id(), |(_, span)| span)
    }
}

/// The SDK tracer, building spans that have host ids (`trace_id`,
/// `span_id`, optional `parent_span_id` fields, hex) with exactly those.
#[derive(Clone, Debug)]
struct HostIdTracer(SdkTracer);

impl Tracer for HostIdTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(&self, mut builder: SpanBuilder, parent: &Context) -> Self::Span {
        let Some((trace, span, parent_span)) = builder.attributes.as_mut().and_then(take_host_ids) else {
            return self.0.build_with_context(builder, parent);
        };
        let parent = match parent_span {
            // Sampled: the default sampler follows a remote parent's flag.
            Some(parent_span) => Context::new().with_remote_span_context(SpanContext::new(
                trace,
                parent_span,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        FORCED.with(|ids| ids.set(Some((trace, span))));
        let built = self.0.build_with_context(builder, &parent);
        FORCED.with(|ids| ids.set(None));
        built
    }
}

/// Removes the id fields from `attributes` and parses them.
fn take_host_ids(attributes: &mut Vec<KeyValue>) -> Option<(TraceId, SpanId, Option<SpanId>)> {
    let mut take = |key: &str| {
        let at = attributes.iter().position(|kv| kv.key.as_str() == key)?;
        match attributes.remove(at).value {
            Value::String(text) => Some(text.as_str().to_owned()),
            other => Some(other.as_str().into_owned()),
        }
    };
    let (trace, span, parent) = (take("trace_id"), take("span_id"), take("parent_span_id"));
    let trace = TraceId::from_hex(&trace?).ok()?;
    let span = SpanId::from_hex(&span?).ok()?;
    let parent = parent.and_then(|p| SpanId::from_hex(&p).ok()).filter(|p| *p != SpanId::INVALID);
    Some((trace, span, parent))
}
