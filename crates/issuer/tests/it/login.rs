//! Login, `/api/me`, logout, failed logins, disabled accounts, password changes and
//! the login rate limit.

use super::*;

pub(crate) async fn login_me_refresh_logout(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let r = s.login("alice", "alice-password").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["tokenType"], "Bearer");
    assert_eq!(t["expiresIn"], 900);
    assert_eq!(t["refreshTokenExpiresIn"], 30 * 24 * 3600);
    let at = str_field(&t, "accessToken");
    let rt1 = str_field(&t, "refreshToken");
    assert!(rt1.len() >= 43, "at least 256 bits");

    // The access token: typ, kid, claims.
    let header = jsonwebtoken::decode_header(&at).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert!(header.kid.is_some());
    let claims = sallyport_jwt_claims(&at);
    for k in [
        "iss", "sub", "aud", "exp", "iat", "jti", "sid", "name", "roles",
    ] {
        assert!(claims.get(k).is_some(), "claim {k} missing: {claims}");
    }
    assert_eq!(claims["iss"], "http://issuer.test");
    assert_eq!(claims["aud"], "sallyport");
    assert_eq!(claims["roles"], json!(["admin", "user"]));

    let me: Value = s
        .http
        .get(s.url("/api/me"))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["name"], "Alice");
    assert_eq!(me["id"], claims["sub"]);
    assert_eq!(me["roles"], json!(["admin", "user"]));

    let r = s.refresh(&rt1).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t2: Value = r.json().await.unwrap();
    let rt2 = str_field(&t2, "refreshToken");
    assert_ne!(rt2, rt1, "rotation always hands out a new refresh token");
    assert_eq!(
        sallyport_jwt_claims(&str_field(&t2, "accessToken"))["sid"],
        claims["sid"]
    );

    let r = s
        .post_json("/api/logout", json!({"refresh_token": rt2}))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        error_code(s.refresh(&rt2).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_grant".into())
    );
    // Even the retry path of the old token is closed after logout.
    assert_eq!(
        error_code(s.refresh(&rt1).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_grant".into())
    );
    // Logout of an unknown token is not an oracle.
    let r = s
        .post_json("/api/logout", json!({"refresh_token": "nope"}))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let sessions = s.issuer.admin().list_sessions(Some("alice")).await.unwrap();
    assert_eq!(sessions[0].revoked_reason.as_deref(), Some("logout"));
}

fn sallyport_jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("jwt payload");
    let bytes = base64::prelude::BASE64_URL_SAFE_NO_PAD
        .decode(payload)
        .expect("b64");
    serde_json::from_slice(&bytes).expect("claims json")
}

pub(crate) async fn login_failures_look_identical(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let wrong = s.login("alice", "wrong-password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong = wrong.text().await.unwrap();
    let unknown = s.login("mallory", "wrong-password").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.text().await.unwrap(),
        wrong,
        "same body for unknown user and wrong password"
    );
    assert!(wrong.contains("invalid_credentials"));
    let events = s.issuer.admin().audit_events(10).await.unwrap();
    assert!(events.iter().filter(|e| e.kind == "login_failed").count() >= 2);
}

pub(crate) async fn disabled_account_is_forbidden_and_loses_sessions(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let t = s.login_alice().await;
    s.issuer.admin().disable_user("alice").await.unwrap();
    assert_eq!(
        error_code(s.login("alice", "alice-password").await).await,
        (StatusCode::FORBIDDEN, "account_disabled".into())
    );
    // A wrong password on a disabled account stays a plain 401 (no account-state oracle).
    assert_eq!(
        error_code(s.login("alice", "nope-nope").await).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        error_code(s.refresh(&str_field(&t, "refreshToken")).await)
            .await
            .1,
        "invalid_grant"
    );
    s.issuer.admin().enable_user("alice").await.unwrap();
    s.login_alice().await;
}

pub(crate) async fn login_rate_limit_per_account_and_address(b: Backend) {
    let Some(s) = start(b, |c| {
        c.rate_limit.account_burst = 3;
        c.rate_limit.account_replenish_secs = 600;
        c.rate_limit.address_burst = 6;
        c.rate_limit.address_replenish_secs = 600;
    })
    .await
    else {
        return;
    };
    s.add_alice().await;
    for _ in 0..3 {
        assert_eq!(
            s.login("alice", "wrong-pass").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = s.login("alice", "wrong-pass").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "rate_limited");
    // Blocked even with the right password: the limit is checked before any password work.
    assert_eq!(
        s.login("alice", "alice-password").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Per address: failures spread over other accounts exhaust the address budget.
    // A spoofed X-Forwarded-For does not buy a fresh address budget (not a trusted proxy).
    for i in 0..2 {
        let r = s
            .http
            .post(s.url("/api/login"))
            .header("x-forwarded-for", format!("10.9.8.{i}"))
            .json(&json!({"username": format!("ghost{i}"), "password": "x-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        s.login("ghost9", "x-password").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        s.login("bob", "bob-password").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

pub(crate) async fn password_change_revokes_sessions(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let rt = str_field(&s.login_alice().await, "refreshToken");
    s.issuer
        .admin()
        .set_password("alice", "new-alice-password")
        .await
        .unwrap();
    assert_eq!(error_code(s.refresh(&rt).await).await.1, "invalid_grant");
    assert_eq!(
        s.login("alice", "alice-password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.login("alice", "new-alice-password").await.status(),
        StatusCode::OK
    );
    assert!(matches!(
        s.issuer
            .admin()
            .add_user("alice", "whatever-pw", None, &[])
            .await,
        Err(sallyport_issuer::Error::UserExists(_))
    ));
}
