//! Refresh-token secrets and the sealed "successor box".
//!
//! A refresh token is 32 random bytes (256 bits), base64url without padding. The
//! database stores only `SHA-256(token)` (hex). When a token is rotated, the new token
//! and the access token issued with it are stored encrypted under a key stream derived
//! from the *old* token: `SHA-256("sallyport/successor/v1" ‖ old ‖ counter)`. So a retry
//! that presents the old token within the reuse interval can be answered with exactly
//! the tokens the first request received — the same family, no divergent branch
//! (PP-18) — while the database alone (hashes and ciphertexts) never yields a usable
//! token. Each old token has exactly one successor, so the key stream is never reused.

use std::fmt;

use base64::Engine;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Length of a refresh-token secret in bytes.
pub const SECRET_LEN: usize = 32;
/// Length of its base64url (no padding) form.
pub const ENCODED_LEN: usize = 43;

const PAD_DOMAIN: &[u8] = b"sallyport/successor/v1";

/// A refresh-token secret. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshSecret([u8; SECRET_LEN]);

impl fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshSecret([redacted])")
    }
}

impl RefreshSecret {
    /// A fresh secret from the OS random source.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; SECRET_LEN];
        getrandom::fill(&mut bytes).map_err(|e| Error::Key(format!("random source: {e}")))?;
        Ok(RefreshSecret(bytes))
    }

    /// Parses the wire form; `None` for anything that is not exactly 43 base64url chars.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != ENCODED_LEN {
            return None;
        }
        let bytes = BASE64_URL_SAFE_NO_PAD.decode(s).ok()?;
        let arr: [u8; SECRET_LEN] = bytes.try_into().ok()?;
        Some(RefreshSecret(arr))
    }

    /// The wire form.
    pub fn encode(&self) -> String {
        BASE64_URL_SAFE_NO_PAD.encode(self.0)
    }

    /// What the database stores: hex SHA-256 of the raw bytes.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0))
    }

    fn keystream_xor(&self, data: &mut [u8]) {
        for (counter, chunk) in data.chunks_mut(32).enumerate() {
            let mut h = Sha256::new();
            h.update(PAD_DOMAIN);
            h.update(self.0);
            h.update((counter as u64).to_be_bytes());
            let block = h.finalize();
            for (byte, k) in chunk.iter_mut().zip(block.iter()) {
                *byte ^= k;
            }
        }
    }
}

/// What a rotation hands out, kept so a retry gets the same answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Successor {
    /// The new refresh token.
    pub secret: RefreshSecret,
    /// Expiry of the access token, unix ms.
    pub access_expires_at_ms: i64,
    /// The access token issued with it.
    pub access_token: String,
}

impl fmt::Debug for Successor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Successor")
            .field("access_expires_at_ms", &self.access_expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// Encrypts `successor` under a key stream derived from `old`.
pub fn seal_successor(old: &RefreshSecret, successor: &Successor) -> Vec<u8> {
    let mut buf = Vec::with_capacity(SECRET_LEN + 8 + successor.access_token.len());
    buf.extend_from_slice(&successor.secret.0);
    buf.extend_from_slice(&successor.access_expires_at_ms.to_be_bytes());
    buf.extend_from_slice(successor.access_token.as_bytes());
    old.keystream_xor(&mut buf);
    buf
}

/// Decrypts a box written by [`seal_successor`]; `expected_hash` (the stored
/// `successor_hash`) authenticates the result.
pub fn open_successor(
    old: &RefreshSecret,
    sealed: &[u8],
    expected_hash: &str,
) -> Option<Successor> {
    let mut buf = sealed.to_vec();
    old.keystream_xor(&mut buf);
    let (secret, rest) = buf.split_at_checked(SECRET_LEN)?;
    let (exp, token) = rest.split_at_checked(8)?;
    let secret = RefreshSecret(secret.try_into().ok()?);
    if secret.hash() != expected_hash {
        return None;
    }
    Some(Successor {
        secret,
        access_expires_at_ms: i64::from_be_bytes(exp.try_into().ok()?),
        access_token: String::from_utf8(token.to_vec()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_parse() {
        let s = RefreshSecret::generate().unwrap();
        let wire = s.encode();
        assert_eq!(wire.len(), ENCODED_LEN);
        assert_eq!(RefreshSecret::parse(&wire), Some(s.clone()));
        assert_eq!(RefreshSecret::parse("short"), None);
        assert_eq!(RefreshSecret::parse(&"!".repeat(ENCODED_LEN)), None);
        assert!(!format!("{s:?}").contains(&wire));
    }

    #[test]
    fn successor_box_opens_only_with_the_old_token() {
        let old = RefreshSecret::generate().unwrap();
        let other = RefreshSecret::generate().unwrap();
        let next = Successor {
            secret: RefreshSecret::generate().unwrap(),
            access_expires_at_ms: 1234,
            access_token: "header.payload.signature".repeat(20),
        };
        let sealed = seal_successor(&old, &next);
        assert!(!sealed.windows(9).any(|w| w == b"header.pa"));
        let opened = open_successor(&old, &sealed, &next.secret.hash()).unwrap();
        assert_eq!(opened, next);
        assert!(open_successor(&other, &sealed, &next.secret.hash()).is_none());
        assert!(open_successor(&old, &sealed[..10], &next.secret.hash()).is_none());
    }
}
