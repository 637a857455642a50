//! Single-flight: one backend call per refresh token, the grace map of just-rotated
//! refresh tokens, and the same across replicas. The rule it implements is in
//! [`crate::renew`]; the policy applied to its outcome is [`crate::Inner::renew`].
//!
//! # How
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
//!   that disconnects mid-renewal cancels nothing and loses nothing; requests stop
//!   waiting for it after `backend.timeout_ms` (a fault: session kept), but the call is
//!   given [`call_bound`] to answer, so a slow backend's late rotation is kept too,
//!   instead of being thrown away and the old token presented again (a reuse);
//! - only a *refusal* (`invalid_grant`) ends a session; a slow or failing backend keeps
//!   it (the old token is used while it lives, then 503 with `Retry-After`).
//!
//! Failures are not remembered: the next request retries. Maps are keyed by the SHA-256
//! of the refresh token, never the token itself.
//!
//! # Across replicas (`store.redis_url`)
//!
//! The same rule holds for a set of replicas sharing one Redis. The task that renews on
//! a replica first looks for a result another replica left in Redis
//! (`<prefix>renew:<sha256 of the refresh token>`, sealed with the session secret, kept
//! for the grace window); if there is none it takes a short lock
//! (`<prefix>renew-lock:<sha256>`, `SET NX PX`) and only the holder calls the backend,
//! stores the sealed result (tokens, or the refusal) and releases the lock. The others
//! poll for the result every [`POLL`]; a lock whose holder died expires after
//! the call bound `+ 2 × store.timeout_ms + 500 ms` and the next waiter takes over.
//! A waiter that has seen neither a result nor a free lock within twice that bound
//! answers as for a backend fault (session kept; 503 only once the token has expired)
//! rather than calling the backend while another replica may be doing so.
//!
//! Redis is an optimisation, never a single point of failure: once Redis counts as down
//! (commands failing or exceeding `store.timeout_ms` several times in a row; one failed
//! command is retried at the next poll), the replica renews on its own (local
//! single-flight, as without Redis), counts `sallyport_gateway_renewal_fallbacks_total{reason=
//! "redis_unavailable"}` and logs at most every 10 s; Redis is asked again after a short
//! back-off, so recovery needs no restart. Taking the lock is idempotent (a lock that
//! already holds our owner id is ours), so a `SET` that timed out but was applied does not
//! leave the replica waiting for its own lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use serde::{Deserialize, Serialize};

use crate::Clock;
use crate::backend::{Backend, BackendError};
use crate::metrics::Metrics;
use crate::state::Tokens;
use crate::store::Redis;

/// How often a replica waiting for another replica's renewal looks for its result.
pub(crate) const POLL: Duration = Duration::from_millis(15);

/// The most of a renewal result read from Redis. A sealed result is a cookie's tokens and
/// user (a cookie holds 4 KiB), so this is ample.
const MAX_RESULT_LEN: usize = 64 * 1024;

/// A renewal's outcome, shared by every request that joined it.
pub(crate) type Outcome = Result<Arc<Tokens>, Arc<BackendError>>;

/// How long one renewal call may take before it is abandoned: the grace window
/// (`session.renew_grace_secs`), and at least `backend.timeout_ms`. Requests stop waiting
/// after `backend.timeout_ms`; the call goes on, because abandoning a call the backend
/// still completes throws away the only copy of the rotated token, and the next renewal
/// then presents a used one (a reuse, which a rotating backend punishes by revoking the
/// session).
pub(crate) fn call_bound(backend_timeout: Duration, grace: Duration) -> Duration {
    grace.max(backend_timeout)
}

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
    /// The backend client for renewals, bounded by [`call_bound`].
    backend: Backend,
    /// How long a request waits for a renewal (`backend.timeout_ms`).
    caller_wait: Duration,
    /// Old refresh token → its renewal's result, for the grace window. Shared with every
    /// reconfigured copy of this renewer ([`Renewer::reconfigure`]; moka's handle is one
    /// cache).
    grace: moka::sync::Cache<TokenKey, Arc<Tokens>>,
    /// Renewals in flight. Hand-written rather than moka's `try_get_with`: there, the
    /// init future belongs to the first caller, and when that caller goes away (client
    /// disconnect) another waiter starts a *second* backend call with the same token.
    /// Here the call is a spawned task that owns its entry and removes it when done.
    ///
    /// Shared with every reconfigured copy of this renewer, so a renewal started before a
    /// configuration reload is joined, not repeated, by requests served after it.
    in_flight: Arc<InFlight>,
    metrics: Metrics,
    /// Cross-replica single-flight, with `store.redis_url`.
    remote: Option<Remote>,
    /// The gateway's clock, read when a time is used: a renewal task outlives the request
    /// that started it (lock waits, a slow backend), so that request's "now" goes stale.
    clock: Arc<dyn Clock>,
}

/// A renewal in flight: its one backend call's result, for every request that joins it.
type Flight = Shared<BoxFuture<'static, Outcome>>;

/// Renewals in flight, by refresh-token digest, in [`InFlight::SHARDS`] maps chosen by the
/// digest's first byte (uniform: it is SHA-256), so that the event loops renewing
/// different sessions at once take different locks. A lock is held only to look up,
/// insert or remove one entry, never across an `.await`.
struct InFlight {
    shards: [Mutex<HashMap<TokenKey, Flight>>; InFlight::SHARDS],
}

impl InFlight {
    const SHARDS: usize = 16;

    fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    fn shard(&self, key: &TokenKey) -> &Mutex<HashMap<TokenKey, Flight>> {
        &self.shards[usize::from(key[0]) % Self::SHARDS]
    }
}

/// What cross-replica renewal needs.
pub(crate) struct Remote {
    pub(crate) redis: Arc<Redis>,
    /// Seals results in Redis (the session secret set: every replica has it).
    pub(crate) passwords: sallyport_iron::Passwords,
    /// How long a result stays (the grace window).
    pub(crate) grace: Duration,
    /// The bound on one renewal call ([`call_bound`]).
    pub(crate) call_bound: Duration,
}

/// Removes the in-flight entry however the task ends (also on panic).
struct InFlightGuard {
    renewer: Arc<RenewerInner>,
    key: TokenKey,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.renewer.in_flight.shard(&self.key).lock() {
            map.remove(&self.key);
        }
    }
}

impl Renewer {
    /// `grace`: how long a redeemed refresh token maps to its result.
    /// `backend` must be bounded by [`call_bound`]; requests wait `caller_wait`.
    pub(crate) fn new(
        backend: Backend,
        grace: Duration,
        caller_wait: Duration,
        metrics: Metrics,
        remote: Option<Remote>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(RenewerInner {
                backend,
                caller_wait,
                grace: moka::sync::Cache::builder()
                    .max_capacity(1_000_000)
                    .time_to_live(grace)
                    .build(),
                in_flight: Arc::new(InFlight::new()),
                metrics,
                remote,
                clock,
            }),
        }
    }

    /// The same renewer with a new configuration (a reload): a new backend client (for
    /// new URLs, credentials or timeout), caller wait, and the cross-replica result seal
    /// (`passwords`, the bound on one call), sharing this one's in-flight renewals, grace
    /// map, metrics, clock and Redis connection. A renewal already running finishes with
    /// the configuration it started with, and its result reaches requests served by
    /// either copy.
    pub(crate) fn reconfigure(
        &self,
        backend: Backend,
        caller_wait: Duration,
        passwords: sallyport_iron::Passwords,
        call_bound: Duration,
    ) -> Self {
        let old = &self.inner;
        let remote = old.remote.as_ref().map(|r| Remote {
            redis: r.redis.clone(),
            passwords,
            grace: r.grace,
            call_bound,
        });
        Self {
            inner: Arc::new(RenewerInner {
                backend,
                caller_wait,
                grace: old.grace.clone(),
                in_flight: old.in_flight.clone(),
                metrics: old.metrics.clone(),
                remote,
                clock: old.clock.clone(),
            }),
        }
    }

    /// Renews the session holding `refresh_token`, sharing the call with every concurrent
    /// (or recent) renewal of the same token. `client` is the address of the request that
    /// starts the call (sent in `backend.client_address_header`); requests that join it
    /// share its answer.
    pub(crate) async fn renew(&self, refresh_token: &str, client: Option<IpAddr>) -> Outcome {
        let key = token_key(refresh_token);
        let inner = &self.inner;
        if let Some(t) = inner.grace.get(&key) {
            inner.metrics.renewal_joined("local");
            return Ok(t);
        }
        let shared = {
            let Ok(mut map) = inner.in_flight.shard(&key).lock() else {
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
                let rt = refresh_token.to_owned();
                // The task, not the caller, owns the call: see the module docs.
                // Carries the request id and span of the request that started it.
                let task = tokio::spawn(sallyport_observe::carry(async move {
                    let outcome = task_inner.obtain(&rt, key, client).await;
                    if let Ok(t) = &outcome {
                        task_inner.grace.insert(key, t.clone());
                    }
                    drop(guard);
                    outcome
                }));
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
        match tokio::time::timeout(inner.caller_wait, shared).await {
            Ok(outcome) => outcome,
            // The call goes on; its result will be in the grace map for the next request.
            Err(_) => Err(Arc::new(BackendError::Unavailable(
                "renewal still in progress after backend.timeout_ms".into(),
            ))),
        }
    }
}

impl RenewerInner {
    /// The renewal result for `refresh_token`: another replica's, or one backend call.
    async fn obtain(&self, refresh_token: &str, key: TokenKey, client: Option<IpAddr>) -> Outcome {
        let Some(remote) = &self.remote else {
            return self.call_backend(refresh_token, client).await;
        };
        // One span for the cross-replica part: the Redis look-ups, the wait for another
        // replica's lock, and (as its child) the backend call when the lock is ours.
        let span = tracing::info_span!("renewal.redis", otel.name = "renewal.redis");
        match self
            .coordinate(remote, refresh_token, key, client)
            .instrument(span)
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                // Redis is an optimisation: renew on this replica alone.
                self.metrics.renewal_fallback("redis_unavailable");
                self.metrics.store_error("renewal");
                remote.redis.log_unavailable("renewal", &e);
                self.call_backend(refresh_token, client).await
            }
        }
    }

    /// Cross-replica single-flight (see the module docs). `Err`: Redis failed, and the
    /// caller renews locally.
    async fn coordinate(
        &self,
        remote: &Remote,
        refresh_token: &str,
        key: TokenKey,
        client: Option<IpAddr>,
    ) -> Result<Outcome, String> {
        let redis = &remote.redis;
        let result_key = redis.key("renew", &key);
        let lock_key = redis.key("renew-lock", &key);
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let lock_ttl = remote.call_bound + redis.timeout() * 2 + Duration::from_millis(500);
        let bound = lock_ttl * 2;
        let started = Instant::now();
        let mut waited = false;
        loop {
            if let Some(Some(outcome)) =
                tolerate(redis, self.remote_result(remote, &result_key).await)?
            {
                if waited {
                    self.metrics
                        .renewal_lock_wait(started.elapsed().as_secs_f64());
                }
                self.metrics.renewal_joined("replica");
                return Ok(outcome);
            }
            // Taken, or already ours: a SET that timed out here may have been applied.
            let mut lock = redis::cmd("EVAL");
            lock.arg(
                "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 \
                 elseif redis.call('GET', KEYS[1]) == ARGV[1] then return 1 else return 0 end",
            )
            .arg(1)
            .arg(&lock_key)
            .arg(&owner)
            .arg(lock_ttl.as_millis() as u64);
            if tolerate(redis, redis.run::<i64>(&lock).await)? == Some(1) {
                if waited {
                    self.metrics
                        .renewal_lock_wait(started.elapsed().as_secs_f64());
                }
                return Ok(self
                    .renew_holding_lock(
                        remote,
                        refresh_token,
                        &result_key,
                        &lock_key,
                        &owner,
                        client,
                    )
                    .await);
            }
            waited = true;
            if started.elapsed() > bound {
                self.metrics.renewal_fallback("wait_timeout");
                self.metrics
                    .renewal_lock_wait(started.elapsed().as_secs_f64());
                tracing::warn!("another replica's renewal did not finish in time; session kept");
                return Ok(Err(Arc::new(BackendError::Unavailable(
                    "another replica's renewal did not finish in time".into(),
                ))));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The lock is ours: check once more for a result (one may have been stored between
    /// our look and the lock), call the backend, publish the result, release the lock.
    /// Redis failures here no longer matter to this replica's answer.
    async fn renew_holding_lock(
        &self,
        remote: &Remote,
        refresh_token: &str,
        result_key: &str,
        lock_key: &str,
        owner: &str,
        client: Option<IpAddr>,
    ) -> Outcome {
        let redis = &remote.redis;
        let outcome = match self.remote_result(remote, result_key).await {
            Ok(Some(outcome)) => {
                self.metrics.renewal_joined("replica");
                outcome
            }
            _ => {
                let outcome = self.call_backend(refresh_token, client).await;
                if let Some(sealed) = seal_outcome(remote, &outcome, self.clock.now_ms()) {
                    let mut set = redis::cmd("SET");
                    set.arg(result_key)
                        .arg(sealed)
                        .arg("PX")
                        .arg(remote.grace.as_millis().max(1) as u64);
                    if let Err(e) = redis.run::<()>(&set).await {
                        self.metrics.store_error("renewal");
                        redis.log_unavailable("renewal-publish", &e);
                    }
                }
                outcome
            }
        };
        // Compare-and-delete: never release a lock that expired and went to another.
        let mut del = redis::cmd("EVAL");
        del.arg(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        )
        .arg(1)
        .arg(lock_key)
        .arg(owner);
        if let Err(e) = redis.run::<i64>(&del).await {
            redis.log_unavailable("renewal-unlock", &e);
        }
        outcome
    }

    /// Another replica's result, if one is stored and opens with our secrets. At most
    /// [`MAX_RESULT_LEN`] bytes are read: a longer value (a buggy or hostile writer)
    /// comes back cut, does not open, and is ignored.
    async fn remote_result(
        &self,
        remote: &Remote,
        result_key: &str,
    ) -> Result<Option<Outcome>, String> {
        let mut get = redis::cmd("GETRANGE");
        get.arg(result_key).arg(0).arg(MAX_RESULT_LEN - 1);
        // A missing key reads as "".
        let sealed: String = remote.redis.run(&get).await?;
        if sealed.is_empty() {
            return Ok(None);
        }
        match sallyport_iron::unseal_value::<Published>(
            &sealed,
            &remote.passwords,
            self.clock.now_ms(),
        ) {
            Ok((p, _)) => Ok(Some(p.into_outcome())),
            Err(e) => {
                // A replica with other secrets, or an expired seal: not ours to use.
                tracing::warn!(error = %e, "ignoring a renewal result in Redis that does not open");
                Ok(None)
            }
        }
    }

    /// One backend call, counted by outcome.
    /// The expiry is dated on the clock as the call starts, not when the request came.
    async fn call_backend(&self, refresh_token: &str, client: Option<IpAddr>) -> Outcome {
        let now_s = self.clock.now_ms() / 1000;
        let outcome = self.backend.refresh(refresh_token, now_s, client).await;
        self.metrics.renewal(match &outcome {
            Ok(_) => "ok",
            Err(BackendError::Refused(_)) => "refused",
            Err(_) => "unavailable",
        });
        outcome.map(Arc::new).map_err(Arc::new)
    }
}

/// A coordination command's result: `Ok(None)` for a failure to retry at the next poll.
/// Only a Redis that counts as down (several failures in a row, see
/// `store::Redis::run`) sends the replica off to renew alone: renewing alone after one
/// failed or slow command, while another replica may be redeeming the same token, is a
/// reuse, which a single-use backend punishes.
fn tolerate<T>(redis: &Redis, r: Result<T, String>) -> Result<Option<T>, String> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if redis.is_down() => Err(e),
        Err(_) => Ok(None),
    }
}

/// A renewal result as published in Redis (sealed). Faults are not published: the next
/// replica retries, as the next request would on one replica.
#[derive(Serialize, Deserialize)]
struct Published {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<PublishedTokens>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct PublishedTokens {
    access_token: String,
    refresh_token: String,
    expires_at: Option<u64>,
    obtained_at: u64,
    user: Option<sallyport_proto::SessionUser>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_sub: Option<String>,
}

impl Published {
    fn into_outcome(self) -> Outcome {
        match (self.tokens, self.refused) {
            (Some(t), _) => Ok(Arc::new(Tokens {
                access_token: t.access_token,
                refresh_token: t.refresh_token,
                expires_at: t.expires_at,
                obtained_at: t.obtained_at,
                user: t.user,
                id_token: t.id_token,
                id_sub: t.id_sub,
            })),
            (None, code) => {
                Err(Arc::new(BackendError::Refused(code.unwrap_or_else(|| {
                    sallyport_proto::codes::INVALID_GRANT.into()
                }))))
            }
        }
    }
}

fn seal_outcome(remote: &Remote, outcome: &Outcome, now_ms: u64) -> Option<String> {
    let published = match outcome {
        Ok(t) => Published {
            tokens: Some(PublishedTokens {
                access_token: t.access_token.clone(),
                refresh_token: t.refresh_token.clone(),
                expires_at: t.expires_at,
                obtained_at: t.obtained_at,
                user: t.user.clone(),
                id_token: t.id_token.clone(),
                id_sub: t.id_sub.clone(),
            }),
            refused: None,
        },
        Err(e) => match &**e {
            BackendError::Refused(code) => Published {
                tokens: None,
                refused: Some(code.clone()),
            },
            _ => return None,
        },
    };
    // No expiry inside the seal: Redis keeps the key for the grace window (`PX`), on the
    // wall clock, and that is the only bound. A seal-level expiry counted from the
    // sealing task's `now_ms` — taken when its request arrived, possibly seconds before
    // it won the lock — made another replica ignore a fresh result as expired and redeem
    // the used refresh token again (a reuse, which a single-use backend punishes).
    match sallyport_iron::seal_value(&published, &remote.passwords, 0, now_ms) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot seal a renewal result for other replicas");
            None
        }
    }
}
