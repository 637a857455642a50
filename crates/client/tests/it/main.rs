//! Tests of `sallyport-client`: behaviour against a wiremock backend (every
//! error path), and the key guarantees against the real issuer.

#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

mod issuer;
mod mock;

use sallyport_client::{Auth, AuthBuilder, Backend, Error};

/// [`Auth::builder`], with this binary's logs going to `SALLYPORT_TEST_LOG_DIR` for the
/// secret scan of the test command (scripts/lib/scan-logs): every test builds its
/// `Auth` here.
fn auth_builder(backend: Backend) -> AuthBuilder {
    sallyport_observe::testing::init_test_logs("client-it", &["correct horse battery staple"]);
    Auth::builder(backend)
}

/// The typed error inside a middleware error.
fn typed(err: &reqwest_middleware::Error) -> &Error {
    Error::from_middleware(err).unwrap_or_else(|| panic!("not a sallyport error: {err:?}"))
}
