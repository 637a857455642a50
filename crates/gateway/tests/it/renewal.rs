//! Renewal: proactive, single-flight, grace map, refusal, replay after upstream 401,
//! password rotation.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn proactive_renewal_sets_cookie_and_forwards_new_token() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    let (_, echo, set) = h.echo(&cookie).await;
    assert!(set.is_none(), "a fresh session must not be re-set");
    let at1 = header_of(&echo, "authorization").unwrap();

    // Inside the leeway (30 s) but not yet expired: renew before the token is used.
    h.clock.advance_ms((15 * 60 - 10) * 1000);
    let resp = h
        .get("/echo", &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    assert!(
        resp.headers()
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().contains("Cookie"))
    );
    let new_cookie = cookie_header(resp.headers()).expect("renewal sets the cookie");
    let echo: Value = resp.json().await.unwrap();
    let at2 = header_of(&echo, "authorization").unwrap();
    assert_ne!(
        at1, at2,
        "upstream must see the new token on the same request (PP-03)"
    );
    assert_eq!(h.refreshes(), 1);

    // PP-04: the next request with the new cookie does not renew again.
    let (status, echo, set) = h.echo(&new_cookie).await;
    assert_eq!(status, 200);
    assert!(set.is_none());
    assert_eq!(header_of(&echo, "authorization").unwrap(), at2);
    assert_eq!(h.refreshes(), 1);
}

#[tokio::test]
async fn fifty_concurrent_requests_share_one_refresh() {
    // Reuse interval 0: the issuer would revoke the session on a second use of the token.
    let h = Arc::new(Harness::start().await);
    let cookie = h.login().await;
    h.expire_access_token();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let h = h.clone();
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move { h.echo(&cookie).await }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        let (status, echo, set) = t.await.unwrap();
        assert_eq!(status, 200);
        let set = set.expect("every renewed response sets the cookie");
        assert!(h.is_valid_cookie(&set), "invalid Set-Cookie");
        tokens.insert(header_of(&echo, "authorization").unwrap());
    }
    assert_eq!(
        h.refreshes(),
        1,
        "exactly one refresh must reach the issuer"
    );
    assert_eq!(
        tokens.len(),
        1,
        "all 50 upstream calls carry the same new token"
    );

    // A late request with the old cookie reuses the result (grace map), no second call.
    let (status, _, set) = h.echo(&cookie).await;
    assert_eq!(status, 200);
    assert!(set.is_some());
    assert_eq!(h.refreshes(), 1);
}

/// Many sessions renewing at once, from several threads: the in-flight renewals are kept
/// in maps sharded by the refresh token's digest, and every session still gets exactly one
/// backend call, shared by all of its requests (a request that looked in another shard
/// than the one its session's call was put in would start a second call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_renewals_of_many_sessions_each_make_one_call() {
    const SESSIONS: usize = 24;
    const REQUESTS: usize = 6;
    let h = Arc::new(Harness::start().await);
    let mut cookies = Vec::new();
    for _ in 0..SESSIONS {
        cookies.push(h.login().await);
    }
    h.expire_access_token();
    let mut tasks = Vec::new();
    for (session, cookie) in cookies.iter().enumerate() {
        for _ in 0..REQUESTS {
            let h = h.clone();
            let cookie = cookie.clone();
            tasks.push(tokio::spawn(
                async move { (session, h.echo(&cookie).await) },
            ));
        }
    }
    let mut tokens = vec![std::collections::HashSet::new(); SESSIONS];
    for t in tasks {
        let (session, (status, echo, set)) = t.await.unwrap();
        assert_eq!(status, 200);
        assert!(set.is_some(), "every renewed response sets the cookie");
        tokens[session].insert(header_of(&echo, "authorization").unwrap());
    }
    assert_eq!(h.refreshes(), SESSIONS, "one refresh per session");
    for (session, t) in tokens.iter().enumerate() {
        assert_eq!(
            t.len(),
            1,
            "session {session}: its requests share one new token"
        );
    }
    let all: std::collections::HashSet<_> = tokens.iter().flatten().collect();
    assert_eq!(all.len(), SESSIONS, "each session has its own new token");

    // A late request with an old cookie is answered from the grace map; when the new
    // tokens expire in turn, each session renews once more.
    let mut renewed = Vec::new();
    for cookie in &cookies {
        let (status, _, set) = h.echo(cookie).await;
        assert_eq!(status, 200);
        renewed.push(set.expect("the grace map answers the old cookie"));
    }
    assert_eq!(h.refreshes(), SESSIONS, "the grace map, not a second call");
    h.expire_access_token();
    for cookie in &renewed {
        let (status, _, set) = h.echo(cookie).await;
        assert_eq!(status, 200);
        assert!(set.is_some());
    }
    assert_eq!(h.refreshes(), 2 * SESSIONS, "one new refresh per session");
}

#[tokio::test]
async fn refused_renewal_ends_the_session() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    // The backend revokes the session (an admin, or reuse detection).
    for s in h
        .backend
        .issuer
        .admin()
        .list_sessions(Some(USER))
        .await
        .unwrap()
    {
        h.backend
            .issuer
            .admin()
            .revoke_session(&s.id)
            .await
            .unwrap();
    }
    h.expire_access_token();
    let (status, body, _) = h.echo(&cookie).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "reauth_required");

    let resp = h
        .get("/dashboard?x=1", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        "/auth/login?next=/dashboard%3Fx%3D1"
    );
    assert!(clears_cookie(resp.headers()));
}

#[tokio::test]
async fn upstream_401_on_idempotent_request_renews_and_replays_once() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    let (_, echo, _) = h.echo(&cookie).await;
    let at1 = header_of(&echo, "authorization").unwrap();
    h.upstream
        .rejected
        .lock()
        .unwrap()
        .insert(at1.trim_start_matches("Bearer ").to_owned());
    let hits = h.upstream.hits.load(std::sync::atomic::Ordering::SeqCst);
    let resp = h
        .get("/picky", &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(cookie_header(resp.headers()).is_some());
    let echo: Value = resp.json().await.unwrap();
    assert_ne!(header_of(&echo, "authorization").unwrap(), at1);
    assert_eq!(h.refreshes(), 1);
    assert_eq!(
        h.upstream.hits.load(std::sync::atomic::Ordering::SeqCst),
        hits + 2
    );

    // A POST without Idempotency-Key is not replayed.
    let cookie = h.login().await;
    let (_, echo, _) = h.echo(&cookie).await;
    let at = header_of(&echo, "authorization").unwrap();
    h.upstream
        .rejected
        .lock()
        .unwrap()
        .insert(at.trim_start_matches("Bearer ").to_owned());
    let resp = h
        .http
        .post(format!("{}/picky", h.url))
        .header("cookie", &cookie)
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(h.refreshes(), 1);

    // …but with an Idempotency-Key it is, body included.
    let resp = h
        .http
        .post(format!("{}/picky", h.url))
        .header("cookie", &cookie)
        .header("idempotency-key", "k1")
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["body_len"], 7);
    assert_eq!(h.refreshes(), 2);
}

#[tokio::test]
async fn password_rotation_old_cookie_works_and_is_resealed() {
    let backend = start_backend(0).await;
    let (_up, up_url) = start_upstream().await;
    let old = "old-secret-old-secret-old-secret-0001";
    let new = "new-secret-new-secret-new-secret-0002";

    let mut c1 = config(&backend, &up_url);
    c1.session.secret = None;
    c1.session.secrets = [("1".to_owned(), old.to_owned())].into();
    let (url1, _, _) = start_gateway(c1.clone()).await;
    let http = client();
    let resp = http
        .post(format!("{url1}/auth/login"))
        .json(&json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookie = cookie_header(resp.headers()).unwrap();
    assert!(cookie.contains("Fe26.2*1*"));

    let mut c2 = c1.clone();
    c2.session.secrets.insert("2".into(), new.into());
    let (url2, _, _) = start_gateway(c2).await;
    let resp = http
        .get(format!("{url2}/echo"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resealed = cookie_header(resp.headers()).expect("re-sealed with the newest password");
    assert!(resealed.contains("Fe26.2*2*"), "{resealed}");

    // Session view never re-seals.
    let resp = http
        .get(format!("{url2}/auth/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("set-cookie").is_none());

    // Old password retired: the old cookie is no session (never a 5xx); the new one works.
    let mut c3 = c1.clone();
    c3.session.secrets = [("2".to_owned(), new.to_owned())].into();
    let (url3, _, _) = start_gateway(c3).await;
    let resp = http
        .get(format!("{url3}/echo"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(format!("{url3}/echo"))
        .header("cookie", &resealed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
