//! Test harness: issuer (behind a counting / fault-injecting layer), upstream app, gateway.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State, WebSocketUpgrade, ws::Message};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use sallyport_gateway::{Config, Gateway, OffsetClock};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub(crate) const SECRET: &str = "test-secret-test-secret-test-secret-0001";
pub(crate) const USER: &str = "alice";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// Backend fault modes.
pub(crate) const MODE_OK: u8 = 0;
pub(crate) const MODE_5XX: u8 = 1;
pub(crate) const MODE_SLOW: u8 = 2;

pub(crate) struct Upstream {
    pub hits: AtomicUsize,
    pub rejected: Mutex<HashSet<String>>,
    pub entered: Notify,
    pub release: Notify,
    pub stream_gate: Notify,
}

pub(crate) struct Backend {
    pub url: String,
    pub issuer: sallyport_issuer::Issuer,
    pub refreshes: Arc<AtomicUsize>,
    pub revocations: Arc<AtomicUsize>,
    pub mode: Arc<AtomicU8>,
    /// What each backend call carried: (path, `X-Request-Id`, `traceparent`).
    pub seen: Arc<Mutex<Vec<BackendCall>>>,
    /// Keeps the issuer's temporary directory alive.
    _issuer: sallyport_testkit::TestIssuer,
}

/// One call the backend received.
#[derive(Debug, Clone)]
pub(crate) struct BackendCall {
    pub path: String,
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
}

pub(crate) struct Harness {
    pub url: String,
    pub gateway: Gateway,
    pub clock: Arc<OffsetClock>,
    pub backend: Arc<Backend>,
    pub upstream: Arc<Upstream>,
    pub http: reqwest::Client,
}

#[derive(Clone)]
pub(crate) struct BackendCounters {
    refreshes: Arc<AtomicUsize>,
    revocations: Arc<AtomicUsize>,
    mode: Arc<AtomicU8>,
    seen: Arc<Mutex<Vec<BackendCall>>>,
}

async fn count_and_fault(State(c): State<BackendCounters>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let call = {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        BackendCall {
            path: path.clone(),
            request_id: header("x-request-id"),
            traceparent: header("traceparent"),
        }
    };
    c.seen.lock().unwrap().push(call);
    match c.mode.load(Ordering::SeqCst) {
        MODE_5XX => return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        MODE_SLOW => tokio::time::sleep(Duration::from_secs(5)).await,
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    if path == "/api/refresh-token"
        || (path == "/oauth/token" && text.contains("grant_type=refresh_token"))
    {
        c.refreshes.fetch_add(1, Ordering::SeqCst);
    }
    if path == "/api/logout" || path == "/oauth/revoke" {
        c.revocations.fetch_add(1, Ordering::SeqCst);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

pub(crate) async fn start_backend(reuse_interval_secs: u64) -> Arc<Backend> {
    init_test_logs();
    let counters = BackendCounters {
        refreshes: Arc::new(AtomicUsize::new(0)),
        revocations: Arc::new(AtomicUsize::new(0)),
        mode: Arc::new(AtomicU8::new(MODE_OK)),
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let layer = counters.clone();
    let t = sallyport_testkit::TestIssuer::builder()
        .config(move |cfg| {
            cfg.refresh_reuse_interval_secs = reuse_interval_secs;
            cfg.allow_public_clients = false;
            cfg.clients = vec![sallyport_issuer::config::ClientConfig {
                id: "gateway".into(),
                secret: Some("gateway-client-secret-0001".into()),
                ..Default::default()
            }];
        })
        .wrap(move |router, _| router.layer(middleware::from_fn_with_state(layer, count_and_fault)))
        .start()
        .await;
    t.issuer
        .admin()
        .add_user(USER, PASSWORD, Some("Alice Example"), &["admin", "dev"])
        .await
        .unwrap();
    Arc::new(Backend {
        url: t.url.clone(),
        issuer: t.issuer.clone(),
        refreshes: counters.refreshes,
        revocations: counters.revocations,
        mode: counters.mode,
        seen: counters.seen,
        _issuer: t,
    })
}

async fn echo(req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    echo_parts(&parts.method, &parts.uri, &parts.headers, bytes.len())
}

fn echo_parts(method: &http::Method, uri: &http::Uri, headers: &HeaderMap, len: usize) -> Response {
    let mut h = BTreeMap::new();
    for (k, v) in headers {
        h.entry(k.as_str().to_owned())
            .or_insert_with(Vec::new)
            .push(String::from_utf8_lossy(v.as_bytes()).to_string());
    }
    axum::Json(json!({
        "method": method.as_str(),
        "uri": uri.to_string(),
        "headers": h,
        "body_len": len,
    }))
    .into_response()
}

async fn counted(State(up): State<Arc<Upstream>>, req: Request, next: Next) -> Response {
    up.hits.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

pub(crate) async fn start_upstream() -> (Arc<Upstream>, String) {
    let up = Arc::new(Upstream {
        hits: AtomicUsize::new(0),
        rejected: Mutex::new(HashSet::new()),
        entered: Notify::new(),
        release: Notify::new(),
        stream_gate: Notify::new(),
    });
    let app = Router::new()
        .route("/picky", any(picky))
        .route("/hold", any(hold))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route("/upload", post(upload))
        .route("/download", get(download))
        .route("/ws", get(ws))
        .route(
            "/app-cookie",
            get(|| async { ([("set-cookie", "app=1; Path=/")], "ok") }),
        )
        .fallback(echo)
        .layer(middleware::from_fn_with_state(up.clone(), counted))
        .with_state(up.clone());
    (up, sallyport_testkit::start_upstream(app).await)
}

async fn picky(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let token = bearer(req.headers()).unwrap_or_default();
    if up.rejected.lock().unwrap().contains(&token) {
        return (StatusCode::UNAUTHORIZED, "token rejected").into_response();
    }
    echo(req).await
}

async fn hold(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let release = up.release.notified();
    up.entered.notify_one();
    release.await;
    echo(req).await
}

async fn upload(req: Request) -> Response {
    let mut stream = req.into_body().into_data_stream();
    let mut n = 0usize;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len();
    }
    axum::Json(json!({ "bytes": n })).into_response()
}

async fn download(State(up): State<Arc<Upstream>>) -> Response {
    let stream = async_stream(up);
    Body::from_stream(stream).into_response()
}

fn async_stream(
    up: Arc<Upstream>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::unfold(0u8, move |state| {
        let up = up.clone();
        async move {
            match state {
                0 => Some((Ok(bytes::Bytes::from_static(b"first-chunk;")), 1)),
                1 => {
                    up.stream_gate.notified().await;
                    Some((Ok(bytes::Bytes::from_static(b"second-chunk")), 2))
                }
                _ => None,
            }
        }
    })
}

async fn ws(upgrade: WebSocketUpgrade, headers: HeaderMap) -> Response {
    let token = bearer(&headers).unwrap_or_default();
    upgrade.on_upgrade(move |mut socket| async move {
        let _ = socket
            .send(Message::Text(format!("token:{}", !token.is_empty()).into()))
            .await;
        while let Some(Ok(msg)) = socket.recv().await {
            if let Message::Text(t) = msg
                && socket
                    .send(Message::Text(format!("echo:{t}").into()))
                    .await
                    .is_err()
            {
                break;
            }
        }
    })
}

/// A gateway configuration against `backend` and `upstream`.
pub(crate) fn config(backend: &Backend, upstream_url: &str) -> Config {
    let mut c = Config::default();
    c.upstream = upstream_url.to_owned();
    c.session.secret = Some(SECRET.into());
    c.session.secure = false;
    c.public_paths = vec!["/public/**".into()];
    c.backend.login_url = Some(format!("{}/api/login", backend.url));
    c.backend.refresh_url = Some(format!("{}/api/refresh-token", backend.url));
    c.backend.logout_url = Some(format!("{}/api/logout", backend.url));
    c.backend.timeout_ms = 500;
    c.proxy.response_timeout_ms = 2000;
    // Tests that need the durable logout record give it a temporary directory.
    c.store.persist_logouts = false;
    c
}

/// With `SALLYPORT_TEST_LOG_DIR` set (scripts/test), everything the gateway and the
/// issuer log in this test binary goes to a file there, at `SALLYPORT_TEST_RUST_LOG`
/// (else `RUST_LOG`, else debug and trace for sallyport crates), for the secret scan
/// (scripts/lib/scan-logs). Once per process; without the variable, nothing is logged.
pub(crate) fn init_test_logs() {
    sallyport_observe::testing::init_test_logs(
        "gateway-it",
        &[PASSWORD, SECRET, "gateway-client-secret-0001"],
    );
}

pub(crate) async fn start_gateway(config: Config) -> (String, Gateway, Arc<OffsetClock>) {
    init_test_logs();
    let clock = Arc::new(OffsetClock::default());
    let g = sallyport_testkit::start_gateway(config, clock.clone()).await;
    ADMIN_URLS
        .lock()
        .unwrap()
        .insert(g.url.clone(), g.admin_url);
    (g.url, g.gateway, clock)
}

static ADMIN_URLS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// The admin listener's URL of the gateway serving `url` (started by `start_gateway`).
pub(crate) fn admin_of(url: &str) -> String {
    ADMIN_URLS.lock().unwrap()[url].clone()
}

/// Polls `check` until it holds (every 20 ms, for at most 10 s: a bound against hanging,
/// not a speed requirement), then returns; panics naming `what` when it never holds.
pub(crate) async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw TCP upstream on loopback, for what an axum app cannot do (half-close, a head that
/// never ends, a connection closed mid-answer): `serve` runs for every accepted
/// connection in a task of its own. Returns the upstream's URL.
pub(crate) async fn raw_tcp_upstream<F, Fut>(serve: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
    url
}

/// Reads one request head from `s` (bytes after it stay in `buf` for the next call);
/// `None` once the peer closed. Request bodies are not read: for GETs.
pub(crate) async fn read_head(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `POST {url}/auth/logout` with `cookie`; the status.
pub(crate) async fn logout(url: &str, cookie: &str) -> u16 {
    client()
        .post(format!("{url}/auth/logout"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

impl Harness {
    pub(crate) async fn start() -> Self {
        Self::start_with(0, |_| {}).await
    }

    pub(crate) async fn start_with(
        reuse_interval_secs: u64,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let backend = start_backend(reuse_interval_secs).await;
        let (upstream, upstream_url) = start_upstream().await;
        let mut c = config(&backend, &upstream_url);
        tweak(&mut c);
        let (url, gateway, clock) = start_gateway(c).await;
        Self {
            url,
            gateway,
            clock,
            backend,
            upstream,

            http: client(),
        }
    }

    /// Logs in with JSON and returns the `Cookie` header value for the session.
    pub(crate) async fn login(&self) -> String {
        let resp = login_at(&self.http, &self.url).await;
        assert_eq!(resp.status(), 200, "login failed");
        cookie_header(resp.headers()).expect("login sets a cookie")
    }

    /// GET on the admin listener (verify, health, metrics).
    pub(crate) fn admin_get(&self, path: &str, cookie: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.get(format!("{}{path}", admin_of(&self.url)));
        if !cookie.is_empty() {
            r = r.header("cookie", cookie);
        }
        r
    }

    pub(crate) fn get(&self, path: &str, cookie: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.get(format!("{}{path}", self.url));
        if !cookie.is_empty() {
            r = r.header("cookie", cookie);
        }
        r
    }

    /// GET /echo as an API call; returns (status, echoed JSON, new Cookie header if set).
    pub(crate) async fn echo(&self, cookie: &str) -> (StatusCode, Value, Option<String>) {
        let resp = self
            .get("/echo", cookie)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let set = cookie_header(resp.headers());
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body, set)
    }

    /// Moves the gateway's clock past the access token's lifetime (15 min).
    pub(crate) fn expire_access_token(&self) {
        self.clock.advance_ms(16 * 60 * 1000);
    }

    pub(crate) fn refreshes(&self) -> usize {
        self.backend.refreshes.load(Ordering::SeqCst)
    }

    pub(crate) fn set_backend_mode(&self, mode: u8) {
        self.backend.mode.store(mode, Ordering::SeqCst);
    }

    /// Whether a `Cookie` header value holds a valid session for the gateway now.
    pub(crate) fn is_valid_cookie(&self, cookie: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert("cookie", cookie.parse().unwrap());
        self.gateway
            .check_session(&h, sallyport_gateway::Clock::now_ms(&*self.clock))
            .is_some()
    }
}

/// `POST {url}/auth/login` with [`USER`]'s JSON credentials.
pub(crate) async fn login_at(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.post(format!("{url}/auth/login"))
        .json(&json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

/// Builds a `Cookie` header from a response's non-expired `Set-Cookie` values.
pub(crate) fn cookie_header(headers: &HeaderMap) -> Option<String> {
    let pairs: Vec<String> = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|s| !s.contains("Max-Age=0"))
        .filter_map(|s| s.split(';').next().map(str::to_owned))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

/// Whether the response expires the session cookie.
pub(crate) fn clears_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|s| s.contains("Max-Age=0"))
}

pub(crate) fn header_of(v: &Value, name: &str) -> Option<String> {
    v["headers"][name][0].as_str().map(str::to_owned)
}

/// Undoes minijinja's HTML escaping (it escapes `/` too) for assertions on page text.
pub(crate) fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
