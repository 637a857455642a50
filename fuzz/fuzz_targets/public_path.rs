//! Fuzzes request-path canonicalization (`sallyport_gateway::canonical_path`) and the
//! gateway's public-path decision (`sallyport_gateway::public_path`, with globs compiled
//! as the gateway compiles `public_paths`: `globset` with `literal_separator`).
//!
//! Input: a request path (without query).
//!
//! Run (stable toolchain, from the repository root):
//! `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run public_path corpus/public_path seeds/public_path -- -max_total_time=120`
//! (`seeds/public_path` is committed; `corpus/` is the working corpus and is not.)
//!
//! Checked, for any input: nothing panics; an accepted path has none of the shapes that
//! upstream servers read differently (dot-segments, also behind `;` parameters or
//! encodings; encoded slashes or backslashes; a leading `//`; control characters); the
//! decision refuses exactly what `canonical_path` refuses; and a path judged public is
//! public under every common reading by upstream servers — raw, with `;` parameters
//! removed per segment (Tomcat, Jetty, Spring), and percent-decoded once (issue 8, item 3).

#![no_main]

use std::sync::LazyLock;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use libfuzzer_sys::fuzz_target;
use sallyport_gateway::{canonical_path, public_path};

/// Typical `public_paths`: assets by directory and by extension, single files.
const PUBLIC: &[&str] = &[
    "/static/**",
    "/assets/*",
    "**/*.css",
    "**/*.js",
    "/favicon.ico",
    "/public/{a,b}/*.png",
];

static SET: LazyLock<GlobSet> = LazyLock::new(|| {
    let mut b = GlobSetBuilder::new();
    for g in PUBLIC {
        b.add(
            GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .expect("static glob"),
        );
    }
    b.build().expect("static globs")
});

/// `;`-parameters removed from every segment, as servlet containers read a path.
fn without_params(path: &str) -> String {
    path.split('/')
        .map(|seg| seg.split(';').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("/")
}

fn decoded_once(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

fn plain(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.contains('\\')
        && !p.chars().any(char::is_control)
        && p.split('/').all(|seg| {
            let name = seg.split(';').next().unwrap_or_default();
            name != "." && name != ".."
        })
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Some(checked) = canonical_path(path) else {
        assert_eq!(
            public_path(path, &SET),
            None,
            "{path:?}: refused, yet decided"
        );
        return;
    };
    // What the gateway decides on, and the raw path upstream receives, are both plain.
    assert!(
        plain(&checked),
        "canonical form {checked:?} of {path:?} is not plain"
    );
    assert!(plain(path), "accepted raw path {path:?} is not plain");
    let lower = path.to_ascii_lowercase();
    assert!(
        !lower.contains("%2f") && !lower.contains("%5c"),
        "accepted an encoded slash: {path:?}"
    );

    let decision = public_path(path, &SET);
    assert!(
        decision.is_some(),
        "{path:?}: canonical_path accepts it, public_path refuses it"
    );
    if decision == Some(true) {
        for reading in [
            path.to_owned(),
            without_params(path),
            decoded_once(path),
            without_params(&decoded_once(path)),
            decoded_once(&without_params(path)),
        ] {
            assert!(
                SET.is_match(&reading),
                "{path:?} is public, but upstream may read it as {reading:?}, which is not"
            );
        }
    }
});
