//! OAuth client authentication (RFC 6749 §2.3) for `/oauth/token` and `/oauth/revoke`.
//!
//! Why it matters even for a password-grant server: a request carrying client
//! credentials the server cannot check must not be treated as if it carried none —
//! otherwise a "confidential" client's secret protects nothing. So a presented secret
//! is always checked, an unknown client or wrong secret is `401 invalid_client`
//! (§5.2), and requests without any secret are accepted only from public clients.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::config::ClientConfig;
use crate::error::{Error, Result};

/// Why client authentication failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuthError {
    /// `401 invalid_client` (unknown client, wrong secret, unsupported scheme,
    /// credentials required but missing).
    InvalidClient(&'static str),
    /// `400 invalid_request` (two authentication methods at once, mismatching ids).
    InvalidRequest(&'static str),
}

/// The configured OAuth clients, secrets kept only as SHA-256 digests.
#[derive(Clone)]
pub struct ClientRegistry {
    /// `client_id` → the client.
    clients: HashMap<String, RegisteredClient>,
    allow_public: bool,
}

/// One registered client as the OpenID provider side sees it (its secret stays inside
/// the registry).
#[derive(Clone, Debug)]
pub struct RegisteredClient {
    /// Digest of its secret (`None`: a public client).
    secret: Option<[u8; 32]>,
    /// Exact redirect URIs for `/oauth/authorize`.
    pub redirect_uris: Vec<String>,
    /// Exact URIs `/oauth/logout` may return to.
    pub post_logout_redirect_uris: Vec<String>,
    /// Back-channel logout receiver.
    pub backchannel_logout_uri: Option<String>,
}

impl RegisteredClient {
    /// Whether the client authenticates with a secret.
    pub fn is_confidential(&self) -> bool {
        self.secret.is_some()
    }
}

/// A redirect or back-channel URI must be absolute, `https` (or `http` on a loopback
/// host, for development), and carry no fragment (RFC 6749 §3.1.2).
fn check_client_uri(uri: &str) -> std::result::Result<(), &'static str> {
    let parsed = url::Url::parse(uri).map_err(|_| "must be an absolute URL")?;
    if parsed.fragment().is_some() {
        return Err("must not contain a fragment");
    }
    if parsed.as_str() != uri && format!("{}/", uri) != parsed.as_str() {
        // Exact matching is done on the configured text; refuse forms a browser or
        // client would normalise differently (e.g. upper-case host, default port).
        return Err(
            "must be written in normalised form (lower-case scheme and host, no default port)",
        );
    }
    match (parsed.scheme(), parsed.host()) {
        ("https", Some(_)) => Ok(()),
        ("http", Some(url::Host::Domain("localhost"))) => Ok(()),
        ("http", Some(url::Host::Ipv4(ip))) if ip.is_loopback() => Ok(()),
        ("http", Some(url::Host::Ipv6(ip))) if ip.is_loopback() => Ok(()),
        _ => Err("must be an https URL (http only for localhost or a loopback address)"),
    }
}

impl fmt::Debug for ClientRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRegistry")
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .field("allow_public", &self.allow_public)
            .finish()
    }
}

/// Compared against when the presented client is unknown, so that an unknown id
/// costs the same work as a wrong secret.
const DUMMY_DIGEST: [u8; 32] = [0x5a; 32];

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl ClientRegistry {
    /// Validates the `clients` table; errors name the offending entry.
    pub fn from_config(clients: &[ClientConfig], allow_public: bool) -> Result<Self> {
        let mut map = HashMap::new();
        for (i, c) in clients.iter().enumerate() {
            let setting = |field: &str| format!("clients[{i}].{field}");
            if c.id.is_empty() || c.id.len() > 256 {
                return Err(Error::config(&setting("id"), "must be 1 to 256 bytes"));
            }
            let hash = match (&c.secret, &c.secret_sha256) {
                (Some(_), Some(_)) => {
                    return Err(Error::config(
                        &setting("secret"),
                        "give either secret or secret_sha256, not both",
                    ));
                }
                (Some(secret), None) => {
                    if secret.len() < 16 {
                        return Err(Error::config(
                            &setting("secret"),
                            "must be at least 16 bytes (use a random secret)",
                        ));
                    }
                    Some(digest(secret))
                }
                (None, Some(hexed)) => {
                    let mut out = [0u8; 32];
                    hex::decode_to_slice(hexed.trim(), &mut out).map_err(|_| {
                        Error::config(&setting("secret_sha256"), "must be 64 hex digits")
                    })?;
                    Some(out)
                }
                (None, None) => None,
            };
            for (field, uris) in [
                ("redirect_uris", &c.redirect_uris),
                ("post_logout_redirect_uris", &c.post_logout_redirect_uris),
            ] {
                for (j, uri) in uris.iter().enumerate() {
                    check_client_uri(uri).map_err(|why| {
                        Error::config(&setting(&format!("{field}[{j}]")), format!("`{uri}` {why}"))
                    })?;
                }
            }
            if let Some(uri) = &c.backchannel_logout_uri {
                check_client_uri(uri).map_err(|why| {
                    Error::config(&setting("backchannel_logout_uri"), format!("`{uri}` {why}"))
                })?;
            }
            let client = RegisteredClient {
                secret: hash,
                redirect_uris: c.redirect_uris.clone(),
                post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
                backchannel_logout_uri: c.backchannel_logout_uri.clone(),
            };
            if map.insert(c.id.clone(), client).is_some() {
                return Err(Error::config(
                    &setting("id"),
                    format!("duplicate client id `{}`", c.id),
                ));
            }
        }
        Ok(ClientRegistry {
            clients: map,
            allow_public,
        })
    }

    /// A registered client.
    pub fn client(&self, client_id: &str) -> Option<&RegisteredClient> {
        self.clients.get(client_id)
    }

    /// Whether requests without client authentication are accepted.
    pub fn allows_public(&self) -> bool {
        self.allow_public
    }

    /// The `*_endpoint_auth_methods_supported` discovery value.
    pub fn auth_methods(&self) -> Vec<String> {
        let mut methods = vec!["client_secret_basic".into(), "client_secret_post".into()];
        if self.allow_public || self.clients.values().any(|c| c.secret.is_none()) {
            methods.push("none".into());
        }
        methods
    }

    /// Authenticates a request from its `Authorization` header (raw bytes) and the
    /// form's `client_id` / `client_secret`. Empty parameters count as omitted (RFC
    /// 6749 §3.2). Returns the authenticated or self-declared `client_id`, if any.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        form_id: Option<&str>,
        form_secret: Option<&str>,
    ) -> std::result::Result<Option<String>, ClientAuthError> {
        let form_id = form_id.filter(|s| !s.is_empty());
        let form_secret = form_secret.filter(|s| !s.is_empty());
        let (id, secret) = match authorization {
            Some(raw) => {
                let (id, secret) = parse_basic(raw)?;
                if form_secret.is_some() {
                    return Err(ClientAuthError::InvalidRequest(
                        "more than one client authentication method used",
                    ));
                }
                if form_id.is_some_and(|f| f != id) {
                    return Err(ClientAuthError::InvalidRequest(
                        "client_id does not match the Authorization header",
                    ));
                }
                (
                    Some(id).filter(|s| !s.is_empty()),
                    Some(secret).filter(|s| !s.is_empty()),
                )
            }
            None => (form_id.map(str::to_owned), form_secret.map(str::to_owned)),
        };
        let failed = ClientAuthError::InvalidClient("client authentication failed");
        match (id, secret) {
            (None, None) if self.allow_public => Ok(None),
            (None, None) => Err(ClientAuthError::InvalidClient(
                "client authentication required",
            )),
            (None, Some(_)) => Err(ClientAuthError::InvalidClient(
                "client secret without client id",
            )),
            (Some(id), None) => match self.clients.get(&id).map(|c| c.secret) {
                Some(None) => Ok(Some(id)),
                None if self.allow_public => Ok(Some(id)),
                // A confidential client must prove itself.
                Some(Some(_)) | None => Err(failed),
            },
            (Some(id), Some(secret)) => {
                let expected = self.clients.get(&id).and_then(|c| c.secret);
                let presented = digest(&secret);
                let equal = aws_lc_rs::constant_time::verify_slices_are_equal(
                    &presented,
                    expected.as_ref().unwrap_or(&DUMMY_DIGEST),
                )
                .is_ok();
                if equal && expected.is_some() {
                    Ok(Some(id))
                } else {
                    Err(failed)
                }
            }
        }
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(raw: &[u8]) -> std::result::Result<(String, String), ClientAuthError> {
    let malformed = ClientAuthError::InvalidClient("malformed Basic client credentials");
    let text = std::str::from_utf8(raw).map_err(|_| malformed.clone())?;
    let (scheme, rest) = text
        .trim()
        .split_once(' ')
        .ok_or(ClientAuthError::InvalidClient(
            "unsupported client authentication scheme",
        ))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ClientAuthError::InvalidClient(
            "unsupported client authentication scheme (use Basic or client_secret_post)",
        ));
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .map_err(|_| malformed.clone())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed.clone())?;
    let (id, secret) = decoded.split_once(':').ok_or(malformed.clone())?;
    Ok((
        form_decode(id).ok_or(malformed.clone())?,
        form_decode(secret).ok_or(malformed)?,
    ))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space, `%XX`
/// a byte. `None` for a broken escape or bytes that are not UTF-8.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "s3cret with spaces & symbols";

    fn registry(allow_public: bool) -> ClientRegistry {
        ClientRegistry::from_config(
            &[
                ClientConfig {
                    id: "gateway".into(),
                    secret: Some(SECRET.into()),
                    ..ClientConfig::default()
                },
                ClientConfig {
                    id: "hashed".into(),
                    secret_sha256: Some(hex::encode(digest("another-long-secret"))),
                    ..ClientConfig::default()
                },
                ClientConfig {
                    id: "spa".into(),
                    ..ClientConfig::default()
                },
            ],
            allow_public,
        )
        .unwrap()
    }

    fn basic(id: &str, secret: &str) -> Vec<u8> {
        let enc = |s: &str| {
            serde_urlencoded::to_string([("", s)])
                .unwrap()
                .trim_start_matches('=')
                .to_owned()
        };
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
        )
        .into_bytes()
    }

    #[test]
    fn basic_and_post_authenticate_known_clients() {
        let r = registry(false);
        let h = basic("gateway", SECRET);
        assert_eq!(
            r.authenticate(Some(&h), None, None).unwrap().as_deref(),
            Some("gateway")
        );
        assert_eq!(
            r.authenticate(None, Some("gateway"), Some(SECRET))
                .unwrap()
                .as_deref(),
            Some("gateway")
        );
        assert_eq!(
            r.authenticate(None, Some("hashed"), Some("another-long-secret"))
                .unwrap()
                .as_deref(),
            Some("hashed")
        );
        // A registered public client identifies itself without a secret.
        assert_eq!(
            r.authenticate(None, Some("spa"), None).unwrap().as_deref(),
            Some("spa")
        );
    }

    #[test]
    fn unknown_clients_and_wrong_secrets_are_invalid_client() {
        for allow_public in [false, true] {
            let r = registry(allow_public);
            type Attempt<'a> = (Option<Vec<u8>>, Option<&'a str>, Option<&'a str>);
            let bad: Vec<Attempt> = vec![
                (Some(basic("unknown-client", "secret")), None, None),
                (Some(basic("gateway", "wrong")), None, None),
                (Some(basic("gateway", "")), None, None),
                (None, Some("gateway"), Some("wrong")),
                (None, Some("gateway"), None),
                (None, Some("unknown-client"), Some("secret")),
                (None, None, Some(SECRET)),
                (Some(b"Bearer abc".to_vec()), None, None),
                (Some(b"Basic !!!".to_vec()), None, None),
                (Some(b"Basic".to_vec()), None, None),
                (
                    Some(format!("Basic {}", STANDARD.encode("nocolon")).into_bytes()),
                    None,
                    None,
                ),
                (Some(vec![0xff, 0xfe]), None, None),
            ];
            for (header, id, secret) in bad {
                let got = r.authenticate(header.as_deref(), id, secret);
                assert!(
                    matches!(got, Err(ClientAuthError::InvalidClient(_))),
                    "{header:?} {id:?} {secret:?} → {got:?}"
                );
            }
        }
    }

    #[test]
    fn public_access_depends_on_the_setting() {
        let open = registry(true);
        assert_eq!(open.authenticate(None, None, None), Ok(None));
        assert_eq!(open.authenticate(None, Some(""), Some("")), Ok(None));
        // The gateway in client_secret_basic mode without a secret sends `id:`.
        let h = basic("gw", "");
        assert_eq!(
            open.authenticate(Some(&h), None, None).unwrap().as_deref(),
            Some("gw")
        );
        let closed = registry(false);
        for got in [
            closed.authenticate(None, None, None),
            closed.authenticate(Some(&h), None, None),
            closed.authenticate(None, Some("gw"), None),
        ] {
            assert!(
                matches!(got, Err(ClientAuthError::InvalidClient(_))),
                "{got:?}"
            );
        }
    }

    #[test]
    fn two_methods_at_once_are_invalid_request() {
        let r = registry(true);
        let h = basic("gateway", SECRET);
        assert!(matches!(
            r.authenticate(Some(&h), Some("gateway"), Some(SECRET)),
            Err(ClientAuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            r.authenticate(Some(&h), Some("other"), None),
            Err(ClientAuthError::InvalidRequest(_))
        ));
        // Repeating the same client_id in the form is harmless.
        assert!(r.authenticate(Some(&h), Some("gateway"), None).is_ok());
    }

    #[test]
    fn bad_client_config_names_the_entry() {
        let cases = [
            (ClientConfig::default(), "clients[0].id"),
            (
                ClientConfig {
                    id: "a".into(),
                    secret: Some("short".into()),
                    ..ClientConfig::default()
                },
                "clients[0].secret",
            ),
            (
                ClientConfig {
                    id: "a".into(),
                    secret_sha256: Some("zz".into()),
                    ..ClientConfig::default()
                },
                "clients[0].secret_sha256",
            ),
        ];
        for (c, name) in cases {
            let err = ClientRegistry::from_config(&[c], true)
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
        }
        let dup = ClientConfig {
            id: "a".into(),
            ..ClientConfig::default()
        };
        let err = ClientRegistry::from_config(&[dup.clone(), dup], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("clients[1].id"), "{err}");
    }

    #[test]
    fn client_uris_must_be_exact_https_or_loopback() {
        let with = |field: &str, uri: &str| {
            let mut c = ClientConfig {
                id: "app".into(),
                ..ClientConfig::default()
            };
            match field {
                "redirect_uris" => c.redirect_uris = vec![uri.into()],
                "post_logout_redirect_uris" => c.post_logout_redirect_uris = vec![uri.into()],
                _ => c.backchannel_logout_uri = Some(uri.into()),
            }
            ClientRegistry::from_config(&[c], false)
        };
        for field in [
            "redirect_uris",
            "post_logout_redirect_uris",
            "backchannel_logout_uri",
        ] {
            for good in [
                "https://app.example/cb",
                "https://app.example/cb?x=1",
                "http://127.0.0.1:3000/cb",
                "http://localhost:3000/cb",
                "http://[::1]:3000/cb",
            ] {
                assert!(with(field, good).is_ok(), "{field} {good}");
            }
            for bad in [
                "/cb",
                "http://app.example/cb",
                "https://app.example/cb#frag",
                "https://APP.example/cb",
                "https://app.example:443/cb",
                "javascript:alert(1)",
                "ftp://app.example/cb",
            ] {
                let err = with(field, bad).unwrap_err().to_string();
                assert!(
                    err.contains(&format!("clients[0].{field}")),
                    "{field} {bad}: {err}"
                );
            }
        }
        let r = ClientRegistry::from_config(
            &[ClientConfig {
                id: "app".into(),
                redirect_uris: vec!["https://app.example/cb".into()],
                backchannel_logout_uri: Some("https://app.example/bc".into()),
                ..ClientConfig::default()
            }],
            false,
        )
        .unwrap();
        let c = r.client("app").unwrap();
        assert_eq!(c.redirect_uris, ["https://app.example/cb"]);
        assert!(!c.is_confidential());
        assert!(r.client("other").is_none());
    }

    #[test]
    fn debug_shows_no_secrets() {
        let dbg = format!("{:?}", registry(true));
        assert!(!dbg.contains(&hex::encode(digest(SECRET))));
        let c = ClientConfig {
            id: "x".into(),
            secret: Some(SECRET.into()),
            ..ClientConfig::default()
        };
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a+b%26c%3D").as_deref(), Some("a b&c="));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%ff"), None);
    }
}
