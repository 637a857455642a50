//! CSRF, open redirects, cookie tampering, unauthenticated API calls.

use std::sync::atomic::Ordering;

use crate::harness::*;

/// (Origin, Sec-Fetch-Site) combinations a cross-site attacker's browser would send.
const CROSS_SITE: &[(Option<&str>, Option<&str>)] = &[
    (Some("http://evil.example"), None),
    (Some("http://evil.example"), Some("cross-site")),
    (None, Some("cross-site")),
    (None, Some("same-site")),
    (Some("null"), None),
    (Some("http://127.0.0.1.evil.example"), None),
    (Some("https://127.0.0.1"), Some("same-origin")),
];

fn with_site(
    mut r: reqwest::RequestBuilder,
    origin: Option<&str>,
    site: Option<&str>,
) -> reqwest::RequestBuilder {
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    if let Some(s) = site {
        r = r.header("sec-fetch-site", s);
    }
    r
}

#[tokio::test]
async fn cross_site_state_changing_requests_never_reach_upstream() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    let before = h.upstream.hits.load(Ordering::SeqCst);
    for (origin, site) in CROSS_SITE {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let r = h
                .http
                .request(method.parse().unwrap(), format!("{}/echo", h.url))
                .header("cookie", &cookie)
                .body("x=1");
            let resp = with_site(r, *origin, *site).send().await.unwrap();
            assert_eq!(resp.status(), 403, "{method} {origin:?} {site:?}");
        }
    }
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), before);

    // Same-origin requests pass.
    let origin = h.url.clone();
    let resp = h
        .http
        .post(format!("{}/echo", h.url))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A cross-site GET is not state-changing: allowed.
    let resp = h
        .get("/echo", &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn login_logout_and_refresh_forms_are_csrf_protected() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    for (origin, site) in CROSS_SITE {
        let r = h
            .http
            .post(format!("{}/auth/login", h.url))
            .form(&[("username", USER), ("password", PASSWORD)]);
        let resp = with_site(r, *origin, *site).send().await.unwrap();
        assert_eq!(resp.status(), 403);
        assert!(resp.headers().get("set-cookie").is_none());

        let r = h
            .http
            .post(format!("{}/auth/logout", h.url))
            .header("cookie", &cookie);
        let resp = with_site(r, *origin, *site).send().await.unwrap();
        assert_eq!(resp.status(), 403);

        let r = h
            .http
            .post(format!("{}/auth/refresh", h.url))
            .header("cookie", &cookie);
        let resp = with_site(r, *origin, *site).send().await.unwrap();
        assert_eq!(resp.status(), 403);
    }
    // The session survived the forged logouts.
    assert_eq!(h.echo(&cookie).await.0, 200);
    assert_eq!(h.backend.revocations.load(Ordering::SeqCst), 0);
}

const OPEN_REDIRECTS: &[&str] = &[
    "//evil.com",
    "/\\evil.com",
    "/%5Cevil.com",
    "/%2F%2Fevil.com",
    "\\\\evil.com",
    "https:evil.com",
    "https://evil.com",
    "https://127.0.0.1.evil.com",
    "https://127.0.0.1@evil.com",
    "@evil.com",
    ".evil.com",
    "/\t/evil.com",
    "/%09/evil.com",
    "/\r\n/evil.com",
    "javascript:alert(1)",
    "data:text/html,x",
    "///evil.com",
];

#[tokio::test]
async fn next_is_only_a_same_site_path() {
    let h = Harness::start().await;
    let long = format!("/{}", "a".repeat(4096));
    let mut attacks: Vec<&str> = OPEN_REDIRECTS.to_vec();
    attacks.push(&long);
    for next in attacks {
        let resp = h
            .http
            .post(format!("{}/auth/login", h.url))
            .form(&[("username", USER), ("password", PASSWORD), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "{next:?}");
        assert_eq!(resp.headers()["location"], "/", "{next:?}");

        let resp = h
            .http
            .get(format!(
                "{}/auth/login?{}",
                h.url,
                serde_urlencoded::to_string([("next", next)]).unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let html = unescape(&resp.text().await.unwrap());
        assert!(html.contains("name=\"next\" value=\"/\""), "{next:?}");
    }
    // Same-site paths with query and fragment are kept.
    let resp = h
        .http
        .post(format!("{}/auth/login", h.url))
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("next", "/a/b?c=d#e"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], "/a/b?c=d#e");

    // A scheme-relative request path is refused before any redirect is built from it.
    let resp = h
        .get("//evil.com/x", "")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // The middleware's own redirect keeps an ordinary path (query included) as `next`.
    let resp = h
        .get("/deep/page?x=1", "")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let loc = resp.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with("/auth/login?next=/deep/page"), "{loc}");
}

#[tokio::test]
async fn tampered_cookies_are_logged_out_never_5xx() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    let (name, value) = cookie.split_once('=').unwrap();
    let bytes = value.as_bytes();
    let mut tried = 0;
    let step = (bytes.len() / 120).max(1);
    for pos in (0..bytes.len()).step_by(step) {
        for bit in [0u8, 3, 5] {
            let mut b = bytes.to_vec();
            b[pos] ^= 1 << bit;
            let Ok(v) = String::from_utf8(b) else {
                continue;
            };
            if !v
                .bytes()
                .all(|c| c.is_ascii_graphic() && c != b';' && c != b',' && c != b'"' && c != b'\\')
            {
                continue;
            }
            if v == value {
                continue;
            }
            tried += 1;
            let resp = h
                .get("/echo", &format!("{name}={v}"))
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            let s = resp.status();
            assert!(!s.is_server_error(), "5xx for flip at {pos}");
            assert_eq!(s, 401, "tampered cookie accepted (pos {pos}, bit {bit})");
        }
    }
    assert!(tried > 100, "only {tried} variants tried");
    assert_eq!(h.echo(&cookie).await.0, 200);
}

#[tokio::test]
async fn unauthenticated_api_calls_get_401_json_and_no_cookie() {
    let h = Harness::start().await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let r = h
            .get("/api/things", "")
            .header("accept", "application/json")
            .send();
        tasks.push(tokio::spawn(r));
    }
    for t in tasks {
        let resp = t.await.unwrap().unwrap();
        assert_eq!(resp.status(), 401);
        let www = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(www.contains("session_expired"), "{www}");
        assert!(resp.headers().get("set-cookie").is_none());
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "session_expired");
    }
    // A page navigation is redirected with next.
    let resp = h
        .get("/reports?year=2025", "")
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        "/auth/login?next=/reports%3Fyear%3D2025"
    );
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), 0);
}
