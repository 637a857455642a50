//! Prometheus metrics.
//!
//! The recorder is owned by the gateway instead of being installed globally: several
//! gateways (and an issuer) can then live in one process — as they do in tests and in
//! `sallyport demo` — each with its own `/metrics`.

use std::sync::Arc;

use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

static META: Metadata<'static> = Metadata::new("sallyport_gateway", Level::INFO, None);

/// Cheap to clone; counters are shared.
#[derive(Clone)]
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    joined_local: Counter,
    joined_replica: Counter,
    lock_wait: Histogram,
    /// Pre-registered: the per-request counter must not build a key on every request.
    proxied_ok: Counter,
}

impl Metrics {
    /// A fresh, empty registry.
    pub(crate) fn new() -> Self {
        let recorder = Arc::new(PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let joined = |via: &'static str| {
            recorder.register_counter(
                &Key::from_parts(
                    "sallyport_gateway_renewals_joined_total",
                    vec![Label::new("via", via)],
                ),
                &META,
            )
        };
        let joined_local = joined("local");
        let joined_replica = joined("replica");
        let lock_wait = recorder.register_histogram(
            &Key::from_name("sallyport_gateway_renewal_lock_wait_seconds"),
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
            joined_local,
            joined_replica,
            lock_wait,
            proxied_ok,
        }
    }

    fn counter(&self, name: &'static str, label: &'static str, value: &'static str) {
        let key = Key::from_parts(name, vec![Label::new(label, value)]);
        self.recorder.register_counter(&key, &META).increment(1);
    }

    /// A renewal reached the backend, with its outcome (`ok`, `refused`, `unavailable`).
    pub(crate) fn renewal(&self, outcome: &'static str) {
        self.counter("sallyport_gateway_renewals_total", "outcome", outcome);
    }

    /// A request used an in-flight or just-finished renewal instead of calling the
    /// backend: `local` (this replica's) or `replica` (another replica's, through Redis).
    pub(crate) fn renewal_joined(&self, via: &'static str) {
        match via {
            "replica" => self.joined_replica.increment(1),
            _ => self.joined_local.increment(1),
        }
    }

    /// Cross-replica coordination was skipped and this replica renewed on its own
    /// (`redis_unavailable`), or gave up waiting for another replica (`wait_timeout`).
    pub(crate) fn renewal_fallback(&self, reason: &'static str) {
        self.counter(
            "sallyport_gateway_renewal_fallbacks_total",
            "reason",
            reason,
        );
    }

    /// Time a replica waited for another replica's renewal (lock held elsewhere).
    pub(crate) fn renewal_lock_wait(&self, seconds: f64) {
        self.lock_wait.record(seconds);
    }

    /// A login attempt with its outcome.
    pub(crate) fn login(&self, outcome: &'static str) {
        self.counter("sallyport_gateway_logins_total", "outcome", outcome);
    }

    /// A logout; `revoked` says whether the backend confirmed the revocation.
    pub(crate) fn logout(&self, outcome: &'static str) {
        self.counter("sallyport_gateway_logouts_total", "revocation", outcome);
    }

    /// The shared store (Redis) failed a `read` or `write`.
    pub(crate) fn store_error(&self, op: &'static str) {
        self.counter("sallyport_gateway_store_errors_total", "op", op);
    }

    /// A request answered by the middleware without reaching upstream, by reason.
    pub(crate) fn rejected(&self, reason: &'static str) {
        self.counter("sallyport_gateway_rejected_total", "reason", reason);
    }

    /// A proxied request, by coarse result (`ok`, `bad_gateway`, `timeout`, `replayed`).
    pub(crate) fn proxied(&self, result: &'static str) {
        if result == "ok" {
            self.proxied_ok.increment(1);
            return;
        }
        self.counter("sallyport_gateway_proxied_total", "result", result);
    }

    /// A configuration reload: `ok` (applied) or `refused` (invalid: the previous
    /// configuration keeps serving), with [`Self::config_state`].
    pub(crate) fn config_reload(&self, applied: bool, now_ms: u64) {
        self.counter(
            "sallyport_gateway_config_reloads_total",
            "result",
            if applied { "ok" } else { "refused" },
        );
        self.config_state(applied, now_ms);
    }

    /// `sallyport_gateway_config_last_reload_successful` (1 or 0: the gauge to alert on)
    /// and, when the configuration was applied (at start-up too), the time it was.
    pub(crate) fn config_state(&self, applied: bool, now_ms: u64) {
        let gauge = |name: &'static str| self.recorder.register_gauge(&Key::from_name(name), &META);
        gauge("sallyport_gateway_config_last_reload_successful").set(if applied {
            1.0
        } else {
            0.0
        });
        if applied {
            gauge("sallyport_gateway_config_last_reload_success_timestamp_seconds")
                .set(now_ms as f64 / 1000.0);
        }
    }

    /// Prometheus text format.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
