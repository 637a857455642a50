//! argon2id password hashing, always off the async runtime (`spawn_blocking`), and
//! bounded: each hash takes `argon2.memory_kib` (19 MiB by default), so at most
//! `argon2.max_concurrent` run at once, at most `argon2.max_queued` more wait, and any
//! further request is refused at once with [`Error::Overloaded`] (503) — before it
//! costs memory. Unbounded, 200 concurrent failed logins once took 5.7 GB (issue 8).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};

use crate::config::Argon2Config;
use crate::error::{Error, Result};

/// Longest password accepted, in bytes (argon2 pre-hashes, but unbounded input is
/// still pointless work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes and verifies passwords with fixed parameters.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    /// A real hash of a random password with the same parameters, verified against
    /// when the user does not exist so that "no such user" costs the same time as
    /// "wrong password".
    dummy: Arc<str>,
    slots: Arc<Slots>,
}

/// The hashing slots and the queue in front of them.
#[derive(Debug)]
struct Slots {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queued: usize,
}

/// Leaves the queue when dropped (also when the waiting request is cancelled).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slots {
    fn new(max_concurrent: usize, max_queued: usize) -> Self {
        let n = if max_concurrent == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            max_concurrent
        };
        Slots {
            permits: Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))),
            waiting: AtomicUsize::new(0),
            max_queued,
        }
    }

    /// A hashing slot, waiting in a bounded FIFO queue; [`Error::Overloaded`] when the
    /// queue is full.
    async fn acquire(&self) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Overloaded);
        }
        let _queued = Queued(&self.waiting);
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Task(e.to_string()))
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

impl Hasher {
    /// Builds the hasher and its dummy hash.
    pub async fn new(config: &Argon2Config) -> Result<Self> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| Error::config("argon2", e.to_string()))?;
        let mut random = [0u8; 24];
        getrandom::fill(&mut random).map_err(|e| Error::Key(format!("random source: {e}")))?;
        let hasher = Hasher {
            params,
            dummy: Arc::from(""),
            slots: Arc::new(Slots::new(config.max_concurrent, config.max_queued)),
        };
        let dummy = hasher.hash(hex::encode(random)).await?;
        Ok(Hasher {
            dummy: Arc::from(dummy),
            ..hasher
        })
    }

    /// PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String> {
        let params = self.params.clone();
        let permit = self.slots.acquire().await?;
        tokio::task::spawn_blocking(move || {
            // Held until the hash is done, even if the request is cancelled meanwhile.
            let _permit = permit;
            argon(&params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::PasswordHash(e.to_string()))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// True when `password` matches `stored`; with `stored = None` verifies against the
    /// dummy hash and returns false.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy.to_string());
        let params = self.params.clone();
        let permit = self.slots.acquire().await?;
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            argon(&params)
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        Ok(known && ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verify_and_dummy() {
        let cfg = Argon2Config {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 0,
            max_queued: 8,
        };
        let h = Hasher::new(&cfg).await.unwrap();
        let stored = h.hash("s3cret".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(
            h.verify("s3cret".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(!h.verify("wrong".into(), Some(stored)).await.unwrap());
        assert!(!h.verify("anything".into(), None).await.unwrap());
        assert!(!h.verify("x".into(), Some("garbage".into())).await.unwrap());
    }

    #[tokio::test]
    async fn past_the_queue_requests_are_refused_at_once() {
        let cfg = Argon2Config {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
            max_queued: 2,
        };
        let h = Hasher::new(&cfg).await.unwrap();
        // Hold the only slot, then fill the queue.
        let held = h.slots.acquire().await.unwrap();
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.verify("pw".into(), None).await })
            })
            .collect();
        while h.slots.waiting.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // The queue is full: refused without waiting for the slot.
        assert!(matches!(
            h.verify("pw".into(), None).await,
            Err(Error::Overloaded)
        ));
        drop(held);
        for q in queued {
            assert!(!q.await.unwrap().unwrap());
        }
        assert_eq!(h.slots.waiting.load(Ordering::SeqCst), 0);
        assert!(!h.verify("pw".into(), None).await.unwrap());
    }
}
