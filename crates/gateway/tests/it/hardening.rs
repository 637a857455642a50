//! Fixes from the black-box audit: public-path escapes through dot-segments and encoded
//! slashes, replay of `Idempotency-Key` requests with chunked bodies, and CSRF origin
//! checks on scheme + host + port.

use std::sync::atomic::Ordering;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// Sends `path` byte-for-byte (HTTP clients normalize dot-segments before sending) and
/// returns the status code.
async fn raw_get(base: &str, path: &str, extra: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{extra}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).unwrap_or_default();
    status
        .parse()
        .unwrap_or_else(|_| panic!("no status in {text:?}"))
}

const ESCAPES: &[&str] = &[
    "/public/../api/secret",
    "/public/%2e%2e/api/secret",
    "/public/%2E%2E/api/secret",
    "/public/.%2e/api/secret",
    "/public/..%2fapi/secret",
    "/public/..%2Fapi/secret",
    "/public%2f..%2fapi%2fsecret",
    "/public/..%5capi/secret",
    "/public/..\\api/secret",
    "/public/..;/api/secret",
    "/public;x/../api/secret",
    "/public//../api/secret",
    "/public/%252e%252e/api/secret",
    "/public/..%252fapi/secret",
    "/auth/../api/secret",
    "/public/./x",
];

#[tokio::test]
async fn public_path_escapes_are_refused_and_never_reach_upstream() {
    let h = Harness::start().await;
    // Sanity: the public path itself passes without a session, a protected one does not.
    assert_eq!(raw_get(&h.url, "/public/x", "").await, 200);
    assert_eq!(raw_get(&h.url, "/api/secret", "").await, 401);
    // A path is public only if every reading of it is (issue 8 item 3): the raw
    // spelling `/%70ublic/x` does not match `/public/**`, so it needs a session.
    assert_eq!(raw_get(&h.url, "/%70ublic/x", "").await, 401);
    assert_eq!(raw_get(&h.url, "/public/a%20b", "").await, 200);
    let hits = h.upstream.hits.load(Ordering::SeqCst);
    for p in ESCAPES {
        for q in ["", "?a=1"] {
            let status = raw_get(&h.url, &format!("{p}{q}"), "").await;
            assert_eq!(status, 400, "{p}{q} → {status}");
        }
    }
    // With a session, too: the path is refused, not proxied.
    let cookie = h.login().await;
    let status = raw_get(
        &h.url,
        "/public/%2e%2e/api/secret",
        &format!("Cookie: {cookie}\r\n"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        h.upstream.hits.load(Ordering::SeqCst),
        hits,
        "an escape attempt reached upstream"
    );
    // The refusal is the JSON error model.
    let resp = h.get("/public/..%2fapi/secret", "").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "bad_path");
}

fn chunked(parts: &'static [&'static [u8]]) -> reqwest::Body {
    let stream =
        futures_util::stream::iter(parts.iter().map(|p| Ok::<_, std::io::Error>(p.to_vec())));
    reqwest::Body::wrap_stream(stream)
}

async fn reject_current_token(h: &Harness, cookie: &str) {
    let (_, echo, _) = h.echo(cookie).await;
    let at = header_of(&echo, "authorization").unwrap();
    h.upstream
        .rejected
        .lock()
        .unwrap()
        .insert(at.trim_start_matches("Bearer ").to_owned());
}

#[tokio::test]
async fn chunked_post_with_idempotency_key_is_renewed_and_replayed_once() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    reject_current_token(&h, &cookie).await;
    let hits = h.upstream.hits.load(Ordering::SeqCst);
    let resp = h
        .http
        .post(format!("{}/picky", h.url))
        .header("cookie", &cookie)
        .header("idempotency-key", "k-chunked")
        .header("content-type", "application/json")
        .body(chunked(&[b"{\"n\":", b"1}"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(cookie_header(resp.headers()).is_some(), "renewed cookie");
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["body_len"], 7, "the replay carries the whole body");
    assert_eq!(h.refreshes(), 1);
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), hits + 2);

    // Without the key, the same request is sent once and its 401 passed on.
    let cookie = h.login().await;
    reject_current_token(&h, &cookie).await;
    let hits = h.upstream.hits.load(Ordering::SeqCst);
    let resp = h
        .http
        .post(format!("{}/picky", h.url))
        .header("cookie", &cookie)
        .body(chunked(&[b"{\"n\":", b"1}"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), hits + 1);
    assert_eq!(h.refreshes(), 1);
}

#[tokio::test]
async fn bodies_over_the_replay_limit_stream_whole_and_are_not_replayed() {
    let h = Harness::start_with(0, |c| c.proxy.replay_body_limit_bytes = 8).await;
    let cookie = h.login().await;
    // Under the limit: replayed.
    reject_current_token(&h, &cookie).await;
    let resp = h
        .http
        .post(format!("{}/picky", h.url))
        .header("cookie", &cookie)
        .header("idempotency-key", "small")
        .body(chunked(&[b"1234", b"5678"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.refreshes(), 1);

    // Over it (chunked, discovered while reading): delivered intact, once, no renewal.
    let cookie = h.login().await;
    reject_current_token(&h, &cookie).await;
    let hits = h.upstream.hits.load(Ordering::SeqCst);
    let resp = h
        .http
        .post(format!("{}/picky", h.url))
        .header("cookie", &cookie)
        .header("idempotency-key", "big-chunked")
        .body(chunked(&[b"12345", b"67890", b"abcdef"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), hits + 1);
    assert_eq!(h.refreshes(), 1);

    // Over it with a Content-Length: streamed, body complete upstream.
    h.upstream.rejected.lock().unwrap().clear();
    let resp = h
        .http
        .post(format!("{}/picky", h.url))
        .header("cookie", &cookie)
        .header("idempotency-key", "big")
        .body("0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["body_len"], 16);
    let resp = h
        .http
        .post(format!("{}/picky", h.url))
        .header("cookie", &cookie)
        .header("idempotency-key", "big-chunked-2")
        .body(chunked(&[b"12345", b"67890", b"abcdef"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(
        echo["body_len"], 16,
        "buffered head and streamed tail both arrive"
    );
}

#[tokio::test]
async fn csrf_compares_scheme_host_and_port() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    let port = h.url.rsplit(':').next().unwrap().to_owned();
    let hits = h.upstream.hits.load(Ordering::SeqCst);
    let forged: Vec<(Option<String>, Option<&str>)> = vec![
        // Same host and port, other scheme (the audit's finding).
        (Some(format!("https://127.0.0.1:{port}")), None),
        (
            Some(format!("https://127.0.0.1:{port}")),
            Some("same-origin"),
        ),
        // Same host, other port.
        (Some("http://127.0.0.1:1".into()), None),
        (Some("http://127.0.0.1".into()), None),
        (Some("null".into()), None),
        // A sibling origin of the same site is not the same origin.
        (None, Some("same-site")),
        (Some(h.url.clone()), Some("same-site")),
    ];
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        for (origin, site) in &forged {
            let mut r = h
                .http
                .request(method.clone(), format!("{}/echo", h.url))
                .header("cookie", &cookie);
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            if let Some(s) = site {
                r = r.header("sec-fetch-site", *s);
            }
            let resp = r.send().await.unwrap();
            assert_eq!(resp.status(), 403, "{method} {origin:?} {site:?}");
        }
    }
    // Login and logout forms: the same rule.
    let resp = h
        .http
        .post(format!("{}/auth/logout", h.url))
        .header("cookie", &cookie)
        .header("origin", format!("https://127.0.0.1:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), hits);
    // The real origin passes.
    let resp = h
        .http
        .post(format!("{}/echo", h.url))
        .header("cookie", &cookie)
        .header("origin", &h.url)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
