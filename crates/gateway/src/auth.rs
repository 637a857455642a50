//! Steps 2–5 of the middleware, shared by the proxy, `/verify` and `/refresh`: read the
//! session, renew it when due, and the answers for requests that cannot be authenticated.

use std::net::IpAddr;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use sallyport_proto::{ApiError, AuthErrorCode};
use sallyport_session::Loaded;

use crate::state::{Freshness, SessionData};
use crate::{Inner, guard};

pub(crate) use crate::renew::{DEFAULT_RETRY_AFTER, RenewFailure};

/// The result of steps 2–5.
pub(crate) enum Authn {
    /// A usable session; `write` says whether this response must set the cookie (renewed
    /// or re-sealed with the newest password).
    Session {
        data: Box<SessionData>,
        write: bool,
        /// Renewed during this request (so an upstream 401 is not worth another renewal).
        renewed: bool,
    },
    /// No usable session. `clear`: the backend refused it, expire the cookie.
    Anonymous { code: AuthErrorCode, clear: bool },
    /// The token has expired and the backend cannot renew it right now; session kept.
    Unavailable { retry_after: u64 },
}

impl Inner {
    /// Step 2: unseal; logged-out (as far as this replica knows without I/O) and
    /// unusable sessions count as none.
    pub(crate) fn read_session(
        &self,
        headers: &HeaderMap,
        now_ms: u64,
    ) -> Option<Loaded<SessionData>> {
        let loaded: Loaded<SessionData> = self.sessions.read(&self.cookies, headers, now_ms)?;
        if !loaded.value.is_usable() || self.logged_out.seen_here(&loaded.value, now_ms) {
            return None;
        }
        Some(loaded)
    }

    /// Step 2 in full: a usable session that was not logged out here or (with Redis) on
    /// any replica. The one answer to "was this session logged out?" before a session is
    /// used; never renews.
    pub(crate) async fn live_session(
        &self,
        headers: &HeaderMap,
        now_ms: u64,
    ) -> Option<Loaded<SessionData>> {
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
    ) -> Option<SessionData> {
        let l = self.read_session(headers, now_ms)?;
        if l.value.expires_at().is_some_and(|exp| now_ms / 1000 >= exp)
            || self.logged_out.logged_out_elsewhere(&l.value, now_ms).await
        {
            return None;
        }
        Some(l.value)
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

    /// Steps 2, 4 and 5.
    /// `client`: the request's TCP peer (sent to the backend with a renewal), if the
    /// caller is the client itself.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        now_ms: u64,
        client: Option<IpAddr>,
    ) -> Authn {
        let Some(loaded) = self.live_session(headers, now_ms).await else {
            return Authn::Anonymous {
                code: AuthErrorCode::SessionExpired,
                clear: false,
            };
        };
        let mut data = loaded.value;
        let now_s = now_ms / 1000;
        match data.freshness(now_s, self.settings.leeway_secs) {
            Freshness::Fresh => Authn::Session {
                data: Box::new(data),
                write: loaded.needs_reseal,
                renewed: false,
            },
            Freshness::RenewDue { still_valid } => {
                match self.renew(&mut data, client).await {
                    Ok(()) => Authn::Session {
                        data: Box::new(data),
                        write: true,
                        renewed: true,
                    },
                    Err(RenewFailure::Refused) => Authn::Anonymous {
                        code: AuthErrorCode::ReauthRequired,
                        clear: true,
                    },
                    Err(RenewFailure::Unavailable(retry_after)) => {
                        if still_valid {
                            // Faults are not logouts: keep going with the old token.
                            Authn::Session {
                                data: Box::new(data),
                                write: loaded.needs_reseal,
                                renewed: false,
                            }
                        } else {
                            Authn::Unavailable { retry_after }
                        }
                    }
                }
            }
        }
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

    /// Step 3: the answer for a request without a usable session.
    pub(crate) fn unauthenticated(
        &self,
        method: &Method,
        headers: &HeaderMap,
        path_and_query: &str,
        code: AuthErrorCode,
        clear: bool,
    ) -> Response {
        self.metrics.rejected(code.as_str());
        let mut resp = if is_page_navigation(method, headers) {
            let next = guard::safe_next(path_and_query).unwrap_or_else(|| "/".into());
            let location = format!(
                "{}/login?next={}",
                self.settings.prefix,
                percent_encoding::utf8_percent_encode(&next, QUERY_VALUE)
            );
            let mut r = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        } else {
            let message = match code {
                AuthErrorCode::ReauthRequired => {
                    "the session was ended by the sign-in service; log in again"
                }
                _ => "no valid session; log in",
            };
            let mut r = json_error(StatusCode::UNAUTHORIZED, code.as_str(), message);
            if let Ok(v) = HeaderValue::from_str(&format!(
                "Bearer realm=\"sallyport\", error=\"invalid_token\", error_description=\"{}\"",
                code.as_str()
            )) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            r
        };
        no_store(resp.headers_mut());
        if clear {
            attach_cookies(resp.headers_mut(), self.cookies.clear(headers));
        }
        resp
    }

    /// Step 5's "otherwise 503 with Retry-After".
    pub(crate) fn unavailable(
        &self,
        method: &Method,
        headers: &HeaderMap,
        retry_after: u64,
    ) -> Response {
        self.metrics.rejected("backend_unavailable");
        let mut resp = if is_page_navigation(method, headers) {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                crate::page::unavailable_page(),
            )
                .into_response()
        } else {
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                AuthErrorCode::BackendUnavailable.as_str(),
                "the sign-in service is unavailable; the session is kept, try again shortly",
            )
        };
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        no_store(resp.headers_mut());
        resp
    }

    /// Step 7's 403.
    pub(crate) fn forbidden_cross_site(&self) -> Response {
        self.metrics.rejected("csrf");
        let mut r = json_error(
            StatusCode::FORBIDDEN,
            "csrf",
            "cross-site request refused: state-changing requests must come from this site",
        );
        no_store(r.headers_mut());
        r
    }

    /// The CSRF reference: how to tell this gateway's own origin (scheme, host, port).
    pub(crate) fn expected_origin(&self) -> &crate::guard::OriginPolicy {
        &self.settings.origin_policy
    }

    /// 400 for a request path that could be read differently upstream (dot-segments,
    /// encoded slashes; see [`crate::guard::canonical_path`]).
    pub(crate) fn bad_path(&self) -> Response {
        self.metrics.rejected("bad_path");
        let mut r = json_error(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "the request path contains dot-segments, encoded slashes or backslashes, or control characters",
        );
        no_store(r.headers_mut());
        r
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

/// `{"error": code, "message": ...}` with the given status.
pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::to_vec(&ApiError::new(code, message)).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
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
