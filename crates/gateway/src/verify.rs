//! Optional signature verification of access tokens as they arrive from the backend.

use std::time::Duration;

use crate::error::Error;

/// Builds a JWKS verifier; `issuer` and `audience` are required with a JWKS URL.
pub(crate) fn verifier(
    jwks_url: &str,
    issuer: Option<String>,
    audience: Option<String>,
) -> Result<sallyport_jwt::Verifier, Error> {
    let issuer = issuer
        .ok_or_else(|| Error::config("backend.jwt_issuer", "required with backend.jwks_url"))?;
    let audience = audience
        .ok_or_else(|| Error::config("backend.jwt_audience", "required with backend.jwks_url"))?;
    // PP-13: a backend clock a little ahead of ours must not turn into failed logins.
    let cfg = sallyport_jwt::VerifierConfig::new(jwks_url, issuer, audience)
        .leeway(Duration::from_secs(60));
    sallyport_jwt::Verifier::new(cfg).map_err(|e| Error::config("backend.jwks_url", e.to_string()))
}
