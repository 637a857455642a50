//! Renewal: single-flight, the grace map of just-rotated refresh tokens, and the policy
//! that turns a backend answer into what happens to the session.
//!
//! # The rule
//!
//! A refresh token is redeemed **at most once per session, and only for a response that
//! will carry the result**:
//! - only a request that is going to be answered with the session (not one that will be
//!   refused for CSRF, a bad path, a refused method or upgrade) may start a renewal —
//!   callers decide refusals first ([`crate::Inner::has_session`] is the read-only check);
//! - while a renewal is in flight, every other request of that session joins it;
//! - after it finished, the *old* refresh token keeps mapping to the result for
//!   `session.renew_grace_secs` (the grace map), so a request that arrives late with the
//!   old cookie — or whose response was lost — gets the new tokens instead of presenting a
//!   used refresh token again, which a rotating backend punishes by revoking the session;
//! - the backend call runs in its own task that writes the grace map itself, so a client
//!   that disconnects mid-renewal cancels nothing and loses nothing;
//! - only a *refusal* (`invalid_grant`) ends a session; a slow or failing backend keeps
//!   it (the old token is used while it lives, then 503 with `Retry-After`).
//!
//! Failures are not remembered: the next request retries. Maps are keyed by the SHA-256
//! of the refresh token, never the token itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, BackendError};
use crate::metrics::Metrics;
use crate::state::{SessionData, Tokens};

/// A renewal's outcome, shared by every request that joined it.
pub(crate) type Outcome = Result<Arc<Tokens>, Arc<BackendError>>;

/// The digest every renewal map is keyed by.
pub(crate) type TokenKey = [u8; 32];

/// SHA-256 of a refresh token.
pub(crate) fn token_key(refresh_token: &str) -> TokenKey {
    Sha256::digest(refresh_token.as_bytes()).into()
}

/// Renewal with single-flight and a grace map of just-rotated refresh tokens.
#[derive(Clone)]
pub(crate) struct Renewer {
    inner: Arc<RenewerInner>,
}

struct RenewerInner {
    backend: Backend,
    /// Old refresh token → its renewal's result, for the grace window.
    grace: moka::sync::Cache<TokenKey, Arc<Tokens>>,
    /// Renewals in flight. Hand-written rather than moka's `try_get_with`: there, the
    /// init future belongs to the first caller, and when that caller goes away (client
    /// disconnect) another waiter starts a *second* backend call with the same token.
    /// Here the call is a spawned task that owns its entry and removes it when done.
    in_flight: Mutex<HashMap<TokenKey, Shared<BoxFuture<'static, Outcome>>>>,
    metrics: Metrics,
}

/// Removes the in-flight entry however the task ends (also on panic).
struct InFlightGuard {
    renewer: Arc<RenewerInner>,
    key: TokenKey,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.renewer.in_flight.lock() {
            map.remove(&self.key);
        }
    }
}

impl Renewer {
    /// `grace`: how long a redeemed refresh token maps to its result.
    pub(crate) fn new(backend: Backend, grace: std::time::Duration, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(RenewerInner {
                backend,
                grace: moka::sync::Cache::builder()
                    .max_capacity(1_000_000)
                    .time_to_live(grace)
                    .build(),
                in_flight: Mutex::new(HashMap::new()),
                metrics,
            }),
        }
    }

    /// Renews the session holding `refresh_token`, sharing the call with every concurrent
    /// (or recent) renewal of the same token.
    pub(crate) async fn renew(&self, refresh_token: &str, now_ms: u64) -> Outcome {
        let key = token_key(refresh_token);
        let inner = &self.inner;
        if let Some(t) = inner.grace.get(&key) {
            inner.metrics.renewal_joined("local");
            return Ok(t);
        }
        let shared = {
            let Ok(mut map) = inner.in_flight.lock() else {
                return Err(Arc::new(BackendError::Unavailable(
                    "renewal state poisoned".into(),
                )));
            };
            if let Some(f) = map.get(&key) {
                inner.metrics.renewal_joined("local");
                f.clone()
            } else if let Some(t) = inner.grace.get(&key) {
                // Finished between the first look and taking the lock.
                inner.metrics.renewal_joined("local");
                return Ok(t);
            } else {
                let guard = InFlightGuard {
                    renewer: inner.clone(),
                    key,
                };
                let task_inner = inner.clone();
                let rt = refresh_token.to_string();
                // The task, not the caller, owns the call: see the module docs.
                let task = tokio::spawn(async move {
                    let outcome = task_inner.call_backend(&rt, now_ms).await;
                    if let Ok(t) = &outcome {
                        task_inner.grace.insert(key, t.clone());
                    }
                    drop(guard);
                    outcome
                });
                let f = async move {
                    task.await.unwrap_or_else(|e| {
                        Err(Arc::new(BackendError::Unavailable(format!(
                            "renewal task failed: {e}"
                        ))))
                    })
                }
                .boxed()
                .shared();
                map.insert(key, f.clone());
                f
            }
        };
        shared.await
    }
}

impl RenewerInner {
    /// One backend call, counted by outcome.
    async fn call_backend(&self, refresh_token: &str, now_ms: u64) -> Outcome {
        let outcome = self.backend.refresh(refresh_token, now_ms / 1000).await;
        self.metrics.renewal(match &outcome {
            Ok(_) => "ok",
            Err(BackendError::Refused(_)) => "refused",
            Err(_) => "unavailable",
        });
        outcome.map(Arc::new).map_err(Arc::new)
    }
}

/// Retry-After for "backend unavailable" when the backend gave none.
pub const DEFAULT_RETRY_AFTER: u64 = 5;

/// Why a renewal did not produce tokens.
pub(crate) enum RenewFailure {
    /// `invalid_grant`: the session is over.
    Refused,
    /// Transient; retry after this many seconds.
    Unavailable(u64),
}

impl crate::Inner {
    /// Renews `data` in place through the single-flight renewer, and applies the policy:
    /// a refusal ends the session, anything else is a fault that keeps it.
    pub(crate) async fn renew(
        &self,
        data: &mut SessionData,
        now_s: u64,
    ) -> Result<(), RenewFailure> {
        let Some(rt) = data.refresh_token.clone() else {
            return Err(RenewFailure::Refused);
        };
        match self.renewer.renew(&rt, now_s.saturating_mul(1000)).await {
            Ok(tokens) => {
                data.apply(&tokens);
                Ok(())
            }
            Err(e) => match &*e {
                BackendError::Refused(code) => {
                    tracing::info!(%code, "backend refused the session's refresh token");
                    Err(RenewFailure::Refused)
                }
                BackendError::RateLimited(r) => {
                    Err(RenewFailure::Unavailable(r.unwrap_or(DEFAULT_RETRY_AFTER)))
                }
                BackendError::Unavailable(why) => {
                    tracing::warn!(%why, "renewal failed; session kept");
                    Err(RenewFailure::Unavailable(DEFAULT_RETRY_AFTER))
                }
                BackendError::InvalidCredentials => Err(RenewFailure::Refused),
            },
        }
    }
}
