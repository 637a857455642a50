//! Tests of `sallyport-client`: behaviour against a wiremock backend (every
//! error path), and the key guarantees against the real issuer.

#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

mod issuer;
mod mock;

use sallyport_client::Error;

/// The typed error inside a middleware error.
fn typed(err: &reqwest_middleware::Error) -> &Error {
    Error::from_middleware(err).unwrap_or_else(|| panic!("not a sallyport error: {err:?}"))
}
