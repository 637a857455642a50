//! `Session<T>` + `SessionLayer` in a tiny axum app, driven with `oneshot`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use sallyport_session::{CookieCodec, Error, Passwords, Session, SessionConfig, SessionLayer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{Browser, PW1, PW2, T0, summary};

#[derive(Serialize, Deserialize, Default, Debug, PartialEq, Clone)]
struct Data {
    user: Option<String>,
    count: u64,
    #[serde(default)]
    blob: String,
}

#[derive(Deserialize)]
struct Params {
    user: Option<String>,
    len: Option<usize>,
}

async fn show(session: Session<Data>) -> axum::Json<Value> {
    axum::Json(json!({
        "data": session.get(),
        "exists": session.exists(),
        "password_id": session.password_id(),
        "needs_reseal": session.needs_reseal(),
    }))
}

async fn login(mut session: Session<Data>, Query(p): Query<Params>) -> Result<StatusCode, Error> {
    session.insert(Data {
        user: p.user,
        ..Data::default()
    })?;
    Ok(StatusCode::NO_CONTENT)
}

async fn count(mut session: Session<Data>) -> Result<String, Error> {
    let n = session.update(|d| {
        d.count += 1;
        d.count
    })?;
    Ok(n.to_string())
}

async fn blob(mut session: Session<Data>, Query(p): Query<Params>) -> Result<StatusCode, Error> {
    session.update(|d| d.blob = "b".repeat(p.len.unwrap_or(0)))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout(mut session: Session<Data>) -> StatusCode {
    session.destroy();
    StatusCode::NO_CONTENT
}

async fn destroy_then_save(mut session: Session<Data>) -> Response {
    session.destroy();
    match session.update(|d| d.count = 99) {
        Err(e @ Error::SaveAfterDestroy) => (StatusCode::CONFLICT, e.to_string()).into_response(),
        other => panic!("{other:?}"),
    }
}

/// Middleware that bumps the counter before the handler runs (PP-03: the handler
/// must see the value the middleware saved, not the request's stale cookie).
async fn bump(mut session: Session<Data>, request: Request, next: Next) -> Response {
    if let Err(e) = session.update(|d| d.count += 100) {
        return e.into_response();
    }
    next.run(request).await
}

struct App {
    router: Router,
    clock: Arc<AtomicU64>,
}

fn app_with(config: SessionConfig, reseal_rotated: bool) -> App {
    let clock = Arc::new(AtomicU64::new(T0));
    let c = clock.clone();
    let layer = SessionLayer::new(CookieCodec::try_new(config).unwrap())
        .with_clock(move || c.load(Ordering::SeqCst))
        .reseal_rotated(reseal_rotated);
    let router = Router::new()
        .route("/", get(show))
        .route("/login", post(login))
        .route("/count", post(count))
        .route("/blob", post(blob))
        .route("/logout", post(logout))
        .route("/destroy-then-save", post(destroy_then_save))
        .route("/bumped", get(show).layer(middleware::from_fn(bump)))
        .layer(layer);
    App { router, clock }
}

fn app() -> App {
    app_with(
        SessionConfig::new(Passwords::single(PW1).unwrap()).secure(false),
        false,
    )
}

struct Reply {
    status: StatusCode,
    set_cookie: Vec<HeaderValue>,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

async fn call(app: &App, method: &str, uri: &str, cookies: HeaderMap) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in &cookies {
        request = request.header(k, v);
    }
    let response = app
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let set_cookie = headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        set_cookie,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn step(app: &App, browser: &mut Browser, method: &str, uri: &str) -> Reply {
    let reply = call(app, method, uri, browser.header()).await;
    browser.apply(&reply.set_cookie);
    reply
}

#[tokio::test]
async fn save_read_modify_destroy() {
    let app = app();
    let mut browser = Browser::default();

    let r = step(&app, &mut browser, "GET", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.set_cookie.is_empty(), "reading never writes a cookie");
    assert_eq!(r.json()["exists"], false);
    assert_eq!(
        r.json()["data"],
        json!({"user": null, "count": 0, "blob": ""})
    );

    let r = step(&app, &mut browser, "POST", "/login?user=ada").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.set_cookie.len(), 1);
    let text = r.set_cookie[0].to_str().unwrap();
    assert!(text.starts_with("sallyport=Fe26.2*1*"));
    assert!(
        text.ends_with("~2; Max-Age=1209540; Path=/; HttpOnly; SameSite=Lax"),
        "{text}"
    );
    assert_eq!(r.headers[http::header::CACHE_CONTROL], "private, no-store");

    let r = step(&app, &mut browser, "GET", "/").await;
    assert!(r.set_cookie.is_empty());
    assert!(!r.headers.contains_key(http::header::CACHE_CONTROL));
    assert_eq!(r.json()["exists"], true);
    assert_eq!(r.json()["password_id"], "1");
    assert_eq!(r.json()["data"]["user"], "ada");

    assert_eq!(step(&app, &mut browser, "POST", "/count").await.body, "1");
    assert_eq!(step(&app, &mut browser, "POST", "/count").await.body, "2");
    let r = step(&app, &mut browser, "GET", "/").await;
    assert_eq!(
        r.json()["data"],
        json!({"user": "ada", "count": 2, "blob": ""})
    );

    let r = step(&app, &mut browser, "POST", "/logout").await;
    assert_eq!(
        summary(&r.set_cookie),
        ["-sallyport"],
        "destroy expires the cookie"
    );
    assert_eq!(
        r.set_cookie[0].to_str().unwrap(),
        "sallyport=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"
    );
    assert!(browser.cookies.is_empty());
    let r = step(&app, &mut browser, "GET", "/").await;
    assert_eq!(r.json()["exists"], false);
}

#[tokio::test]
async fn tampered_cookies_are_an_empty_session_never_an_error() {
    let app = app();
    let mut browser = Browser::default();
    step(&app, &mut browser, "POST", "/login?user=ada").await;
    let sealed = browser.cookies["sallyport"].clone();
    let mut seen = 0;
    for i in 0..sealed.len() {
        for bit in [1u8, 2, 4] {
            let mut bytes = sealed.clone().into_bytes();
            bytes[i] ^= bit;
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            let Ok(value) = HeaderValue::from_str(&format!("sallyport={text}")) else {
                continue;
            };
            if text.contains(';')
                || text[..text.find('~').unwrap_or(text.len())]
                    == sealed[..sealed.find('~').unwrap()]
            {
                // Splits the cookie, or only touches the ignored `~2` suffix.
                continue;
            }
            let mut headers = HeaderMap::new();
            headers.insert(http::header::COOKIE, value);
            let r = call(&app, "GET", "/", headers).await;
            assert_eq!(r.status, StatusCode::OK, "position {i} bit {bit}");
            assert_eq!(r.json()["exists"], false, "position {i} bit {bit}: {text}");
            assert!(r.set_cookie.is_empty());
            seen += 1;
        }
    }
    assert!(seen > sealed.len(), "{seen}");
    // Saving over a tampered cookie starts a fresh session.
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        "sallyport=Fe26.2*1*x*y*z**a*b~2".parse().unwrap(),
    );
    let r = call(&app, "POST", "/count", headers).await;
    assert_eq!(r.body, "1");
}

#[tokio::test]
async fn expired_sessions_are_empty() {
    let app = app_with(
        SessionConfig::new(Passwords::single(PW1).unwrap())
            .secure(false)
            .ttl(Duration::from_secs(600)),
        false,
    );
    let mut browser = Browser::default();
    step(&app, &mut browser, "POST", "/login?user=ada").await;
    app.clock.store(T0 + 600_000 + 59_999, Ordering::SeqCst);
    assert_eq!(
        step(&app, &mut browser, "GET", "/").await.json()["exists"],
        true
    );
    app.clock.store(T0 + 600_000 + 60_000, Ordering::SeqCst);
    let r = step(&app, &mut browser, "GET", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["exists"], false);
}

#[tokio::test]
async fn rotation_old_cookie_is_read_and_resealed() {
    let old = app();
    let mut browser = Browser::default();
    step(&old, &mut browser, "POST", "/login?user=ada").await;

    let both = || {
        SessionConfig::new(Passwords::from_pairs([("1", PW1), ("2", PW2)]).unwrap()).secure(false)
    };
    // Without automatic re-sealing: readable, flagged, and the next save re-seals.
    let rotated = app_with(both(), false);
    let r = step(&rotated, &mut browser, "GET", "/").await;
    assert!(r.set_cookie.is_empty());
    assert_eq!(r.json()["password_id"], "1");
    assert_eq!(r.json()["needs_reseal"], true);
    step(&rotated, &mut browser, "POST", "/count").await;
    assert!(browser.cookies["sallyport"].starts_with("Fe26.2*2*"));
    let r = step(&rotated, &mut browser, "GET", "/").await;
    assert_eq!(r.json()["needs_reseal"], false);
    assert_eq!(r.json()["data"]["user"], "ada");

    // With `reseal_rotated`, a plain read re-seals.
    let mut browser = Browser::default();
    step(&old, &mut browser, "POST", "/login?user=bob").await;
    let auto = app_with(both(), true);
    let r = step(&auto, &mut browser, "GET", "/").await;
    assert_eq!(r.set_cookie.len(), 1);
    assert!(browser.cookies["sallyport"].starts_with("Fe26.2*2*"));

    // Once password 1 is retired, an id-1 cookie is an empty session, not an error.
    let mut stale = Browser::default();
    step(&old, &mut stale, "POST", "/login?user=eve").await;
    let retired = app_with(
        SessionConfig::new(Passwords::from_pairs([("2", PW2)]).unwrap()).secure(false),
        false,
    );
    let r = step(&retired, &mut stale, "GET", "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["exists"], false);
    assert_eq!(
        step(&retired, &mut browser, "GET", "/").await.json()["data"]["user"],
        "bob"
    );
}

#[tokio::test]
async fn chunking_both_ways() {
    let app = app_with(
        SessionConfig::new(Passwords::single(PW1).unwrap())
            .secure(false)
            .chunking(true),
        false,
    );
    let mut browser = Browser::default();
    step(&app, &mut browser, "POST", "/login?user=ada").await;
    assert_eq!(browser.names(), ["sallyport"]);

    let r = step(&app, &mut browser, "POST", "/blob?len=7000").await;
    assert_eq!(
        summary(&r.set_cookie),
        [
            "sallyport.0",
            "sallyport.1",
            "sallyport.2",
            "-sallyport",
            "-sallyport.3"
        ]
    );
    assert_eq!(
        browser.names(),
        ["sallyport.0", "sallyport.1", "sallyport.2"]
    );
    let r = step(&app, &mut browser, "GET", "/").await;
    assert_eq!(r.json()["data"]["blob"].as_str().unwrap().len(), 7000);
    assert_eq!(r.json()["data"]["user"], "ada");

    let r = step(&app, &mut browser, "POST", "/blob?len=4000").await;
    assert_eq!(
        summary(&r.set_cookie),
        [
            "sallyport.0",
            "sallyport.1",
            "-sallyport",
            "-sallyport.2",
            "-sallyport.3"
        ]
    );
    let r = step(&app, &mut browser, "POST", "/blob?len=0").await;
    assert_eq!(
        summary(&r.set_cookie),
        ["sallyport", "-sallyport.0", "-sallyport.1"]
    );
    assert_eq!(browser.names(), ["sallyport"]);
    assert_eq!(step(&app, &mut browser, "POST", "/count").await.body, "1");

    step(&app, &mut browser, "POST", "/blob?len=7000").await;
    let r = step(&app, &mut browser, "POST", "/logout").await;
    assert_eq!(r.set_cookie.len(), 5);
    assert!(browser.cookies.is_empty());
}

#[tokio::test]
async fn too_large_without_chunking_fails_the_save_and_writes_nothing() {
    let app = app();
    let mut browser = Browser::default();
    step(&app, &mut browser, "POST", "/login?user=ada").await;
    let before = browser.cookies.clone();
    let r = step(&app, &mut browser, "POST", "/blob?len=5000").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.json()["error"], "session_too_large");
    assert!(
        r.set_cookie.is_empty(),
        "never a cookie the browser would drop"
    );
    assert_eq!(browser.cookies, before, "the old session is kept");
}

#[tokio::test]
async fn save_after_destroy_is_refused() {
    let app = app();
    let mut browser = Browser::default();
    step(&app, &mut browser, "POST", "/login?user=ada").await;
    let r = step(&app, &mut browser, "POST", "/destroy-then-save").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(summary(&r.set_cookie), ["-sallyport"]);
    assert!(browser.cookies.is_empty());
}

#[tokio::test]
async fn a_save_in_middleware_is_visible_to_the_handler() {
    let app = app();
    let mut browser = Browser::default();
    step(&app, &mut browser, "POST", "/login?user=ada").await;
    let r = step(&app, &mut browser, "GET", "/bumped").await;
    assert_eq!(r.json()["data"]["count"], 100);
    assert_eq!(r.json()["data"]["user"], "ada");
    assert_eq!(r.set_cookie.len(), 1);
    let r = step(&app, &mut browser, "GET", "/").await;
    assert_eq!(r.json()["data"]["count"], 100);
}

#[tokio::test]
async fn missing_layer_is_a_500_json_not_a_panic() {
    let router = Router::new().route("/", get(show));
    let response = router
        .oneshot(Request::builder().uri("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "session_layer_missing");
}

#[tokio::test]
async fn works_over_real_http_on_loopback() {
    let app = app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app.router).await });
    // A hand-written HTTP/1.1 exchange: no HTTP client dependency needed.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /login?user=ada HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");
    let set_cookie = response
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(set_cookie.contains("sallyport=Fe26.2*1*"));
    server.abort();
}
