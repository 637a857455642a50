//! Access-token claims and decoding without verification.

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::de;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The claims of a Sallyport access token (RFC 9068 profile).
///
/// `exp` is required; the other registered claims default to empty when
/// absent so that tokens of other backends can still be decoded for expiry
/// decisions — [`crate::Verifier`] then insists on `iss`, `aud` and `sub`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    #[serde(default)]
    pub iss: String,
    /// Subject: the user id.
    #[serde(default)]
    pub sub: String,
    /// Audience. On the wire a string or an array (RFC 7519 §4.1.3); a
    /// single audience is written as a plain string.
    #[serde(default, with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry, Unix seconds. A token without `exp` is refused everywhere.
    #[serde(default)]
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// Not before, Unix seconds (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Token id.
    #[serde(default)]
    pub jti: String,
    /// Session id (the issuer's token family).
    #[serde(default)]
    pub sid: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Any other claims.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Decodes the claims **without verifying the signature**.
///
/// Only for decisions about the holder's own token, such as "renew before it
/// expires"; never for authorisation. Fails on malformed tokens and when
/// `exp` is missing.
pub fn decode_unverified(token: &str) -> Result<AccessClaims, Error> {
    let parts = split(token)?;
    let payload = decode_segment(parts.payload)?;
    parse_claims(&payload)
}

/// The token's `exp` (Unix seconds), without verifying the signature.
///
/// Cheap: it decodes the payload into a stack buffer for typical tokens and
/// skips every member but `exp` without allocating — the gateway calls this
/// on every request to decide whether to renew.
pub fn expires_at(token: &str) -> Result<u64, Error> {
    #[derive(Deserialize)]
    struct Exp {
        #[serde(default, deserialize_with = "numeric_date")]
        exp: Option<u64>,
    }

    let parts = split(token)?;
    let mut stack = [0u8; 1024];
    let heap;
    let bytes: &[u8] = match STRICT_B64URL.decode_slice(parts.payload, &mut stack) {
        Ok(n) => &stack[..n],
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            heap = decode_segment(parts.payload)?;
            &heap
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => {
            return Err(Error::Malformed("payload is not base64url"));
        }
    };
    // serde would accept `[exp]` for a struct; a payload must be an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::Malformed("payload is not a JSON object"));
    }
    let parsed: Exp = serde_json::from_slice(bytes)
        .map_err(|_| Error::Malformed("payload is not a JSON object"))?;
    match parsed.exp {
        Some(exp) if exp > 0 => Ok(exp),
        _ => Err(Error::MissingClaim("exp")),
    }
}

/// The three segments of a compact JWS.
pub(crate) struct Parts<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `header.payload`, the signed message.
    pub signing_input: &'a str,
}

pub(crate) fn split(token: &str) -> Result<Parts<'_>, Error> {
    let mut it = token.splitn(4, '.');
    let (Some(header), Some(payload), Some(signature), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(Error::Malformed(
            "not a compact JWS (want three dot-separated parts)",
        ));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(Error::Malformed("empty header or payload"));
    }
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// The only base64url a JWS segment may use (RFC 7515 §2): no padding, and
/// canonical — the unused low bits of the last character must be zero. Spelled out
/// rather than relying on an engine's defaults: with trailing bits allowed, up to
/// 16 different strings decode to the same signature, so a token could be altered
/// (and e.g. bypass a cache or deny-list keyed on the token text) yet still verify.
pub(crate) const STRICT_B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

pub(crate) fn decode_segment(segment: &str) -> Result<Vec<u8>, Error> {
    STRICT_B64URL
        .decode(segment)
        .map_err(|_| Error::Malformed("segment is not base64url"))
}

pub(crate) fn parse_claims(payload: &[u8]) -> Result<AccessClaims, Error> {
    // One pass straight into the struct (the `flatten` makes serde read a
    // map, so a JSON array is refused). Syntax errors mean a malformed
    // token; type errors mean bad claims.
    let claims: AccessClaims = serde_json::from_slice(payload).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Error::InvalidClaims(e.to_string()),
        _ => Error::Malformed("payload is not a JSON object"),
    })?;
    if claims.exp == 0 {
        return Err(Error::MissingClaim("exp"));
    }
    Ok(claims)
}

/// A NumericDate (RFC 7519 §2): an integer or a non-negative fraction, truncated.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> de::Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a NumericDate")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("negative NumericDate"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 {
                // Truncation is the intent: NumericDate fractions are ignored.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Some(v as u64))
            } else {
                Err(E::custom("invalid NumericDate"))
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// `aud` as a string or an array of strings.
mod one_or_many {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        match v {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn segments_must_be_canonical_base64url() {
        assert_eq!(decode_segment("AA").unwrap(), [0]);
        // Same byte, non-zero unused bits; padding; the standard alphabet.
        for bad in ["AB", "AP", "AA==", "+w", "/w"] {
            assert!(decode_segment(bad).is_err(), "{bad} accepted");
        }
        let t = token_with_payload(r#"{"exp": 1700000000}"#);
        let payload = t.split('.').nth(1).unwrap();
        assert_eq!(payload.len() % 4, 2, "the payload ends in a partial group");
        assert!(expires_at(&t).is_ok());
        let last = payload.as_bytes()[payload.len() - 1];
        // Flip the lowest (unused) bit of the last character's 6-bit value.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.iter().position(|&c| c == last).unwrap();
        let flipped = alphabet[idx ^ 1] as char;
        let altered = format!("{}{flipped}", &payload[..payload.len() - 1]);
        let bad = t.replacen(payload, &altered, 1);
        assert!(matches!(expires_at(&bad), Err(Error::Malformed(_))));
        assert!(matches!(decode_unverified(&bad), Err(Error::Malformed(_))));
    }

    fn token_with_payload(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn expires_at_reads_exp_only() {
        let t =
            token_with_payload(r#"{"sub":"x","exp":1700000000,"nested":{"a":[1,2,{"b":null}]}}"#);
        assert_eq!(expires_at(&t).unwrap(), 1_700_000_000);
        let t = token_with_payload(r#"{"exp":1700000000.75}"#);
        assert_eq!(expires_at(&t).unwrap(), 1_700_000_000);
    }

    #[test]
    fn expires_at_handles_large_payloads() {
        let big = "x".repeat(5000);
        let t = token_with_payload(&format!(r#"{{"pad":"{big}","exp":42}}"#));
        assert_eq!(expires_at(&t).unwrap(), 42);
    }

    #[test]
    fn expires_at_rejects_bad_input() {
        assert!(matches!(expires_at(""), Err(Error::Malformed(_))));
        assert!(matches!(expires_at("a.b"), Err(Error::Malformed(_))));
        assert!(matches!(expires_at("a.b.c.d"), Err(Error::Malformed(_))));
        assert!(matches!(expires_at("a.!!!.c"), Err(Error::Malformed(_))));
        assert!(matches!(
            expires_at(&token_with_payload("[1]")),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            expires_at(&token_with_payload(r#"{"sub":"x"}"#)),
            Err(Error::MissingClaim("exp"))
        ));
        assert!(matches!(
            expires_at(&token_with_payload(r#"{"exp":null}"#)),
            Err(Error::MissingClaim("exp"))
        ));
        assert!(expires_at(&token_with_payload(r#"{"exp":-5}"#)).is_err());
        assert!(expires_at(&token_with_payload(r#"{"exp":"soon"}"#)).is_err());
    }

    #[test]
    fn decode_unverified_reads_all_claims() {
        let t = token_with_payload(
            r#"{"iss":"i","sub":"u","aud":"a","exp":10,"iat":5,"jti":"j","sid":"s",
                "name":"Alice","roles":["r"],"tenant":"t1"}"#,
        );
        let c = decode_unverified(&t).unwrap();
        assert_eq!(c.iss, "i");
        assert_eq!(c.aud, vec!["a".to_owned()]);
        assert_eq!(c.exp, 10);
        assert_eq!(c.sid, "s");
        assert_eq!(c.name.as_deref(), Some("Alice"));
        assert_eq!(c.roles, vec!["r".to_owned()]);
        assert_eq!(c.extra["tenant"], "t1");
        let t = token_with_payload(r#"{"aud":["a","b"],"exp":10}"#);
        assert_eq!(decode_unverified(&t).unwrap().aud.len(), 2);
    }

    #[test]
    fn decode_unverified_requires_exp() {
        let t = token_with_payload(r#"{"sub":"u"}"#);
        assert!(matches!(
            decode_unverified(&t),
            Err(Error::MissingClaim("exp"))
        ));
        let t = token_with_payload(r#"{"exp":10,"roles":"admin"}"#);
        assert!(matches!(
            decode_unverified(&t),
            Err(Error::InvalidClaims(_))
        ));
    }

    #[test]
    fn aud_serialises_single_as_string() {
        let c = AccessClaims {
            aud: vec!["api".into()],
            exp: 1,
            ..AccessClaims::default()
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["aud"], "api");
    }
}
