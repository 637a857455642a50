//! Fuzzes the `Cookie` request-header parser of `sallyport-session` (cookie@2's
//! `parseCookie`, as iron-session reads it) and chunk reassembly.
//!
//! Input: one or more `Cookie` header fields, separated by `\n`.
//!
//! Run (stable toolchain, from the repository root):
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run cookie_header corpus/cookie_header seeds/cookie_header -- -max_total_time=120 -max_len=20000`
//! (`seeds/cookie_header` is committed; `corpus/` is the working corpus and is not.)
//!
//! Checked, for any input: nothing panics; a seal that is read is at most four chunks of
//! a browser-sized cookie; and a session written by the codec (its value taken from the
//! input, large enough to need chunks) is read back exactly, in whatever order the
//! browser sends the chunk cookies and with the input's other cookies around it.

#![no_main]

use std::sync::LazyLock;

use http::{HeaderMap, HeaderValue, header::COOKIE};
use libfuzzer_sys::fuzz_target;
use sallyport_session::{CookieCodec, MAX_CHUNKS, MAX_COOKIE_BYTES, Passwords, SessionConfig};

const NOW_MS: u64 = 1_767_225_600_000;
const NAME: &str = "sp";

static CODEC: LazyLock<CookieCodec> = LazyLock::new(|| {
    let passwords = Passwords::from_pairs([("1", "fuzz-cookie-password-0123456789abcdef")])
        .expect("static password is valid");
    CookieCodec::try_new(
        SessionConfig::new(passwords)
            .cookie_name(NAME)
            .secure(false)
            .chunking(true),
    )
    .expect("static config is valid")
});

fuzz_target!(|data: &[u8]| {
    let codec = &*CODEC;
    let mut headers = HeaderMap::new();
    // The header text as the parser sees it: fields joined with "; ", bytes that are not
    // UTF-8 replaced (each by a 3-byte U+FFFD).
    let mut joined_len = 0;
    for field in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(field) {
            joined_len += String::from_utf8_lossy(field).len() + 2;
            headers.append(COOKIE, v);
        }
    }

    // 1. Any header: never panics, and what is read is bounded.
    if let Some(sealed) = codec.read_sealed(&headers) {
        assert!(!sealed.is_empty());
        assert!(
            sealed.len() <= joined_len,
            "read more than the header holds"
        );
        assert!(sealed.len() <= MAX_CHUNKS * MAX_COOKIE_BYTES);
    }
    let _ = codec.try_read::<serde_json::Value>(&headers, NOW_MS);

    // 2. Round trip: store the input as the session, then read it back from a header made
    //    of the cookies the browser would keep, in an order chosen by the input, with the
    //    input's own cookies (minus any that use our names) in front.
    // The first byte also pads the session to 0–10 KB, so short inputs reach 1–4 chunks.
    let pad = "x".repeat(usize::from(data.first().copied().unwrap_or(0)) * 40);
    let value = serde_json::json!({ "d": String::from_utf8_lossy(data), "pad": pad });
    let Ok(set_cookies) = codec.encode(&value, &HeaderMap::new(), NOW_MS) else {
        // Too large for four chunks: refused at save time, which is the contract.
        return;
    };
    let mut kept: Vec<String> = set_cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.contains("Max-Age=0"))
        .filter_map(|v| v.split(';').next().map(str::to_owned))
        .collect();
    assert!(!kept.is_empty() && kept.len() <= MAX_CHUNKS);
    let order = usize::from(data.get(1).copied().unwrap_or(0));
    if order & 1 == 1 {
        kept.reverse();
    }
    let len = kept.len();
    kept.rotate_left((order >> 1) % len);
    let others: Vec<&str> = std::str::from_utf8(data)
        .unwrap_or_default()
        .split([';', '\n'])
        .filter(|pair| {
            // Only well-formed pairs with a plain name that is not ours (nor a prefix
            // trick such as a name equal to ours after trimming).
            let Some((name, value)) = pair.split_once('=') else {
                return false;
            };
            let name = name.trim_matches([' ', '\t']);
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.starts_with(NAME)
                && value.bytes().all(|b| b.is_ascii_graphic() && b != b';')
        })
        .collect();
    let mut header = others.join("; ");
    for c in &kept {
        if !header.is_empty() {
            header.push_str("; ");
        }
        header.push_str(c);
    }
    let mut request = HeaderMap::new();
    request.insert(
        COOKIE,
        HeaderValue::from_str(&header).expect("cookie header is ASCII"),
    );
    let loaded = codec
        .read::<serde_json::Value>(&request, NOW_MS)
        .expect("a session the codec wrote must read back");
    assert_eq!(loaded.value, value);
});
