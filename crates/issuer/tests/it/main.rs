//! Integration tests: the real HTTP server on loopback, against SQLite and — when
//! `SALLYPORT_TEST_POSTGRES_URL` is set — PostgreSQL. The same conformance suite runs
//! on both backends (`conformance!` below).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use reqwest::StatusCode;
use sallyport_issuer::{Config, Issuer, ManualClock};
use serde_json::{Value, json};

mod harness {
    use super::*;

    /// Which store a test runs on.
    #[derive(Debug, Clone, Copy)]
    pub enum Backend {
        Sqlite,
        Postgres,
    }

    pub struct Server {
        pub base: String,
        pub issuer: Issuer,
        pub clock: ManualClock,
        pub http: reqwest::Client,
        _dir: Option<Arc<tempfile::TempDir>>,
    }

    /// Fast argon2 and generous limits unless a test says otherwise.
    pub fn test_config() -> Config {
        let mut c = Config::default();
        c.argon2.memory_kib = 256;
        c.argon2.iterations = 1;
        c.rate_limit.account_burst = 1000;
        c.rate_limit.address_burst = 1000;
        c.issuer = "http://issuer.test".into();
        c
    }

    /// [`test_config`] on `database_url`.
    pub fn test_config_with(database_url: &str) -> Config {
        Config {
            database_url: database_url.into(),
            ..test_config()
        }
    }

    /// A database URL for `backend`, or `None` (test skipped) without PostgreSQL.
    pub async fn database(backend: Backend) -> Option<(String, Option<Arc<tempfile::TempDir>>)> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("issuer.db").display());
                Some((url, Some(Arc::new(dir))))
            }
            Backend::Postgres => {
                // Unset (or empty) skips on a developer machine but fails under CI (`CI`
                // non-empty, as CI services and `scripts/test` set it): a suite that
                // silently skips its PostgreSQL half must not pass there.
                let Some(admin) = std::env::var("SALLYPORT_TEST_POSTGRES_URL")
                    .ok()
                    .filter(|u| !u.is_empty())
                else {
                    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
                        panic!(
                            "SALLYPORT_TEST_POSTGRES_URL is not set, and under CI the PostgreSQL \
                             tests must run, not be skipped: start a throwaway cluster with \
                             scripts/lib/postgres.sh (pg_start)"
                        );
                    }
                    eprintln!("note: SALLYPORT_TEST_POSTGRES_URL unset; skipping PostgreSQL test");
                    return None;
                };
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to test postgres");
                let name = format!("t_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let (base, query) = match admin.split_once('?') {
                    Some((b, q)) => (b.to_owned(), format!("?{q}")),
                    None => (admin.clone(), String::new()),
                };
                let prefix = base
                    .rsplit_once('/')
                    .map_or(base.as_str(), |(p, _)| p)
                    .to_owned();
                Some((format!("{prefix}/{name}{query}"), None))
            }
        }
    }

    pub async fn start_on(
        config: Config,
        clock: ManualClock,
        dir: Option<Arc<tempfile::TempDir>>,
    ) -> Server {
        let issuer = Issuer::open_with_clock(config, Arc::new(clock.clone()))
            .await
            .expect("open issuer");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let serving = issuer.clone();
        tokio::spawn(async move {
            sallyport_issuer::serve_with_shutdown(listener, serving, std::future::pending())
                .await
                .expect("serve");
        });
        Server {
            base,
            issuer,
            clock,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Server> {
        let (url, dir) = database(backend).await?;
        let mut config = test_config();
        config.database_url = url;
        tweak(&mut config);
        Some(start_on(config, ManualClock::starting_now(), dir).await)
    }

    impl Server {
        pub fn url(&self, path: &str) -> String {
            format!("{}{}", self.base, path)
        }

        pub async fn add_alice(&self) {
            self.issuer
                .admin()
                .add_user("alice", "alice-password", Some("Alice"), &["admin", "user"])
                .await
                .expect("add alice");
        }

        pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
            self.http
                .post(self.url(path))
                .json(&body)
                .send()
                .await
                .expect("request")
        }

        pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
            self.post_json(
                "/api/login",
                json!({"username": username, "password": password}),
            )
            .await
        }

        /// Logs alice in; returns the token response body.
        pub async fn login_alice(&self) -> Value {
            let r = self.login("alice", "alice-password").await;
            assert_eq!(r.status(), StatusCode::OK);
            r.json().await.expect("json")
        }

        pub async fn refresh(&self, token: &str) -> reqwest::Response {
            self.post_json("/api/refresh-token", json!({"refresh_token": token}))
                .await
        }
    }

    pub fn str_field(v: &Value, k: &str) -> String {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} missing in {v}"))
            .to_owned()
    }

    pub async fn error_code(r: reqwest::Response) -> (StatusCode, String) {
        let status = r.status();
        let body: Value = r.json().await.expect("error body is JSON");
        (
            status,
            body["error"].as_str().expect("error field").to_owned(),
        )
    }
}

use harness::{Backend, Server, error_code, start, str_field};

/// Runs each listed async fn once per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Sqlite).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Postgres).await; })*
        }
    };
}

conformance!(
    login_me_refresh_logout,
    login_failures_look_identical,
    disabled_account_is_forbidden_and_loses_sessions,
    retry_within_interval_continues_the_same_family,
    reuse_after_interval_revokes_the_family,
    fifty_concurrent_refreshes_continue_one_family,
    idle_and_absolute_expiry,
    key_rotation_keeps_old_tokens_valid,
    oauth_token_and_revoke,
    bad_input_gets_json_4xx,
    login_rate_limit_per_account_and_address,
    discovery_health_metrics_openapi,
    reuse_is_detected_after_restart,
    password_change_revokes_sessions,
    failed_rotation_leaves_the_token_valid,
    client_authentication,
    oauth_request_errors,
    json_api_401s_carry_a_challenge,
    readyz_fails_when_the_pool_is_closed,
);

/// A rotation that dies half-way (here: signing fails inside the transaction, as a
/// crash would) changes nothing: the presented token stays valid and unused.
async fn failed_rotation_leaves_the_token_valid(b: Backend) {
    use sallyport_issuer::store::RotateRequest;
    use sallyport_issuer::token::RefreshSecret;
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let rt1 = str_field(&s.login_alice().await, "refreshToken");
    let presented = RefreshSecret::parse(&rt1).unwrap();
    let failing =
        |_: &sallyport_issuer::store::UserRecord,
         _: &sallyport_issuer::store::SessionRecord,
         _: i64| { Err(sallyport_issuer::Error::Key("simulated crash".into())) };
    let result = s
        .issuer
        .store()
        .rotate(RotateRequest {
            presented: &presented,
            fresh: RefreshSecret::generate().unwrap(),
            now_ms: s.issuer.now_ms(),
            reuse_interval_ms: 10_000,
            idle_ttl_ms: 3_600_000,
            mint: &failing,
            client_addr: None,
        })
        .await;
    assert!(result.is_err(), "{result:?}");
    // Much later (far outside any reuse interval) the token still rotates normally:
    // it was never marked used.
    s.clock.advance_secs(3600);
    assert_eq!(s.refresh(&rt1).await.status(), StatusCode::OK);
    let sessions = s.issuer.admin().list_sessions(None).await.unwrap();
    assert_eq!(sessions[0].generation, 2);
}

async fn login_me_refresh_logout(b: Backend) {
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

async fn login_failures_look_identical(b: Backend) {
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

async fn disabled_account_is_forbidden_and_loses_sessions(b: Backend) {
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

async fn retry_within_interval_continues_the_same_family(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let rt1 = str_field(&s.login_alice().await, "refreshToken");
    let first: Value = s.refresh(&rt1).await.json().await.unwrap();
    // The response was "lost"; the client retries 9 s later with the same token.
    s.clock.advance_secs(9);
    let r = s.refresh(&rt1).await;
    assert_eq!(r.status(), StatusCode::OK);
    let retry: Value = r.json().await.unwrap();
    assert_eq!(
        retry["refreshToken"], first["refreshToken"],
        "same successor, no divergent branch"
    );
    assert_eq!(retry["accessToken"], first["accessToken"]);
    // The successor works, and its own successor can be reached from rt1 inside the interval.
    let second: Value = s
        .refresh(&str_field(&first, "refreshToken"))
        .await
        .json()
        .await
        .unwrap();
    let again: Value = s.refresh(&rt1).await.json().await.unwrap();
    assert_eq!(
        again["refreshToken"], second["refreshToken"],
        "retry follows the chain to the current token"
    );
    let sessions = s.issuer.admin().list_sessions(None).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].revoked_at_ms.is_none());
    assert_eq!(sessions[0].generation, 3);
}

async fn reuse_after_interval_revokes_the_family(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let rt1 = str_field(&s.login_alice().await, "refreshToken");
    let rt2 = str_field(
        &s.refresh(&rt1).await.json::<Value>().await.unwrap(),
        "refreshToken",
    );
    s.clock.advance_ms(10_001);
    assert_eq!(
        error_code(s.refresh(&rt1).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_grant".into())
    );
    assert_eq!(
        error_code(s.refresh(&rt2).await).await.1,
        "invalid_grant",
        "the whole family is revoked"
    );
    let events = s.issuer.admin().audit_events(20).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "refresh_reuse_detected"),
        "{events:?}"
    );
    let sessions = s.issuer.admin().list_sessions(None).await.unwrap();
    assert_eq!(
        sessions[0].revoked_reason.as_deref(),
        Some("refresh_token_reuse")
    );
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sallyport_issuer_reuse_detections_total 1"),
        "{metrics}"
    );
}

async fn fifty_concurrent_refreshes_continue_one_family(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let rt1 = str_field(&s.login_alice().await, "refreshToken");
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = s.clone();
        let rt1 = rt1.clone();
        tasks.push(tokio::spawn(async move {
            let r = s.refresh(&rt1).await;
            assert_eq!(r.status(), StatusCode::OK);
            let body = r.json::<Value>().await.unwrap();
            (
                str_field(&body, "refreshToken"),
                str_field(&body, "accessToken"),
            )
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers.dedup();
    assert_eq!(
        answers.len(),
        1,
        "all 50 got the same successor and access token"
    );
    let tokens: Vec<String> = answers.into_iter().map(|(rt, _)| rt).collect();
    let sessions = s.issuer.admin().list_sessions(None).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(
        sessions[0].revoked_at_ms.is_none(),
        "no revocation inside the interval"
    );
    assert_eq!(sessions[0].generation, 2, "exactly one rotation");
    assert_eq!(
        s.refresh(&tokens[0]).await.status(),
        StatusCode::OK,
        "the family continues"
    );
}

async fn idle_and_absolute_expiry(b: Backend) {
    let Some(s) = start(b, |c| c.session_max_lifetime_secs = 3 * 24 * 3600).await else {
        return;
    };
    s.add_alice().await;
    // Idle: 30 days default... capped by the 3-day absolute lifetime here.
    let t = s.login_alice().await;
    assert_eq!(t["refreshTokenExpiresIn"], 3 * 24 * 3600);
    let mut rt = str_field(&t, "refreshToken");
    for _ in 0..2 {
        s.clock.advance_secs(24 * 3600);
        rt = str_field(
            &s.refresh(&rt).await.json::<Value>().await.unwrap(),
            "refreshToken",
        );
    }
    s.clock.advance_secs(24 * 3600);
    assert_eq!(
        error_code(s.refresh(&rt).await).await.1,
        "invalid_grant",
        "absolute lifetime over"
    );

    let Some(s) = start(b, |c| c.refresh_idle_ttl_secs = 3600).await else {
        return;
    };
    s.add_alice().await;
    let rt = str_field(&s.login_alice().await, "refreshToken");
    s.clock.advance_secs(3599);
    let rt = str_field(
        &s.refresh(&rt).await.json::<Value>().await.unwrap(),
        "refreshToken",
    );
    s.clock.advance_secs(3601);
    assert_eq!(
        error_code(s.refresh(&rt).await).await.1,
        "invalid_grant",
        "idle expiry"
    );
}

async fn key_rotation_keeps_old_tokens_valid(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let at1 = str_field(&s.login_alice().await, "accessToken");
    let kid1 = jsonwebtoken::decode_header(&at1).unwrap().kid.unwrap();
    let new = s.issuer.admin().rotate_keys().await.unwrap();
    assert_ne!(new.kid, kid1);
    let at2 = str_field(&s.login_alice().await, "accessToken");
    assert_eq!(
        jsonwebtoken::decode_header(&at2).unwrap().kid.unwrap(),
        new.kid,
        "new tokens use the new kid"
    );
    let jwks: Value = s
        .http
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&kid1.as_str()) && kids.contains(&new.kid.as_str()),
        "{kids:?}"
    );
    for at in [&at1, &at2] {
        let r = s
            .http
            .get(s.url("/api/me"))
            .bearer_auth(at)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "old and new tokens verify");
    }
    // Verify with the published JWKS alone, as a resource server would.
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    for at in [&at1, &at2] {
        let kid = jsonwebtoken::decode_header(at).unwrap().kid.unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["sallyport"]);
        v.set_issuer(&["http://issuer.test"]);
        jsonwebtoken::decode::<Value>(at, &key, &v).unwrap();
    }
    // Once the old key's tokens have expired it leaves the JWKS.
    s.clock.advance_secs(900 + 30 + 61);
    let keys = s.issuer.admin().list_keys().await.unwrap();
    assert!(keys.iter().any(|k| k.kid == kid1 && !k.published));
    let jwks: Value = s
        .http
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
}

async fn oauth_token_and_revoke(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let form = |pairs: &[(&str, &str)]| s.http.post(s.url("/oauth/token")).form(pairs).send();
    let r = form(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "alice-password"),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    let rt = str_field(&t, "refresh_token");
    assert!(t["access_token"].is_string());

    let r = form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rt2 = str_field(&r.json::<Value>().await.unwrap(), "refresh_token");

    for (pairs, code) in [
        (
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "bad-password"),
            ],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "password"), ("username", "alice")],
            "invalid_request",
        ),
        (
            vec![("grant_type", "refresh_token"), ("refresh_token", "bogus")],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "client_credentials")],
            "unsupported_grant_type",
        ),
        (vec![("username", "alice")], "invalid_request"),
    ] {
        let r = form(&pairs).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{pairs:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], code, "{pairs:?}");
        assert!(body["error_description"].is_string());
    }
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .json(&json!({"grant_type": "password"}))
        .send()
        .await
        .unwrap();
    // RFC 6749 §5.2: token-endpoint errors are 400 (not 415), whatever the cause.
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");

    // RFC 7009: 200 for known and unknown tokens; the known one's session is gone.
    let revoke = |token: String| {
        s.http
            .post(s.url("/oauth/revoke"))
            .form(&[("token", token)])
            .send()
    };
    assert_eq!(
        revoke("unknown".into()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(revoke(rt2.clone()).await.unwrap().status(), StatusCode::OK);
    let r = form(&[("grant_type", "refresh_token"), ("refresh_token", &rt2)])
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = s
        .http
        .post(s.url("/oauth/revoke"))
        .form(&[("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn bad_input_gets_json_4xx(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    let post = |path: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut req = s.http.post(s.url(path)).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let json_ct = Some("application/json");
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/api/login",
            json_ct,
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/login",
            json_ct,
            br#"{"username":"alice"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/login",
            json_ct,
            br#"{"username":1,"password":2}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/login",
            Some("text/plain"),
            br#"{"username":"a","password":"b"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/api/login",
            None,
            br#"{"username":"a","password":"b"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "/api/login",
            json_ct,
            vec![b' '; 100_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/api/login",
            json_ct,
            json!({"username": "a".repeat(5000), "password": "x"})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/login",
            json_ct,
            json!({"username": "alice", "password": "x".repeat(5000)})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/login",
            json_ct,
            json!({"username": "", "password": "x"})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/refresh-token",
            json_ct,
            b"{}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/refresh-token",
            json_ct,
            json!({"refresh_token": "x".repeat(10_000)})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/refresh-token",
            json_ct,
            json!({"refresh_token": "forged"}).to_string().into_bytes(),
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
        ),
        (
            "/api/logout",
            json_ct,
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/api/nope",
            json_ct,
            b"{}".to_vec(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/healthz",
            json_ct,
            b"{}".to_vec(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (path, ct, body, status, code) in cases {
        let r = post(path, ct, body).await.unwrap();
        assert_eq!(
            error_code(r).await,
            (status, code.to_owned()),
            "{path} {ct:?}"
        );
    }
    // Bearer failures: missing, malformed, forged signature, alg none.
    let at = str_field(&s.login_alice().await, "accessToken");
    let mut parts: Vec<String> = at.split('.').map(str::to_owned).collect();
    // Flip a character in the middle of the signature (the last one may only carry
    // padding bits that decoders ignore).
    let mut sig: Vec<char> = parts[2].chars().collect();
    sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
    parts[2] = sig.into_iter().collect();
    let tampered = parts.join(".");
    use base64::Engine as _;
    let none_header =
        base64::prelude::BASE64_URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    let alg_none = format!("{none_header}.{}.", at.split('.').nth(1).unwrap());
    for auth in [
        None,
        Some("Bearer".to_owned()),
        Some("Bearer garbage".into()),
        Some(format!("Bearer {tampered}")),
        Some(format!("Bearer {alg_none}")),
        Some(format!("Basic {at}")),
    ] {
        let mut req = s.http.get(s.url("/api/me"));
        if let Some(a) = &auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with(r#"Bearer error="invalid_token""#),
            "{challenge}"
        );
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_token");
    }
    // A body that never finishes is cut off rather than hanging forever is covered by the
    // request timeout; not exercised here (it would need a 30 s wait).
}

async fn login_rate_limit_per_account_and_address(b: Backend) {
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

async fn discovery_health_metrics_openapi(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    let get = |p: &str| s.http.get(s.url(p)).send();
    let d: Value = get("/.well-known/openid-configuration")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], "http://issuer.test");
    assert_eq!(d["jwks_uri"], "http://issuer.test/.well-known/jwks.json");
    assert_eq!(d["token_endpoint"], "http://issuer.test/oauth/token");
    assert_eq!(d["revocation_endpoint"], "http://issuer.test/oauth/revoke");
    assert_eq!(
        d["grant_types_supported"],
        json!(["password", "refresh_token"])
    );
    let jwks: Value = get("/.well-known/jwks.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "no private key material");
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    s.add_alice().await;
    s.login_alice().await;
    let _ = s.login("alice", "wrong-pass").await;
    let m = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        m.contains(r#"sallyport_issuer_logins_total{outcome="success"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"sallyport_issuer_logins_total{outcome="invalid_credentials"} 1"#),
        "{m}"
    );
    assert!(
        m.contains("sallyport_issuer_request_duration_seconds_bucket"),
        "{m}"
    );
    let api: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    for p in [
        "/api/login",
        "/api/refresh-token",
        "/api/logout",
        "/api/me",
        "/oauth/token",
        "/oauth/revoke",
        "/.well-known/jwks.json",
    ] {
        assert!(api["paths"].get(p).is_some(), "{p} missing from OpenAPI");
    }
    assert!(api["components"]["schemas"].get("TokenResponse").is_some());
    assert_eq!(
        api["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

async fn reuse_is_detected_after_restart(b: Backend) {
    let Some((url, dir)) = harness::database(b).await else {
        return;
    };
    let mut config = harness::test_config();
    config.database_url = url;
    let clock = ManualClock::starting_now();
    let s = harness::start_on(config.clone(), clock.clone(), dir.clone()).await;
    s.add_alice().await;
    let rt1 = str_field(&s.login_alice().await, "refreshToken");
    let rt2 = str_field(
        &s.refresh(&rt1).await.json::<Value>().await.unwrap(),
        "refreshToken",
    );
    let kid_before = s.issuer.admin().list_keys().await.unwrap();
    drop(s);
    // A new process on the same database: same keys, same reuse state.
    let s: Server = harness::start_on(config, clock.clone(), dir).await;
    assert_eq!(
        s.issuer.admin().list_keys().await.unwrap(),
        kid_before,
        "no new key on restart"
    );
    let retry: Value = s.refresh(&rt1).await.json().await.unwrap();
    assert_eq!(
        str_field(&retry, "refreshToken"),
        rt2,
        "retry inside the interval survives a restart"
    );
    clock.advance_secs(11);
    assert_eq!(error_code(s.refresh(&rt1).await).await.1, "invalid_grant");
    assert_eq!(error_code(s.refresh(&rt2).await).await.1, "invalid_grant");
}

async fn password_change_revokes_sessions(b: Backend) {
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

/// Two issuer instances (each with its own pool) on one PostgreSQL database, 25 requests
/// each on the same refresh token: one rotation, everyone gets the same successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_issuers_race_on_one_token() {
    let Some((url, _)) = harness::database(Backend::Postgres).await else {
        return;
    };
    let mut config = harness::test_config();
    config.database_url = url;
    let clock = ManualClock::starting_now();
    let a = Arc::new(harness::start_on(config.clone(), clock.clone(), None).await);
    let b = Arc::new(harness::start_on(config, clock.clone(), None).await);
    a.add_alice().await;
    let rt1 = str_field(&a.login_alice().await, "refreshToken");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let server = if i % 2 == 0 { a.clone() } else { b.clone() };
        let rt1 = rt1.clone();
        tasks.push(tokio::spawn(async move {
            let r = server.refresh(&rt1).await;
            assert_eq!(r.status(), StatusCode::OK);
            str_field(&r.json::<Value>().await.unwrap(), "refreshToken")
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "one successor across both replicas");
    let sessions = b.issuer.admin().list_sessions(None).await.unwrap();
    assert_eq!(sessions[0].generation, 2);
    assert!(sessions[0].revoked_at_ms.is_none());
    // Outside the interval, a stale replay on either replica revokes the family.
    clock.advance_secs(11);
    assert_eq!(error_code(b.refresh(&rt1).await).await.1, "invalid_grant");
    assert_eq!(
        error_code(a.refresh(&tokens[0]).await).await.1,
        "invalid_grant"
    );
}

/// EdDSA is selectable and published as an OKP key.
#[tokio::test]
async fn eddsa_keys() {
    let Some(s) = start(Backend::Sqlite, |c| c.algorithm = "EdDSA".into()).await else {
        return;
    };
    s.add_alice().await;
    let at = str_field(&s.login_alice().await, "accessToken");
    assert_eq!(
        jsonwebtoken::decode_header(&at).unwrap().alg,
        jsonwebtoken::Algorithm::EdDSA
    );
    let jwks: Value = s
        .http
        .get(s.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert_eq!(
        s.http
            .get(s.url("/api/me"))
            .bearer_auth(&at)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// `Config::for_tests("sqlite::memory:")`: what other crates' tests use.
#[tokio::test]
async fn in_memory_sqlite_for_tests() {
    let issuer = Issuer::open(Config::for_tests("sqlite::memory:"))
        .await
        .unwrap();
    issuer
        .admin()
        .add_user("bob", "bob-password", None, &[])
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sallyport_issuer::serve(listener, issuer.clone()));
    let r = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({"username": "bob", "password": "bob-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Bad settings stop start-up with the setting's name.
#[tokio::test]
async fn bad_config_names_the_setting() {
    let config = Config {
        database_url: "mysql://x".into(),
        ..harness::test_config()
    };
    let err = Issuer::open(config).await.unwrap_err().to_string();
    assert!(err.contains("database_url"), "{err}");
    let config = Config {
        refresh_reuse_interval_secs: 100_000,
        ..harness::test_config()
    };
    let err = Issuer::open(config).await.unwrap_err().to_string();
    assert!(err.contains("refresh_reuse_interval_secs"), "{err}");
}

// ---------------------------------------------------------------------------
// audit fixes: client authentication, RFC 6749 error statuses, challenges,
// discovery, OpenAPI, slow clients, readiness
// ---------------------------------------------------------------------------

const GW_SECRET: &str = "gateway-secret-0123456789";

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// RFC 6749 §2.3 / §5.2: unknown clients and wrong secrets get 401 `invalid_client`
/// with `WWW-Authenticate: Basic` on the token and revocation endpoints; configured
/// clients authenticate with Basic or in the form; public clients still work.
async fn client_authentication(b: Backend) {
    let Some(s) = start(b, |c| {
        c.clients = vec![sallyport_issuer::config::ClientConfig {
            id: "gateway".into(),
            secret: Some(GW_SECRET.into()),
            secret_sha256: None,
        }];
    })
    .await
    else {
        return;
    };
    s.add_alice().await;
    let password = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "alice-password"),
    ];
    let post = |path: &'static str, auth: Option<String>, extra: Vec<(&'static str, &str)>| {
        let mut form: Vec<(&str, &str)> = if path == "/oauth/token" {
            password.to_vec()
        } else {
            vec![("token", "never-issued")]
        };
        form.extend(extra);
        let mut req = s.http.post(s.url(path)).form(&form);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.send()
    };
    for path in ["/oauth/token", "/oauth/revoke"] {
        type Attempt<'a> = (Option<String>, Vec<(&'a str, &'a str)>);
        let rejected: Vec<Attempt> = vec![
            (Some(basic("unknown-client", "secret")), vec![]),
            (Some(basic("gateway", "wrong-secret")), vec![]),
            (Some(basic("gateway", "")), vec![]),
            (Some("Bearer abc".into()), vec![]),
            (
                None,
                vec![("client_id", "gateway"), ("client_secret", "wrong")],
            ),
            (None, vec![("client_id", "gateway")]),
            (
                None,
                vec![("client_id", "unknown-client"), ("client_secret", "x")],
            ),
        ];
        for (auth, extra) in rejected {
            let what = format!("{path} {auth:?} {extra:?}");
            let r = post(path, auth, extra).await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
            let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(challenge.starts_with("Basic "), "{what}: {challenge}");
            assert_eq!(r.headers()["cache-control"], "no-store");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_client", "{what}");
        }
        // Two methods at once.
        let r = post(
            path,
            Some(basic("gateway", GW_SECRET)),
            vec![("client_secret", GW_SECRET)],
        )
        .await
        .unwrap();
        assert_eq!(
            error_code(r).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into())
        );
        // Accepted: Basic, post, a public client id, nothing.
        for (auth, extra) in [
            (Some(basic("gateway", GW_SECRET)), vec![]),
            (
                None,
                vec![("client_id", "gateway"), ("client_secret", GW_SECRET)],
            ),
            (None, vec![("client_id", "spa")]),
            (None, vec![]),
        ] {
            let what = format!("{path} {auth:?} {extra:?}");
            let r = post(path, auth, extra).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{what}");
        }
    }
    let d: Value = s
        .http
        .get(s.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );

    // Public clients switched off: anonymous requests are invalid_client too.
    let Some(closed) = start(b, |c| c.allow_public_clients = false).await else {
        return;
    };
    closed.add_alice().await;
    let r = closed
        .http
        .post(closed.url("/oauth/token"))
        .form(&password)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
}

/// RFC 6749 §5.2 / §3.2: a JSON body is 400 (not 415), an empty parameter is a
/// missing one (`invalid_request`, not `invalid_grant`).
async fn oauth_request_errors(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    for path in ["/oauth/token", "/oauth/revoke"] {
        let r = s
            .http
            .post(s.url(path))
            .json(&json!({"grant_type": "password", "username": "alice", "password": "alice-password", "token": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["cache-control"], "no-store");
        assert_eq!(
            error_code(r).await,
            (StatusCode::BAD_REQUEST, "invalid_request".into()),
            "{path}"
        );
    }
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    let r = s
        .http
        .post(s.url("/oauth/revoke"))
        .form(&[("token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
}

/// RFC 9110 §15.5.2: every 401 carries `WWW-Authenticate`; the JSON bodies are
/// unchanged.
async fn json_api_401s_carry_a_challenge(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    s.add_alice().await;
    for (r, code) in [
        (
            s.login("alice", "wrong-password").await,
            "invalid_credentials",
        ),
        (
            s.login("nobody", "wrong-password").await,
            "invalid_credentials",
        ),
        (s.refresh("unknown-token").await, "invalid_grant"),
    ] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_eq!(
            challenge,
            format!(r#"Sallyport realm="sallyport", error="{code}""#)
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], code);
        assert!(body["message"].is_string());
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    }
}

/// `/readyz` answers 503 JSON once the database is gone (here: the pool closed).
async fn readyz_fails_when_the_pool_is_closed(b: Backend) {
    let Some(s) = start(b, |_| {}).await else {
        return;
    };
    let readyz = || s.http.get(s.url("/readyz")).send();
    assert_eq!(readyz().await.unwrap().status(), StatusCode::OK);
    s.issuer.close().await;
    let r = readyz().await.unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        error_code(r).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
    // Endpoints that need the database degrade to 503 as well, never 500.
    let r = s.login("alice", "alice-password").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// `/readyz` → 503 when the PostgreSQL database is dropped under a running issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_readyz_fails_when_the_database_is_dropped() {
    let Some(s) = start(Backend::Postgres, |_| {}).await else {
        return;
    };
    let readyz = || s.http.get(s.url("/readyz")).send();
    assert_eq!(readyz().await.unwrap().status(), StatusCode::OK);
    let url = s.issuer.settings().raw.database_url.clone();
    let name = url
        .rsplit('/')
        .next()
        .and_then(|n| n.split('?').next())
        .unwrap()
        .to_owned();
    use sqlx::Connection as _;
    let admin = std::env::var("SALLYPORT_TEST_POSTGRES_URL").unwrap();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let r = readyz().await.unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    );
}

/// Discovery publishes the access-token algorithms under an accurate name (no ID
/// tokens are issued) and the OpenAPI document is self-consistent: every `$ref`
/// and every security requirement resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_openapi_are_accurate() {
    let Some(s) = start(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let get = |p: &str| s.http.get(s.url(p)).send();
    let d: Value = get("/.well-known/openid-configuration")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        d.get("id_token_signing_alg_values_supported").is_none(),
        "{d}"
    );
    assert_eq!(
        d["access_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(d["userinfo_endpoint"], "http://issuer.test/api/me");

    let api: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    let broken = unresolved_references(&api);
    assert!(broken.is_empty(), "unresolved: {broken:?}");
    // The checker itself catches a dangling reference of either kind.
    let mut bad = api.clone();
    bad["paths"]["/api/me"]["get"]["security"] = json!([{"nope": []}]);
    bad["paths"]["/healthz"]["get"]["responses"]["200"]["content"] =
        json!({"application/json": {"schema": {"$ref": "#/components/schemas/Missing"}}});
    assert_eq!(unresolved_references(&bad).len(), 2);
}

/// Every `$ref` (a JSON pointer into the document) and every name in a `security`
/// requirement (a key of `components.securitySchemes`) that does not resolve.
fn unresolved_references(doc: &Value) -> Vec<String> {
    fn walk(doc: &Value, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let ok = r
                        .strip_prefix('#')
                        .is_some_and(|ptr| doc.pointer(ptr).is_some());
                    if !ok {
                        out.push(r.clone());
                    }
                }
                if let Some(Value::Array(reqs)) = map.get("security") {
                    for req in reqs {
                        for name in req.as_object().into_iter().flat_map(|o| o.keys()) {
                            if doc["components"]["securitySchemes"].get(name).is_none() {
                                out.push(format!("security {name}"));
                            }
                        }
                    }
                }
                for child in map.values() {
                    walk(doc, child, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(doc, i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, doc, &mut out);
    out
}

/// Writes `payload` on a raw connection and reads until the server closes it.
/// `None` if it was still open after `guard` — a hang guard, not a timing assertion.
async fn raw_exchange(s: &Server, payload: &[u8], guard: std::time::Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = s.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(payload).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(guard, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&out).into_owned())
}

/// Slowloris: a request head that never completes is cut off after
/// `header_read_timeout_secs`; so is a connection that sends nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_request_heads_are_cut_off() {
    let Some(s) = start(Backend::Sqlite, |c| c.header_read_timeout_secs = 1).await else {
        return;
    };
    let guard = std::time::Duration::from_secs(30);
    let partial = raw_exchange(&s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", guard).await;
    assert!(partial.is_some(), "a partial head held the connection open");
    let silent = raw_exchange(&s, b"", guard).await;
    assert!(silent.is_some(), "an idle connection was held open");
    // A complete request on a fresh connection is still served.
    let ok = raw_exchange(
        &s,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        guard,
    )
    .await
    .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
}

/// A request whose body never completes gets 408 JSON after `request_timeout_secs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_body_gets_408_json() {
    let Some(s) = start(Backend::Sqlite, |c| c.request_timeout_secs = 1).await else {
        return;
    };
    let resp = raw_exchange(
        &s,
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
        std::time::Duration::from_secs(30),
    )
    .await
    .unwrap_or_default();
    assert!(resp.starts_with("HTTP/1.1 408 "), "{resp}");
    assert!(resp.contains(r#""error":"timeout""#), "{resp}");
}

/// Graceful shutdown still works with the hand-rolled accept loop: the server
/// future returns once the shutdown future completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_after_shutdown() {
    let issuer = Issuer::open(harness::test_config_with("sqlite::memory:"))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sallyport_issuer::serve_with_shutdown(
        listener,
        issuer,
        async move {
            let _ = rx.await;
        },
    ));
    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), server)
        .await
        .expect("serve did not return after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err()
    );
}
