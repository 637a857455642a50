//! Which address a request comes from, for login limits and the audit trail.
//!
//! The TCP peer, unless the peer is a trusted proxy (`http.trusted_proxies`): then the
//! right-most address in `http.client_address_header` (every occurrence of the header,
//! comma-separated, in order) that is not itself a trusted proxy. Right-most because
//! each proxy appends the address it saw, so everything left of the last trusted hop
//! was written by the client and could be anything. A missing or garbled header falls
//! back to the peer: the proxy is then the best we know.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// Most addresses read from the header; a longer chain counts as garbled.
const MAX_HOPS: usize = 64;

/// Parses a CIDR (`10.0.0.0/8`, `::1/128`) or a single address (as a /32 or /128).
pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

/// The configured trust in proxies.
#[derive(Debug, Clone)]
pub struct ClientAddressPolicy {
    trusted: Vec<IpNet>,
    header: HeaderName,
}

impl ClientAddressPolicy {
    /// Trust `trusted` proxies to report the client in `header`.
    pub fn new(trusted: Vec<IpNet>, header: HeaderName) -> Self {
        ClientAddressPolicy { trusted, header }
    }

    /// Whether any proxy is trusted.
    pub fn trusts_proxies(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// Whether `peer` is a trusted proxy, whose `X-Request-Id` and `traceparent` are
    /// believed too.
    pub fn trusts_peer(&self, peer: IpAddr) -> bool {
        self.is_trusted(&peer.to_canonical())
    }

    fn is_trusted(&self, ip: &IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The client address of a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(&peer) {
            return peer;
        }
        let Some(chain) = self.chain(headers) else {
            return peer;
        };
        // Right-most untrusted hop; if every hop is a trusted proxy, the request began
        // at the left-most one.
        chain
            .iter()
            .rev()
            .find(|ip| !self.is_trusted(ip))
            .or_else(|| chain.first())
            .copied()
            .unwrap_or(peer)
    }

    /// Every address in the header, left to right; `None` if absent or garbled.
    fn chain(&self, headers: &HeaderMap) -> Option<Vec<IpAddr>> {
        let mut chain = Vec::new();
        for value in headers.get_all(&self.header) {
            let value = value.to_str().ok()?;
            for part in value.split(',') {
                if chain.len() >= MAX_HOPS {
                    return None;
                }
                chain.push(parse_hop(part.trim())?);
            }
        }
        (!chain.is_empty()).then_some(chain)
    }
}

/// `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, `1.2.3.4:5678`, `[2001:db8::1]:5678`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn policy(trusted: &[&str]) -> ClientAddressPolicy {
        ClientAddressPolicy::new(
            trusted.iter().map(|s| parse_cidr(s).unwrap()).collect(),
            HeaderName::from_static("x-forwarded-for"),
        )
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let p = policy(&["10.0.0.0/8"]);
        assert_eq!(
            p.client(ip("203.0.113.9"), &headers(&["198.51.100.1"])),
            ip("203.0.113.9")
        );
        let none = policy(&[]);
        assert_eq!(
            none.client(ip("127.0.0.1"), &headers(&["198.51.100.1"])),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn trusted_peer_gives_the_rightmost_untrusted_hop_over_all_occurrences() {
        let p = policy(&["10.0.0.0/8", "127.0.0.1"]);
        // The client wrote "6.6.6.6" itself; 198.51.100.1 is what our proxy saw.
        assert_eq!(
            p.client(
                ip("127.0.0.1"),
                &headers(&["6.6.6.6, 198.51.100.1", "10.1.2.3"])
            ),
            ip("198.51.100.1")
        );
        assert_eq!(
            p.client(ip("10.0.0.5"), &headers(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        // Only trusted hops: the left-most started the request.
        assert_eq!(
            p.client(ip("127.0.0.1"), &headers(&["10.9.9.9, 127.0.0.1"])),
            ip("10.9.9.9")
        );
        // IPv4-mapped peers are matched as IPv4.
        assert_eq!(
            p.client(ip("::ffff:127.0.0.1"), &headers(&["192.0.2.1"])),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn missing_or_garbled_header_falls_back_to_the_peer() {
        let p = policy(&["127.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(p.client(peer, &headers(&[])), peer);
        assert_eq!(p.client(peer, &headers(&["unknown"])), peer);
        assert_eq!(p.client(peer, &headers(&["1.2.3.4, , 5.6.7.8"])), peer);
        let long = vec!["1.1.1.1"; MAX_HOPS + 1].join(",");
        assert_eq!(p.client(peer, &headers(&[&long])), peer);
        // The hop limit counts over all occurrences of the header.
        assert_eq!(
            p.client(peer, &headers(&vec!["1.1.1.1"; MAX_HOPS + 1])),
            peer
        );
        assert_eq!(
            p.client(peer, &headers(&vec!["1.1.1.1"; MAX_HOPS])),
            ip("1.1.1.1")
        );
        for garbled in [
            "",
            " ",
            "1.2.3.4,",
            "1.2.3.4:",
            "[1.2.3.4",
            "fe80::1%eth0",
            "1.2.3.4 5.6.7.8",
        ] {
            assert_eq!(p.client(peer, &headers(&[garbled])), peer, "{garbled:?}");
        }
        // A value that is not visible ASCII.
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.1\xff").unwrap(),
        );
        assert_eq!(p.client(peer, &h), peer);
        // A garbled occurrence spoils the whole chain, even after a good one.
        assert_eq!(p.client(peer, &headers(&["198.51.100.1", "bogus"])), peer);
    }

    #[test]
    fn cidrs_and_single_addresses_parse() {
        assert!(parse_cidr("10.0.0.0/8").is_some());
        assert!(
            parse_cidr("10.1.2.3/8")
                .unwrap()
                .contains(&ip("10.200.0.1"))
        );
        assert!(parse_cidr("::1").unwrap().contains(&ip("::1")));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("localhost").is_none());
    }
}
