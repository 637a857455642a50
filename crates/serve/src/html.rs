//! HTML escaping for the small server-rendered pages (the issuer's sign-in form, the
//! gateway's sign-in error page, the demo app).
//!
//! Hand-written rather than taken from a crate: five replacements, and the pages' tests
//! and harnesses read this exact output (`&#39;` for `'`, `/` left alone, as in a URL).

/// Escapes `text` for HTML element content and double- or single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_five_characters_are_escaped_and_nothing_else() {
        assert_eq!(
            super::escape(r#"<a href="/x?y=1&z">it's</a> é"#),
            "&lt;a href=&quot;/x?y=1&amp;z&quot;&gt;it&#39;s&lt;/a&gt; é"
        );
    }
}
