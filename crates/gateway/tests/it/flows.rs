//! Routes: login (form and JSON), logout, session, refresh, verify, client.js, health.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn login_page_renders_accessible_form_without_js() {
    let h = Harness::start().await;
    let resp = h
        .http
        .get(format!("{}/auth/login?next=/dashboard%3Fa%3D1", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = unescape(&resp.text().await.unwrap());
    assert!(html.contains("<form method=\"post\" action=\"/auth/login\""));
    assert!(html.contains("<label for=\"username\">"));
    assert!(html.contains("<label for=\"password\">"));
    assert!(html.contains("name=\"next\" value=\"/dashboard?a=1\""));
    assert!(html.contains("autofocus"));
    assert!(!html.contains("role=\"alert\""));
}

#[tokio::test]
async fn form_login_redirects_to_next_and_sets_a_cookie() {
    let h = Harness::start().await;
    let resp = h
        .http
        .post(format!("{}/auth/login", h.url))
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("next", "/dashboard?tab=2"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/dashboard?tab=2");
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("sallyport=Fe26.2*"), "{set}");
    assert!(set.contains("HttpOnly"));
    assert!(set.contains("SameSite=Lax"));
    let cookie = cookie_header(resp.headers()).unwrap();
    let (status, echo, _) = h.echo(&cookie).await;
    assert_eq!(status, 200);
    assert!(
        header_of(&echo, "authorization")
            .unwrap()
            .starts_with("Bearer ey")
    );
}

#[tokio::test]
async fn wrong_password_rerenders_form_with_generic_message_and_username_kept() {
    let h = Harness::start().await;
    for (user, pass) in [(USER, "wrong password"), ("nobody", "whatever")] {
        let resp = h
            .http
            .post(format!("{}/auth/login", h.url))
            .form(&[("username", user), ("password", pass), ("next", "/x")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().get("set-cookie").is_none());
        let html = unescape(&resp.text().await.unwrap());
        assert!(html.contains("role=\"alert\""));
        assert!(html.contains("Incorrect username or password."));
        assert!(html.contains(&format!("value=\"{user}\"")));
        assert!(html.contains("name=\"next\" value=\"/x\""));
        assert!(!html.contains(pass));
    }
}

#[tokio::test]
async fn json_login_returns_session_view_without_refresh_token() {
    let h = Harness::start().await;
    let resp = h
        .http
        .post(format!("{}/auth/login", h.url))
        .json(&json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["isLoggedIn"], true);
    assert_eq!(view["user"]["name"], "Alice Example");
    assert_eq!(view["user"]["roles"], json!(["admin", "dev"]));
    assert!(view["accessTokenExpiresAt"].as_u64().is_some());
    let text = view.to_string().to_lowercase();
    assert!(!text.contains("refresh"));
    assert!(view.get("accessToken").is_none());

    let resp = h
        .http
        .post(format!("{}/auth/login", h.url))
        .json(&json!({"username": USER, "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_credentials");
    assert!(body["message"].is_string());

    // Malformed input is a 4xx, never a 5xx.
    for (ct, body) in [
        ("application/json", "{not json"),
        ("application/json", "[]"),
        ("text/plain", "username=a"),
        ("application/x-www-form-urlencoded", "username=&password="),
    ] {
        let resp = h
            .http
            .post(format!("{}/auth/login", h.url))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_client_error(),
            "{ct} {body}: {}",
            resp.status()
        );
    }
}

#[tokio::test]
async fn session_view_is_read_only_and_can_expose_access_token() {
    let h = Harness::start_with(0, |c| c.session.expose_access_token = true).await;
    let resp = h.get("/auth/session", "").send().await.unwrap();
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["isLoggedIn"], false);

    let cookie = h.login().await;
    h.expire_access_token();
    let before = h.refreshes();
    let resp = h.get("/auth/session", &cookie).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("set-cookie").is_none(),
        "session view re-set the cookie"
    );
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["isLoggedIn"], true);
    assert!(view["accessToken"].as_str().unwrap().starts_with("ey"));
    assert!(!view.to_string().to_lowercase().contains("refreshtoken"));
    assert_eq!(h.refreshes(), before, "session view renewed the session");

    let resp = h
        .get("/auth/session", "sallyport=garbage")
        .send()
        .await
        .unwrap();
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["isLoggedIn"], false);
    assert_eq!(view["error"], "session_expired");
}

#[tokio::test]
async fn refresh_route_forces_one_renewal() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    let resp = h
        .http
        .post(format!("{}/auth/refresh", h.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.refreshes(), 1);
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let new_cookie = cookie_header(resp.headers()).unwrap();
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["isLoggedIn"], true);
    assert!(h.is_valid_cookie(&new_cookie));

    let resp = h
        .http
        .post(format!("{}/auth/refresh", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "session_expired");
}

#[tokio::test]
async fn logout_clears_cookie_revokes_and_old_cookie_is_refused() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    assert_eq!(h.echo(&cookie).await.0, 200);
    let resp = h
        .http
        .post(format!("{}/auth/logout", h.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(clears_cookie(resp.headers()));
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    assert_eq!(h.backend.revocations.load(Ordering::SeqCst), 1);

    // PP-06: the captured cookie replayed after logout is refused.
    let (status, body, set) = h.echo(&cookie).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "session_expired");
    assert!(set.is_none());
    // …also after its access token expired (no renewal with a revoked token).
    h.expire_access_token();
    assert_eq!(h.echo(&cookie).await.0, 401);
    assert_eq!(h.refreshes(), 0);

    // Form logout redirects to the login page.
    let cookie = h.login().await;
    let resp = h
        .http
        .post(format!("{}/auth/logout", h.url))
        .header("cookie", &cookie)
        .form(&[("x", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/auth/login");
}

#[tokio::test]
async fn logout_cannot_be_undone_by_a_straggler() {
    let h = Harness::start().await;
    let cookie = h.login().await;
    // Request A needs a renewal and then waits inside upstream.
    h.expire_access_token();
    let entered = h.upstream.entered.notified();
    let a = {
        let req = h
            .get("/hold", &cookie)
            .header("accept", "application/json")
            .send();
        tokio::spawn(req)
    };
    entered.await;
    let resp = h
        .http
        .post(format!("{}/auth/logout", h.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    h.upstream.release.notify_one();
    let a = a.await.unwrap().unwrap();
    assert_eq!(a.status(), 200);
    assert!(
        a.headers().get("set-cookie").is_none(),
        "a response to a request from before the logout re-set the cookie"
    );
}

#[tokio::test]
async fn verify_endpoint_for_auth_request() {
    let h = Harness::start().await;
    let resp = h.admin_get("/auth/verify", "").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());

    let cookie = h.login().await;
    let resp = h.admin_get("/auth/verify", &cookie).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ey")
    );
    // The oauth2-proxy style copy only with `session.expose_access_token`.
    assert!(resp.headers().get("x-auth-request-access-token").is_none());
    assert!(resp.headers().get("x-auth-request-user").is_some());
    assert!(resp.headers().get("set-cookie").is_none());

    // PP-10: a renewal in verify hands the new cookie back; the old cookie within the
    // grace window gets the same tokens without a second backend call.
    h.expire_access_token();
    let resp = h.admin_get("/auth/verify", &cookie).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let new_cookie = cookie_header(resp.headers()).unwrap();
    let at1 = resp.headers()["authorization"].clone();
    let resp = h.admin_get("/auth/verify", &cookie).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["authorization"], at1);
    assert_eq!(h.refreshes(), 1);
    assert!(h.is_valid_cookie(&new_cookie));
}

#[tokio::test]
async fn client_js_health_ready_metrics() {
    let h = Harness::start().await;
    let resp = h.get("/auth/client.js", "").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(
        h.admin_get("/healthz", "").send().await.unwrap().status(),
        200
    );
    assert_eq!(
        h.admin_get("/readyz", "").send().await.unwrap().status(),
        200
    );
    let _ = h.login().await;
    let text = h
        .admin_get("/metrics", "")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("sallyport_gateway_logins_total"), "{text}");
    assert_eq!(h.get("/auth/nope", "").send().await.unwrap().status(), 404);
    // Gateway routes are not proxied.
    assert_eq!(h.upstream.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn custom_login_template_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("login.html");
    std::fs::write(
        &path,
        "<h1>ACME</h1><form action=\"{{ action }}\">{{ error }}</form>",
    )
    .unwrap();
    let h = Harness::start_with(0, |c| c.login.template = Some(path.clone())).await;
    let html = h
        .get("/auth/login", "")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.starts_with("<h1>ACME</h1>"));
}

#[tokio::test]
async fn tokens_are_verified_against_the_jwks_when_configured() {
    let backend = start_backend(0).await;
    let (_up, up_url) = start_upstream().await;
    let mut c = config(&backend, &up_url);
    c.backend.jwks_url = Some(format!("{}/.well-known/jwks.json", backend.url));
    c.backend.jwt_issuer = Some(backend.url.clone());
    c.backend.jwt_audience = Some("sallyport".into());
    let mut wrong = c.clone();
    wrong.backend.jwt_audience = Some("someone-else".into());
    let (url, _, _) = start_gateway(c).await;
    let (wrong_url, _, _) = start_gateway(wrong).await;
    let login = |u: String| async move {
        client()
            .post(format!("{u}/auth/login"))
            .json(&json!({"username": USER, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(login(url).await, 200);
    // A token that does not verify is never stored in a cookie.
    assert_eq!(login(wrong_url).await, 503);
}
