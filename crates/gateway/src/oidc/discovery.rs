//! OpenID Connect Discovery 1.0: the provider's metadata, fetched once at start-up.
//!
//! Bounded in time (`backend.timeout_ms`) and size ([`MAX_DOCUMENT`]), no redirects.
//! The document is checked before anything uses it: `issuer` must be exactly the
//! configured `backend.issuer` (a document served for another issuer would make us accept
//! its tokens), every endpoint must be https (http only on loopback), and a provider that
//! lists `code_challenge_methods_supported` must list `S256`.
//!
//! The document is fetched again every [`REFRESH`] in the background; a copy that passes
//! the same checks replaces the cached one for what is read per request (the
//! authorization and end-session endpoints, the RFC 9207 flag). A failed refetch keeps the
//! cached copy. The token and revocation endpoints and `jwks_uri` are built into the
//! backend client and the verifiers at start-up: a change of those is logged, and takes a
//! restart. Keys are refetched on their own: the verifiers fetch the JWKS again when a
//! token names an unknown `kid` (the provider rotated its keys) and every 5 minutes.

use serde::Deserialize;

use super::{OidcSettings, check_provider_url};
use crate::error::Error;

/// How often the discovery document is fetched again.
pub(crate) const REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);

/// Refetches the document every [`REFRESH`] while `oidc` lives.
pub(crate) fn spawn_refresh(oidc: std::sync::Weak<super::Oidc>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        tick.tick().await; // the first tick is immediate: start-up just fetched it
        loop {
            tick.tick().await;
            let Some(o) = oidc.upgrade() else {
                return;
            };
            match fetch(&o.settings).await {
                Ok(fresh) => {
                    let old = o.discovery();
                    if fresh.token_endpoint != old.token_endpoint
                        || fresh.revocation_endpoint != old.revocation_endpoint
                        || fresh.jwks_uri != old.jwks_uri
                    {
                        tracing::warn!(
                            "the provider's token, revocation or JWKS endpoint changed; restart the gateway to use the new one"
                        );
                    }
                    o.set_discovery(fresh);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "discovery refetch failed; keeping the cached document");
                }
            }
        }
    });
}

/// Largest discovery document read (they are a few KiB).
pub(crate) const MAX_DOCUMENT: usize = 256 * 1024;

/// The provider metadata the relying party uses.
#[derive(Clone, Debug, Default)]
pub(crate) struct Discovery {
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    pub(crate) jwks_uri: String,
    pub(crate) end_session_endpoint: Option<String>,
    pub(crate) revocation_endpoint: Option<String>,
    /// RFC 9207: the provider sends `iss` with every authorization response, so a
    /// response without it is refused (a mix-up attack).
    pub(crate) iss_parameter_supported: bool,
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
    #[serde(default)]
    revocation_endpoint: Option<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    response_types_supported: Vec<String>,
}

/// The discovery URL of an issuer (OpenID Connect Discovery §4: the issuer with any
/// trailing `/` removed, then `/.well-known/openid-configuration`).
pub(crate) fn url_of(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetches and checks the provider's discovery document.
pub(crate) async fn fetch(settings: &OidcSettings) -> Result<Discovery, Error> {
    let url = url_of(&settings.issuer);
    let fail = |why: String| Error::config("backend.issuer", format!("discovery at {url}: {why}"));
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::HttpClient(e.to_string()))?;
    let mut resp = http
        .get(&url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| fail(format!("unreachable: {e}")))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fail(format!("read failed: {e}")))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(fail(format!("document larger than {MAX_DOCUMENT} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    parse(&body, &settings.issuer).map_err(fail)
}

/// Checks a discovery document against the configured issuer.
pub(crate) fn parse(body: &[u8], issuer: &str) -> Result<Discovery, String> {
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a discovery document: {e}"))?;
    if doc.issuer != issuer {
        return Err(format!(
            "the document names issuer {:?}, not the configured {issuer:?} (they must be identical, trailing slash included)",
            doc.issuer
        ));
    }
    if let Some(methods) = &doc.code_challenge_methods_supported
        && !methods.iter().any(|m| m == "S256")
    {
        return Err("the provider does not support PKCE S256".into());
    }
    if !doc.response_types_supported.is_empty()
        && !doc.response_types_supported.iter().any(|r| r == "code")
    {
        return Err("the provider does not support response_type=code".into());
    }
    let endpoint = |name: &'static str, u: &str| {
        check_provider_url("backend.issuer", u)
            .map(|u| u.to_string())
            .map_err(|e| format!("{name}: {e}"))
    };
    Ok(Discovery {
        authorization_endpoint: endpoint("authorization_endpoint", &doc.authorization_endpoint)?,
        token_endpoint: endpoint("token_endpoint", &doc.token_endpoint)?,
        jwks_uri: endpoint("jwks_uri", &doc.jwks_uri)?,
        end_session_endpoint: doc
            .end_session_endpoint
            .as_deref()
            .map(|u| endpoint("end_session_endpoint", u))
            .transpose()?,
        revocation_endpoint: doc
            .revocation_endpoint
            .as_deref()
            .map(|u| endpoint("revocation_endpoint", u))
            .transpose()?,
        iss_parameter_supported: doc.authorization_response_iss_parameter_supported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(issuer: &str, extra: serde_json::Value) -> Vec<u8> {
        let mut v = serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": "https://op.example/auth",
            "token_endpoint": "https://op.example/token",
            "jwks_uri": "https://op.example/jwks",
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn issuer_must_match_exactly() {
        let ok = parse(
            &doc("https://op.example", serde_json::json!({})),
            "https://op.example",
        );
        assert!(ok.is_ok());
        for other in [
            "https://op.example/",
            "https://evil.example",
            "https://OP.example",
        ] {
            assert!(
                parse(&doc(other, serde_json::json!({})), "https://op.example").is_err(),
                "{other}"
            );
        }
    }

    #[test]
    fn plain_http_endpoints_and_missing_s256_are_refused() {
        let i = "https://op.example";
        let http = doc(
            i,
            serde_json::json!({"token_endpoint": "http://op.example/token"}),
        );
        assert!(parse(&http, i).unwrap_err().contains("token_endpoint"));
        let plain = doc(
            i,
            serde_json::json!({"code_challenge_methods_supported": ["plain"]}),
        );
        assert!(parse(&plain, i).unwrap_err().contains("S256"));
        let s256 = doc(
            i,
            serde_json::json!({"code_challenge_methods_supported": ["plain", "S256"],
                "authorization_response_iss_parameter_supported": true}),
        );
        assert!(parse(&s256, i).unwrap().iss_parameter_supported);
    }

    #[test]
    fn a_provider_without_the_code_response_type_is_refused() {
        let i = "https://op.example";
        let implicit = doc(
            i,
            serde_json::json!({"response_types_supported": ["id_token", "token id_token"]}),
        );
        assert!(
            parse(&implicit, i)
                .unwrap_err()
                .contains("response_type=code")
        );
        let code = doc(
            i,
            serde_json::json!({"response_types_supported": ["code", "id_token"]}),
        );
        assert!(parse(&code, i).is_ok());
    }
}
