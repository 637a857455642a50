//! Signing keys: generated with aws-lc-rs (PKCS#8), stored in the database so every
//! replica signs with and publishes the same keys, cached in memory as a [`KeyRing`].
//!
//! At rest the private key is plain PKCS#8 DER unless a key-encryption key is set
//! ([`KEY_ENCRYPTION_ENV`]): then new keys are stored AES-256-GCM-encrypted
//! ([`KeyEncryptionKey`]), bound to their `kid` and algorithm. Plain keys written
//! before still load (rotate to replace them); an encrypted key without the right
//! key-encryption key stops start-up with an error saying so.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;

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

/// Environment variable holding the key-encryption key: 32 random bytes, base64
/// (`openssl rand -base64 32`).
pub const KEY_ENCRYPTION_ENV: &str = "SALLYPORT_KEY_ENCRYPTION_KEY";

/// Prefix of an encrypted private key: "SPKE" (Sallyport key, encrypted), version 1.
/// A plain PKCS#8 key starts with a DER SEQUENCE tag (0x30), so the two never collide.
const ENCRYPTED_MAGIC: &[u8] = b"SPKE\x01";

/// AES-256-GCM key that encrypts signing keys at rest (aws-lc-rs).
pub struct KeyEncryptionKey(LessSafeKey);

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey([redacted])")
    }
}

impl KeyEncryptionKey {
    /// From base64 (standard or URL-safe, padding optional) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let text = text.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|e| e.decode(text).ok())
            .ok_or_else(|| {
                Error::config(
                    KEY_ENCRYPTION_ENV,
                    "is not base64 (create one with `openssl rand -base64 32`)",
                )
            })?;
        if bytes.len() != 32 {
            return Err(Error::config(
                KEY_ENCRYPTION_ENV,
                format!(
                    "must be 32 bytes, base64-encoded; got {} bytes (`openssl rand -base64 32`)",
                    bytes.len()
                ),
            ));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| Error::config(KEY_ENCRYPTION_ENV, "unusable AES-256 key"))?;
        Ok(KeyEncryptionKey(LessSafeKey::new(key)))
    }

    fn aad(kid: &str, algorithm: &str) -> Vec<u8> {
        format!("sallyport signing key\0{kid}\0{algorithm}").into_bytes()
    }

    /// `MAGIC || nonce || ciphertext || tag`.
    fn seal(&self, kid: &str, algorithm: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::Key(format!("random source: {e}")))?;
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(kid, algorithm)),
                &mut buf,
            )
            .map_err(|_| Error::Key("encrypting the signing key failed".into()))?;
        let mut out = Vec::with_capacity(ENCRYPTED_MAGIC.len() + NONCE_LEN + buf.len());
        out.extend_from_slice(ENCRYPTED_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open(&self, kid: &str, algorithm: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let wrong = || {
            Error::Key(format!(
                "{KEY_ENCRYPTION_ENV} does not decrypt signing key {kid} \
                 (a different key-encryption key, or corrupt data)"
            ))
        };
        let body = sealed.strip_prefix(ENCRYPTED_MAGIC).ok_or_else(wrong)?;
        if body.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(Self::aad(kid, algorithm)), &mut buf)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

/// PKCS#8 DER as PEM (`-----BEGIN PRIVATE KEY-----`, RFC 7468).
pub fn pkcs8_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// Whether a stored private key is encrypted.
pub fn is_encrypted(record: &KeyRecord) -> bool {
    record.private_der.starts_with(ENCRYPTED_MAGIC)
}

/// The record as it should be stored: encrypted when a key-encryption key is given.
pub fn seal_record(mut record: KeyRecord, kek: Option<&KeyEncryptionKey>) -> Result<KeyRecord> {
    if let Some(kek) = kek
        && !is_encrypted(&record)
    {
        record.private_der = kek.seal(&record.kid, &record.algorithm, &record.private_der)?;
    }
    Ok(record)
}

/// Stored records made usable: encrypted keys decrypted with `kek`. An encrypted key
/// without `kek`, or one `kek` does not decrypt, is an error naming the key.
pub fn open_records(
    records: Vec<KeyRecord>,
    kek: Option<&KeyEncryptionKey>,
) -> Result<Vec<KeyRecord>> {
    records
        .into_iter()
        .map(|mut r| {
            if is_encrypted(&r) {
                let kek = kek.ok_or_else(|| {
                    Error::Key(format!(
                        "signing key {} is encrypted; set {KEY_ENCRYPTION_ENV} to the \
                         key-encryption key it was stored with",
                        r.kid
                    ))
                })?;
                r.private_der = kek.open(&r.kid, &r.algorithm, &r.private_der)?;
            }
            Ok(r)
        })
        .collect()
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
        let keys = records
            .iter()
            .filter(|r| is_published(r, now_ms, retention_ms))
            .map(public_jwk)
            .collect::<Result<Vec<_>>>()?;
        Ok(KeyRing {
            signing,
            jwks: JwkSet { keys },
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
        self.sign_typed(claims, "at+jwt")
    }

    /// Signs any claims with the current key and the given header `typ` (`JWT` for ID
    /// tokens, `logout+jwt` for logout tokens): the type keeps one kind of token from
    /// being accepted as another.
    pub fn sign_typed<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String> {
        let mut header = Header::new(self.signing.algorithm);
        header.kid = Some(self.signing.kid.clone());
        header.typ = Some(typ.to_owned());
        Ok(jsonwebtoken::encode(
            &header,
            claims,
            &self.signing.encoding,
        )?)
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
                crate::clock::now_ms_i64(&crate::clock::SystemClock),
                60_000,
            );
            let jwt = ring.sign(&claims).unwrap();
            let header = jsonwebtoken::decode_header(&jwt).unwrap();
            assert_eq!(header.kid.as_deref(), Some(rec.kid.as_str()));
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            let verifier = |iss: &str, aud: &str| {
                sallyport_jwt::Verifier::from_jwks(
                    ring.jwks().clone(),
                    sallyport_jwt::VerifierConfig::new("http://unused/jwks", iss, aud),
                )
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let verified = rt
                .block_on(verifier("http://iss", "aud").verify(&jwt))
                .unwrap();
            assert_eq!(verified.sub, claims.sub);
            assert_eq!(verified.sid, claims.sid);
            assert!(
                rt.block_on(verifier("http://other", "aud").verify(&jwt))
                    .is_err()
            );
            assert!(
                rt.block_on(verifier("http://iss", "other").verify(&jwt))
                    .is_err()
            );
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

    const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn kek() -> KeyEncryptionKey {
        KeyEncryptionKey::from_base64(KEK).unwrap()
    }

    #[test]
    fn key_encryption_key_parsing() {
        // Standard, unpadded, URL-safe, surrounding whitespace: the same 32 bytes.
        for text in [
            KEK,
            KEK.trim_end_matches('='),
            " AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
            "_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-8",
        ] {
            assert!(KeyEncryptionKey::from_base64(text).is_ok(), "{text:?}");
        }
        for (text, why) in [
            ("not base64!", "is not base64"),
            ("", "got 0 bytes"),
            ("c2hvcnQ=", "got 5 bytes"),
            (&format!("{KEK}{KEK}"), "is not base64"),
            (
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==",
                "got 34 bytes",
            ),
        ] {
            let err = KeyEncryptionKey::from_base64(text).unwrap_err().to_string();
            assert!(
                err.contains(KEY_ENCRYPTION_ENV) && err.contains(why),
                "{text:?}: {err}"
            );
        }
        assert_eq!(format!("{:?}", kek()), "KeyEncryptionKey([redacted])");
    }

    #[test]
    fn sealed_keys_open_only_unchanged_under_their_kid_algorithm_and_key() {
        let rec = generate(SigningAlgorithm::Es256, 0).unwrap();
        let plain = rec.private_der.clone();
        let sealed = seal_record(rec.clone(), Some(&kek())).unwrap();
        assert!(is_encrypted(&sealed));
        assert!(!is_encrypted(&rec));
        assert_ne!(sealed.private_der, plain);
        // Sealing is idempotent and fresh nonces make two seals differ.
        assert_eq!(
            seal_record(sealed.clone(), Some(&kek()))
                .unwrap()
                .private_der,
            sealed.private_der
        );
        assert_ne!(
            seal_record(rec.clone(), Some(&kek())).unwrap().private_der,
            sealed.private_der
        );
        let open = |r: &KeyRecord, k: Option<&KeyEncryptionKey>| open_records(vec![r.clone()], k);
        assert_eq!(open(&sealed, Some(&kek())).unwrap()[0].private_der, plain);
        // Plain records pass through, with or without a key.
        assert_eq!(open(&rec, None).unwrap()[0].private_der, plain);
        assert_eq!(open(&rec, Some(&kek())).unwrap()[0].private_der, plain);

        let refused = |r: KeyRecord, k: Option<&KeyEncryptionKey>, why: &str| {
            let err = open(&r, k).unwrap_err().to_string();
            assert!(err.contains(&rec.kid) && err.contains(why), "{err}");
        };
        refused(sealed.clone(), None, "is encrypted");
        let other =
            KeyEncryptionKey::from_base64("HxwdHhscGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=").unwrap();
        refused(sealed.clone(), Some(&other), "does not decrypt");
        // The key id and algorithm are bound (AAD): a sealed key moved to another
        // record does not open.
        let mut moved = sealed.clone();
        moved.kid = format!("{}x", sealed.kid);
        let err = open(&moved, Some(&kek())).unwrap_err().to_string();
        assert!(err.contains("does not decrypt"), "{err}");
        refused(
            KeyRecord {
                algorithm: "EdDSA".into(),
                ..sealed.clone()
            },
            Some(&kek()),
            "does not decrypt",
        );
        // Any flipped byte after the prefix (nonce, ciphertext, tag), or truncation.
        for i in ENCRYPTED_MAGIC.len()..sealed.private_der.len() {
            let mut tampered = sealed.clone();
            tampered.private_der[i] ^= 0x01;
            refused(tampered, Some(&kek()), "does not decrypt");
        }
        for len in [
            ENCRYPTED_MAGIC.len(),
            ENCRYPTED_MAGIC.len() + NONCE_LEN - 1,
            ENCRYPTED_MAGIC.len() + NONCE_LEN,
            sealed.private_der.len() - 1,
        ] {
            let mut cut = sealed.clone();
            cut.private_der.truncate(len);
            refused(cut, Some(&kek()), "does not decrypt");
        }
    }

    #[test]
    fn pem_wraps_at_64_columns() {
        let pem = pkcs8_pem(&[0xab; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PRIVATE KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END PRIVATE KEY-----"));
        let body: String = lines[1..lines.len() - 1].concat();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap(),
            vec![0xab; 100]
        );
    }
}
