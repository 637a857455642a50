//! argon2id password hashing, always off the async runtime (`spawn_blocking`).

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};

use crate::config::Argon2Config;
use crate::error::{Error, Result};

/// Longest password accepted, in bytes (argon2 pre-hashes, but unbounded input is
/// still pointless work).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes and verifies passwords with fixed parameters.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    /// A real hash of a random password with the same parameters, verified against
    /// when the user does not exist so that "no such user" costs the same time as
    /// "wrong password".
    dummy: Arc<str>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

impl Hasher {
    /// Builds the hasher and its dummy hash.
    pub async fn new(config: &Argon2Config) -> Result<Self> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| Error::config("argon2", e.to_string()))?;
        let mut random = [0u8; 24];
        getrandom::fill(&mut random).map_err(|e| Error::Key(format!("random source: {e}")))?;
        let hasher = Hasher {
            params,
            dummy: Arc::from(""),
        };
        let dummy = hasher.hash(hex::encode(random)).await?;
        Ok(Hasher {
            dummy: Arc::from(dummy),
            ..hasher
        })
    }

    /// PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String> {
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            argon(&params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::PasswordHash(e.to_string()))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// True when `password` matches `stored`; with `stored = None` verifies against the
    /// dummy hash and returns false.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy.to_string());
        let params = self.params.clone();
        let ok = tokio::task::spawn_blocking(move || {
            argon(&params)
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        Ok(known && ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verify_and_dummy() {
        let cfg = Argon2Config {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let h = Hasher::new(&cfg).await.unwrap();
        let stored = h.hash("s3cret".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(
            h.verify("s3cret".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(!h.verify("wrong".into(), Some(stored)).await.unwrap());
        assert!(!h.verify("anything".into(), None).await.unwrap());
        assert!(!h.verify("x".into(), Some("garbage".into())).await.unwrap());
    }
}
