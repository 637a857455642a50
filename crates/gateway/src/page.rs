//! The server-rendered pages: the login page, and the small fixed pages for an
//! unavailable sign-in service and a failed OpenID Connect sign-in.
//!
//! minijinja rather than a compile-time engine so that operators can restyle the page
//! with `login.template` without rebuilding. The template is parsed at start-up (a broken
//! one is a start-up error naming the setting) and auto-escaped because its name ends in
//! `.html`.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header;
use minijinja::{Environment, context};

use crate::error::Error;
use sallyport_serve::html::escape;

const BUILTIN: &str = include_str!("../../../web/templates/login.html");
const NAME: &str = "login.html";

/// The login page renderer.
pub(crate) struct LoginPage {
    env: Environment<'static>,
    title: String,
}

/// Values shown on the page.
pub(crate) struct LoginContext<'a> {
    /// Form action (`{prefix}/login`).
    pub action: &'a str,
    /// Validated return path.
    pub next: &'a str,
    /// Username to keep in the field after a failed attempt.
    pub username: &'a str,
    /// One message, announced with `role=alert`.
    pub error: Option<&'a str>,
}

impl LoginPage {
    /// Parses the operator's template, or the built-in one.
    pub(crate) fn new(custom: Option<String>, title: String) -> Result<Self, Error> {
        let mut env = Environment::new();
        match custom {
            Some(src) => env
                .add_template_owned(NAME, src)
                .map_err(|e| Error::config("login.template", e.to_string()))?,
            None => env
                .add_template(NAME, BUILTIN)
                .map_err(|e| Error::Template(e.to_string()))?,
        }
        let page = Self { env, title };
        // Render once so an error in the template shows at start-up, not at the first login.
        page.render(&LoginContext {
            action: "/auth/login",
            next: "/",
            username: "",
            error: Some("check"),
        })
        .map_err(|e| Error::config("login.template", e.to_string()))?;
        Ok(page)
    }

    /// Renders the page.
    pub(crate) fn render(&self, c: &LoginContext<'_>) -> Result<String, Error> {
        let t = self
            .env
            .get_template(NAME)
            .map_err(|e| Error::Template(e.to_string()))?;
        t.render(context! {
            title => &self.title,
            action => c.action,
            next => c.next,
            username => c.username,
            error => c.error,
        })
        .map_err(|e| Error::Template(e.to_string()))
    }
}

/// A minimal page for "the sign-in service is unavailable" answers to page navigations.
pub(crate) fn unavailable_page() -> &'static str {
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Temporarily unavailable</title></head>\
     <body><main><h1>Temporarily unavailable</h1><p role=\"alert\">The sign-in service cannot be reached right now. \
     You are still signed in; please try again in a moment.</p></main></body></html>"
}

/// A small HTML page: what went wrong, and a link that starts a new login (never an
/// automatic redirect, so a provider that keeps failing cannot cause a loop).
pub(crate) fn sign_in_failed(
    prefix: &str,
    status: StatusCode,
    message: &str,
    next: &str,
) -> Response {
    let retry = format!(
        "{prefix}/login?next={}",
        percent_encoding::utf8_percent_encode(next, crate::auth::QUERY_VALUE)
    );
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in failed</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head><body>\
         <main><h1>Sign-in failed</h1><p role=\"alert\">{}</p>\
         <p><a id=\"retry\" href=\"{}\">Try signing in again</a></p></main></body></html>",
        escape(message),
        escape(&retry)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_keeps_username() {
        let p = LoginPage::new(None, "Sign in".into()).unwrap();
        let html = p
            .render(&LoginContext {
                action: "/auth/login",
                next: "/a?b=\"c\"",
                username: "<script>x</script>",
                error: Some("Wrong username or password."),
            })
            .unwrap();
        assert!(!html.contains("<script>x"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("role=\"alert\""));
        assert!(html.contains("for=\"username\""));
        assert!(html.contains("for=\"password\""));
        assert!(!html.contains("b=\"c\""));
    }

    #[test]
    fn escape_covers_html_specials() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn broken_custom_template_names_the_setting() {
        match LoginPage::new(Some("{% if %}".into()), "x".into()) {
            Err(Error::Config { setting, .. }) => assert_eq!(setting, "login.template"),
            _ => panic!("accepted a broken template"),
        }
        let ok = LoginPage::new(Some("<p>{{ username }}</p>".into()), "x".into()).unwrap();
        let html = ok
            .render(&LoginContext {
                action: "/a",
                next: "/",
                username: "<b>",
                error: None,
            })
            .unwrap();
        assert_eq!(html, "<p>&lt;b&gt;</p>");
    }
}
