//! Prometheus metrics. Each [`crate::Issuer`] owns its recorder (no global), so several
//! issuers — and a gateway — can live in one process, as they do in tests and the demo.

use std::sync::Arc;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// The issuer's metrics.
#[derive(Clone)]
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Metrics {
    /// A fresh recorder.
    pub(crate) fn new() -> Self {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(LATENCY_BUCKETS) {
            Ok(b) => b,
            // Only fails for an empty bucket list, which LATENCY_BUCKETS is not.
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        Metrics {
            recorder: Arc::new(recorder),
            handle,
        }
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// `sallyport_issuer_logins_total{outcome}`.
    pub(crate) fn login(&self, outcome: &'static str) {
        self.with(|| {
            metrics::counter!("sallyport_issuer_logins_total", "outcome" => outcome).increment(1)
        });
    }

    /// `sallyport_issuer_refreshes_total{outcome}`.
    pub(crate) fn refresh(&self, outcome: &'static str) {
        self.with(|| {
            metrics::counter!("sallyport_issuer_refreshes_total", "outcome" => outcome).increment(1)
        });
    }

    /// `sallyport_issuer_reuse_detections_total`.
    pub(crate) fn reuse_detected(&self) {
        self.with(|| metrics::counter!("sallyport_issuer_reuse_detections_total").increment(1));
    }

    /// `sallyport_issuer_client_auth_failures_total`: `invalid_client` answers.
    pub(crate) fn client_auth_failed(&self) {
        self.with(|| metrics::counter!("sallyport_issuer_client_auth_failures_total").increment(1));
    }

    /// `sallyport_issuer_revocations_total{reason}`.
    pub(crate) fn revocation(&self, reason: &'static str) {
        self.with(|| {
            metrics::counter!("sallyport_issuer_revocations_total", "reason" => reason).increment(1)
        });
    }

    /// `sallyport_issuer_authorizations_total{outcome}`: the code flow (codes issued,
    /// redeemed, refused, reused; login-form outcomes are under `logins_total`).
    pub(crate) fn authorization(&self, outcome: &'static str) {
        self.with(|| {
            metrics::counter!("sallyport_issuer_authorizations_total", "outcome" => outcome)
                .increment(1)
        });
    }

    /// `sallyport_issuer_backchannel_logouts_total{outcome}`: `delivered`, `failed`
    /// (gave up after the last attempt, or could not be prepared) or `dropped` (queue full).
    pub(crate) fn backchannel_logout(&self, outcome: &'static str) {
        self.with(|| {
            metrics::counter!("sallyport_issuer_backchannel_logouts_total", "outcome" => outcome)
                .increment(1)
        });
    }

    /// `sallyport_issuer_backchannel_logout_failed_attempts_total`: each failed POST,
    /// retried or not.
    pub(crate) fn backchannel_logout_attempt_failed(&self) {
        self.with(|| {
            metrics::counter!("sallyport_issuer_backchannel_logout_failed_attempts_total")
                .increment(1)
        });
    }

    /// `sallyport_issuer_request_duration_seconds{method,path,status}`.
    pub(crate) fn request(&self, method: String, path: String, status: u16, seconds: f64) {
        self.with(|| {
            metrics::histogram!(
                "sallyport_issuer_request_duration_seconds",
                "method" => method,
                "path" => path,
                "status" => status.to_string()
            )
            .record(seconds)
        });
    }

    /// `sallyport_issuer_config_reloads_total{result=ok|refused}` and
    /// `sallyport_issuer_config_last_reload_successful` (1 or 0).
    pub(crate) fn config_reload(&self, applied: bool) {
        let result = if applied { "ok" } else { "refused" };
        self.with(|| {
            metrics::counter!("sallyport_issuer_config_reloads_total", "result" => result)
                .increment(1);
            metrics::gauge!("sallyport_issuer_config_last_reload_successful").set(if applied {
                1.0
            } else {
                0.0
            });
        });
    }

    /// Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
