//! Step 2 of the middleware, shared by the proxy, `/verify` and `/refresh`: read the
//! session — and the one answer to "was this session logged out?"
//! ([`Inner::live_session`]). Steps 4–5 (renew when due) are [`crate::renew`].

use std::sync::Arc;

use http::Method;
use http::header::{self, HeaderMap, HeaderValue};

use crate::Inner;
use crate::session_cache::Unsealed;
use crate::state::SessionData;

pub(crate) use crate::renew::Authn;

impl Inner {
    /// Step 2: unseal; logged-out (as far as this replica knows without I/O) and
    /// unusable sessions count as none.
    pub(crate) fn read_session(&self, headers: &HeaderMap, now_ms: u64) -> Option<Unsealed> {
        let loaded = self.sessions.read(&self.cookies, headers, now_ms)?;
        if !loaded.value.is_usable() || self.logged_out.seen_here(&loaded.value, now_ms) {
            return None;
        }
        Some(loaded)
    }

    /// Step 2 in full: a usable session that was not logged out here or (with Redis) on
    /// any replica. The one answer to "was this session logged out?" before a session is
    /// used; never renews.
    pub(crate) async fn live_session(&self, headers: &HeaderMap, now_ms: u64) -> Option<Unsealed> {
        let loaded = self.read_session(headers, now_ms)?;
        if self
            .logged_out
            .logged_out_elsewhere(&loaded.value, now_ms)
            .await
        {
            return None;
        }
        Some(loaded)
    }

    /// A live session whose access token has not expired, for a public path (nothing is
    /// renewed there).
    pub(crate) async fn unexpired_session(
        &self,
        headers: &HeaderMap,
        now_ms: u64,
    ) -> Option<Arc<SessionData>> {
        let l = self.live_session(headers, now_ms).await?;
        let expired = l.value.expires_at().is_some_and(|exp| now_ms / 1000 >= exp);
        (!expired).then_some(l.value)
    }

    /// Read-only [`Self::live_session`]: what a request that will be refused anyway (CSRF)
    /// may ask, so that it does not spend the refresh token (see [`crate::renew`]).
    pub(crate) async fn has_session(&self, headers: &HeaderMap, now_ms: u64) -> bool {
        self.live_session(headers, now_ms).await.is_some()
    }

    /// Whether the request carries a session cookie at all (usable or not).
    pub(crate) fn has_cookie(&self, headers: &HeaderMap) -> bool {
        self.cookies.read_sealed(headers).is_some()
    }

    /// `Set-Cookie` values for `data`, unless its session was logged out meanwhile
    /// (a response to a request that began before the logout never re-sets the cookie).
    pub(crate) fn cookie_for(
        &self,
        data: &SessionData,
        headers: &HeaderMap,
        now_ms: u64,
    ) -> Option<Vec<HeaderValue>> {
        if self.logged_out.seen_here(data, now_ms) {
            return None;
        }
        match self.cookies.encode(data, headers, now_ms) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "cannot seal the session cookie");
                None
            }
        }
    }

    /// The CSRF reference: how to tell this gateway's own origin (scheme, host, port).
    pub(crate) fn expected_origin(&self) -> &crate::guard::OriginPolicy {
        &self.settings.origin_policy
    }
}

/// Characters to escape in a query value (everything but unreserved and `/`).
pub(crate) const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// A browser navigating to a page (as opposed to fetch/XHR or an API client).
pub(crate) fn is_page_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if !(method == Method::GET || method == Method::HEAD) {
        return false;
    }
    if let Some(mode) = headers.get("sec-fetch-mode") {
        return mode.as_bytes() == b"navigate";
    }
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// Marks a response as uncacheable (every response that sets a cookie, PP-16).
pub(crate) fn no_store(headers: &mut HeaderMap) {
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
}

/// Adds `Set-Cookie` values plus the cache headers that must go with them.
pub(crate) fn attach_cookies(headers: &mut HeaderMap, cookies: Vec<HeaderValue>) {
    if cookies.is_empty() {
        return;
    }
    for c in cookies {
        headers.append(header::SET_COOKIE, c);
    }
    // CDN headers (`CDN-Cache-Control`, `Surrogate-Control` …) out, `private, no-store`
    // in: one rule for every response that carries the session cookie.
    crate::proxy::uncacheable(headers);
}
