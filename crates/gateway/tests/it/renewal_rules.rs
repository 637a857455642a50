//! The renewal rule against a backend that revokes on reuse: a refused request never
//! spends the refresh token, a client that goes away mid-renewal loses nothing, a cookie
//! without a `sid` keeps one id across renewals, and logout survives a restart.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::HeaderMap;
use sallyport_gateway::{Clock, SessionData};
use serde_json::{Value, json};

use crate::harness::{client, cookie_header, logout, start_gateway};
use crate::single_use::{self, SingleUse, start_checking_upstream, start_single_use};

const EXPIRE_MS: i64 = 16 * 60 * 1000;

async fn get(url: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(format!("{url}/app"))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

/// Waits (bounded) until the backend has answered `n` refresh calls.
async fn wait_refreshes_done(b: &SingleUse, n: usize) {
    for _ in 0..500 {
        if b.refreshes_done.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the backend never answered {n} refresh calls");
}

#[tokio::test]
async fn refused_cross_site_request_does_not_spend_the_refresh_token() {
    let b = start_single_use().await;
    let up = start_checking_upstream(b.clone()).await;
    let (url, _gw, clock) = start_gateway(single_use::config(&b, &up)).await;
    let cookie = single_use::login(&url).await;
    clock.advance_ms(EXPIRE_MS);

    // A forged POST, and a forged non-GET through /auth/verify, at the renewal moment.
    let resp = client()
        .post(format!("{url}/app"))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(cookie_header(resp.headers()).is_none());
    let resp = client()
        .get(format!("{}/auth/verify", crate::harness::admin_of(&url)))
        .header("cookie", &cookie)
        .header("x-forwarded-method", "POST")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        b.refreshes.load(Ordering::SeqCst),
        0,
        "a refused request redeemed the refresh token"
    );

    // The user's next request renews once and the family lives.
    let resp = get(&url, &cookie).await;
    assert_eq!(resp.status(), 200);
    let renewed = cookie_header(resp.headers()).expect("renewed cookie");
    assert_eq!(b.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(get(&url, &renewed).await.status(), 200);
    assert_eq!(b.revoked_families(), 0);

    // Anonymous forged requests keep their old answer (401), also with a bad cookie.
    let resp = client()
        .post(format!("{url}/app"))
        .header("origin", "http://evil.example")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn client_gone_mid_renewal_loses_nothing() {
    let b = start_single_use().await;
    let up = start_checking_upstream(b.clone()).await;
    let (url, _gw, clock) = start_gateway(single_use::config(&b, &up)).await;
    let cookie = single_use::login(&url).await;
    clock.advance_ms(EXPIRE_MS);
    b.delay_ms.store(300, Ordering::SeqCst);

    // The client gives up while the backend is rotating the token.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let r = impatient
        .get(format!("{url}/app"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert!(r.is_err(), "the client was meant to give up");
    wait_refreshes_done(&b, 1).await;
    b.delay_ms.store(0, Ordering::SeqCst);

    // The next request with the old cookie gets the rotated tokens, not a reuse.
    let resp = get(&url, &cookie).await;
    assert_eq!(resp.status(), 200);
    let renewed = cookie_header(resp.headers()).expect("renewed cookie");
    assert_eq!(b.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(b.reuse_revocations.load(Ordering::SeqCst), 0);
    assert_eq!(get(&url, &renewed).await.status(), 200);
}

/// Seals an iron-session style cookie without `sid` holding fresh backend tokens.
async fn foreign_cookie(b: &SingleUse, gw: &sallyport_gateway::Gateway, now_ms: u64) -> String {
    let tokens: Value = client()
        .post(format!("{}/api/login", b.url))
        .json(&json!({"username": "alice", "password": crate::harness::PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data: SessionData = serde_json::from_value(json!({
        "isLoggedIn": true,
        "accessToken": tokens["accessToken"],
        "refreshToken": tokens["refreshToken"],
        "accessTokenExpiresAt": now_ms / 1000 + 900,
        "cart": [1, 2],
    }))
    .unwrap();
    assert!(data.sid.is_none());
    let mut h = HeaderMap::new();
    for v in gw.seal_session(&data, now_ms).unwrap() {
        h.append("set-cookie", v);
    }
    cookie_header(&h).unwrap()
}

#[tokio::test]
async fn cookie_without_sid_cannot_come_back_under_a_new_id() {
    let b = start_single_use().await;
    let up = start_checking_upstream(b.clone()).await;
    let mut c = single_use::config(&b, &up);
    // No backend revocation: only the gateway's logout record can refuse the cookies.
    c.backend.logout_url = None;
    let (url, gw, clock) = start_gateway(c).await;
    let old = foreign_cookie(&b, &gw, clock.now_ms()).await;
    clock.advance_ms(EXPIRE_MS);

    // Two requests renew the same cookie (the second from the grace map).
    let first = get(&url, &old).await;
    assert_eq!(first.status(), 200);
    let x = cookie_header(first.headers()).unwrap();
    let second = get(&url, &old).await;
    assert_eq!(second.status(), 200);
    let y = cookie_header(second.headers()).unwrap();
    assert_eq!(b.refreshes.load(Ordering::SeqCst), 1);

    // Logging out one of them ends all three: the other renewal and the original.
    assert_eq!(logout(&url, &y).await, 204);
    assert_eq!(
        get(&url, &x).await.status(),
        401,
        "the sibling renewal survived logout"
    );
    assert_eq!(
        get(&url, &old).await.status(),
        401,
        "the pre-logout cookie came back"
    );
}

#[tokio::test]
async fn logout_survives_a_restart_without_redis() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let b = start_single_use().await;
    let up = start_checking_upstream(b.clone()).await;
    let mut c = single_use::config(&b, &up);
    // No backend revocation: the logout record is all that stops a captured cookie.
    c.backend.logout_url = None;
    c.store.persist_logouts = true;
    c.store.state_dir = Some(state.clone());

    let (url, gw, clock) = start_gateway(c.clone()).await;
    let cookie = single_use::login(&url).await;
    let other = single_use::login(&url).await;
    assert_eq!(logout(&url, &cookie).await, 204);
    assert_eq!(get(&url, &cookie).await.status(), 401);
    drop(gw);

    // "Restart": a new gateway on the same directory.
    let (url2, _gw2, clock2) = start_gateway(c).await;
    clock2.advance_ms(clock.now_ms() as i64 - clock2.now_ms() as i64);
    assert_eq!(
        get(&url2, &cookie).await.status(),
        401,
        "a restart undid the logout"
    );
    // Not even a renewal brings it back.
    clock2.advance_ms(EXPIRE_MS);
    assert_eq!(get(&url2, &cookie).await.status(), 401);
    assert_eq!(b.refreshes.load(Ordering::SeqCst), 0);
    // Another session is untouched.
    assert_eq!(get(&url2, &other).await.status(), 200);

    // Private files, and no token or id in the clear.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    for entry in std::fs::read_dir(&state).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("rt-"), "a refresh token in {}", p.display());
    }
}

#[tokio::test]
async fn late_answer_from_a_slow_backend_is_kept_not_reused() {
    let b = start_single_use().await;
    let up = start_checking_upstream(b.clone()).await;
    let mut c = single_use::config(&b, &up);
    c.backend.timeout_ms = 300;
    let (url, _gw, clock) = start_gateway(c).await;
    let cookie = single_use::login(&url).await;
    clock.advance_ms(EXPIRE_MS);
    // Slower than backend.timeout_ms, but it does rotate the token.
    b.delay_ms.store(700, Ordering::SeqCst);

    let resp = get(&url, &cookie).await;
    assert_eq!(
        resp.status(),
        503,
        "the request stops waiting: a fault, session kept"
    );
    assert!(resp.headers().contains_key("retry-after"));
    wait_refreshes_done(&b, 1).await;
    b.delay_ms.store(0, Ordering::SeqCst);

    // The late rotation was kept: the next request uses it instead of a reuse.
    let resp = get(&url, &cookie).await;
    assert_eq!(resp.status(), 200);
    assert!(cookie_header(resp.headers()).is_some());
    assert_eq!(b.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(b.reuse_revocations.load(Ordering::SeqCst), 0);
}
