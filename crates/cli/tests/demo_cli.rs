//! `sallyport demo` as a process: both sign-in flows start, the banner names the flow
//! and a `session revoke` command that works from another process, and SIGTERM stops
//! the demo cleanly. (The flows themselves are tested in crates/demo/tests and, in
//! Chromium, in tests/e2e.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PASSWORD: &str = "demo-cli-test-password";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sallyport"))
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("demo-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Where the demo's stderr goes: `SALLYPORT_TEST_LOG_DIR` (scripts/test scans it for
/// secrets) or a file in the test's own directory.
fn log_file(name: &str, fallback: &std::path::Path) -> std::fs::File {
    let path = match std::env::var_os("SALLYPORT_TEST_LOG_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cli-demo.secrets"), format!("{PASSWORD}\n")).unwrap();
            dir.join(format!("cli-demo-{name}-{}.log", std::process::id()))
        }
        None => fallback.with_extension("log"),
    };
    std::fs::File::create(path).unwrap()
}

/// A running `sallyport demo`, killed when dropped.
struct Demo {
    child: Child,
    banner: String,
    dir: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Demo {
    fn start(name: &str, extra: &[&str]) -> Demo {
        let dir = fresh_dir(name);
        let mut child = bin()
            .args(["demo", "--port", "0", "--data-dir"])
            .arg(&dir)
            .args(extra)
            .env("SALLYPORT_DEMO_PASSWORD", PASSWORD)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(log_file(name, &dir))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = String::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                banner.push_str(&line);
                banner.push('\n');
                if line.contains("Press Ctrl-C") {
                    let _ = tx.send(banner.clone());
                }
            }
        });
        let banner = rx
            .recv_timeout(Duration::from_secs(90))
            .expect("the demo printed its banner");
        Demo { child, banner, dir }
    }

    /// The value after `name:` on a banner line.
    fn field(&self, name: &str) -> String {
        self.banner
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name}: in {}", self.banner))
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }

    /// SIGTERM, as Ctrl-C; the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(bin_kill(&pid));
        self.child.wait().unwrap()
    }
}

fn bin_kill(pid: &str) -> bool {
    Command::new("kill")
        .args(["-TERM", pid])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn demo_help_documents_both_flows_and_the_revoke_command() {
    let out = bin().args(["demo", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--flow <FLOW>",
        "[default: code]",
        "code:",
        "password:",
        "back-channel logout",
        "sallyport session revoke --config <data dir>/issuer.toml --user demo",
    ] {
        assert!(help.contains(needle), "{needle} in {help}");
    }
}

#[test]
fn an_unknown_flow_is_refused_naming_the_flag() {
    let out = bin()
        .args(["demo", "--flow", "implicit", "--port", "0", "--data-dir"])
        .arg(fresh_dir("bad-flow"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--flow"), "{err}");
    assert!(err.contains("code") && err.contains("password"), "{err}");
}

/// The banner's revoke command, run as the docs say (another process, the demo's
/// settings file): it succeeds while the demo runs, in both flows.
#[cfg(unix)]
#[test]
fn both_flows_start_print_a_working_revoke_command_and_stop_on_sigterm() {
    for (flow, shown) in [("code", "code (OpenID Connect"), ("password", "password (")] {
        let mut demo = Demo::start(flow, &["--flow", flow]);
        assert!(
            demo.banner.contains(&format!("flow:      {shown}")),
            "{}",
            demo.banner
        );
        let config = demo.field("config");
        assert!(config.ends_with("issuer.toml"), "{config}");
        let command = format!("sallyport session revoke --config {config} --user demo");
        assert!(demo.banner.contains(&command), "{}", demo.banner);
        let out = bin()
            .args(["session", "revoke", "--config", &config, "--user", "demo"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "revoked 0 sessions of demo"
        );
        let status = demo.stop();
        assert!(status.success(), "{flow}: {status:?}");
    }
}
