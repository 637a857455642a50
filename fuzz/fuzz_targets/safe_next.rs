//! Fuzzes the `next` return-path check (`sallyport_gateway::safe_next`): open redirects
//! (PP-21).
//!
//! Input: the `next` value, as it arrives after URL-decoding of the query or form.
//!
//! Run (stable toolchain, from the repository root):
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run safe_next corpus/safe_next seeds/safe_next -- -max_total_time=120`
//! (`seeds/safe_next` is committed; `corpus/` is the working corpus and is not.)
//!
//! Checked, for any input: nothing panics; an accepted value is returned unchanged, is a
//! path (`/` but not `//` or `/\`), bounded, free of whitespace and control characters in
//! its raw and once-decoded path, and — resolved by a URL parser against the gateway's
//! origin, from the root or from any page — never leaves that origin.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sallyport_gateway::safe_next;

/// The gateway's bound on `next` (`guard::MAX_NEXT_LEN`, not exported).
const MAX_NEXT_LEN: usize = 2048;

const BASES: &[&str] = &[
    "https://app.example.com/",
    "https://app.example.com/auth/login",
    "https://app.example.com/a/b/c/?q=1",
    "http://127.0.0.1:8080/x/",
];

fn plain(p: &str) -> bool {
    let b = p.as_bytes();
    b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && !p
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Some(next) = safe_next(raw) else {
        return;
    };
    assert_eq!(next, raw, "safe_next must return the value unchanged");
    assert!(next.len() <= MAX_NEXT_LEN);
    assert!(plain(&next), "accepted {next:?}");
    let path = next.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    assert!(
        plain(&decoded),
        "accepted {next:?}, which decodes to {decoded:?}"
    );
    for base in BASES {
        let base = url::Url::parse(base).expect("static base");
        let target = base.join(&next).expect("an accepted next must resolve");
        assert_eq!(
            target.origin(),
            base.origin(),
            "{next:?} from {base} leads to {target}"
        );
        // A browser's Location resolution and a second round of decoding by upstream
        // frameworks must not leave the origin either.
        if let Ok(again) = base.join(&decoded) {
            assert_eq!(
                again.origin(),
                base.origin(),
                "{decoded:?} from {base} leaves"
            );
        }
    }
});
