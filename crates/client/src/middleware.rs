//! The reqwest-middleware layer: bearer token in, one renewal and retry on 401.

use http::{Extensions, HeaderValue, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::{Auth, Error};

/// Attaches `Authorization: Bearer <access token>` to each request (renewing
/// the token first when it is about to expire) and, when the API answers
/// 401, renews once and replays the request once — if its body can be
/// replayed (`Request::try_clone` succeeds; streaming bodies cannot).
///
/// It never loops: a request is retried at most once, and a renewal the
/// backend refuses ends the session with [`Error::ReauthRequired`] instead
/// of trying again. Errors come back as `reqwest_middleware::Error::Middleware`;
/// get the typed error with [`Error::from_middleware`].
#[derive(Debug, Clone)]
pub struct AuthMiddleware {
    auth: Auth,
}

impl AuthMiddleware {
    /// Middleware for `auth`'s session.
    pub fn new(auth: Auth) -> Self {
        Self { auth }
    }
}

fn bearer(token: &str) -> Result<HeaderValue, reqwest_middleware::Error> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        reqwest_middleware::Error::middleware(Error::Backend {
            status: 200,
            code: "invalid_token".into(),
            message: "the backend issued an access token that is not a valid header value".into(),
        })
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[async_trait::async_trait]
impl Middleware for AuthMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if !self.auth.applies_to(req.url()) {
            return next.run(req, extensions).await;
        }
        let token = self
            .auth
            .access_token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, bearer(&token)?);
        // Keep a copy for the retry before the body is consumed; `None` for
        // streaming bodies, which are then never replayed.
        let replay = req.try_clone();

        let response = next.clone().run(req, extensions).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }

        tracing::debug!(url = %response.url(), "API answered 401; renewing once");
        let Some(mut retry) = replay else {
            // Renew anyway so the caller's next attempt has a good token,
            // but hand back this 401: the body is gone.
            if let Err(e) = self.auth.renew_after_rejection(&token).await {
                tracing::debug!(error = %e, "renewal after 401 failed");
            }
            return Ok(response);
        };
        let new_token = self
            .auth
            .renew_after_rejection(&token)
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let Some(new_token) = new_token else {
            // Nothing better than the token just refused: no point retrying.
            return Ok(response);
        };
        retry
            .headers_mut()
            .insert(http::header::AUTHORIZATION, bearer(&new_token)?);
        next.run(retry, extensions).await
    }
}
