//! The connection caps: at most `max_connections` per server (one [`crate::Server`] and every
//! accept loop sharing it), and optionally at most
//! `max_connections_per_ip` from one client address (an IPv6 client by its /64, which
//! one subscriber usually holds whole).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How often, at most, a refusal is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct Limiter {
    total: Arc<Semaphore>,
    max_total: usize,
    /// 0: no per-address cap.
    max_per_ip: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total,
    PerIp,
}

/// Held by a connection's task; frees its slots when dropped.
pub(crate) struct Permit {
    _total: OwnedSemaphorePermit,
    ip: Option<(Arc<Limiter>, IpAddr)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((limiter, key)) = self.ip.take() {
            let mut map = limiter
                .per_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    // Entries exist only for addresses with open connections, so the
                    // map never holds more than `max_connections` of them.
                    map.remove(&key);
                }
            }
        }
    }
}

impl Limiter {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(max_total.min(Semaphore::MAX_PERMITS))),
            max_total,
            max_per_ip,
            per_ip: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            last_log: Mutex::new(None),
        })
    }

    /// A slot for a connection from `peer`, or why there is none.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refusal> {
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            self.refused(Refusal::Total, peer);
            return Err(Refusal::Total);
        };
        if self.max_per_ip == 0 {
            return Ok(Permit {
                _total: total,
                ip: None,
            });
        }
        let key = client_key(peer);
        {
            let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(key).or_insert(0);
            if *n >= self.max_per_ip {
                drop(map);
                self.refused(Refusal::PerIp, peer);
                return Err(Refusal::PerIp);
            }
            *n += 1;
        }
        Ok(Permit {
            _total: total,
            ip: Some((self.clone(), key)),
        })
    }

    /// Logs a refusal, at most once per [`LOG_EVERY`] (a flood must not flood the log),
    /// with the number refused since the last line.
    fn refused(&self, why: Refusal, peer: IpAddr) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut last = self.last_log.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return;
        }
        *last = Some(now);
        drop(last);
        let since_last = self.refused.swap(0, Ordering::Relaxed);
        match why {
            Refusal::Total => tracing::warn!(
                max_connections = self.max_total,
                refused = since_last,
                "connection limit reached: refusing new connections (server.max_connections)"
            ),
            Refusal::PerIp => tracing::warn!(
                max_connections_per_ip = self.max_per_ip,
                %peer,
                refused = since_last,
                "per-address connection limit reached (server.max_connections_per_ip)"
            ),
        }
    }
}

/// The address a per-client cap counts by: IPv4 (also IPv4-mapped IPv6) as is, IPv6
/// by its /64 prefix.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_frees_on_drop() {
        let l = Limiter::new(2, 0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = l.admit(ip).unwrap();
        let _b = l.admit(ip).unwrap();
        assert_eq!(l.admit(ip).err(), Some(Refusal::Total));
        drop(a);
        assert!(l.admit(ip).is_ok());
    }

    #[test]
    fn caps_per_address_and_forgets_idle_addresses() {
        let l = Limiter::new(100, 1);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let a = l.admit(one).unwrap();
        assert_eq!(l.admit(one).err(), Some(Refusal::PerIp));
        let _b = l.admit(two).unwrap();
        drop(a);
        assert!(l.per_ip.lock().unwrap().get(&one).is_none());
        assert!(l.admit(one).is_ok());
    }

    #[test]
    fn ipv6_counts_by_prefix() {
        let l = Limiter::new(100, 1);
        let _a = l.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            l.admit("2001:db8::ffff:2".parse().unwrap()).err(),
            Some(Refusal::PerIp)
        );
        assert!(l.admit("2001:db8:0:1::1".parse().unwrap()).is_ok());
        // IPv4-mapped is the IPv4 address.
        let _c = l.admit("::ffff:192.0.2.9".parse().unwrap()).unwrap();
        assert_eq!(
            l.admit("192.0.2.9".parse().unwrap()).err(),
            Some(Refusal::PerIp)
        );
    }
}
