//! argon2id password hashing, off the async runtime and bounded: each hash takes
//! `argon2.memory_kib` (19 MiB by default), so at most `argon2.max_concurrent` run at
//! once, at most `argon2.max_queued` more wait, and any further request is refused at
//! once with [`Error::Overloaded`] (503) — before it costs memory. Unbounded, 200
//! concurrent failed logins once took 5.7 GB (issue 8).
//!
//! Memory is bounded by `max_concurrent × memory_kib` however many logins arrive,
//! which takes two hand-written pieces (measured: with only the cap, 100 concurrent
//! failed logins, two hashed at a time, still left ~380 MiB resident):
//! * hashes run on a fixed set of `max_concurrent` threads of our own, not on tokio's
//!   blocking pool, which keeps starting new threads (each a new allocator arena);
//! * each of those threads verifies into one reused block buffer
//!   (`hash_password_into_with_memory`) instead of letting argon2 allocate 19 MiB per
//!   hash: glibc keeps such freed, 64-byte-aligned blocks in the thread's arena and
//!   fragments, so each thread's memory grew by up to a hash per login (~110 MiB per
//!   thread before levelling off).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Argon2Config;
use crate::error::{Error, Result};

/// Longest password accepted, in bytes (argon2 pre-hashes, but unbounded input is
/// still pointless work).
pub(crate) const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes and verifies passwords with fixed parameters.
#[derive(Clone)]
pub(crate) struct Hasher {
    params: Params,
    /// A real hash of a random password with the same parameters, verified against
    /// when the user does not exist so that "no such user" costs the same time as
    /// "wrong password".
    dummy: Arc<str>,
    slots: Arc<Slots>,
}

/// A unit of hashing work for the worker threads.
type Job = Box<dyn FnOnce() + Send>;

/// The hashing slots, the queue in front of them and the threads behind them.
#[derive(Debug)]
struct Slots {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queued: usize,
    /// To the worker threads; they exit when the last `Hasher` clone is dropped.
    jobs: mpsc::Sender<Job>,
}

/// Starts `n` hashing threads fed from one channel.
fn start_workers(n: usize) -> Result<mpsc::Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("argon2-{i}"))
            .spawn(move || {
                loop {
                    let job = {
                        let guard = rx.lock().unwrap_or_else(|p| p.into_inner());
                        match guard.recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        }
                    };
                    // A panicking job must not shrink the pool; its caller sees the
                    // dropped result channel as an error.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .map_err(|e| Error::Task(format!("starting a hashing thread: {e}")))?;
    }
    Ok(tx)
}

/// Leaves the queue when dropped (also when the waiting request is cancelled).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slots {
    fn new(max_concurrent: usize, max_queued: usize) -> Result<Self> {
        let n = if max_concurrent == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            max_concurrent
        };
        Ok(Slots {
            permits: Arc::new(Semaphore::new(n)),
            waiting: AtomicUsize::new(0),
            max_queued,
            jobs: start_workers(n)?,
        })
    }

    /// Runs `work` on a hashing thread once a slot is free (bounded queue).
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = self.acquire().await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                // Held until the hash is done, even if the request is cancelled meanwhile.
                let _permit = permit;
                let _ = tx.send(work());
            }))
            .map_err(|_| Error::Task("the hashing threads stopped".into()))?;
        rx.await
            .map_err(|_| Error::Task("a password hash failed".into()))
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

thread_local! {
    /// The hashing thread's argon2 memory, reused by every verification on it.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Verifies `password` against the PHC string `stored` in the thread's reused memory
/// (see the module documentation). Same checks as argon2's `verify_password`:
/// algorithm, version and parameters from the string, constant-time comparison.
/// A hash needing more memory than `usual_blocks` (written with other parameters) is
/// computed in a temporary buffer, so the kept one stays at the configured size.
fn verify_in_place(password: &[u8], stored: &str, usual_blocks: usize) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        Params::try_from(&hash),
        Algorithm::try_from(hash.algorithm.as_str()),
    ) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let need = params.block_count();
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    let computed = if need <= usual_blocks {
        BLOCKS.with(|cell| {
            let mut blocks = cell.borrow_mut();
            if blocks.len() < need {
                blocks.resize(need, Block::default());
            }
            argon.hash_password_into_with_memory(password, salt, &mut out, &mut blocks[..need])
        })
    } else {
        let mut blocks = vec![Block::default(); need];
        argon.hash_password_into_with_memory(password, salt, &mut out, &mut blocks)
    };
    computed.is_ok() && Output::new(&out).is_ok_and(|o| &o == expected)
}

impl Hasher {
    /// Builds the hasher and its dummy hash.
    pub(crate) async fn new(config: &Argon2Config) -> Result<Self> {
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
            slots: Arc::new(Slots::new(config.max_concurrent, config.max_queued)?),
        };
        let dummy = hasher.hash(hex::encode(random)).await?;
        Ok(Hasher {
            dummy: Arc::from(dummy),
            ..hasher
        })
    }

    /// PHC string for `password`.
    pub(crate) async fn hash(&self, password: String) -> Result<String> {
        let params = self.params.clone();
        self.slots
            .run(move || {
                argon(&params)
                    .hash_password(password.as_bytes())
                    .map(|h| h.to_string())
                    .map_err(|e| Error::PasswordHash(e.to_string()))
            })
            .await?
    }

    /// True when `password` matches `stored`; with `stored = None` verifies against the
    /// dummy hash and returns false.
    pub(crate) async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy.to_string());
        let usual_blocks = self.params.block_count();
        let ok = self
            .slots
            .run(move || verify_in_place(password.as_bytes(), &hash, usual_blocks))
            .await?;
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

    #[test]
    fn in_place_verification_matches_argon2s_own() {
        use argon2::PasswordVerifier as _;
        let small = Params::new(64, 1, 1, None).unwrap();
        let big = Params::new(256, 2, 2, None).unwrap();
        for (alg, params) in [
            (Algorithm::Argon2id, small.clone()),
            (Algorithm::Argon2i, small.clone()),
            (Algorithm::Argon2id, big.clone()),
            (Algorithm::Argon2id, small.clone()),
        ] {
            let phc = Argon2::new(alg, Version::V0x13, params)
                .hash_password(b"right")
                .unwrap()
                .to_string();
            for (pw, want) in [(&b"right"[..], true), (&b"wrong"[..], false)] {
                let theirs = argon(&small).verify_password(pw, phc.as_str()).is_ok();
                assert_eq!(theirs, want);
                // With the small usual size the big hash takes a temporary buffer; with
                // the big one it grows the thread's buffer, which the small hashes then
                // reuse, stale blocks and all.
                for usual in [small.block_count(), big.block_count()] {
                    assert_eq!(verify_in_place(pw, &phc, usual), want, "{phc} {usual}");
                }
            }
        }
        assert!(!verify_in_place(b"x", "$argon2id$v=19$garbage", 8));
        assert!(!verify_in_place(b"x", "", 8));
    }
}
