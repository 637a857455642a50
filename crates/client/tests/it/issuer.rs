//! The key guarantees against the real issuer (SQLite in a temp dir) and a
//! protected API that verifies tokens with `sallyport-jwt`, all on loopback.
//! One manual clock drives the issuer, the API and the client, so crossing
//! an expiry needs no sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sallyport_client::{Auth, Backend, Clock, Error};
use sallyport_issuer::{Config, Issuer, ManualClock};
use sallyport_jwt::{Verifier, VerifierConfig, bearer_token};

use super::typed;

const ISS: &str = "http://issuer.test";
const PASSWORD: &str = "correct horse battery staple";

struct Harness {
    base: String,
    issuer: Issuer,
    clock: ManualClock,
    /// Refresh requests that reached the issuer (JSON and OAuth).
    refreshes: Arc<AtomicU64>,
    /// Keeps the issuer's temporary directory alive.
    _issuer: sallyport_testkit::TestIssuer,
}

impl Harness {
    async fn start() -> Self {
        let clock = ManualClock::starting_now();
        let refreshes = Arc::new(AtomicU64::new(0));
        let (api_clock, counter) = (clock.clone(), refreshes.clone());
        let t = sallyport_testkit::TestIssuer::builder()
            .config(|c| c.issuer = ISS.into())
            .clock(Arc::new(clock.clone()))
            .wrap(move |router, addr| {
                let verifier = Verifier::new(VerifierConfig::new(
                    format!("http://{addr}/.well-known/jwks.json"),
                    ISS,
                    Config::default().audience,
                ))
                .unwrap();
                let api = axum::Router::new()
                    .route("/data", get(data))
                    .with_state(ApiState {
                        verifier,
                        clock: api_clock,
                    });
                router
                    .merge(api)
                    .layer(middleware::from_fn_with_state(counter, count_refreshes))
            })
            .start()
            .await;
        t.add_user("alice", PASSWORD, &["user"]).await;
        Harness {
            base: t.url.clone(),
            issuer: t.issuer.clone(),
            clock,
            refreshes,
            _issuer: t,
        }
    }

    fn auth(&self, backend: Backend) -> Auth {
        crate::auth_builder(backend)
            .clock(self.clock.clone())
            .build()
            .unwrap()
    }

    fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::SeqCst)
    }

    fn ttl_secs(&self) -> u64 {
        self.issuer.settings().raw.access_token_ttl_secs
    }
}

#[derive(Clone)]
struct ApiState {
    verifier: Verifier,
    /// The issuer's clock: the client, issuer and API share one clock type.
    clock: ManualClock,
}

/// The protected API: verifies the bearer token at the shared clock's time.
async fn data(State(s): State<ApiState>, req: Request) -> Response {
    let Ok(token) = bearer_token(req.headers()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match s.verifier.verify_at(token, s.clock.now_secs()).await {
        Ok(claims) => claims.sub.into_response(),
        Err(_) => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// Counts token requests that can renew a session: every
/// `/api/refresh-token` call and every `/oauth/token` call (the OAuth test
/// subtracts its logins).
async fn count_refreshes(State(n): State<Arc<AtomicU64>>, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/api/refresh-token" | "/oauth/token") {
        n.fetch_add(1, Ordering::SeqCst);
    }
    next.run(req).await
}

#[tokio::test]
async fn hundred_concurrent_requests_across_an_expiry_cause_one_refresh() {
    let h = Harness::start().await;
    let auth = h.auth(Backend::issuer_json(&h.base).unwrap());
    auth.login("alice", PASSWORD).await.unwrap();
    let api = auth.client(reqwest::Client::new());
    let url = format!("{}/data", h.base);

    let first = api.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(h.refreshes(), 0);

    // Cross the expiry of the access token.
    h.clock.advance_secs(h.ttl_secs() + 1);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (api, url) = (api.clone(), url.clone());
            tokio::spawn(async move {
                let r = api.get(url).send().await.unwrap();
                (r.status(), r.text().await.unwrap())
            })
        })
        .collect();
    let user_id = h
        .issuer
        .admin()
        .find_user("alice")
        .await
        .unwrap()
        .unwrap()
        .id;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, user_id);
    }
    assert_eq!(h.refreshes(), 1, "exactly one refresh reached the issuer");
    assert_eq!(auth.refresh_count(), 1);

    // And the session continues: still one family, not revoked.
    let sessions = h.issuer.admin().list_sessions(Some("alice")).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].revoked_at_ms.is_none());
}

#[tokio::test]
async fn revoked_session_gives_a_clear_error_not_a_loop() {
    let h = Harness::start().await;
    let auth = h.auth(Backend::issuer_json(&h.base).unwrap());
    auth.login("alice", PASSWORD).await.unwrap();
    let api = auth.client(reqwest::Client::new());
    let url = format!("{}/data", h.base);
    assert_eq!(api.get(&url).send().await.unwrap().status(), 200);

    // An administrator revokes the session (`sallyport session revoke`).
    let sessions = h.issuer.admin().list_sessions(Some("alice")).await.unwrap();
    h.issuer
        .admin()
        .revoke_session(&sessions[0].id)
        .await
        .unwrap();
    h.clock.advance_secs(h.ttl_secs() + 1);

    let err = api.get(&url).send().await.unwrap_err();
    let e = typed(&err);
    assert!(matches!(e, Error::ReauthRequired { .. }), "{e:?}");
    assert!(e.requires_login());
    assert_eq!(h.refreshes(), 1);

    // Afterwards: SessionExpired straight away, no further backend calls.
    for _ in 0..3 {
        let err = api.get(&url).send().await.unwrap_err();
        assert!(matches!(typed(&err), Error::SessionExpired));
    }
    assert_eq!(h.refreshes(), 1, "no refresh loop");

    // Logging in again works.
    auth.login("alice", PASSWORD).await.unwrap();
    assert_eq!(api.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn json_backend_login_errors_and_logout() {
    let h = Harness::start().await;
    let auth = h.auth(Backend::issuer_json(&h.base).unwrap());
    assert!(matches!(
        auth.login("alice", "wrong password").await.unwrap_err(),
        Error::InvalidCredentials
    ));
    assert!(matches!(
        auth.login("nobody", PASSWORD).await.unwrap_err(),
        Error::InvalidCredentials
    ));
    h.issuer.admin().disable_user("alice").await.unwrap();
    assert!(matches!(
        auth.login("alice", PASSWORD).await.unwrap_err(),
        Error::AccountDisabled
    ));
    h.issuer.admin().enable_user("alice").await.unwrap();

    auth.login("alice", PASSWORD).await.unwrap();
    let refresh_token = auth.tokens().await.unwrap().unwrap().refresh_token.unwrap();
    auth.logout().await.unwrap();
    assert!(!auth.is_logged_in().await.unwrap());
    // The refresh token is dead at the issuer, not just forgotten locally.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/refresh-token", h.base))
        .json(&serde_json::json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn oauth2_backend_against_the_issuer() {
    let h = Harness::start().await;
    let auth = h.auth(Backend::issuer_oauth2(&h.base).unwrap());
    assert!(matches!(
        auth.login("alice", "wrong password").await.unwrap_err(),
        Error::InvalidCredentials
    ));
    auth.login("alice", PASSWORD).await.unwrap();
    let logins = h.refreshes(); // every /oauth/token call is counted
    let api = auth.client(reqwest::Client::new());
    let url = format!("{}/data", h.base);
    assert_eq!(api.get(&url).send().await.unwrap().status(), 200);

    h.clock.advance_secs(h.ttl_secs() + 1);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (api, url) = (api.clone(), url.clone());
            tokio::spawn(async move { api.get(url).send().await.unwrap().status() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(h.refreshes() - logins, 1, "one refresh_token grant");

    let refresh_token = auth.tokens().await.unwrap().unwrap().refresh_token.unwrap();
    auth.logout().await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/oauth/token", h.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}
