//! docs/operations.md, checked against the binary (issue 12, "docs/operations.md"):
//! every `sallyport …` / `sallyport-admin …` command line in its shell blocks (and the
//! README's) parses with the real command line, and the procedures it describes —
//! session-secret rotation, signing-key rotation, SQLite backup and restore — do what
//! the page says.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const OLD_SECRET: &str = "the-old-session-secret-of-32-chars-at-least";
const NEW_SECRET: &str = "the-new-session-secret-of-32-chars-at-least";

fn repo_file(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// A `sallyport` command without any of the test runner's Sallyport variables.
fn sallyport() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sallyport"));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("SALLYPORT_") || key == "SESSION_SECRET" {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run(mut cmd: Command, stdin: &str) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run sallyport");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("operations-doc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------
// Every command line shown exists.

/// The lines of the ```sh blocks of a Markdown text.
fn shell_lines(markdown: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            in_sh = !in_sh && info.trim() == "sh";
            continue;
        }
        if in_sh {
            lines.push(trimmed.to_owned());
        }
    }
    lines
}

/// Inline code spans outside code blocks that start a command (`sallyport-admin user
/// list`), except schematic ones (`sallyport user|session|keys …`).
fn inline_commands(markdown: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            let is_code = i % 2 == 1;
            let command = span.starts_with("sallyport ") || span.starts_with("sallyport-admin ");
            if is_code && command && !span.contains('…') && !span.contains('/') {
                spans.push(span.to_owned());
            }
        }
    }
    spans
}

/// The arguments after `sallyport` / `sallyport-admin` in every command of `line`
/// (`sallyport-admin X` runs `sallyport X`). A command ends at an unquoted `|`, `;`,
/// `&`, `)`, `>`, `<` or `#`; quotes are removed, variables are left as they are.
fn commands_in(line: &str) -> Vec<Vec<String>> {
    let mut tokens: Vec<(String, bool)> = Vec::new(); // (word, ends a command after it)
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                quoted = true;
            }
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() || quoted {
                    tokens.push((std::mem::take(&mut word), false));
                    quoted = false;
                }
            }
            (None, '|' | ';' | '&' | ')' | '>' | '<' | '#' | '(') => {
                if !word.is_empty() || quoted {
                    tokens.push((std::mem::take(&mut word), false));
                    quoted = false;
                }
                tokens.push((String::new(), true));
                if c == '#' {
                    break;
                }
            }
            (None, c) => word.push(c),
        }
        let _ = chars.peek();
    }
    if !word.is_empty() || quoted {
        tokens.push((word, false));
    }

    let mut commands = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (w, _) = &tokens[i];
        let next_is_subcommand = tokens
            .get(i + 1)
            .is_some_and(|(n, end)| !end && n.starts_with(|c: char| c.is_ascii_lowercase()));
        if (w == "sallyport" || w == "sallyport-admin") && next_is_subcommand {
            let mut args = Vec::new();
            i += 1;
            while i < tokens.len() && !tokens[i].1 {
                args.push(tokens[i].0.clone());
                i += 1;
            }
            commands.push(args);
        } else {
            i += 1;
        }
    }
    commands
}

#[test]
fn the_command_splitter_reads_the_shapes_the_page_uses() {
    assert_eq!(
        inline_commands(
            "Run `sallyport-admin user list`, not `sallyport user|session|keys …`.\n```sh\nsallyport x\n```"
        ),
        vec!["sallyport-admin user list"]
    );
    assert_eq!(
        commands_in("(set -a; . /etc/x.env; sallyport gateway --config /etc/x.toml --check)"),
        vec![vec!["gateway", "--config", "/etc/x.toml", "--check"]]
    );
    assert_eq!(
        commands_in(r#"SESSION_SECRET='{"1":"a"}' sallyport unseal "$C"   # comment"#),
        vec![vec!["unseal", "$C"]]
    );
    assert_eq!(
        commands_in("sallyport-admin keys export --private > keys.json"),
        vec![vec!["keys", "export", "--private"]]
    );
    assert_eq!(commands_in("sallyport man | man -l -"), vec![vec!["man"]]);
    assert!(commands_in("install -d -o sallyport -g sallyport -m 0700 /x").is_empty());
    assert!(commands_in("runuser -u sallyport -- sqlite3 db '.backup x'").is_empty());
}

#[test]
fn every_command_line_on_the_operations_page_and_in_the_readme_exists() {
    let mut checked = 0;
    for file in ["docs/operations.md", "README.md"] {
        let text = repo_file(file);
        let mut lines = shell_lines(&text);
        if file == "docs/operations.md" {
            lines.extend(inline_commands(&text));
        }
        for line in lines {
            for args in commands_in(&line) {
                // clap rejects an unknown subcommand or flag before it acts on --help, and
                // --help stops before anything runs (no file is read, no database opened).
                let mut cmd = sallyport();
                cmd.args(&args).arg("--help");
                let out = run(cmd, "");
                assert!(
                    out.status.success(),
                    "{file}: `sallyport {}` is not a valid command line: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    // Guards the extraction: the two files show 19 (as of this writing).
    assert!(checked >= 15, "only {checked} command lines found");
}

// ---------------------------------------------------------------------------------
// Rotating the session secret.

fn seal_with(secret: &str, json: &str) -> String {
    let mut cmd = sallyport();
    cmd.arg("seal").env("SESSION_SECRET", secret);
    ok(&run(cmd, json)).trim().to_owned()
}

fn unseal_with(secret: &str, cookie: &str) -> Output {
    let mut cmd = sallyport();
    cmd.args(["unseal", cookie]).env("SESSION_SECRET", secret);
    run(cmd, "")
}

#[test]
fn session_secret_rotation_as_documented() {
    let json = r#"{"isLoggedIn":true}"#;
    // Before: SESSION_SECRET alone seals as id 1.
    let old_cookie = seal_with(OLD_SECRET, json);
    assert!(old_cookie.starts_with("Fe26.2*1*"), "{old_cookie}");

    // Step 1: the map {1 = old, 2 = new} opens the old cookie (the doc's check) and seals
    // new ones with id 2.
    let both = format!(r#"{{"1":"{OLD_SECRET}","2":"{NEW_SECRET}"}}"#);
    assert!(ok(&unseal_with(&both, &old_cookie)).contains("isLoggedIn"));
    let new_cookie = seal_with(&both, json);
    assert!(new_cookie.starts_with("Fe26.2*2*"), "{new_cookie}");
    // A replica still on the old secret cannot open it (the rollout window).
    assert!(!unseal_with(OLD_SECRET, &new_cookie).status.success());

    // The gateway accepts the map in the form the page writes into gateway.env, without
    // SESSION_SECRET.
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/etc/gateway.toml");
    let mut gateway = sallyport();
    gateway
        .args(["gateway", "--check", "--config"])
        .arg(&packaged)
        .env(
            "SALLYPORT_GATEWAY_SESSION__SECRETS",
            format!(r#"{{1="{OLD_SECRET}",2="{NEW_SECRET}"}}"#),
        );
    assert!(ok(&run(gateway, "")).contains("configuration OK"));

    // Step 4: {2 = new} only — the new cookie opens, the old one no longer does.
    let new_only = format!(r#"{{"2":"{NEW_SECRET}"}}"#);
    assert!(unseal_with(&new_only, &new_cookie).status.success());
    let out = unseal_with(&new_only, &old_cookie);
    assert!(!out.status.success());
}

// ---------------------------------------------------------------------------------
// Rotating the signing key, backup and restore (SQLite).

fn admin(db: &Path, args: &[&str], stdin: &str) -> String {
    let mut cmd = sallyport();
    cmd.args(args)
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()));
    ok(&run(cmd, stdin))
}

/// `keys list --json`, one JSON object per key.
fn keys(db: &Path) -> Vec<serde_json::Value> {
    admin(db, &["keys", "list", "--json"], "")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn signing_key_rotation_as_documented() {
    let db = fresh_dir("keys").join("issuer.db");
    admin(
        &db,
        &["user", "add", "alice", "--password-stdin"],
        "a-long-password\n",
    );
    let table = admin(&db, &["keys", "list"], "");
    assert_eq!(table.lines().count(), 1);
    assert!(table.contains("signing published"), "{table}");
    let before = keys(&db);
    let old_kid = before[0]["kid"].as_str().unwrap().to_owned();

    let said = admin(&db, &["keys", "rotate"], "");
    assert!(said.contains("new signing key"), "{said}");

    let after = keys(&db);
    assert_eq!(after.len(), 2);
    let old = after.iter().find(|k| k["kid"] == old_kid.as_str()).unwrap();
    let new = after.iter().find(|k| k["kid"] != old_kid.as_str()).unwrap();
    assert_eq!(new["signing"], true);
    assert_eq!(new["published"], true);
    // Retired, no longer signing, still published (its tokens keep verifying).
    assert_eq!(old["signing"], false);
    assert!(old["retired_at_ms"].is_i64(), "{old}");
    assert_eq!(old["published"], true);
    let table = admin(&db, &["keys", "list"], "");
    assert!(
        table.lines().any(|l| l.starts_with(&old_kid)
            && !l.contains("retired=-")
            && l.ends_with("published")),
        "{table}"
    );

    // Both keys are in the JWKS, and in the private export.
    let jwks: serde_json::Value =
        serde_json::from_str(&admin(&db, &["keys", "export"], "")).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let private: serde_json::Value =
        serde_json::from_str(&admin(&db, &["keys", "export", "--private"], "")).unwrap();
    assert_eq!(private["keys"].as_array().unwrap().len(), 2);
}

/// The `sqlite3` program, which the page uses for backups (Debian package `sqlite3`,
/// installed by scripts/install-deps); required under CI.
fn sqlite3() -> bool {
    let found = Command::new("sqlite3").arg("-version").output().is_ok();
    if !found && std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("sqlite3 is missing (Debian package sqlite3); under CI it is required");
    }
    found
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    ok(&out)
}

#[test]
fn sqlite_backup_and_restore_as_documented() {
    if !sqlite3() {
        eprintln!("skipped: no sqlite3 program");
        return;
    }
    let dir = fresh_dir("backup");
    let db = dir.join("issuer.db");
    admin(
        &db,
        &["user", "add", "alice", "--password-stdin"],
        "a-long-password\n",
    );
    admin(&db, &["keys", "rotate"], "");
    let kids_at_backup: Vec<String> = keys(&db)
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();

    // The two backups the page shows, and the check.
    let backup = dir.join("issuer-backup.db");
    let vacuumed = dir.join("issuer-backup-vacuum.db");
    sqlite(&db, &format!(".backup '{}'", backup.display()));
    sqlite(&db, &format!("VACUUM INTO '{}'", vacuumed.display()));
    for copy in [&backup, &vacuumed] {
        assert_eq!(sqlite(copy, "PRAGMA integrity_check").trim(), "ok");
    }

    // Life goes on after the backup.
    admin(
        &db,
        &["user", "add", "bob", "--password-stdin"],
        "another-password\n",
    );
    admin(&db, &["keys", "rotate"], "");

    // Restore as the page says: the database's -wal and -shm go, the copy takes its place.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&backup, &db).unwrap();
    let users = admin(&db, &["user", "list"], "");
    assert!(users.lines().any(|l| l.starts_with("alice ")), "{users}");
    assert!(!users.lines().any(|l| l.starts_with("bob ")), "{users}");
    let kids: Vec<String> = keys(&db)
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, kids_at_backup);

    // The compacted copy is a database the issuer opens just as well.
    let users = admin(&vacuumed, &["user", "list"], "");
    assert!(users.lines().any(|l| l.starts_with("alice ")), "{users}");
}
