//! The axum extractor for resource servers.

use axum_core::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use sallyport_proto::{ApiError, AuthErrorCode, codes};

use crate::{AccessClaims, Error, Verifier};

/// Verified access-token claims from `Authorization: Bearer <token>`.
///
/// The router state must provide a [`Verifier`] through `FromRef`. A missing,
/// malformed, forged or expired token is answered with `401`,
/// `WWW-Authenticate: Bearer error="invalid_token"` and
/// `{"error": "invalid_token", "message": ...}`; if the keys cannot be
/// fetched at all, `503 backend_unavailable` (the token may be fine).
///
/// `Option<BearerClaims>` yields `None` when there is no `Authorization`
/// header and still rejects a bad one.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use sallyport_jwt::{BearerClaims, Verifier, VerifierConfig};
///
/// async fn me(BearerClaims(claims): BearerClaims) -> String {
///     format!("hello {}", claims.sub)
/// }
///
/// # fn main() -> Result<(), sallyport_jwt::Error> {
/// let verifier = Verifier::new(VerifierConfig::new(
///     "http://127.0.0.1:8080/.well-known/jwks.json",
///     "http://127.0.0.1:8080",
///     "sallyport",
/// ))?;
/// let app: Router = Router::new().route("/me", get(me)).with_state(verifier);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BearerClaims(pub AccessClaims);

impl<S> FromRequestParts<S> for BearerClaims
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = BearerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers).map_err(|()| BearerRejection::Missing)?;
        let verifier = Verifier::from_ref(state);
        match verifier.verify(token).await {
            Ok(claims) => Ok(Self(claims)),
            Err(e) => Err(BearerRejection::from(e)),
        }
    }
}

impl<S> OptionalFromRequestParts<S> for BearerClaims
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = BearerRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if !parts.headers.contains_key(AUTHORIZATION) {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// The bearer token of `Authorization: Bearer <token>` (scheme
/// case-insensitive). `Err` when the header is absent, repeated, not ASCII,
/// of another scheme, or empty.
#[allow(clippy::result_unit_err)]
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ()> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(());
    };
    let value = value.to_str().map_err(|_| ())?;
    let (scheme, token) = value.split_once(' ').ok_or(())?;
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(());
    }
    Ok(token)
}

/// Why [`BearerClaims`] refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum BearerRejection {
    /// No usable `Authorization: Bearer` header.
    Missing,
    /// The token was refused (the error says why; it is logged, not sent).
    Invalid(Error),
    /// The keys could not be loaded; the token could not be judged.
    Unavailable(Error),
}

impl From<Error> for BearerRejection {
    fn from(e: Error) -> Self {
        if e.is_invalid_token() {
            Self::Invalid(e)
        } else {
            Self::Unavailable(e)
        }
    }
}

impl std::fmt::Display for BearerRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("missing bearer token"),
            Self::Invalid(e) => write!(f, "invalid bearer token: {e}"),
            Self::Unavailable(e) => write!(f, "cannot verify bearer token: {e}"),
        }
    }
}

impl std::error::Error for BearerRejection {}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            Self::Missing => (
                StatusCode::UNAUTHORIZED,
                codes::INVALID_TOKEN,
                "missing bearer token",
            ),
            Self::Invalid(Error::Expired) => (
                StatusCode::UNAUTHORIZED,
                codes::INVALID_TOKEN,
                "the access token expired",
            ),
            Self::Invalid(_) => (
                StatusCode::UNAUTHORIZED,
                codes::INVALID_TOKEN,
                "invalid access token",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                AuthErrorCode::BackendUnavailable.as_str(),
                "cannot verify tokens right now; try again",
            ),
        };
        match &self {
            Self::Missing => tracing::debug!("bearer token missing"),
            Self::Invalid(e) => tracing::debug!(error = %e, "bearer token refused"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "bearer token not verifiable"),
        }
        let body = serde_json::to_vec(&ApiError::new(code, message)).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            let challenge =
                format!(r#"Bearer error="invalid_token", error_description="{message}""#);
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                headers.insert(WWW_AUTHENTICATE, v);
            }
        } else {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_token_parsing() {
        assert_eq!(bearer_token(&headers(&["Bearer abc"])), Ok("abc"));
        assert_eq!(bearer_token(&headers(&["bearer abc"])), Ok("abc"));
        assert_eq!(bearer_token(&headers(&["BEARER  abc"])), Ok("abc"));
        assert!(bearer_token(&headers(&[])).is_err());
        assert!(bearer_token(&headers(&["Basic abc"])).is_err());
        assert!(bearer_token(&headers(&["Bearer"])).is_err());
        assert!(bearer_token(&headers(&["Bearer "])).is_err());
        assert!(bearer_token(&headers(&["Bearer a b"])).is_err());
        assert!(bearer_token(&headers(&["Bearer a", "Bearer b"])).is_err());
    }
}
