//! The one error type of this crate.

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;

/// Everything that can go wrong while configuring or writing a session cookie.
///
/// Reading never fails from the caller's point of view (a bad cookie is an empty
/// session); the read variants only explain, through
/// [`crate::CookieCodec::try_read`], *why* a cookie was ignored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot produce a cookie that browsers would keep.
    /// `setting` names the builder method / option at fault.
    #[error("invalid session setting `{setting}`: {message}")]
    Config {
        /// The offending setting, e.g. `"path"` or `"cookie_name"`.
        setting: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The sealed session does not fit in one cookie and chunking is off.
    /// Browsers silently drop a `Set-Cookie` over 4096 bytes, so we refuse to send it.
    #[error(
        "session cookie is too big ({bytes} bytes, browsers keep at most {max}); remove data from the session or enable chunking"
    )]
    TooLarge {
        /// Size of the whole serialized `Set-Cookie` value (name, value, attributes).
        bytes: usize,
        /// The limit, 4096.
        max: usize,
        /// The request already carried a chunked cookie: some other writer has
        /// chunking on and this one has not (mixed configurations).
        already_chunked: bool,
    },
    /// Even split into chunks the session needs more cookies than allowed.
    #[error(
        "session cookie needs {needed} chunks of at most 4096 bytes and the maximum is {max}; store an id in the session and keep the data server-side"
    )]
    TooManyChunks {
        /// Chunks the seal would need.
        needed: usize,
        /// The configured maximum (default 4, as iron-session; more would overflow
        /// proxies' 8 KB header limits).
        max: usize,
    },
    /// `save`/`insert`/`update` after `destroy` in the same request: writing would
    /// restore the cookie that `destroy` just cleared (iron-session refuses this too).
    #[error(
        "cannot save a session after destroy() in the same request: it would restore the cookie that was just cleared"
    )]
    SaveAfterDestroy,
    /// The value handed to `encode_sealed` is not a seal that can be put in a cookie.
    #[error("the sealed value contains characters that cannot appear in a cookie")]
    InvalidSealedValue,
    /// Sealing failed (serialization or password problem).
    #[error("sealing the session failed: {0}")]
    Seal(#[from] sallyport_iron::Error),
    /// Reading: the request's session cookie did not unseal (expired, unknown
    /// password id, tampered or malformed). See [`Error::reason`].
    #[error("session cookie rejected: {0}")]
    Unseal(sallyport_iron::Error),
    /// Reading: the seal is authentic but its JSON does not fit the session type.
    #[error("session cookie JSON does not match the session type: {0}")]
    Shape(serde_json::Error),
    /// The [`crate::Session`] extractor was used on a route without
    /// [`crate::SessionLayer`]: a wiring bug.
    #[error("Session extractor used without SessionLayer")]
    MissingLayer,
}

impl Error {
    /// A stable machine-readable code for logs and JSON bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config { .. } => "session_config",
            Error::TooLarge { .. } => "session_too_large",
            Error::TooManyChunks { .. } => "session_too_large",
            Error::SaveAfterDestroy => "session_destroyed",
            Error::InvalidSealedValue => "session_seal",
            Error::Seal(_) => "session_seal",
            Error::Unseal(_) | Error::Shape(_) => "session_unreadable",
            Error::MissingLayer => "session_layer_missing",
        }
    }

    /// For read errors, iron-session's `onUnsealError` reason: `expired`,
    /// `unknown-password` or `invalid` (`shape` for a type mismatch, which untyped
    /// iron-session cannot have). Metrics can tell a broken password rotation
    /// (`unknown-password`) from tampering (`invalid`). `None` for write errors.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Error::Unseal(e) => Some(e.reason().as_str()),
            Error::Shape(_) => Some("shape"),
            _ => None,
        }
    }
}

/// A failed save is a server-side bug (the application put too much in the session,
/// or misconfigured it), never the client's fault: 500 with a coarse JSON body.
/// The details go to the log, not to the client.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "session error");
        let body = serde_json::json!({
            "error": self.code(),
            "message": match self {
                Error::MissingLayer => "the session is not available on this route",
                _ => "the session could not be saved",
            },
        });
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}
