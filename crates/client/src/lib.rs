//! `sallyport-client`: call APIs protected by Sallyport (or any OAuth 2.0 /
//! article-style JSON token backend) from Rust, with login, proactive
//! renewal and a single retry on 401 handled for you.
//!
//! It is a [reqwest-middleware](reqwest_middleware) layer, so you keep using
//! reqwest's request builders:
//!
//! ```no_run
//! use sallyport_client::{Auth, Backend};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = Auth::builder(Backend::issuer_json("http://127.0.0.1:8300")?).build()?;
//! auth.login("alice", "correct horse battery staple").await?;
//!
//! let api = auth.client(reqwest::Client::new());
//! let me: serde_json::Value = api
//!     .get("http://127.0.0.1:8300/api/me")
//!     .send()
//!     .await?
//!     .error_for_status()?
//!     .json()
//!     .await?;
//! println!("{me}");
//!
//! auth.logout().await?;
//! # Ok(()) }
//! ```
//!
//! What it guarantees:
//!
//! * **Proactive renewal.** A token that expires within the leeway (30 s by
//!   default; its `exp` claim decides) is renewed before the request leaves.
//! * **Single-flight.** N concurrent requests that find the token stale cause
//!   one refresh; the others wait for it. Refresh tokens are single-use, so a
//!   second concurrent refresh would look like token theft to the backend.
//! * **One retry on 401.** A 401 from the API triggers one renewal (shared
//!   with concurrent requests) and one replay of the request, if its body can
//!   be replayed. Never a loop.
//! * **Clear endings.** A refresh the backend refuses clears the tokens and
//!   yields [`Error::ReauthRequired`]; later calls yield
//!   [`Error::SessionExpired`]. A backend outage yields
//!   [`Error::BackendUnavailable`] and keeps the session (the current token
//!   is still used while it has not expired).
//! * **Pluggable storage.** Tokens live in a [`TokenStore`] ([`MemoryStore`]
//!   by default); `Debug` never prints them.
//!
//! See `docs/client.md` for a guide.

mod auth;
mod backend;
mod clock;
mod error;
mod middleware;
mod store;

pub use auth::{Auth, AuthBuilder, FRESH_REJECTION_GRACE_SECS};
pub use backend::Backend;
pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use error::{BoxError, Error};
pub use middleware::AuthMiddleware;
pub use sallyport_proto::AuthErrorCode;
pub use store::{MemoryStore, TokenStore, Tokens};

/// Re-exported so users can name the wrapped client without another dependency.
pub use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
