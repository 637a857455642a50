//! Serving an axum [`Router`] (or any [`Handler`]) the way every Sallyport server needs it.
//!
//! `axum::serve` has no timer and no limits: a client trickling a request head
//! (slowloris) or a request body, or never reading its response, holds a connection —
//! and a file descriptor, and a task — for ever, and a connect flood grows both without
//! bound. The issuer, the gateway and the demo all serve through [`serve`] instead,
//! which drives hyper's HTTP/1.1 connection directly:
//!
//! - every connection must deliver a complete request head within
//!   [`Options::header_read_timeout`] of connecting or of its previous response: this
//!   also ends keep-alive connections idle for that long;
//! - every request body is a [`TimeoutBody`]: it fails when it delivers nothing for
//!   [`BodyLimits::idle`] while being read, or arrives slower than
//!   [`BodyLimits::min_bytes_per_sec`] once that much waiting is used up; the request
//!   then ends with **408** and a JSON body (`{"error":"timeout",…}`), whatever the
//!   handler answered (a half-read form, an aborted upload to an upstream), and the
//!   connection closes;
//! - a response write that makes no progress for [`Options::send_timeout`] (the
//!   client stopped reading) closes the connection;
//! - at most [`Options::max_connections`] connections are open at once, and at most
//!   [`Options::max_connections_per_ip`] from one client address when set; a
//!   connection past a cap is closed as soon as it is accepted, without touching the
//!   open ones, and a rate-limited warning is logged;
//! - `TCP_NODELAY` on accepted sockets (responses are written whole; Nagle only adds
//!   delayed-ACK stalls to the tail latency), as nginx's `tcp_nodelay on`;
//! - HTTP upgrades (WebSocket) pass through;
//! - the peer address is passed to every [`Handler`], and reaches a [`Router`]'s
//!   handlers as `ConnectInfo<SocketAddr>`;
//! - on shutdown, the listener closes and in-flight connections get
//!   [`Options::drain_timeout`] to finish.
//!
//! Handlers and proxies that want the same protection for a body they read from
//! elsewhere (the gateway's upstream responses) wrap it in [`TimeoutBody`] too.

mod body;
mod config;
mod deadline;
pub mod html;
mod io;
mod limit;
pub mod reload;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http_body::Body as _;
use hyper_util::rt::TokioIo;
use tower::ServiceExt as _;

pub use crate::body::{BodyLimits, BodyTimeout, BoxError, TimeoutBody};
pub use crate::config::{ConfigError, ServerConfig};
pub use crate::deadline::{Elapsed, SharedSleep, WithDeadline};

/// How [`serve`] treats connections. [`ServerConfig`] is its configuration-file form.
#[derive(Debug, Clone)]
pub struct Options {
    /// Longest wait for a complete request head, and so also the longest a keep-alive
    /// connection may sit idle between requests. Default 10 s.
    pub header_read_timeout: Duration,
    /// Longest a response write may make no progress before the connection is closed.
    /// Default 30 s.
    pub send_timeout: Duration,
    /// Limits on every request body. Default: 10 s idle, then at least 240 bytes/s.
    pub body: BodyLimits,
    /// Most connections open at once; more are closed on accept. Default 10 000.
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one /64); 0 means
    /// no such cap. Default 0.
    pub max_connections_per_ip: usize,
    /// How long in-flight connections may run after shutdown begins. Default 30 s.
    pub drain_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            body: BodyLimits {
                idle: Duration::from_secs(10),
                min_bytes_per_sec: 240,
            },
            max_connections: 10_000,
            max_connections_per_ip: 0,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// What [`Server::serve`] calls for every request: any
/// `Fn(Request, Option<SocketAddr>) -> impl Future` that can be cloned into each
/// connection; the second argument is the peer's address (always `Some` from
/// [`Server::serve`]). An axum [`Router`] is one through [`router`].
///
/// A plain function type rather than a `tower::Service`: the future it returns is stored
/// inline in hyper's connection state, with no boxing and no `poll_ready` round trip per
/// request, which is what lets a handler that needs no routing (the gateway's proxy path)
/// skip the router's per-request costs entirely. The peer address is an argument rather
/// than a request extension for the same reason: the first extension allocates the
/// request's extension map, a cost only the routes that read it (`ConnectInfo`) pay.
pub trait Handler: Clone + Send + Sync + 'static {
    /// The response future.
    type Future: Future<Output = Response> + Send + 'static;
    /// Handles one request from `peer`.
    fn call(&self, req: axum::extract::Request, peer: Option<SocketAddr>) -> Self::Future;
}

impl<F, Fut> Handler for F
where
    F: Fn(axum::extract::Request, Option<SocketAddr>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    type Future = Fut;
    fn call(&self, req: axum::extract::Request, peer: Option<SocketAddr>) -> Fut {
        self(req, peer)
    }
}

/// `router` as a [`Handler`]; the peer address reaches its handlers as
/// `ConnectInfo<SocketAddr>` (axum's extractor).
pub fn router(
    router: Router,
) -> impl Handler<Future = impl Future<Output = Response> + Send + 'static> {
    move |mut req: axum::extract::Request, peer: Option<SocketAddr>| {
        if let Some(peer) = peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        let call = router.clone().oneshot(req);
        async move {
            match call.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains connections
/// for at most `options.drain_timeout`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Server::new(options)
        .serve(listener, self::router(router), shutdown)
        .await
}

/// One server's options and connection caps. Cloning shares the caps: several accept
/// loops (one per thread, each on its own `SO_REUSEPORT` socket of one address, see the
/// gateway's `threads`) then count their connections together, so `max_connections`
/// stays a limit for the whole process.
#[derive(Clone)]
pub struct Server {
    options: Options,
    limiter: Arc<limit::Limiter>,
}

impl Server {
    /// A server with `options`, its connection caps not yet shared with anyone.
    pub fn new(options: Options) -> Self {
        let limiter = limit::Limiter::new(options.max_connections, options.max_connections_per_ip);
        Self { options, limiter }
    }

    /// Serves `handler` on `listener` until `shutdown` completes, then drains this
    /// loop's connections for at most `options.drain_timeout`.
    pub async fn serve<H: Handler>(
        &self,
        listener: tokio::net::TcpListener,
        handler: H,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let options = &self.options;
        // HTTP/1.1 only, through hyper's own builder: hyper-util's protocol-sniffing
        // `auto` builder reads the first bytes with no timeout at all, which a silent
        // client exploits just as well as a trickling one.
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.header_read_timeout(options.header_read_timeout);
        let limiter = &self.limiter;
        let body_limits = options.body;
        // Graceful shutdown by hand (hyper-util's `GracefulShutdown` does not take an
        // upgradeable HTTP/1 connection): `stop` tells every connection to finish its
        // in-flight request and close; each connection task holds a clone of `done_tx`,
        // so `done_rx` yields `None` once the last one has ended.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Past a cap the socket is closed right here: no task, no buffers, and the
            // connections already open are untouched. (Leaving it in the kernel's backlog
            // instead would stall every later client, good or bad, until it times out.)
            let Ok(permit) = limiter.admit(peer.ip()) else {
                drop(stream);
                continue;
            };
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%err, "could not set TCP_NODELAY");
            }
            let handler = handler.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tripped =
                        (!req.body().is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
                    let req = match &tripped {
                        Some(flag) => req.map(|b| {
                            axum::body::Body::new(TimeoutBody::with_flag(
                                b,
                                body_limits,
                                flag.clone(),
                            ))
                        }),
                        None => req.map(axum::body::Body::new),
                    };
                    let response = handler.call(req, Some(peer));
                    async move {
                        let response = response.await;
                        Ok::<_, std::convert::Infallible>(match tripped {
                            Some(flag) if flag.load(Ordering::Relaxed) => body_timeout_response(),
                            _ => response,
                        })
                    }
                });
            let io = TokioIo::new(io::SendTimeoutIo::new(stream, options.send_timeout, permit));
            let mut stop = stop_rx.clone();
            let done = done_tx.clone();
            // Upgrades (WebSocket) are always let through: a route that doesn't upgrade
            // answers as usual, so the issuer and demo lose nothing by it.
            // Each connection's own timer: its request heads' deadlines share one lazily
            // re-armed timer instead of one registered per request (see `deadline`).
            let conn = builder
                .clone()
                .timer(deadline::ConnTimer::default())
                .serve_connection(io, service)
                .with_upgrades();
            tokio::spawn(async move {
                let mut conn = std::pin::pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    () = async { let _ = stop.wait_for(|s| *s).await; } => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(err) = result {
                    tracing::debug!(%err, %peer, "connection closed with an error");
                }
                drop(done);
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        drop(done_tx);
        if tokio::time::timeout(options.drain_timeout, done_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the drain timeout; dropping them");
        }
        Ok(())
    }
}

/// The answer to a request whose body timed out, replacing whatever the handler made of
/// the failed read (axum's extractors say 400, a size-limited read may say 413, a proxy
/// 502). The shape is the one both servers' JSON errors have.
fn body_timeout_response() -> Response {
    let mut resp = Response::new(axum::body::Body::from(
        r#"{"error":"timeout","message":"the request body was not received in time"}"#,
    ));
    *resp.status_mut() = http::StatusCode::REQUEST_TIMEOUT;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    // Part of the body is unread: the connection cannot carry another request.
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(options: Options) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, options, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    #[tokio::test]
    async fn serves_requests_with_the_peer_address() {
        let (addr, _stop) = start(Options::default()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("127.0.0.1"), "{out}");
    }

    /// Slowloris: a connection that never finishes its request head is closed.
    #[tokio::test]
    async fn closes_a_connection_that_trickles_its_head() {
        let (addr, _stop) = start(Options {
            header_read_timeout: Duration::from_millis(300),
            ..Options::default()
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        // The server closes it after 300 ms (EOF or a 408); 30 s is only a bound so a
        // regression fails instead of hanging.
        let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the connection was left open");
        let text = String::from_utf8_lossy(&buf);
        assert!(!text.contains("200 OK"), "{text}");
    }

    /// A client that connects and sends nothing is closed too.
    #[tokio::test]
    async fn closes_a_silent_connection() {
        let (addr, _stop) = start(Options {
            header_read_timeout: Duration::from_millis(300),
            ..Options::default()
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the connection was left open");
    }

    #[tokio::test]
    async fn stops_accepting_after_shutdown() {
        let (addr, stop) = start(Options::default()).await;
        stop.send(()).unwrap();
        // Give the accept loop a moment to see the signal.
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("still accepting after shutdown");
    }
}
