//! Gateway integration tests: the real issuer as the backend and a real upstream axum
//! app, all on loopback. Time moves through the gateway's `OffsetClock`, never by sleeping.

// Helpers outside #[test] fns unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod harness;
mod single_use;

mod attacks;
mod client_address;
mod faults;
mod flows;
mod forward_auth;
mod hardening;
mod issuer_crash;
mod observe;
mod oidc;
mod proxying;
mod reload;
mod renewal;
mod renewal_rules;
mod replicas;
mod slow_clients;
mod store;
mod surface;
mod upstream_pool;
