//! The demo upstream app: what an application behind the gateway sees.
//!
//! It trusts nothing the browser sends: every page and API call reads the
//! `Authorization: Bearer` header the gateway forwards and verifies the token
//! against the issuer's JWKS with [`sallyport_jwt::Verifier`]. The session
//! cookie never reaches it (the gateway strips it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use sallyport_jwt::{AccessClaims, BearerClaims, Verifier};
pub(crate) use sallyport_serve::html::escape;
use serde::Serialize;

/// Shared state of the demo app.
#[derive(Clone)]
pub struct AppState {
    verifier: Verifier,
    /// The gateway's route prefix, for `/auth/client.js` and the logout form.
    auth_prefix: Arc<str>,
    counters: Arc<Counters>,
    /// The page's logout goes through the provider's end-session endpoint (code flow).
    provider_logout: bool,
}

impl AppState {
    /// `auth_prefix` is the gateway's prefix (`/auth` by default).
    pub fn new(
        verifier: Verifier,
        auth_prefix: impl Into<String>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            verifier,
            auth_prefix: Arc::from(auth_prefix.into()),
            counters,
            provider_logout: false,
        }
    }

    /// With `true` (the OpenID Connect code flow), the page's **Log out** button posts
    /// the gateway's logout form even with JavaScript, so the browser goes through the
    /// provider's end-session endpoint (RP-initiated logout) and back to
    /// `/signed-out`, which tells the other tabs. With `false` (the password flow) the
    /// page logs out through `client.js`.
    pub fn with_provider_logout(mut self, provider_logout: bool) -> Self {
        self.provider_logout = provider_logout;
        self
    }
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// What the issuer has been asked, counted by a layer on its router (see
/// [`crate::count_issuer_calls`]) so the page and the tests can show that the
/// gateway renews once per expiry, not once per request.
#[derive(Debug, Default)]
pub struct Counters {
    /// Logins: `POST /api/login` (password flow), code exchanges at `POST /oauth/token`
    /// (code flow).
    pub logins: AtomicU64,
    /// Renewals: `POST /api/refresh-token`, or `POST /oauth/token` with a refresh token.
    pub refreshes: AtomicU64,
    /// Logouts by the gateway: `POST /api/logout`, or `POST /oauth/revoke`.
    pub logouts: AtomicU64,
    /// Visits of the issuer's end-session endpoint (`/oauth/logout`, RP-initiated logout).
    pub end_sessions: AtomicU64,
}

impl Counters {
    /// A consistent-enough snapshot for display.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            logins: self.logins.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
            logouts: self.logouts.load(Ordering::Relaxed),
            end_sessions: self.end_sessions.load(Ordering::Relaxed),
        }
    }
}

/// Counter values at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CounterSnapshot {
    /// Login calls seen by the issuer (see [`Counters::logins`]).
    pub logins: u64,
    /// Refresh calls seen by the issuer.
    pub refreshes: u64,
    /// Logout calls from the gateway seen by the issuer.
    pub logouts: u64,
    /// End-session visits seen by the issuer.
    pub end_sessions: u64,
}

/// The demo app's routes: `/` (the page), `/api/hello` (an API for
/// `authFetch`), `/demo/stats` (issuer call counts, public), `/signed-out`
/// (where RP-initiated logout returns; public at the gateway in the code flow).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/signed-out", get(signed_out))
        .route("/api/hello", get(hello))
        .route("/demo/stats", get(stats))
        .with_state(state)
}

/// The answer of `GET /api/hello`: what the API saw in the token it was given.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    message: String,
    sub: String,
    name: Option<String>,
    roles: Vec<String>,
    /// Unix seconds.
    issued_at: u64,
    /// Unix seconds.
    expires_at: u64,
    /// Unix seconds, when the API answered.
    now: u64,
    token_id: String,
}

async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = sallyport_jwt::unix_now();
    match verify(&state, &headers).await {
        Ok(claims) => {
            let html = render_page(
                &claims,
                &state.auth_prefix,
                state.counters.snapshot(),
                now,
                state.provider_logout,
            );
            ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
        }
        Err(reason) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
            Html(render_unauthorized(&reason, &state.auth_prefix)),
        )
            .into_response(),
    }
}

/// The API uses `sallyport-jwt`'s extractor, as a resource server would: a
/// missing or bad token is answered 401 `invalid_token` before this runs.
async fn hello(BearerClaims(claims): BearerClaims) -> Response {
    let body = Hello {
        message: format!("Hello, {}!", claims.name.as_deref().unwrap_or(&claims.sub)),
        sub: claims.sub,
        name: claims.name,
        roles: claims.roles,
        issued_at: claims.iat,
        expires_at: claims.exp,
        now: sallyport_jwt::unix_now(),
        token_id: claims.jti,
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn signed_out(State(state): State<AppState>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(render_signed_out(&state.auth_prefix)),
    )
        .into_response()
}

async fn stats(State(state): State<AppState>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(state.counters.snapshot()),
    )
        .into_response()
}

/// Verifies the forwarded bearer token. The reason is for the page only; it
/// names what is wrong without echoing the token.
async fn verify(state: &AppState, headers: &HeaderMap) -> Result<AccessClaims, String> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        "no Authorization header: is this app reached through the gateway?".to_owned()
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "the Authorization header is not a Bearer token".to_owned())?;
    state.verifier.verify(token).await.map_err(|err| {
        tracing::info!(error = %err, "demo app: token refused");
        "the access token did not verify against the issuer's JWKS".to_owned()
    })
}

fn utc(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

const STYLE: &str = r#"
:root { color-scheme: light; --ink:#1d2330; --muted:#5b6474; --line:#e3e6ec; --accent:#2f5bea; --ok:#137a3f; --bad:#b42318; }
* { box-sizing: border-box; }
body { margin:0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--ink); background:#f5f6f8; }
header { background:#1d2330; color:#fff; padding:14px 24px; display:flex; align-items:center; justify-content:space-between; }
header .brand { font-weight:600; letter-spacing:.02em; }
header form { margin:0; }
main { max-width:760px; margin:32px auto; padding:0 20px; }
h1 { font-size:1.6rem; margin:0 0 4px; }
.lead { color:var(--muted); margin:0 0 24px; }
.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:20px 22px; margin-bottom:18px; }
.card h2 { font-size:1rem; margin:0 0 12px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); }
dl { display:grid; grid-template-columns: 190px 1fr; gap:8px 16px; margin:0; }
dt { color:var(--muted); }
dd { margin:0; font-variant-numeric: tabular-nums; word-break: break-all; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size:.9em; }
button { font:inherit; border-radius:8px; border:1px solid var(--accent); background:var(--accent); color:#fff; padding:8px 16px; cursor:pointer; }
button.secondary { background:#fff; color:var(--accent); }
header button { background:transparent; border-color:#fff; color:#fff; padding:5px 14px; }
.row { display:flex; gap:12px; align-items:center; flex-wrap:wrap; }
pre { background:#f5f6f8; border:1px solid var(--line); border-radius:8px; padding:12px; overflow:auto; margin:14px 0 0; font-size:.85rem; }
.ok { color:var(--ok); } .bad { color:var(--bad); }
.tag { display:inline-block; background:#eef2ff; color:#3538cd; border-radius:999px; padding:0 10px; margin-right:6px; font-size:.85rem; }
footer { color:var(--muted); font-size:.85rem; text-align:center; margin:30px 0; }
"#;

/// The demo page for a verified token. `now` is unix seconds; `provider_logout`
/// as in [`AppState::with_provider_logout`].
pub fn render_page(
    claims: &AccessClaims,
    auth_prefix: &str,
    counters: CounterSnapshot,
    now: u64,
    provider_logout: bool,
) -> String {
    let display_name = claims.name.as_deref().unwrap_or(&claims.sub);
    let roles = if claims.roles.is_empty() {
        "<span class=\"muted\">none</span>".to_owned()
    } else {
        claims
            .roles
            .iter()
            .map(|r| format!("<span class=\"tag\">{}</span>", escape(r)))
            .collect::<String>()
    };
    let remaining = claims.exp.saturating_sub(now);
    let prefix = escape(auth_prefix);
    let prefix_js = serde_json::to_string(auth_prefix).unwrap_or_else(|_| "\"/auth\"".to_owned());
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sallyport demo</title>
<style>{STYLE}</style>
</head>
<body>
<header>
  <span class="brand">Sallyport demo</span>
  <form method="post" action="{prefix}/logout" id="logout-form">
    <button type="submit" id="logout">Log out</button>
  </form>
</header>
<main>
  <h1 id="greeting">Hello, {name}</h1>
  <p class="lead">This page is served by the demo app behind the Sallyport gateway. The app never sees your
  cookie; it verified the access token the gateway forwarded against the issuer's JWKS.</p>

  <section class="card" id="who">
    <h2>Who is logged in</h2>
    <dl>
      <dt>Name</dt><dd id="user-name">{name}</dd>
      <dt>Subject (<code>sub</code>)</dt><dd id="user-sub"><code>{sub}</code></dd>
      <dt>Roles</dt><dd id="user-roles">{roles}</dd>
      <dt>Session (<code>sid</code>)</dt><dd><code>{sid}</code></dd>
    </dl>
  </section>

  <section class="card" id="token">
    <h2>Access token</h2>
    <dl>
      <dt>Last renewed (<code>iat</code>)</dt><dd id="token-iat" data-unix="{iat}">{iat_utc}</dd>
      <dt>Expires (<code>exp</code>)</dt><dd id="token-exp" data-unix="{exp}">{exp_utc}</dd>
      <dt>Expires in</dt><dd><span id="token-remaining">{remaining}</span> s</dd>
      <dt>Token id (<code>jti</code>)</dt><dd id="token-jti"><code>{jti}</code></dd>
      <dt>Renewals seen by the issuer</dt><dd id="refresh-count">{refreshes}</dd>
    </dl>
    <p class="lead" style="margin:12px 0 0">The gateway renews the token shortly before it expires, on the next
    request. Reload the page or call the API after it expires: no login needed.</p>
  </section>

  <section class="card" id="api">
    <h2>Call an API with <code>authFetch</code></h2>
    <div class="row">
      <button type="button" id="call-api">Call /api/hello</button>
      <span id="api-status" aria-live="polite"></span>
    </div>
    <pre id="api-result" hidden></pre>
  </section>
</main>
<footer>Rendered at <span id="rendered-at">{now_utc}</span></footer>
<script type="module">
  import {{ authFetch, logout, configure }} from "{prefix}/client.js";
  configure({{ prefix: {prefix_js} }});
  const $ = (id) => document.getElementById(id);
  const fmt = (unix) => new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  function tick() {{
    const exp = Number($("token-exp").dataset.unix);
    $("token-remaining").textContent = String(Math.max(0, Math.round(exp - Date.now() / 1000)));
  }}
  setInterval(tick, 1000);
  tick();
  $("call-api").addEventListener("click", async () => {{
    $("api-status").textContent = "calling…";
    $("api-status").className = "";
    try {{
      const res = await authFetch("/api/hello");
      const body = await res.json();
      $("api-result").hidden = false;
      $("api-result").textContent = JSON.stringify(body, null, 2);
      if (res.ok) {{
        $("api-status").textContent = "200 OK";
        $("api-status").className = "ok";
        $("token-iat").dataset.unix = body.issuedAt;
        $("token-iat").textContent = fmt(body.issuedAt);
        $("token-exp").dataset.unix = body.expiresAt;
        $("token-exp").textContent = fmt(body.expiresAt);
        $("token-jti").innerHTML = "";
        $("token-jti").append(Object.assign(document.createElement("code"), {{ textContent: body.tokenId }}));
        tick();
      }} else {{
        $("api-status").textContent = `status ${{res.status}}`;
        $("api-status").className = "bad";
      }}
    }} catch (err) {{
      $("api-status").textContent = `${{err.code ?? err.name}}: ${{err.message}}`;
      $("api-status").className = "bad";
    }}
    const stats = await fetch("/demo/stats").then((r) => r.json()).catch(() => null);
    if (stats) $("refresh-count").textContent = String(stats.refreshes);
  }});
  // Password flow: with JavaScript, log out through client.js so the other tabs
  // are told; without it, the form posts to the gateway directly. Code flow: the
  // form posts either way, so the browser goes through the issuer's end-session
  // endpoint; the /signed-out page it comes back to tells the other tabs.
  const providerLogout = {provider_logout};
  $("logout-form").addEventListener("submit", async (event) => {{
    if (providerLogout) return;
    event.preventDefault();
    try {{ await logout(); }} catch {{ event.target.submit(); }}
  }});
</script>
</body>
</html>
"#,
        name = escape(display_name),
        sub = escape(&claims.sub),
        sid = escape(&claims.sid),
        iat = claims.iat,
        exp = claims.exp,
        iat_utc = utc(claims.iat),
        exp_utc = utc(claims.exp),
        jti = escape(&claims.jti),
        refreshes = counters.refreshes,
        now_utc = utc(now),
        provider_logout = provider_logout,
    )
}

/// Where the browser lands after RP-initiated logout: no session needed. It tells
/// the other tabs (the `BroadcastChannel` `client.js` listens on), so they go to
/// the login page too.
pub fn render_signed_out(auth_prefix: &str) -> String {
    let channel =
        serde_json::to_string(&format!("sallyport:{}", auth_prefix.trim_end_matches('/')))
            .unwrap_or_else(|_| "\"sallyport:/auth\"".to_owned());
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Signed out</title><style>{STYLE}</style></head>
<body><main><section class="card" id="signed-out"><h1>You are signed out</h1>
<p class="lead">Your session ended here and at the issuer.</p>
<p><a id="sign-in" href="{prefix}/login?next=%2F">Sign in again</a></p></section></main>
<script>
  try {{ new BroadcastChannel({channel}).postMessage({{ type: "logout" }}); }} catch {{}}
</script>
</body></html>
"#,
        prefix = escape(auth_prefix),
    )
}

/// The page shown when the app is reached without a valid token (only
/// possible when it is called directly, bypassing the gateway).
pub fn render_unauthorized(reason: &str, auth_prefix: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not authenticated</title><style>{STYLE}</style></head>
<body><main><section class="card"><h1>Not authenticated</h1>
<p class="bad">{reason}</p>
<p><a href="{prefix}/login?next=%2F">Log in through the gateway</a></p></section></main></body></html>
"#,
        reason = escape(reason),
        prefix = escape(auth_prefix),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(name: &str) -> AccessClaims {
        AccessClaims {
            iss: "http://127.0.0.1:1".into(),
            sub: "user-1".into(),
            aud: vec!["sallyport-demo".into()],
            exp: 1_800_000_030,
            iat: 1_800_000_000,
            nbf: None,
            jti: "jti-1".into(),
            sid: "sid-1".into(),
            name: Some(name.into()),
            roles: vec!["user".into(), "<admin>".into()],
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn page_shows_user_expiry_and_renewal() {
        let counters = CounterSnapshot {
            logins: 1,
            refreshes: 7,
            ..CounterSnapshot::default()
        };
        let html = render_page(
            &claims("Demo User"),
            "/auth",
            counters,
            1_800_000_010,
            false,
        );
        assert!(html.contains(r#"<dd id="user-name">Demo User</dd>"#));
        assert!(
            html.contains(r#"data-unix="1800000000">2027-01-15 08:00:00 UTC"#),
            "iat shown"
        );
        assert!(
            html.contains(r#"data-unix="1800000030">2027-01-15 08:00:30 UTC"#),
            "exp shown"
        );
        assert!(html.contains(r#"<span id="token-remaining">20</span>"#));
        assert!(html.contains(r#"<dd id="refresh-count">7</dd>"#));
        assert!(html.contains(r#"from "/auth/client.js""#));
        assert!(
            html.contains(r#"action="/auth/logout""#),
            "logout works without JavaScript"
        );
    }

    #[test]
    fn page_escapes_claims() {
        let html = render_page(
            &claims("<script>alert(1)</script>"),
            "/auth",
            CounterSnapshot::default(),
            0,
            false,
        );
        assert!(!html.contains("<script>alert(1)"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;admin&gt;"));
    }

    #[test]
    fn expired_token_shows_zero_remaining() {
        let html = render_page(
            &claims("x"),
            "/auth",
            CounterSnapshot::default(),
            1_900_000_000,
            true,
        );
        assert!(html.contains(r#"<span id="token-remaining">0</span>"#));
    }

    #[test]
    fn escape_covers_attribute_and_text_metacharacters() {
        assert_eq!(
            escape(r#"a&b<c>"d"'e"#),
            "a&amp;b&lt;c&gt;&quot;d&quot;&#39;e"
        );
    }

    #[test]
    fn the_logout_button_posts_the_form_in_the_code_flow() {
        let password = render_page(&claims("x"), "/auth", CounterSnapshot::default(), 0, false);
        assert!(password.contains("const providerLogout = false;"));
        let code = render_page(&claims("x"), "/auth", CounterSnapshot::default(), 0, true);
        assert!(code.contains("const providerLogout = true;"));
    }

    #[test]
    fn signed_out_page_tells_the_other_tabs() {
        let html = render_signed_out("/auth");
        assert!(
            html.contains(r#"new BroadcastChannel("sallyport:/auth")"#),
            "{html}"
        );
        assert!(html.contains(r#"href="/auth/login?next=%2F""#));
    }

    #[test]
    fn unauthorized_page_escapes_reason() {
        let html = render_unauthorized("<b>no</b>", "/auth");
        assert!(html.contains("&lt;b&gt;no&lt;/b&gt;"));
        assert!(html.contains(r#"href="/auth/login?next=%2F""#));
    }
}
