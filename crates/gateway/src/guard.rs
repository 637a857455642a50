//! Request-forgery and open-redirect checks (docs/design.md step 7, PP-21).

use http::{HeaderMap, Method, header};

/// Longest `next` value we keep; longer ones fall back to `/`.
pub(crate) const MAX_NEXT_LEN: usize = 2048;

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
    // The same path rules as requests: no dot-segments or encoded slashes.
    canonical_path(path)?;
    // Last line of defence: resolved against a dummy origin, it must stay there.
    let base = url::Url::parse("http://sallyport.invalid/").ok()?;
    let joined = base.join(raw).ok()?;
    if joined.origin() != base.origin() {
        return None;
    }
    Some(raw.to_owned())
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
pub(crate) fn is_safe_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What a same-origin request's `Origin` must be (docs/design.md step 7).
///
/// The comparison is on the whole origin — scheme, host and port — because a page on
/// `http://app` (or on another port of the same host) is a different origin from
/// `https://app`, and a cookie-authenticated request from it is a forgery.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// The configured `public_origin` (`scheme://host[:port]`, serialized by `url`), which
    /// wins over anything the request says.
    pub public_origin: Option<String>,
    /// Whether `X-Forwarded-Proto` / `X-Forwarded-Host` may be believed (the operator
    /// put a proxy in front and set `trust_forwarded_headers`).
    pub trust_forwarded: bool,
    /// Whether cookies are `Secure`. Browsers send a `Secure` cookie only over https, so
    /// without a configured origin or a trusted proxy header, the scheme a
    /// cookie-authenticated request came over is https exactly when this is set.
    pub secure: bool,
}

/// Whether a state-changing request comes from another origin.
///
/// `Sec-Fetch-Site` is authoritative when present (browsers set it and scripts cannot
/// forge it): only `same-origin` and `none` (typed URL, bookmark) pass — `same-site` is a
/// *sibling* origin (another subdomain or port), which may be attacker-controlled.
/// `Origin` must then also agree if sent; `Origin: null` (sandboxed frames, some
/// redirects) never agrees. A request with neither header does not come from a modern
/// browser's cross-site form or fetch, so it is allowed — the cookie's `SameSite=Lax`
/// covers old browsers.
pub fn is_cross_site(headers: &HeaderMap, policy: &OriginPolicy) -> bool {
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
        return !origin_matches(origin, headers, policy);
    }
    false
}

fn origin_matches(origin: &str, headers: &HeaderMap, policy: &OriginPolicy) -> bool {
    if origin == "null" {
        return false;
    }
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    let got = url.origin();
    if !got.is_tuple() {
        return false;
    }
    if let Some(expected) = &policy.public_origin {
        return got.ascii_serialization() == *expected;
    }
    // No configured public origin: rebuild the gateway's own origin from the request —
    // scheme from a trusted `X-Forwarded-Proto` or else from the cookie's `Secure` flag,
    // host and port from a trusted `X-Forwarded-Host` or else from `Host`.
    let forwarded = |name: &str| {
        if !policy.trust_forwarded {
            return None;
        }
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = match forwarded("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        Some(_) => return false,
        None if policy.secure => "https",
        None => "http",
    };
    let Some(host) =
        forwarded("x-forwarded-host").or_else(|| headers.get(header::HOST)?.to_str().ok())
    else {
        return false;
    };
    // `url` lowercases the host and drops the scheme's default port on both sides.
    let Ok(ours) = url::Url::parse(&format!("{scheme}://{host}")) else {
        return false;
    };
    if ours.path() != "/" || ours.query().is_some() || !ours.username().is_empty() {
        // `Host` smuggling a path or userinfo is not an authority we can vouch for.
        return false;
    }
    ours.origin() == got
}

/// Levels of percent-encoding [`canonical_path`] looks through; deeper ones are refused.
const MAX_PATH_DECODE_ROUNDS: usize = 3;

/// Checks a request path (without query) before any path-based decision — public globs,
/// prefix routes, `next` — and returns the form those decisions match on: the path
/// percent-decoded once. Returns `None` (the caller answers 400) for a path that another
/// component could read differently from us:
///
/// * dot-segments, raw or percent-encoded at any depth (`..`, `%2e%2e`, `.%2E`,
///   `%252e%252e`), also with `;` path parameters (`..;x`, which Tomcat and Spring read as
///   `..`);
/// * encoded slashes or backslashes (`%2f`, `%5c`, also double-encoded), raw backslashes;
/// * a leading `//` (a scheme-relative reference to a URL parser);
/// * control characters, raw or encoded (`%00`, CR/LF);
/// * more than three levels of percent-encoding.
///
/// Rejecting beats normalizing: the request then reaches upstream byte-for-byte as the
/// client sent it *and* as the gateway judged it, whatever normalization upstream does.
pub fn canonical_path(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    examine(path).map(|(once, _)| once)
}

/// [`canonical_path`], plus whether `;` appears in any reading it looked through (the
/// path raw or after each round of percent-decoding): one decoding pass for both.
fn examine(path: &str) -> Option<(std::borrow::Cow<'_, str>, bool)> {
    use std::borrow::Cow;
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.get(1) == Some(&b'/') {
        return None;
    }
    // Fast path for the common request: nothing that could hide a segment. Non-ASCII
    // bytes take the full check too: they may be a C1 control character (U+0080–U+009F,
    // found by fuzzing), which the fast path's ASCII test does not see.
    if !bytes
        .iter()
        .any(|b| matches!(b, b'%' | b'.' | b'\\' | b';') || b.is_ascii_control() || !b.is_ascii())
    {
        return Some((Cow::Borrowed(path), false));
    }
    let mut current: Cow<'_, str> = Cow::Borrowed(path);
    let mut once: Option<String> = None;
    let mut parameters = false;
    for round in 0..=MAX_PATH_DECODE_ROUNDS {
        if !segments_are_plain(&current) {
            return None;
        }
        parameters |= current.contains(';');
        if !current.contains('%') {
            break;
        }
        let decoded = percent_encoding::percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == *current {
            break;
        }
        if round == MAX_PATH_DECODE_ROUNDS {
            return None;
        }
        if once.is_none() {
            once = Some(decoded.clone());
        }
        current = Cow::Owned(decoded);
    }
    let once = match once {
        Some(d) => Cow::Owned(d),
        None => Cow::Borrowed(path),
    };
    Some((once, parameters))
}

/// Whether a request path is public: `None` when [`canonical_path`] refuses it (400),
/// else whether **every** common reading of it matches `public` — the path as sent,
/// the path percent-decoded once, and the path with `;` parameters removed per segment
/// (Tomcat, Jetty, Spring and other servlet containers drop `;…` before routing, so
/// `/admin/secret;.css` is `/admin/secret` to them). A path carrying `;` at any
/// decoding depth (`;`, `%3B`, `%253B`) is never public: its `;`-free reading is
/// another path than the one the glob saw. Such paths still work with a session.
pub fn public_path(path: &str, public: &globset::GlobSet) -> Option<bool> {
    let (decoded, parameters) = examine(path)?;
    if public.is_empty() || parameters {
        return Some(false);
    }
    Some(public.is_match(path) && (*decoded == *path || public.is_match(&*decoded)))
}

fn segments_are_plain(p: &str) -> bool {
    if p.starts_with("//") || p.contains('\\') || p.chars().any(char::is_control) {
        return false;
    }
    let lower_has = |needle: &str| {
        p.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    if lower_has("%2f") || lower_has("%5c") {
        return false;
    }
    p.split('/').all(|seg| {
        let name = seg.split(';').next().unwrap_or_default();
        name != "." && name != ".."
    })
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

    fn plain_http() -> OriginPolicy {
        OriginPolicy::default()
    }

    #[test]
    fn csrf_decisions() {
        let host = ("host", "app.test:8080");
        let p = &plain_http();
        assert!(!is_cross_site(&h(&[host]), p));
        assert!(!is_cross_site(
            &h(&[host, ("origin", "http://app.test:8080")]),
            p
        ));
        assert!(!is_cross_site(
            &h(&[host, ("origin", "http://APP.test:8080")]),
            p
        ));
        assert!(is_cross_site(
            &h(&[host, ("origin", "http://evil.test:8080")]),
            p
        ));
        assert!(is_cross_site(&h(&[host, ("origin", "null")]), p));
        assert!(is_cross_site(&h(&[host, ("origin", "garbage")]), p));
        assert!(is_cross_site(
            &h(&[host, ("sec-fetch-site", "cross-site")]),
            p
        ));
        // A sibling subdomain or port is "same-site" but not the same origin.
        assert!(is_cross_site(
            &h(&[host, ("sec-fetch-site", "same-site")]),
            p
        ));
        assert!(!is_cross_site(
            &h(&[host, ("sec-fetch-site", "same-origin")]),
            p
        ));
        assert!(is_cross_site(
            &h(&[
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://evil.test")
            ]),
            p
        ));
        let configured = OriginPolicy {
            public_origin: Some("https://app.example.com".into()),
            ..OriginPolicy::default()
        };
        assert!(!is_cross_site(
            &h(&[host, ("origin", "https://app.example.com")]),
            &configured
        ));
        assert!(!is_cross_site(
            &h(&[host, ("origin", "https://app.example.com:443")]),
            &configured
        ));
        for bad in [
            "https://app.example.com.evil.com",
            "http://app.example.com",
            "https://app.example.com:8443",
        ] {
            assert!(
                is_cross_site(&h(&[host, ("origin", bad)]), &configured),
                "{bad}"
            );
        }
    }

    #[test]
    fn csrf_compares_scheme_and_port() {
        let p = &plain_http();
        let host = ("host", "127.0.0.1:8080");
        // The attack from the audit: same host and port, other scheme.
        assert!(is_cross_site(
            &h(&[host, ("origin", "https://127.0.0.1:8080")]),
            p
        ));
        assert!(is_cross_site(
            &h(&[host, ("origin", "http://127.0.0.1:8081")]),
            p
        ));
        assert!(is_cross_site(
            &h(&[host, ("origin", "http://127.0.0.1")]),
            p
        ));
        // Default ports are the same origin whether spelled out or not.
        assert!(!is_cross_site(
            &h(&[("host", "app.test:80"), ("origin", "http://app.test")]),
            p
        ));
        // Secure cookies are only sent over https: that is the scheme to expect.
        let secure = OriginPolicy {
            secure: true,
            ..OriginPolicy::default()
        };
        let host = ("host", "app.test");
        assert!(!is_cross_site(
            &h(&[host, ("origin", "https://app.test")]),
            &secure
        ));
        assert!(is_cross_site(
            &h(&[host, ("origin", "http://app.test")]),
            &secure
        ));
        // X-Forwarded-Proto/-Host count only when the operator trusts the proxy.
        let fwd = &[
            ("host", "10.0.0.5:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.test"),
            ("origin", "https://app.test"),
        ];
        assert!(is_cross_site(&h(fwd), p));
        let trusting = OriginPolicy {
            trust_forwarded: true,
            ..OriginPolicy::default()
        };
        assert!(!is_cross_site(&h(fwd), &trusting));
        assert!(is_cross_site(
            &h(&[
                ("host", "app.test"),
                ("x-forwarded-proto", "http"),
                ("origin", "https://app.test"),
            ]),
            &trusting
        ));
        // A Host header smuggling a path or userinfo never matches.
        assert!(is_cross_site(
            &h(&[
                ("host", "evil.test@app.test"),
                ("origin", "http://app.test")
            ]),
            p
        ));
    }

    /// Paths that a normalizing upstream (or a second decoding) would read as a different
    /// path than the one the gateway matched — all refused.
    pub(crate) const PATH_ESCAPES: &[&str] = &[
        "/public/../api/secret",
        "/public/./../api/secret",
        "/public/..",
        "/public/.",
        "/public/%2e%2e/api/secret",
        "/public/%2E%2E/api/secret",
        "/public/.%2e/api/secret",
        "/public/%2e./api/secret",
        "/public/..%2fapi/secret",
        "/public/..%2Fapi/secret",
        "/public%2f..%2fapi/secret",
        "/public/x%2fy",
        "/public/..%5capi/secret",
        "/public/..\\api/secret",
        "/public\\..\\api",
        "/public/..;/api/secret",
        "/public/..;x=1/api/secret",
        "/public;x/../api/secret",
        "/public//../api/secret",
        "//evil.com/x",
        "/public/%252e%252e/api/secret",
        "/public/%25252e%25252e/api/secret",
        "/public/..%252fapi/secret",
        "/public/%2525252e%2525252e/api/secret",
        "/public/%00/x",
        "/public/%0d%0a/x",
        "*",
        "",
    ];

    #[test]
    fn path_escapes_are_refused() {
        for p in PATH_ESCAPES {
            assert_eq!(canonical_path(p), None, "{p:?} was accepted");
        }
    }

    #[test]
    fn raw_c1_control_characters_are_refused_like_encoded_ones() {
        // Found by fuzz/fuzz_targets/public_path.rs: the fast path let these through.
        for p in ["/eq\u{8c}sic", "/a\u{85}b", "/\u{9f}"] {
            assert_eq!(canonical_path(p), None, "{p:?} was accepted");
        }
        assert_eq!(canonical_path("/a%C2%85b"), None);
        // Other non-ASCII paths still pass.
        assert_eq!(canonical_path("/café/ü").as_deref(), Some("/café/ü"));
    }

    #[test]
    fn ordinary_paths_pass_and_are_decoded_once() {
        for p in [
            "/",
            "/api/x",
            "/static/app.min.js",
            "/a/.well-known/x",
            "/a/...",
            "/files/100%25",
            "/public//x",
            "/api;jsessionid=1/x",
        ] {
            assert!(canonical_path(p).is_some(), "{p:?} was refused");
        }
        assert_eq!(
            canonical_path("/%70ublic/a%20b").as_deref(),
            Some("/public/a b")
        );
        assert_eq!(
            canonical_path("/files/100%25").as_deref(),
            Some("/files/100%")
        );
    }

    #[test]
    fn next_with_dot_segments_or_encoded_slashes_is_refused() {
        for n in ["/public/../admin", "/a/%2e%2e/b", "/a%2fb", "/a/..;/b"] {
            assert_eq!(safe_next(n), None, "{n:?} was accepted");
        }
    }

    fn globs(g: &[&str]) -> globset::GlobSet {
        let mut b = globset::GlobSetBuilder::new();
        for g in g {
            b.add(
                globset::GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .unwrap(),
            );
        }
        b.build().unwrap()
    }

    #[test]
    fn path_parameters_never_make_a_path_public() {
        let set = globs(&["**/*.css", "/static/**"]);
        for p in [
            "/admin/secret;.css",
            "/admin;/secret.css",
            "/admin/secret%3B.css",
            "/admin/secret%3b.css",
            "/admin/secret%253B.css",
            "/admin/secret;x=1.css",
            "/static;x/../admin",
            "/static/a;b",
            "/admin/secret%2ecss;.css",
        ] {
            assert_ne!(public_path(p, &set), Some(true), "{p:?} counted as public");
        }
        for p in [
            "/a/b.css",
            "/static/app.js",
            "/static/a%20b.js",
            "/x/y%2Ecss/z.css",
        ] {
            assert_eq!(public_path(p, &set), Some(true), "{p:?}");
        }
        // Every reading must be public: raw `secret%2ecss` is not a .css path.
        assert_eq!(public_path("/admin/secret%2ecss", &set), Some(false));
        assert_eq!(public_path("/admin/secret", &set), Some(false));
        assert_eq!(public_path("/public/../admin", &set), None);
        assert_eq!(public_path("/a.css", &globs(&[])), Some(false));
    }
}
