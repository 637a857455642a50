//! Logged-out session ids, remembered for the cookie's lifetime (PP-05, PP-06) — in
//! process memory, and, with `store.redis_url`, in Redis so that every replica refuses a
//! cookie that was logged out on any of them (docs/design.md "Logout cannot be undone").
//!
//! Failure policy (documented in docs/gateway.md): Redis being unreachable is a fault,
//! and faults are not logouts — nor do they log everyone out. A session this replica saw
//! logged out is still refused (the local record is always consulted first); a session
//! logged out on another replica is then accepted only while its access token lives,
//! because logout also revoked the refresh token at the backend, so its next renewal
//! fails. After an error the store is skipped for a short back-off, so an outage does
//! not add the command timeout to every request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::config::StoreSettings;
use crate::metrics::Metrics;

/// How long the shared store is skipped after an error.
const BACKOFF_MS: u64 = 5_000;

/// The logged-out set.
pub(crate) struct LogoutStore {
    local: moka::future::Cache<String, ()>,
    shared: Option<Shared>,
    ttl: Duration,
    metrics: Metrics,
}

struct Shared {
    settings: StoreSettings,
    conn: OnceCell<ConnectionManager>,
    /// Wall-clock ms until which the store is not asked (after an error).
    down_until_ms: AtomicU64,
}

impl LogoutStore {
    pub(crate) fn new(ttl: Duration, store: Option<StoreSettings>, metrics: Metrics) -> Self {
        let local = moka::future::Cache::builder()
            .max_capacity(10_000_000)
            .time_to_live(ttl)
            .build();
        Self {
            local,
            shared: store.map(|settings| Shared {
                settings,
                conn: OnceCell::new(),
                down_until_ms: AtomicU64::new(0),
            }),
            ttl,
            metrics,
        }
    }

    /// Whether logouts are shared with other replicas.
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Whether this process has seen `key` logged out (no I/O; for sync call sites).
    pub(crate) fn contains_local(&self, key: &str) -> bool {
        self.local.contains_key(key)
    }

    /// Whether `key` was logged out here or, with a shared store, on any replica.
    /// An unreachable store answers "no" (see the module docs).
    pub(crate) async fn contains(&self, key: &str, now_ms: u64) -> bool {
        if self.local.contains_key(key) {
            return true;
        }
        let Some(shared) = &self.shared else {
            return false;
        };
        let k = shared.key(key);
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&k);
        match shared.run::<u64>(&cmd, now_ms).await {
            Ok(n) if n > 0 => {
                // Cache the positive answer: a logged-out id never comes back.
                self.local.insert(key.to_string(), ()).await;
                true
            }
            Ok(_) => false,
            Err(e) => {
                self.metrics.store_error("read");
                tracing::warn!(error = %e, "logout store unreachable; using the local record only");
                false
            }
        }
    }

    /// Records `key` as logged out for the cookie's lifetime. Returns whether the shared
    /// store (if any) has it; the local record is written regardless.
    pub(crate) async fn remember(&self, key: &str, now_ms: u64) -> bool {
        self.local.insert(key.to_string(), ()).await;
        let Some(shared) = &self.shared else {
            return true;
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(shared.key(key))
            .arg(1)
            .arg("EX")
            .arg(self.ttl.as_secs().max(1));
        match shared.run::<()>(&cmd, now_ms).await {
            Ok(()) => true,
            Err(e) => {
                self.metrics.store_error("write");
                tracing::error!(error = %e, "logout store unreachable; the logout is recorded on this replica only");
                false
            }
        }
    }
}

impl Shared {
    /// `<prefix>logout:<sha256 hex>`: the id may be a refresh token (cookies written by
    /// other code carry no `sid`), which must not be stored in the clear.
    fn key(&self, id: &str) -> String {
        let digest = Sha256::digest(id.as_bytes());
        format!("{}logout:{}", self.settings.key_prefix, hex::encode(digest))
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        now_ms: u64,
    ) -> Result<T, String> {
        if now_ms < self.down_until_ms.load(Ordering::Relaxed) {
            return Err("in back-off after an earlier error".into());
        }
        let result = tokio::time::timeout(self.settings.timeout, async {
            let conn = self
                .conn
                .get_or_try_init(|| self.settings.client.get_connection_manager())
                .await
                .map_err(|e| e.to_string())?;
            // ConnectionManager is a cheap handle onto one multiplexed connection.
            let mut conn = conn.clone();
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        if result.is_err() {
            self.down_until_ms
                .store(now_ms.saturating_add(BACKOFF_MS), Ordering::Relaxed);
        }
        result
    }
}
