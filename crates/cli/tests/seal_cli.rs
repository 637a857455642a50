//! `sallyport seal` / `sallyport unseal` end to end, through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const PW1: &str = "iron-session-vector-password-A-0123456789";
const PW2: &str = "a-second-password-for-rotation-0123456789";
/// A cookie iron-session 9.0.1 wrote (vector `cookie_read_valid`, sealed at
/// 2026-01-01T00:00:00Z, expiring 14 days later).
const IRON_SESSION_COOKIE: &str = "Fe26.2*1*e98943ffe76568cf7373dbe098af3d37a51991f98ba45af02def00074a4ce16f*u0nPS5crTEUYRj2i7-Zq1A*Q4MqYotTrtuAwDyYGMiSHOXqCqmhmDsnzBWRchkDQxE60bSCVAkeugWPnn8VR8aW2-vKH7zKOjjAKM9vgDU-g2jOdHuqNbrUqiBHqbL6mrQRYmyanTtME0vwwK5xkBmG1wdwxBPhnUM5TReIogPWuZd4m9hdELFOkw94H3bSHAZmBBw7bwKi49gFlCy2_6Yo44AW9Id3zDwB_bS_avpl9Cci1zlwkaDfrORp0F2Gu6jsFQTiCAKCPrJoXwpjvssv4NZsrpDfqduK5lQq4TB61miakd_M5bxJGSfnOp-IiaXNKEyi0RyHUh0x_YtJt7SU_8s6i8mfeEhdM_JthkE4dQFR7HaBFjXulxlOoaj0M5C6awSBcADLsOgdzHwfvp_uOAOKwx_yPOO-kfIXVFlkJSpx-ILkNPFop5EAsWLNpLayHBut7uizF3ZloQGTPXM4OWH4jiir_9cj3cVUkOgvRquWB9M0UU9zD1zvyuYT4Io8y6iJedwQurWvS1fkKx-b2pEifdLgHsCL-srGZw6P5IrY2WDyrqYQHJAKZuOND937qkNw4D65-bV8tTwCckGTm1YEWZnbA5r9dPMoVGlUXqN7tRvokg2Hqq3JX7-FwDcK6PIbU53tOEJRyHtR5XC_iEa5UtL6pXlm0BZI12i9lvk70kNBJf70yLsiwz0Zynl8iXbRwQD_cZo3Qbds4srv5GEGwNNrNPOB7IX_Ln32mdYdu-FDvmmFtVkWEngBkHbdaAWt1__R9yivlclIpjqG4XE3jfj4Ka9loE81-JjLmtjjZtofaghRQCDYAbkCeMMQqKe9MbII2ZeSdeWruWQp*1768435200000*f8faff8a4d6fd52b298d8bfcfdebdd52cf30074ec64616d9eaebe0b0dadb7b0f*DCwQJUyUw-4yypK85ra6sq3fLWpSvtMgSJGQgnTM-ag~2";
const SEALED_AT: &str = "1767225600000";

fn sallyport(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sallyport"));
    cmd.args(args)
        .env_remove("SESSION_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run sallyport");
    // A command that fails before reading its input (no password configured) may exit
    // before this write: a broken pipe then is the child's business, not the test's.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => panic!("writing the child's stdin: {e}"),
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn seal_then_unseal_round_trips() {
    let env = [("SESSION_SECRET", PW1)];
    let sealed = sallyport(
        &["seal"],
        &env,
        r#"{ "isLoggedIn": true, "b": 1, "2": "x" }"#,
    );
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    let cookie = stdout(&sealed);
    assert!(
        cookie.starts_with("Fe26.2*1*") && cookie.trim_end().ends_with("~2"),
        "{cookie}"
    );

    let opened = sallyport(&["unseal", cookie.trim()], &env, "");
    assert!(opened.status.success(), "{}", stderr(&opened));
    // JSON.stringify form: no whitespace, integer-like keys first.
    assert_eq!(
        stdout(&opened),
        "{\"2\":\"x\",\"isLoggedIn\":true,\"b\":1}\n"
    );

    // `-` reads the value from stdin.
    let from_stdin = sallyport(&["unseal", "-"], &env, &cookie);
    assert_eq!(stdout(&from_stdin), stdout(&opened));
}

#[test]
fn reads_a_cookie_written_by_iron_session() {
    let out = sallyport(
        &["unseal", "--at", SEALED_AT, "--meta", IRON_SESSION_COOKIE],
        &[("SESSION_SECRET", PW1)],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let meta: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(meta["passwordId"], "1");
    assert_eq!(meta["expiresAt"], 1_768_435_200_000u64);
    assert_eq!(meta["data"]["isLoggedIn"], true);
    assert!(
        meta["data"]["accessToken"]
            .as_str()
            .unwrap()
            .starts_with("eyJ")
    );

    // As copied from a Cookie header, and percent-encoded.
    let header_form = format!(
        "my_session={}; theme=dark",
        IRON_SESSION_COOKIE.replace('*', "%2A")
    );
    let out = sallyport(
        &["unseal", "--at", SEALED_AT, &header_form],
        &[("SESSION_SECRET", PW1)],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn unseal_failures_say_why_and_exit_non_zero() {
    let env = [("SESSION_SECRET", PW1)];
    let cases: [(&[&str], &str); 4] = [
        (
            &["unseal", "--at", "1768435260000", IRON_SESSION_COOKIE],
            "(expired)",
        ),
        (&["unseal", "--at", SEALED_AT, "not-a-seal"], "malformed"),
        (
            &[
                "unseal",
                "--at",
                SEALED_AT,
                &IRON_SESSION_COOKIE.replacen("DCwQ", "DCwR", 1),
            ],
            "bad MAC",
        ),
        (
            &[
                "unseal",
                "--at",
                SEALED_AT,
                &IRON_SESSION_COOKIE.replacen("Fe26.2*1*", "Fe26.2*7*", 1),
            ],
            "unknown password id \"7\"",
        ),
    ];
    for (args, want) in cases {
        let out = sallyport(args, &env, "");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stdout(&out).is_empty());
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    // One second before the 60 s skew runs out it still opens.
    let out = sallyport(
        &["unseal", "--at", "1768435259999", IRON_SESSION_COOKIE],
        &env,
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn password_sources_and_rotation_map() {
    // No password configured: the error names the variable.
    let out = sallyport(&["seal"], &[], "{}");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("SESSION_SECRET"), "{}", stderr(&out));

    // Too short.
    let out = sallyport(&["seal"], &[("SESSION_SECRET", "short")], "{}");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("shorter than 32"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("short\""),
        "the password must not be echoed"
    );

    // A map in a custom variable: seals with the highest id.
    let map = format!(r#"{{"1":"{PW1}","2":"{PW2}"}}"#);
    let out = sallyport(
        &["seal", "--password-env", "MY_SECRET", "--ttl", "60"],
        &[("MY_SECRET", &map)],
        "{}",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let cookie = stdout(&out);
    assert!(cookie.starts_with("Fe26.2*2*"), "{cookie}");

    // The file form (trailing newline removed) opens it; the old single password does not.
    let file = temp_file("map.json", &format!("{map}\n"));
    let out = sallyport(
        &[
            "unseal",
            "--password-file",
            file.to_str().unwrap(),
            cookie.trim(),
        ],
        &[],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{}\n");
    let out = sallyport(&["unseal", cookie.trim()], &[("SESSION_SECRET", PW1)], "");
    assert!(
        stderr(&out).contains("unknown-password"),
        "{}",
        stderr(&out)
    );

    // A single password in a file, with a trailing newline.
    let file = temp_file("pw.txt", &format!("{PW1}\n"));
    let out = sallyport(
        &["seal", "--password-file", file.to_str().unwrap()],
        &[],
        "[1,2]",
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn seal_refuses_invalid_json() {
    let out = sallyport(&["seal"], &[("SESSION_SECRET", PW1)], "{not json");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));
}

#[test]
fn ttl_zero_means_no_expiry_and_help_explains_options() {
    let out = sallyport(&["seal", "--ttl", "0"], &[("SESSION_SECRET", PW1)], "{}");
    let cookie = stdout(&out);
    assert_eq!(cookie.split('*').nth(5), Some(""), "{cookie}");

    for sub in ["seal", "unseal"] {
        let help = sallyport(&[sub, "--help"], &[], "");
        let text = stdout(&help);
        for flag in ["--password-env", "--password-file", "SESSION_SECRET"] {
            assert!(text.contains(flag), "{sub} --help lacks {flag}:\n{text}");
        }
    }
    let help = stdout(&sallyport(&["seal", "--help"], &[], ""));
    assert!(help.contains("--ttl") && help.contains("14 days"), "{help}");
}
