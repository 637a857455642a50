//! `JSON.stringify` as V8 writes it, for `serde_json::Value`.
//!
//! Two things differ from `serde_json::to_string`: object property order (JavaScript
//! puts integer-like keys first, ascending) and number formatting (ECMAScript
//! `Number::toString`, e.g. `1e+21`, via `ryu-js`). String escaping is the same in both:
//! only `"`, `\` and U+0000–U+001F are escaped, with lowercase hex.

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

/// Writes `value` exactly as JavaScript's `JSON.stringify` would write the same value.
///
/// Integers outside ±2^53 are written with all their digits (JavaScript would round
/// them on reading; Rust readers keep them exact).
pub fn to_js_json(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(value, &mut out);
    out
}

pub(crate) fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(map, out),
    }
}

fn write_number(n: &Number, out: &mut String) {
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        if f.is_finite() {
            out.push_str(ryu_js::Buffer::new().format_finite(f));
        } else {
            // serde_json never stores a non-finite number; JSON.stringify writes null.
            out.push_str("null");
        }
    }
}

/// JavaScript's "array index" keys: canonical decimal integers up to 2^32 − 2.
fn array_index(key: &str) -> Option<u32> {
    let b = key.as_bytes();
    if b.is_empty() || b.len() > 10 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if b[0] == b'0' && b.len() > 1 {
        return None;
    }
    key.parse::<u64>()
        .ok()
        .filter(|n| *n <= 4_294_967_294)
        .and_then(|n| u32::try_from(n).ok())
}

fn write_object(map: &Map<String, Value>, out: &mut String) {
    out.push('{');
    let mut first = true;
    let mut entry = |k: &str, v: &Value, out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
        write_string(k, out);
        out.push(':');
        write_value(v, out);
    };
    if map.keys().any(|k| array_index(k).is_some()) {
        let mut indexed: Vec<(u32, &String, &Value)> = map
            .iter()
            .filter_map(|(k, v)| array_index(k).map(|n| (n, k, v)))
            .collect();
        indexed.sort_unstable_by_key(|(n, _, _)| *n);
        for (_, k, v) in indexed {
            entry(k, v, out);
        }
        for (k, v) in map.iter().filter(|(k, _)| array_index(k).is_none()) {
            entry(k, v, out);
        }
    } else {
        for (k, v) in map {
            entry(k, v, out);
        }
    }
    out.push('}');
}

pub(crate) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x09 => "\\t",
            0x0a => "\\n",
            0x0c => "\\f",
            0x0d => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on char boundaries.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}
