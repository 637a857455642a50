//! The HTTP server: slow clients are cut off, graceful shutdown.

use super::*;

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
