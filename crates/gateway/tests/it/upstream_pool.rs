//! The per-loop pool of upstream keep-alive connections: answers never cross between
//! requests, a connection is reused only at a message boundary (one left mid-answer is
//! closed), and one that upstream closes while idle is closed here too without waiting
//! for the next request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// Many requests at once on few pooled connections, each answered after a different
/// delay: every client gets the answer to its own request.
#[tokio::test]
async fn concurrent_requests_each_get_their_own_answer() {
    let backend = start_backend(0).await;
    let up = raw_tcp_upstream(|mut s| async move {
        let mut buf = Vec::new();
        while let Some(head) = read_head(&mut s, &mut buf).await {
            let path = head.split(' ').nth(1).unwrap_or("").to_owned();
            let n: u64 = path.rsplit('/').next().unwrap_or("0").parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(n * 7 % 23)).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
                path.len()
            );
            if s.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (url, _gw, _clock) = start_gateway(config(&backend, &up)).await;
    let http = client();
    for round in 0..3 {
        let asks = (0..64).map(|i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let path = format!("/public/{round}/{i}");
                let resp = http.get(format!("{url}{path}")).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.text().await.unwrap(), path, "another request's answer");
            }
        });
        futures_util::future::join_all(asks).await;
    }
}

/// A client that goes away in the middle of a streamed answer: the upstream connection
/// carrying it is closed (it is mid-message, so it cannot carry another request), and
/// the next request is answered on a connection of its own.
#[tokio::test]
async fn a_client_gone_mid_body_closes_the_upstream_connection_and_the_next_request_is_answered() {
    let backend = start_backend(0).await;
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (o, c) = (opened.clone(), closed.clone());
    let up = raw_tcp_upstream(move |mut s| {
        o.fetch_add(1, Ordering::SeqCst);
        let c = c.clone();
        async move {
            let mut buf = Vec::new();
            while let Some(head) = read_head(&mut s, &mut buf).await {
                if head.contains("/public/stream") {
                    // A chunked answer whose end never comes.
                    let start = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                                 6\r\nfirst;\r\n";
                    let _ = s.write_all(start.as_bytes()).await;
                    let mut rest = [0u8; 64];
                    while matches!(s.read(&mut rest).await, Ok(n) if n > 0) {}
                    c.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            c.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let (url, _gw, _clock) = start_gateway(config(&backend, &up)).await;
    let http = client();
    let resp = http
        .get(format!("{url}/public/stream"))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    assert_eq!(&body.next().await.unwrap().unwrap()[..], b"first;");
    drop(body);
    until(
        "the half-read upstream connection to be closed",
        async || closed.load(Ordering::SeqCst) >= 1,
    )
    .await;

    let resp = http.get(format!("{url}/public/ok")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    assert_eq!(opened.load(Ordering::SeqCst), 2);
}

/// Upstream closing an idle keep-alive connection (its keep-alive timeout): the gateway
/// closes its end too, although no request comes to find out — no socket is left
/// half-closed for as long as the gateway runs.
#[tokio::test]
async fn an_idle_connection_upstream_closes_is_closed_here_without_a_new_request() {
    let backend = start_backend(0).await;
    let seen_close = Arc::new(AtomicUsize::new(0));
    let seen = seen_close.clone();
    let up = raw_tcp_upstream(move |mut s| {
        let seen = seen.clone();
        async move {
            let mut buf = Vec::new();
            if read_head(&mut s, &mut buf).await.is_none() {
                return;
            }
            let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            let _ = s.write_all(answer.as_bytes()).await;
            // Later, once the connection sits in the gateway's pool: our FIN; then wait
            // for the gateway's.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = s.shutdown().await;
            let mut rest = [0u8; 64];
            while matches!(s.read(&mut rest).await, Ok(n) if n > 0) {}
            seen.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let (url, _gw, _clock) = start_gateway(config(&backend, &up)).await;
    let resp = client()
        .get(format!("{url}/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "ok");
    until(
        "the gateway to close a connection upstream had closed",
        async || seen_close.load(Ordering::SeqCst) >= 1,
    )
    .await;
}
