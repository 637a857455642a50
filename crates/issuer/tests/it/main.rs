//! Integration tests: the real HTTP server on loopback, against SQLite and — when
//! `SALLYPORT_TEST_POSTGRES_URL` is set — PostgreSQL. The same conformance suite runs
//! on both backends (`conformance!` below). One test binary; a module per topic.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use reqwest::StatusCode;
use sallyport_issuer::{Config, Issuer, ManualClock};
use serde_json::{Value, json};

mod bad_input;
mod discovery;
mod harness;
mod http_server;
mod login;
mod oauth;
mod oidc;
mod refresh;
mod request_id;
mod signing_keys;
mod startup;

use bad_input::*;
use discovery::*;
use login::*;
use oauth::*;
use oidc::*;
use refresh::*;
use signing_keys::*;

use harness::{Backend, Server, error_code, start, str_field};

mod hardening;
mod reload;
mod slow_clients;

/// Runs each listed async fn once per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Sqlite).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Postgres).await; })*
        }
    };
}

conformance!(
    login_me_refresh_logout,
    login_failures_look_identical,
    disabled_account_is_forbidden_and_loses_sessions,
    retry_within_interval_continues_the_same_family,
    reuse_after_interval_revokes_the_family,
    fifty_concurrent_refreshes_continue_one_family,
    idle_and_absolute_expiry,
    key_rotation_keeps_old_tokens_valid,
    oauth_token_and_revoke,
    bad_input_gets_json_4xx,
    login_rate_limit_per_account_and_address,
    discovery_health_metrics_openapi,
    reuse_is_detected_after_restart,
    password_change_revokes_sessions,
    failed_rotation_leaves_the_token_valid,
    client_authentication,
    oauth_request_errors,
    json_api_401s_carry_a_challenge,
    readyz_fails_when_the_pool_is_closed,
    code_flow_issues_id_token_and_refreshes,
    authorize_refuses_bad_requests,
    login_form_needs_csrf_and_the_password,
    login_form_is_rate_limited,
    code_redemption_checks,
    rp_initiated_logout,
    backchannel_logout_for_each_cause,
    backchannel_logout_gives_up,
    backchannel_logout_never_blocks,
    concurrent_redemptions_of_one_code,
);
