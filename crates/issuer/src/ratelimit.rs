//! Failed-login limits, designed so that nobody can lock a user out by failing on
//! purpose (issue 8, item 1).
//!
//! Three limits, each a GCRA bucket (a burst, then one more attempt every
//! `replenish` seconds) that only *failures* drain:
//!
//! * **per client address** — one address guessing across many accounts. Blocks every
//!   login from that address.
//! * **per (account, client address)** — one address guessing one account. Blocks that
//!   account from that address only.
//! * **per account** — many addresses guessing one account. This one only *slows the
//!   attack down*: while it is exhausted, the account refuses logins from addresses that
//!   have failed recently (for any account), but an address with no recent failure may
//!   still try. A user with the right password on a clean address always gets in; a
//!   botnet gets one guess per address per replenish period.
//!
//! A blocked attempt is refused with 429 before any password work. An attempt that is
//! let in counts as a failure from then on until its password proves right
//! ([`LoginLimiter::attempt`]), so guesses sent all at once cannot overshoot a burst.
//!
//! Why hand-written instead of governor: the limiter must take `now` as a parameter
//! (tests cross replenish boundaries without sleeping) and its maps must be bounded.
//! governor's keyed limiter reads its own clock and keeps every key until swept. The
//! GCRA arithmetic is a dozen lines; the bounded, concurrent map is moka's (a
//! TinyLFU-admitted cache with a capacity), so a flood of distinct usernames or
//! addresses cannot grow memory past `rate_limit.max_tracked_keys` per limit. Keys are
//! stored as SHA-256 prefixes: fixed size whatever the username length, and no
//! usernames kept in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use moka::sync::Cache;
use sha2::{Digest as _, Sha256};

use crate::config::RateLimitConfig;

/// A fixed-size digest of a limiter key.
type Key = [u8; 16];

fn key(domain: &str, parts: &[&str]) -> Key {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    for p in parts {
        // Length-prefixed, so ("ab","c") and ("a","bc") differ.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// One GCRA limit over a bounded map of "theoretical arrival times" (unix ms): each
/// failure pushes the key's time `period_ms` further; the key is blocked while that
/// time is more than `burst * period_ms` ahead of now.
struct Limiter {
    period_ms: i64,
    /// `burst * period_ms`.
    limit_ms: i64,
    map: Cache<Key, Arc<AtomicI64>>,
}

impl Limiter {
    fn new(burst: u32, replenish_secs: u64, capacity: u64) -> Option<Self> {
        if burst == 0 {
            return None;
        }
        let period_ms = i64::try_from(replenish_secs.max(1).saturating_mul(1000)).ok()?;
        let limit_ms = period_ms.saturating_mul(i64::from(burst));
        // An entry matters at most (burst + 1) periods after its last failure; dropping
        // it earlier than that would forgive failures, later only wastes memory.
        let idle = Duration::from_millis(
            u64::try_from(limit_ms.saturating_add(period_ms)).unwrap_or(u64::MAX),
        );
        Some(Limiter {
            period_ms,
            limit_ms,
            map: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle)
                .build(),
        })
    }

    /// How long a key whose arrival time is `tat` stays blocked, if blocked at `now`.
    fn blocked_at(&self, tat: i64, now: i64) -> Option<Duration> {
        wait(tat.saturating_sub(self.limit_ms), now)
    }

    /// Counts a failure at `now`, atomically; returns the key's arrival time before
    /// it (`None`: the key had none).
    fn charge(&self, key: Key, now: i64) -> Option<i64> {
        let cell = self
            .map
            .get_with(key, || Arc::new(AtomicI64::new(i64::MIN)));
        let period = self.period_ms;
        let previous = cell
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |tat| {
                Some(tat.max(now).saturating_add(period))
            })
            .unwrap_or_else(|t| t);
        (previous != i64::MIN).then_some(previous)
    }

    /// The arrival time after a failure at `now` on a key that had `previous`.
    fn after(&self, previous: Option<i64>, now: i64) -> i64 {
        previous
            .unwrap_or(i64::MIN)
            .max(now)
            .saturating_add(self.period_ms)
    }

    /// Counts a failure at `now`; `Some(wait)` when the key is now blocked.
    #[cfg(test)]
    fn failure(&self, key: Key, now: i64) -> Option<Duration> {
        let previous = self.charge(key, now);
        self.blocked_at(self.after(previous, now), now)
    }

    /// Takes back one failure counted by [`Limiter::charge`] (the attempt turned out
    /// not to be one).
    fn refund(&self, key: &Key) {
        if let Some(cell) = self.map.get(key) {
            let period = self.period_ms;
            let _ = cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |tat| {
                Some(tat.saturating_sub(period))
            });
        }
    }

    fn entries(&self) -> u64 {
        self.map.run_pending_tasks();
        self.map.entry_count()
    }
}

fn wait(until: i64, now: i64) -> Option<Duration> {
    let ms = until.saturating_sub(now);
    (ms > 0).then(|| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// The three login limits (see the module documentation).
pub(crate) struct LoginLimiter {
    address: Option<Limiter>,
    account_address: Option<Limiter>,
    account: Option<Limiter>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("address", &self.address.is_some())
            .field("account_address", &self.account_address.is_some())
            .field("account", &self.account.is_some())
            .finish()
    }
}

/// The key parts of one attempt.
struct Keys {
    address: Key,
    account_address: Key,
    account: Key,
}

/// The limiter's view of a client address: IPv6 addresses by their /64, the block one
/// subscriber (or one cloud VM) usually gets — else an attacker with a /64 would have
/// 2^64 fresh address budgets.
fn address_key(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        _ => address.to_owned(),
    }
}

impl Keys {
    fn new(username: &str, address: Option<&str>) -> Self {
        let account = username.to_lowercase();
        // Without a known address (no TCP peer, e.g. an in-process test) every such
        // attempt counts as one address.
        let address = address_key(address.unwrap_or(""));
        let address = address.as_str();
        Keys {
            address: key("address", &[address]),
            account_address: key("account+address", &[&account, address]),
            account: key("account", &[&account]),
        }
    }
}

impl LoginLimiter {
    /// From configuration (a burst of 0 disables that limit).
    pub(crate) fn new(config: &RateLimitConfig) -> Self {
        let cap = config.max_tracked_keys;
        LoginLimiter {
            address: Limiter::new(config.address_burst, config.address_replenish_secs, cap),
            account_address: Limiter::new(
                config.account_address_burst,
                config.account_address_replenish_secs,
                cap,
            ),
            account: Limiter::new(config.account_burst, config.account_replenish_secs, cap),
        }
    }

    /// Each limit with the key an attempt has in it: address, account+address, account.
    fn limits<'a>(&'a self, k: &'a Keys) -> [(Option<&'a Limiter>, &'a Key); 3] {
        [
            (self.address.as_ref(), &k.address),
            (self.account_address.as_ref(), &k.account_address),
            (self.account.as_ref(), &k.account),
        ]
    }

    /// `Some(wait)` when an attempt for `username` from `address` is refused at `now`
    /// (an attempt that is dropped at once).
    #[cfg(test)]
    fn check(&self, username: &str, address: Option<&str>, now: i64) -> Option<Duration> {
        self.attempt(username, address, now).err()
    }

    /// Counts a failed attempt at `now` in every limit; `Some(wait)` when it exhausted a
    /// limit that now refuses this account from this address (this address has just
    /// failed, so an exhausted account limit applies to it).
    #[cfg(test)]
    fn failure(&self, username: &str, address: Option<&str>, now: i64) -> Option<Duration> {
        let k = Keys::new(username, address);
        self.limits(&k)
            .into_iter()
            .filter_map(|(l, key)| l?.failure(*key, now))
            .max()
    }

    /// Starts a login attempt: `Err(wait)` when it is refused — by the address or the
    /// (account, address) limit, or by the account limit if this address has failed
    /// recently (see the module documentation); otherwise it is counted as a failure *now*,
    /// before the password work, so that concurrent attempts see it — else a client
    /// firing many guesses at once would have every one hashed before the first failure
    /// was counted, far past the burst. Counting and deciding are one atomic step per
    /// limit (the decision reads the state the count replaced), so no two attempts can
    /// both take the last place in a burst. The count is taken back when the returned
    /// [`Attempt`] is dropped without [`Attempt::failed`] (right password, disabled
    /// account, error, cancelled request) and at once when the attempt is refused.
    pub(crate) fn attempt(
        &self,
        username: &str,
        address: Option<&str>,
        now: i64,
    ) -> Result<Attempt<'_>, Duration> {
        let keys = Keys::new(username, address);
        let [by_address, by_pair, by_account] = self
            .limits(&keys)
            .map(|(l, key)| l.map(|l| (l, l.charge(*key, now))));
        let blocked = |c: Option<(&Limiter, Option<i64>)>| {
            let (l, previous) = c?;
            l.blocked_at(previous?, now)
        };
        let had_failed = |c: Option<(&Limiter, Option<i64>)>| {
            c.is_some_and(|(_, previous)| previous.is_some_and(|tat| tat > now))
        };
        let account = blocked(by_account).filter(|_| had_failed(by_address) || had_failed(by_pair));
        let refused = [blocked(by_address), blocked(by_pair), account]
            .into_iter()
            .flatten()
            .max();
        let attempt = Attempt {
            limiter: self,
            blocked: [by_address, by_pair, by_account]
                .into_iter()
                .flatten()
                .filter_map(|(l, previous)| l.blocked_at(l.after(previous, now), now))
                .max(),
            keys,
            failed: false,
        };
        match refused {
            // Dropping `attempt` takes the count back.
            Some(wait) => Err(wait),
            None => Ok(attempt),
        }
    }

    /// Entries per limit (address, account+address, account), after pending evictions.
    pub(crate) fn tracked_keys(&self) -> [u64; 3] {
        let n = |l: &Option<Limiter>| l.as_ref().map_or(0, Limiter::entries);
        [n(&self.address), n(&self.account_address), n(&self.account)]
    }
}

/// A login attempt counted as a failure in advance ([`LoginLimiter::attempt`]).
pub(crate) struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    keys: Keys,
    blocked: Option<Duration>,
    failed: bool,
}

impl Attempt<'_> {
    /// The password was wrong: the failure stays counted. `Some(wait)` when it
    /// exhausted a limit that now refuses this account from this address.
    pub(crate) fn failed(mut self) -> Option<Duration> {
        self.failed = true;
        self.blocked
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.failed {
            for (l, key) in self.limiter.limits(&self.keys) {
                if let Some(l) = l {
                    l.refund(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RateLimitConfig {
        RateLimitConfig {
            account_burst: 3,
            account_replenish_secs: 60,
            account_address_burst: 2,
            account_address_replenish_secs: 60,
            address_burst: 5,
            address_replenish_secs: 60,
            max_tracked_keys: 1000,
        }
    }

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn pair_limit_blocks_that_account_from_that_address_only() {
        let l = LoginLimiter::new(&config());
        for _ in 0..2 {
            assert!(l.check("Bob", Some("10.0.0.1"), T0).is_none());
            assert!(l.failure("bob", Some("10.0.0.1"), T0).is_none());
        }
        assert!(l.failure("BOB", Some("10.0.0.1"), T0).is_some());
        assert!(l.check("bob", Some("10.0.0.1"), T0).is_some());
        assert!(
            l.check("bob", Some("10.0.0.9"), T0).is_none(),
            "another address may still log in as bob"
        );
        assert!(l.check("carol", Some("10.0.0.1"), T0).is_none());
    }

    #[test]
    fn attempts_count_as_failures_while_in_flight_and_only_failures_stay() {
        let l = LoginLimiter::new(&config());
        // Held at once (concurrent requests): the pair burst (2) plus the attempt that
        // exhausts it get through, then attempts are refused before any password work.
        let held: Vec<_> = (0..3)
            .map(|_| l.attempt("bob", Some("10.0.0.1"), T0).unwrap())
            .collect();
        assert!(l.attempt("bob", Some("10.0.0.1"), T0).is_err());
        // They succeed: nothing stays counted.
        drop(held);
        assert!(l.check("bob", Some("10.0.0.1"), T0).is_none());
        for _ in 0..100 {
            drop(l.attempt("bob", Some("10.0.0.1"), T0).unwrap());
        }
        assert!(l.check("bob", Some("10.0.0.1"), T0).is_none());
        // Failed attempts stay counted, like `failure`.
        assert!(
            l.attempt("bob", Some("10.0.0.1"), T0)
                .unwrap()
                .failed()
                .is_none()
        );
        assert!(
            l.attempt("bob", Some("10.0.0.1"), T0)
                .unwrap()
                .failed()
                .is_none()
        );
        assert!(
            l.attempt("bob", Some("10.0.0.1"), T0)
                .unwrap()
                .failed()
                .is_some()
        );
        assert!(l.attempt("bob", Some("10.0.0.1"), T0).is_err());
        // A clean address is still let in by the account limit; its in-flight
        // attempt counts for that address only until it is dropped.
        for i in 0..10 {
            l.failure("alice", Some(&format!("192.0.2.{i}")), T0);
        }
        let clean = l.attempt("alice", Some("198.51.100.7"), T0).unwrap();
        drop(clean);
        assert!(l.check("alice", Some("198.51.100.7"), T0).is_none());
    }

    #[test]
    fn address_limit_blocks_every_account_from_that_address() {
        let l = LoginLimiter::new(&config());
        for i in 0..5 {
            assert!(l.failure(&format!("v{i}"), Some("10.0.0.3"), T0).is_none());
        }
        assert!(l.failure("w", Some("10.0.0.3"), T0).is_some());
        assert!(l.check("fresh", Some("10.0.0.3"), T0).is_some());
        assert!(l.check("fresh", Some("10.0.0.4"), T0).is_none());
    }

    #[test]
    fn account_limit_slows_attackers_but_never_locks_out_a_clean_address() {
        let l = LoginLimiter::new(&config());
        // Many addresses fail once each on alice: the account limit (3) is exhausted.
        for i in 0..10 {
            l.failure("alice", Some(&format!("192.0.2.{i}")), T0);
        }
        // Addresses that failed are refused for alice…
        assert!(l.check("alice", Some("192.0.2.1"), T0).is_some());
        // …an address that never failed is not.
        assert!(l.check("alice", Some("198.51.100.7"), T0).is_none());
        // An address that failed on another account counts as having failed.
        l.failure("mallory-guess", Some("203.0.113.5"), T0);
        assert!(l.check("alice", Some("203.0.113.5"), T0).is_some());
    }

    #[test]
    fn limits_replenish_with_time_given_as_a_parameter() {
        let l = LoginLimiter::new(&config());
        for _ in 0..3 {
            l.failure("bob", Some("10.0.0.1"), T0);
        }
        let wait = l.check("bob", Some("10.0.0.1"), T0).unwrap();
        assert!(wait <= Duration::from_secs(60), "{wait:?}");
        let later = T0 + i64::try_from(wait.as_millis()).unwrap();
        assert!(l.check("bob", Some("10.0.0.1"), later).is_none());
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let l = LoginLimiter::new(&config());
        for i in 0..6 {
            l.failure(&format!("u{i}"), Some(&format!("2001:db8:1:2::{i:x}")), T0);
        }
        assert!(l.check("x", Some("2001:db8:1:2:ffff::1"), T0).is_some());
        assert!(l.check("x", Some("2001:db8:1:3::1"), T0).is_none());
        assert_eq!(address_key("192.0.2.1"), "192.0.2.1");
    }

    #[test]
    fn zero_burst_disables() {
        let l = LoginLimiter::new(&RateLimitConfig {
            account_burst: 0,
            account_replenish_secs: 0,
            account_address_burst: 0,
            account_address_replenish_secs: 0,
            address_burst: 0,
            address_replenish_secs: 0,
            max_tracked_keys: 10,
        });
        for _ in 0..100 {
            assert!(l.failure("bob", Some("a"), T0).is_none());
        }
        assert!(l.check("bob", Some("a"), T0).is_none());
        assert_eq!(l.tracked_keys(), [0, 0, 0]);
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_cap() {
        let cap = 200;
        let l = LoginLimiter::new(&RateLimitConfig {
            max_tracked_keys: cap,
            address_burst: 1_000_000,
            ..config()
        });
        for i in 0..5_000u32 {
            let addr = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff);
            l.failure(&format!("random-user-{i}"), Some(&addr), T0);
        }
        for (n, name) in l
            .tracked_keys()
            .into_iter()
            .zip(["address", "account+address", "account"])
        {
            assert!(n <= cap, "{name}: {n} entries > cap {cap}");
        }
    }

    /// The cap must not forgive a real attacker: with every map full of one-off keys, a
    /// key that keeps failing is still admitted (TinyLFU favours the repeated key) and
    /// blocked once over its burst.
    #[test]
    fn a_full_map_still_blocks_a_repeatedly_failing_key() {
        let l = LoginLimiter::new(&RateLimitConfig {
            max_tracked_keys: 100,
            address_burst: 1_000_000,
            ..config()
        });
        let flood = |from: u32| {
            for i in from..from + 500 {
                let addr = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff);
                l.failure(&format!("random-user-{i}"), Some(&addr), T0);
            }
        };
        flood(0);
        let mut blocked = false;
        for round in 0..10u32 {
            // The attacker's failures interleave with more flooding.
            blocked |= l.failure("bob", Some("192.0.2.7"), T0).is_some();
            flood(10_000 * (round + 1));
        }
        assert!(
            blocked,
            "bob's failures from 192.0.2.7 never exhausted the limit"
        );
        assert!(l.check("bob", Some("192.0.2.7"), T0).is_some());
    }
}
