//! Access tokens for Sallyport: claims, decoding, signing, verification
//! against a JWKS, and an axum extractor for resource servers.
//!
//! * [`decode_unverified`] / [`expires_at`] — read a token you hold to decide
//!   when to renew it. No signature check: never authorise with these.
//! * [`Verifier`] — verify a token you were *given*: the header `alg` must be
//!   one of the pinned algorithms (ES256, EdDSA; `none` and HMAC cannot even
//!   be configured), the key is looked up by `kid` in the issuer's JWKS (keys
//!   embedded in the token, `jku`, `x5u` are ignored) and must be of that same
//!   algorithm, `typ` must be `at+jwt` (configurable), `exp` is required,
//!   `iss` and `aud` must match, `sub` must be present.
//!   A token whose signature checked out is remembered (bounded cache, keyed
//!   by the whole token, dropped when the key set changes), so the many
//!   requests that carry the same token pay for one signature check; the
//!   time, issuer and audience checks run on every call.
//! * [`BearerClaims`] — the axum extractor built on it.
//! * [`SigningKey`] and [`jwk_set`] — what the issuer signs with and publishes.
//!
//! ```
//! use sallyport_jwt::{AccessClaims, Algorithm, SigningKey, Verifier, VerifierConfig, jwk_set};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let key = SigningKey::generate(Algorithm::Es256, "key-1")?;
//! let now = 1_700_000_000;
//! let claims = AccessClaims {
//!     iss: "https://issuer.example".into(),
//!     sub: "user-1".into(),
//!     aud: vec!["api".into()],
//!     exp: now + 900,
//!     iat: now,
//!     ..AccessClaims::default()
//! };
//! let token = key.sign(&claims)?;
//! assert_eq!(sallyport_jwt::expires_at(&token)?, now + 900);
//!
//! let verifier = Verifier::from_jwks(
//!     jwk_set([&key]),
//!     VerifierConfig::new("", "https://issuer.example", "api"),
//! );
//! assert_eq!(verifier.verify_at(&token, now).await?.sub, "user-1");
//! assert!(verifier.verify_at(&token, now + 3600).await.is_err());
//! # Ok::<(), sallyport_jwt::Error>(())
//! # }).unwrap();
//! ```

mod claims;
mod error;
mod extract;
mod keys;
mod verifier;

pub use claims::{AccessClaims, decode_unverified, expires_at};
pub use error::Error;
pub use extract::{BearerClaims, BearerRejection, bearer_token};
pub use keys::{Algorithm, SigningKey, VerifyingKey, jwk_set};
pub use verifier::{Verifier, VerifierConfig, unix_now};

/// The JWK / JWKS types (from `jsonwebtoken`), re-exported so users need not
/// depend on it directly.
pub use jsonwebtoken::jwk::{Jwk, JwkSet};

/// The header `typ` of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
