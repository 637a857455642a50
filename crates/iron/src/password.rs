//! Passwords and password sets (rotation by id).

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use zeroize::{Zeroize, Zeroizing};

use crate::Error;

/// Minimum password length in UTF-16 code units, iron-webcrypto's `minPasswordlength`.
pub const MIN_PASSWORD_LEN: usize = 32;

/// A sealing password: at least 32 UTF-16 code units (JavaScript `string.length`, so
/// 16 emoji pass and 11 `€` do not).
///
/// The text itself is not kept: the password is only ever used as the HMAC-SHA1 key of
/// PBKDF2, so we store that HMAC already keyed (its inner and outer pad states). This
/// saves two SHA-1 compressions per derived key and means the secret exists in memory
/// only as that state, whose SHA-1 cores wipe themselves on drop (`sha1`'s `zeroize`
/// feature; see the `key_material_is_wiped_on_drop` test). `Debug` never prints it.
#[derive(Clone)]
pub struct Password {
    prf: Hmac<Sha1>,
}

impl Password {
    /// Checks the length and prepares the key. The input `String` is wiped.
    pub fn new(password: impl Into<String>) -> Result<Self, Error> {
        let mut text: String = password.into();
        let result = Self::from_str_checked(&text);
        text.zeroize();
        result
    }

    fn from_str_checked(text: &str) -> Result<Self, Error> {
        if text.encode_utf16().count() < MIN_PASSWORD_LEN {
            return Err(Error::PasswordTooShort);
        }
        let prf = <Hmac<Sha1> as KeyInit>::new_from_slice(text.as_bytes())
            .map_err(|_| Error::Crypto("HMAC-SHA1 rejected the password as a key"))?;
        Ok(Self { prf })
    }

    /// PBKDF2-HMAC-SHA1 with one iteration and a 32-byte output: `T1 || T2[..12]` with
    /// `Ti = HMAC-SHA1(password, salt || be32(i))`. The salt is the seal's salt *text*.
    pub(crate) fn derive_key(&self, salt: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut first = self.prf.clone();
        first.update(salt);
        let mut second = first.clone();
        first.update(&1u32.to_be_bytes());
        second.update(&2u32.to_be_bytes());
        let t1 = Zeroizing::new(first.finalize().into_bytes());
        let t2 = Zeroizing::new(second.finalize().into_bytes());
        let mut key = Zeroizing::new([0u8; 32]);
        key[..20].copy_from_slice(&t1);
        key[20..].copy_from_slice(&t2[..12]);
        key
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A set of passwords keyed by id, for rotation: seal with the highest numeric id
/// (or the one chosen with [`Passwords::sealing_with`]), unseal with whichever id the
/// seal names.
///
/// Ids are decimal integers without leading zeros (`"1"`, `"2"`, `"10"`), exactly the
/// ids iron-session can seal under, at most 15 digits so that JavaScript reads them
/// back exactly. A seal with an empty id (what @hapi/iron writes for a plain password)
/// opens only with a password added through [`Passwords::with_default`].
#[derive(Clone)]
pub struct Passwords {
    /// The id that seals: the highest, unless [`Passwords::sealing_with`] chose another.
    /// Kept apart so "there is one" is a type fact.
    newest: (String, Password),
    /// Every entry (including the newest), sorted by numeric id, for lookups.
    entries: Vec<(String, u64, Password)>,
    default: Option<Password>,
}

impl Passwords {
    /// One password with id `1`, which is what iron-session does with a plain string
    /// password.
    pub fn single(password: impl Into<String>) -> Result<Self, Error> {
        Self::from_pairs([("1", password)])
    }

    /// Several passwords as `(id, password)` pairs, in any order.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut entries: Vec<(String, u64, Password)> = Vec::new();
        for (id, password) in pairs {
            let id: String = id.into();
            let number = parse_id(&id).ok_or_else(|| Error::InvalidPasswordId(id.clone()))?;
            let password = Password::new(password)?;
            if entries.iter().any(|(_, n, _)| *n == number) {
                return Err(Error::DuplicatePasswordId(id));
            }
            entries.push((id, number, password));
        }
        entries.sort_by_key(|(_, n, _)| *n);
        let newest = match entries.last() {
            Some((id, _, pw)) => (id.clone(), pw.clone()),
            None => return Err(Error::NoPasswords),
        };
        Ok(Self {
            newest,
            entries,
            default: None,
        })
    }

    /// Also opens seals whose id field is empty (made by @hapi/iron or iron-webcrypto
    /// from a plain password), with this password. iron-session reads this as the
    /// `default` key of a password map; it is never used for sealing.
    pub fn with_default(mut self, password: impl Into<String>) -> Result<Self, Error> {
        self.default = Some(Password::new(password)?);
        Ok(self)
    }

    /// Seals with `id` (one of the set) instead of the highest id; every id still unseals.
    ///
    /// This is the first step of rolling a new secret out to several processes that
    /// share cookies: each gets the new id to *open* seals while all still *seal* with
    /// the old one; once every process has the new set, the pin is dropped and the
    /// highest id seals. Without it, the first process restarted would seal cookies the
    /// others cannot open yet.
    pub fn sealing_with(mut self, id: &str) -> Result<Self, Error> {
        let (known, _, password) = self
            .entries
            .iter()
            .find(|(known, _, _)| known == id)
            .ok_or_else(|| Error::UnknownPasswordId(crate::error::echo_id(id)))?;
        self.newest = (known.clone(), password.clone());
        Ok(self)
    }

    /// The id new seals are made with: the highest numeric id, unless
    /// [`Passwords::sealing_with`] chose another.
    pub fn current_id(&self) -> &str {
        self.current().0
    }

    /// All configured ids, ascending.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(id, _, _)| id.as_str())
    }

    pub(crate) fn current(&self) -> (&str, &Password) {
        (self.newest.0.as_str(), &self.newest.1)
    }

    /// The password for the id written in a seal; an empty id means `default`.
    pub(crate) fn lookup(&self, id: &str) -> Result<&Password, Error> {
        if id.is_empty() {
            return self
                .default
                .as_ref()
                .ok_or_else(|| Error::UnknownPasswordId(String::new()));
        }
        self.entries
            .iter()
            .find(|(known, _, _)| known == id)
            .map(|(_, _, pw)| pw)
            .ok_or_else(|| Error::UnknownPasswordId(crate::error::echo_id(id)))
    }
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .field("current_id", &self.current_id())
            .field("has_default", &self.default.is_some())
            .finish_non_exhaustive()
    }
}

/// `^(0|[1-9][0-9]{0,14})$`: ids JavaScript's `String(Number(id))` gives back unchanged.
fn parse_id(id: &str) -> Option<u64> {
    let bytes = id.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 15
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes[0] != b'0' || bytes.len() == 1);
    if valid { id.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_key_is_pbkdf2_hmac_sha1_one_round() {
        let pw = "iron-session-vector-password-A-0123456789";
        let password = Password::new(pw).unwrap();
        for salt in [&b""[..], b"pepper", &[b'a'; 64][..], &[b'z'; 200][..]] {
            let mut want = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha1>(pw.as_bytes(), salt, 1, &mut want);
            assert_eq!(*password.derive_key(salt), want);
        }
        // A password longer than SHA-1's block (64 bytes) is hashed first, inside HMAC.
        let long = "x".repeat(200);
        let mut want = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha1>(long.as_bytes(), b"salt", 1, &mut want);
        assert_eq!(*Password::new(long).unwrap().derive_key(b"salt"), want);
    }

    #[test]
    fn key_material_is_wiped_on_drop() {
        // Compile-time proof that the types holding the password and keys zeroize
        // themselves (features `zeroize` of sha1, sha2, aes and cbc). A keyed
        // `Hmac<D>` holds the key only as two `D::Core` states (inner and outer pad),
        // which are these cores.
        fn wipes<T: zeroize::ZeroizeOnDrop>() {}
        wipes::<sha1::block_api::Sha1Core>();
        wipes::<sha2::block_api::Sha256VarCore>();
        wipes::<cbc::Encryptor<aes::Aes256>>();
        wipes::<cbc::Decryptor<aes::Aes256>>();
        wipes::<Zeroizing<[u8; 32]>>();
    }

    #[test]
    fn vector_intermediate_keys() {
        // session_shape_default_ttl: intermediate.encryption_key_hex / integrity_key_hex.
        let password = Password::new("iron-session-vector-password-A-0123456789").unwrap();
        let enc = password
            .derive_key(b"23867690facb10ec5a9aa73cffb734efc56bf6f6f6f5db3b775d8b8b9a13c207");
        let mac = password
            .derive_key(b"42fcd5776196254e4e6376f06029923efd2c52e26a9f79622336ae40b65e7216");
        assert_eq!(
            hex::encode(*enc),
            "a778bea497300ef50410276bcbb4304afdbc23270da8492468713ab3dcd9988e"
        );
        assert_eq!(
            hex::encode(*mac),
            "9f18ad6ef13af55eedf64e9bfaf6f43d9dd2cf5b52da1af738a5db58e8d79172"
        );
    }
}
