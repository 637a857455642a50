//! Configuration reload ([`sallyport_gateway::Gateway::reload`], what `SIGHUP` runs):
//! secrets, public paths and upstream change while the gateway serves; in-flight
//! requests, held connections and renewals are not disturbed; an invalid configuration
//! is refused and the old one keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::harness::*;

const OLD: &str = "old-secret-old-secret-old-secret-0001";
const NEW: &str = "new-secret-new-secret-new-secret-0002";

async fn metrics(url: &str) -> String {
    client()
        .get(format!("{}/metrics", admin_of(url)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the metric line starting with `prefix` (0 when absent).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

async fn get(url: &str, path: &str, cookie: &str) -> reqwest::Response {
    let mut r = client()
        .get(format!("{url}{path}"))
        .header("accept", "application/json");
    if !cookie.is_empty() {
        r = r.header("cookie", cookie);
    }
    r.send().await.unwrap()
}

async fn login(url: &str) -> String {
    let resp = login_at(&client(), url).await;
    assert_eq!(resp.status(), 200);
    cookie_header(resp.headers()).unwrap()
}

#[tokio::test]
async fn secret_rotation_keeps_old_cookies_and_seals_new_ones_with_the_new_id() {
    let backend = start_backend(0).await;
    let (_up, up_url) = start_upstream().await;
    let mut c1 = config(&backend, &up_url);
    c1.session.secret = None;
    c1.session.secrets = [("1".to_owned(), OLD.to_owned())].into();
    let (url, gateway, _) = start_gateway(c1.clone()).await;
    let old_cookie = login(&url).await;
    assert!(old_cookie.contains("Fe26.2*1*"), "{old_cookie}");
    // Served once before the reload: the unsealed session is now in the cache.
    let resp = get(&url, "/echo", &old_cookie).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("set-cookie").is_none());

    // Rotation: add id 2, keep id 1.
    let mut c2 = c1.clone();
    c2.session.secrets.insert("2".into(), NEW.into());
    let done = gateway.reload(c2).unwrap();
    assert!(done.secrets_changed);
    assert!(done.kept.is_empty(), "{:?}", done.kept);

    // The old cookie still opens, and is resealed with the new id.
    let resp = get(&url, "/echo", &old_cookie).await;
    assert_eq!(resp.status(), 200);
    let resealed = cookie_header(resp.headers()).expect("resealed with the new id");
    assert!(resealed.contains("Fe26.2*2*"), "{resealed}");
    // New logins are sealed with the new id.
    let new_cookie = login(&url).await;
    assert!(new_cookie.contains("Fe26.2*2*"), "{new_cookie}");

    // Retiring id 1: cookies sealed with it stop opening at once (even though the
    // gateway had them cached), those sealed with id 2 keep working.
    let mut c3 = c1.clone();
    c3.session.secrets = [("2".to_owned(), NEW.to_owned())].into();
    gateway.reload(c3).unwrap();
    assert_eq!(get(&url, "/echo", &old_cookie).await.status(), 401);
    assert_eq!(get(&url, "/echo", &resealed).await.status(), 200);
    assert_eq!(get(&url, "/echo", &new_cookie).await.status(), 200);

    let m = metrics(&url).await;
    assert_eq!(
        metric(&m, "sallyport_gateway_config_reloads_total{result=\"ok\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "sallyport_gateway_config_last_reload_successful"),
        1.0
    );
}

#[tokio::test]
async fn public_paths_follow_a_reload() {
    let backend = start_backend(0).await;
    let (_up, up_url) = start_upstream().await;
    let c1 = config(&backend, &up_url);
    let (url, gateway, _) = start_gateway(c1.clone()).await;
    assert_eq!(get(&url, "/public/a", "").await.status(), 200);
    assert_eq!(get(&url, "/open/a", "").await.status(), 401);

    let mut c2 = c1.clone();
    c2.public_paths = vec!["/open/**".into()];
    gateway.reload(c2).unwrap();
    assert_eq!(
        get(&url, "/open/a", "").await.status(),
        200,
        "new public path"
    );
    assert_eq!(
        get(&url, "/public/a", "").await.status(),
        401,
        "a removed public path is protected again"
    );
}

#[tokio::test]
async fn new_upstream_receives_the_traffic_and_a_held_connection_survives() {
    let backend = start_backend(0).await;
    let (up1, up1_url) = start_upstream().await;
    let (up2, up2_url) = start_upstream().await;
    let c1 = config(&backend, &up1_url);
    let (url, gateway, _) = start_gateway(c1.clone()).await;

    // One keep-alive connection, opened before the reload and used on both sides of it.
    let addr = url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut held, conn) =
        hyper::client::conn::http1::handshake::<_, String>(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn_task = tokio::spawn(conn);
    let request = || {
        http::Request::get("/public/held")
            .header("host", &addr)
            .body(String::new())
            .unwrap()
    };
    let resp = held.send_request(request()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.unwrap();
    assert_eq!(up1.hits.load(Ordering::SeqCst), 1);

    let mut c2 = c1.clone();
    c2.upstream = up2_url.clone();
    let done = gateway.reload(c2).unwrap();
    assert!(done.upstream_changed);

    // The same connection, next request: served, by the new upstream.
    held.ready()
        .await
        .expect("the held connection is still open");
    let resp = held.send_request(request()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.unwrap();
    assert!(
        !conn_task.is_finished(),
        "the held connection was not closed"
    );
    assert_eq!(up2.hits.load(Ordering::SeqCst), 1);
    // New connections too.
    assert_eq!(get(&url, "/public/x", "").await.status(), 200);
    assert_eq!(up2.hits.load(Ordering::SeqCst), 2);
    assert_eq!(
        up1.hits.load(Ordering::SeqCst),
        1,
        "nothing more to the old one"
    );
}

#[tokio::test]
async fn a_slow_request_in_flight_completes_across_a_reload() {
    let backend = start_backend(0).await;
    let (up1, up1_url) = start_upstream().await;
    let (up2, up2_url) = start_upstream().await;
    let c1 = config(&backend, &up1_url);
    let (url, gateway, _) = start_gateway(c1.clone()).await;
    let cookie = login(&url).await;

    let entered = up1.entered.notified();
    let slow = {
        let (url, cookie) = (url.clone(), cookie.clone());
        tokio::spawn(async move { get(&url, "/hold", &cookie).await })
    };
    entered.await;
    // While it is held by the old upstream: move to a new upstream and a new secret only.
    let mut c2 = c1.clone();
    c2.upstream = up2_url;
    c2.session.secret = None;
    c2.session.secrets = [("2".to_owned(), NEW.to_owned())].into();
    gateway.reload(c2).unwrap();
    up1.release.notify_one();
    let resp = slow.await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "finished on the configuration it began with"
    );
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["uri"], "/hold");
    assert_eq!(up2.hits.load(Ordering::SeqCst), 0);
    // The next request is under the new configuration: the old secret is gone.
    assert_eq!(get(&url, "/echo", &cookie).await.status(), 401);
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_and_the_old_one_keeps_serving() {
    let backend = start_backend(0).await;
    let (_up, up_url) = start_upstream().await;
    let c1 = config(&backend, &up_url);
    let (url, gateway, _) = start_gateway(c1.clone()).await;
    let cookie = login(&url).await;

    // A valid change together with an invalid one: nothing is applied.
    let mut bad = c1.clone();
    bad.public_paths = vec!["/open/**".into()];
    bad.session.secret = Some("too short".into());
    let err = gateway.reload(bad).unwrap_err();
    assert!(err.to_string().contains("SESSION_SECRET"), "{err}");
    let mut bad = c1.clone();
    bad.upstream = "not a url".into();
    let err = gateway.reload(bad).unwrap_err();
    assert!(err.to_string().contains("`upstream`"), "{err}");

    assert_eq!(get(&url, "/public/a", "").await.status(), 200);
    assert_eq!(get(&url, "/open/a", "").await.status(), 401);
    assert_eq!(get(&url, "/echo", &cookie).await.status(), 200);
    let m = metrics(&url).await;
    assert_eq!(
        metric(
            &m,
            "sallyport_gateway_config_reloads_total{result=\"refused\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "sallyport_gateway_config_last_reload_successful"),
        0.0
    );
}

#[tokio::test]
async fn settings_that_need_a_restart_keep_their_value_and_the_rest_applies() {
    let backend = start_backend(0).await;
    let (_up, up_url) = start_upstream().await;
    let c1 = config(&backend, &up_url);
    let (url, gateway, _) = start_gateway(c1.clone()).await;

    let mut c2 = c1.clone();
    c2.prefix = "/gate".into();
    c2.listen = "127.0.0.1:1".parse().unwrap();
    c2.public_paths = vec!["/open/**".into()];
    let done = gateway.reload(c2).unwrap();
    assert_eq!(done.kept, ["listen", "prefix"]);
    assert_eq!(gateway.settings().prefix(), "/auth");
    // The routes still live under the running prefix; the public path applied.
    assert_eq!(login_at(&client(), &url).await.status(), 200);
    assert_eq!(get(&url, "/open/a", "").await.status(), 200);
}

/// A stand-in for the backend's refresh endpoint that holds every call until the test
/// releases it, then forwards it to the real backend: the test knows, without sleeping,
/// that a renewal is under way.
struct RefreshGate {
    url: String,
    entered: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Semaphore>,
}

async fn refresh_gate(target: String) -> RefreshGate {
    use axum::body::Bytes;
    let entered = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = {
        let (entered, release) = (entered.clone(), release.clone());
        move |headers: http::HeaderMap, body: Bytes| async move {
            entered.fetch_add(1, Ordering::SeqCst);
            release.acquire().await.unwrap().forget();
            let mut forward = client().post(&target).body(body);
            for name in [http::header::CONTENT_TYPE, http::header::AUTHORIZATION] {
                if let Some(v) = headers.get(&name) {
                    forward = forward.header(name, v);
                }
            }
            let resp = forward.send().await.unwrap();
            let status = resp.status();
            let content_type = resp.headers()[http::header::CONTENT_TYPE].clone();
            let body = resp.bytes().await.unwrap();
            (status, [(http::header::CONTENT_TYPE, content_type)], body)
        }
    };
    let app = axum::Router::new().route("/api/refresh-token", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    RefreshGate {
        url,
        entered,
        release,
    }
}

#[tokio::test]
async fn a_renewal_in_flight_across_a_reload_calls_the_backend_once() {
    // Reuse interval 0: a second redemption of the refresh token would revoke the session.
    let backend = start_backend(0).await;
    let gate = refresh_gate(format!("{}/api/refresh-token", backend.url)).await;
    let (_up, up_url) = start_upstream().await;
    let mut c1 = config(&backend, &up_url);
    c1.backend.refresh_url = Some(format!("{}/api/refresh-token", gate.url));
    // Requests wait for the held renewal instead of giving up after 500 ms.
    c1.backend.timeout_ms = 15_000;
    let (url, gateway, clock) = start_gateway(c1.clone()).await;
    let cookie = login(&url).await;
    clock.advance_ms(16 * 60 * 1000);

    let first = {
        let (url, cookie) = (url.clone(), cookie.clone());
        tokio::spawn(async move { get(&url, "/echo", &cookie).await })
    };
    until("the first request's renewal is under way", async || {
        gate.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut c2 = c1.clone();
    c2.public_paths = vec!["/open/**".into()];
    gateway.reload(c2).unwrap();
    let second = {
        let (url, cookie) = (url.clone(), cookie.clone());
        tokio::spawn(async move { get(&url, "/echo", &cookie).await })
    };
    // The second request either joins the renewal begun before the reload (right) or
    // starts its own (wrong: a second backend call); wait for one or the other.
    let joined = "sallyport_gateway_renewals_joined_total{via=\"local\"}";
    until("the second request joins or renews", async || {
        metric(&metrics(&url).await, joined) == 1.0 || gate.entered.load(Ordering::SeqCst) == 2
    })
    .await;
    gate.release.add_permits(2);

    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200, "joined the renewal in flight");
    let token = |v: &Value| header_of(v, "authorization");
    let (a, b): (Value, Value) = (first.json().await.unwrap(), second.json().await.unwrap());
    assert_eq!(token(&a), token(&b), "both got the one renewal's token");
    assert_eq!(gate.entered.load(Ordering::SeqCst), 1);
    assert_eq!(backend.refreshes.load(Ordering::SeqCst), 1);
}

/// A minimal keep-alive HTTP/1.1 upstream that answers `name` and counts the
/// connections it has seen closed by the gateway.
async fn counting_upstream(name: &'static str) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (o, c) = (opened.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            o.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if write.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (url, opened, closed)
}

#[tokio::test]
async fn the_old_upstreams_idle_connections_are_closed_after_a_move() {
    let backend = start_backend(0).await;
    let (a_url, a_opened, a_closed) = counting_upstream("a").await;
    let (b_url, _, _) = counting_upstream("b").await;
    let c1 = config(&backend, &a_url);
    let (url, gateway, _) = start_gateway(c1.clone()).await;
    let body = |r: reqwest::Response| async move { r.text().await.unwrap() };
    assert_eq!(body(get(&url, "/public/1", "").await).await, "a");
    assert_eq!(a_opened.load(Ordering::SeqCst), 1);
    assert_eq!(a_closed.load(Ordering::SeqCst), 0, "kept alive in the pool");

    // A reload that keeps the upstream keeps its warm connection.
    let mut same = c1.clone();
    same.public_paths.push("/open/**".into());
    gateway.reload(same.clone()).unwrap();
    assert_eq!(body(get(&url, "/public/2", "").await).await, "a");
    assert_eq!(a_opened.load(Ordering::SeqCst), 1, "the pool survived");

    let mut moved = same;
    moved.upstream = b_url;
    gateway.reload(moved).unwrap();
    assert_eq!(body(get(&url, "/public/3", "").await).await, "b");
    // The old pool's idle connection is closed (not left to its 60 s idle timeout).
    let start = std::time::Instant::now();
    while a_closed.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the old upstream's idle connection is still open"
        );
        assert_eq!(body(get(&url, "/public/4", "").await).await, "b");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
