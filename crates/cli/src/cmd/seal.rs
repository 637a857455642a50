//! `sallyport seal` / `sallyport unseal`: iron-session compatible cookie values from the
//! command line.
//!
//! The password never comes from argv (it would show in `ps` and shell history): it is
//! read from an environment variable (default `SESSION_SECRET`, like the article's
//! Next.js app) or from a file. Either may hold one password, or a JSON password map
//! `{"1": "old…", "2": "new…"}` for rotation: sealing uses the highest id, unsealing
//! whichever id the cookie names.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use sallyport_iron::{Error, Passwords, UnsealReason};

/// Where the sealing password comes from. Shared by `seal` and `unseal`.
#[derive(Debug, clap::Args)]
pub(crate) struct PasswordArgs {
    /// Name of the environment variable holding the password (at least 32 characters)
    /// or a JSON password map such as {"1":"old-password…","2":"new-password…"}.
    /// Ignored when --password-file is given.
    #[arg(long, value_name = "NAME", default_value = "SESSION_SECRET")]
    pub password_env: String,

    /// Read the password (or JSON password map) from this file instead of the
    /// environment. One trailing newline is removed.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
}

/// Seal JSON read from stdin into a cookie value that iron-session (Next.js) and
/// `sallyport gateway` accept with the same password.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
The JSON is rewritten as JavaScript's JSON.stringify would write it (no whitespace,
integer-like keys first) and sealed with the highest-numbered password; the seal
(Fe26.2*<id>*…~2) is printed on stdout.

Password: the variable named by --password-env (default SESSION_SECRET) or the file
given by --password-file holds either one password of at least 32 characters or a
JSON map for rotation, e.g. {\"1\":\"<old password>\",\"2\":\"<new password>\"}.
Passwords are never taken from the command line.

Example:
  echo '{\"isLoggedIn\":false}' | SESSION_SECRET=… sallyport seal --ttl 3600")]
pub(crate) struct SealArgs {
    #[command(flatten)]
    pub password: PasswordArgs,

    /// Seconds until the seal expires; 0 seals without expiry. The default is
    /// iron-session's: 14 days. Unsealing allows 60 s of clock skew past this.
    #[arg(long, value_name = "SECONDS", default_value_t = sallyport_iron::DEFAULT_TTL_SECS)]
    pub ttl: u64,
}

/// Unseal a cookie value (iron-session / @hapi/iron Fe26.2 format) and print its JSON.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
On failure the reason is printed on stderr (malformed, expired, unknown password id,
bad MAC, decryption, payload JSON) together with iron-session's classification
(invalid / expired / unknown-password), and the exit status is 1.

Password: as for `sallyport seal`; a JSON map opens seals of every id it lists, and
its \"default\" entry opens seals that carry no id (made by @hapi/iron).

Example:
  SESSION_SECRET=… sallyport unseal --pretty 'Fe26.2*1*…~2'")]
pub(crate) struct UnsealArgs {
    /// The cookie value, or `-` to read it from stdin. A `name=` prefix (as copied from
    /// a Cookie header) and percent-encoding are removed.
    #[arg(value_name = "COOKIE_VALUE | -")]
    pub cookie: String,

    #[command(flatten)]
    pub password: PasswordArgs,

    /// Judge expiry at this time (milliseconds since the Unix epoch) instead of now.
    #[arg(long, value_name = "UNIX_MS")]
    pub at: Option<u64>,

    /// Pretty-print the JSON.
    #[arg(long)]
    pub pretty: bool,

    /// Print {"passwordId", "expiresAt", "data"} instead of the bare JSON.
    #[arg(long)]
    pub meta: bool,
}

/// `sallyport seal`.
pub(crate) fn seal(args: SealArgs) -> anyhow::Result<ExitCode> {
    let passwords = load_passwords(&args.password)?;
    let mut input = String::new();
    if std::io::stdin().is_terminal() {
        eprintln!("sallyport seal: reading JSON from stdin (end with Ctrl-D)");
    }
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read JSON from stdin")?;
    let value: serde_json::Value =
        serde_json::from_str(&input).context("stdin is not valid JSON")?;
    let sealed = sallyport_iron::seal_value(&value, &passwords, args.ttl, sallyport_iron::now_ms())
        .context("cannot seal")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{sealed}")?;
    Ok(ExitCode::SUCCESS)
}

/// `sallyport unseal`.
pub(crate) fn unseal(args: UnsealArgs) -> anyhow::Result<ExitCode> {
    let passwords = load_passwords(&args.password)?;
    let raw = if args.cookie == "-" {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("cannot read the cookie value from stdin")?;
        input
    } else {
        args.cookie.clone()
    };
    let cookie = clean_cookie_value(&raw);
    let now = args.at.unwrap_or_else(sallyport_iron::now_ms);
    let opened = match sallyport_iron::unseal(&cookie, &passwords, now) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("sallyport unseal: {}", explain(&e, &passwords));
            return Ok(ExitCode::FAILURE);
        }
    };
    let data: serde_json::Value = match serde_json::from_str(&opened.json) {
        Ok(v) => v,
        Err(_) if !args.pretty && !args.meta => serde_json::Value::Null, // printed raw below
        Err(e) => bail!("the payload is JSON to JavaScript but not to serde_json: {e}"),
    };
    let mut out = std::io::stdout().lock();
    if args.meta {
        let meta = serde_json::json!({
            "passwordId": opened.password_id,
            "expiresAt": opened.expires_at_ms,
            "data": data,
        });
        let text = if args.pretty {
            serde_json::to_string_pretty(&meta)?
        } else {
            meta.to_string()
        };
        writeln!(out, "{text}")?;
    } else if args.pretty {
        writeln!(out, "{}", serde_json::to_string_pretty(&data)?)?;
    } else {
        writeln!(out, "{}", opened.json)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A precise, operator-facing reason (never containing a password).
fn explain(e: &Error, passwords: &Passwords) -> String {
    let hint = match e {
        Error::UnknownPasswordId(id) if id.is_empty() => format!(
            "; the seal has no password id (made by @hapi/iron?): add the password under \"default\" in a JSON map (configured ids: {})",
            passwords.ids().collect::<Vec<_>>().join(", ")
        ),
        Error::UnknownPasswordId(_) => format!(
            "; configured ids: {} (rotated out?)",
            passwords.ids().collect::<Vec<_>>().join(", ")
        ),
        Error::BadMac => {
            "; wrong password for this id, or the value was altered or truncated".to_owned()
        }
        Error::Expired => "; judge it at another time with --at UNIX_MS".to_owned(),
        _ => String::new(),
    };
    let reason = match e.reason() {
        UnsealReason::Expired => "expired",
        UnsealReason::UnknownPassword => "unknown-password",
        UnsealReason::Invalid => "invalid",
    };
    format!("cannot unseal ({reason}): {e}{hint}")
}

/// Trims whitespace, drops a `name=` prefix and undoes percent-encoding.
fn clean_cookie_value(raw: &str) -> String {
    let mut value = raw.trim();
    if let Some(at) = value.find("=Fe26.") {
        value = &value[at + 1..];
    }
    let value = value.split(';').next().unwrap_or(value).trim();
    if value.contains('%') {
        percent_decode(value).unwrap_or_else(|| value.to_owned())
    } else {
        value.to_owned()
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Reads the password or password map named by the flags.
fn load_passwords(args: &PasswordArgs) -> anyhow::Result<Passwords> {
    let (source, text) = match &args.password_file {
        Some(path) => {
            let mut text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --password-file {}", path.display()))?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            (format!("--password-file {}", path.display()), text)
        }
        None => {
            let name = &args.password_env;
            let text = std::env::var(name).map_err(|e| match e {
                std::env::VarError::NotPresent => anyhow::anyhow!(
                    "environment variable {name} is not set: put the session password (or a JSON password map) \
                     there, or use --password-env NAME / --password-file PATH"
                ),
                std::env::VarError::NotUnicode(_) => {
                    anyhow::anyhow!("environment variable {name} is not valid UTF-8")
                }
            })?;
            (format!("environment variable {name}"), text)
        }
    };
    parse_passwords(&text).with_context(|| format!("bad password in {source}"))
}

/// One password, or a JSON object `{"<id>": "<password>", …}` (`"default"` opens
/// seals that carry no id).
fn parse_passwords(text: &str) -> anyhow::Result<Passwords> {
    if !text.trim_start().starts_with('{') {
        return Ok(Passwords::single(text)?);
    }
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).context("looks like a JSON password map but does not parse")?;
    let mut pairs = Vec::new();
    let mut default = None;
    for (id, pw) in map {
        let Some(pw) = pw.as_str() else {
            bail!("password map entry {id:?} is not a string");
        };
        if id == "default" {
            default = Some(pw.to_owned());
        } else {
            pairs.push((id, pw.to_owned()));
        }
    }
    let passwords = Passwords::from_pairs(pairs)?;
    Ok(match default {
        Some(pw) => passwords.with_default(pw)?,
        None => passwords,
    })
}
