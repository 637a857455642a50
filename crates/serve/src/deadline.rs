//! [`SharedSleep`]: one timer re-armed lazily for the successive waits of one
//! connection, instead of a timer registered and removed for every request.
//!
//! Why: a connection's waits follow one another and each one's deadline is later than
//! the previous one's — the wait for each request head on a client connection, the wait
//! for each response on an upstream connection. A fresh `tokio::time::Sleep` per wait
//! is inserted into the runtime's timer wheel on its first poll and removed again when
//! the wait ends — on a keep-alive connection, two wheel operations (each under the
//! time driver's lock) and an allocation per request, for a deadline that almost never
//! fires. That was ≈ 5 % of the gateway's instructions per proxied request, for two
//! such timers.
//!
//! Here a connection keeps one `Sleep`. A wait whose deadline is later than the armed one
//! leaves it alone: the timer fires early, at the armed deadline, and only then is moved
//! to the deadline of the wait in progress (so a busy connection re-arms about once per
//! timeout, not once per request). A wait whose deadline is earlier re-arms it at once.
//! A wait completes exactly when its own deadline has passed, never at an older one.
//!
//! Hand-written rather than taken from a crate: what it needs is exactly tokio's own
//! `Sleep`, shared between the waits of one connection, and the few lines that decide
//! when to move it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// One connection's timer; see the module documentation. Shared (`Arc`) by the waits of
/// the connection. A wait registers the waker of the task polling it; one wait at a time
/// (the waits of a connection do not overlap), else the earlier waiter may be woken late.
#[derive(Debug, Default)]
pub struct SharedSleep {
    // A mutex because hyper's timers must be `Send + Sync`; it is never contended (one
    // connection's waits are polled by one task at a time).
    sleep: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl SharedSleep {
    /// A timer not armed yet (it is allocated at the first wait).
    pub fn new() -> Self {
        Self::default()
    }

    /// `Ready` once `deadline` has passed; otherwise arranges for `cx` to be woken no
    /// later than `deadline` (maybe earlier: then it polls again and the timer moves on).
    pub fn poll_until(&self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let mut guard = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
        let sleep = guard.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            let armed = sleep.deadline();
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if armed >= deadline => return Poll::Ready(()),
                // An older wait's deadline passed: move on to this one's.
                Poll::Ready(()) => sleep.as_mut().reset(deadline),
            }
        }
    }
}

/// The error of a [`WithDeadline`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

pin_project! {
    /// `future`, or [`Elapsed`] once `deadline` has passed — `tokio::time::timeout_at`
    /// on a connection's [`SharedSleep`].
    pub struct WithDeadline<'a, F> {
        #[pin]
        future: F,
        timer: &'a SharedSleep,
        deadline: Instant,
    }
}

impl<'a, F: Future> WithDeadline<'a, F> {
    /// `future` bounded by `deadline` on `timer`.
    pub fn new(future: F, timer: &'a SharedSleep, deadline: Instant) -> Self {
        Self {
            future,
            timer,
            deadline,
        }
    }
}

impl<F: Future> Future for WithDeadline<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        this.timer
            .poll_until(cx, *this.deadline)
            .map(|()| Err(Elapsed))
    }
}

/// A [`hyper::rt::Timer`] for one connection: its sleeps share one [`SharedSleep`] (hyper
/// asks for a new sleep for every request head it waits for).
#[derive(Debug, Default, Clone)]
pub(crate) struct ConnTimer(Arc<SharedSleep>);

/// A sleep of a [`ConnTimer`].
struct ConnSleep {
    timer: Arc<SharedSleep>,
    deadline: Instant,
}

impl Future for ConnSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.timer.poll_until(cx, self.deadline)
    }
}

impl hyper::rt::Sleep for ConnSleep {}

impl ConnTimer {
    /// A sleep until `deadline` on tokio's clock (the one `now` below reads).
    fn sleep_at(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ConnSleep {
            timer: self.0.clone(),
            deadline,
        })
    }
}

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_at(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_at(deadline.into())
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<ConnSleep>() {
            Some(s) => s.get_mut().deadline = new_deadline.into(),
            None => *sleep = self.sleep_at(new_deadline.into()),
        }
    }

    fn now(&self) -> std::time::Instant {
        Instant::now().into()
    }
}

#[cfg(test)]
mod tests {
    //! Real time with short durations (tokio's paused clock needs its `test-util`).

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Whether `deadline` on `timer` completes within `within`.
    async fn completes(timer: &SharedSleep, deadline: Instant, within: Duration) -> bool {
        let wait = std::future::poll_fn(|cx| timer.poll_until(cx, deadline));
        tokio::time::timeout(within, wait).await.is_ok()
    }

    /// The lazy case: the timer is armed at the first wait's deadline, the second wait's
    /// is later. The second must neither end at the first's deadline nor miss its own.
    #[tokio::test]
    async fn a_later_wait_ends_at_its_own_deadline_not_at_the_armed_one() {
        let timer = SharedSleep::new();
        let start = Instant::now();
        // Armed at start + 100 ms, then abandoned (the request head arrived).
        assert!(!completes(&timer, start + 100 * MS, 10 * MS).await);
        let second = start + 400 * MS;
        // Past the armed deadline the second wait is still waiting...
        assert!(!completes(&timer, second, 200 * MS).await);
        assert!(Instant::now() < second);
        // ...and it ends at its own.
        assert!(completes(&timer, second, 2000 * MS).await);
        assert!(Instant::now() >= second);
    }

    /// A wait whose deadline is earlier than the armed one re-arms the timer at once.
    #[tokio::test]
    async fn an_earlier_wait_is_not_held_to_the_armed_deadline() {
        let timer = SharedSleep::new();
        let start = Instant::now();
        assert!(!completes(&timer, start + 60_000 * MS, 10 * MS).await);
        assert!(completes(&timer, start + 50 * MS, 2000 * MS).await);
        assert!(Instant::now() >= start + 50 * MS);
    }

    #[tokio::test]
    async fn with_deadline_returns_the_output_or_elapsed() {
        let timer = SharedSleep::new();
        let soon = Instant::now() + 50 * MS;
        assert_eq!(WithDeadline::new(async { 7 }, &timer, soon).await, Ok(7));
        let never = std::future::pending::<()>();
        assert_eq!(WithDeadline::new(never, &timer, soon).await, Err(Elapsed));
        assert!(Instant::now() >= soon);
    }
}
