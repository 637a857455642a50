//! `sallyport user add` and `sallyport keys …` against a fresh SQLite database, through
//! the real binary (issue 8, item 6): private files, key export, key encryption.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEK: &str = "HxwdHhscGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

fn sallyport(args: &[&str], db: &Path, kek: Option<&str>, stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sallyport"));
    cmd.args(args)
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .env_remove("SALLYPORT_KEY_ENCRYPTION_KEY")
        .env_remove("SALLYPORT_ISSUER_CONFIG")
        .env_remove("SALLYPORT_ISSUER_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(k) = kek {
        cmd.env("SALLYPORT_KEY_ENCRYPTION_KEY", k);
    }
    let mut child = cmd.spawn().expect("run sallyport");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, not yet existing directory for one test.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("issuer-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn user_add_creates_a_private_database() {
    let dir = fresh_dir("perm").join("data");
    let db = dir.join("issuer.db");
    let out = sallyport(&["user", "add", "alice"], &db, None, "a-long-password\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
    for suffix in ["-wal", "-shm"] {
        let f = PathBuf::from(format!("{}{suffix}", db.display()));
        if f.exists() {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
}

#[test]
fn keys_export_prints_the_public_jwks_and_only_explicitly_the_private_keys() {
    let db = fresh_dir("export").join("issuer.db");
    let out = sallyport(&["keys", "export"], &db, None, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jwks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0]["kid"].is_string());
    assert!(keys[0].get("d").is_none(), "no private part: {jwks}");
    assert!(!text(&out.stdout).contains("PRIVATE KEY"));

    let out = sallyport(&["keys", "export", "--private"], &db, None, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("PRIVATE"));
    let backup: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(backup["keys"][0]["kid"], keys[0]["kid"]);
    assert!(
        backup["keys"][0]["private_key_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN PRIVATE KEY")
    );
}

#[test]
fn encrypted_keys_need_the_key_encryption_key() {
    let db = fresh_dir("kek").join("issuer.db");
    let out = sallyport(&["keys", "list", "--json"], &db, Some(KEK), "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(key["encrypted"], true);

    let out = sallyport(&["keys", "list"], &db, None, "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("SALLYPORT_KEY_ENCRYPTION_KEY"),
        "{}",
        text(&out.stderr)
    );
    let out = sallyport(&["keys", "list"], &db, Some(OTHER_KEK), "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not decrypt"),
        "{}",
        text(&out.stderr)
    );
    let out = sallyport(&["keys", "export", "--private"], &db, Some(KEK), "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("BEGIN PRIVATE KEY"));
}
