//! Integration tests for sallyport-iron: one binary (each extra test file is another
//! slow link).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod api;
mod malformed;
mod roundtrip;
mod vectors;

/// The vectors' password (iron needs at least 32 characters).
pub const PW1: &str = "iron-session-vector-password-A-0123456789";
/// The second password, for rotation tests.
pub const PW2: &str = "a-second-password-for-rotation-0123456789";
/// 2026-01-01T00:00:00Z, the vectors' sealing time.
pub const NOW: u64 = 1_767_225_600_000;
