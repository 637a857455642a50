//! `Cookie` request header parsing, exactly as cookie@2's `parseCookie` (which
//! iron-session uses), so both read the same cookie out of the same header.

use std::borrow::Cow;

use http::HeaderMap;

/// Browsers keep a cookie only if its whole `Set-Cookie` value (name, value and
/// attributes) is at most this many bytes.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// At most this many chunk cookies (iron-session's fixed cap: four chunks are already
/// ~16 KB of `Cookie` header on every request; proxies commonly cap headers at 8 KB).
pub const MAX_CHUNKS: usize = 4;

/// The cookies of one request, joined from every `Cookie` header field (HTTP/2 may
/// split them; RFC 9113 §8.2.3 says to join with `"; "`). The usual single field is
/// borrowed, not copied: this runs on every proxied request.
pub(crate) struct Jar<'a> {
    header: Cow<'a, str>,
}

impl<'a> Jar<'a> {
    pub(crate) fn from_headers(headers: &'a HeaderMap) -> Self {
        let mut fields = headers.get_all(http::header::COOKIE).iter();
        let header = match (fields.next(), fields.next()) {
            (None, _) => Cow::Borrowed(""),
            (Some(one), None) => lossy(one.as_bytes()),
            (Some(first), Some(second)) => {
                let mut header = lossy(first.as_bytes()).into_owned();
                for value in std::iter::once(second).chain(fields) {
                    header.push_str("; ");
                    header.push_str(&lossy(value.as_bytes()));
                }
                Cow::Owned(header)
            }
        };
        Self { header }
    }

    /// The value of the first cookie called `name`, percent-decoded if it contains
    /// `%` (kept raw when that fails), as cookie@2 does. `None` when absent. Borrowed
    /// from the request's headers when it can be (the usual single `Cookie` field), so
    /// the value can outlive the jar without a copy.
    pub(crate) fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        match &self.header {
            Cow::Borrowed(header) => find_first(header, name).map(decode),
            Cow::Owned(header) => {
                find_first(header, name).map(|v| Cow::Owned(decode(v).into_owned()))
            }
        }
    }

    /// Whether a cookie called `name` is present with a non-empty value
    /// (iron-session's truthiness test before expiring a stale cookie).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| !v.is_empty())
    }
}

/// Header bytes outside ASCII never occur in our cookies; they are decoded lossily so a
/// stray byte cannot make the whole header unreadable. Valid UTF-8 (the usual case) is
/// borrowed after a fast check.
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The value of the first cookie called `name` in the request's `Cookie` header fields,
/// read exactly as the session cookie is (cookie@2's rules: fields joined, the first
/// match wins, percent-decoded when it can be). For other cookies a server sets next to
/// the session, e.g. a login attempt's.
pub fn request_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    Jar::from_headers(headers).get(name).map(Cow::into_owned)
}

/// cookie@2's `parseCookie` scan, stopping at the first pair whose key is `name`.
fn find_first<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let len = s.len();
    if len < 2 {
        return None;
    }
    // `memchr` rather than `str::find`: the session's pair is ≈ 1 KB, scanned on every
    // proxied request, and its SIMD search is several times faster than core's.
    let bytes = s.as_bytes();
    let mut index = 0;
    while index < len {
        let eq = memchr::memchr(b'=', &bytes[index..]).map_or(len, |i| index + i);
        if eq == len {
            return None;
        }
        let end = memchr::memchr(b';', &bytes[index..]).map_or(len, |i| index + i);
        if eq > end {
            // A pair without '=': skip to just after the last ';' before the '='.
            index = memchr::memrchr(b';', &bytes[..eq]).map_or(0, |i| i + 1);
            continue;
        }
        if trim(&s[index..eq]) == name {
            return Some(trim(&s[eq + 1..end]));
        }
        index = end + 1;
    }
    None
}

/// Trims spaces and tabs only (not other whitespace), as cookie@2 does.
fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// JavaScript `decodeURIComponent`, falling back to the raw text on any error.
fn decode(raw: &str) -> Cow<'_, str> {
    if memchr::memchr(b'%', raw.as_bytes()).is_none() {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                let h = std::str::from_utf8(h).ok()?;
                u8::from_str_radix(h, 16).ok()
            });
            match hex {
                // `from_str_radix` also accepts a leading '+'; JS does not.
                Some(b) if bytes[i + 1] != b'+' => out.push(b),
                _ => return Cow::Borrowed(raw),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(raw),
    }
}

/// cookie@2 writes a value raw unless it needs encoding; a seal never does. We only
/// ever write seal text, so refuse anything outside cookie-octets (and `%`, which a
/// reader would try to decode).
pub(crate) fn is_raw_cookie_value(value: &str) -> bool {
    value.bytes().all(
        |b| matches!(b, 0x21 | 0x23..=0x24 | 0x26..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn request_cookie_reads_every_field_and_the_first_match() {
        let mut h = HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; b=x%20y".parse().unwrap());
        h.append(http::header::COOKIE, "b=2; c=3".parse().unwrap());
        assert_eq!(request_cookie(&h, "b").as_deref(), Some("x y"));
        assert_eq!(request_cookie(&h, "c").as_deref(), Some("3"));
        assert_eq!(request_cookie(&h, "d"), None);
    }

    /// A byte that is not UTF-8 in another cookie (or another field) does not make the
    /// session cookie unreadable, whether the header is borrowed or joined.
    #[test]
    fn a_stray_non_utf8_byte_elsewhere_is_decoded_lossily() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"x=\xff\xfe; s=seal").unwrap(),
        );
        assert_eq!(request_cookie(&h, "s").as_deref(), Some("seal"));
        assert_eq!(request_cookie(&h, "x").as_deref(), Some("\u{fffd}\u{fffd}"));
        h.append(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"y=\xff; t=2").unwrap(),
        );
        assert_eq!(request_cookie(&h, "t").as_deref(), Some("2"));
        assert_eq!(request_cookie(&h, "s").as_deref(), Some("seal"));
    }

    fn jar(h: &str) -> Jar<'static> {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, h.parse().unwrap());
        Jar {
            header: Cow::Owned(Jar::from_headers(&headers).header.into_owned()),
        }
    }

    #[test]
    fn first_occurrence_wins_and_spaces_are_trimmed() {
        let j = jar(" a = 1 ; b=2; a=3");
        assert_eq!(j.get("a").as_deref(), Some("1"));
        assert_eq!(j.get("b").as_deref(), Some("2"));
        assert_eq!(j.get("c"), None);
    }

    #[test]
    fn pairs_without_equals_are_skipped() {
        let j = jar("junk; x=1; more junk; y=2");
        assert_eq!(j.get("x").as_deref(), Some("1"));
        assert_eq!(j.get("y").as_deref(), Some("2"));
        assert_eq!(j.get("junk"), None);
    }

    #[test]
    fn values_keep_equals_signs_and_quotes() {
        let j = jar("a=b=c; q=\"v\"");
        assert_eq!(j.get("a").as_deref(), Some("b=c"));
        assert_eq!(j.get("q").as_deref(), Some("\"v\""));
    }

    #[test]
    fn percent_decoding_like_decode_uri_component() {
        let j = jar("a=x%2Ay; b=%E2%82%AC; c=%zz; d=%E2%82; e=%+1");
        assert_eq!(j.get("a").as_deref(), Some("x*y"));
        assert_eq!(j.get("b").as_deref(), Some("€"));
        assert_eq!(j.get("c").as_deref(), Some("%zz"));
        assert_eq!(j.get("d").as_deref(), Some("%E2%82"));
        assert_eq!(j.get("e").as_deref(), Some("%+1"));
    }

    #[test]
    fn several_cookie_headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append(http::header::COOKIE, "a=1".parse().unwrap());
        headers.append(http::header::COOKIE, "b=2".parse().unwrap());
        let j = Jar::from_headers(&headers);
        assert_eq!(j.get("b").as_deref(), Some("2"));
        assert!(j.has("a"));
        assert!(!jar("a=").has("a"));
    }

    #[test]
    fn seal_alphabet_is_raw() {
        assert!(is_raw_cookie_value("Fe26.2*1*abc*-_~2"));
        assert!(!is_raw_cookie_value("a;b"));
        assert!(!is_raw_cookie_value("a%b"));
        assert!(!is_raw_cookie_value("a b"));
        assert!(!is_raw_cookie_value("é"));
    }
}
