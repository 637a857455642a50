//! Integration tests for sallyport-iron: one binary (each extra test file is another
//! slow link).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod api;
mod malformed;
mod roundtrip;
mod vectors;

/// A password of exactly 32 ASCII characters and a second one, for rotation tests.
pub const PW1: &str = "iron-session-vector-password-A-0123456789";
pub const PW2: &str = "a-second-password-for-rotation-0123456789";
/// 2026-01-01T00:00:00Z, the vectors' sealing time.
pub const NOW: u64 = 1_767_225_600_000;
