//! Faults are not logouts: backend 5xx, slow, unreachable; upstream down or slow.

use serde_json::Value;

use crate::harness::*;

#[tokio::test]
async fn backend_5xx_keeps_session_and_uses_old_token_while_valid() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    let (_, echo, _) = h.echo(&cookie).await;
    let at1 = header_of(&echo, "authorization").unwrap();
    h.set_backend_mode(MODE_5XX);
    // Inside the leeway: renewal fails, the old (still valid) token is used.
    h.clock.advance_ms((15 * 60 - 10) * 1000);
    let (status, echo, set) = h.echo(&cookie).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&echo, "authorization").unwrap(), at1);
    assert!(set.is_none());

    // Expired: 503 + Retry-After, the cookie is kept (not cleared).
    h.clock.advance_ms(60 * 1000);
    let resp = h
        .get("/echo", &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    assert!(resp.headers().get("set-cookie").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "backend_unavailable");

    // Pages get a page, not a login redirect.
    let resp = h
        .get("/page", &cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("location").is_none());

    // The backend recovers: the same cookie renews and works.
    h.set_backend_mode(MODE_OK);
    let (status, _, set) = h.echo(&cookie).await;
    assert_eq!(status, 200);
    assert!(set.is_some());

    // Login while the backend is down: its own message and status.
    h.set_backend_mode(MODE_5XX);
    let resp = h
        .http
        .post(format!("{}/auth/login", h.url))
        .form(&[("username", USER), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let html = resp.text().await.unwrap();
    assert!(html.contains("unavailable"));
}

#[tokio::test]
async fn slow_backend_is_bounded_and_keeps_session() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    h.set_backend_mode(MODE_SLOW);
    h.expire_access_token();
    let (status, body, set) = h.echo(&cookie).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "backend_unavailable");
    assert!(set.is_none());
    h.set_backend_mode(MODE_OK);
    // The call outlives backend.timeout_ms (its late rotation is kept); requests
    // meanwhile join it and get 503, never 401; then the session renews.
    let mut status = 0;
    for _ in 0..300 {
        status = h.echo(&cookie).await.0.as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unreachable_backend_keeps_session_and_readyz_fails() {
    let backend = start_backend(0).await;
    let (_up, up_url) = start_upstream().await;
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut c = config(&backend, &up_url);
    c.backend.login_url = Some(format!("http://{dead}/api/login"));
    c.backend.refresh_url = Some(format!("http://{dead}/api/refresh-token"));
    c.backend.logout_url = Some(format!("http://{dead}/api/logout"));
    let (url, gateway, clock) = start_gateway(c).await;
    let now = sallyport_gateway::Clock::now_ms(&*clock);
    let session = sallyport_gateway::SessionData {
        is_logged_in: true,
        access_token: Some("opaque-token".into()),
        refresh_token: Some("some-refresh-token".into()),
        access_token_expires_at: Some(now / 1000 - 1),
        ..Default::default()
    };
    let set = gateway.seal_session(&session, now).unwrap();
    let cookie = set[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let http = client();
    let resp = http
        .get(format!("{url}/echo"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    assert!(resp.headers().get("set-cookie").is_none());
    let resp = http
        .get(format!("{}/readyz", admin_of(&url)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    // Logout still logs out locally when revocation cannot reach the backend.
    let resp = http
        .post(format!("{url}/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(clears_cookie(resp.headers()));
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let backend = start_backend(0).await;
    let (_up, up_url) = start_upstream().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut c = config(&backend, &format!("http://{dead}"));
    c.public_paths = vec!["/public/**".into()];
    let (url, _, _) = start_gateway(c).await;
    let resp = client()
        .get(format!("{url}/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.unwrap().contains("502"));

    let (url, _, _) = start_gateway({
        let mut c = config(&backend, &up_url);
        c.public_paths = vec!["/slow".into()];
        c
    })
    .await;
    let resp = client().get(format!("{url}/slow")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
}
