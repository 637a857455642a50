//! The reverse proxy: streams both bodies, rewrites the headers upstream must be able to
//! trust, passes WebSocket upgrades through, and turns upstream failures into plain
//! 502/504 pages within bounded time.

use std::net::SocketAddr;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::config::Settings;
use sallyport_proto::SessionUser;

/// The pooled upstream client, with the parts of every upstream request that never
/// change (scheme, authority, `Host`) parsed once at start-up instead of per request.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Body>,
    /// `Some` when the upstream URL has no path prefix: request URIs are then assembled
    /// from parts without formatting and re-parsing a string.
    scheme_authority: Option<(Scheme, Authority)>,
    /// The upstream authority as a `Host` value (when `preserve_host` is off).
    host: Option<HeaderValue>,
}

/// Builds the pooled upstream client.
pub fn client(settings: &Settings) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(settings.connect_timeout));
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build(connector);
    let up = &settings.upstream;
    let scheme_authority = match up.base.strip_prefix("http://") {
        Some(rest) if rest == up.authority => up
            .authority
            .parse::<Authority>()
            .ok()
            .map(|a| (Scheme::HTTP, a)),
        _ => None,
    };
    HttpClient {
        client,
        scheme_authority,
        host: HeaderValue::from_str(&up.authority).ok(),
    }
}

impl HttpClient {
    /// The upstream URI for a request to `original`: the upstream base followed by the
    /// request's path and query.
    fn upstream_uri(&self, base: &str, original: &Uri) -> Result<Uri, UpstreamError> {
        let pq = original.path_and_query();
        if let (Some((scheme, authority)), Some(pq)) = (&self.scheme_authority, pq)
            && pq.as_str().starts_with('/')
        {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(scheme.clone());
            parts.authority = Some(authority.clone());
            parts.path_and_query = Some(pq.clone());
            return Uri::from_parts(parts)
                .map_err(|e| UpstreamError::Unreachable(format!("bad upstream URI: {e}")));
        }
        // A path prefix, or an unusual request target (`*`, authority-form): the general
        // (slower) way, with exactly the old semantics.
        let path = pq.map_or("/", |pq| pq.as_str());
        format!("{base}{path}")
            .parse()
            .map_err(|e| UpstreamError::Unreachable(format!("bad upstream URI: {e}")))
    }
}

/// What the gateway adds to a proxied request.
pub struct Credentials<'a> {
    /// Sent as `Bearer <token>` in the configured header.
    pub access_token: &'a str,
    /// For identity headers.
    pub user: Option<&'a SessionUser>,
}

/// Why upstream gave no response.
#[derive(Debug)]
pub enum UpstreamError {
    /// Connection refused, reset, or a protocol error.
    Unreachable(String),
    /// No response head within `proxy.response_timeout_ms`.
    Timeout,
}

impl IntoResponse for UpstreamError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            UpstreamError::Unreachable(e) => {
                tracing::warn!(error = %e, "upstream unreachable");
                (
                    StatusCode::BAD_GATEWAY,
                    "502 Bad Gateway: the application behind this gateway is not reachable.\n",
                )
            }
            UpstreamError::Timeout => {
                tracing::warn!("upstream timed out");
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "504 Gateway Timeout: the application behind this gateway did not answer in time.\n",
                )
            }
        };
        (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response()
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy ones), as `HeaderName`s so that
/// removing them does not parse a name per call.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether the request asks for a protocol upgrade (WebSocket).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers, including those named in `Connection`. Keeps
/// `Upgrade`/`Connection: upgrade` when `keep_upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Taken first: `Connection: upgrade` names it, and the loop below would drop it.
    let upgrade = headers.remove(header::UPGRADE);
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    if keep_upgrade && let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether `name` is the session cookie or one of its chunks (`<name>.<n>`).
pub fn is_session_cookie(name: &str, cookie_name: &str) -> bool {
    match name.strip_prefix(cookie_name) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Rewrites the `Cookie` header for upstream: the session cookie is removed, and when
/// forwarding is on, replaced by `replacement` (the freshly sealed cookie of this request,
/// PP-03) or kept as the client sent it.
fn rewrite_cookies(
    headers: &mut HeaderMap,
    cookie_name: &str,
    forward: bool,
    replacement: Option<&[(String, String)]>,
) {
    // One output string instead of a `String` per pair (this runs on every request).
    let keep_session = forward && replacement.is_none();
    let mut saw_cookie = false;
    let mut out = String::new();
    for v in headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        if !saw_cookie {
            saw_cookie = true;
            out.reserve(v.len());
        }
        for pair in v.split(';') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split('=').next().unwrap_or_default().trim();
            if keep_session || !is_session_cookie(name, cookie_name) {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                out.push_str(pair);
            }
        }
    }
    if !saw_cookie && replacement.is_none() {
        return;
    }
    if forward && let Some(rep) = replacement {
        for (n, v) in rep {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(n);
            out.push('=');
            out.push_str(v);
        }
    }
    headers.remove(header::COOKIE);
    if !out.is_empty()
        && let Ok(v) = HeaderValue::from_str(&out)
    {
        headers.insert(header::COOKIE, v);
    }
}

/// Everything needed to rewrite one request.
pub struct Rewrite<'a> {
    /// Validated settings.
    pub settings: &'a Settings,
    /// The upstream client (for its pre-parsed upstream parts).
    pub client: &'a HttpClient,
    /// Peer address.
    pub client_addr: Option<SocketAddr>,
    /// Token and identity, when there is a session.
    pub credentials: Option<Credentials<'a>>,
    /// Name/value pairs of a just-sealed cookie, for `forward_session_cookie`.
    pub new_cookie: Option<&'a [(String, String)]>,
}

/// Rewrites `req` in place for upstream.
pub fn rewrite(req: &mut Request<Body>, rw: &Rewrite<'_>) -> Result<(), UpstreamError> {
    let s = rw.settings;
    let upgrade = is_upgrade(req.headers());
    // HTTP/2 clients send `:authority` instead of `Host`.
    let uri_authority = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    let uri = rw.client.upstream_uri(&s.upstream.base, req.uri())?;
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;

    let headers = req.headers_mut();
    let original_host = headers.get(header::HOST).cloned().or(uri_authority);
    strip_hop_by_hop(headers, upgrade);

    // Credentials: only the gateway may set them.
    headers.remove(&s.auth_header);
    let prefix = s.identity_prefix.as_str();
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(prefix))
        .cloned()
        .collect();
    for k in spoofed {
        headers.remove(k);
    }
    if let Some(c) = &rw.credentials {
        let mut bearer = BytesMut::with_capacity(7 + c.access_token.len());
        bearer.put_slice(b"Bearer ");
        bearer.put_slice(c.access_token.as_bytes());
        // `from_maybe_shared` validates like `from_str` but takes the buffer without a copy.
        if let Ok(v) = HeaderValue::from_maybe_shared(bearer.freeze()) {
            headers.insert(s.auth_header.clone(), v);
        }
        if s.identity_headers
            && let Some(u) = c.user
        {
            insert_identity(headers, prefix, u);
        }
    }
    rewrite_cookies(headers, &s.cookie_name, s.forward_cookie, rw.new_cookie);

    // X-Forwarded-*: appended to (or, when the client is not trusted, replacing) what came in.
    let xff_in = if s.trust_forwarded {
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    } else {
        None
    };
    let proto_in = if s.trust_forwarded {
        headers.get("x-forwarded-proto").cloned()
    } else {
        None
    };
    let host_in = if s.trust_forwarded {
        headers.get("x-forwarded-host").cloned()
    } else {
        None
    };
    if let Some(addr) = rw.client_addr {
        let ip = addr.ip().to_string();
        let xff = match xff_in {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
    } else {
        headers.remove("x-forwarded-for");
    }
    let proto = proto_in.unwrap_or_else(|| {
        let https = s
            .public_origin
            .as_deref()
            .is_some_and(|o| o.starts_with("https:"));
        HeaderValue::from_static(if https { "https" } else { "http" })
    });
    headers.insert("x-forwarded-proto", proto);
    match host_in.or_else(|| original_host.clone()) {
        Some(h) => {
            headers.insert("x-forwarded-host", h);
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
    match original_host {
        Some(h) if s.preserve_host => {
            headers.insert(header::HOST, h);
        }
        _ => {
            if let Some(v) = &rw.client.host {
                headers.insert(header::HOST, v.clone());
            }
        }
    }
    Ok(())
}

/// Identity headers: `<prefix>user` (sub), `<prefix>name`, `<prefix>roles` (comma-joined).
pub fn insert_identity(headers: &mut HeaderMap, prefix: &str, u: &SessionUser) {
    let mut put = |suffix: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    };
    put("user", &u.sub);
    if let Some(name) = &u.name {
        put("name", name);
    }
    if !u.roles.is_empty() {
        put("roles", &u.roles.join(","));
    }
}

/// Sends a rewritten request, bounded by the response timeout, and prepares the response
/// for the client. A 101 answer is spliced to the client connection.
pub async fn send(
    client: &HttpClient,
    settings: &Settings,
    mut req: Request<Body>,
) -> Result<Response, UpstreamError> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = if upgrade {
        req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    let resp =
        match tokio::time::timeout(settings.response_timeout, client.client.request(req)).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) => return Err(UpstreamError::Unreachable(e.to_string())),
            Ok(Ok(r)) => r,
        };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(splice(resp, client_upgrade));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    // Upstream stalling mid-body must not hold the client for ever: the gap between two
    // chunks is bounded like the wait for the head (nginx's proxy_read_timeout).
    let body = sallyport_serve::TimeoutBody::new(
        body,
        sallyport_serve::BodyLimits::idle(settings.response_timeout),
    );
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn splice(
    mut upstream: http::Response<hyper::body::Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response {
    let Some(client_upgrade) = client_upgrade else {
        return UpstreamError::Unreachable("upstream switched protocols unasked".into())
            .into_response();
    };
    let upstream_upgrade = hyper::upgrade::on(&mut upstream);
    tokio::spawn(async move {
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((c, u)) => {
                let mut c = TokioIo::new(c);
                let mut u = TokioIo::new(u);
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                    tracing::debug!(error = %e, "upgraded connection closed");
                }
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
    let (mut parts, _) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers, true);
    Response::from_parts(parts, Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_names() {
        assert!(is_session_cookie("sp", "sp"));
        assert!(is_session_cookie("sp.0", "sp"));
        assert!(is_session_cookie("sp.12", "sp"));
        assert!(!is_session_cookie("sp.x", "sp"));
        assert!(!is_session_cookie("sp.", "sp"));
        assert!(!is_session_cookie("spx", "sp"));
        assert!(!is_session_cookie("other", "sp"));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-ok", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-ok"));
    }

    #[test]
    fn upgrade_survives_when_kept_even_though_connection_names_it() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert!(!h.contains_key("keep-alive"));

        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }

    fn test_client(base: &str, authority: &str) -> HttpClient {
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            scheme_authority: match base.strip_prefix("http://") {
                Some(rest) if rest == authority => Some((Scheme::HTTP, authority.parse().unwrap())),
                _ => None,
            },
            host: HeaderValue::from_str(authority).ok(),
        }
    }

    #[test]
    fn upstream_uri_fast_path_and_prefix_path_agree_with_string_joining() {
        let plain = test_client("http://127.0.0.1:3000", "127.0.0.1:3000");
        assert!(plain.scheme_authority.is_some());
        let prefixed = test_client("http://127.0.0.1:3000/app", "127.0.0.1:3000");
        assert!(prefixed.scheme_authority.is_none());
        for target in [
            "/",
            "/a/b?x=1&y=%2F",
            "/%2e%2e/x",
            "http://other.example/p?q",
        ] {
            let original: Uri = target.parse().unwrap();
            let pq = original.path_and_query().map_or("/", |p| p.as_str());
            let got = plain
                .upstream_uri("http://127.0.0.1:3000", &original)
                .unwrap();
            assert_eq!(got.to_string(), format!("http://127.0.0.1:3000{pq}"));
            let got = prefixed
                .upstream_uri("http://127.0.0.1:3000/app", &original)
                .unwrap();
            assert_eq!(got.to_string(), format!("http://127.0.0.1:3000/app{pq}"));
        }
        // `OPTIONS *` is not a path: it takes the general way, exactly as before.
        let star: Uri = "*".parse().unwrap();
        let old_way = "http://127.0.0.1:3000*"
            .parse::<Uri>()
            .map(|u| u.to_string());
        let got = plain
            .upstream_uri("http://127.0.0.1:3000", &star)
            .map(|u| u.to_string());
        assert_eq!(got.ok(), old_way.ok());
    }

    #[test]
    fn cookie_rewrite_leaves_a_non_utf8_cookie_header_alone() {
        let mut h = HeaderMap::new();
        h.append("cookie", HeaderValue::from_bytes(b"a=\xff").unwrap());
        rewrite_cookies(&mut h, "sp", false, None);
        assert_eq!(h.get("cookie").unwrap().as_bytes(), b"a=\xff");
    }

    #[test]
    fn cookie_rewrite_strips_session_and_chunks() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; sp=seal; sp.0=c0".parse().unwrap());
        h.append("cookie", "sp.1=c1; b=2".parse().unwrap());
        rewrite_cookies(&mut h, "sp", false, None);
        assert_eq!(h.get("cookie").unwrap(), "a=1; b=2");

        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; sp=old".parse().unwrap());
        let rep = vec![("sp".to_string(), "new".to_string())];
        rewrite_cookies(&mut h, "sp", true, Some(&rep));
        assert_eq!(h.get("cookie").unwrap(), "a=1; sp=new");
    }
}
