//! The one error type of this crate.

/// Why sealing or unsealing failed. Each variant names the check that rejected the
/// input, in the order iron-session 9 runs them (see [`crate::manual`]).
///
/// The messages never contain a password or key material. Identifiers copied from an
/// untrusted seal are cut to [`MAX_ECHOED_ID`] characters so an attacker cannot flood
/// logs through error messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not an Fe26.2 seal; the payload says which part is wrong.
    #[error("malformed seal: {0}")]
    Malformed(Malformed),
    /// The seal names a password id that is not in the configured set
    /// (iron-session's `Cannot find password`, reason `unknown-password`).
    #[error("unknown password id {0:?} (no such password configured)")]
    UnknownPasswordId(String),
    /// The HMAC-SHA256 does not verify: the seal was tampered with, or made with a
    /// different password under the same id.
    #[error("bad MAC: the seal was altered or made with another password")]
    BadMac,
    /// The expiration field lies at least 60 s (iron-session's clock skew) in the past.
    #[error("seal expired")]
    Expired,
    /// AES-256-CBC decryption failed (iv length, ciphertext length or padding). Only a
    /// sealer that holds the password can produce a seal that reaches this check.
    #[error("decryption failed (bad iv, ciphertext length, padding or encryption salt)")]
    Decryption,
    /// The decrypted plaintext is not JSON, or not the JSON the caller asked for.
    #[error("sealed payload is not valid JSON: {0}")]
    PayloadJson(serde_json::Error),
    /// A password is shorter than 32 UTF-16 code units (JavaScript `string.length`),
    /// iron-webcrypto's minimum.
    #[error(
        "password is shorter than 32 characters (counted in UTF-16 units, as iron-session does)"
    )]
    PasswordTooShort,
    /// A password id is not a decimal integer without leading zeros (iron-session only
    /// seals under ids like `1`, `2`, `10`).
    #[error(
        "invalid password id {0:?}: ids must be decimal integers without leading zeros, e.g. \"1\", \"2\""
    )]
    InvalidPasswordId(String),
    /// The same password id was given twice.
    #[error("duplicate password id {0:?}")]
    DuplicatePasswordId(String),
    /// A password set without any password.
    #[error("no password configured: give at least one, e.g. {{\"1\": \"<32+ characters>\"}}")]
    NoPasswords,
    /// The value to seal could not be turned into JSON.
    #[error("cannot serialize the value to seal as JSON: {0}")]
    Serialize(serde_json::Error),
    /// The value to seal contains something JSON cannot represent losslessly
    /// (NaN or an infinite number), which iron-session refuses as well.
    #[error("the value to seal is not lossless JSON: {0}")]
    NotLosslessJson(&'static str),
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(getrandom::Error),
    /// A primitive rejected a key or iv length that is fixed by construction; never
    /// expected, but reported rather than panicking.
    #[error("internal cryptographic error: {0}")]
    Crypto(&'static str),
}

/// Which structural check a [`Error::Malformed`] seal failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// Not exactly eight `*`-separated fields before the first `~`.
    #[error("expected 8 '*'-separated fields")]
    ComponentCount,
    /// The first field is not exactly `Fe26.2`.
    #[error("prefix is not \"Fe26.2\"")]
    Prefix,
    /// The expiration field is neither empty nor `^[1-9][0-9]*$`.
    #[error("invalid expiration field")]
    Expiration,
    /// A field that must be canonical unpadded base64url is not.
    #[error("field {0} is not canonical unpadded base64url")]
    Base64(Field),
}

/// A base64url field of the seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// Field 3, the AES-CBC iv.
    Iv,
    /// Field 4, the ciphertext.
    Ciphertext,
    /// Field 7, the HMAC.
    Hmac,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Iv => "iv",
            Field::Ciphertext => "ciphertext",
            Field::Hmac => "hmac",
        })
    }
}

/// iron-session's classification of an unseal failure, as passed to its
/// `onUnsealError(reason)` hook. Useful for metrics: a spike of `UnknownPassword`
/// means a broken password rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnsealReason {
    /// The seal expired.
    Expired,
    /// The seal names a password id that is not configured.
    UnknownPassword,
    /// Anything else: malformed, tampered, undecryptable, not JSON.
    Invalid,
}

impl UnsealReason {
    /// The string iron-session uses: `expired`, `unknown-password` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnsealReason::Expired => "expired",
            UnsealReason::UnknownPassword => "unknown-password",
            UnsealReason::Invalid => "invalid",
        }
    }
}

impl Error {
    /// The iron-session reason for this error when it comes from unsealing.
    pub fn reason(&self) -> UnsealReason {
        match self {
            Error::Expired => UnsealReason::Expired,
            Error::UnknownPasswordId(_) => UnsealReason::UnknownPassword,
            _ => UnsealReason::Invalid,
        }
    }
}

/// Longest id copied from an untrusted seal into an error.
pub const MAX_ECHOED_ID: usize = 64;

/// Copies at most [`MAX_ECHOED_ID`] characters of an untrusted id.
pub(crate) fn echo_id(id: &str) -> String {
    match id.char_indices().nth(MAX_ECHOED_ID) {
        Some((cut, _)) => format!("{}…", &id[..cut]),
        None => id.to_owned(),
    }
}
