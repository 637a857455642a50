//! Signing keys: generated with aws-lc-rs (PKCS#8), stored in the database so every
//! replica signs with and publishes the same keys, cached in memory as a [`KeyRing`].

use std::collections::HashMap;
use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::SigningAlgorithm;
use crate::error::{Error, Result};
use crate::store::{KeyRecord, SessionRecord, UserRecord};

/// Creates a new key record for `algorithm` at `now_ms`.
pub fn generate(algorithm: SigningAlgorithm, now_ms: i64) -> Result<KeyRecord> {
    let rng = SystemRandom::new();
    let der = match algorithm {
        SigningAlgorithm::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| Error::Key("P-256 key generation failed".into()))?
                .as_ref()
                .to_vec()
        }
        // PKCS#8 v1 (no embedded public key): the form jsonwebtoken's JWK export expects.
        SigningAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(|_| Error::Key("Ed25519 key generation failed".into()))?
            .as_ref()
            .to_vec(),
    };
    let mut id = [0u8; 9];
    getrandom::fill(&mut id).map_err(|e| Error::Key(format!("random source: {e}")))?;
    Ok(KeyRecord {
        kid: format!("{}-{}", now_ms, hex::encode(id)),
        algorithm: algorithm.as_str().to_owned(),
        private_der: der,
        created_at: now_ms,
        retired_at: None,
    })
}

/// A loaded key able to sign.
pub struct SigningKey {
    /// Header `kid`.
    pub kid: String,
    /// JOSE algorithm.
    pub algorithm: Algorithm,
    encoding: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Access-token claims as the issuer writes them (the `sallyport-jwt` contract).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer URL.
    pub iss: String,
    /// User id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Unique token id.
    pub jti: String,
    /// Session (refresh-token family) id.
    pub sid: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Every key the issuer knows, the one it signs with, and the published JWKS.
#[derive(Debug)]
pub struct KeyRing {
    signing: SigningKey,
    jwks: JwkSet,
    decoding: HashMap<String, (Algorithm, DecodingKey)>,
    /// When this ring was loaded (unix ms).
    pub loaded_at_ms: i64,
}

fn algorithm_of(record: &KeyRecord) -> Result<Algorithm> {
    match record.algorithm.as_str() {
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(Error::Corrupt(format!(
            "key {} has unknown algorithm {other}",
            record.kid
        ))),
    }
}

fn encoding_key(record: &KeyRecord, alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_der(&record.private_der),
        _ => EncodingKey::from_ec_der(&record.private_der),
    }
}

/// The public JWK of a stored key (`kid`, `alg`, `use: sig`).
pub fn public_jwk(record: &KeyRecord) -> Result<Jwk> {
    let alg = algorithm_of(record)?;
    let mut jwk = Jwk::from_encoding_key(&encoding_key(record, alg), alg)?;
    jwk.common.key_id = Some(record.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(match alg {
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
        _ => KeyAlgorithm::ES256,
    });
    Ok(jwk)
}

/// Whether a key is still published at `now_ms`: it signs, or it stopped signing less
/// than `retention_ms` ago (the lifetime of the last token it signed, plus margins).
pub fn is_published(record: &KeyRecord, now_ms: i64, retention_ms: i64) -> bool {
    record
        .retired_at
        .is_none_or(|retired| retired.saturating_add(retention_ms) > now_ms)
}

impl KeyRing {
    /// Builds the ring from stored keys (newest first). The newest key that is not
    /// retired signs; keys retired within `retention_ms` stay published for verifiers.
    pub fn from_records(records: &[KeyRecord], now_ms: i64, retention_ms: i64) -> Result<Self> {
        let current = records
            .iter()
            .filter(|r| r.retired_at.is_none())
            .max_by_key(|r| (r.created_at, r.kid.clone()))
            .ok_or_else(|| Error::Key("no active signing key".into()))?;
        let alg = algorithm_of(current)?;
        let signing = SigningKey {
            kid: current.kid.clone(),
            algorithm: alg,
            encoding: encoding_key(current, alg),
        };
        let mut keys = Vec::new();
        let mut decoding = HashMap::new();
        for record in records
            .iter()
            .filter(|r| is_published(r, now_ms, retention_ms))
        {
            let jwk = public_jwk(record)?;
            decoding.insert(
                record.kid.clone(),
                (algorithm_of(record)?, DecodingKey::from_jwk(&jwk)?),
            );
            keys.push(jwk);
        }
        Ok(KeyRing {
            signing,
            jwks: JwkSet { keys },
            decoding,
            loaded_at_ms: now_ms,
        })
    }

    /// The key new tokens are signed with.
    pub fn signing_kid(&self) -> &str {
        &self.signing.kid
    }

    /// The published key set.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Signs `claims` with the current key (`typ: at+jwt`, RFC 9068).
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let mut header = Header::new(self.signing.algorithm);
        header.kid = Some(self.signing.kid.clone());
        header.typ = Some("at+jwt".into());
        Ok(jsonwebtoken::encode(
            &header,
            claims,
            &self.signing.encoding,
        )?)
    }

    /// Verifies a token against the published keys (pinned algorithm per key,
    /// required `exp`, `iss`, `aud`).
    pub fn verify(&self, token: &str, issuer: &str, audience: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid?;
        let (alg, key) = self.decoding.get(&kid)?;
        if header.alg != *alg {
            return None;
        }
        let mut validation = Validation::new(*alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .ok()
            .map(|d| d.claims)
    }
}

/// Builds the claims of an access token for `user` in `session`.
pub fn claims_for(
    user: &UserRecord,
    session: &SessionRecord,
    issuer: &str,
    audience: &str,
    now_ms: i64,
    ttl_ms: i64,
) -> Claims {
    let iat = u64::try_from(now_ms / 1000).unwrap_or(0);
    let exp = u64::try_from(now_ms.saturating_add(ttl_ms) / 1000).unwrap_or(0);
    Claims {
        iss: issuer.to_owned(),
        sub: user.id.clone(),
        aud: audience.to_owned(),
        exp,
        iat,
        jti: uuid::Uuid::new_v4().to_string(),
        sid: session.id.clone(),
        name: user.name.clone(),
        roles: user.role_list(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserRecord {
        UserRecord {
            id: "u1".into(),
            username: "alice".into(),
            name: Some("Alice".into()),
            roles: r#"["admin"]"#.into(),
            password_hash: String::new(),
            disabled_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn session() -> SessionRecord {
        SessionRecord {
            id: "s1".into(),
            user_id: "u1".into(),
            created_at: 0,
            last_used_at: 0,
            expires_at: i64::MAX,
            revoked_at: None,
            revoked_reason: None,
            generation: 0,
            user_agent: None,
            client_addr: None,
        }
    }

    #[test]
    fn sign_and_verify_both_algorithms() {
        let now = 1_700_000_000_000;
        for alg in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
            let rec = generate(alg, now).unwrap();
            let ring = KeyRing::from_records(std::slice::from_ref(&rec), now, 0).unwrap();
            let claims = claims_for(
                &user(),
                &session(),
                "http://iss",
                "aud",
                crate::clock::Clock::now_ms(&crate::clock::SystemClock),
                60_000,
            );
            let jwt = ring.sign(&claims).unwrap();
            let header = jsonwebtoken::decode_header(&jwt).unwrap();
            assert_eq!(header.kid.as_deref(), Some(rec.kid.as_str()));
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(ring.verify(&jwt, "http://iss", "aud"), Some(claims));
            assert_eq!(ring.verify(&jwt, "http://other", "aud"), None);
            assert_eq!(ring.verify(&jwt, "http://iss", "other"), None);
            let jwks = serde_json::to_value(ring.jwks()).unwrap();
            assert!(
                !jwks.to_string().contains("\"d\""),
                "private part must not be published"
            );
        }
    }

    #[test]
    fn retired_keys_stay_published_for_retention() {
        let old = KeyRecord {
            retired_at: Some(1_000),
            ..generate(SigningAlgorithm::Es256, 0).unwrap()
        };
        let new = generate(SigningAlgorithm::Es256, 1_000).unwrap();
        let records = vec![new.clone(), old.clone()];
        let ring = KeyRing::from_records(&records, 1_500, 1_000).unwrap();
        assert_eq!(ring.signing_kid(), new.kid);
        assert_eq!(ring.jwks().keys.len(), 2);
        let ring = KeyRing::from_records(&records, 2_500, 1_000).unwrap();
        assert_eq!(ring.jwks().keys.len(), 1);
    }

    #[test]
    fn debug_hides_private_key() {
        let rec = generate(SigningAlgorithm::Es256, 0).unwrap();
        assert!(!format!("{rec:?}").contains(&format!("{:?}", &rec.private_der[..8])));
    }
}
