//! The HTTP API. Handlers stay thin over [`crate::Issuer`]'s service methods; inputs
//! are parsed by our own extractors so every malformed request gets a JSON 4xx
//! (axum's default rejections are plain text).

mod error;
mod oidc;

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use sallyport_jwt::BearerClaims;
use sallyport_proto::{
    ApiError, LoginRequest, OAuthError, OAuthRevokeRequest, OAuthTokenRequest, OAuthTokenResponse,
    Profile, RefreshRequest, TokenResponse,
};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use utoipa::OpenApi;

pub(crate) use self::error::{ApiFailure, OAuthFailure};
use crate::client_auth::ClientAuthError;
use crate::{IssuedTokens, Issuer, LoginError, RefreshError, RequestContext};

/// `WWW-Authenticate` of the JSON API's 401s (RFC 9110 §15.5.2 wants one on every
/// 401). A scheme of our own: these endpoints take credentials in the JSON body, not
/// in `Authorization`, and browsers show no prompt for unknown schemes.
const LOGIN_CHALLENGE: &str = r#"Sallyport realm="sallyport", error="invalid_credentials""#;
const REFRESH_CHALLENGE: &str = r#"Sallyport realm="sallyport", error="invalid_grant""#;
/// Longest refresh token accepted before parsing (real ones are 43 characters).
const MAX_TOKEN_CHARS: usize = 4096;

/// The OpenAPI document, generated from the handlers and the `sallyport-proto` types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sallyport issuer",
        description = "Login, rotating refresh tokens, JWKS."
    ),
    paths(
        login,
        refresh,
        logout,
        me,
        oauth_token,
        oauth_revoke,
        oidc::authorize_get,
        oidc::authorize_post,
        oidc::logout_get,
        oidc::logout_post,
        jwks,
        discovery,
        healthz,
        readyz,
        metrics_text
    ),
    components(schemas(
        LoginRequest,
        RefreshRequest,
        TokenResponse,
        ApiError,
        OAuthError,
        OAuthTokenRequest,
        OAuthTokenResponse,
        TokenForm,
        TokenEndpointResponse,
        OAuthRevokeRequest,
        Profile,
        Discovery
    )),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

/// Declares the security schemes the paths refer to: `bearer` (`/api/me`) and
/// `client_secret_basic` (the OAuth endpoints).
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
        components.add_security_scheme(
            "client_secret_basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

pub(crate) fn router(issuer: Issuer) -> Router {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/refresh-token", post(refresh))
        .route("/api/logout", post(logout))
        .route(
            "/api/me",
            get(me).route_layer(middleware::from_fn_with_state(issuer.clone(), fresh_keys)),
        )
        .route("/oauth/token", post(oauth_token))
        .route("/oauth/revoke", post(oauth_revoke))
        .route(
            "/oauth/authorize",
            get(oidc::authorize_get).post(oidc::authorize_post),
        )
        .route(
            "/oauth/logout",
            get(oidc::logout_get).post(oidc::logout_post),
        )
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // `observe` (outside this layer) has already read the body, bounded by the
        // running `max_body_bytes`, which a reload may raise or lower; a limit fixed here
        // at start-up would silently cap a raised one. The extractors' own limit is
        // only the ceiling validation allows.
        .layer(DefaultBodyLimit::max(crate::config::MAX_BODY_BYTES_CEILING))
        .layer(middleware::from_fn_with_state(issuer.clone(), observe))
        .with_state(issuer)
}

/// Times every request (latency histogram), bounds it by `request_timeout_secs` and
/// reads the whole body (at most `max_body_bytes`) before routing.
///
/// Reading the body first means no handler can answer while request bytes are still
/// unread: hyper closes such a connection right after the response, racing a client
/// that reuses it for its next request (seen as sporadic "connection closed" errors
/// after a 415 or 404). Bodies here are small, so buffering costs nothing.
///
/// It also gives the request its id and span: the `X-Request-Id` and `traceparent` of a
/// peer in `http.trusted_proxies` (the gateway, a load balancer) are continued, anyone
/// else's replaced by a new id and a new trace; the id is returned in `X-Request-Id`.
async fn observe(State(issuer): State<Issuer>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let trusted = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| issuer.settings().client_address.trusts_peer(c.0.ip()));
    let id = sallyport_observe::RequestId::from_headers(req.headers(), trusted);
    let span = sallyport_observe::request_span(
        req.method(),
        req.uri().path(),
        &id,
        trusted.then_some(req.headers()),
    );
    let method = req.method().to_string();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let max_body = issuer.settings().raw.max_body_bytes;
    let oauth = req.uri().path().starts_with("/oauth/");
    let work = async move {
        let (parts, body) = req.into_parts();
        match axum::body::to_bytes(body, max_body).await {
            Ok(bytes) => {
                next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                    .await
            }
            Err(err) => {
                let too_large = err.into_inner().is::<http_body_util::LengthLimitError>();
                let failure = if too_large {
                    ApiFailure::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "request body too large",
                    )
                } else {
                    ApiFailure::bad_request("could not read the request body")
                };
                let mut resp = if oauth {
                    OAuthFailure::from(failure).into_response()
                } else {
                    failure.into_response()
                };
                close_connection(&mut resp);
                resp
            }
        }
    };
    let work = sallyport_observe::scope(id.clone(), work).instrument(span.clone());
    let mut resp = match tokio::time::timeout(issuer.settings().request_timeout, work).await {
        Ok(resp) => resp,
        Err(_) => {
            let mut resp = ApiFailure::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "request took too long",
            )
            .into_response();
            close_connection(&mut resp);
            resp
        }
    };
    sallyport_observe::record_status(&span, resp.status());
    resp.headers_mut()
        .insert(sallyport_observe::X_REQUEST_ID.clone(), id.header());
    issuer.metrics().request(
        method,
        path,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// Tells the client the connection ends after this response (part of the request
/// may be unread), so it does not reuse it.
fn close_connection(resp: &mut Response) {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// Reloads the key ring (and with it the verifier) when it is older than
/// `key_cache_secs`, before `BearerClaims` runs: a token signed by a key another replica
/// just created must verify here too.
async fn fresh_keys(State(issuer): State<Issuer>, req: Request, next: Next) -> Response {
    if let Err(err) = issuer.keys().await {
        return ApiFailure::internal(&err).into_response();
    }
    next.run(req).await
}

impl axum::extract::FromRef<Issuer> for sallyport_jwt::Verifier {
    fn from_ref(issuer: &Issuer) -> Self {
        issuer.verifier().clone()
    }
}

async fn not_found() -> ApiFailure {
    ApiFailure::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiFailure {
    ApiFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

// ---------------------------------------------------------------------------
// extractors
// ---------------------------------------------------------------------------

/// Client address and user agent.
pub(crate) struct Ctx(pub RequestContext);

impl FromRequestParts<Issuer> for Ctx {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        issuer: &Issuer,
    ) -> Result<Self, Self::Rejection> {
        // The header counts only from a trusted proxy (see `client_addr`).
        let client_addr = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| {
            issuer
                .settings()
                .client_address
                .client(c.0.ip(), &parts.headers)
                .to_string()
        });
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        Ok(Ctx(RequestContext {
            client_addr,
            user_agent,
        }))
    }
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == expected
                || (expected == "application/json"
                    && mime.starts_with("application/")
                    && mime.ends_with("+json"))
        })
}

async fn body_bytes(req: Request, state: &Issuer) -> Result<Bytes, ApiFailure> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiFailure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large",
            )
        } else {
            ApiFailure::bad_request("could not read the request body")
        }
    })
}

/// A JSON body with JSON errors: 415 for another content type, 413 over the limit,
/// 400 for malformed JSON or missing fields.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Issuer> for JsonBody<T> {
    type Rejection = ApiFailure;

    async fn from_request(req: Request, state: &Issuer) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), "application/json") {
            return Err(ApiFailure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ));
        }
        let bytes = body_bytes(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiFailure::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// A form-encoded body (RFC 6749 endpoints), errors as OAuth JSON. Another content
/// type is `400 invalid_request`, not 415: RFC 6749 §5.2 fixes the status of every
/// token-endpoint error.
pub(crate) struct FormBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Issuer> for FormBody<T> {
    type Rejection = OAuthFailure;

    async fn from_request(req: Request, state: &Issuer) -> Result<Self, Self::Rejection> {
        if !content_type_is(req.headers(), "application/x-www-form-urlencoded") {
            return Err(OAuthFailure::invalid_request(
                "expected Content-Type: application/x-www-form-urlencoded",
            ));
        }
        let bytes = body_bytes(req, state).await.map_err(OAuthFailure::from)?;
        serde_urlencoded::from_bytes(&bytes)
            .map(FormBody)
            .map_err(|e| OAuthFailure::invalid_request(format!("invalid form body: {e}")))
    }
}

// ---------------------------------------------------------------------------
// JSON API
// ---------------------------------------------------------------------------

fn no_store<T: IntoResponse>(body: T) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn token_response(t: IssuedTokens) -> Response {
    no_store(Json(TokenResponse {
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        token_type: "Bearer".into(),
        expires_in: t.expires_in,
        refresh_token_expires_in: Some(t.refresh_token_expires_in),
    }))
}

fn login_failure(err: LoginError) -> ApiFailure {
    match err {
        LoginError::InvalidCredentials => ApiFailure::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "invalid username or password",
        )
        .with_challenge(LOGIN_CHALLENGE),
        LoginError::Disabled => ApiFailure::new(
            StatusCode::FORBIDDEN,
            "account_disabled",
            "this account is disabled",
        ),
        LoginError::RateLimited(secs) => ApiFailure::rate_limited(secs),
        LoginError::InvalidRequest(msg) => ApiFailure::bad_request(msg),
        LoginError::Internal(e) => ApiFailure::internal(&e),
    }
}

fn invalid_grant() -> ApiFailure {
    ApiFailure::new(
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
        "the refresh token is invalid, expired, revoked or was already used",
    )
    .with_challenge(REFRESH_CHALLENGE)
}

fn check_token_len(token: &str) -> Result<(), ApiFailure> {
    if token.chars().count() > MAX_TOKEN_CHARS {
        return Err(ApiFailure::bad_request(format!(
            "refresh_token longer than {MAX_TOKEN_CHARS} characters"
        )));
    }
    Ok(())
}

/// Log in with username and password.
#[utoipa::path(post, path = "/api/login", tag = "api", request_body = LoginRequest, responses(
    (status = 200, description = "Logged in", body = TokenResponse),
    (status = 400, description = "Malformed request", body = ApiError),
    (status = 401, description = "`invalid_credentials` (unknown user or wrong password), with `WWW-Authenticate: Sallyport realm=\"sallyport\", error=\"invalid_credentials\"`", body = ApiError),
    (status = 403, description = "`account_disabled`", body = ApiError),
    (status = 413, description = "Body too large", body = ApiError),
    (status = 415, description = "Not JSON", body = ApiError),
    (status = 429, description = "`rate_limited`, see `Retry-After`", body = ApiError),
))]
async fn login(
    State(issuer): State<Issuer>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Response, ApiFailure> {
    let tokens = issuer
        .login(&body.username, &body.password, &ctx)
        .await
        .map_err(login_failure)?;
    Ok(token_response(tokens))
}

/// Exchange a refresh token for new tokens (rotation).
#[utoipa::path(post, path = "/api/refresh-token", tag = "api", request_body = RefreshRequest, responses(
    (status = 200, description = "New tokens; the refresh token is always new", body = TokenResponse),
    (status = 400, description = "Malformed request", body = ApiError),
    (status = 401, description = "`invalid_grant`, with `WWW-Authenticate: Sallyport realm=\"sallyport\", error=\"invalid_grant\"`", body = ApiError),
))]
async fn refresh(
    State(issuer): State<Issuer>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Response, ApiFailure> {
    check_token_len(&body.refresh_token)?;
    match issuer.refresh(&body.refresh_token, &ctx).await {
        Ok(tokens) => Ok(token_response(tokens)),
        Err(RefreshError::InvalidGrant(_)) => Err(invalid_grant()),
        Err(RefreshError::Internal(e)) => Err(ApiFailure::internal(&e)),
    }
}

/// Log out: revokes the whole session (token family). Unknown tokens also get 204.
#[utoipa::path(post, path = "/api/logout", tag = "api", request_body = RefreshRequest, responses(
    (status = 204, description = "Session revoked"),
    (status = 400, description = "Malformed request", body = ApiError),
))]
async fn logout(
    State(issuer): State<Issuer>,
    Ctx(ctx): Ctx,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<Response, ApiFailure> {
    check_token_len(&body.refresh_token)?;
    issuer
        .logout(&body.refresh_token, &ctx)
        .await
        .map_err(|e| ApiFailure::internal(&e))?;
    Ok(no_store(StatusCode::NO_CONTENT))
}

/// The authenticated user's profile.
#[utoipa::path(get, path = "/api/me", tag = "api", security(("bearer" = [])), responses(
    (status = 200, description = "Profile", body = Profile),
    (status = 401, description = "`invalid_token`, with `WWW-Authenticate: Bearer error=\"invalid_token\"`", body = ApiError),
))]
async fn me(
    State(issuer): State<Issuer>,
    BearerClaims(claims): BearerClaims,
) -> Result<Response, ApiFailure> {
    let user = issuer
        .store()
        .user_by_id(&claims.sub)
        .await
        .map_err(|e| ApiFailure::internal(&e))?
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(ApiFailure::invalid_token)?;
    Ok(no_store(Json(Profile {
        roles: user.role_list(),
        id: user.id.clone(),
        sub: user.id,
        username: user.username,
        name: user.name,
    })))
}

// ---------------------------------------------------------------------------
// OAuth 2.0 (RFC 6749 token endpoint, RFC 7009 revocation)
// ---------------------------------------------------------------------------

/// The token endpoint's form: [`OAuthTokenRequest`] plus the `authorization_code`
/// grant's parameters (kept here rather than in `sallyport-proto`, whose request type
/// is the gateway's password-grant client).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct TokenForm {
    /// `authorization_code`, `refresh_token` or `password`.
    pub grant_type: String,
    /// For `grant_type=password`.
    pub username: Option<String>,
    /// For `grant_type=password`.
    pub password: Option<String>,
    /// For `grant_type=refresh_token`.
    pub refresh_token: Option<String>,
    /// Client id, when the client authenticates in the body (or is public).
    pub client_id: Option<String>,
    /// Client secret, when the client authenticates in the body.
    pub client_secret: Option<String>,
    /// For `grant_type=authorization_code`.
    pub code: Option<String>,
    /// For `grant_type=authorization_code`: exactly as in the authorization request.
    pub redirect_uri: Option<String>,
    /// For `grant_type=authorization_code`: the PKCE verifier (RFC 7636).
    pub code_verifier: Option<String>,
}

/// The token endpoint's answer: [`OAuthTokenResponse`] plus an OpenID Connect
/// `id_token` (code-flow sessions with scope `openid`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TokenEndpointResponse {
    /// Access, refresh, expiry, scope.
    #[serde(flatten)]
    pub tokens: OAuthTokenResponse,
    /// The ID token (header `typ: JWT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 6749 token endpoint: `authorization_code` (with PKCE), `refresh_token` and
/// `password` grants, form-encoded.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens", body = TokenEndpointResponse),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `unsupported_grant_type`", body = OAuthError),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate: Basic`", body = OAuthError),
        (status = 429, description = "Too many failed logins", body = OAuthError),
    ),
    security((), ("client_secret_basic" = [])))]
async fn oauth_token(
    State(issuer): State<Issuer>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    FormBody(form): FormBody<TokenForm>,
) -> Result<Response, OAuthFailure> {
    let client = authenticate_client(
        &issuer,
        &headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    let tokens = match form.grant_type.as_str() {
        "authorization_code" => {
            let Some(client_id) = client.as_deref() else {
                return Err(OAuthFailure::invalid_request("client_id is required"));
            };
            let nonempty =
                |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
            let (Some(code), Some(redirect_uri)) =
                (nonempty(&form.code), nonempty(&form.redirect_uri))
            else {
                return Err(OAuthFailure::invalid_request(
                    "code and redirect_uri are required",
                ));
            };
            let Some(verifier) = nonempty(&form.code_verifier) else {
                return Err(OAuthFailure::invalid_request(
                    "code_verifier is required (PKCE)",
                ));
            };
            if code.len() > MAX_TOKEN_CHARS || redirect_uri.len() > MAX_TOKEN_CHARS {
                return Err(OAuthFailure::invalid_request(
                    "code or redirect_uri too long",
                ));
            }
            if !valid_verifier(&verifier) {
                return Err(OAuthFailure::invalid_grant("malformed code_verifier"));
            }
            issuer
                .redeem_code(&code, client_id, &redirect_uri, &verifier, &ctx)
                .await
                .map_err(|e| match e {
                    crate::oidc::CodeError::Rejected(_) => OAuthFailure::invalid_grant(
                        "the authorization code is invalid, expired, or was issued to another client or redirect URI, or the code_verifier does not match",
                    ),
                    crate::oidc::CodeError::Reused => OAuthFailure::invalid_grant(
                        "the authorization code was already used; the tokens issued from it are revoked",
                    ),
                    crate::oidc::CodeError::Internal(e) => OAuthFailure::internal(&e),
                })?
        }
        "password" => {
            let (Some(username), Some(password)) =
                (form.username.as_deref(), form.password.as_deref())
            else {
                return Err(OAuthFailure::invalid_request(
                    "username and password are required",
                ));
            };
            issuer
                .login(username, password, &ctx)
                .await
                .map_err(|e| match e {
                    LoginError::InvalidCredentials => {
                        OAuthFailure::invalid_grant("invalid username or password")
                    }
                    LoginError::Disabled => OAuthFailure::invalid_grant("account disabled"),
                    LoginError::RateLimited(secs) => OAuthFailure::rate_limited(secs),
                    LoginError::InvalidRequest(msg) => OAuthFailure::invalid_request(msg),
                    LoginError::Internal(e) => OAuthFailure::internal(&e),
                })?
        }
        "refresh_token" => {
            // RFC 6749 §3.2: a parameter without a value counts as omitted.
            let Some(token) = form.refresh_token.as_deref().filter(|t| !t.is_empty()) else {
                return Err(OAuthFailure::invalid_request("refresh_token is required"));
            };
            if token.chars().count() > MAX_TOKEN_CHARS {
                return Err(OAuthFailure::invalid_request("refresh_token too long"));
            }
            issuer
                .refresh_for_client(token, client.as_deref(), &ctx)
                .await
                .map_err(|e| match e {
                    RefreshError::InvalidGrant(_) => OAuthFailure::invalid_grant(
                        "the refresh token is invalid, expired, revoked or was already used",
                    ),
                    RefreshError::Internal(e) => OAuthFailure::internal(&e),
                })?
        }
        "" => return Err(OAuthFailure::invalid_request("grant_type is required")),
        _ => {
            return Err(OAuthFailure::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "supported grants: authorization_code, refresh_token, password",
            ));
        }
    };
    Ok(no_store(Json(TokenEndpointResponse {
        tokens: OAuthTokenResponse {
            access_token: tokens.access_token,
            token_type: "Bearer".into(),
            expires_in: Some(tokens.expires_in),
            refresh_token: Some(tokens.refresh_token),
            scope: tokens.scope,
        },
        id_token: tokens.id_token,
    })))
}

/// RFC 6749 §2.3 client authentication (`client_secret_basic`, `client_secret_post`,
/// or none for public clients when allowed). Runs after the body is parsed because
/// `client_secret_post` credentials are in it.
fn authenticate_client(
    issuer: &Issuer,
    headers: &HeaderMap,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<Option<String>, OAuthFailure> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let authorization = values.next();
    if values.next().is_some() {
        return Err(OAuthFailure::invalid_request(
            "more than one Authorization header",
        ));
    }
    issuer
        .settings()
        .clients
        .authenticate(
            authorization.map(HeaderValue::as_bytes),
            form_id,
            form_secret,
        )
        .map_err(|e| match e {
            ClientAuthError::InvalidClient(why) => {
                issuer.metrics().client_auth_failed();
                OAuthFailure::invalid_client(why)
            }
            ClientAuthError::InvalidRequest(why) => OAuthFailure::invalid_request(why),
        })
}

/// RFC 7009 revocation: revokes the refresh token's session; always 200 for a
/// well-formed request, whether or not the token was known.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth",
    request_body(content = OAuthRevokeRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked (or nothing to revoke)"),
        (status = 400, description = "`invalid_request`; `unauthorized_client` for a code-flow session's token presented by another client", body = OAuthError),
        (status = 401, description = "`invalid_client`, with `WWW-Authenticate: Basic`", body = OAuthError),
    ),
    security((), ("client_secret_basic" = [])))]
async fn oauth_revoke(
    State(issuer): State<Issuer>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    FormBody(form): FormBody<OAuthRevokeRequest>,
) -> Result<Response, OAuthFailure> {
    let client = authenticate_client(
        &issuer,
        &headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    if form.token.is_empty() {
        return Err(OAuthFailure::invalid_request("token is required"));
    }
    if form.token.chars().count() > MAX_TOKEN_CHARS {
        return Err(OAuthFailure::invalid_request("token too long"));
    }
    // Access tokens are self-contained JWTs and cannot be revoked; RFC 7009 §2.2 lets
    // us answer 200 for them as for unknown tokens.
    let revoked = issuer
        .revoke_for_client(&form.token, client.as_deref(), &ctx)
        .await
        .map_err(|e| OAuthFailure::internal(&e))?;
    if revoked.is_none() {
        return Err(OAuthFailure::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the token was issued to another client",
        ));
    }
    Ok(no_store(StatusCode::OK))
}

// ---------------------------------------------------------------------------
// discovery, keys, operations
// ---------------------------------------------------------------------------

/// The public signing keys (retired keys stay until their tokens expired).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery", responses(
    (status = 200, description = "JWK set (RFC 7517)", content_type = "application/json"),
))]
async fn jwks(State(issuer): State<Issuer>) -> Result<Response, ApiFailure> {
    let ring = issuer.keys().await.map_err(|e| ApiFailure::internal(&e))?;
    let mut resp = Json(ring.jwks().clone()).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(resp)
}

/// Discovery metadata (RFC 8414 / OpenID Connect Discovery 1.0 names). The algorithms
/// of the access tokens are under `access_token_signing_alg_values_supported` (no
/// registered name exists); ID tokens are signed with the same keys.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Discovery {
    /// The `iss` of the tokens.
    pub issuer: String,
    /// Where the public keys are.
    pub jwks_uri: String,
    /// `POST /oauth/token`.
    pub token_endpoint: String,
    /// `POST /oauth/revoke`.
    pub revocation_endpoint: String,
    /// `GET /api/me`.
    pub userinfo_endpoint: String,
    /// `["password", "refresh_token"]`.
    pub grant_types_supported: Vec<String>,
    /// Algorithms of the access tokens: the configured one plus those of every key
    /// still published in the JWKS.
    pub access_token_signing_alg_values_supported: Vec<String>,
    /// Client authentication at the token endpoint.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Client authentication at the revocation endpoint.
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// `["code"]`: the authorization-code flow only (no implicit or hybrid flow).
    pub response_types_supported: Vec<String>,
    /// `GET /oauth/authorize`.
    pub authorization_endpoint: String,
    /// `GET /oauth/logout` (RP-initiated logout).
    pub end_session_endpoint: String,
    /// Same as the access tokens'.
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// `["S256"]`: PKCE is required, `plain` is refused.
    pub code_challenge_methods_supported: Vec<String>,
    /// `["query"]`.
    pub response_modes_supported: Vec<String>,
    /// `["public"]`: `sub` is the user id for every client.
    pub subject_types_supported: Vec<String>,
    /// Supported scopes.
    pub scopes_supported: Vec<String>,
    /// Claims ID tokens may carry.
    pub claims_supported: Vec<String>,
    /// Back-channel logout tokens are sent.
    pub backchannel_logout_supported: bool,
    /// They carry `sid`.
    pub backchannel_logout_session_supported: bool,
    /// Authorization responses carry `iss` (RFC 9207).
    pub authorization_response_iss_parameter_supported: bool,
}

/// Discovery metadata (RFC 8414 / OpenID Connect names).
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery", responses(
    (status = 200, description = "Metadata", body = Discovery),
))]
async fn discovery(State(issuer): State<Issuer>) -> Result<Json<Discovery>, ApiFailure> {
    let settings = issuer.settings();
    let base = &settings.issuer;
    let ring = issuer.keys().await.map_err(|e| ApiFailure::internal(&e))?;
    let mut algs = vec![settings.algorithm.as_str().to_owned()];
    for key in &ring.jwks().keys {
        if let Some(alg) = key.common.key_algorithm.map(|a| a.to_string())
            && !algs.contains(&alg)
        {
            algs.push(alg);
        }
    }
    let methods = settings.clients.auth_methods();
    Ok(Json(Discovery {
        issuer: base.clone(),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        token_endpoint: format!("{base}/oauth/token"),
        revocation_endpoint: format!("{base}/oauth/revoke"),
        userinfo_endpoint: format!("{base}/api/me"),
        grant_types_supported: vec![
            "authorization_code".into(),
            "refresh_token".into(),
            "password".into(),
        ],
        access_token_signing_alg_values_supported: algs.clone(),
        token_endpoint_auth_methods_supported: methods.clone(),
        revocation_endpoint_auth_methods_supported: methods,
        response_types_supported: vec!["code".into()],
        authorization_endpoint: format!("{base}/oauth/authorize"),
        end_session_endpoint: format!("{base}/oauth/logout"),
        id_token_signing_alg_values_supported: algs,
        code_challenge_methods_supported: vec!["S256".into()],
        response_modes_supported: vec!["query".into()],
        subject_types_supported: vec!["public".into()],
        scopes_supported: oidc::SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        claims_supported: [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "sid",
            "azp",
            "preferred_username",
            "name",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        backchannel_logout_supported: true,
        backchannel_logout_session_supported: true,
        authorization_response_iss_parameter_supported: true,
    }))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "Database unreachable", body = ApiError),
))]
async fn readyz(State(issuer): State<Issuer>) -> Result<Json<serde_json::Value>, ApiFailure> {
    match issuer.store().ping().await {
        Ok(()) => Ok(Json(serde_json::json!({ "status": "ok" }))),
        Err(err) => {
            tracing::warn!(%err, "readiness check failed");
            Err(ApiFailure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "database unreachable",
            ))
        }
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus exposition", content_type = "text/plain"),
))]
async fn metrics_text(State(issuer): State<Issuer>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        issuer.metrics().render(),
    )
        .into_response()
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
