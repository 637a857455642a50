//! Logging and trace export for the long-running subcommands (`gateway`, `issuer`,
//! `demo`).
//!
//! Logs go to stderr, human-readable by default or one JSON object per line with
//! `--log-format json` (`SALLYPORT_LOG_FORMAT=json`); `RUST_LOG` filters them (default
//! `info`). Every line written while a request is handled carries its `request_id`
//! (a field of the enclosing `request` span; see `sallyport-observe`).
//!
//! Traces are exported with OpenTelemetry over OTLP/HTTP (protobuf) when
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is) or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (`/v1/traces` appended) is set; the other standard `OTEL_EXPORTER_OTLP_*` variables
//! (headers, timeout, compression) and `OTEL_SERVICE_NAME` apply. Spans are queued and
//! sent by a background thread in batches: a slow or absent collector costs dropped
//! spans, never a slower or failed request.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (fields, span fields such as `request_id`).
    Json,
}

/// Keeps the trace exporter alive; dropping it flushes the spans still queued.
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            // Bounded: a collector that is down must not hold up the exit.
            let _ = p.shutdown_with_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// Whether trace export is configured (one of the two standard endpoint variables).
fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Installs the global subscriber: the log format, `RUST_LOG`, and the OTLP exporter
/// when configured, naming the service `sallyport-<role>` (unless `OTEL_SERVICE_NAME`).
pub(crate) fn init(format: LogFormat, role: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journald gets plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let provider = if otlp_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| {
                anyhow::anyhow!("cannot set up trace export (OTEL_EXPORTER_OTLP_*): {e}")
            })?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(format!("sallyport-{role}"));
        }
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build(),
        )
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("sallyport"))
            // Only spans are exported; log events stay in the log.
            .with_location(false)
            // What the exporter does is not exported (its HTTP client's own events).
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                !m.target().starts_with("opentelemetry")
            }))
    });
    // Already set (a second call in one process): keep the first.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(Telemetry { provider })
}
