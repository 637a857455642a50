//! Failed-login limits per account and per client address (governor, GCRA).
//!
//! Only *failures* count: a failure takes a cell from the key's bucket; when the bucket
//! is empty the key is blocked until governor says the next cell is available, and
//! every attempt for a blocked key is refused with 429 before any password work.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;

/// Entries kept before stale ones are swept.
const SWEEP_AT: usize = 10_000;

struct Limiter {
    governor: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    blocked: Mutex<HashMap<String, Instant>>,
}

impl Limiter {
    fn new(burst: u32, replenish_secs: u64) -> Option<Self> {
        let burst = NonZeroU32::new(burst)?;
        let quota =
            Quota::with_period(Duration::from_secs(replenish_secs.max(1)))?.allow_burst(burst);
        Some(Limiter {
            governor: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            blocked: Mutex::new(HashMap::new()),
        })
    }

    fn blocked_for(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let map = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    fn failure(&self, key: &str) -> Option<Duration> {
        match self.governor.check_key(&key.to_owned()) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let mut map = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() >= SWEEP_AT {
                    let now = Instant::now();
                    map.retain(|_, until| *until > now);
                    self.governor.retain_recent();
                }
                map.insert(key.to_owned(), Instant::now() + wait);
                Some(wait)
            }
        }
    }
}

/// The two login limiters.
pub struct LoginLimiter {
    account: Option<Limiter>,
    address: Option<Limiter>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("account", &self.account.is_some())
            .field("address", &self.address.is_some())
            .finish()
    }
}

fn account_key(username: &str) -> String {
    username.to_lowercase()
}

impl LoginLimiter {
    /// From configuration (a burst of 0 disables that limiter).
    pub fn new(config: &RateLimitConfig) -> Self {
        LoginLimiter {
            account: Limiter::new(config.account_burst, config.account_replenish_secs),
            address: Limiter::new(config.address_burst, config.address_replenish_secs),
        }
    }

    /// `Some(wait)` when this account or address is currently blocked.
    pub fn check(&self, username: &str, address: Option<&str>) -> Option<Duration> {
        let a = self
            .account
            .as_ref()
            .and_then(|l| l.blocked_for(&account_key(username)));
        let b = match (&self.address, address) {
            (Some(l), Some(addr)) => l.blocked_for(addr),
            _ => None,
        };
        a.into_iter().chain(b).max()
    }

    /// Counts a failed attempt; `Some(wait)` when this failure exhausted a limit.
    pub fn failure(&self, username: &str, address: Option<&str>) -> Option<Duration> {
        let a = self
            .account
            .as_ref()
            .and_then(|l| l.failure(&account_key(username)));
        let b = match (&self.address, address) {
            (Some(l), Some(addr)) => l.failure(addr),
            _ => None,
        };
        a.into_iter().chain(b).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_burst_per_account_and_address() {
        let l = LoginLimiter::new(&RateLimitConfig {
            account_burst: 3,
            account_replenish_secs: 60,
            address_burst: 5,
            address_replenish_secs: 60,
        });
        for _ in 0..3 {
            assert!(l.check("Bob", Some("10.0.0.1")).is_none());
            assert!(l.failure("bob", Some("10.0.0.1")).is_none());
        }
        assert!(l.failure("BOB", Some("10.0.0.1")).is_some());
        assert!(
            l.check("bob", Some("10.0.0.9")).is_some(),
            "account blocked from any address"
        );
        assert!(l.check("carol", Some("10.0.0.2")).is_none());
        // address limit: 5 failures over different accounts
        assert!(l.failure("u1", Some("10.0.0.3")).is_none());
        for i in 0..4 {
            assert!(l.failure(&format!("v{i}"), Some("10.0.0.3")).is_none());
        }
        assert!(l.failure("w", Some("10.0.0.3")).is_some());
        assert!(l.check("fresh", Some("10.0.0.3")).is_some());
    }

    #[test]
    fn zero_burst_disables() {
        let l = LoginLimiter::new(&RateLimitConfig {
            account_burst: 0,
            account_replenish_secs: 0,
            address_burst: 0,
            address_replenish_secs: 0,
        });
        for _ in 0..100 {
            assert!(l.failure("bob", Some("a")).is_none());
        }
        assert!(l.check("bob", Some("a")).is_none());
    }
}
