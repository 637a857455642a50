//! Errors become HTTP only here. Two shapes: the JSON API's
//! `{"error", "message"}` and RFC 6749's `{"error", "error_description"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sallyport_proto::{ApiError, OAuthError};

/// A JSON API failure.
#[derive(Debug)]
pub(crate) struct ApiFailure {
    status: StatusCode,
    body: ApiError,
    retry_after: Option<u64>,
    /// `WWW-Authenticate` value; every 401 carries one (RFC 9110 §15.5.2).
    challenge: Option<&'static str>,
}

impl ApiFailure {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiFailure {
            status,
            body: ApiError::new(code, message),
            retry_after: None,
            challenge: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(crate) fn rate_limited(retry_after: u64) -> Self {
        ApiFailure {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many failed attempts; try again later",
            )
        }
    }

    /// Adds a `WWW-Authenticate` challenge.
    pub(crate) fn with_challenge(self, challenge: &'static str) -> Self {
        ApiFailure {
            challenge: Some(challenge),
            ..self
        }
    }

    pub(crate) fn invalid_token() -> Self {
        ApiFailure {
            challenge: Some(r#"Bearer error="invalid_token""#),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "a valid bearer access token is required",
            )
        }
    }

    pub(crate) fn internal(err: &crate::Error) -> Self {
        if let crate::Error::Overloaded = err {
            // Expected under load or attack; not an error of ours.
            tracing::debug!("login refused: password hashing saturated");
            return ApiFailure {
                retry_after: Some(1),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many logins in progress; try again shortly",
                )
            };
        }
        tracing::error!(%err, "internal error");
        match err {
            crate::Error::Database(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is unavailable; try again",
            ),
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error",
            ),
        }
    }
}

fn no_store(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        no_store(&mut resp);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(challenge) = self.challenge {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        resp
    }
}

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub(crate) struct OAuthFailure {
    status: StatusCode,
    body: OAuthError,
    retry_after: Option<u64>,
}

/// The challenge of a `401 invalid_client` (RFC 6749 §5.2: the scheme the client
/// should use).
const BASIC_CHALLENGE: &str = r#"Basic realm="sallyport", charset="UTF-8""#;

impl OAuthFailure {
    pub(crate) fn new(status: StatusCode, code: &str, description: impl Into<String>) -> Self {
        OAuthFailure {
            status,
            body: OAuthError::new(code, description),
            retry_after: None,
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// `401 invalid_client` with `WWW-Authenticate: Basic`.
    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn rate_limited(retry_after: u64) -> Self {
        OAuthFailure {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many failed attempts",
            )
        }
    }

    pub(crate) fn internal(err: &crate::Error) -> Self {
        if let crate::Error::Overloaded = err {
            tracing::debug!("login refused: password hashing saturated");
        } else {
            tracing::error!(%err, "internal error");
        }
        OAuthFailure {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again later",
            )
        }
    }
}

impl From<ApiFailure> for OAuthFailure {
    fn from(f: ApiFailure) -> Self {
        OAuthFailure {
            status: f.status,
            body: OAuthError::new(
                if f.status.is_server_error() {
                    "temporarily_unavailable"
                } else {
                    "invalid_request"
                },
                f.body.message,
            ),
            retry_after: f.retry_after,
        }
    }
}

impl IntoResponse for OAuthFailure {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        no_store(&mut resp);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BASIC_CHALLENGE),
            );
        }
        resp
    }
}
