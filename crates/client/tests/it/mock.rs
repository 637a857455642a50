//! Behaviour against a scripted backend and API (wiremock on loopback).

use std::time::Duration;

use reqwest::Url;
use sallyport_client::{Auth, AuthErrorCode, Backend, Error, ManualClock, MemoryStore, Tokens};
use sallyport_jwt::{AccessClaims, Algorithm, SigningKey};
use serde_json::json;
use wiremock::matchers::{body_json, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::typed;

const T0: u64 = 1_700_000_000;

/// A JWT that expires at `exp` (the client reads `exp` for its decisions).
fn jwt(sub: &str, exp: u64) -> String {
    thread_local! {
        static KEY: SigningKey = SigningKey::generate(Algorithm::Es256, "k").unwrap();
    }
    KEY.with(|k| {
        k.sign(&AccessClaims {
            sub: sub.into(),
            exp,
            ..AccessClaims::default()
        })
        .unwrap()
    })
}

fn grant(access: &str, refresh: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "accessToken": access, "refreshToken": refresh, "tokenType": "Bearer", "expiresIn": 900
    }))
}

async fn count(server: &MockServer, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

fn auth(server: &MockServer, clock: &ManualClock) -> Auth {
    crate::auth_builder(Backend::issuer_json(&server.uri()).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn seeded(
    server: &MockServer,
    clock: &ManualClock,
    access: &str,
    refresh: Option<&str>,
    exp: u64,
) -> Auth {
    crate::auth_builder(Backend::issuer_json(&server.uri()).unwrap())
        .clock(clock.clone())
        .store(MemoryStore::with_tokens(Tokens {
            access_token: access.into(),
            refresh_token: refresh.map(Into::into),
            expires_at: exp,
        }))
        .build()
        .unwrap()
}

/// An API at `/data` that accepts exactly `token`.
async fn mount_api(server: &MockServer, token: &str) {
    Mock::given(method("GET"))
        .and(path("/data"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(path("/data"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_token"})))
        .with_priority(10)
        .mount(server)
        .await;
}

#[tokio::test]
async fn login_stores_tokens_and_attaches_bearer() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let access = jwt("alice", T0 + 900);
    Mock::given(method("POST"))
        .and(path("/api/login"))
        .and(body_json(json!({"username": "alice", "password": "pw"})))
        .respond_with(grant(&access, "r1"))
        .mount(&server)
        .await;
    mount_api(&server, &access).await;

    let auth = auth(&server, &clock);
    assert!(!auth.is_logged_in().await.unwrap());
    auth.login("alice", "pw").await.unwrap();
    let tokens = auth.tokens().await.unwrap().unwrap();
    assert_eq!(tokens.expires_at, T0 + 900, "expiry from the JWT exp");
    assert_eq!(tokens.refresh_token.as_deref(), Some("r1"));

    let api = auth.client(reqwest::Client::new());
    let resp = api
        .get(format!("{}/data", server.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(auth.refresh_count(), 0);
}

#[tokio::test]
async fn renews_proactively_within_the_leeway() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let (old, new) = (jwt("a", T0 + 20), jwt("a", T0 + 900));
    Mock::given(method("POST"))
        .and(path("/api/refresh-token"))
        .and(body_json(json!({"refresh_token": "r1"})))
        .respond_with(grant(&new, "r2"))
        .mount(&server)
        .await;
    mount_api(&server, &new).await;
    // Expires in 20 s, within the default 30 s leeway: renewed before sending.
    let auth = seeded(&server, &clock, &old, Some("r1"), T0 + 20);
    let api = auth.client(reqwest::Client::new());
    let resp = api
        .get(format!("{}/data", server.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(count(&server, "/data").await, 1, "no 401 round trip");
    assert_eq!(count(&server, "/api/refresh-token").await, 1);
    let t = auth.tokens().await.unwrap().unwrap();
    assert_eq!(
        t.refresh_token.as_deref(),
        Some("r2"),
        "rotated refresh token stored"
    );
}

#[tokio::test]
async fn concurrent_stale_requests_share_one_refresh() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let (old, new) = (jwt("a", T0 + 60), jwt("a", T0 + 960));
    Mock::given(method("POST"))
        .and(path("/api/refresh-token"))
        .respond_with(grant(&new, "r2").set_delay(Duration::from_millis(50)))
        .mount(&server)
        .await;
    mount_api(&server, &new).await;
    let auth = seeded(&server, &clock, &old, Some("r1"), T0 + 60);
    clock.advance_secs(120); // now past expiry
    let api = auth.client(reqwest::Client::new());
    let url = format!("{}/data", server.uri());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (api, url) = (api.clone(), url.clone());
            tokio::spawn(async move { api.get(url).send().await.unwrap().status() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(count(&server, "/api/refresh-token").await, 1);
    assert_eq!(auth.refresh_count(), 1);
}

#[tokio::test]
async fn retries_once_after_401_with_a_renewed_token() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    // The client believes `revoked` is valid for 15 min; the API disagrees.
    let (revoked, new) = (jwt("a", T0 + 900), jwt("b", T0 + 900));
    Mock::given(method("POST"))
        .and(path("/api/refresh-token"))
        .respond_with(grant(&new, "r2"))
        .mount(&server)
        .await;
    mount_api(&server, &new).await;
    // A GET that 401s is renewed and replayed once.
    let server2 = &server;
    let auth = seeded(server2, &clock, &revoked, Some("r1"), T0 + 900);
    let api = auth.client(reqwest::Client::new());
    let resp = api
        .get(format!("{}/data", server2.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(count(server2, "/data").await, 2, "original + one replay");
    assert_eq!(count(server2, "/api/refresh-token").await, 1);
}

#[tokio::test]
async fn a_persistent_401_is_returned_not_looped() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let n = std::sync::atomic::AtomicU64::new(0);
    Mock::given(method("POST"))
        .and(path("/api/refresh-token"))
        .respond_with(move |_: &Request| {
            let n = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            grant(&jwt("a", T0 + 900 + n), &format!("r{n}"))
        })
        .mount(&server)
        .await;
    Mock::given(path("/data"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let auth = seeded(&server, &clock, &jwt("a", T0 + 900), Some("r0"), T0 + 900);
    let api = auth.client(reqwest::Client::new());
    let resp = api
        .get(format!("{}/data", server.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(count(&server, "/data").await, 2);
    assert_eq!(count(&server, "/api/refresh-token").await, 1);
    // The API refuses even the brand-new token: further requests are not
    // renewed again and again (the backend would be hammered for nothing).
    let url = format!("{}/data", server.uri());
    for _ in 0..3 {
        assert_eq!(api.get(&url).send().await.unwrap().status(), 401);
    }
    assert_eq!(count(&server, "/data").await, 5);
    assert_eq!(count(&server, "/api/refresh-token").await, 1);
    // Later, a 401 is worth one renewal again.
    clock.advance_secs(sallyport_client::FRESH_REJECTION_GRACE_SECS);
    assert_eq!(api.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(count(&server, "/api/refresh-token").await, 2);
}

#[tokio::test]
async fn streaming_bodies_are_not_replayed() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let new = jwt("b", T0 + 900);
    Mock::given(method("POST"))
        .and(path("/api/refresh-token"))
        .respond_with(grant(&new, "r2"))
        .mount(&server)
        .await;
    Mock::given(path("/upload"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let auth = seeded(&server, &clock, &jwt("a", T0 + 900), Some("r1"), T0 + 900);
    let api = auth.client(reqwest::Client::new());
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(b"chunk".to_vec())]);
    let resp = api
        .post(format!("{}/upload", server.uri()))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the 401 is handed back");
    assert_eq!(count(&server, "/upload").await, 1, "not replayed");
    // …but the token was renewed for the caller's next attempt.
    assert_eq!(count(&server, "/api/refresh-token").await, 1);
    assert_eq!(auth.access_token().await.unwrap(), new);
}

#[tokio::test]
async fn refused_refresh_ends_the_session_without_a_loop() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    Mock::given(method("POST"))
        .and(path("/api/refresh-token"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": "invalid_grant", "message": "revoked"})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/data"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let auth = seeded(&server, &clock, &jwt("a", T0 + 10), Some("r1"), T0 + 10);
    clock.advance_secs(60);
    let api = auth.client(reqwest::Client::new());
    let err = api
        .get(format!("{}/data", server.uri()))
        .send()
        .await
        .unwrap_err();
    let e = typed(&err);
    assert!(
        matches!(e, Error::ReauthRequired { code } if code == "invalid_grant"),
        "{e:?}"
    );
    assert_eq!(e.auth_code(), Some(AuthErrorCode::ReauthRequired));
    assert!(e.requires_login());
    assert!(!auth.is_logged_in().await.unwrap(), "tokens cleared");

    let err = api
        .get(format!("{}/data", server.uri()))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(typed(&err), Error::SessionExpired));
    assert_eq!(count(&server, "/api/refresh-token").await, 1);
    assert_eq!(
        count(&server, "/data").await,
        0,
        "nothing sent without a token"
    );
}

#[tokio::test]
async fn backend_outage_is_not_a_logout() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    Mock::given(method("POST"))
        .and(path("/api/refresh-token"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "7"))
        .mount(&server)
        .await;
    let access = jwt("a", T0 + 20);
    mount_api(&server, &access).await;
    // Within the leeway but not expired: renewal fails, the old token is used.
    let auth = seeded(&server, &clock, &access, Some("r1"), T0 + 20);
    let api = auth.client(reqwest::Client::new());
    let resp = api
        .get(format!("{}/data", server.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Expired: the request fails with BackendUnavailable, the session stays.
    clock.advance_secs(60);
    let err = api
        .get(format!("{}/data", server.uri()))
        .send()
        .await
        .unwrap_err();
    let e = typed(&err);
    assert!(
        matches!(e, Error::BackendUnavailable { retry_after: Some(d), .. } if *d == Duration::from_secs(7)),
        "{e:?}"
    );
    assert_eq!(e.auth_code(), Some(AuthErrorCode::BackendUnavailable));
    assert!(!e.requires_login());
    let kept = auth.tokens().await.unwrap().unwrap();
    assert_eq!(kept.refresh_token.as_deref(), Some("r1"));

    // 429 on refresh is also transient.
    server.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/refresh-token"))
        .respond_with(ResponseTemplate::new(429))
        .mount(&server)
        .await;
    let e = auth.access_token().await.unwrap_err();
    assert!(matches!(e, Error::BackendUnavailable { .. }), "{e:?}");
    assert!(auth.is_logged_in().await.unwrap());
}

#[tokio::test]
async fn unreachable_backend_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let auth = crate::auth_builder(Backend::issuer_json(&format!("http://{dead}")).unwrap())
        .build()
        .unwrap();
    let e = auth.login("a", "b").await.unwrap_err();
    assert!(matches!(e, Error::BackendUnavailable { .. }), "{e:?}");
}

#[tokio::test]
async fn login_errors_are_typed() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let cases = [
        (
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": "invalid_credentials", "message": "no"})),
            "invalid",
        ),
        (
            ResponseTemplate::new(403).set_body_json(json!({"error": "account_disabled"})),
            "disabled",
        ),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "30"),
            "limited",
        ),
        (ResponseTemplate::new(500), "unavailable"),
        (
            ResponseTemplate::new(200).set_body_string("not json"),
            "unavailable",
        ),
        (
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": "invalid_request", "message": "m"})),
            "backend",
        ),
    ];
    for (response, want) in cases {
        server.reset().await;
        Mock::given(path("/api/login"))
            .respond_with(response)
            .mount(&server)
            .await;
        let e = auth(&server, &clock).login("u", "p").await.unwrap_err();
        let ok = match want {
            "invalid" => matches!(e, Error::InvalidCredentials),
            "disabled" => matches!(e, Error::AccountDisabled),
            "limited" => {
                matches!(e, Error::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(30))
            }
            "unavailable" => matches!(e, Error::BackendUnavailable { .. }),
            _ => {
                matches!(e, Error::Backend { status: 400, ref code, .. } if code == "invalid_request")
            }
        };
        assert!(ok, "{want}: {e:?}");
    }
}

/// Regression: only the seconds form of `Retry-After` was read. The date form is
/// measured from the client's clock (T0 + 90 s).
#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let date = "Tue, 14 Nov 2023 22:14:50 GMT";
    Mock::given(path("/api/login"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", date))
        .mount(&server)
        .await;
    Mock::given(path("/api/refresh-token"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", date))
        .mount(&server)
        .await;
    let e = auth(&server, &clock).login("u", "p").await.unwrap_err();
    assert!(
        matches!(e, Error::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(90)),
        "{e:?}"
    );
    let auth = seeded(&server, &clock, &jwt("u", T0 - 1), Some("r1"), T0 - 1);
    let e = auth.access_token().await.unwrap_err();
    assert!(
        matches!(e, Error::BackendUnavailable { retry_after: Some(d), .. } if d == Duration::from_secs(90)),
        "{e:?}"
    );
}

/// A token answer of 10 MB is refused as unavailable (the session is kept), not read.
#[tokio::test]
async fn an_oversized_token_answer_is_unavailable() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let huge = format!(r#"{{"accessToken":"a","pad":"{}"}}"#, "x".repeat(10 << 20));
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(huge))
        .mount(&server)
        .await;
    let e = auth(&server, &clock).login("u", "p").await.unwrap_err();
    assert!(matches!(e, Error::BackendUnavailable { .. }), "{e:?}");
    let current = jwt("u", T0 + 5);
    let auth = seeded(&server, &clock, &current, Some("r1"), T0 + 5);
    // Renewal due, the answer refused: the current token is kept.
    assert_eq!(auth.access_token().await.unwrap(), current);
    assert!(auth.is_logged_in().await.unwrap());
}

/// Regression: with a caller's own HTTP client (no timeout of its own), a backend that
/// never answers held the call forever; `AuthBuilder::timeout` now bounds every call.
#[tokio::test]
async fn a_callers_http_client_is_bounded_by_the_timeout() {
    let server = MockServer::start().await;
    Mock::given(path("/api/login"))
        .respond_with(grant("a", "r").set_delay(Duration::from_secs(3600)))
        .mount(&server)
        .await;
    let auth = crate::auth_builder(Backend::issuer_json(&server.uri()).unwrap())
        .http_client(reqwest::Client::new())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(60), auth.login("u", "p"))
        .await
        .expect("the backend call was not bounded")
        .unwrap_err();
    assert!(matches!(e, Error::BackendUnavailable { .. }), "{e:?}");
}

#[tokio::test]
async fn refresh_response_without_refresh_token_keeps_the_old_one() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let new = jwt("a", T0 + 900);
    Mock::given(method("POST"))
        .and(path("/api/refresh-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"accessToken": new})))
        .mount(&server)
        .await;
    let auth = seeded(&server, &clock, &jwt("a", T0 + 5), Some("keep-me"), T0 + 5);
    assert_eq!(auth.access_token().await.unwrap(), new);
    let t = auth.tokens().await.unwrap().unwrap();
    assert_eq!(t.refresh_token.as_deref(), Some("keep-me"));
    assert_eq!(t.expires_at, T0 + 900);
}

#[tokio::test]
async fn opaque_tokens_use_expires_in() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    Mock::given(path("/api/login"))
        .respond_with(grant("opaque-token", "r"))
        .mount(&server)
        .await;
    let auth = auth(&server, &clock);
    auth.login("u", "p").await.unwrap();
    assert_eq!(auth.tokens().await.unwrap().unwrap().expires_at, T0 + 900);
}

#[tokio::test]
async fn no_refresh_token_means_session_expired_at_exp() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let auth = seeded(&server, &clock, &jwt("a", T0 + 10), None, T0 + 10);
    // Still valid (inside the leeway, but nothing to renew with): used.
    assert!(auth.access_token().await.is_ok());
    clock.advance_secs(10);
    assert!(matches!(
        auth.access_token().await.unwrap_err(),
        Error::SessionExpired
    ));
    assert_eq!(count(&server, "/api/refresh-token").await, 0);
}

#[tokio::test]
async fn not_logged_in_is_session_expired() {
    let server = MockServer::start().await;
    let auth = auth(&server, &ManualClock::from_secs(T0));
    let e = auth.access_token().await.unwrap_err();
    assert!(matches!(e, Error::SessionExpired));
    assert_eq!(e.auth_code(), Some(AuthErrorCode::SessionExpired));
}

#[tokio::test]
async fn logout_revokes_and_forgets() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    Mock::given(method("POST"))
        .and(path("/api/logout"))
        .and(body_json(json!({"refresh_token": "r1"})))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let auth = seeded(&server, &clock, &jwt("a", T0 + 900), Some("r1"), T0 + 900);
    auth.logout().await.unwrap();
    assert!(!auth.is_logged_in().await.unwrap());
    // Logout with the backend down still forgets locally, and says so.
    let server2 = MockServer::start().await;
    Mock::given(path("/api/logout"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server2)
        .await;
    let auth = seeded(&server2, &clock, &jwt("a", T0 + 900), Some("r1"), T0 + 900);
    assert!(matches!(
        auth.logout().await.unwrap_err(),
        Error::BackendUnavailable { .. }
    ));
    assert!(!auth.is_logged_in().await.unwrap());
}

#[tokio::test]
async fn oauth2_backend_uses_form_grants_and_client_credentials() {
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let (a1, a2) = (jwt("a", T0 + 10), jwt("a", T0 + 900));
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=password"))
        .and(body_string_contains("username=alice"))
        .and(body_string_contains("client_id=cli"))
        .and(body_string_contains("client_secret=s3cret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": a1, "token_type": "Bearer", "expires_in": 10, "refresh_token": "or1"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=or1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": a2, "token_type": "Bearer", "expires_in": 900, "refresh_token": "or2"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/revoke"))
        .and(body_string_contains("token=or2"))
        .and(body_string_contains("token_type_hint=refresh_token"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let base = Url::parse(&server.uri()).unwrap();
    let backend = Backend::OAuth2 {
        token_url: base.join("/oauth/token").unwrap(),
        revoke_url: Some(base.join("/oauth/revoke").unwrap()),
        client_id: Some("cli".into()),
        client_secret: Some("s3cret".into()),
    };
    let auth = crate::auth_builder(backend)
        .clock(clock.clone())
        .build()
        .unwrap();
    auth.login("alice", "pw").await.unwrap();
    assert_eq!(
        auth.access_token().await.unwrap(),
        a2,
        "renewed: exp within leeway"
    );
    auth.logout().await.unwrap();

    // A wrong password is `invalid_grant` in OAuth.
    server.reset().await;
    Mock::given(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&server)
        .await;
    assert!(matches!(
        auth.login("alice", "bad").await.unwrap_err(),
        Error::InvalidCredentials
    ));
}

#[tokio::test]
async fn bearer_only_goes_to_allowed_origins() {
    let api = MockServer::start().await;
    let other = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let token = jwt("a", T0 + 900);
    for s in [&api, &other] {
        Mock::given(path("/x"))
            .respond_with(|r: &Request| {
                ResponseTemplate::new(200).set_body_string(
                    if r.headers.contains_key("authorization") {
                        "with"
                    } else {
                        "without"
                    },
                )
            })
            .mount(s)
            .await;
    }
    let auth = crate::auth_builder(Backend::issuer_json(&api.uri()).unwrap())
        .clock(clock)
        .store(MemoryStore::with_tokens(Tokens {
            access_token: token,
            refresh_token: None,
            expires_at: T0 + 900,
        }))
        .allowed_origins([api.uri()])
        .unwrap()
        .build()
        .unwrap();
    let client = auth.client(reqwest::Client::new());
    let body = |r: reqwest::Response| async move { r.text().await.unwrap() };
    let to_api = client.get(format!("{}/x", api.uri())).send().await.unwrap();
    assert_eq!(body(to_api).await, "with");
    let to_other = client
        .get(format!("{}/x", other.uri()))
        .send()
        .await
        .unwrap();
    assert_eq!(body(to_other).await, "without");
}

#[tokio::test]
async fn shared_auth_is_one_session() {
    // Clones and separate clients share the session and its single flight.
    let server = MockServer::start().await;
    let clock = ManualClock::from_secs(T0);
    let new = jwt("a", T0 + 900);
    Mock::given(method("POST"))
        .and(path("/api/refresh-token"))
        .respond_with(grant(&new, "r2").set_delay(Duration::from_millis(30)))
        .mount(&server)
        .await;
    let auth = seeded(&server, &clock, &jwt("a", T0 + 1), Some("r1"), T0 + 1);
    let auth2 = auth.clone();
    let (a, b) = tokio::join!(auth.access_token(), auth2.access_token());
    assert_eq!(a.unwrap(), new);
    assert_eq!(b.unwrap(), new);
    assert_eq!(count(&server, "/api/refresh-token").await, 1);
}
