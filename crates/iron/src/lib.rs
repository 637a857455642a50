//! Iron `Fe26.2` seals, byte-compatible with the npm packages iron-session 9 (including
//! its `~2` suffix) and @hapi/iron 7.
//!
//! A seal is JSON encrypted with AES-256-CBC and authenticated with HMAC-SHA256, both
//! keys derived from a password with PBKDF2-HMAC-SHA1 (one iteration, per-seal random
//! salts). A Next.js app using iron-session with the same password reads the seals this
//! crate writes, and this crate reads the app's cookies.
//!
//! ```
//! use sallyport_iron::{Passwords, seal, unseal};
//!
//! let passwords = Passwords::single("a-password-of-at-least-32-characters!")?;
//! let now_ms = 1_767_225_600_000; // pass `sallyport_iron::now_ms()` in real code
//! let sealed = seal(r#"{"isLoggedIn":true}"#, &passwords, 14 * 24 * 3600, now_ms)?;
//! assert!(sealed.starts_with("Fe26.2*1*") && sealed.ends_with("~2"));
//!
//! let opened = unseal(&sealed, &passwords, now_ms + 1000)?;
//! assert_eq!(opened.json, r#"{"isLoggedIn":true}"#);
//! assert_eq!(opened.password_id, "1");
//! # Ok::<(), sallyport_iron::Error>(())
//! ```
//!
//! # Strictness
//!
//! Unsealing follows iron-session's checks in iron-session's order (expiry before the
//! password lookup and the MAC), with these deliberate choices where the reference is
//! lenient or disagrees with itself across Node versions:
//!
//! * **Base64:** the iv, ciphertext and HMAC fields must be *canonical unpadded
//!   base64url* (alphabet `[A-Za-z0-9_-]`, no `=`, no whitespace, zero unused bits).
//!   Every real sealer writes exactly that; only hand-altered seals differ.
//! * **Empty salts** are rejected (the reference derives from a random salt instead,
//!   so it always fails too, just unpredictably).
//! * **Passwords** shorter than 32 UTF-16 units are refused when the [`Passwords`] set
//!   is built, not at first use.
//!
//! The full manual (layout, `~2`, rotation, threats) is the [`manual`] module.

#![forbid(unsafe_code)]

mod error;
mod json;
mod password;

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use error::{Error, Field, MAX_ECHOED_ID, Malformed, UnsealReason};
pub use json::to_js_json;
pub use password::{MIN_PASSWORD_LEN, Password, Passwords};

#[doc = include_str!("../../../docs/iron.md")]
pub mod manual {}

/// The seal prefix: `Fe26.` plus MAC format version `2`.
pub const PREFIX: &str = "Fe26.2";
/// iron-session 9's persistence-version suffix, appended to every seal.
pub const SUFFIX: &str = "~2";
/// Clock skew allowance: a seal counts as expired only from `expiration + 60 s` on.
pub const SKEW_MS: u64 = 60_000;
/// iron-session's default ttl: 14 days, in seconds.
pub const DEFAULT_TTL_SECS: u64 = 14 * 24 * 3600;

type Aes256CbcEnc = cbc::Encryptor<Aes256>;
type Aes256CbcDec = cbc::Decryptor<Aes256>;

/// A successfully unsealed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsealed {
    /// The JSON text, exactly as sealed (after dropping one leading BOM and replacing
    /// invalid UTF-8 with U+FFFD, as the reference's `TextDecoder` does). It is known to
    /// parse as JSON. iron-session turns a sealed `null` into `{}`; that mapping is left
    /// to the session layer.
    pub json: String,
    /// The id of the password that opened the seal (empty for a `default` password).
    /// When it is not [`Passwords::current_id`], the seal should be re-sealed.
    pub password_id: String,
    /// The seal's expiration in ms since the epoch; `None` when it never expires.
    /// Values beyond `u64` are clamped to `u64::MAX`.
    pub expires_at_ms: Option<u64>,
}

/// The three random draws of a seal, in the order iron-session makes them.
///
/// Only for reproducing fixed test vectors via [`seal_with_random`]: reusing these
/// values across seals removes the per-seal key separation the format relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealRandom {
    /// AES-CBC iv (16 bytes).
    pub iv: [u8; 16],
    /// Encryption salt bytes; the seal carries their lowercase hex text.
    pub encryption_salt: [u8; 32],
    /// HMAC salt bytes; the seal carries their lowercase hex text.
    pub hmac_salt: [u8; 32],
}

impl SealRandom {
    /// Fresh draws from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        // One system call for all 80 bytes; the split mirrors iron-session's draw order.
        let mut bytes = [0u8; 80];
        getrandom::fill(&mut bytes).map_err(Error::Random)?;
        let mut r = SealRandom {
            iv: [0; 16],
            encryption_salt: [0; 32],
            hmac_salt: [0; 32],
        };
        r.iv.copy_from_slice(&bytes[..16]);
        r.encryption_salt.copy_from_slice(&bytes[16..48]);
        r.hmac_salt.copy_from_slice(&bytes[48..]);
        Ok(r)
    }
}

/// iron-session's expiry rule: a seal expiring at `expires_at_ms` is expired once
/// `expires_at_ms <= now_ms − 60 s` ([`SKEW_MS`]). The one definition, for callers that
/// keep an unsealed result around (e.g. a cache) and must re-check it later.
pub fn is_expired(expires_at_ms: u64, now_ms: u64) -> bool {
    expires_at_ms <= now_ms.saturating_sub(SKEW_MS)
}

/// Milliseconds since the Unix epoch ([`sallyport_clock::now_ms`], the one read of the wall clock).
/// Everything else takes `now_ms` as a parameter so tests control time.
pub fn now_ms() -> u64 {
    sallyport_clock::now_ms()
}

/// The expiration iron-session writes: `now_ms + ttl·1000`, or none for ttl 0.
pub fn expiration_for(ttl_secs: u64, now_ms: u64) -> Option<u64> {
    (ttl_secs != 0).then(|| now_ms.saturating_add(ttl_secs.saturating_mul(1000)))
}

/// Seals JSON text with the newest password (highest id) and iron-session's `~2` suffix.
///
/// `json` is encrypted byte for byte as given (not reformatted, so the exact bytes of
/// another implementation can be reproduced), but it must be JSON: a seal that no
/// reader could open is refused with [`Error::PayloadJson`]. `ttl_secs` 0 means the
/// seal never expires.
pub fn seal(
    json: &str,
    passwords: &Passwords,
    ttl_secs: u64,
    now_ms: u64,
) -> Result<String, Error> {
    serde_json::from_str::<serde::de::IgnoredAny>(json).map_err(Error::PayloadJson)?;
    let random = SealRandom::generate()?;
    seal_with_random(json, passwords, expiration_for(ttl_secs, now_ms), &random)
}

/// Seals with given random draws and an explicit expiration (ms since the epoch).
/// Deterministic: this is how the test vectors are reproduced byte for byte. Real seals
/// must use [`seal`], which draws fresh randomness.
/// `json` is not checked here, so that deliberately broken plaintexts can be sealed
/// for tests.
pub fn seal_with_random(
    json: &str,
    passwords: &Passwords,
    expires_at_ms: Option<u64>,
    random: &SealRandom,
) -> Result<String, Error> {
    let (id, password) = passwords.current();
    let mut enc_salt = [0u8; 64];
    let mut hmac_salt = [0u8; 64];
    hex_lower(&random.encryption_salt, &mut enc_salt);
    hex_lower(&random.hmac_salt, &mut hmac_salt);

    let key = password.derive_key(&enc_salt);
    let ciphertext = Aes256CbcEnc::new_from_slices(&key[..], &random.iv)
        .map_err(|_| Error::Crypto("AES-256-CBC rejected the key or iv length"))?
        .encrypt_padded_vec::<Pkcs7>(json.as_bytes());

    let mut out = String::with_capacity(sealed_len(id.len(), json.len()));
    out.push_str(PREFIX);
    out.push('*');
    out.push_str(id);
    out.push('*');
    push_ascii(&mut out, &enc_salt);
    out.push('*');
    URL_SAFE_NO_PAD.encode_string(random.iv, &mut out);
    out.push('*');
    URL_SAFE_NO_PAD.encode_string(&ciphertext, &mut out);
    out.push('*');
    if let Some(exp) = expires_at_ms {
        use std::fmt::Write as _;
        let _ = write!(out, "{exp}");
    }

    let integrity_key = password.derive_key(&hmac_salt);
    let mut mac = hmac_for(&integrity_key)?;
    mac.update(out.as_bytes());
    let mac = mac.finalize().into_bytes();
    out.push('*');
    push_ascii(&mut out, &hmac_salt);
    out.push('*');
    URL_SAFE_NO_PAD.encode_string(mac, &mut out);
    out.push_str(SUFFIX);
    Ok(out)
}

/// Serializes `value` as JavaScript's `JSON.stringify` would (property order, number
/// format) and seals it. NaN and infinite numbers are refused, as iron-session does.
///
/// Unlike iron-session, a top-level array stays an array (iron-session's `{...data}`
/// spread turns `[1,2]` into `{"0":1,"1":2}`), so that typed values round-trip.
pub fn seal_value<T: serde::Serialize + ?Sized>(
    value: &T,
    passwords: &Passwords,
    ttl_secs: u64,
    now_ms: u64,
) -> Result<String, Error> {
    // Our own serializer's output is JSON by construction: skip `seal`'s check.
    let json = value_to_js_json(value)?;
    let random = SealRandom::generate()?;
    seal_with_random(&json, passwords, expiration_for(ttl_secs, now_ms), &random)
}

/// Serializes a value to the JSON text [`seal_value`] would encrypt.
pub fn value_to_js_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    lossless::check(value)?;
    let value = serde_json::to_value(value).map_err(Error::Serialize)?;
    Ok(to_js_json(&value))
}

/// Unseals and deserializes. Returns the value and the id of the password that opened it.
pub fn unseal_value<T: serde::de::DeserializeOwned>(
    sealed: &str,
    passwords: &Passwords,
    now_ms: u64,
) -> Result<(T, String), Error> {
    // `open` skips unseal's JSON check: parsing into `T` checks the same, only once.
    let opened = open(sealed, passwords, now_ms)?;
    let value = serde_json::from_str(&opened.json).map_err(Error::PayloadJson)?;
    Ok((value, opened.password_id))
}

/// Verifies and decrypts a seal (with or without the `~2` suffix).
///
/// Checks, in iron-session 9's order: field count, prefix, expiration syntax, expiry
/// (with 60 s skew), password id, MAC (constant time), decryption, JSON. Never panics.
pub fn unseal(sealed: &str, passwords: &Passwords, now_ms: u64) -> Result<Unsealed, Error> {
    let opened = open(sealed, passwords, now_ms)?;
    serde_json::from_str::<serde::de::IgnoredAny>(&opened.json).map_err(Error::PayloadJson)?;
    Ok(opened)
}

/// [`unseal`] up to and including the UTF-8 decoding; the JSON is not yet checked.
fn open(sealed: &str, passwords: &Passwords, now_ms: u64) -> Result<Unsealed, Error> {
    // 1. Everything from the first `~` on is iron-session's version suffix; ignored.
    let body = sealed.split_once('~').map_or(sealed, |(body, _)| body);

    // 2. Exactly eight fields.
    let mut fields = [""; 8];
    let mut count = 0;
    for part in body.split('*') {
        let slot = fields
            .get_mut(count)
            .ok_or(Error::Malformed(Malformed::ComponentCount))?;
        *slot = part;
        count += 1;
    }
    if count != 8 {
        return Err(Error::Malformed(Malformed::ComponentCount));
    }
    let [
        prefix,
        id,
        enc_salt,
        iv_b64,
        ct_b64,
        expiration,
        hmac_salt,
        hmac_b64,
    ] = fields;

    // 3. Prefix.
    if prefix != PREFIX {
        return Err(Error::Malformed(Malformed::Prefix));
    }

    // 4. Expiration syntax, then expiry; before the password and the MAC, like iron.
    let expires_at_ms = parse_expiration(expiration)?;
    if expires_at_ms.is_some_and(|exp| is_expired(exp, now_ms)) {
        return Err(Error::Expired);
    }

    // 5. Password by id.
    let password = passwords.lookup(id)?;

    // 6.–8. MAC over the first six fields' text, verified in constant time.
    if hmac_salt.is_empty() {
        return Err(Error::BadMac);
    }
    // The MAC covers the first six fields and the five `*` between them.
    let mac_base = body
        .len()
        .checked_sub(hmac_salt.len() + hmac_b64.len() + 2)
        .and_then(|len| body.get(..len))
        .ok_or(Error::BadMac)?;
    let mut mac_buf = [0u8; 48];
    if hmac_b64.len() > 64 {
        return Err(Error::BadMac);
    }
    let mac_len = URL_SAFE_NO_PAD
        .decode_slice(hmac_b64, &mut mac_buf)
        .map_err(|_| Error::Malformed(Malformed::Base64(Field::Hmac)))?;
    let integrity_key = password.derive_key(hmac_salt.as_bytes());
    let mut mac = hmac_for(&integrity_key)?;
    mac.update(mac_base.as_bytes());
    mac.verify_slice(&mac_buf[..mac_len])
        .map_err(|_| Error::BadMac)?;

    // 9.–10. Decrypt.
    let mut iv = [0u8; 24];
    if iv_b64.len() > 32 {
        return Err(Error::Decryption);
    }
    let iv_len = URL_SAFE_NO_PAD
        .decode_slice(iv_b64, &mut iv)
        .map_err(|_| Error::Malformed(Malformed::Base64(Field::Iv)))?;
    let iv: [u8; 16] = iv[..iv_len].try_into().map_err(|_| Error::Decryption)?;
    let mut buf = URL_SAFE_NO_PAD
        .decode(ct_b64)
        .map_err(|_| Error::Malformed(Malformed::Base64(Field::Ciphertext)))?;
    if buf.is_empty() || buf.len() % 16 != 0 || enc_salt.is_empty() {
        return Err(Error::Decryption);
    }
    let key = password.derive_key(enc_salt.as_bytes());
    let plain_len = Aes256CbcDec::new_from_slices(&key[..], &iv)
        .map_err(|_| Error::Crypto("AES-256-CBC rejected the key or iv length"))?
        .decrypt_padded::<Pkcs7>(&mut buf)
        .map_err(|_| Error::Decryption)?
        .len();
    buf.truncate(plain_len);

    // 11. TextDecoder semantics: drop one BOM, replace invalid UTF-8; then JSON.
    if buf.starts_with(b"\xEF\xBB\xBF") {
        buf.drain(..3);
    }
    let json = match String::from_utf8(buf) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok(Unsealed {
        json,
        password_id: id.to_owned(),
        expires_at_ms,
    })
}

/// Empty, or `^[1-9][0-9]*$`; huge values clamp to `u64::MAX` (never expired).
fn parse_expiration(field: &str) -> Result<Option<u64>, Error> {
    if field.is_empty() {
        return Ok(None);
    }
    let b = field.as_bytes();
    if b.first() == Some(&b'0') || !b.iter().all(u8::is_ascii_digit) {
        return Err(Error::Malformed(Malformed::Expiration));
    }
    let value = b.iter().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Ok(Some(value))
}

fn hmac_for(key: &Zeroizing<[u8; 32]>) -> Result<Hmac<Sha256>, Error> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(&key[..])
        .map_err(|_| Error::Crypto("HMAC-SHA256 rejected a 32-byte key"))
}

fn hex_lower(bytes: &[u8; 32], out: &mut [u8; 64]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

fn push_ascii(out: &mut String, ascii: &[u8]) {
    out.extend(ascii.iter().map(|&b| char::from(b)));
}

/// Seal length for an id of `id_len` bytes, a 13-digit expiration and `json_len` bytes.
fn sealed_len(id_len: usize, json_len: usize) -> usize {
    let ct = 16 * (json_len / 16 + 1);
    id_len + 221 + ct.div_ceil(3) * 4 + 8
}

mod lossless;
