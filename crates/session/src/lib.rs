//! Sealed-cookie sessions for axum/tower, byte-compatible with the npm package
//! [iron-session](https://github.com/vvo/iron-session) 9.
//!
//! The whole session lives in the cookie, sealed (encrypted and authenticated) with
//! Iron `Fe26.2` by [`sallyport_iron`]. A Next.js app using iron-session with the same
//! password and cookie name reads the cookies this crate writes, and the reverse.
//!
//! Two levels:
//! * [`Session<T>`] + [`SessionLayer`]: a typed axum extractor with read, modify
//!   (saved immediately), save and destroy.
//! * [`CookieCodec`]: read/encode/clear over `http::HeaderMap`, for code that manages
//!   the cookie itself (the Sallyport gateway).
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use sallyport_session::{CookieCodec, Session, SessionConfig, SessionLayer};
//!
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! struct Counter { count: u64 }
//!
//! async fn hit(mut session: Session<Counter>) -> Result<String, sallyport_session::Error> {
//!     let n = session.update(|c| { c.count += 1; c.count })?;
//!     Ok(format!("{n}"))
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let passwords = sallyport_iron::Passwords::single(std::env::var("SESSION_SECRET")?)?;
//! let codec = CookieCodec::try_new(SessionConfig::new(passwords).secure(false))?;
//! let app: Router = Router::new().route("/", get(hit)).layer(SessionLayer::new(codec));
//! # Ok(()) }
//! ```
//!
//! Defaults are iron-session's (ttl 14 days, `Max-Age` = ttl − 60, `HttpOnly`,
//! `Secure`, `SameSite=Lax`, `Path=/`); see [`SessionConfig`]. `Set-Cookie` values are
//! serialized byte for byte as iron-session (cookie@2) writes them.

mod codec;
mod config;
mod cookie;
mod error;
mod layer;

pub use codec::{CookieCodec, Loaded};
pub use config::{
    DEFAULT_INSECURE_NAME, DEFAULT_SECURE_NAME, DEFAULT_TTL, Priority, SameSite, SessionConfig,
    UnknownSameSite,
};
pub use cookie::{MAX_CHUNKS, MAX_COOKIE_BYTES, request_cookie};
pub use error::Error;
pub use layer::{ResponseFuture, Session, SessionLayer, SessionService};

/// Re-exported so users need not depend on `sallyport-iron` for the password set.
pub use sallyport_iron::Passwords;
