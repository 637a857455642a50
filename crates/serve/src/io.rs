//! [`SendTimeoutIo`]: a socket whose writes fail when the peer stops reading.
//!
//! Only writes are timed. hyper reads a connection while a handler runs too (to notice
//! a client that hangs up), so a read that waits says nothing about the client; the
//! waits that do — for a request head, for a request body — are timed by hyper's header
//! read timeout and by [`crate::TimeoutBody`]. A write that cannot proceed, on the other
//! hand, always means the client's receive window is full: it is not reading.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::limit::Permit;

pin_project! {
    /// Fails a write (or flush) that makes no progress for `timeout` with
    /// [`io::ErrorKind::TimedOut`]; hyper then closes the connection.
    pub(crate) struct SendTimeoutIo<T> {
        #[pin]
        inner: T,
        timeout: Duration,
        // Allocated at the first stall only.
        sleep: Option<Pin<Box<Sleep>>>,
        stalled: bool,
        // The connection's slot under the caps lives as long as the socket: an upgraded
        // connection (WebSocket) outlives hyper's connection future but still counts.
        _permit: Permit,
    }
}

impl<T> SendTimeoutIo<T> {
    pub(crate) fn new(inner: T, timeout: Duration, permit: Permit) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
            stalled: false,
            _permit: permit,
        }
    }
}

/// What a write that returned `Pending` turns into: still `Pending`, or the timeout.
fn stall<T>(
    cx: &mut Context<'_>,
    timeout: Duration,
    sleep: &mut Option<Pin<Box<Sleep>>>,
    stalled: &mut bool,
) -> Poll<io::Result<T>> {
    let sleep = match sleep {
        Some(sleep) => {
            if !*stalled {
                sleep.as_mut().reset(Instant::now() + timeout);
            }
            sleep
        }
        None => sleep.insert(Box::pin(tokio::time::sleep(timeout))),
    };
    *stalled = true;
    if sleep.as_mut().poll(cx).is_ready() {
        tracing::debug!("client stopped reading; closing the connection");
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading the response",
        )));
    }
    Poll::Pending
}

impl<T: AsyncRead> AsyncRead for SendTimeoutIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for SendTimeoutIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write(cx, buf) {
            Poll::Pending => stall(cx, *this.timeout, this.sleep, this.stalled),
            ready @ Poll::Ready(_) => {
                *this.stalled = false;
                ready
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match this.inner.poll_write_vectored(cx, bufs) {
            Poll::Pending => stall(cx, *this.timeout, this.sleep, this.stalled),
            ready @ Poll::Ready(_) => {
                *this.stalled = false;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        match this.inner.poll_flush(cx) {
            Poll::Pending => stall(cx, *this.timeout, this.sleep, this.stalled),
            ready @ Poll::Ready(_) => {
                *this.stalled = false;
                ready
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        match this.inner.poll_shutdown(cx) {
            Poll::Pending => stall(cx, *this.timeout, this.sleep, this.stalled),
            ready @ Poll::Ready(_) => {
                *this.stalled = false;
                ready
            }
        }
    }
}
