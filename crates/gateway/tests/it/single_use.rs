//! A token backend that **revokes on reuse**, like the article's backend and identity
//! providers with refresh-token rotation: every refresh token works once; presenting a
//! used one revokes its whole family. Optionally forgiving (`reuse_interval`): a reuse
//! within the interval gets the recorded answer again, as Sallyport's issuer does.
//!
//! Also: an upstream that accepts a request only with a live access token of a
//! non-revoked family, and a tiny round-robin TCP load balancer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

#[derive(Default)]
struct Family {
    revoked: bool,
    generation: u64,
}

struct RtState {
    family: u64,
    used_at: Option<Instant>,
    answer: Option<Value>,
}

#[derive(Default)]
struct Db {
    next_family: u64,
    families: HashMap<u64, Family>,
    refresh_tokens: HashMap<String, RtState>,
    access_tokens: HashMap<String, u64>,
}

pub(crate) struct SingleUse {
    pub url: String,
    db: Mutex<Db>,
    /// Refresh calls received (counted when they arrive).
    pub refreshes: AtomicUsize,
    /// Refresh calls that completed (answered).
    pub refreshes_done: AtomicUsize,
    /// Families revoked because a used refresh token came back.
    pub reuse_revocations: AtomicUsize,
    /// Delay before a refresh is processed (a dropped connection means no rotation).
    pub delay_ms: AtomicU64,
    /// Reuse within this many ms returns the recorded answer; 0: revoke on reuse.
    pub reuse_interval_ms: AtomicU64,
    /// Answer 503 to refreshes.
    pub down: AtomicBool,
    /// While set, refresh calls never answer (and rotate nothing): a hung backend, or
    /// one whose caller died before it committed.
    pub hang: AtomicBool,
    /// Access-token lifetime in seconds (`expiresIn`).
    pub expires_in: AtomicU64,
    /// Refresh calls that rotated a token (the renewals that were needed).
    pub rotations: AtomicUsize,
}

impl SingleUse {
    pub(crate) fn revoked_families(&self) -> usize {
        self.db
            .lock()
            .unwrap()
            .families
            .values()
            .filter(|f| f.revoked)
            .count()
    }

    /// Whether `access_token` belongs to a family that is still alive.
    pub(crate) fn access_ok(&self, access_token: &str) -> bool {
        let db = self.db.lock().unwrap();
        db.access_tokens
            .get(access_token)
            .and_then(|f| db.families.get(f))
            .is_some_and(|f| !f.revoked)
    }

    fn issue(&self, db: &mut Db, family: u64) -> Value {
        let f = db.families.entry(family).or_default();
        f.generation += 1;
        let g = f.generation;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let at = format!("at-{family}-{g}-{nonce}");
        let rt = format!("rt-{family}-{g}-{nonce}");
        db.access_tokens.insert(at.clone(), family);
        db.refresh_tokens.insert(
            rt.clone(),
            RtState {
                family,
                used_at: None,
                answer: None,
            },
        );
        json!({"accessToken": at, "refreshToken": rt, "expiresIn": self.expires_in.load(Ordering::SeqCst)})
    }
}

fn invalid_grant() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "invalid_grant"})),
    )
        .into_response()
}

async fn login_route(State(b): State<Arc<SingleUse>>, Json(body): Json<Value>) -> Response {
    if body["password"] != crate::harness::PASSWORD {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_credentials"})),
        )
            .into_response();
    }
    let mut db = b.db.lock().unwrap();
    db.next_family += 1;
    let family = db.next_family;
    Json(b.issue(&mut db, family)).into_response()
}

async fn refresh(State(b): State<Arc<SingleUse>>, Json(body): Json<Value>) -> Response {
    b.refreshes.fetch_add(1, Ordering::SeqCst);
    if b.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let delay = b.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        // If the caller gives up meanwhile, this future is dropped: nothing rotates.
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if b.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let rt = body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let interval = b.reuse_interval_ms.load(Ordering::SeqCst);
    let resp = {
        let mut db = b.db.lock().unwrap();
        let Some(state) = db.refresh_tokens.get(&rt) else {
            return invalid_grant();
        };
        let family = state.family;
        if db.families.get(&family).is_some_and(|f| f.revoked) {
            drop(db);
            b.refreshes_done.fetch_add(1, Ordering::SeqCst);
            return invalid_grant();
        }
        match (state.used_at, &state.answer) {
            (Some(at), Some(answer))
                if interval > 0 && at.elapsed().as_millis() < interval as u128 =>
            {
                Json(answer.clone()).into_response()
            }
            (Some(_), _) => {
                // Reuse: theft, as far as this backend can tell. Revoke the family.
                db.families.entry(family).or_default().revoked = true;
                b.reuse_revocations.fetch_add(1, Ordering::SeqCst);
                invalid_grant()
            }
            (None, _) => {
                b.rotations.fetch_add(1, Ordering::SeqCst);
                let answer = b.issue(&mut db, family);
                if let Some(s) = db.refresh_tokens.get_mut(&rt) {
                    s.used_at = Some(Instant::now());
                    s.answer = Some(answer.clone());
                }
                Json(answer).into_response()
            }
        }
    };
    b.refreshes_done.fetch_add(1, Ordering::SeqCst);
    resp
}

async fn logout(State(b): State<Arc<SingleUse>>, Json(body): Json<Value>) -> Response {
    let rt = body["refresh_token"].as_str().unwrap_or_default();
    let mut db = b.db.lock().unwrap();
    if let Some(f) = db.refresh_tokens.get(rt).map(|s| s.family) {
        db.families.entry(f).or_default().revoked = true;
    }
    StatusCode::OK.into_response()
}

pub(crate) async fn start_single_use() -> Arc<SingleUse> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let b = Arc::new(SingleUse {
        url: format!("http://{addr}"),
        db: Mutex::new(Db::default()),
        refreshes: AtomicUsize::new(0),
        refreshes_done: AtomicUsize::new(0),
        reuse_revocations: AtomicUsize::new(0),
        delay_ms: AtomicU64::new(0),
        reuse_interval_ms: AtomicU64::new(0),
        down: AtomicBool::new(false),
        hang: AtomicBool::new(false),
        expires_in: AtomicU64::new(900),
        rotations: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/api/login", post(login_route))
        .route("/api/refresh-token", post(refresh))
        .route("/api/logout", post(logout))
        .with_state(b.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    b
}

async fn checked(State(b): State<Arc<SingleUse>>, headers: HeaderMap) -> Response {
    let token = crate::harness::bearer(&headers).unwrap_or_default();
    if b.access_ok(&token) {
        Json(json!({"ok": true})).into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "bad token").into_response()
    }
}

/// An upstream that answers 200 only to a live access token of `backend`.
pub(crate) async fn start_checking_upstream(backend: Arc<SingleUse>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(any(checked)).with_state(backend);
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    format!("http://{addr}")
}

/// A gateway configuration against the single-use backend.
pub(crate) fn config(backend: &SingleUse, upstream: &str) -> sallyport_gateway::Config {
    let mut c = sallyport_gateway::Config::default();
    c.upstream = upstream.to_owned();
    c.session.secret = Some(crate::harness::SECRET.into());
    c.session.secure = false;
    c.backend.login_url = Some(format!("{}/api/login", backend.url));
    c.backend.refresh_url = Some(format!("{}/api/refresh-token", backend.url));
    c.backend.logout_url = Some(format!("{}/api/logout", backend.url));
    c.backend.timeout_ms = 1000;
    c.proxy.response_timeout_ms = 5000;
    c.store.persist_logouts = false;
    c
}

/// Logs in through a gateway; returns the `Cookie` header value.
pub(crate) async fn login(gateway_url: &str) -> String {
    let resp = crate::harness::client()
        .post(format!("{gateway_url}/auth/login"))
        .json(&json!({"username": crate::harness::USER, "password": crate::harness::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "login failed");
    crate::harness::cookie_header(resp.headers()).unwrap()
}

/// A round-robin TCP load balancer on loopback; each connection goes to the next
/// backend in turn.
pub(crate) async fn start_balancer(targets: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let targets: Vec<String> = targets
        .into_iter()
        .map(|t| t.trim_start_matches("http://").to_owned())
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let i = next.fetch_add(1, Ordering::SeqCst) % targets.len();
            let target = targets[i].clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

/// A client that opens a new connection per request (so the balancer spreads them).
pub(crate) fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}
