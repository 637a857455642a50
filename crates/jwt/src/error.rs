//! The crate's one error type.

/// Why a token could not be decoded, verified or signed, or a key not loaded.
///
/// Every variant except [`Error::JwksUnavailable`], [`Error::Key`] and
/// [`Error::Config`] means "this token is not acceptable"; the axum extractor
/// turns all of those into the same `401 invalid_token` and logs the variant
/// at debug level, so callers learn nothing an attacker could use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not three base64url parts, bad base64, or a header/payload that is not
    /// a JSON object.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The claims are JSON but do not have the expected types.
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
    /// A required claim is absent.
    #[error("missing claim `{0}`")]
    MissingClaim(&'static str),
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The header's `alg` is not one of the pinned algorithms (this is how
    /// `alg: none` and `HS256` algorithm confusion are refused).
    #[error("algorithm `{0}` not allowed")]
    AlgorithmNotAllowed(String),
    /// The header's `typ` is not an accepted type (`at+jwt` by default).
    #[error("token type `{0}` not accepted")]
    WrongType(String),
    /// The header names a critical extension (`crit`) we do not understand
    /// (RFC 7515 §4.1.11 requires rejecting it).
    #[error("unsupported critical header")]
    UnsupportedCritical,
    /// No key in the JWKS has this `kid` (even after a refetch).
    #[error("unknown key id {0:?}")]
    UnknownKey(Option<String>),
    /// The key for `kid` is of another algorithm than the header's `alg`.
    #[error("key `{kid}` is not a {alg} key")]
    KeyAlgorithmMismatch {
        /// The key id.
        kid: String,
        /// The algorithm the header asked for.
        alg: String,
    },
    /// The signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// The JWKS could not be fetched or parsed, and no cached keys can decide.
    #[error("JWKS unavailable: {0}")]
    JwksUnavailable(String),
    /// A key could not be loaded, generated or used for signing.
    #[error("key error: {0}")]
    Key(String),
    /// A verifier setting is wrong (the message names the setting).
    #[error("invalid verifier configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether this error says the token is bad (as opposed to the verifier
    /// being unable to decide, e.g. the JWKS cannot be fetched).
    pub fn is_invalid_token(&self) -> bool {
        !matches!(
            self,
            Self::JwksUnavailable(_) | Self::Key(_) | Self::Config(_)
        )
    }
}
