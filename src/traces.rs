//! Traces (`[telemetry] otlp_endpoint`): spans of a request, of the calls to
//! providers during it and of the call to the application, exported with
//! OTLP over HTTP (protobuf) in batches from a background thread; the W3C
//! `traceparent` of the application call goes upstream. Off by default, and
//! then free: every function here first checks one `OnceLock`.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanKind, TraceContextExt as _, TraceFlags, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, SpanId, TraceId};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};

struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

static TRACES: OnceLock<Traces> = OnceLock::new();

/// How often finished spans are sent.
pub const EXPORT_EVERY: Duration = Duration::from_millis(500);

/// Starts exporting to `endpoint` (OTLP/HTTP; a URL without a path gets
/// `/v1/traces`). Call once, outside any tokio runtime.
pub fn init(endpoint: &url::Url) -> Result<(), String> {
    let url = if endpoint.path() == "/" {
        format!("{}v1/traces", endpoint.as_str())
    } else {
        endpoint.to_string()
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(EXPORT_EVERY)
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("portcullis")
                .build(),
        )
        .build();
    let tracer = provider.tracer("portcullis");
    let _ = TRACES.set(Traces { provider, tracer });
    Ok(())
}

/// Sends what is left (at shutdown).
pub fn shutdown() {
    if let Some(t) = TRACES.get() {
        let _ = t.provider.shutdown();
    }
}

pub fn enabled() -> bool {
    TRACES.get().is_some()
}

/// A started span, as a context whose current span it is.
pub type SpanCx = Context;

/// The span of a request (kind server), child of the client's `traceparent`
/// when it sent a valid one. `None` when traces are off.
pub fn start_request(method: &str, path: &str, traceparent: Option<&[u8]>) -> Option<SpanCx> {
    let t = TRACES.get()?;
    let parent = traceparent
        .and_then(parse_traceparent)
        .map(|sc| Context::new().with_remote_span_context(sc))
        .unwrap_or_default();
    let span = t
        .tracer
        .span_builder(format!("{method} {path}"))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("url.path", path.to_owned()),
        ])
        .start_with_context(&t.tracer, &parent);
    Some(parent.with_span(span))
}

/// A child span of `parent` (or of the current context's span).
pub fn start_child(parent: Option<&Context>, name: &'static str, kind: SpanKind) -> Option<SpanCx> {
    let t = TRACES.get()?;
    let current;
    let parent = match parent {
        Some(p) => p,
        None => {
            current = Context::current();
            &current
        }
    };
    if !parent.has_active_span() {
        return None;
    }
    let span = t
        .tracer
        .span_builder(name)
        .with_kind(kind)
        .start_with_context(&t.tracer, parent);
    Some(parent.with_span(span))
}

/// Adds attributes to the span and ends it.
pub fn end(cx: &SpanCx, attributes: Vec<KeyValue>) {
    let span = cx.span();
    span.set_attributes(attributes);
    span.end();
}

/// The W3C `traceparent` of a span: `00-{trace id}-{span id}-{flags}`.
pub fn traceparent(cx: &SpanCx) -> String {
    let sc = cx.span().span_context().clone();
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

/// A W3C `traceparent` (version 00 only), or nothing.
pub fn parse_traceparent(v: &[u8]) -> Option<SpanContext> {
    let v = std::str::from_utf8(v).ok()?;
    let mut parts = v.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || version != "00"
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !(lower_hex(trace) && lower_hex(span) && lower_hex(flags)) {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    if trace == TraceId::INVALID || span == SpanId::INVALID {
        return None;
    }
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & 1);
    Some(SpanContext::new(
        trace,
        span,
        flags,
        true,
        TraceState::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing_is_strict() {
        let sc =
            parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            &b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"garbage",
        ] {
            assert!(
                parse_traceparent(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn off_means_no_spans() {
        if !enabled() {
            assert!(start_request("GET", "/", None).is_none());
            assert!(start_child(None, "x", SpanKind::Client).is_none());
        }
    }
}
