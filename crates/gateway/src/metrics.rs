//! Prometheus metrics.
//!
//! The recorder is owned by the gateway instead of being installed globally: several
//! gateways (and an issuer) can then live in one process — as they do in tests and in
//! `sallyport demo` — each with its own `/metrics`.

use std::sync::Arc;

use metrics::{Counter, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

static META: Metadata<'static> = Metadata::new("sallyport_gateway", Level::INFO, None);

/// Cheap to clone; counters are shared.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    renew_shared: Counter,
    /// Pre-registered: the per-request counter must not build a key on every request.
    proxied_ok: Counter,
}

impl Metrics {
    /// A fresh, empty registry.
    pub fn new() -> Self {
        let recorder = Arc::new(PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let renew_shared = recorder.register_counter(
            &Key::from_name("sallyport_gateway_renewals_shared_total"),
            &META,
        );
        let proxied_ok = recorder.register_counter(
            &Key::from_parts(
                "sallyport_gateway_proxied_total",
                vec![Label::new("result", "ok")],
            ),
            &META,
        );
        Self {
            recorder,
            handle,
            renew_shared,
            proxied_ok,
        }
    }

    fn counter(&self, name: &'static str, label: &'static str, value: &'static str) {
        let key = Key::from_parts(name, vec![Label::new(label, value)]);
        self.recorder.register_counter(&key, &META).increment(1);
    }

    /// A renewal reached the backend, with its outcome (`ok`, `refused`, `unavailable`).
    pub fn renewal(&self, outcome: &'static str) {
        self.counter("sallyport_gateway_renewals_total", "outcome", outcome);
    }

    /// A request reused an in-flight or just-finished renewal.
    pub fn renewal_shared(&self) {
        self.renew_shared.increment(1);
    }

    /// A login attempt with its outcome.
    pub fn login(&self, outcome: &'static str) {
        self.counter("sallyport_gateway_logins_total", "outcome", outcome);
    }

    /// A logout; `revoked` says whether the backend confirmed the revocation.
    pub fn logout(&self, outcome: &'static str) {
        self.counter("sallyport_gateway_logouts_total", "revocation", outcome);
    }

    /// The shared store (Redis) failed a `read` or `write`.
    pub fn store_error(&self, op: &'static str) {
        self.counter("sallyport_gateway_store_errors_total", "op", op);
    }

    /// A request answered by the middleware without reaching upstream, by reason.
    pub fn rejected(&self, reason: &'static str) {
        self.counter("sallyport_gateway_rejected_total", "reason", reason);
    }

    /// A proxied request, by coarse result (`ok`, `bad_gateway`, `timeout`, `replayed`).
    pub fn proxied(&self, result: &'static str) {
        if result == "ok" {
            self.proxied_ok.increment(1);
            return;
        }
        self.counter("sallyport_gateway_proxied_total", "result", result);
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
