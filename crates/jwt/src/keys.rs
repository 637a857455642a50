//! Signing and verifying keys, and their JWK form.
//!
//! Signing and verification call aws-lc-rs directly with keys parsed once,
//! instead of going through `jsonwebtoken::encode`/`decode`, which re-parse
//! the PKCS#8 document or public key on every call (a large share of the
//! cost of an ES256 signature). `jsonwebtoken` provides the JWK/JWKS types.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
    RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, RSAKeyParameters, RSAKeyType,
};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The signature algorithms Sallyport signs and accepts.
///
/// Deliberately only asymmetric algorithms: there is no way to configure
/// `HS256` (or `none`), so the classic algorithm-confusion attack — an HMAC
/// "signature" made with the public key as secret — cannot be enabled by mistake.
///
/// RS256 and PS256 exist for OpenID providers (RS256 is OpenID Connect's default
/// ID-token algorithm, and the only one some providers offer); RSA keys shorter than
/// 2048 bits are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256 (the default).
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519.
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048 to 8192-bit keys).
    #[serde(rename = "RS256")]
    Rs256,
    /// RSASSA-PSS with SHA-256 (2048 to 8192-bit keys).
    #[serde(rename = "PS256")]
    Ps256,
}

impl Algorithm {
    /// The JWS `alg` name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
        }
    }

    /// Parses a JWS `alg` name; `None` for anything we do not implement.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            "RS256" => Some(Self::Rs256),
            "PS256" => Some(Self::Ps256),
            _ => None,
        }
    }

    /// The JWS header (`alg`, `typ: at+jwt`, `kid`) as base64url, computed once
    /// per key so signing does not re-serialise it.
    fn header_b64(self, kid: &str) -> Result<String, Error> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'static str,
            typ: &'static str,
            kid: &'a str,
        }
        let json = serde_json::to_vec(&Header {
            alg: self.as_str(),
            typ: crate::ACCESS_TOKEN_TYPE,
            kid,
        })
        .map_err(|e| Error::Key(format!("header: {e}")))?;
        Ok(URL_SAFE_NO_PAD.encode(json))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| {
            Error::Config(format!(
                "unsupported algorithm `{s}` (supported: ES256, EdDSA, RS256, PS256)"
            ))
        })
    }
}

enum KeyPairInner {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A private signing key with its key id: what the issuer signs access tokens with.
///
/// `Debug` prints the key id and algorithm only.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    pair: KeyPairInner,
    header_b64: String,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl SigningKey {
    /// Generates a fresh key.
    pub fn generate(alg: Algorithm, kid: impl Into<String>) -> Result<Self, Error> {
        let pair = match alg {
            Algorithm::Es256 => KeyPairInner::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| Error::Key("P-256 key generation failed".into()))?,
            ),
            Algorithm::EdDsa => KeyPairInner::Ed(
                Ed25519KeyPair::generate()
                    .map_err(|_| Error::Key("Ed25519 key generation failed".into()))?,
            ),
            Algorithm::Rs256 | Algorithm::Ps256 => KeyPairInner::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048)
                    .map_err(|_| Error::Key("RSA key generation failed".into()))?,
            ),
        };
        Self::with_pair(alg, kid.into(), pair)
    }

    /// Loads a key from its PKCS#8 DER document (as stored by the issuer).
    pub fn from_pkcs8(alg: Algorithm, kid: impl Into<String>, der: &[u8]) -> Result<Self, Error> {
        let pair = match alg {
            Algorithm::Es256 => KeyPairInner::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| Error::Key(format!("not a P-256 PKCS#8 key: {e}")))?,
            ),
            Algorithm::EdDsa => KeyPairInner::Ed(
                Ed25519KeyPair::from_pkcs8(der)
                    .map_err(|e| Error::Key(format!("not an Ed25519 PKCS#8 key: {e}")))?,
            ),
            Algorithm::Rs256 | Algorithm::Ps256 => KeyPairInner::Rsa(
                RsaKeyPair::from_pkcs8(der)
                    .map_err(|e| Error::Key(format!("not an RSA PKCS#8 key: {e}")))?,
            ),
        };
        Self::with_pair(alg, kid.into(), pair)
    }

    fn with_pair(alg: Algorithm, kid: String, pair: KeyPairInner) -> Result<Self, Error> {
        if kid.is_empty() {
            return Err(Error::Key("key id must not be empty".into()));
        }
        Ok(Self {
            header_b64: alg.header_b64(&kid)?,
            kid,
            alg,
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// The PKCS#8 (v1) DER document of the private key, for storage. Secret.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, Error> {
        let failed = |_| Error::Key("PKCS#8 export failed".into());
        let doc = match &self.pair {
            KeyPairInner::Ec(p) => p.to_pkcs8v1().map_err(failed)?,
            KeyPairInner::Ed(p) => p.to_pkcs8v1().map_err(failed)?,
            KeyPairInner::Rsa(p) => {
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = p.as_der().map_err(failed)?;
                return Ok(der.as_ref().to_vec());
            }
        };
        Ok(doc.as_ref().to_vec())
    }

    /// The key id (`kid`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The raw public key (uncompressed SEC1 point for P-256, 32 bytes for Ed25519,
    /// the PKCS#1 `RSAPublicKey` DER for RSA).
    fn public_bytes(&self) -> &[u8] {
        match &self.pair {
            KeyPairInner::Ec(p) => p.public_key().as_ref(),
            KeyPairInner::Ed(p) => p.public_key().as_ref(),
            KeyPairInner::Rsa(p) => p.public_key().as_ref(),
        }
    }

    /// The public key as a JWK (`kid`, `alg`, `use: sig`), for the issuer's JWKS.
    pub fn public_jwk(&self) -> Jwk {
        match &self.pair {
            KeyPairInner::Rsa(p) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(p.public_key());
                rsa_jwk(self.alg, &self.kid, &c.n, &c.e)
            }
            _ => public_jwk(self.alg, &self.kid, self.public_bytes()),
        }
    }

    /// The matching verification key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        match &self.pair {
            KeyPairInner::Rsa(p) => Ok(VerifyingKey {
                kid: Some(self.kid.clone()),
                alg: self.alg,
                key: PublicKey::Rsa(Arc::new(RsaPublicKeyComponents::<Vec<u8>>::from(
                    p.public_key(),
                ))),
            }),
            _ => VerifyingKey::from_raw(self.alg, Some(self.kid.clone()), self.public_bytes()),
        }
    }

    /// Signs `claims` as a compact JWS with header `{alg, typ: "at+jwt", kid}`.
    pub fn sign<T: Serialize + ?Sized>(&self, claims: &T) -> Result<String, Error> {
        let payload = serde_json::to_vec(claims).map_err(|e| Error::Key(format!("claims: {e}")))?;
        let mut token = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&self.header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self.sign_bytes(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    /// A raw signature over `message` (used by tests to forge tokens with
    /// arbitrary headers).
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.pair {
            KeyPairInner::Ec(p) => p
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Key("ECDSA signing failed".into())),
            KeyPairInner::Ed(p) => p
                .try_sign(message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Key("Ed25519 signing failed".into())),
            KeyPairInner::Rsa(p) => {
                let padding: &'static dyn aws_lc_rs::signature::RsaEncoding = match self.alg {
                    Algorithm::Ps256 => &RSA_PSS_SHA256,
                    _ => &RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; p.public_modulus_len()];
                p.sign(padding, &self.rng, message, &mut sig)
                    .map_err(|_| Error::Key("RSA signing failed".into()))?;
                Ok(sig)
            }
        }
    }
}

/// Builds a JWKS from signing keys (their public halves only).
pub fn jwk_set<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> JwkSet {
    JwkSet {
        keys: keys.into_iter().map(SigningKey::public_jwk).collect(),
    }
}

fn common_parameters(alg: Algorithm, kid: &str) -> CommonParameters {
    CommonParameters {
        public_key_use: Some(PublicKeyUse::Signature),
        key_algorithm: Some(match alg {
            Algorithm::Es256 => KeyAlgorithm::ES256,
            Algorithm::EdDsa => KeyAlgorithm::EdDSA,
            Algorithm::Rs256 => KeyAlgorithm::RS256,
            Algorithm::Ps256 => KeyAlgorithm::PS256,
        }),
        key_id: Some(kid.to_owned()),
        ..CommonParameters::default()
    }
}

fn rsa_jwk(alg: Algorithm, kid: &str, n: &[u8], e: &[u8]) -> Jwk {
    Jwk {
        common: common_parameters(alg, kid),
        algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: URL_SAFE_NO_PAD.encode(n),
            e: URL_SAFE_NO_PAD.encode(e),
        }),
    }
}

fn public_jwk(alg: Algorithm, kid: &str, public: &[u8]) -> Jwk {
    let common = common_parameters(alg, kid);
    let algorithm = match alg {
        Algorithm::Es256 => {
            // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
            let (x, y) = match public {
                [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
                _ => (&public[..0], &public[..0]),
            };
            AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x: URL_SAFE_NO_PAD.encode(x),
                y: URL_SAFE_NO_PAD.encode(y),
            })
        }
        // RSA keys take `rsa_jwk`; this arm is never reached with an RSA algorithm.
        Algorithm::EdDsa | Algorithm::Rs256 | Algorithm::Ps256 => {
            AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(public),
            })
        }
    };
    Jwk { common, algorithm }
}

/// A parsed public key from a JWKS, bound to exactly one algorithm.
///
/// The algorithm comes from the key (its `kty`/`crv`, and `alg` when the JWK
/// states one), never from the token, so a token cannot choose how its
/// signature is checked.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    alg: Algorithm,
    key: PublicKey,
}

#[derive(Clone)]
enum PublicKey {
    /// EC and Ed25519 keys, parsed once.
    Parsed(Arc<ParsedPublicKey>),
    /// RSA modulus and exponent.
    Rsa(Arc<RsaPublicKeyComponents<Vec<u8>>>),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Parses a JWK. Only `EC`/`P-256` (ES256), `OKP`/`Ed25519` (EdDSA) and
    /// `RSA` (RS256, or PS256 when the JWK's `alg` says so) keys with `use`
    /// absent or `sig` are accepted; a JWK whose `alg` disagrees with its key
    /// type is refused. An RSA JWK without `alg` (Entra ID publishes those) is
    /// an RS256 key: the algorithm OpenID Connect uses unless told otherwise.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, Error> {
        if let Some(u) = &jwk.common.public_key_use
            && *u != PublicKeyUse::Signature
        {
            return Err(Error::Key("JWK `use` is not `sig`".into()));
        }
        let (alg, raw) = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                let x = b64(&p.x)?;
                let y = b64(&p.y)?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(Error::Key("P-256 coordinates must be 32 bytes".into()));
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (Algorithm::Es256, point)
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                (Algorithm::EdDsa, b64(&p.x)?)
            }
            AlgorithmParameters::RSA(p) => {
                let alg = match jwk.common.key_algorithm {
                    None | Some(KeyAlgorithm::RS256) => Algorithm::Rs256,
                    Some(KeyAlgorithm::PS256) => Algorithm::Ps256,
                    Some(other) => {
                        return Err(Error::Key(format!(
                            "RSA JWK `alg` {other:?} is not supported (want RS256 or PS256)"
                        )));
                    }
                };
                let n = b64(&p.n)?;
                let e = b64(&p.e)?;
                // Counted without leading zero bytes: what the key really is.
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if !(2048..=8192).contains(&bits) || e.is_empty() {
                    return Err(Error::Key(format!(
                        "RSA key of {bits} bits refused (want 2048 to 8192)"
                    )));
                }
                return Ok(Self {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key: PublicKey::Rsa(Arc::new(RsaPublicKeyComponents { n, e })),
                });
            }
            _ => {
                return Err(Error::Key(
                    "unsupported key type (want EC P-256, OKP Ed25519 or RSA)".into(),
                ));
            }
        };
        if let Some(stated) = jwk.common.key_algorithm {
            let matches = matches!(
                (stated, alg),
                (KeyAlgorithm::ES256, Algorithm::Es256) | (KeyAlgorithm::EdDSA, Algorithm::EdDsa)
            );
            if !matches {
                return Err(Error::Key(format!(
                    "JWK `alg` {stated:?} does not match its key type ({alg})"
                )));
            }
        }
        Self::from_raw(alg, jwk.common.key_id.clone(), &raw)
    }

    fn from_raw(alg: Algorithm, kid: Option<String>, raw: &[u8]) -> Result<Self, Error> {
        let verification: &'static dyn aws_lc_rs::signature::VerificationAlgorithm = match alg {
            Algorithm::Es256 => &ECDSA_P256_SHA256_FIXED,
            Algorithm::EdDsa => &ED25519,
            Algorithm::Rs256 => &RSA_PKCS1_2048_8192_SHA256,
            Algorithm::Ps256 => &RSA_PSS_2048_8192_SHA256,
        };
        let key = ParsedPublicKey::new(verification, raw)
            .map_err(|e| Error::Key(format!("invalid {alg} public key: {e}")))?;
        Ok(Self {
            kid,
            alg,
            key: PublicKey::Parsed(Arc::new(key)),
        })
    }

    /// The key id, if the JWK had one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Checks a raw signature.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            PublicKey::Parsed(k) => k.verify_sig(message, signature).is_ok(),
            PublicKey::Rsa(k) => {
                let params = match self.alg {
                    Algorithm::Ps256 => &RSA_PSS_2048_8192_SHA256,
                    _ => &RSA_PKCS1_2048_8192_SHA256,
                };
                k.verify(params, message, signature).is_ok()
            }
        }
    }
}

fn b64(s: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Error::Key("JWK coordinate is not base64url".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs8_round_trip_and_jwk() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let k = SigningKey::generate(alg, "k1").unwrap();
            let der = k.to_pkcs8_der().unwrap();
            let k2 = SigningKey::from_pkcs8(alg, "k1", &der).unwrap();
            assert_eq!(
                serde_json::to_value(k.public_jwk()).unwrap(),
                serde_json::to_value(k2.public_jwk()).unwrap()
            );
            let jwk = k.public_jwk();
            let v = VerifyingKey::from_jwk(&jwk).unwrap();
            assert_eq!(v.algorithm(), alg);
            assert_eq!(v.kid(), Some("k1"));
            let sig = k.sign_bytes(b"msg").unwrap();
            assert!(v.verify(b"msg", &sig));
            assert!(!v.verify(b"msh", &sig));
        }
    }

    #[test]
    fn rsa_keys_sign_and_verify_and_are_bound_to_their_algorithm() {
        for alg in [Algorithm::Rs256, Algorithm::Ps256] {
            let k = SigningKey::generate(alg, "r1").unwrap();
            let jwk = k.public_jwk();
            let v = VerifyingKey::from_jwk(&jwk).unwrap();
            assert_eq!(v.algorithm(), alg);
            let sig = k.sign_bytes(b"msg").unwrap();
            assert!(v.verify(b"msg", &sig), "{alg}");
            assert!(!v.verify(b"msh", &sig), "{alg}");
            let der = k.to_pkcs8_der().unwrap();
            let k2 = SigningKey::from_pkcs8(alg, "r1", &der).unwrap();
            assert!(v.verify(b"x", &k2.sign_bytes(b"x").unwrap()));
        }
        // A PKCS#1 signature does not pass as PSS under the same key, and vice versa.
        let rs = SigningKey::generate(Algorithm::Rs256, "r").unwrap();
        let mut as_pss = rs.public_jwk();
        as_pss.common.key_algorithm = Some(KeyAlgorithm::PS256);
        let pss = VerifyingKey::from_jwk(&as_pss).unwrap();
        assert!(!pss.verify(b"m", &rs.sign_bytes(b"m").unwrap()));
        // No `alg` on an RSA JWK: RS256. An HMAC `alg` on an RSA key: refused.
        let mut bare = rs.public_jwk();
        bare.common.key_algorithm = None;
        assert_eq!(
            VerifyingKey::from_jwk(&bare).unwrap().algorithm(),
            Algorithm::Rs256
        );
        bare.common.key_algorithm = Some(KeyAlgorithm::HS256);
        assert!(VerifyingKey::from_jwk(&bare).is_err());
    }

    #[test]
    fn short_rsa_keys_are_refused() {
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "kid": "small", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128]), "e": "AQAB"
        }))
        .unwrap();
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
    }

    #[test]
    fn jwk_serialises_with_kid_alg_use() {
        let k = SigningKey::generate(Algorithm::Es256, "abc").unwrap();
        let v = serde_json::to_value(k.public_jwk()).unwrap();
        assert_eq!(v["kid"], "abc");
        assert_eq!(v["alg"], "ES256");
        assert_eq!(v["use"], "sig");
        assert_eq!(v["kty"], "EC");
        assert_eq!(v["crv"], "P-256");
        let e = SigningKey::generate(Algorithm::EdDsa, "ed").unwrap();
        let v = serde_json::to_value(e.public_jwk()).unwrap();
        assert_eq!(v["kty"], "OKP");
        assert_eq!(v["crv"], "Ed25519");
        assert_eq!(v["alg"], "EdDSA");
    }

    #[test]
    fn wrong_pkcs8_is_an_error_not_a_panic() {
        assert!(SigningKey::from_pkcs8(Algorithm::Es256, "k", b"garbage").is_err());
        let ed = SigningKey::generate(Algorithm::EdDsa, "k").unwrap();
        let der = ed.to_pkcs8_der().unwrap();
        assert!(SigningKey::from_pkcs8(Algorithm::Es256, "k", &der).is_err());
        assert!(SigningKey::generate(Algorithm::Es256, "").is_err());
    }

    #[test]
    fn jwk_with_mismatched_alg_is_refused() {
        let k = SigningKey::generate(Algorithm::Es256, "k").unwrap();
        let mut jwk = k.public_jwk();
        jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        jwk.common.key_algorithm = Some(KeyAlgorithm::HS256);
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
        let mut enc = k.public_jwk();
        enc.common.public_key_use = Some(PublicKeyUse::Encryption);
        assert!(VerifyingKey::from_jwk(&enc).is_err());
    }

    #[test]
    fn symmetric_jwk_is_refused() {
        let jwk: Jwk =
            serde_json::from_str(r#"{"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"h"}"#)
                .unwrap();
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
    }

    #[test]
    fn debug_does_not_leak_private_key() {
        let k = SigningKey::generate(Algorithm::EdDsa, "k").unwrap();
        let der = k.to_pkcs8_der().unwrap();
        let dbg = format!("{k:?}");
        assert!(dbg.contains("[redacted]"));
        assert!(!dbg.contains(&URL_SAFE_NO_PAD.encode(&der)));
    }
}
