//! The gateway's request/response surface (issue 8, items 2, 3, 4, 7, 11 and the
//! suspected Upgrade item): what a client can make upstream believe, which paths count
//! as public, where the access token can be read, what leaks to upstream in `Cookie`,
//! and what a CDN may cache.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::routing::get;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// Sends a raw HTTP/1.1 request (`head` without the final blank line) and returns the
/// status code and the whole response text.
async fn raw(base: &str, head: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).unwrap_or_default().parse().unwrap();
    (status, text)
}

/// Every spoofable header the audit (and the frameworks behind it) care about, in the
/// spellings a client can choose.
const SPOOFED: &[&str] = &[
    "x-auth-request-user",
    "x_auth_request_user",
    "X_Auth_Request_Email",
    "x-auth_request-roles",
    "forwarded",
    "x-forwarded-for",
    "x_forwarded_for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "x-forwarded-user",
    "x-real-ip",
    "x_real_ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-proxyuser-ip",
    "x-host",
    "client-ip",
    "remote-user",
    "x-remote-user",
    "x-webauth-user",
    "x_custom_underscore",
];

fn spoofed_request(rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let mut h = HeaderMap::new();
    for n in SPOOFED {
        h.insert(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_static("203.0.113.66"),
        );
    }
    rb.headers(h)
}

fn assert_clean(echo: &Value, port: u16) {
    let headers = echo["headers"].as_object().unwrap();
    for (name, values) in headers {
        let joined = values.to_string();
        assert!(
            !joined.contains("203.0.113.66"),
            "spoofed value reached upstream in {name}: {joined}"
        );
        assert!(
            !name.contains('_'),
            "underscore header reached upstream: {name}"
        );
    }
    assert_eq!(header_of(echo, "x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(header_of(echo, "x-forwarded-proto").unwrap(), "http");
    assert_eq!(
        header_of(echo, "x-forwarded-port").unwrap(),
        port.to_string()
    );
    assert_eq!(
        header_of(echo, "forwarded").unwrap(),
        format!("for=127.0.0.1;host=\"127.0.0.1:{port}\";proto=http")
    );
    assert!(header_of(echo, "x-forwarded-prefix").is_none());
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn spoofed_identity_and_forwarding_headers_never_reach_upstream() {
    let h = Harness::start_with(0, |c| c.proxy.identity_headers = true).await;
    let port = port_of(&h.url);
    // Anonymous, on a public path.
    let resp = spoofed_request(h.get("/public/x", ""))
        .header("authorization", "Bearer forged")
        .send()
        .await
        .unwrap();
    let echo: Value = resp.json().await.unwrap();
    assert_clean(&echo, port);
    assert!(header_of(&echo, "authorization").is_none());

    // With a session: the gateway's identity and token, nothing of the client's.
    let cookie = h.login().await;
    let resp = spoofed_request(h.get("/echo", &cookie))
        .header("accept", "application/json")
        .header("authorization", "Bearer forged")
        .send()
        .await
        .unwrap();
    let echo: Value = resp.json().await.unwrap();
    assert_clean(&echo, port);
    assert!(header_of(&echo, "x-auth-request-user").is_some());
    assert!(
        header_of(&echo, "authorization")
            .unwrap()
            .starts_with("Bearer ey")
    );
    assert_eq!(
        echo["headers"]["x-auth-request-user"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn client_authorization_is_stripped_also_when_the_token_goes_in_another_header() {
    let h = Harness::start_with(0, |c| c.proxy.authorization_header = "x-access".into()).await;
    let cookie = h.login().await;
    for path_cookie in [("/public/x", ""), ("/echo", cookie.as_str())] {
        let echo: Value = h
            .get(path_cookie.0, path_cookie.1)
            .header("accept", "application/json")
            .header("authorization", "Bearer forged")
            .header("x_access", "Bearer forged")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(header_of(&echo, "authorization").is_none(), "{echo}");
        let access = header_of(&echo, "x-access");
        assert!(access.as_deref() != Some("Bearer forged"), "{echo}");
    }
}

#[tokio::test]
async fn underscore_headers_pass_only_when_allowed_and_never_as_identity() {
    let h = Harness::start_with(0, |c| c.proxy.allow_underscores_in_headers = true).await;
    let echo: Value = h
        .get("/public/x", "")
        .header("x_custom_thing", "kept")
        .header("x_auth_request_user", "admin")
        .header("x_forwarded_for", "203.0.113.66")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(header_of(&echo, "x_custom_thing").unwrap(), "kept");
    assert!(header_of(&echo, "x_auth_request_user").is_none());
    assert!(header_of(&echo, "x_forwarded_for").is_none());
}

#[tokio::test]
async fn trusted_proxy_forwarding_is_extended_not_replaced() {
    let h = Harness::start_with(0, |c| c.trust_forwarded_headers = true).await;
    let echo: Value = h
        .get("/public/x", "")
        .header("x-forwarded-for", "198.51.100.7, 2001:db8::1")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-real-ip", "203.0.113.66")
        .header("true-client-ip", "203.0.113.66")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        header_of(&echo, "x-forwarded-for").unwrap(),
        "198.51.100.7, 2001:db8::1, 127.0.0.1"
    );
    assert_eq!(header_of(&echo, "x-forwarded-proto").unwrap(), "https");
    assert_eq!(
        header_of(&echo, "x-forwarded-host").unwrap(),
        "app.example.com"
    );
    assert_eq!(header_of(&echo, "x-forwarded-port").unwrap(), "443");
    assert_eq!(
        header_of(&echo, "forwarded").unwrap(),
        "for=198.51.100.7, for=\"[2001:db8::1]\", for=127.0.0.1;host=\"app.example.com\";proto=https"
    );
    assert!(header_of(&echo, "x-real-ip").is_none());
    assert!(header_of(&echo, "true-client-ip").is_none());
}

/// What a trusted proxy sends is still decided on: a `Forwarded` value that is not
/// visible ASCII is dropped (the others pass, trimmed), and an `X-Forwarded-Host` that
/// is not a plain host name is not quoted into this hop's element, where a `"` would let
/// it forge one (`for=` of its choosing).
#[tokio::test]
async fn trusted_forwarded_values_are_still_checked() {
    let h = Harness::start_with(0, |c| c.trust_forwarded_headers = true).await;
    let echo: Value = h
        .get("/public/x", "")
        .header("forwarded", "  for=192.0.2.60;proto=https ")
        .header(
            "forwarded",
            reqwest::header::HeaderValue::from_bytes(b"for=\xff").unwrap(),
        )
        .header("x-forwarded-host", "evil.example\";for=203.0.113.9")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        header_of(&echo, "forwarded").unwrap(),
        "for=192.0.2.60;proto=https, for=127.0.0.1;proto=http"
    );
}

#[tokio::test]
async fn method_override_headers_are_dropped_from_safe_requests() {
    let h = Harness::start().await;
    let echo: Value = h
        .get("/public/x", "")
        .header("x-http-method-override", "DELETE")
        .header("x-method-override", "DELETE")
        .header("x-http-method", "DELETE")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for n in [
        "x-http-method-override",
        "x-method-override",
        "x-http-method",
    ] {
        assert!(header_of(&echo, n).is_none(), "{n}");
    }
}

/// Item 7: the sealed cookie never reaches upstream, whatever else `Cookie` holds.
#[tokio::test]
async fn session_cookie_is_stripped_whatever_the_cookie_header_holds() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    let variants: Vec<Vec<Vec<u8>>> = vec![
        vec![format!("name=José; {cookie}").into_bytes()],
        vec![
            format!("a=\u{7f}x; {cookie}; b=2")
                .replace('\u{7f}', "")
                .into_bytes(),
        ],
        vec![[b"a=\xff\xfe; ".as_slice(), cookie.as_bytes()].concat()],
        vec![[cookie.as_bytes(), b" ;  z=\xe9t\xe9"].concat()],
        vec![b"name=Jos\xc3\xa9".to_vec(), cookie.clone().into_bytes()],
        vec![format!("q=\"quoted; value\";\t{}", cookie.replace('=', " = ")).into_bytes()],
    ];
    for (i, values) in variants.iter().enumerate() {
        let mut rb = h.get("/echo", "").header("accept", "application/json");
        for v in values {
            rb = rb.header("cookie", HeaderValue::from_bytes(v).unwrap());
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), 200, "variant {i}");
        let echo: Value = resp.json().await.unwrap();
        let sent = echo["headers"]["cookie"].to_string();
        assert!(
            !sent.contains("Fe26."),
            "variant {i}: the sealed cookie reached upstream: {sent}"
        );
        assert!(sent != "null", "variant {i}: the other cookies were lost");
    }
}

async fn cdn_upstream() -> String {
    let app = Router::new()
        .route(
            "/cdn",
            get(|| async {
                (
                    [
                        ("cdn-cache-control", "max-age=3600"),
                        ("surrogate-control", "max-age=3600"),
                        ("cloudflare-cdn-cache-control", "max-age=3600"),
                        ("edge-control", "cache-maxage=1h"),
                        ("x-accel-expires", "3600"),
                        ("cache-control", "public, max-age=3600"),
                    ],
                    "cacheable?",
                )
            }),
        )
        .route(
            "/app-session",
            get(|| async {
                (
                    [
                        ("set-cookie", "sallyport=written-by-the-app; Path=/"),
                        ("cdn-cache-control", "max-age=3600"),
                        ("surrogate-control", "max-age=3600"),
                    ],
                    "app wrote the session",
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    format!("http://{addr}")
}

fn assert_uncacheable(h: &HeaderMap, what: &str) {
    for n in [
        "cdn-cache-control",
        "surrogate-control",
        "cloudflare-cdn-cache-control",
        "edge-control",
        "x-accel-expires",
    ] {
        assert!(
            h.get(n).is_none(),
            "{what}: {n} survived next to Set-Cookie"
        );
    }
    assert_eq!(h["cache-control"], "private, no-store", "{what}");
}

/// Item 11: a response carrying the session cookie is never cacheable by a CDN.
#[tokio::test]
async fn cdn_cache_headers_never_accompany_the_session_cookie() {
    let backend = start_backend(0).await;
    let up = cdn_upstream().await;
    let (url, _gw, clock) = start_gateway(config(&backend, &up)).await;
    let http = client();
    let login = login_at(&http, &url).await;
    assert_uncacheable(login.headers(), "login");
    let cookie = cookie_header(login.headers()).unwrap();
    let get = |path: &str, cookie: &str| {
        http.get(format!("{url}{path}"))
            .header("cookie", cookie)
            .send()
    };

    // Without a cookie to set, upstream's caching headers are upstream's business.
    let plain = get("/cdn", &cookie).await.unwrap();
    assert!(plain.headers().get("set-cookie").is_none());
    assert!(plain.headers().get("cdn-cache-control").is_some());

    // Renewal: the new cookie rides on upstream's response.
    clock.advance_ms(16 * 60 * 1000);
    let renewed = get("/cdn", &cookie).await.unwrap();
    assert!(renewed.headers().get("set-cookie").is_some());
    assert_uncacheable(renewed.headers(), "renewal");
    let cookie = cookie_header(renewed.headers()).unwrap();

    // The app writes the session cookie itself.
    let app = get("/app-session", &cookie).await.unwrap();
    assert_uncacheable(app.headers(), "app-written session cookie");

    let logout = http
        .post(format!("{url}/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(clears_cookie(logout.headers()));
    assert_uncacheable(logout.headers(), "logout");
}

/// Suspected item: only WebSocket upgrades reach upstream, and never anonymously on a
/// protected path.
#[tokio::test]
async fn only_websocket_upgrades_and_never_anonymously_beyond_public_paths() {
    let h = Harness::start().await;
    let before = h.upstream.hits.load(Ordering::SeqCst);
    let (status, text) = raw(
        &h.url,
        "GET /public/x HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("upgrade_refused"), "{text}");
    let (status, _) = raw(
        &h.url,
        "GET /public/x HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    .await;
    assert_eq!(status, 400);
    // A WebSocket handshake to a protected path without a session: 401, never upstream.
    let (status, _) = raw(
        &h.url,
        "GET /ws HTTP/1.1\r\nAccept: application/json\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), before);
}

const PARAMETER_PATHS: &[&str] = &[
    "/admin/secret;.css",
    "/admin;/secret.css",
    "/admin/secret%3B.css",
    "/admin/secret%3b.css",
    "/admin/secret%253B.css",
    "/admin/secret;jsessionid=1.css",
    "/admin/secret;x/.css",
];

/// Item 3: `;` path parameters (and their encodings) never make a path public.
#[tokio::test]
async fn path_parameters_do_not_defeat_extension_globs() {
    let h = Harness::start_with(0, |c| c.public_paths = vec!["**/*.css".into()]).await;
    let before = h.upstream.hits.load(Ordering::SeqCst);
    for p in PARAMETER_PATHS {
        let (status, text) = raw(
            &h.url,
            &format!("GET {p} HTTP/1.1\r\nAccept: application/json"),
        )
        .await;
        assert_eq!(status, 401, "{p} was not treated as protected: {text}");
    }
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), before);
    // A real stylesheet stays public, and a session still reaches the parameter paths.
    let (status, _) = raw(&h.url, "GET /a/b.css HTTP/1.1").await;
    assert_eq!(status, 200);
    let cookie = h.login().await;
    let (status, _) = raw(
        &h.url,
        &format!("GET /admin/secret;.css HTTP/1.1\r\nCookie: {cookie}"),
    )
    .await;
    assert_eq!(status, 200);

    // The same rule in forward-auth: verify answers 200 anonymously only for a public
    // URI, and only when every URI header the proxies send is public.
    let admin = admin_of(&h.url);
    let verify = |uri: &'static str, forwarded: Option<&'static str>| {
        let mut rb = h
            .http
            .get(format!("{admin}/auth/verify"))
            .header("x-original-uri", uri);
        if let Some(f) = forwarded {
            rb = rb.header("x-forwarded-uri", f);
        }
        async move { rb.send().await.unwrap() }
    };
    let ok = verify("/a/b.css?v=1", None).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get("authorization").is_none());
    for p in PARAMETER_PATHS {
        let r = h
            .http
            .get(format!("{admin}/auth/verify"))
            .header("x-original-uri", *p)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "verify: {p}");
    }
    assert_eq!(
        verify("/a/b.css", Some("/admin/secret")).await.status(),
        401
    );
    assert_eq!(
        verify("/admin/secret", Some("/a/b.css")).await.status(),
        401
    );
    assert_eq!(verify("/a/../admin.css", None).await.status(), 400);
    // Either header can carry the escape, and a value that is not text is no path.
    assert_eq!(
        verify("/a/b.css", Some("/a/%2e%2e/admin.css"))
            .await
            .status(),
        400
    );
    let r = h
        .http
        .get(format!("{admin}/auth/verify"))
        .header(
            "x-original-uri",
            HeaderValue::from_bytes(b"/a/\xff.css").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

fn token_free(what: &str, headers: &HeaderMap, body: &str, token: &str) {
    for (n, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes());
        assert!(!v.contains(token), "{what}: token in response header {n}");
        assert!(
            !v.starts_with("Bearer "),
            "{what}: bearer in response header {n}"
        );
    }
    assert!(!body.contains(token), "{what}: token in the response body");
}

/// Item 4: a browser on the public listener never receives the access token, from any
/// gateway route, with `expose_access_token = false`.
#[tokio::test]
async fn a_browser_never_receives_the_access_token_from_the_public_listener() {
    let h = Harness::start().await;
    let origin = h.url.clone();
    let login = h
        .http
        .post(format!("{}/auth/login", h.url))
        .header("origin", &origin)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = cookie_header(login.headers()).unwrap();
    let lh = login.headers().clone();
    let body = login.text().await.unwrap();
    // The token, as the reverse proxy gets it on the admin listener.
    let verified = h.admin_get("/auth/verify", &cookie).send().await.unwrap();
    assert_eq!(verified.status(), 200);
    let token = verified.headers()["authorization"]
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();
    assert!(token.len() > 20);
    token_free("login", &lh, &body, &token);

    let fetch = |method: reqwest::Method, path: &str| {
        h.http
            .request(method, format!("{}{path}", h.url))
            .header("cookie", &cookie)
            .header("origin", &origin)
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "cors")
            .header("accept", "*/*")
    };
    for (method, path) in [
        (reqwest::Method::GET, "/auth/verify"),
        (reqwest::Method::POST, "/auth/verify"),
        (reqwest::Method::GET, "/auth/verify?x=1"),
        (reqwest::Method::GET, "/auth/session"),
        (reqwest::Method::POST, "/auth/refresh"),
        (reqwest::Method::GET, "/auth/client.js"),
        (reqwest::Method::GET, "/auth/anything"),
    ] {
        let resp = fetch(method.clone(), path).send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        token_free(&format!("{method} {path}"), &headers, &body, &token);
        if path.starts_with("/auth/verify") {
            assert_eq!(
                status, 404,
                "{method} {path}: verify on the public listener"
            );
        }
    }
    // Health and metrics are the admin listener's; the public paths belong to upstream.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let echo: Value = h
            .get(path, &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(echo["uri"], path, "{path} did not reach upstream");
    }
    // And the admin listener serves nothing else: no login, no proxy.
    assert_eq!(
        h.admin_get("/auth/login", "")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        h.admin_get("/echo", &cookie).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn health_on_the_public_listener_only_when_asked_for() {
    let h = Harness::start_with(0, |c| c.admin.health_on_public_listener = true).await;
    let text = h
        .get("/healthz", "")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "ok\n");
    assert_eq!(h.get("/readyz", "").send().await.unwrap().status(), 200);
    let cookie = h.login().await;
    let echo: Value = h
        .get("/metrics", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["uri"], "/metrics");
}

#[tokio::test]
async fn verify_exposes_the_token_copy_only_when_configured() {
    let h = Harness::start_with(0, |c| c.session.expose_access_token = true).await;
    let cookie = h.login().await;
    let resp = h.admin_get("/auth/verify", &cookie).send().await.unwrap();
    assert!(resp.headers().get("x-auth-request-access-token").is_some());
}

/// Suspected item: verify must not let a client-supplied method header turn a
/// cross-site POST into a "GET". Whichever of nginx's `X-Original-Method` and
/// Traefik/Caddy's `X-Forwarded-Method` the proxy sets, the other is the client's.
#[tokio::test]
async fn verify_counts_any_claimed_unsafe_method_as_state_changing() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    for (original, forwarded) in [
        (Some("POST"), Some("GET")),
        (Some("GET"), Some("POST")),
        (Some("POST"), None),
        (None, Some("DELETE")),
        (Some("B@D"), None),
    ] {
        let mut rb = h
            .admin_get("/auth/verify", &cookie)
            .header("origin", "http://evil.test")
            .header("sec-fetch-site", "cross-site");
        if let Some(m) = original {
            rb = rb.header("x-original-method", m);
        }
        if let Some(m) = forwarded {
            rb = rb.header("x-forwarded-method", m);
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), 403, "{original:?} / {forwarded:?}");
        assert!(resp.headers().get("authorization").is_none());
    }
    let resp = h
        .admin_get("/auth/verify", &cookie)
        .header("origin", "http://evil.test")
        .header("x-original-method", "GET")
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "a cross-site GET (a link) is not a forgery"
    );
}

#[tokio::test]
async fn forwarding_headers_follow_the_public_origin() {
    let h = Harness::start_with(0, |c| {
        c.public_origin = Some("https://app.example.com:8443".into());
    })
    .await;
    let echo: Value = h
        .get("/public/x", "")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-port", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(header_of(&echo, "x-forwarded-proto").unwrap(), "https");
    assert_eq!(header_of(&echo, "x-forwarded-port").unwrap(), "8443");
    let port = port_of(&h.url);
    assert_eq!(
        header_of(&echo, "forwarded").unwrap(),
        format!("for=127.0.0.1;host=\"127.0.0.1:{port}\";proto=https")
    );
}
