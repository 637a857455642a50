//! The shared logout store: a cookie logged out on one replica is refused by another
//! (real `redis-server` on loopback, from `SALLYPORT_TEST_REDIS_URL`), and an unreachable
//! store degrades to the local record without failing requests.

use serde_json::Value;

use crate::harness::*;

/// The test Redis URL. Unset (or empty) skips the test on a developer machine, but fails it
/// under CI (`CI` set to anything non-empty, as CI services and `scripts/test` do): a
/// suite that silently skips its Redis tests must not pass there.
pub(crate) fn redis_url() -> Option<String> {
    match std::env::var("SALLYPORT_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => panic!(
            "SALLYPORT_TEST_REDIS_URL is not set, and under CI the Redis tests must run, not \
             be skipped: start a throwaway server with scripts/lib/redis.sh (redis_start)"
        ),
        _ => {
            eprintln!("skipping: SALLYPORT_TEST_REDIS_URL is not set (scripts/lib/redis.sh)");
            None
        }
    }
}

async fn get(url: &str, path: &str, cookie: &str, accept: &str) -> reqwest::Response {
    client()
        .get(format!("{url}{path}"))
        .header("cookie", cookie)
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn logout_on_one_replica_is_refused_on_another() {
    let Some(redis) = redis_url() else {
        return;
    };
    // A unique key prefix keeps concurrent test runs apart in one Redis.
    let prefix = format!("sallyport-test-{}:", uuid::Uuid::new_v4());
    let tweak = |c: &mut sallyport_gateway::Config| {
        c.store.redis_url = Some(redis.clone());
        c.store.key_prefix = prefix.clone();
    };
    let h = Harness::start_with(0, tweak).await;
    let (_up2, up2_url) = start_upstream().await;
    let mut c2 = config(&h.backend, &up2_url);
    tweak(&mut c2);
    let (url2, _, _) = start_gateway(c2).await;

    let cookie = h.login().await;
    let other = h.login().await;
    // Both replicas accept the session before the logout.
    assert_eq!(
        get(&url2, "/echo", &cookie, "application/json")
            .await
            .status(),
        200
    );
    assert_eq!(logout(&h.url, &cookie).await, 204);

    // The captured cookie, replayed on the other replica: refused everywhere it counts.
    // First `{prefix}/refresh` (before any other request lets the replica remember the
    // logout locally): it does not renew the session, the backend is not even asked.
    let refreshes = h.refreshes();
    let refreshed = client()
        .post(format!("{url2}/auth/refresh"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 401);
    assert!(refreshed.headers().get("set-cookie").is_none());
    assert_eq!(h.refreshes(), refreshes, "a logged-out session was renewed");
    assert_eq!(
        get(&url2, "/echo", &cookie, "application/json")
            .await
            .status(),
        401
    );
    assert_eq!(
        get(&url2, "/page", &cookie, "text/html").await.status(),
        303
    );
    let view: Value = get(&url2, "/auth/session", &cookie, "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["isLoggedIn"], false);
    assert_eq!(
        get(
            &admin_of(&url2),
            "/auth/verify",
            &cookie,
            "application/json"
        )
        .await
        .status(),
        401
    );
    // On a public path the logged-out session gets no token.
    let echo: Value = get(&url2, "/public/x", &cookie, "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert!(header_of(&echo, "authorization").is_none(), "{echo}");
    // Another user's session is untouched.
    assert_eq!(
        get(&url2, "/echo", &other, "application/json")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn unreachable_store_keeps_serving_and_the_local_record() {
    // A port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let h = Harness::start_with(0, |c| {
        c.store.redis_url = Some(format!("redis://127.0.0.1:{dead}/0"));
        c.store.timeout_ms = 200;
    })
    .await;
    let cookie = h.login().await;
    // Pages and APIs keep working: a store fault is neither a 5xx nor a logout.
    assert_eq!(
        h.get("/page", &cookie)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, _, _) = h.echo(&cookie).await;
    assert_eq!(status, 200);
    // Logout still succeeds, and this replica remembers it.
    assert_eq!(logout(&h.url, &cookie).await, 204);
    let (status, _, _) = h.echo(&cookie).await;
    assert_eq!(status, 401);
    let metrics = h
        .http
        .get(format!("{}/metrics", admin_of(&h.url)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sallyport_gateway_store_errors_total"),
        "{metrics}"
    );
}

#[test]
fn bad_redis_url_is_a_startup_error_naming_the_setting() {
    let mut c = sallyport_gateway::Config::default();
    c.session.secret = Some(SECRET.into());
    c.session.secure = false;
    c.backend.login_url = Some("http://127.0.0.1:1/login".into());
    c.backend.refresh_url = Some("http://127.0.0.1:1/refresh".into());
    c.store.redis_url = Some("not a url".into());
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("store.redis_url"), "{err}");
}
