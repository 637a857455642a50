//! The crate's one error type. HTTP mapping lives in `http::error` so that domain code
//! never decides status codes.

/// Everything that can go wrong inside the issuer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid; `setting` names the key as written in the TOML file.
    #[error("invalid setting `{setting}`: {message}")]
    Config {
        /// The offending key, e.g. `access_token_ttl_secs`.
        setting: String,
        /// What is wrong with it.
        message: String,
    },
    /// The configuration could not be read or parsed (figment names source and key).
    #[error("configuration: {0}")]
    Figment(Box<figment::Error>),
    /// The database failed or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Running embedded migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A username is already taken.
    #[error("user `{0}` already exists")]
    UserExists(String),
    /// No such user.
    #[error("no user named `{0}`")]
    UnknownUser(String),
    /// No such session.
    #[error("no session with id `{0}`")]
    UnknownSession(String),
    /// An input value is not acceptable (too long, empty, ...).
    #[error("invalid {field}: {message}")]
    InvalidInput {
        /// Field name.
        field: &'static str,
        /// Why it was refused.
        message: String,
    },
    /// Password hashing failed (bad parameters or a corrupt stored hash).
    #[error("password hashing: {0}")]
    PasswordHash(String),
    /// Creating, loading or using a signing key failed.
    #[error("signing key: {0}")]
    Key(String),
    /// Signing a token failed.
    #[error("jwt: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// Too many password hashes in progress and queued (`argon2.max_concurrent`,
    /// `argon2.max_queued`); the request is refused rather than queued without bound.
    #[error("too many logins in progress")]
    Overloaded,
    /// A blocking task was cancelled or panicked.
    #[error("background task failed: {0}")]
    Task(String),
    /// Binding or serving the HTTP listener failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data is not what this version of the issuer wrote.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl From<figment::Error> for Error {
    fn from(err: figment::Error) -> Self {
        Error::Figment(Box::new(err))
    }
}

impl Error {
    pub(crate) fn config(setting: &str, message: impl Into<String>) -> Self {
        Error::Config {
            setting: setting.to_owned(),
            message: message.into(),
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
