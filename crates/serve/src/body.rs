//! A body that fails when its data stops coming: [`TimeoutBody`].
//!
//! Only time spent *waiting* counts — from the moment the reader asks for data that is
//! not there until a frame arrives. A handler that reads slowly, or a proxy that reads
//! only as fast as its upstream accepts, never makes the client's body time out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// The error type of [`TimeoutBody`]: the inner body's error, or a [`BodyTimeout`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a body may keep its reader waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The body fails when no data arrives for this long while it is being read.
    pub idle: Duration,
    /// Once the reader has waited `idle` in total, the body must have delivered at least
    /// this many bytes per second of waiting, or it fails. 0 turns the check off.
    ///
    /// The idle timeout alone lets a client trickle one byte just before each deadline
    /// and hold the request for ever; this is Kestrel's `MinRequestBodyDataRate`.
    pub min_bytes_per_sec: u64,
}

impl BodyLimits {
    /// Only an idle timeout, no minimum rate (e.g. an upstream's streamed response,
    /// where a server-sent-events stream legitimately sends a few bytes a minute).
    pub fn idle(idle: Duration) -> Self {
        Self {
            idle,
            min_bytes_per_sec: 0,
        }
    }
}

/// Why a [`TimeoutBody`] failed. Find it in an error's source chain with
/// [`BodyTimeout::find`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyTimeout {
    /// No data arrived for the idle timeout.
    Idle(Duration),
    /// Data arrived, but slower than the minimum rate (bytes per second).
    TooSlow(u64),
}

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Idle(d) => write!(f, "body sent no data for {} ms", d.as_millis()),
            Self::TooSlow(rate) => write!(f, "body arrived slower than {rate} bytes/s"),
        }
    }
}

impl std::error::Error for BodyTimeout {}

impl BodyTimeout {
    /// The `BodyTimeout` somewhere in `err`'s source chain, if any (a hyper client that
    /// failed to send a timed-out request body wraps it, for instance).
    pub fn find(err: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
        let mut current = Some(err);
        while let Some(e) = current {
            if let Some(t) = e.downcast_ref::<BodyTimeout>() {
                return Some(*t);
            }
            current = e.source();
        }
        None
    }
}

pin_project! {
    /// Wraps a body so that it fails with [`BodyTimeout`] when it keeps its reader
    /// waiting beyond [`BodyLimits`].
    pub struct TimeoutBody<B> {
        #[pin]
        inner: B,
        limits: BodyLimits,
        // Allocated at the first wait only: most bodies arrive whole.
        sleep: Option<Pin<Box<Sleep>>>,
        // Since when the reader has been waiting, if it is.
        waiting_since: Option<Instant>,
        // Waiting time before `waiting_since`.
        waited: Duration,
        received: u64,
        failed: bool,
        // Set when this body times out (see `crate::serve`'s 408).
        tripped: Option<Arc<AtomicBool>>,
    }
}

impl<B> TimeoutBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, limits: BodyLimits) -> Self {
        Self {
            inner,
            limits,
            sleep: None,
            waiting_since: None,
            waited: Duration::ZERO,
            received: 0,
            failed: false,
            tripped: None,
        }
    }

    /// Also sets `flag` when the body times out.
    pub(crate) fn with_flag(inner: B, limits: BodyLimits, flag: Arc<AtomicBool>) -> Self {
        Self {
            tripped: Some(flag),
            ..Self::new(inner, limits)
        }
    }
}

/// When the wait that began at `since` must end, and why, given `waited` earlier
/// waiting and `received` bytes so far.
fn deadline(
    limits: &BodyLimits,
    since: Instant,
    waited: Duration,
    received: u64,
) -> (Instant, BodyTimeout) {
    let idle = (since + limits.idle, BodyTimeout::Idle(limits.idle));
    if limits.min_bytes_per_sec == 0 {
        return idle;
    }
    // Total waiting allowed so far: the grace period (`idle`), or as long as the bytes
    // received justify at the minimum rate, whichever is longer.
    // Capped at a year so that `since + allowed` cannot overflow.
    let earned = Duration::from_millis(received.saturating_mul(1000) / limits.min_bytes_per_sec)
        .min(Duration::from_secs(365 * 24 * 3600));
    let allowed = limits.idle.max(earned);
    let rate = (
        since + allowed.saturating_sub(waited),
        BodyTimeout::TooSlow(limits.min_bytes_per_sec),
    );
    if rate.0 < idle.0 { rate } else { idle }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if let Some(since) = this.waiting_since.take() {
                *this.waited += since.elapsed();
            }
            if let Some(Ok(f)) = &frame
                && let Some(data) = f.data_ref()
            {
                *this.received = this.received.saturating_add(data.remaining() as u64);
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        let (at, why) = deadline(this.limits, since, *this.waited, *this.received);
        let sleep = match this.sleep {
            Some(sleep) => {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
            None => this.sleep.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        if sleep.as_mut().poll(cx).is_ready() {
            *this.failed = true;
            if let Some(flag) = this.tripped {
                flag.store(true, Ordering::Relaxed);
            }
            tracing::debug!(reason = %why, "body timed out");
            return Poll::Ready(Some(Err(Box::new(why))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    //! Real time with short durations (no paused clock: that needs tokio's `test-util`
    //! in every dependent build); only outcomes are asserted, never how fast.
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn trickle(
        every: Duration,
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<bytes::Bytes>, BoxError>>> {
        StreamBody::new(futures_util::stream::unfold((), move |()| async move {
            tokio::time::sleep(every).await;
            Some((Ok(Frame::data(bytes::Bytes::from_static(b"x"))), ()))
        }))
    }

    #[tokio::test]
    async fn a_silent_body_fails_after_the_idle_timeout() {
        let body = TimeoutBody::new(
            trickle(Duration::from_secs(600)),
            BodyLimits::idle(Duration::from_millis(50)),
        );
        let err = body.collect().await.expect_err("must fail");
        assert_eq!(
            BodyTimeout::find(&*err),
            Some(BodyTimeout::Idle(Duration::from_millis(50)))
        );
    }

    /// A byte every 20 ms never trips a 200 ms idle timeout; the minimum rate does.
    #[tokio::test]
    async fn a_trickle_fails_the_minimum_rate() {
        let body = TimeoutBody::new(
            trickle(Duration::from_millis(20)),
            BodyLimits {
                idle: Duration::from_millis(200),
                min_bytes_per_sec: 240,
            },
        );
        let err = body.collect().await.expect_err("must fail");
        assert_eq!(BodyTimeout::find(&*err), Some(BodyTimeout::TooSlow(240)));
    }

    /// A body that keeps up with the rate completes.
    #[tokio::test]
    async fn a_steady_body_completes() {
        let chunks = futures_util::stream::unfold(0u32, |n| async move {
            if n == 30 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((
                Ok::<_, BoxError>(Frame::data(bytes::Bytes::from(vec![0u8; 3000]))),
                n + 1,
            ))
        });
        let body = TimeoutBody::new(
            StreamBody::new(chunks),
            BodyLimits {
                idle: Duration::from_secs(5),
                min_bytes_per_sec: 240,
            },
        );
        let bytes = body.collect().await.expect("completes").to_bytes();
        assert_eq!(bytes.len(), 90_000);
    }

    /// Time the reader spends elsewhere is not the body's fault.
    #[tokio::test]
    async fn only_waiting_time_counts() {
        let ready = http_body_util::Full::new(bytes::Bytes::from_static(b"abc"));
        let mut body = TimeoutBody::new(
            ready,
            BodyLimits {
                idle: Duration::from_millis(10),
                min_bytes_per_sec: 1_000_000,
            },
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let frame = body.frame().await.expect("a frame").expect("no error");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"abc"[..]));
    }
}
