//! Issue 8 item 10: slow clients and floods. A request body that stops arriving (or
//! trickles) ends with 408 — at the login form and on a proxied upload alike — an
//! upstream that stalls mid-body does not hold the client, and the connection cap
//! refuses connections past it. Short limits, long bounds: nothing asserts speed.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::harness::Harness;
use sallyport_serve::testing::{BOUND, read_after_stall, served};

fn addr(h: &Harness) -> String {
    h.url.trim_start_matches("http://").to_owned()
}

/// Sends `head` and `first` body bytes, then `every` (if any) one more byte at that
/// pace; returns what the gateway answers before it closes the connection.
async fn trickle(h: &Harness, head: &str, first: &[u8], every: Option<Duration>) -> String {
    sallyport_serve::testing::trickle(addr(h), &[head.as_bytes(), first].concat(), every).await
}

fn limits(c: &mut sallyport_gateway::Config) {
    c.server.body_idle_timeout_ms = 300;
    c.server.header_read_timeout_ms = Some(20_000);
    // The default, and twice `BOUND`: the wait for upstream (once the only bound on a
    // proxied upload) must not be what ends the request.
    c.proxy.response_timeout_ms = 60_000;
}

fn login_head(len: usize) -> String {
    format!(
        "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

#[tokio::test]
async fn issue8_a_stalled_login_body_gets_408() {
    let h = Harness::start_with(0, limits).await;
    let out = trickle(&h, &login_head(200), br#"{"username":"#, None).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains(r#""error":"timeout""#), "{out}");
}

/// One byte every 100 ms beats a 300 ms idle timeout but not the minimum rate.
#[tokio::test]
async fn issue8_a_trickled_login_body_gets_408() {
    let h = Harness::start_with(0, limits).await;
    let out = trickle(
        &h,
        &login_head(100_000),
        br#"{"username":"#,
        Some(Duration::from_millis(100)),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
}

/// A streamed upload to upstream (public path, anonymous) is aborted, and the client
/// gets 408 rather than waiting for upstream's response timeout.
#[tokio::test]
async fn issue8_a_stalled_upload_to_a_proxied_path_gets_408() {
    let h = Harness::start_with(0, limits).await;
    let head = "POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n";
    let out = trickle(&h, head, &[b'x'; 1000], None).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
}

#[tokio::test]
async fn issue8_a_trickled_upload_to_a_proxied_path_gets_408() {
    let h = Harness::start_with(0, limits).await;
    let head = "POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n";
    let out = trickle(&h, head, b"x", Some(Duration::from_millis(100))).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
}

/// A login body that arrives promptly still logs in under these short limits.
#[tokio::test]
async fn a_prompt_login_is_unaffected() {
    let h = Harness::start_with(0, limits).await;
    h.login().await;
}

/// Upstream sends part of its body and stalls: the gateway gives up after the proxy's
/// response timeout instead of holding the client for ever.
#[tokio::test]
async fn issue8_an_upstream_stalling_mid_body_is_cut_off() {
    let h = Harness::start_with(0, |c| {
        c.public_paths.push("/download".into());
        c.proxy.response_timeout_ms = 500;
    })
    .await;
    let resp = h
        .http
        .get(format!("{}/download", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(BOUND, resp.bytes()).await;
    let Ok(body) = body else {
        panic!("the stalled upstream body held the client");
    };
    assert!(body.is_err(), "a truncated body must not look complete");
}

/// An upstream that answers nothing gets 504 at the response timeout on a kept-alive
/// upstream connection too, measured from this request's start: the connection's timer,
/// armed by the previous request, fires mid-way through this wait and must move on to
/// this request's deadline rather than cut it short (or let it hang).
#[tokio::test]
async fn a_silent_upstream_on_a_pooled_connection_gets_504_at_its_own_deadline() {
    let timeout = Duration::from_millis(1000);
    let h = Harness::start_with(0, |c| {
        c.public_paths.push("/slow".into());
        c.proxy.response_timeout_ms = 1000;
    })
    .await;
    // The first request opens the upstream connection; the second takes it from the
    // pool and arms its timer; the slow request takes it from the pool again.
    for path in ["/public/x", "/public/y"] {
        let warm = h.http.get(format!("{}{path}", h.url)).send().await.unwrap();
        assert_eq!(warm.status(), 200);
        warm.bytes().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = std::time::Instant::now();
    let slow = tokio::time::timeout(BOUND, h.http.get(format!("{}/slow", h.url)).send())
        .await
        .expect("the silent upstream held the client")
        .unwrap();
    assert_eq!(slow.status(), 504);
    assert!(
        started.elapsed() >= timeout - Duration::from_millis(50),
        "cut short after {:?}: an earlier request's deadline was used",
        started.elapsed()
    );
    // The pool recovers: the next request is answered.
    let next = h
        .http
        .get(format!("{}/public/z", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 200);
}

/// `server.max_connections`: connections past it are closed, the open ones still served.
#[tokio::test]
async fn issue8_connections_past_the_cap_are_refused() {
    let h = Harness::start_with(0, |c| {
        c.server.max_connections = 2;
        c.admin.health_on_public_listener = true;
    })
    .await;
    let mut a = TcpStream::connect(addr(&h)).await.unwrap();
    let mut b = TcpStream::connect(addr(&h)).await.unwrap();
    assert!(served(&mut a, "/healthz").await);
    assert!(served(&mut b, "/healthz").await);
    let mut extra = TcpStream::connect(addr(&h)).await.unwrap();
    assert!(!served(&mut extra, "/healthz").await, "served past the cap");
    assert!(served(&mut a, "/healthz").await);
    drop(a);
    for _ in 0..100 {
        let mut again = TcpStream::connect(addr(&h)).await.unwrap();
        if served(&mut again, "/healthz").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no connection served after one closed");
}

/// A client that asks for a large proxied response and never reads it is disconnected
/// after `server.send_timeout_ms` of stalled writes (and the upstream request with it):
/// what it finally reads is cut short.
#[tokio::test]
async fn issue8_a_client_that_never_reads_is_disconnected() {
    const BIG: usize = 64 * 1024 * 1024;
    let big = axum::Router::new().fallback(|| async {
        let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = (0..BIG / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
        axum::body::Body::from_stream(futures_util::stream::iter(chunks))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, big).await.ok() });
    let backend = crate::harness::start_backend(0).await;
    let mut c = crate::harness::config(&backend, &upstream);
    c.public_paths.push("/big".into());
    c.server.send_timeout_ms = 300;
    let (url, _gateway, _clock) = crate::harness::start_gateway(c).await;

    // Not reading: the gateway's writes to us stall.
    let received = read_after_stall(
        url.trim_start_matches("http://").parse().unwrap(),
        b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(
        received < BIG,
        "the whole response arrived ({received} bytes): the stalled connection was kept"
    );
}
