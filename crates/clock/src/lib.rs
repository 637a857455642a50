//! The one source of "now" for every Sallyport crate.
//!
//! Time is a parameter: code that judges expiry (iron seals, JWT `exp`, renewal
//! freshness, token minting, rate limits) takes `now` as an argument, and the layer
//! that asks for it holds an injectable [`Clock`]. Tests use [`ManualClock`] (moves
//! only when told) or [`OffsetClock`] (the wall clock plus an adjustable shift) to
//! cross expiry boundaries without sleeping.
//!
//! [`now_ms`] (what [`SystemClock`] returns) is the only place in the workspace that
//! reads the wall clock. Monotonic `Instant`s (timeouts, idle times, latency) are a
//! different thing and stay where they are.
//!
//! # The test clock offset (debug builds only)
//!
//! The black-box suites drive the real `sallyport` binary, which cannot be handed a
//! [`ManualClock`]. In a build with `debug_assertions` (a plain `cargo build`), when the
//! environment variable [`TEST_OFFSET_ENV`] names a file, [`now_ms`] adds the file's
//! content (a signed integer, milliseconds) to the wall clock. The file is read once at
//! the first call and then every [`TEST_OFFSET_REREAD_MS`] ms by a background thread, so
//! a call costs one atomic load, never a file read, and every thread of the process sees
//! a new offset at the same moment (a lazy re-read by whichever request came first let
//! the other worker thread judge expiry on the old offset meanwhile — a renewal storm
//! then saw two tokens). Every process of a test stack (issuer and gateway) reads the
//! same file, so they agree on the time.
//!
//! A release build (`cargo build --release`, `cargo install`, the `.deb` built by
//! `cargo deb`) has no `debug_assertions`: the code below is not compiled in, and the
//! variable is never even read. See [`test_offset_enabled`].
//!
//! ```
//! use sallyport_clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new(1_000);
//! clock.advance_secs(2);
//! assert_eq!(clock.now_ms(), 3_000);
//! assert_eq!(clock.now_secs(), 3);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A source of "now".
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Whole seconds since the Unix epoch (JWT `iat`/`exp` granularity).
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// The wall clock (plus the test offset in debug builds, see the crate documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

/// Milliseconds since the Unix epoch: the one read of the wall clock in the workspace
/// (shifted by the test offset in debug builds, see the crate documentation).
pub fn now_ms() -> u64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    shift(wall, test_offset::offset_ms())
}

/// Whole seconds since the Unix epoch ([`now_ms`] / 1000).
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Name of the environment variable naming the test clock offset file (debug builds).
pub const TEST_OFFSET_ENV: &str = "SALLYPORT_TEST_CLOCK_OFFSET_FILE";

/// How often the test clock offset file is re-read by its background thread (debug
/// builds): a test that changes the file waits longer than this before relying on it.
pub const TEST_OFFSET_REREAD_MS: u64 = 20;

/// Whether this build honours [`TEST_OFFSET_ENV`] at all: true only with
/// `debug_assertions`. The binary logs it at start-up when an offset file is set.
pub const fn test_offset_enabled() -> bool {
    cfg!(debug_assertions)
}

/// The offset file in effect, if this is a debug build and [`TEST_OFFSET_ENV`] is set;
/// for a start-up warning.
pub fn test_offset_file() -> Option<std::path::PathBuf> {
    test_offset::file()
}

fn shift(ms: u64, offset: i64) -> u64 {
    if offset >= 0 {
        ms.saturating_add(offset.unsigned_abs())
    } else {
        ms.saturating_sub(offset.unsigned_abs())
    }
}

#[cfg(debug_assertions)]
mod test_offset {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    struct State {
        path: Option<PathBuf>,
        offset: Arc<AtomicI64>,
    }

    /// The offset in the file: `None` when it cannot be parsed (e.g. caught mid-write:
    /// keep the previous value); 0 when the file is missing.
    fn read(path: &Path) -> Option<i64> {
        match std::fs::read_to_string(path) {
            Ok(text) => text.trim().parse::<i64>().ok(),
            Err(_) => Some(0),
        }
    }

    fn state() -> &'static State {
        static STATE: OnceLock<State> = OnceLock::new();
        STATE.get_or_init(|| {
            let path = std::env::var_os(super::TEST_OFFSET_ENV)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from);
            let offset = Arc::new(AtomicI64::new(0));
            if let Some(path) = &path {
                offset.store(read(path).unwrap_or(0), Ordering::SeqCst);
                let (path, offset) = (path.clone(), offset.clone());
                // A test-only poller: debug builds with the variable set, never a shipped
                // binary. If the thread cannot start, the offset stays as first read.
                let _ = std::thread::Builder::new()
                    .name("sallyport-test-clock".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(Duration::from_millis(super::TEST_OFFSET_REREAD_MS));
                            if let Some(v) = read(&path) {
                                offset.store(v, Ordering::SeqCst);
                            }
                        }
                    });
            }
            State { path, offset }
        })
    }

    pub(super) fn file() -> Option<PathBuf> {
        state().path.clone()
    }

    pub(super) fn offset_ms() -> i64 {
        state().offset.load(Ordering::SeqCst)
    }
}

#[cfg(not(debug_assertions))]
mod test_offset {
    pub(super) fn file() -> Option<std::path::PathBuf> {
        None
    }

    pub(super) fn offset_ms() -> i64 {
        0
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Starts at `now_ms` (Unix milliseconds).
    pub fn new(now_ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(now_ms)))
    }

    /// Starts at `now_secs` (Unix seconds).
    pub fn from_secs(now_secs: u64) -> Self {
        Self::new(now_secs.saturating_mul(1000))
    }

    /// Starts at the current wall-clock time (so issued JWTs look plausible to
    /// verifiers that use the wall clock).
    pub fn starting_now() -> Self {
        Self::new(now_ms())
    }

    /// Moves forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves forward by `secs` seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.advance_ms(secs.saturating_mul(1000));
    }

    /// Sets the time (Unix milliseconds).
    pub fn set_ms(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The wall clock shifted by an adjustable offset: moves a component into the future
/// (or the past) without sleeping, while time still passes normally.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicI64,
}

impl OffsetClock {
    /// Moves the clock forward (or back, with a negative value) by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> u64 {
        shift(now_ms(), self.offset_ms.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::from_secs(10);
        assert_eq!(c.now_ms(), 10_000);
        let shared = c.clone();
        shared.advance_ms(5);
        assert_eq!(c.now_ms(), 10_005);
        c.set_ms(1);
        assert_eq!(shared.now_secs(), 0);
    }

    #[test]
    fn offset_clock_shifts_both_ways() {
        let c = OffsetClock::default();
        let before = now_ms();
        c.advance_ms(3_600_000);
        assert!(c.now_ms() >= before + 3_600_000);
        c.advance_ms(-7_200_000);
        assert!(c.now_ms() < now_ms());
    }

    #[test]
    fn shift_saturates() {
        assert_eq!(shift(5, -10), 0);
        assert_eq!(shift(u64::MAX, 1), u64::MAX);
        assert_eq!(shift(5, 3), 8);
    }

    #[test]
    fn only_debug_builds_honour_the_offset_file() {
        assert_eq!(test_offset_enabled(), cfg!(debug_assertions));
    }
}
