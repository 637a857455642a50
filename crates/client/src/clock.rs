//! Time as a parameter: renewal decisions ask a [`Clock`], so tests can cross
//! an expiry without sleeping. The trait is the workspace's one clock
//! (`sallyport-clock`, milliseconds; [`Clock::now_secs`] for token times).

pub use sallyport_clock::{Clock, ManualClock, OffsetClock, SystemClock};
