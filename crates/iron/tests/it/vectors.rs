//! Every case of `tests/vectors/iron/vectors.json` (made by the real npm packages; see
//! `FORMAT.md` beside it): exact bytes where the case fixes the randomness, the same
//! accept/reject outcome (and iron-session reason) otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sallyport_iron::{
    Error, Passwords, SealRandom, UnsealReason, seal_with_random, unseal, value_to_js_json,
};
use serde_json::Value;

fn load() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/iron/vectors.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn cases() -> Vec<Value> {
    load()["cases"].as_array().unwrap().clone()
}

/// Builds our password set from a vector's `password` (a string or an `{id: pw}` map).
///
/// A map key `default` becomes [`Passwords::with_default`]. A map with *only* a
/// `default` key has no id to seal with, which our type requires; the harness then adds
/// the same password under id `1`, which does not change which seals open in that case.
fn passwords(spec: &Value) -> Result<Passwords, Error> {
    match spec {
        Value::String(pw) => Passwords::single(pw.as_str()),
        Value::Object(map) => {
            let numbered: Vec<(String, String)> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "default")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let default = map.get("default").and_then(Value::as_str);
            let set = match (numbered.is_empty(), default) {
                (true, Some(pw)) => Passwords::single(pw)?,
                _ => Passwords::from_pairs(numbered)?,
            };
            match default {
                Some(pw) => set.with_default(pw),
                None => Ok(set),
            }
        }
        other => panic!("unexpected password spec {other}"),
    }
}

fn random(spec: &Value) -> SealRandom {
    let bytes = |key: &str| hex::decode(spec[key].as_str().unwrap()).unwrap();
    SealRandom {
        iv: bytes("iv_hex").try_into().unwrap(),
        encryption_salt: bytes("encryption_salt_bytes_hex").try_into().unwrap(),
        hmac_salt: bytes("hmac_salt_bytes_hex").try_into().unwrap(),
    }
}

/// JSON equality with JavaScript number semantics (every number is an f64).
fn js_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| js_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| js_eq(v, w)))
        }
        _ => a == b,
    }
}

fn reason_str(r: UnsealReason) -> &'static str {
    r.as_str()
}

/// Where our result deliberately differs from iron-session's *reason* (never from its
/// accept/reject outcome). Documented in docs/iron.md.
const REASON_EXCEPTIONS: &[(&str, &str)] = &[
    // iron-webcrypto reads `map["constructor"]` from Object.prototype ("Empty password",
    // invalid); we only look at own ids, as FORMAT.md §11 recommends.
    ("password_id_inherited_property", "unknown-password"),
    // We refuse a password set containing an empty or short password when it is built
    // (start-up error) rather than at unseal time; see `construction_rejects`.
    ("empty_string_password", "construction"),
    ("empty_password_map", "construction"),
    ("password_too_short_on_unseal", "construction"),
];

#[derive(Default)]
struct Tally {
    exact_seals: usize,
    js_json: usize,
    seal_errors: usize,
    unseals_ok: usize,
    unseals_rejected: usize,
    strict_b64: usize,
    cookie_seals: usize,
    cookie_reads: usize,
    skipped: BTreeMap<String, &'static str>,
}

#[test]
fn all_vectors() {
    let mut t = Tally::default();
    let mut failures = Vec::new();
    let cases = cases();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        if let Err(msg) = run_case(case, &mut t) {
            failures.push(format!("{name}: {msg}"));
        }
    }
    println!(
        "iron vectors: {} cases; {} exact seals, {} JSON texts, {} seal errors, {} unseals accepted, \
         {} rejected ({} by strict base64url), {} cookie seals, {} cookie reads",
        cases.len(),
        t.exact_seals,
        t.js_json,
        t.seal_errors,
        t.unseals_ok,
        t.unseals_rejected,
        t.strict_b64,
        t.cookie_seals,
        t.cookie_reads
    );
    for (name, why) in &t.skipped {
        println!("  not reproducible in Rust, skipped part of {name}: {why}");
    }
    assert!(
        failures.is_empty(),
        "{} failing vectors:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(t.exact_seals >= 30 && t.unseals_ok >= 40 && t.unseals_rejected >= 50);
}

fn run_case(case: &Value, t: &mut Tally) -> Result<(), String> {
    let name = case["name"].as_str().unwrap_or_default();
    if let Some(seal) = case.get("seal") {
        check_seal(name, seal, t)?;
    }
    if let Some(u) = case.get("unseal") {
        check_unseal(name, u, t)?;
    }
    if let Some(c) = case.get("cookie") {
        check_cookie(name, c, t)?;
    }
    Ok(())
}

fn check_seal(name: &str, seal: &Value, t: &mut Tally) -> Result<(), String> {
    let expected_ok = seal["expected"]["ok"].as_bool().unwrap_or(false);
    let built = passwords(&seal["password"]);
    let now = seal["now_ms"].as_u64().unwrap();

    if !expected_ok {
        let reference = seal["expected"]["error"].as_str().unwrap_or_default();
        let refused_as_expected = match (&built, seal.get("data_js").and_then(Value::as_str)) {
            // Password problems: we refuse them when the set is built.
            (Err(Error::PasswordTooShort), _) => reference.contains("too short"),
            (Err(Error::InvalidPasswordId(_) | Error::NoPasswords), _) => {
                reference.contains("no usable entry") || reference.contains("Invalid password id")
            }
            (Err(e), _) => return Err(format!("refused for another reason: {e}")),
            (Ok(_), Some(js)) if js.contains("NaN") => matches!(
                value_to_js_json(&BTreeMap::from([("score", f64::NAN)])),
                Err(Error::NotLosslessJson(_))
            ),
            (Ok(_), Some(_)) => {
                t.skipped.insert(
                    name.to_owned(),
                    "JS-only input (undefined, Date, BigInt) has no serde form",
                );
                return Ok(());
            }
            (Ok(_), None) => false,
        };
        if !refused_as_expected {
            return Err(format!(
                "sealing should have been refused like the reference: {reference}"
            ));
        }
        t.seal_errors += 1;
        return Ok(());
    }

    let passwords = built.map_err(|e| format!("password set refused: {e}"))?;
    let Some(random_spec) = seal.get("random") else {
        // seal_random: only the unseal side is stable; checked in check_unseal.
        return Ok(());
    };
    let plaintext = seal["plaintext_json"].as_str().unwrap();
    let expiration = match seal.get("ttl") {
        None => Some(now + 1_209_600_000),
        Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64() == Some(0) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => Some(now + n.as_u64().unwrap() * 1000),
        Some(Value::Number(n)) if n.as_i64().is_some() => {
            Some(now.checked_add_signed(n.as_i64().unwrap() * 1000).unwrap())
        }
        Some(_) => {
            t.skipped.insert(
                name.to_owned(),
                "fractional ttl: JS writes a fractional expiration",
            );
            return Ok(());
        }
    };
    let ours = seal_with_random(plaintext, &passwords, expiration, &random(random_spec))
        .map_err(|e| e.to_string())?;
    let want = seal["expected"]["sealed"].as_str().unwrap();
    if ours != want {
        return Err(format!("seal bytes differ:\n ours {ours}\n want {want}"));
    }
    t.exact_seals += 1;

    // seal_value's JSON text equals JSON.stringify's for the same data, except where the
    // input has no serde form, or for iron-session's top-level spread of arrays (we keep
    // arrays as arrays so typed values round-trip; see docs/iron.md).
    if seal.get("data_js").is_none() && name != "top_level_array" {
        let text = value_to_js_json(&seal["data"]).map_err(|e| e.to_string())?;
        if text != plaintext {
            return Err(format!(
                "JSON text differs:\n ours {text}\n want {plaintext}"
            ));
        }
        t.js_json += 1;
    }
    Ok(())
}

fn check_unseal(name: &str, u: &Value, t: &mut Tally) -> Result<(), String> {
    // A strict decoder's outcome replaces the lenient reference's where they differ.
    let expected = u.get("strict_base64url_outcome").unwrap_or(&u["expected"]);
    if u.get("strict_base64url_outcome").is_some() {
        t.strict_b64 += 1;
    }
    let exception = REASON_EXCEPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| *r);
    let want_ok = expected["ok"].as_bool().unwrap();
    let passwords = match passwords(&u["password"]) {
        Ok(p) => p,
        Err(e) if !want_ok && exception == Some("construction") => {
            let _ = e;
            t.unseals_rejected += 1;
            return Ok(());
        }
        Err(e) => return Err(format!("password set refused: {e}")),
    };
    let sealed = u["sealed"].as_str().unwrap();
    let now = u["now_ms"].as_u64().unwrap();
    match (unseal(sealed, &passwords, now), want_ok) {
        (Ok(opened), true) => {
            let mut value: Value = serde_json::from_str(&opened.json).map_err(|e| e.to_string())?;
            if value.is_null() {
                value = Value::Object(Default::default()); // iron-session's `?? {}`
            }
            if !js_eq(&value, &expected["value"]) {
                return Err(format!("value {value} != {}", expected["value"]));
            }
            t.unseals_ok += 1;
            Ok(())
        }
        (Err(e), false) => {
            let want_reason = exception.unwrap_or_else(|| expected["reason"].as_str().unwrap());
            if reason_str(e.reason()) != want_reason {
                return Err(format!(
                    "rejected as {} ({e}), want {want_reason}",
                    e.reason().as_str()
                ));
            }
            t.unseals_rejected += 1;
            Ok(())
        }
        (Ok(opened), false) => Err(format!("accepted {:?}, should be rejected", opened.json)),
        (Err(e), true) => Err(format!("rejected ({e}), should be accepted")),
    }
}

fn check_cookie(name: &str, c: &Value, t: &mut Tally) -> Result<(), String> {
    let options = &c["options"];
    let now = c["now_ms"].as_u64().unwrap();
    match c["action"].as_str().unwrap() {
        "save" => {
            let (Some(want), Some(random_spec)) = (
                c.get("seal_in_cookie").and_then(Value::as_str),
                c.get("random"),
            ) else {
                return Ok(()); // refused or chunked saves: the session crate's business
            };
            let passwords = passwords(&options["password"]).map_err(|e| e.to_string())?;
            // cookieOptions.maxAge explicitly undefined forces ttl 0 (FORMAT.md §8).
            let max_age_undefined = options["cookieOptions"]
                .get("maxAge")
                .is_some_and(Value::is_null);
            let ttl = if max_age_undefined {
                0
            } else {
                options
                    .get("ttl")
                    .and_then(Value::as_u64)
                    .unwrap_or(1_209_600)
            };
            let json = value_to_js_json(&c["set_data"]).map_err(|e| e.to_string())?;
            let expiration = sallyport_iron::expiration_for(ttl, now);
            let ours = seal_with_random(&json, &passwords, expiration, &random(random_spec))
                .map_err(|e| e.to_string())?;
            if ours != want {
                return Err(format!("cookie seal differs:\n ours {ours}\n want {want}"));
            }
            t.cookie_seals += 1;
        }
        "read" => {
            let header = c["request_cookie_header"].as_str().unwrap();
            let cookie_name = options["cookieName"].as_str().unwrap();
            let Some(value) = header.split("; ").find_map(|kv| {
                kv.strip_prefix(cookie_name)
                    .and_then(|rest| rest.strip_prefix('='))
            }) else {
                return Ok(()); // chunked: the session crate reassembles
            };
            if value.contains('%') {
                return Ok(()); // percent-decoding is the cookie layer's job
            }
            let passwords = passwords(&options["password"]).map_err(|e| e.to_string())?;
            let got = unseal(value, &passwords, now);
            match (got, c.get("read_unseal_error")) {
                (Ok(opened), None) => {
                    let value: Value =
                        serde_json::from_str(&opened.json).map_err(|e| e.to_string())?;
                    if !js_eq(&value, &c["read_session"]) {
                        return Err(format!("read {value} != {}", c["read_session"]));
                    }
                }
                (Err(e), Some(err)) => {
                    if e.reason().as_str() != err["reason"].as_str().unwrap() {
                        return Err(format!(
                            "{name}: reason {} != {}",
                            e.reason().as_str(),
                            err["reason"]
                        ));
                    }
                }
                (got, want) => return Err(format!("read gave {got:?}, want error {want:?}")),
            }
            t.cookie_reads += 1;
        }
        _ => {}
    }
    Ok(())
}
