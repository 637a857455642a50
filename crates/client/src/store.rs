//! Where tokens live between requests (and, with your own store, between runs).

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::BoxError;

/// The tokens of one session.
///
/// `Serialize`/`Deserialize` so a custom [`TokenStore`] can persist them
/// (in the OS keychain, say). `Debug` never prints the tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// The bearer token sent to APIs.
    pub access_token: String,
    /// The refresh token; `None` when the backend issued none (the session
    /// then ends when the access token expires).
    pub refresh_token: Option<String>,
    /// When the access token expires, Unix seconds (from its `exp` claim,
    /// else from `expires_in`).
    pub expires_at: u64,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Storage for the current [`Tokens`].
///
/// The client calls `load` before each request (so keep it cheap — cache in
/// memory if your backing store is slow) and `save`/`clear` after a login,
/// renewal or logout. All renewals are serialised by the client, so an
/// implementation needs no locking of its own beyond memory safety.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The current tokens, if any.
    async fn load(&self) -> Result<Option<Tokens>, BoxError>;
    /// Replaces the current tokens.
    async fn save(&self, tokens: &Tokens) -> Result<(), BoxError>;
    /// Forgets the tokens (logout, or a session the backend refused).
    async fn clear(&self) -> Result<(), BoxError>;
}

/// The default store: tokens in memory, lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tokens: RwLock<Option<Tokens>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `tokens` (to resume a session saved elsewhere).
    pub fn with_tokens(tokens: Tokens) -> Self {
        Self {
            tokens: RwLock::new(Some(tokens)),
        }
    }
}

#[async_trait::async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self) -> Result<Option<Tokens>, BoxError> {
        Ok(self.tokens.read().await.clone())
    }

    async fn save(&self, tokens: &Tokens) -> Result<(), BoxError> {
        *self.tokens.write().await = Some(tokens.clone());
        Ok(())
    }

    async fn clear(&self) -> Result<(), BoxError> {
        *self.tokens.write().await = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_tokens() {
        let t = Tokens {
            access_token: "secret-access".into(),
            refresh_token: Some("secret-refresh".into()),
            expires_at: 5,
        };
        let s = format!("{t:?}");
        assert!(!s.contains("secret"), "{s}");
        assert!(s.contains("expires_at: 5"));
    }

    #[tokio::test]
    async fn memory_store_round_trip() {
        let s = MemoryStore::new();
        assert!(s.load().await.unwrap().is_none());
        let t = Tokens {
            access_token: "a".into(),
            refresh_token: None,
            expires_at: 1,
        };
        s.save(&t).await.unwrap();
        assert_eq!(s.load().await.unwrap(), Some(t));
        s.clear().await.unwrap();
        assert!(s.load().await.unwrap().is_none());
    }
}
