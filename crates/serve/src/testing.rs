//! Raw-socket clients that misbehave on purpose, for the slow-client tests of servers
//! built on [`crate::serve`] (feature `testing`, for tests only).
//!
//! Every wait is bounded by [`BOUND`] and panics past it, so a regression fails a test
//! instead of hanging it. Nothing here asserts speed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, ToSocketAddrs};

/// Far beyond any limit a test sets, far below "for ever".
pub const BOUND: Duration = Duration::from_secs(30);

/// Sends `sent`, then one byte (a space) every `every` — or, with `None`, nothing more,
/// keeping its half of the connection open — and returns what the server answers
/// before it closes the connection.
///
/// # Panics
/// When the connection cannot be made or is still open after [`BOUND`].
pub async fn trickle(addr: impl ToSocketAddrs, sent: &[u8], every: Option<Duration>) -> String {
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut r, mut w) = s.into_split();
    w.write_all(sent).await.expect("send");
    let writer = tokio::spawn(async move {
        let Some(every) = every else {
            std::future::pending::<()>().await;
            return;
        };
        loop {
            tokio::time::sleep(every).await;
            if w.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(BOUND, r.read_to_end(&mut buf)).await;
    writer.abort();
    assert!(read.is_ok(), "the slow client held the connection open");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends `request` on a connection with a 16 KiB receive buffer, reads nothing for
/// `stall` (the server's writes stall once the buffers are full), then reads until the
/// server closes the connection; returns how many bytes arrived.
///
/// # Panics
/// When the connection cannot be made or is still open after [`BOUND`].
pub async fn read_after_stall(addr: SocketAddr, request: &[u8], stall: Duration) -> usize {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    let mut s = socket.connect(addr).await.expect("connect");
    s.write_all(request).await.expect("send");
    tokio::time::sleep(stall).await;
    let mut received = 0usize;
    let mut chunk = vec![0u8; 256 * 1024];
    let read = tokio::time::timeout(BOUND, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection was left open");
    received
}

/// Sends `GET path` on the keep-alive connection `s` and reads the whole answer (its
/// head, and its body by `Content-Length`, so the connection is ready for another
/// request); whether it was a 200. `false` when the server closes the connection
/// instead.
///
/// # Panics
/// When neither an answer nor a close comes within [`BOUND`].
pub async fn served(s: &mut TcpStream, path: &str) -> bool {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let answered = tokio::time::timeout(BOUND, async {
        loop {
            if let Some(len) = response_len(&got)
                && got.len() >= len
            {
                return true;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "neither answered nor closed");
    answered.unwrap_or(false) && got.starts_with(b"HTTP/1.1 200")
}

/// The length of the response that `got` begins with, once its head is complete: the
/// head plus `Content-Length` (0 without one).
fn response_len(got: &[u8]) -> Option<usize> {
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&got[..head_end]);
    let body = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    Some(head_end + body)
}
