//! Integration tests of sallyport-session: a small axum app driven with `oneshot`,
//! a browser cookie-jar simulation, and the iron-session cookie vectors.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod app;
mod codec;
mod props;
mod vectors;

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderValue};

/// The first sealing password of the tests (id 1 in rotation tests).
pub const PW1: &str = "password-one-0123456789-abcdefghijklmnop";
/// The second sealing password (the newer one in rotation tests).
pub const PW2: &str = "password-two-0123456789-abcdefghijklmnop";
/// 2026-01-01T00:00:00Z, the vectors' clock.
pub const T0: u64 = 1_767_225_600_000;

/// A minimal browser cookie jar: applies `Set-Cookie` (a `Max-Age=0` deletes) and
/// produces the `Cookie` header.
#[derive(Default, Debug, Clone)]
pub struct Browser {
    /// Cookie name → value, as the browser would store them.
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    /// Applies a response's `Set-Cookie` values to the jar.
    pub fn apply(&mut self, set_cookie: &[HeaderValue]) {
        for header in set_cookie {
            let text = header.to_str().unwrap();
            assert!(text.len() <= 4096, "a browser would drop this cookie");
            let (pair, attrs) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// The request headers (one `Cookie`) the browser would send next.
    pub fn header(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if !self.cookies.is_empty() {
            let line = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            headers.insert(http::header::COOKIE, line.parse().unwrap());
        }
        headers
    }

    /// The names of the cookies in the jar, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.cookies.keys().map(String::as_str).collect()
    }
}

/// Names in a list of `Set-Cookie` values, with `-` appended to expiries.
pub fn summary(set_cookie: &[HeaderValue]) -> Vec<String> {
    set_cookie
        .iter()
        .map(|h| {
            let text = h.to_str().unwrap();
            let name = text.split('=').next().unwrap();
            if text.contains("; Max-Age=0;") {
                format!("-{name}")
            } else {
                name.to_owned()
            }
        })
        .collect()
}
