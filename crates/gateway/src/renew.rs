//! Single-flight renewal (PP-01, PP-02, PP-10, PP-17).
//!
//! One cache keyed by the refresh token being redeemed does both jobs docs/design.md asks for:
//! - while a renewal is in flight, every other request of that session waits on the same
//!   future (moka's `try_get_with` runs one init future per key);
//! - after it finished, the *old* refresh token keeps mapping to the result for
//!   `session.renew_grace_secs`, so a request that arrives late with the old cookie gets
//!   the new tokens instead of presenting a used refresh token again (which a rotating
//!   backend punishes by revoking the whole session).
//!
//! Failures are not cached: the next request retries. The backend call runs in its own
//! task, so a client that disconnects mid-renewal cannot cancel it — a cancelled call that
//! had already rotated the token at the backend would lose the only copy of the new one.

use std::sync::Arc;

use moka::future::Cache;

use crate::backend::{Backend, BackendError};
use crate::metrics::Metrics;
use crate::state::Tokens;

/// Renewal with single-flight and a grace map of just-rotated refresh tokens.
#[derive(Clone)]
pub struct Renewer {
    backend: Backend,
    cache: Cache<String, Arc<Tokens>>,
    metrics: Metrics,
}

impl Renewer {
    /// `grace`: how long a redeemed refresh token maps to its result.
    pub fn new(backend: Backend, grace: std::time::Duration, metrics: Metrics) -> Self {
        Self {
            backend,
            cache: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(grace)
                .build(),
            metrics,
        }
    }

    /// Renews the session holding `refresh_token`, sharing the call with every concurrent
    /// (or recent) renewal of the same token.
    pub async fn renew(
        &self,
        refresh_token: &str,
        now_s: u64,
    ) -> Result<Arc<Tokens>, Arc<BackendError>> {
        let backend = self.backend.clone();
        let metrics = self.metrics.clone();
        let key = refresh_token.to_string();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ran_inner = ran.clone();
        let result = self
            .cache
            .try_get_with(key.clone(), async move {
                ran_inner.store(true, std::sync::atomic::Ordering::Relaxed);
                let task = tokio::spawn(async move { backend.refresh(&key, now_s).await });
                let outcome = match task.await {
                    Ok(r) => r,
                    Err(e) => Err(BackendError::Unavailable(format!(
                        "renewal task failed: {e}"
                    ))),
                };
                metrics.renewal(match &outcome {
                    Ok(_) => "ok",
                    Err(BackendError::Refused(_)) => "refused",
                    Err(_) => "unavailable",
                });
                outcome.map(Arc::new)
            })
            .await;
        if !ran.load(std::sync::atomic::Ordering::Relaxed) {
            self.metrics.renewal_shared();
        }
        result
    }
}
