//! The Rust side of the Node interoperability suite (`tests/interop`).
//!
//! Reads one JSON request per line on stdin and answers one JSON line on stdout, so
//! the suite runs hundreds of cases through one process. Requests:
//!
//! * `{"op":"seal","password":P,"ttl"?:secs,"now_ms"?:ms,"data":any}` → `{"ok":true,"sealed":"Fe26.2*…~2"}`
//! * `{"op":"unseal","password":P,"sealed":s,"now_ms"?:ms}` → `{"ok":true,"value":any,"password_id":id}`
//! * `{"op":"cookie_save","options":O,"cookie_header"?:h,"data":any,"now_ms"?:ms}` → `{"ok":true,"set_cookie":[…]}`
//! * `{"op":"cookie_read","options":O,"cookie_header":h,"now_ms"?:ms}` → `{"ok":true,"session":any,"reason":null|r,"password_id":id|null,"needs_reseal":b}`
//! * `{"op":"cookie_destroy","options":O,"cookie_header"?:h}` → `{"ok":true,"set_cookie":[…]}`
//!
//! `P` is a string or an `{id: password}` map; `O` is iron-session's options object
//! (`cookieName`, `password`, `ttl`, `chunk`, `cookieOptions` with `secure`,
//! `httpOnly`, `sameSite`, `path`, `domain`, `maxAge` (a number, or null for none)).
//! Failures answer `{"ok":false,"error":"…","reason"?:"…"}`; the peer never exits on
//! a bad request.

use std::io::{BufRead, Write};
use std::time::Duration;

use http::HeaderMap;
use sallyport_session::{CookieCodec, Passwords, SameSite, SessionConfig};
use serde_json::{Value, json};

fn main() -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(request) => {
                let mut answer =
                    handle(&request).unwrap_or_else(|e| json!({"ok": false, "error": e}));
                if let (Some(obj), Some(id)) = (answer.as_object_mut(), request.get("id")) {
                    obj.insert("id".into(), id.clone());
                }
                answer
            }
            Err(e) => json!({"ok": false, "error": format!("bad request line: {e}")}),
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}

fn handle(request: &Value) -> Result<Value, String> {
    let now = request["now_ms"]
        .as_u64()
        .unwrap_or_else(sallyport_iron::now_ms);
    match request["op"].as_str().unwrap_or_default() {
        "seal" => {
            let passwords = passwords(&request["password"])?;
            let ttl = request["ttl"]
                .as_u64()
                .unwrap_or(sallyport_iron::DEFAULT_TTL_SECS);
            let sealed = sallyport_iron::seal_value(&request["data"], &passwords, ttl, now)
                .map_err(|e| e.to_string())?;
            Ok(json!({"ok": true, "sealed": sealed}))
        }
        "unseal" => {
            let passwords = passwords(&request["password"])?;
            let sealed = request["sealed"]
                .as_str()
                .ok_or("sealed must be a string")?;
            match sallyport_iron::unseal(sealed, &passwords, now) {
                Ok(opened) => {
                    let value: Value =
                        serde_json::from_str(&opened.json).map_err(|e| e.to_string())?;
                    let value = if value.is_null() { json!({}) } else { value };
                    Ok(json!({"ok": true, "value": value, "password_id": opened.password_id}))
                }
                Err(e) => {
                    Ok(json!({"ok": false, "error": e.to_string(), "reason": e.reason().as_str()}))
                }
            }
        }
        "cookie_save" => {
            let codec = codec(&request["options"])?;
            match codec.encode(&request["data"], &headers(request)?, now) {
                Ok(set) => Ok(json!({"ok": true, "set_cookie": strings(&set)})),
                Err(e) => Ok(json!({"ok": false, "error": e.to_string(), "code": e.code()})),
            }
        }
        "cookie_read" => {
            let codec = codec(&request["options"])?;
            match codec.try_read::<Value>(&headers(request)?, now) {
                Ok(Some(loaded)) => Ok(json!({
                    "ok": true, "session": loaded.value, "reason": null,
                    "password_id": loaded.password_id, "needs_reseal": loaded.needs_reseal,
                })),
                Ok(None) => Ok(
                    json!({"ok": true, "session": {}, "reason": null, "password_id": null, "needs_reseal": false}),
                ),
                Err(e) => Ok(json!({
                    "ok": true, "session": {}, "reason": e.reason(), "error": e.to_string(),
                    "password_id": null, "needs_reseal": false,
                })),
            }
        }
        "cookie_destroy" => {
            let codec = codec(&request["options"])?;
            Ok(json!({"ok": true, "set_cookie": strings(&codec.clear(&headers(request)?))}))
        }
        other => Err(format!("unknown op {other:?}")),
    }
}

fn passwords(p: &Value) -> Result<Passwords, String> {
    match p {
        Value::String(s) => Passwords::single(s.clone()),
        Value::Object(map) => Passwords::from_pairs(
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())),
        ),
        _ => return Err("password must be a string or an {id: password} map".into()),
    }
    .map_err(|e| e.to_string())
}

fn codec(options: &Value) -> Result<CookieCodec, String> {
    let mut config = SessionConfig::new(passwords(&options["password"])?);
    if let Some(name) = options["cookieName"].as_str() {
        config = config.cookie_name(name);
    }
    if let Some(ttl) = options["ttl"].as_u64() {
        config = config.ttl(Duration::from_secs(ttl));
    }
    if let Some(chunk) = options["chunk"].as_bool() {
        config = config.chunking(chunk);
    }
    let co = &options["cookieOptions"];
    if let Some(max_age) = co.get("maxAge") {
        config = config.max_age(max_age.as_u64().map(Duration::from_secs));
    }
    if let Some(b) = co["secure"].as_bool() {
        config = config.secure(b);
    }
    if let Some(b) = co["httpOnly"].as_bool() {
        config = config.http_only(b);
    }
    if let Some(s) = co["sameSite"].as_str() {
        config = config.same_site(match s {
            "strict" => SameSite::Strict,
            "none" => SameSite::None,
            _ => SameSite::Lax,
        });
    }
    if let Some(p) = co["path"].as_str() {
        config = config.path(p);
    }
    if let Some(d) = co["domain"].as_str() {
        config = config.domain(d);
    }
    CookieCodec::try_new(config).map_err(|e| e.to_string())
}

fn headers(request: &Value) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    if let Some(h) = request["cookie_header"].as_str().filter(|h| !h.is_empty()) {
        headers.insert(
            http::header::COOKIE,
            h.parse().map_err(|_| "bad cookie header")?,
        );
    }
    Ok(headers)
}

fn strings(values: &[http::HeaderValue]) -> Vec<String> {
    values
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}
