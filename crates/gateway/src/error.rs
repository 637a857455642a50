//! The crate's one error type.
//!
//! Most failures inside a request are *answers* (401, 403, 503 …) and never become an
//! [`Error`]; this type covers start-up (configuration, binding) and the few internal
//! failures that must be reported to the operator.

/// Everything that can go wrong in the gateway outside of request handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or invalid; `setting` names it the way the operator writes it.
    #[error("invalid setting `{setting}`: {message}")]
    Config {
        /// The TOML key (and environment variable, where there is one).
        setting: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The configuration sources could not be read or parsed.
    #[error("could not load configuration: {0}")]
    Load(String),
    /// The login-page template could not be parsed or rendered.
    #[error("login page template: {0}")]
    Template(String),
    /// Building an HTTP client failed.
    #[error("HTTP client: {0}")]
    HttpClient(String),
    /// Sealing the session cookie failed (for instance, the session is too large).
    #[error("session cookie: {0}")]
    Cookie(String),
    /// The server socket failed.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The name the cross-crate contract uses for start-up configuration errors.
pub type ConfigError = Error;

impl Error {
    pub(crate) fn config(setting: &'static str, message: impl Into<String>) -> Self {
        Self::Config {
            setting,
            message: message.into(),
        }
    }
}
