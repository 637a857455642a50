//! Request-forgery and open-redirect checks (DESIGN.md step 7, PP-21).

use http::{HeaderMap, Method, header};

/// Longest `next` value we keep; longer ones fall back to `/`.
pub const MAX_NEXT_LEN: usize = 2048;

/// Accepts `raw` (an already URL-decoded query/form value) as a return path only if it is
/// a same-site relative path. Anything else — `//host`, `/\host`, schemes, encoded slashes
/// and backslashes, whitespace or control characters, over-long values — gives `None`, and
/// the caller falls back to `/`. Never panics on any input.
pub fn safe_next(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > MAX_NEXT_LEN {
        return None;
    }
    if !path_is_plain(raw) {
        return None;
    }
    // A second decoding must not reveal anything different: browsers and upstream
    // frameworks decode again (`/%2F%2Fevil.com`, `/%5Cevil.com`).
    // Only the path matters here; the query may legitimately encode anything.
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    if !path_is_plain(&decoded) {
        return None;
    }
    // Last line of defence: resolved against a dummy origin, it must stay there.
    let base = url::Url::parse("http://sallyport.invalid/").ok()?;
    let joined = base.join(raw).ok()?;
    if joined.origin() != base.origin() {
        return None;
    }
    Some(raw.to_string())
}

fn path_is_plain(p: &str) -> bool {
    let bytes = p.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && !p
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace() || c == '\u{feff}')
}

/// Methods that do not change state (CSRF-exempt, and replayable after a 401).
pub fn is_safe_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a state-changing request comes from another site.
///
/// `Sec-Fetch-Site` is authoritative when present (browsers set it and scripts cannot
/// forge it); `Origin` must then also agree if sent. A request with neither header does
/// not come from a modern browser's cross-site form or fetch, so it is allowed — the
/// cookie's `SameSite=Lax` covers old browsers.
pub fn is_cross_site(headers: &HeaderMap, expected_origin: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        match site.as_bytes() {
            b"same-origin" | b"none" => {}
            _ => return true,
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return true;
        };
        return !origin_matches(origin, headers, expected_origin);
    }
    false
}

fn origin_matches(origin: &str, headers: &HeaderMap, expected: Option<&str>) -> bool {
    if origin == "null" {
        return false;
    }
    if let Some(expected) = expected {
        return origin.eq_ignore_ascii_case(expected);
    }
    // No configured public origin: the Origin's host[:port] must equal the Host header.
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let Some(o_host) = url.host_str() else {
        return false;
    };
    let o_authority = match url.port() {
        Some(p) => format!("{o_host}:{p}"),
        None => o_host.to_string(),
    };
    if o_authority.eq_ignore_ascii_case(host) {
        return true;
    }
    // Host may carry the default port explicitly.
    let default = match url.scheme() {
        "https" => 443,
        _ => 80,
    };
    url.port().is_none() && host.eq_ignore_ascii_case(&format!("{o_host}:{default}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const OPEN_REDIRECTS: &[&str] = &[
        "//evil.com",
        "/\\evil.com",
        "/%5Cevil.com",
        "/%5cevil.com",
        "/%2F%2Fevil.com",
        "/%2f/evil.com",
        "\\\\evil.com",
        "https:evil.com",
        "https://evil.com",
        "http://app.example.com.evil.com",
        "https://app.example.com@evil.com",
        "@evil.com",
        ".evil.com",
        "evil.com",
        "/\t/evil.com",
        "/\n/evil.com",
        "/ /evil.com",
        "/\r\n/evil.com",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/%09/evil.com",
        "/%0d%0a/evil.com",
        "%2F%2Fevil.com",
        "",
        "/\u{0}x",
        "/\u{feff}/evil.com",
        "///evil.com",
    ];

    #[test]
    fn rejects_open_redirects() {
        for a in OPEN_REDIRECTS {
            assert_eq!(safe_next(a), None, "{a:?} was accepted");
        }
        let long = format!("/{}", "a".repeat(4096));
        assert_eq!(safe_next(&long), None);
    }

    #[test]
    fn accepts_same_site_paths() {
        for ok in ["/", "/dashboard", "/a/b?c=d&e=%2F#frag", "/search?q=a%20b"] {
            assert_eq!(safe_next(ok).as_deref(), Some(ok));
        }
    }

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn csrf_decisions() {
        let host = ("host", "app.test:8080");
        assert!(!is_cross_site(&h(&[host]), None));
        assert!(!is_cross_site(
            &h(&[host, ("origin", "http://app.test:8080")]),
            None
        ));
        assert!(is_cross_site(
            &h(&[host, ("origin", "http://evil.test:8080")]),
            None
        ));
        assert!(is_cross_site(&h(&[host, ("origin", "null")]), None));
        assert!(is_cross_site(
            &h(&[host, ("sec-fetch-site", "cross-site")]),
            None
        ));
        assert!(is_cross_site(
            &h(&[host, ("sec-fetch-site", "same-site")]),
            None
        ));
        assert!(!is_cross_site(
            &h(&[host, ("sec-fetch-site", "same-origin")]),
            None
        ));
        assert!(is_cross_site(
            &h(&[
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://evil.test")
            ]),
            None
        ));
        assert!(!is_cross_site(
            &h(&[host, ("origin", "https://app.example.com")]),
            Some("https://app.example.com")
        ));
        assert!(is_cross_site(
            &h(&[host, ("origin", "https://app.example.com.evil.com")]),
            Some("https://app.example.com")
        ));
    }
}
