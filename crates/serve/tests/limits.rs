//! Slow clients and floods against a real server on loopback: trickled bodies, a client
//! that never reads, connection caps. Timeouts are short here; the bounds the tests wait
//! are long (a regression fails instead of hanging), and nothing asserts speed.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sallyport_serve::testing::{BOUND, read_after_stall, served, trickle};
use sallyport_serve::{BodyLimits, Options, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BIG: usize = 64 * 1024 * 1024;

/// Reads the body like a handler that answers 400 on a failed read (axum's extractors).
async fn echo_len(req: Request) -> Response {
    match axum::body::to_bytes(req.into_body(), 1 << 20).await {
        Ok(b) => b.len().to_string().into_response(),
        Err(_) => (http::StatusCode::BAD_REQUEST, "could not read").into_response(),
    }
}

/// `BIG` bytes, made as they are sent.
async fn big() -> Response {
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_util::stream::iter(
        (0..BIG / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    Body::from_stream(stream).into_response()
}

/// A WebSocket that stays open until the client closes it.
async fn ws_hold(upgrade: axum::extract::WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket| async move { while let Some(Ok(_)) = socket.recv().await {} })
}

async fn start(options: Options) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/echo", post(echo_len))
        .route("/big", get(big))
        .route("/ok", get(|| async { "ok" }))
        .route("/ws", get(ws_hold));
    tokio::spawn(serve(listener, router, options, std::future::pending()));
    addr
}

fn quick(options: Options) -> Options {
    Options {
        header_read_timeout: Duration::from_secs(20),
        ..options
    }
}

/// Reads until the server closes the connection (EOF or reset), within [`BOUND`].
async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = tokio::time::timeout(BOUND, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection was left open");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Issue 8 item 10: a body that stops arriving ends the request with a JSON 408 (not
/// the handler's 400) and closes the connection.
#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_closes() {
    let addr = start(quick(Options {
        body: BodyLimits::idle(Duration::from_millis(300)),
        ..Options::default()
    }))
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx")
        .await
        .unwrap();
    let out = read_until_closed(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("application/json"), "{out}");
    assert!(out.contains(r#""error":"timeout""#), "{out}");
}

/// A trickle that beats the idle timeout (one byte every 100 ms against 500 ms) is
/// still cut off: after the grace period it is below the minimum rate.
#[tokio::test]
async fn a_body_trickled_below_the_minimum_rate_is_cut_off() {
    let addr = start(quick(Options {
        body: BodyLimits {
            idle: Duration::from_millis(500),
            min_bytes_per_sec: 240,
        },
        ..Options::default()
    }))
    .await;
    let out = trickle(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nx",
        Some(Duration::from_millis(100)),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
}

/// A body that arrives whole is untouched by the limits.
#[tokio::test]
async fn a_prompt_body_is_served() {
    let addr = start(quick(Options {
        body: BodyLimits {
            idle: Duration::from_millis(300),
            min_bytes_per_sec: 240,
        },
        ..Options::default()
    }))
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await
    .unwrap();
    let out = read_until_closed(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("\r\n\r\n5"), "{out}");
}

/// A client that asks for a large response and never reads it is disconnected once
/// the server's writes stall for `send_timeout`: what it finally reads is cut short.
#[tokio::test]
async fn a_client_that_never_reads_is_disconnected() {
    let addr = start(quick(Options {
        send_timeout: Duration::from_millis(300),
        ..Options::default()
    }))
    .await;
    // Not reading: the server's send buffer and our receive buffer fill, and its
    // writes stall.
    let received = read_after_stall(
        addr,
        b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(
        received < BIG,
        "the whole response arrived ({received} bytes): the stalled connection was kept"
    );
}

/// A reader that keeps up gets the whole large response.
#[tokio::test]
async fn a_reading_client_gets_the_whole_response() {
    let addr = start(quick(Options {
        send_timeout: Duration::from_millis(300),
        ..Options::default()
    }))
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf.len() > BIG, "{} bytes", buf.len());
}

/// Connection cap N: N connections are served, the extra ones are closed at once while
/// the N keep being served, and once the N close new connections are served again.
#[tokio::test]
async fn connections_past_the_cap_are_closed_and_the_others_served() {
    let addr = start(quick(Options {
        max_connections: 2,
        ..Options::default()
    }))
    .await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    assert!(served(&mut a, "/ok").await);
    assert!(served(&mut b, "/ok").await);
    for _ in 0..3 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(
            !served(&mut extra, "/ok").await,
            "a connection past the cap was served"
        );
    }
    assert!(
        served(&mut a, "/ok").await,
        "an open connection stopped being served"
    );
    assert!(
        served(&mut b, "/ok").await,
        "an open connection stopped being served"
    );
    drop(a);
    drop(b);
    // The server notices the closes on its own schedule: retry for a while.
    for _ in 0..100 {
        let mut again = TcpStream::connect(addr).await.unwrap();
        if served(&mut again, "/ok").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("new connections are not served after the old ones closed");
}

async fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// The per-address cap refuses a second connection from one address and none from
/// another.
#[tokio::test]
async fn the_per_address_cap_counts_each_address() {
    let addr = start(quick(Options {
        max_connections_per_ip: 1,
        ..Options::default()
    }))
    .await;
    let mut first = connect_from("127.0.0.1", addr).await;
    assert!(served(&mut first, "/ok").await);
    let mut second = connect_from("127.0.0.1", addr).await;
    assert!(
        !served(&mut second, "/ok").await,
        "a second connection from one address"
    );
    let mut other = connect_from("127.0.0.2", addr).await;
    assert!(
        served(&mut other, "/ok").await,
        "another address was refused"
    );
    assert!(served(&mut first, "/ok").await);
}

/// hyper's header read timeout also ends a keep-alive connection idle between
/// requests (a guard: this held before the limits above were added).
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let addr = start(Options {
        header_read_timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(served(&mut s, "/ok").await);
    let rest = read_until_closed(&mut s).await;
    assert!(!rest.contains("200"), "{rest}");
}

/// Each wait for a request head on a keep-alive connection has the whole header read
/// timeout from the previous response, not from an earlier one: the connection's timer
/// is re-armed lazily (it first fires at an earlier wait's deadline, mid-way through this
/// head, and must move on rather than close). And a head that never completes is cut.
#[tokio::test]
async fn each_request_head_on_a_kept_connection_gets_its_own_deadline() {
    let addr = start(Options {
        header_read_timeout: Duration::from_millis(1000),
        ..Options::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(served(&mut s, "/ok").await);
    // The wait after the first response ends ≈ 1.0 s from here; the second request comes
    // at ≈ 0.6 s, so the third head's deadline is ≈ 1.6 s. That head starts at ≈ 0.7 s and
    // completes at ≈ 1.4 s, after the first wait's deadline.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(served(&mut s, "/ok").await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(b"X-Late: 1\r\n\r\n").await.unwrap();
    let mut got = vec![0u8; 1024];
    let n = tokio::time::timeout(BOUND, s.read(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(
        got[..n].starts_with(b"HTTP/1.1 200"),
        "closed before its own deadline: {:?}",
        String::from_utf8_lossy(&got[..n])
    );
    // A head that never completes is cut, no later than a bound.
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let rest = read_until_closed(&mut s).await;
    assert!(!rest.contains("200"), "{rest}");
}

/// An upgraded connection (WebSocket) keeps its slot: it outlives hyper's connection
/// but not the cap.
#[tokio::test]
async fn an_upgraded_connection_counts_against_the_cap() {
    let addr = start(quick(Options {
        max_connections: 1,
        ..Options::default()
    }))
    .await;
    let mut ws = TcpStream::connect(addr).await.unwrap();
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(BOUND, ws.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Give hyper time to hand the socket over and end its connection future.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(
        !served(&mut extra, "/ok").await,
        "served past the cap while a WebSocket is open"
    );
    drop(ws);
    for _ in 0..100 {
        let mut again = TcpStream::connect(addr).await.unwrap();
        if served(&mut again, "/ok").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the WebSocket's slot was not freed when it closed");
}

/// A request head is bounded in size as well as in time: hyper's limits (about 400 KiB
/// of buffered head, 100 headers) answer 431 and close, rather than buffer on.
#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let addr = start(quick(Options::default())).await;
    let long = format!(
        "GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many = format!(
        "GET /ok HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..200)
            .map(|i| format!("X-{i}: a\r\n"))
            .collect::<String>()
    );
    for head in [long, many] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The server may stop reading (and reset) before all of it is written.
        let _ = s.write_all(head.as_bytes()).await;
        let out = read_until_closed(&mut s).await;
        assert!(
            out.is_empty() || out.starts_with("HTTP/1.1 431"),
            "{}",
            &out[..out.len().min(200)]
        );
        assert!(!out.contains("200 OK"));
    }
}
