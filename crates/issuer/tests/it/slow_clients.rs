//! Issue 8 item 10: a login body that stops arriving, or trickles, ends with 408 after
//! `server.body_idle_timeout_ms` — not after `request_timeout_secs`, and never by
//! holding the connection. Short limits, long bounds: nothing asserts speed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Backend, start};
use sallyport_serve::testing::{BOUND, trickle};

fn limits(c: &mut sallyport_issuer::Config) {
    c.server.body_idle_timeout_ms = 300;
    // The request timeout used to be the only bound on a body; take it out of play.
    c.request_timeout_secs = 3600;
}

/// Sends a login head and the start of its body, then one byte per `every` (or
/// nothing); returns the answer the issuer gives before closing the connection.
async fn trickle_login(base: &str, every: Option<Duration>) -> String {
    trickle(
        base.trim_start_matches("http://"),
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{\"username\":",
        every,
    )
    .await
}

#[tokio::test]
async fn issue8_a_stalled_login_body_gets_408() {
    let server = start(Backend::Sqlite, limits).await.unwrap();
    let out = trickle_login(&server.base, None).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains(r#""error":"timeout""#), "{out}");
}

/// One byte every 100 ms beats the 300 ms idle timeout, not the minimum rate.
#[tokio::test]
async fn issue8_a_trickled_login_body_gets_408() {
    let server = start(Backend::Sqlite, limits).await.unwrap();
    let out = trickle_login(&server.base, Some(Duration::from_millis(100))).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
}

/// `server.max_connections` reaches the issuer's listener.
#[tokio::test]
async fn issue8_connections_past_the_cap_are_refused() {
    let server = start(Backend::Sqlite, |c| c.server.max_connections = 1)
        .await
        .unwrap();
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut first = TcpStream::connect(&addr).await.unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(BOUND, first.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(BOUND, extra.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "neither answered nor closed");
    assert!(out.is_empty(), "served past the cap");
}
