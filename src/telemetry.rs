//! Logging and traces.
//!
//! Logs: human-readable by default, one JSON object per line with `MORPHEUS_LOG_FORMAT=json`;
//! `RUST_LOG` filters them as usual (default `info`).
//!
//! Traces (off unless `MORPHEUS_OTLP_ENDPOINT` is set): OpenTelemetry over OTLP/HTTP
//! (protobuf). Exported are one span per request (`http_request` of
//! `morpheus_api::request_context`, kind server, with the caller's W3C `traceparent` as its
//! parent) and, as its children, the calls to the proxy-router (`upstream` of
//! `morpheus_api::instrumented_marketplace`, kind client, whose context goes upstream in
//! `traceparent`). Both are `trace`-level spans that only this exporter enables; log events
//! and the other spans stay out of the traces, and `RUST_LOG` does not filter them.

use std::time::Duration;

use anyhow::Context;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::configuration::LogFormat;

/// The spans that make a trace, by target and name (see the module's documentation).
const TRACED_SPANS: [(&str, &str); 2] = [
    ("morpheus_api::request_context", "http_request"),
    ("morpheus_api::instrumented_marketplace", "upstream"),
];

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`init`] set up; [`Telemetry::shutdown`] sends the spans still buffered.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered, then stops. Call it outside the async runtime.
    pub fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "exporting the last traces failed");
        }
    }
}

/// Installs the logger and, with an OTLP endpoint, the trace exporter. `to_stderr`: for the
/// commands whose output is their stdout (`config`, `admin`).
///
/// # Errors
/// When the exporter cannot be built (an unusable endpoint).
pub fn init(
    format: LogFormat,
    to_stderr: bool,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match (format, to_stderr) {
        (LogFormat::Pretty, false) => tracing_subscriber::fmt::layer().boxed(),
        (LogFormat::Pretty, true) => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        (LogFormat::Json, false) => tracing_subscriber::fmt::layer().json().boxed(),
        (LogFormat::Json, true) => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);
    let traces = match otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(endpoint)?),
        None => None,
    };
    let traced = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("morpheus-gateway"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(|meta| {
                meta.is_span() && TRACED_SPANS.contains(&(meta.target(), meta.name()))
            }))
    });
    // `try_init`: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = Registry::default().with(logs).with(traced).try_init();
    Ok(Telemetry { traces })
}

/// The exporter: batches spans and posts them, from a thread of its own, to
/// `<endpoint>/v1/traces`.
fn tracer_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    // reqwest's rustls has no crypto provider of its own; an error means one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .context("building the OTLP exporter's HTTP client")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .context("building the OTLP trace exporter (MORPHEUS_OTLP_ENDPOINT)")?;
    let resource = Resource::builder()
        .with_service_name("morpheus-gateway")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    // The caller's sampling decision (the `traceparent` flag) is kept; new traces are all
    // sampled.
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(provider)
}

/// The collector's address as `OTEL_EXPORTER_OTLP_ENDPOINT` gives it (`http://host:4318`),
/// or the whole traces URL.
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            super::traces_url("http://otel:4318/"),
            "http://otel:4318/v1/traces"
        );
        assert_eq!(
            super::traces_url("http://otel:4318/v1/traces"),
            "http://otel:4318/v1/traces"
        );
    }
}
