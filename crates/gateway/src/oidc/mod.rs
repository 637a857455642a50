//! `backend.kind = "oidc"`: the gateway as an OpenID Connect relying party.
//!
//! - [`discovery`]: the provider's discovery document, fetched (bounded) at start-up and
//!   checked: its `issuer` must be exactly `backend.issuer`, and it must offer PKCE S256.
//! - [`flow`]: login by the authorization-code flow with PKCE; `state`, `nonce` and the
//!   code verifier travel in a short-lived sealed cookie per login attempt; the callback
//!   validates the ID token; RP-initiated logout.
//! - [`backchannel`]: OpenID Connect Back-Channel Logout 1.0.
//!
//! The token endpoint (code exchange, refresh) and revocation are the same
//! `sallyport_backend::Client` the `oauth2` kind uses, so renewal keeps every rule of
//! [`crate::renew`] (single-flight, rotation grace, faults are not logouts).
//!
//! Hand-written on `sallyport-jwt` rather than the `openidconnect` crate: that crate (4.x)
//! brings `oauth2` 5 with reqwest 0.12, a second HTTP stack beside the workspace's reqwest
//! 0.13, and its own JWKS handling beside `sallyport_jwt::Verifier` (pinned algorithms,
//! refetch on an unknown `kid` with a rate limit, bounded documents), which is what the
//! provider's key rotation needs.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::Error;

pub(crate) mod backchannel;
pub(crate) mod discovery;
pub(crate) mod flow;

pub(crate) use discovery::Discovery;

/// How long a login attempt (the sealed `state`/`nonce`/verifier cookie) lives.
pub(crate) const ATTEMPT_TTL: Duration = Duration::from_secs(600);
/// Clock skew allowed on ID-token and logout-token times.
pub(crate) const LEEWAY: Duration = Duration::from_secs(60);
/// The default `backend.scope` for `oidc`.
pub(crate) const DEFAULT_SCOPE: &str = "openid profile email offline_access";

/// Validated `oidc` settings (from `[backend]` and `public_origin`).
#[derive(Clone, Debug)]
pub(crate) struct OidcSettings {
    /// `backend.issuer`, exactly as configured (compared byte for byte).
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    /// `{public_origin}{prefix}/{redirect_path}`.
    pub(crate) redirect_uri: String,
    /// `{prefix}/{redirect_path}`: the callback route and the attempt cookie's `Path`.
    pub(crate) callback_path: String,
    pub(crate) scope: String,
    pub(crate) post_logout_redirect_uri: Option<String>,
    pub(crate) claims: Vec<String>,
    pub(crate) timeout: Duration,
    /// `private_key_jwt`: the client's signing key (its `kid` as registered).
    pub(crate) client_key: Option<Arc<sallyport_jwt::SigningKey>>,
}

impl OidcSettings {
    pub(crate) fn from_config(c: &Config, prefix: &str) -> Result<Self, Error> {
        let b = &c.backend;
        let issuer = b.issuer.clone().unwrap_or_default();
        check_provider_url("backend.issuer", &issuer)?;
        let origin = c.public_origin.as_deref().ok_or_else(|| {
            Error::config(
                "public_origin",
                "required with backend.kind = \"oidc\": the redirect URI registered at the provider is built from it",
            )
        })?;
        let origin = url::Url::parse(origin)
            .map_err(|e| Error::config("public_origin", format!("not a URL: {e}")))?
            .origin()
            .ascii_serialization();
        let path = b.redirect_path.trim_matches('/');
        if path.is_empty()
            || !path
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.~/".contains(&c))
            || path.contains("//")
            || path.split('/').any(|s| s == "." || s == "..")
            || matches!(
                path,
                "login" | "logout" | "refresh" | "session" | "client.js" | "verify"
            )
            || path == backchannel::PATH
        {
            return Err(Error::config(
                "backend.redirect_path",
                format!(
                    "must be a path under the prefix other than the gateway's own routes, such as \"callback\"; got {:?}",
                    b.redirect_path
                ),
            ));
        }
        let callback_path = format!("{prefix}/{path}");
        let scope = b.scope.clone().unwrap_or_else(|| DEFAULT_SCOPE.into());
        if !scope.split_ascii_whitespace().any(|s| s == "openid") {
            return Err(Error::config(
                "backend.scope",
                "must contain `openid` with backend.kind = \"oidc\"",
            ));
        }
        if let Some(u) = &b.post_logout_redirect_uri {
            check_provider_url("backend.post_logout_redirect_uri", u)?;
        }
        let client_key = match b.client_auth {
            crate::config::ClientAuth::PrivateKeyJwt => Some(Arc::new(client_key(b)?)),
            _ => None,
        };
        Ok(Self {
            client_key,
            client_id: b.client_id.clone().unwrap_or_default(),
            redirect_uri: format!("{origin}{callback_path}"),
            callback_path,
            scope,
            post_logout_redirect_uri: b.post_logout_redirect_uri.clone(),
            claims: b.id_token_claims.clone(),
            timeout: Duration::from_millis(b.timeout_ms.max(1)),
            issuer,
        })
    }
}

/// `backend.client_key_file` and `backend.client_key_id`: the `private_key_jwt` key,
/// PKCS#8 PEM, its algorithm from its type (RSA: RS256, P-256: ES256, Ed25519: EdDSA).
fn client_key(b: &crate::config::BackendSection) -> Result<sallyport_jwt::SigningKey, Error> {
    use base64::Engine;
    let kid = b
        .client_key_id
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            Error::config(
                "backend.client_key_id",
                "required with private_key_jwt: the key id registered at the provider",
            )
        })?;
    let setting = "backend.client_key_file";
    let path = b
        .client_key_file
        .as_deref()
        .ok_or_else(|| Error::config(setting, "required with private_key_jwt"))?;
    let pem = std::fs::read_to_string(path)
        .map_err(|e| Error::config(setting, format!("cannot read {}: {e}", path.display())))?;
    // Hand-read: one `PRIVATE KEY` block of base64 between its two lines.
    let body: String = pem
        .lines()
        .skip_while(|l| l.trim() != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| l.trim() != "-----END PRIVATE KEY-----")
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .ok()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            Error::config(
                setting,
                "not a PKCS#8 PEM file (-----BEGIN PRIVATE KEY-----); convert with `openssl pkcs8 -topk8 -nocrypt`",
            )
        })?;
    use sallyport_jwt::Algorithm as A;
    [A::Es256, A::Rs256, A::EdDsa]
        .into_iter()
        .find_map(|alg| sallyport_jwt::SigningKey::from_pkcs8(alg, kid, &der).ok())
        .ok_or_else(|| Error::config(setting, "not an RSA, P-256 or Ed25519 private key"))
}

/// The `private_key_jwt` assertion maker: `iss` = `sub` = the client id, `aud` = the
/// token endpoint (OpenID Connect Core §9), a fresh `jti`, valid for 60 s from the
/// gateway's clock.
pub(crate) fn assertion(
    key: Arc<sallyport_jwt::SigningKey>,
    client_id: String,
    token_endpoint: String,
    clock: Arc<dyn crate::Clock>,
) -> sallyport_backend::Assertion {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    sallyport_backend::Assertion(Arc::new(move || {
        let now = clock.now_ms() / 1000;
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).ok()?;
        let header =
            serde_json::json!({"alg": key.algorithm().as_str(), "kid": key.kid(), "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": token_endpoint,
            "jti": hex::encode(jti), "iat": now, "exp": now + 60,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).ok()?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).ok()?)
        );
        let sig = key.sign_bytes(input.as_bytes()).ok()?;
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }))
}

/// An http(s) URL; plain http only to a loopback host (tests, a provider on the same
/// machine): tokens and codes never cross a network in the clear.
pub(crate) fn check_provider_url(setting: &'static str, raw: &str) -> Result<url::Url, Error> {
    let url = url::Url::parse(raw)
        .map_err(|e| Error::config(setting, format!("not a URL ({e}): {raw:?}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(Error::config(
                setting,
                format!("must be an https URL (http only on loopback), got {raw:?}"),
            ));
        }
    }
    if url.host().is_none() || url.fragment().is_some() {
        return Err(Error::config(setting, format!("not a usable URL: {raw:?}")));
    }
    Ok(url)
}

/// What an OIDC session carries besides the tokens (in the sealed cookie, under `oidc`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OidcSession {
    /// The provider (`iss` of the ID token).
    pub iss: String,
    /// The subject at the provider.
    pub sub: String,
    /// The provider's session id (`sid`), when the provider sends one: what back-channel
    /// logout names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The latest ID token, for `id_token_hint` at RP-initiated logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// When the login completed, on the gateway's clock (ms): a back-channel logout
    /// naming only the subject ends the sessions that began before it.
    pub login_ms: u64,
    /// The ID-token claims chosen by `backend.id_token_claims`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl OidcSession {
    /// The logout-record key of the provider's session id.
    pub(crate) fn sid_key(&self) -> Option<String> {
        self.sid.as_deref().map(|sid| sid_key(&self.iss, sid))
    }

    /// The logout-record key of the subject.
    pub(crate) fn subject_key(&self) -> String {
        subject_key(&self.iss, &self.sub)
    }
}

/// Logout-record key for a provider session (`sid` is unique per issuer).
pub(crate) fn sid_key(iss: &str, sid: &str) -> String {
    format!("oidc-sid\0{iss}\0{sid}")
}

/// Logout-record key for every session of a subject.
pub(crate) fn subject_key(iss: &str, sub: &str) -> String {
    format!("oidc-sub\0{iss}\0{sub}")
}

/// The relying party at run time: settings, discovery, the two token verifiers and the
/// replay caches.
pub(crate) struct Oidc {
    pub(crate) settings: OidcSettings,
    /// The latest checked discovery document (see [`discovery::REFRESH`]).
    discovery: std::sync::RwLock<Arc<Discovery>>,
    /// ID tokens: `aud` = client id, any `typ` but those of other token kinds.
    pub(crate) id_tokens: sallyport_jwt::Verifier,
    /// Logout tokens: same keys, `typ` `logout+jwt` or `JWT` when present, `sub` optional.
    pub(crate) logout_tokens: sallyport_jwt::Verifier,
    /// Digests of `state`s already redeemed (a replayed callback is refused even with
    /// its cookie), for the attempt lifetime.
    pub(crate) used_states: moka::sync::Cache<[u8; 32], ()>,
    /// Logout-token `jti`s already seen, for the token age window.
    pub(crate) seen_jtis: moka::sync::Cache<[u8; 32], ()>,
}

/// Algorithms accepted from a provider: asymmetric only, never `none` or HMAC.
const ALGORITHMS: [sallyport_jwt::Algorithm; 4] = [
    sallyport_jwt::Algorithm::Rs256,
    sallyport_jwt::Algorithm::Ps256,
    sallyport_jwt::Algorithm::Es256,
    sallyport_jwt::Algorithm::EdDsa,
];

impl Oidc {
    /// Discovers the provider and builds the verifiers. A provider that cannot be
    /// reached, or whose document is wrong, stops start-up naming `backend.issuer`.
    pub(crate) async fn start(settings: OidcSettings) -> Result<Arc<Self>, Error> {
        let discovery = discovery::fetch(&settings).await?;
        let oidc = Self::with_discovery(settings, discovery)?;
        discovery::spawn_refresh(Arc::downgrade(&oidc));
        Ok(oidc)
    }

    /// The provider's metadata as last fetched.
    pub(crate) fn discovery(&self) -> Arc<Discovery> {
        match self.discovery.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the metadata with a newer, checked copy.
    pub(crate) fn set_discovery(&self, d: Discovery) {
        match self.discovery.write() {
            Ok(mut g) => *g = Arc::new(d),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(d),
        }
    }

    pub(crate) fn with_discovery(
        settings: OidcSettings,
        discovery: Discovery,
    ) -> Result<Arc<Self>, Error> {
        let verifier = |types: &[&str], require_sub: bool| {
            let cfg = sallyport_jwt::VerifierConfig::new(
                discovery.jwks_uri.clone(),
                settings.issuer.clone(),
                settings.client_id.clone(),
            )
            .algorithms(ALGORITHMS)
            .leeway(LEEWAY)
            .accepted_types(types.iter().copied())
            // A key rotation at the provider: an unknown `kid` refetches the JWKS, at
            // most every 10 s.
            .refetch_interval(Duration::from_secs(10))
            .require_sub(require_sub);
            sallyport_jwt::Verifier::new(cfg)
                .map_err(|e| Error::config("backend.issuer", format!("jwks_uri: {e}")))
        };
        // ID tokens come typed `JWT` or untyped; other typed JWTs of the same provider
        // (access tokens `at+jwt`, logout tokens) are not ID tokens.
        let id_tokens = verifier(&["", "JWT", "application/jwt"], true)?;
        // Logout tokens SHOULD be typed `logout+jwt` (Back-Channel Logout 1.0 §2.4), but
        // providers that predate that advice (Keycloak) type them `JWT`. What tells a
        // logout token from an ID token is its `events` member and the absence of a
        // `nonce` (§2.6), both checked; typed access tokens are still refused here.
        let logout_tokens = verifier(&["", "JWT", "logout+jwt", "application/logout+jwt"], false)?;
        Ok(Arc::new(Self {
            settings,
            discovery: std::sync::RwLock::new(Arc::new(discovery)),
            id_tokens,
            logout_tokens,
            used_states: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ATTEMPT_TTL + LEEWAY)
                .build(),
            seen_jtis: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(backchannel::MAX_AGE + LEEWAY * 2)
                .build(),
        }))
    }
}

/// Start-up for `kind = "oidc"`: discovers the provider and points the backend client
/// at its token and revocation endpoints (readiness probes the discovery document).
/// `None` for the other kinds.
pub(crate) async fn prepare(
    settings: &mut crate::config::Settings,
    clock: Arc<dyn crate::Clock>,
) -> Result<Option<Arc<Oidc>>, Error> {
    let Some(o) = settings.backend.oidc.clone() else {
        return Ok(None);
    };
    let oidc = Oidc::start(o).await?;
    let d = oidc.discovery();
    let b = &mut settings.backend;
    b.login_url = d.token_endpoint.clone();
    b.refresh_url = d.token_endpoint.clone();
    b.logout_url = d.revocation_endpoint.clone();
    b.health_url = discovery::url_of(&oidc.settings.issuer);
    b.assertion = oidc.settings.client_key.clone().map(|key| {
        assertion(
            key,
            oidc.settings.client_id.clone(),
            d.token_endpoint.clone(),
            clock,
        )
    });
    tracing::info!(
        issuer = %oidc.settings.issuer,
        redirect_uri = %oidc.settings.redirect_uri,
        revocation = d.revocation_endpoint.is_some(),
        end_session = d.end_session_endpoint.is_some(),
        "OpenID provider discovered"
    );
    Ok(Some(oidc))
}

/// The relying party's routes: the callback and back-channel logout.
pub(crate) fn routes(
    router: axum::Router<crate::Gateway>,
    oidc: &Oidc,
    prefix: &str,
) -> axum::Router<crate::Gateway> {
    use axum::routing::{get, post};
    router
        .route(&oidc.settings.callback_path, get(flow::callback))
        .route(
            &format!("{prefix}/{}", backchannel::PATH),
            post(backchannel::handle),
        )
}
