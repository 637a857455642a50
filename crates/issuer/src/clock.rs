//! Time is a parameter: everything below the HTTP layer takes `now_ms`, and the HTTP
//! layer asks an injectable [`Clock`] — the workspace's one clock trait, from
//! `sallyport-clock`. Tests use [`ManualClock`] to cross expiry and reuse-interval
//! boundaries without sleeping. The issuer keeps times as `i64` (SQL integers);
//! [`now_ms_i64`] is the one conversion.

pub use sallyport_clock::{Clock, ManualClock, OffsetClock, SystemClock};

/// `clock`'s time as the signed milliseconds the stores and tokens use.
pub fn now_ms_i64(clock: &dyn Clock) -> i64 {
    i64::try_from(clock.now_ms()).unwrap_or(i64::MAX)
}
