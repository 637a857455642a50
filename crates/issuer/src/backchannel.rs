//! OpenID Connect Back-Channel Logout 1.0, sender side: when a code-flow session ends
//! at the issuer, its client is told by a signed logout token POSTed to the
//! `backchannel_logout_uri` it registered.
//!
//! Delivery never delays the request that ended the session: tokens are signed at
//! once (cheap) and queued; one worker task takes them off a bounded queue and posts
//! them with at most `max_concurrent` requests in flight, each bounded by `timeout_ms`,
//! retried `max_attempts` times with exponential backoff (`retry_base_ms`, doubling).
//! A full queue drops the token. Every outcome is logged and counted in
//! `sallyport_issuer_backchannel_logouts_total{outcome}`. Retries send the same token
//! (same `jti`): a receiver that processed a delivery whose answer was lost sees a
//! replay of a logout it already did, which is harmless.
//!
//! The targets come from the operator's client registry (validated `https`, or `http`
//! on loopback), never from a request, so this is not an open relay. Redirects are
//! not followed and response bodies are not read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};

use crate::config::BackchannelLogoutConfig;
use crate::metrics::Metrics;

/// The `events` member of a logout token.
pub(crate) const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// One logout token for one client (no `Debug`: the token is a bearer credential for
/// ending a session at the client).
struct Delivery {
    client_id: String,
    uri: String,
    logout_token: String,
}

/// Queues and delivers logout tokens (see the module documentation). Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Notifier {
    tx: mpsc::Sender<Delivery>,
    pending: Arc<Pending>,
    metrics: Metrics,
}

/// Deliveries queued or in flight, so a short-lived process (the CLI's `session
/// revoke`) can wait for them before exiting.
#[derive(Debug, Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

impl Pending {
    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl Notifier {
    /// Starts the delivery worker on the current tokio runtime. It ends when the last
    /// `Notifier` is dropped.
    pub(crate) fn start(config: &BackchannelLogoutConfig, metrics: Metrics) -> Notifier {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let pending = Arc::new(Pending::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .build()
            // Only fails when the TLS backend cannot initialise; then every delivery
            // fails and is counted, rather than the issuer refusing to start.
            .unwrap_or_else(|err| {
                tracing::error!(%err, "back-channel logout: HTTP client unavailable");
                reqwest::Client::new()
            });
        let worker = Worker {
            http,
            config: config.clone(),
            pending: pending.clone(),
            metrics: metrics.clone(),
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        };
        tokio::spawn(worker.run(rx));
        Notifier {
            tx,
            pending,
            metrics,
        }
    }

    /// Queues a signed logout token for `uri`; never waits.
    pub(crate) fn send(&self, client_id: &str, uri: &str, logout_token: String) {
        self.pending.count.fetch_add(1, Ordering::AcqRel);
        let delivery = Delivery {
            client_id: client_id.to_owned(),
            uri: uri.to_owned(),
            logout_token,
        };
        if let Err(err) = self.tx.try_send(delivery) {
            self.pending.done();
            let full = matches!(err, mpsc::error::TrySendError::Full(_));
            tracing::warn!(
                client_id,
                queue_full = full,
                "back-channel logout dropped: delivery queue unavailable"
            );
            self.metrics.backchannel_logout("dropped");
        }
    }

    /// Waits until every queued delivery succeeded or gave up, at most `timeout`.
    /// True when nothing is left.
    pub(crate) async fn flush(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.pending.idle.notified();
                if self.pending.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

struct Worker {
    http: reqwest::Client,
    config: BackchannelLogoutConfig,
    pending: Arc<Pending>,
    metrics: Metrics,
    permits: Arc<Semaphore>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Delivery>) {
        let this = Arc::new(self);
        while let Some(delivery) = rx.recv().await {
            // Bounded concurrency: wait for a slot before taking the next token.
            let Ok(permit) = this.permits.clone().acquire_owned().await else {
                break;
            };
            let worker = this.clone();
            tokio::spawn(async move {
                worker.deliver(&delivery).await;
                worker.pending.done();
                drop(permit);
            });
        }
    }

    async fn deliver(&self, d: &Delivery) {
        let attempts = self.config.max_attempts.max(1);
        for attempt in 1..=attempts {
            let sent = self
                .http
                .post(&d.uri)
                .header(reqwest::header::CACHE_CONTROL, "no-store")
                .form(&[("logout_token", d.logout_token.as_str())])
                .send()
                .await;
            let failure = match sent {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(client_id = %d.client_id, attempt, "back-channel logout delivered");
                    self.metrics.backchannel_logout("delivered");
                    return;
                }
                Ok(resp) => format!("status {}", resp.status()),
                Err(err) if err.is_timeout() => "timed out".to_owned(),
                Err(err) => format!("{err}"),
            };
            self.metrics.backchannel_logout_attempt_failed();
            if attempt == attempts {
                tracing::warn!(client_id = %d.client_id, uri = %d.uri, attempt, %failure,
                    "back-channel logout failed; giving up");
                self.metrics.backchannel_logout("failed");
                return;
            }
            tracing::info!(client_id = %d.client_id, attempt, %failure, "back-channel logout failed; retrying");
            let backoff = self
                .config
                .retry_base_ms
                .saturating_mul(1u64 << (attempt - 1).min(16));
            tokio::time::sleep(Duration::from_millis(backoff)).await;
        }
    }
}
