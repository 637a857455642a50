//! The crate's one error type.

use std::time::Duration;

use sallyport_proto::AuthErrorCode;

/// Boxed error of a [`crate::TokenStore`] implementation.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong logging in, renewing or logging out.
///
/// The first three variants are the Sallyport error model
/// ([`AuthErrorCode`]): [`Error::auth_code`] maps them, and
/// [`Error::requires_login`] tells an application whether to show its login
/// screen. A backend outage is never a logout: tokens are kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no session: never logged in, logged out, or the session was
    /// ended by an earlier failed renewal. Log in again.
    #[error("not logged in (the session has ended); log in again")]
    SessionExpired,
    /// The backend refused the refresh token (revoked, reused, expired,
    /// account disabled). The stored tokens were cleared. Log in again.
    #[error("the backend refused the session ({code}); log in again")]
    ReauthRequired {
        /// The backend's error code, e.g. `invalid_grant`.
        code: String,
    },
    /// The backend could not be reached, timed out, or failed (5xx, 429).
    /// The session is kept; try again later.
    #[error("the token backend is unavailable: {message}")]
    BackendUnavailable {
        /// What failed.
        message: String,
        /// The backend's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Login refused: unknown user or wrong password.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Login refused: the account is disabled.
    #[error("the account is disabled")]
    AccountDisabled,
    /// Login refused: too many attempts.
    #[error("too many login attempts; retry later")]
    RateLimited {
        /// The backend's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The backend answered something this client does not understand.
    #[error("unexpected backend answer: HTTP {status} {code}: {message}")]
    Backend {
        /// HTTP status.
        status: u16,
        /// The `error` field, if any.
        code: String,
        /// The `message` / `error_description`, if any.
        message: String,
    },
    /// The token store failed.
    #[error("token store failed: {0}")]
    Store(#[source] BoxError),
    /// A client setting is wrong (the message names it).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The Sallyport error code this error corresponds to, if any.
    pub fn auth_code(&self) -> Option<AuthErrorCode> {
        match self {
            Self::SessionExpired => Some(AuthErrorCode::SessionExpired),
            Self::ReauthRequired { .. } => Some(AuthErrorCode::ReauthRequired),
            Self::BackendUnavailable { .. } => Some(AuthErrorCode::BackendUnavailable),
            _ => None,
        }
    }

    /// Whether the user has to log in again (a session that ended, or a login
    /// that failed for a reason retrying will not fix).
    pub fn requires_login(&self) -> bool {
        matches!(
            self,
            Self::SessionExpired
                | Self::ReauthRequired { .. }
                | Self::InvalidCredentials
                | Self::AccountDisabled
        )
    }

    /// Finds a Sallyport [`Error`] inside an error returned by a
    /// [`reqwest_middleware::ClientWithMiddleware`] that uses [`crate::AuthMiddleware`].
    pub fn from_middleware(err: &reqwest_middleware::Error) -> Option<&Error> {
        match err {
            reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<Error>(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }
}
