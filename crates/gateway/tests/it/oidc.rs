//! `backend.kind = "oidc"` against a small OpenID provider written here (axum on
//! loopback: discovery, JWKS, authorization, token, revocation endpoints) whose keys and
//! answers the tests control — for the attacks a certified provider cannot be made to
//! commit: a wrong nonce, an ID token signed by another key, a wrong `iss`/`aud`/`azp`,
//! an expired token, forged and replayed `state`, bad logout tokens. The full flow
//! against the real `oidc-provider` is tests/oidc (Node, Chromium).
//!
//! The provider dates its tokens on the gateway's clock, so moving that clock (renewal
//! tests) moves both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use sallyport_gateway::{BackendKind, Clock, Config, Gateway, OffsetClock};
use sallyport_jwt::{Algorithm, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{SECRET, client, cookie_header, header_of, start_upstream};

const CLIENT_ID: &str = "gateway";

/// What the provider does to the next ID token it issues.
#[derive(Clone, Default)]
struct Tweak {
    iss: Option<String>,
    aud: Option<Value>,
    azp: Option<String>,
    nonce: Option<String>,
    /// Seconds added to `exp` (negative: already expired).
    exp_offset: i64,
    /// Seconds added to `iat`.
    iat_offset: i64,
    /// Leave `iat` out of the ID token.
    no_iat: bool,
    sub: Option<String>,
    /// The provider session id (default `op-session-<sub>`).
    sid: Option<String>,
    /// Sign with this key (its kid may be a published one: a forged signature).
    signer: Option<Arc<SigningKey>>,
    /// The `iss` authorization-response parameter (RFC 9207): `Some("")` leaves it out.
    iss_param: Option<String>,
}

struct Op {
    url: String,
    clock: Arc<OffsetClock>,
    /// Published keys; the first signs.
    keys: Mutex<Vec<Arc<SigningKey>>>,
    tweak: Mutex<Tweak>,
    /// code → (nonce, code_challenge, sub)
    codes: Mutex<HashMap<String, (String, String)>>,
    /// refresh token → sub
    refresh: Mutex<HashMap<String, String>>,
    refreshes: AtomicUsize,
    jwks_fetches: AtomicUsize,
    counter: AtomicUsize,
    /// `private_key_jwt`: the client's registered public keys; set, the token endpoint
    /// requires a valid client assertion.
    client_keys: Mutex<Option<sallyport_jwt::JwkSet>>,
}

impl Op {
    fn now(&self) -> u64 {
        self.clock.now_ms() / 1000
    }

    fn next_id(&self, what: &str) -> String {
        format!("{what}-{}", self.counter.fetch_add(1, Ordering::SeqCst))
    }

    /// A compact JWS with header `typ` and the given claims, by `key`.
    fn jws(key: &SigningKey, typ: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": key.algorithm().as_str(), "kid": key.kid()});
        if let Some(t) = typ {
            header["typ"] = json!(t);
        }
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        let input = format!("{h}.{p}");
        let sig = key.sign_bytes(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn signer(&self) -> Arc<SigningKey> {
        self.keys.lock().unwrap()[0].clone()
    }

    fn id_token(&self, sub: &str, nonce: Option<&str>) -> String {
        let t = self.tweak.lock().unwrap().clone();
        let now = self.now();
        let sub = t.sub.clone().unwrap_or_else(|| sub.to_owned());
        let mut claims = json!({
            "iss": t.iss.clone().unwrap_or_else(|| self.url.clone()),
            "sub": sub,
            "aud": t.aud.clone().unwrap_or_else(|| json!(CLIENT_ID)),
            "exp": (now as i64 + 300 + t.exp_offset) as u64,
            "iat": (now as i64 + t.iat_offset) as u64,
            "sid": t.sid.clone().unwrap_or_else(|| format!("op-session-{sub}")),
            "name": "Alice Example",
            "email": "alice@example.com",
        });
        if let Some(n) = t.nonce.as_deref().or(nonce) {
            claims["nonce"] = json!(n);
        }
        if let Some(azp) = &t.azp {
            claims["azp"] = json!(azp);
        }
        if t.no_iat {
            claims.as_object_mut().unwrap().remove("iat");
        }
        let key = t.signer.clone().unwrap_or_else(|| self.signer());
        Self::jws(&key, Some("JWT"), &claims)
    }

    /// A logout token for `sid`/`sub`; `edit` changes its claims.
    fn logout_token(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        edit: impl FnOnce(&mut Value),
    ) -> String {
        let now = self.now();
        let mut claims = json!({
            "iss": self.url,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 120,
            "jti": self.next_id("jti"),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        });
        if let Some(s) = sid {
            claims["sid"] = json!(s);
        }
        if let Some(s) = sub {
            claims["sub"] = json!(s);
        }
        edit(&mut claims);
        Self::jws(&self.signer(), Some("logout+jwt"), &claims)
    }
}

async fn discovery(State(op): State<Arc<Op>>) -> Json<Value> {
    let u = &op.url;
    Json(json!({
        "issuer": u,
        "authorization_endpoint": format!("{u}/authorize"),
        "token_endpoint": format!("{u}/token"),
        "jwks_uri": format!("{u}/jwks"),
        "revocation_endpoint": format!("{u}/revoke"),
        "end_session_endpoint": format!("{u}/session/end"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    }))
}

async fn jwks(State(op): State<Arc<Op>>) -> Json<sallyport_jwt::JwkSet> {
    op.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys = op.keys.lock().unwrap().clone();
    Json(sallyport_jwt::jwk_set(keys.iter().map(|k| &**k)))
}

async fn authorize(
    State(op): State<Arc<Op>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    let code = op.next_id("code");
    op.codes.lock().unwrap().insert(
        code.clone(),
        (q["nonce"].clone(), q["code_challenge"].clone()),
    );
    let iss = op.tweak.lock().unwrap().iss_param.clone();
    let mut to = url::Url::parse(&q["redirect_uri"]).unwrap();
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &q["state"]);
    match iss.as_deref() {
        Some("") => {}
        Some(other) => {
            to.query_pairs_mut().append_pair("iss", other);
        }
        None => {
            to.query_pairs_mut().append_pair("iss", &op.url);
        }
    }
    Redirect::to(to.as_str()).into_response()
}

async fn token(State(op): State<Arc<Op>>, Form(f): Form<HashMap<String, String>>) -> Response {
    let refuse = || {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response()
    };
    let registered = op.client_keys.lock().unwrap().clone();
    if let Some(jwks) = registered {
        // RFC 7523 §3: signed by a registered key, iss = sub = client id, aud = the
        // token endpoint, not expired.
        let cfg = sallyport_jwt::VerifierConfig::new("", CLIENT_ID, format!("{}/token", op.url))
            .algorithms([Algorithm::Rs256, Algorithm::Es256])
            .accepted_types(["JWT"]);
        let verifier = sallyport_jwt::Verifier::from_jwks(jwks, cfg);
        let ok = f.get("client_assertion_type").map(String::as_str)
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            && f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && !f.contains_key("client_secret");
        let claims = match f.get("client_assertion") {
            Some(a) if ok => verifier.verify_at(a, op.now()).await.ok(),
            _ => None,
        };
        if claims.is_none_or(|c| c.sub != CLIENT_ID || c.jti.is_empty()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_client"})),
            )
                .into_response();
        }
    }
    let sub = "alice";
    let (sub, nonce) = match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((nonce, challenge)) = op.codes.lock().unwrap().remove(&f["code"]) else {
                return refuse();
            };
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
                return refuse();
            }
            (sub.to_owned(), Some(nonce))
        }
        Some("refresh_token") => {
            op.refreshes.fetch_add(1, Ordering::SeqCst);
            match op.refresh.lock().unwrap().remove(&f["refresh_token"]) {
                Some(sub) => (sub, None),
                None => return refuse(),
            }
        }
        _ => return refuse(),
    };
    let rt = op.next_id("rt");
    op.refresh.lock().unwrap().insert(rt.clone(), sub.clone());
    Json(json!({
        "access_token": op.next_id("at"),
        "token_type": "Bearer",
        "expires_in": 600,
        "refresh_token": rt,
        "id_token": op.id_token(&sub, nonce.as_deref()),
    }))
    .into_response()
}

async fn start_op(clock: Arc<OffsetClock>) -> Arc<Op> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let op = Arc::new(Op {
        url,
        clock,
        keys: Mutex::new(vec![Arc::new(
            SigningKey::generate(Algorithm::Rs256, "rsa-1").unwrap(),
        )]),
        tweak: Mutex::new(Tweak::default()),
        codes: Mutex::new(HashMap::new()),
        refresh: Mutex::new(HashMap::new()),
        refreshes: AtomicUsize::new(0),
        jwks_fetches: AtomicUsize::new(0),
        counter: AtomicUsize::new(0),
        client_keys: Mutex::new(None),
    });
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/revoke", post(|| async { StatusCode::OK }))
        .with_state(op.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    op
}

struct Rp {
    op: Arc<Op>,
    url: String,
    clock: Arc<OffsetClock>,
    upstream_url: String,
    http: reqwest::Client,
}

fn oidc_config(op: &Op, upstream: &str, gateway_port: u16) -> Config {
    let mut c = Config::default();
    c.listen = format!("127.0.0.1:{gateway_port}").parse().unwrap();
    c.upstream = upstream.to_owned();
    c.public_origin = Some(format!("http://127.0.0.1:{gateway_port}"));
    c.session.secret = Some(SECRET.into());
    c.session.secure = false;
    c.backend.kind = BackendKind::Oidc;
    c.backend.issuer = Some(op.url.clone());
    c.backend.client_id = Some(CLIENT_ID.into());
    c.backend.client_secret = Some("s3cret".into());
    c.backend.timeout_ms = 2000;
    c.admin.enabled = false;
    c.store.persist_logouts = false;
    c
}

/// A gateway in front of the echo upstream, against `op`, on a clock shared with it.
async fn start_rp_with(
    op: Arc<Op>,
    clock: Arc<OffsetClock>,
    tweak: impl FnOnce(&mut Config),
) -> Rp {
    let (_up, upstream_url) = start_upstream().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut c = oidc_config(&op, &upstream_url, port);
    tweak(&mut c);
    let gateway = Gateway::with_clock(c.validate().unwrap(), clock.clone())
        .await
        .unwrap();
    tokio::spawn(async move {
        sallyport_gateway::serve_with_shutdown(listener, gateway, std::future::pending())
            .await
            .ok();
    });
    Rp {
        op,
        url: format!("http://127.0.0.1:{port}"),
        clock,
        upstream_url,
        http: client(),
    }
}

async fn start_rp() -> Rp {
    let clock = Arc::new(OffsetClock::default());
    let op = start_op(clock.clone()).await;
    start_rp_with(op, clock, |_| {}).await
}

/// The steps of one login, for tests that interfere between them.
struct Login {
    /// The attempt cookie (`name=value`).
    attempt: String,
    /// The callback URL the provider redirected to.
    callback: String,
}

impl Rp {
    /// `GET /auth/login?next=…`, then the provider's authorize endpoint.
    async fn begin(&self, next: &str) -> Login {
        let r = self
            .http
            .get(format!("{}/auth/login?next={next}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let attempt = cookie_header(r.headers()).expect("attempt cookie");
        let to = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            to.starts_with(&format!("{}/authorize?", self.op.url)),
            "{to}"
        );
        let r = self.http.get(&to).send().await.unwrap();
        let callback = r.headers()["location"].to_str().unwrap().to_owned();
        Login { attempt, callback }
    }

    /// The callback with `cookie`; (status, Location, session cookie, body).
    async fn callback(
        &self,
        url: &str,
        cookie: &str,
    ) -> (u16, Option<String>, Option<String>, String) {
        let r = self
            .http
            .get(url)
            .header("cookie", cookie)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let loc = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let set = cookie_header(r.headers());
        (status, loc, set, r.text().await.unwrap())
    }

    /// A whole login; the session `Cookie` header.
    async fn login(&self) -> String {
        let l = self.begin("/dashboard").await;
        let (status, loc, set, body) = self.callback(&l.callback, &l.attempt).await;
        assert_eq!(status, 303, "{body}");
        assert_eq!(loc.as_deref(), Some("/dashboard"));
        set.expect("session cookie")
    }

    async fn echo(&self, cookie: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/echo", self.url))
            .header("cookie", cookie)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn backchannel(&self, token: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/auth/backchannel-logout", self.url))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        assert_eq!(r.headers()["cache-control"], "no-store");
        (s, r.json().await.unwrap_or(Value::Null))
    }

    fn tweak(&self, t: Tweak) {
        *self.op.tweak.lock().unwrap() = t;
    }
}

#[tokio::test]
async fn login_through_the_provider_lands_on_next_with_a_bearer_token() {
    let rp = start_rp().await;
    let cookie = rp.login().await;
    let (status, echo) = rp.echo(&cookie).await;
    assert_eq!(status, 200);
    let auth = header_of(&echo, "authorization").unwrap();
    assert!(auth.starts_with("Bearer at-"), "{auth}");
    let s: Value = rp
        .http
        .get(format!("{}/auth/session", rp.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["isLoggedIn"], true);
    assert_eq!(s["user"]["sub"], "alice");
    assert_eq!(s["user"]["name"], "Alice Example");
    assert!(
        !s.to_string().contains("rt-"),
        "no refresh token in the view"
    );
    let _ = &rp.upstream_url;
}

#[tokio::test]
async fn api_requests_without_a_session_get_401_pages_go_to_the_provider() {
    let rp = start_rp().await;
    let (status, body) = rp.echo("").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "session_expired");
    let r = rp
        .http
        .get(format!("{}/reports?x=1", rp.url))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap();
    assert!(to.starts_with("/auth/login?next="), "{to}");
    // And the password endpoint is not there.
    let r = rp
        .http
        .post(format!("{}/auth/login", rp.url))
        .json(&json!({"username": "a", "password": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "password_login_disabled");
    // The message is for a person: no unfilled `{placeholder}` in it.
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains('{'), "{message}");
}

#[tokio::test]
async fn parallel_logins_in_two_tabs_each_complete() {
    let rp = start_rp().await;
    let a = rp.begin("/a").await;
    let b = rp.begin("/b").await;
    assert_ne!(a.attempt, b.attempt);
    // The browser sends both attempt cookies (same path); each callback finds its own.
    let both = format!("{}; {}", a.attempt, b.attempt);
    let (sb, lb, _, _) = rp.callback(&b.callback, &both).await;
    let (sa, la, _, _) = rp.callback(&a.callback, &both).await;
    assert_eq!((sa, la.as_deref()), (303, Some("/a")));
    assert_eq!((sb, lb.as_deref()), (303, Some("/b")));
}

/// Each bad ID token is refused with a page (never a redirect), and no session cookie.
#[tokio::test]
async fn bad_id_tokens_are_refused() {
    let rp = start_rp().await;
    let other_key = Arc::new(SigningKey::generate(Algorithm::Rs256, "rsa-1").unwrap());
    let unknown_key = Arc::new(SigningKey::generate(Algorithm::Rs256, "rsa-x").unwrap());
    let cases: Vec<(&str, Tweak)> = vec![
        (
            "wrong nonce",
            Tweak {
                nonce: Some("not-the-nonce".into()),
                ..Tweak::default()
            },
        ),
        (
            "signed by another key (same kid)",
            Tweak {
                signer: Some(other_key),
                ..Tweak::default()
            },
        ),
        (
            "signed by an unpublished key",
            Tweak {
                signer: Some(unknown_key),
                ..Tweak::default()
            },
        ),
        (
            "wrong iss",
            Tweak {
                iss: Some("http://127.0.0.1:1".into()),
                ..Tweak::default()
            },
        ),
        (
            "wrong aud",
            Tweak {
                aud: Some(json!("someone-else")),
                ..Tweak::default()
            },
        ),
        (
            "azp of another client",
            Tweak {
                azp: Some("someone-else".into()),
                ..Tweak::default()
            },
        ),
        (
            "several audiences without azp",
            Tweak {
                aud: Some(json!([CLIENT_ID, "api"])),
                ..Tweak::default()
            },
        ),
        (
            "issued long before this login",
            Tweak {
                iat_offset: -3600,
                exp_offset: 3600,
                ..Tweak::default()
            },
        ),
        (
            "issued in the future",
            Tweak {
                iat_offset: 3600,
                exp_offset: 3600,
                ..Tweak::default()
            },
        ),
        (
            "expired",
            Tweak {
                exp_offset: -600,
                ..Tweak::default()
            },
        ),
    ];
    for (what, tweak) in cases {
        rp.tweak(tweak);
        let l = rp.begin("/x").await;
        let (status, loc, set, body) = rp.callback(&l.callback, &l.attempt).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(loc.is_none(), "{what}: redirected");
        assert!(set.is_none(), "{what}: a session cookie was set");
        assert!(body.contains("could not be verified"), "{what}: {body}");
        assert!(body.contains("/auth/login?next=/x"), "{what}: retry link");
    }
    // The same flow with a correct token works (the refusals were the tweaks).
    rp.tweak(Tweak::default());
    rp.login().await;
}

#[tokio::test]
async fn forged_missing_and_replayed_state_is_refused() {
    let rp = start_rp().await;
    let l = rp.begin("/x").await;
    // Without the attempt cookie (another browser: login CSRF).
    let (s, loc, set, body) = rp.callback(&l.callback, "").await;
    assert_eq!(s, 400);
    assert!(loc.is_none() && set.is_none());
    assert!(body.contains("not valid in this browser"), "{body}");
    // A state that is not the one in the cookie.
    let other = rp.begin("/y").await;
    let forged = l.callback.replace(
        &url::Url::parse(&l.callback)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .to_string(),
        "forged-state",
    );
    let (s, _, set, _) = rp
        .callback(&forged, &format!("{}; {}", l.attempt, other.attempt))
        .await;
    assert_eq!(s, 400);
    assert!(set.is_none());
    // One attempt's sealed value under the cookie name of another attempt's state.
    let (name, _) = other.attempt.split_once('=').unwrap();
    let (_, value) = l.attempt.split_once('=').unwrap();
    let (s, _, set, body) = rp
        .callback(&other.callback, &format!("{name}={value}"))
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(set.is_none());
    assert!(body.contains("not valid in this browser"), "{body}");
    // The real one works once…
    let (s, loc, _, _) = rp.callback(&l.callback, &l.attempt).await;
    assert_eq!((s, loc.as_deref()), (303, Some("/x")));
    // …and a replay with the same cookie is refused, without a redirect.
    let (s, loc, set, body) = rp.callback(&l.callback, &l.attempt).await;
    assert_eq!(s, 400, "{body}");
    assert!(loc.is_none() && set.is_none());
    assert!(body.contains("already been used"), "{body}");
}

#[tokio::test]
async fn rfc9207_iss_parameter_is_checked() {
    let rp = start_rp().await;
    for (what, iss) in [("wrong iss", "http://127.0.0.1:1"), ("missing iss", "")] {
        rp.tweak(Tweak {
            iss_param: Some(iss.into()),
            ..Tweak::default()
        });
        let l = rp.begin("/x").await;
        let (s, loc, set, body) = rp.callback(&l.callback, &l.attempt).await;
        assert_eq!(s, 400, "{what}");
        assert!(loc.is_none() && set.is_none(), "{what}");
        assert!(
            body.contains("expected identity provider"),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn provider_errors_end_on_a_page_with_a_retry_link() {
    let rp = start_rp().await;
    let l = rp.begin("/after").await;
    let url = url::Url::parse(&l.callback).unwrap();
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let denied = format!(
        "{}/auth/callback?error=access_denied&error_description=no&state={state}&iss={}",
        rp.url,
        url::form_urlencoded::byte_serialize(rp.op.url.as_bytes()).collect::<String>()
    );
    let (s, loc, set, body) = rp.callback(&denied, &l.attempt).await;
    assert_eq!(s, 403);
    assert!(loc.is_none() && set.is_none());
    assert!(body.contains("cancelled or refused"), "{body}");
    assert!(body.contains("href=\"/auth/login?next=/after\""), "{body}");
}

#[tokio::test]
async fn renewal_uses_the_refresh_token_and_checks_the_renewed_id_token() {
    let rp = start_rp().await;
    let cookie = rp.login().await;
    let (_, before) = rp.echo(&cookie).await;
    // Past the 600 s access token: renewed at the provider's token endpoint.
    rp.clock.advance_ms(11 * 60 * 1000);
    let r = rp
        .http
        .get(format!("{}/echo", rp.url))
        .header("cookie", &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let renewed = cookie_header(r.headers()).expect("renewed cookie");
    let after: Value = r.json().await.unwrap();
    assert_ne!(
        header_of(&before, "authorization"),
        header_of(&after, "authorization")
    );
    assert_eq!(rp.op.refreshes.load(Ordering::SeqCst), 1);
    // A renewal whose ID token names another subject ends the session.
    rp.tweak(Tweak {
        sub: Some("mallory".into()),
        ..Tweak::default()
    });
    rp.clock.advance_ms(11 * 60 * 1000);
    let (status, body) = rp.echo(&renewed).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "reauth_required");
    // …as does one whose ID token is signed by another key.
    rp.tweak(Tweak::default());
    let cookie = rp.login().await;
    rp.tweak(Tweak {
        signer: Some(Arc::new(
            SigningKey::generate(Algorithm::Rs256, "rsa-1").unwrap(),
        )),
        ..Tweak::default()
    });
    rp.clock.advance_ms(11 * 60 * 1000);
    assert_eq!(rp.echo(&cookie).await.0, 401);
    // …as does one whose ID token has no `iat` (at renewal no age limit would catch it).
    rp.tweak(Tweak::default());
    let cookie = rp.login().await;
    rp.tweak(Tweak {
        no_iat: true,
        ..Tweak::default()
    });
    rp.clock.advance_ms(11 * 60 * 1000);
    assert_eq!(rp.echo(&cookie).await.0, 401);
}

#[tokio::test]
async fn provider_key_rotation_is_accepted_after_a_jwks_refetch() {
    let rp = start_rp().await;
    rp.login().await;
    let fetches = rp.op.jwks_fetches.load(Ordering::SeqCst);
    // The provider rotates: a new key signs, the old one stays published.
    let new = Arc::new(SigningKey::generate(Algorithm::Ps256, "rsa-2").unwrap());
    rp.op.keys.lock().unwrap().insert(0, new);
    // The verifier refetches at most every 10 s (forged kids must not hammer the
    // provider); wait that out rather than shortening it for the test.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let cookie = rp.login().await;
    assert!(rp.op.jwks_fetches.load(Ordering::SeqCst) > fetches);
    assert_eq!(rp.echo(&cookie).await.0, 200);
}

#[tokio::test]
async fn back_channel_logout_ends_the_named_session_only() {
    let rp = start_rp().await;
    let alice = rp.login().await;
    assert_eq!(rp.echo(&alice).await.0, 200);
    // Another provider session of another user stays.
    rp.tweak(Tweak {
        sub: Some("bob".into()),
        ..Tweak::default()
    });
    let bob = rp.login().await;
    rp.tweak(Tweak::default());
    let token = rp
        .op
        .logout_token(Some("op-session-alice"), Some("alice"), |_| {});
    let (s, body) = rp.backchannel(&token).await;
    assert_eq!(s, 200, "{body}");
    let (status, body) = rp.echo(&alice).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(rp.echo(&bob).await.0, 200, "bob's session is untouched");
    // Not renewed either: moving past expiry still refuses, no refresh is spent.
    rp.clock.advance_ms(11 * 60 * 1000);
    let refreshes = rp.op.refreshes.load(Ordering::SeqCst);
    assert_eq!(rp.echo(&alice).await.0, 401);
    assert_eq!(rp.op.refreshes.load(Ordering::SeqCst), refreshes);
}

#[tokio::test]
async fn back_channel_logout_by_subject_ends_earlier_sessions_not_later_ones() {
    let rp = start_rp().await;
    let first = rp.login().await;
    let second = rp.login().await;
    rp.clock.advance_ms(1000);
    let token = rp.op.logout_token(None, Some("alice"), |_| {});
    assert_eq!(rp.backchannel(&token).await.0, 200);
    assert_eq!(rp.echo(&first).await.0, 401);
    assert_eq!(rp.echo(&second).await.0, 401);
    rp.clock.advance_ms(1000);
    let later = rp.login().await;
    assert_eq!(
        rp.echo(&later).await.0,
        200,
        "a login after the logout works"
    );
}

#[tokio::test]
async fn invalid_logout_tokens_are_refused_with_400() {
    let rp = start_rp().await;
    let cookie = rp.login().await;
    let op = &rp.op;
    let sid = Some("op-session-alice");
    let other_key = SigningKey::generate(Algorithm::Rs256, "rsa-1").unwrap();
    let now = op.now();
    let valid_claims = json!({
        "iss": op.url, "aud": CLIENT_ID, "iat": now, "exp": now + 120, "jti": "forged-1",
        "sid": "op-session-alice",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    });
    let cases: Vec<(&str, String)> = vec![
        (
            "with a nonce",
            op.logout_token(sid, None, |c| c["nonce"] = json!("n")),
        ),
        (
            "without events",
            op.logout_token(sid, None, |c| {
                c.as_object_mut().unwrap().remove("events");
            }),
        ),
        (
            "with another event",
            op.logout_token(sid, None, |c| c["events"] = json!({"urn:other": {}})),
        ),
        ("without sid and sub", op.logout_token(None, None, |_| {})),
        (
            "without jti",
            op.logout_token(sid, None, |c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ),
        (
            "wrong aud",
            op.logout_token(sid, None, |c| c["aud"] = json!("other")),
        ),
        (
            "wrong iss",
            op.logout_token(sid, None, |c| c["iss"] = json!("http://127.0.0.1:1")),
        ),
        (
            "too old",
            op.logout_token(sid, None, |c| {
                c["iat"] = json!(now - 3600);
            }),
        ),
        (
            "issued in the future",
            op.logout_token(sid, None, |c| {
                c["iat"] = json!(now + 3600);
                c["exp"] = json!(now + 3720);
            }),
        ),
        (
            "without iat",
            op.logout_token(sid, None, |c| {
                c.as_object_mut().unwrap().remove("iat");
            }),
        ),
        (
            "wrong signature",
            Op::jws(&other_key, Some("logout+jwt"), &valid_claims),
        ),
        (
            "typed as an access token",
            Op::jws(&op.signer(), Some("at+jwt"), &valid_claims),
        ),
        ("an ID token", op.id_token("alice", Some("n"))),
    ];
    for (what, token) in cases {
        let (s, body) = rp.backchannel(&token).await;
        assert_eq!(s, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_request", "{what}");
        assert_eq!(
            rp.echo(&cookie).await.0,
            200,
            "{what}: the session was ended"
        );
    }
    // A valid one is accepted once; its replay is refused.
    let token = op.logout_token(sid, None, |_| {});
    assert_eq!(rp.backchannel(&token).await.0, 200);
    let (s, body) = rp.backchannel(&token).await;
    assert_eq!(s, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("replayed")
    );
    assert_eq!(rp.echo(&cookie).await.0, 401);
}

/// The back-channel route reads only a form, and only 16 KiB of it: anything else
/// is refused with 400 before a token is looked at, and the session stays.
#[tokio::test]
async fn logout_requests_not_a_form_or_too_large_are_refused() {
    let rp = start_rp().await;
    let cookie = rp.login().await;
    let token = rp.op.logout_token(Some("op-session-alice"), None, |_| {});
    let url = format!("{}/auth/backchannel-logout", rp.url);
    // A form body under another content type (a cross-site "simple" text/plain POST).
    let not_a_form = rp
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .body(format!("logout_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_form.status().as_u16(), 400);
    let body: Value = not_a_form.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("x-www-form-urlencoded"),
        "{body}"
    );
    // 16 KiB is the limit; the token is valid, only the padding makes it too large.
    let padded = format!("logout_token={token}&pad={}", "x".repeat(16 * 1024));
    let too_large = rp
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(padded)
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status().as_u16(), 400);
    let body: Value = too_large.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("too large"),
        "{body}"
    );
    assert_eq!(rp.echo(&cookie).await.0, 200, "the session was ended");
    // The same token in a form of ordinary size is accepted.
    assert_eq!(rp.backchannel(&token).await.0, 200);
    assert_eq!(rp.echo(&cookie).await.0, 401);
}

#[tokio::test]
async fn rp_initiated_logout_goes_to_the_end_session_endpoint() {
    let clock = Arc::new(OffsetClock::default());
    let op = start_op(clock.clone()).await;
    let rp = start_rp_with(op, clock, |c| {
        c.backend.post_logout_redirect_uri = Some("http://127.0.0.1:1/bye".into());
    })
    .await;
    let cookie = rp.login().await;
    let r = rp
        .http
        .post(format!("{}/auth/logout", rp.url))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(to.path(), "/session/end");
    let q: HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["post_logout_redirect_uri"], "http://127.0.0.1:1/bye");
    assert!(q["id_token_hint"].split('.').count() == 3);
    assert_eq!(rp.echo(&cookie).await.0, 401, "logged out locally too");
}

#[tokio::test]
async fn misconfiguration_names_the_setting() {
    let clock = Arc::new(OffsetClock::default());
    let op = start_op(clock).await;
    let setting = |c: Config| match c.validate() {
        Err(sallyport_gateway::Error::Config { setting, .. }) => setting,
        Err(e) => panic!("{e}"),
        Ok(_) => "accepted",
    };
    let base = || oidc_config(&op, "http://127.0.0.1:9", 8080);
    let mut c = base();
    c.public_origin = None;
    assert_eq!(setting(c), "public_origin");
    let mut c = base();
    c.backend.issuer = None;
    assert_eq!(setting(c), "backend.issuer");
    let mut c = base();
    c.backend.issuer = Some("http://op.example.com".into());
    assert_eq!(setting(c), "backend.issuer", "plain http off loopback");
    let mut c = base();
    c.backend.scope = Some("profile email".into());
    assert_eq!(setting(c), "backend.scope");
    let mut c = base();
    c.backend.redirect_path = "logout".into();
    assert_eq!(setting(c), "backend.redirect_path");
    for bad in ["backchannel-logout", "a/../b", "a//b", "call back", "/"] {
        let mut c = base();
        c.backend.redirect_path = bad.into();
        assert_eq!(setting(c), "backend.redirect_path", "{bad:?}");
    }
    let mut c = base();
    c.backend.client_auth = sallyport_gateway::ClientAuth::PrivateKeyJwt;
    assert_eq!(setting(c), "backend.client_secret");
    let mut c = base();
    c.backend.client_auth = sallyport_gateway::ClientAuth::PrivateKeyJwt;
    c.backend.client_secret = None;
    assert_eq!(setting(c), "backend.client_key_id");
    let mut c = base();
    c.backend.client_auth = sallyport_gateway::ClientAuth::PrivateKeyJwt;
    c.backend.client_secret = None;
    c.backend.client_key_id = Some("k".into());
    c.backend.client_key_file = Some("/nonexistent/key.pem".into());
    assert_eq!(setting(c), "backend.client_key_file");
    // Discovery naming another issuer stops start-up.
    let mut c = base();
    c.backend.issuer = Some(format!("{}/", op.url));
    let err = Gateway::new(c.validate().unwrap()).await.err().unwrap();
    assert!(err.to_string().contains("backend.issuer"), "{err}");
}

/// Two replicas sharing Redis: a back-channel logout received by one ends the session on
/// the other at its next request; the same logout token replayed to the other replica is
/// refused (its `jti` is claimed in Redis); a subject-wide logout reaches both.
#[tokio::test]
async fn back_channel_logout_reaches_every_replica_through_redis() {
    let Some(redis) = crate::store::redis_url() else {
        return;
    };
    let clock = Arc::new(OffsetClock::default());
    let op = start_op(clock.clone()).await;
    let prefix = format!("sallyport-oidc-it-{}:", uuid::Uuid::new_v4().simple());
    let shared = |c: &mut Config| {
        c.store.redis_url = Some(redis.clone());
        c.store.key_prefix = prefix.clone();
    };
    let a = start_rp_with(op.clone(), clock.clone(), shared).await;
    let b = start_rp_with(op.clone(), clock.clone(), shared).await;
    let cookie = a.login().await;
    assert_eq!(
        b.echo(&cookie).await.0,
        200,
        "the cookie works on both replicas"
    );
    // A callback redeemed on one replica is refused on the other (state claimed in Redis).
    let l = a.begin("/x").await;
    assert_eq!(a.callback(&l.callback, &l.attempt).await.0, 303);
    let on_b = l.callback.replace(&a.url, &b.url);
    let (status, _, set, body) = b.callback(&on_b, &l.attempt).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        set.is_none() && body.contains("already been used"),
        "{body}"
    );
    let token = op.logout_token(Some("op-session-alice"), Some("alice"), |_| {});
    assert_eq!(a.backchannel(&token).await.0, 200);
    let (status, body) = b.echo(&cookie).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = b.backchannel(&token).await;
    assert_eq!(status, 400, "a replay to the other replica: {body}");
    // Every earlier session of the subject, from the other replica.
    *op.tweak.lock().unwrap() = Tweak {
        sid: Some("op-session-2".into()),
        ..Tweak::default()
    };
    let first = a.login().await;
    assert_eq!(a.echo(&first).await.0, 200);
    clock.advance_ms(1000);
    let by_sub = op.logout_token(None, Some("alice"), |_| {});
    assert_eq!(b.backchannel(&by_sub).await.0, 200);
    assert_eq!(a.echo(&first).await.0, 401);
}

/// A provider that hands back an ID token issued long ago with a renewal (its previous
/// one, say) does not end the session: only a login's ID token must be as fresh as the
/// login attempt.
#[tokio::test]
async fn a_renewed_id_token_may_be_old() {
    let rp = start_rp().await;
    let cookie = rp.login().await;
    rp.tweak(Tweak {
        iat_offset: -3600,
        exp_offset: 3600,
        ..Tweak::default()
    });
    rp.clock.advance_ms(11 * 60 * 1000);
    let (status, body) = rp.echo(&cookie).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rp.op.refreshes.load(Ordering::SeqCst), 1);
}

/// `private_key_jwt`: the code exchange and the renewal authenticate with an assertion
/// signed by the client's key; one signed by another key is refused by the provider, and
/// the login ends on the "unavailable" page (an operator's problem, not the user's).
#[tokio::test]
async fn private_key_jwt_client_authentication() {
    use base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().unwrap();
    let pem_of = |k: &SigningKey| {
        let b64 = STANDARD.encode(k.to_pkcs8_der().unwrap());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    };
    let key = SigningKey::generate(Algorithm::Rs256, "client-key-1").unwrap();
    let good = dir.path().join("client.pem");
    std::fs::write(&good, pem_of(&key)).unwrap();
    let other = SigningKey::generate(Algorithm::Rs256, "client-key-1").unwrap();
    let bad = dir.path().join("other.pem");
    std::fs::write(&bad, pem_of(&other)).unwrap();

    let clock = Arc::new(OffsetClock::default());
    let op = start_op(clock.clone()).await;
    *op.client_keys.lock().unwrap() = Some(sallyport_jwt::jwk_set([&key]));
    let with_key = |path: std::path::PathBuf| {
        move |c: &mut Config| {
            c.backend.client_auth = sallyport_gateway::ClientAuth::PrivateKeyJwt;
            c.backend.client_secret = None;
            c.backend.client_key_id = Some("client-key-1".into());
            c.backend.client_key_file = Some(path);
        }
    };
    let rp = start_rp_with(op.clone(), clock.clone(), with_key(good)).await;
    let cookie = rp.login().await;
    rp.clock.advance_ms(11 * 60 * 1000);
    assert_eq!(rp.echo(&cookie).await.0, 200, "renewed with an assertion");
    assert_eq!(op.refreshes.load(Ordering::SeqCst), 1);

    let wrong = start_rp_with(op.clone(), clock, with_key(bad)).await;
    let l = wrong.begin("/x").await;
    let (status, loc, set, body) = wrong.callback(&l.callback, &l.attempt).await;
    assert_eq!(status, 503, "{body}");
    assert!(loc.is_none() && set.is_none());
}

/// The relying party is set up once (discovery, the provider's keys, the replay caches):
/// a reload keeps an `oidc` gateway's `[backend]`, names what it kept, and applies the
/// rest; sessions and new logins go on working.
#[tokio::test]
async fn a_reload_keeps_the_relying_party_and_applies_the_rest() {
    let clock = Arc::new(OffsetClock::default());
    let op = start_op(clock.clone()).await;
    let (_up, upstream_url) = start_upstream().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let c1 = oidc_config(&op, &upstream_url, port);
    let gateway = Gateway::with_clock(c1.validate().unwrap(), clock.clone())
        .await
        .unwrap();
    let handle = gateway.clone();
    tokio::spawn(async move {
        sallyport_gateway::serve_with_shutdown(listener, gateway, std::future::pending())
            .await
            .ok();
    });
    let rp = Rp {
        op,
        url: format!("http://127.0.0.1:{port}"),
        clock,
        upstream_url,
        http: client(),
    };
    let before = rp.login().await;

    let mut c2 = c1.clone();
    c2.backend.scope = Some("openid".into());
    c2.backend.client_secret = Some("another-secret".into());
    c2.public_paths = vec!["/echo".into()];
    let done = handle.reload(c2).unwrap();
    assert!(
        done.kept.iter().any(|k| k == "backend.scope")
            && done.kept.iter().any(|k| k == "backend.client_secret"),
        "{:?}",
        done.kept
    );
    // The rest applied: /echo is public now.
    assert_eq!(rp.echo("").await.0, 200);
    // The session from before the reload and a login after it both work: the provider's
    // endpoints, keys and the client credentials the provider knows were kept.
    let (status, echo) = rp.echo(&before).await;
    assert_eq!(status, 200);
    assert!(header_of(&echo, "authorization").is_some());
    let after = rp.login().await;
    let (status, echo) = rp.echo(&after).await;
    assert_eq!(status, 200);
    assert!(header_of(&echo, "authorization").is_some());
    let _ = &rp.clock;
}
