//! Test support (feature `testing`): the logs of a test binary, for the secret scan.
//!
//! The test command (scripts/test) sets `SALLYPORT_TEST_LOG_DIR` to one directory for
//! the whole run and `SALLYPORT_TEST_RUST_LOG` to the level (debug, trace for Sallyport's
//! crates); its last step, scripts/lib/scan-logs, fails on any token, cookie value or
//! password found in a file there. An integration-test binary that runs the gateway, the
//! issuer or a client in its own process calls [`init_test_logs`] before it starts them.

use std::io;
use std::path::Path;
use std::sync::{Mutex, Once};

/// With `SALLYPORT_TEST_LOG_DIR` set (not empty), installs a global subscriber writing
/// every log line of this process (no colours) to `rust-<suite>-<pid>.log` there,
/// filtered by `SALLYPORT_TEST_RUST_LOG` (else `RUST_LOG`, else `debug,sallyport=trace`;
/// the tests' cookie jar, `cookie_store`, at info at most), and lists `secrets` (the
/// literal passwords and secrets the tests use) one per line in `rust-<suite>.secrets`,
/// which the scan looks for verbatim. Without the variable it does nothing, so a test run
/// on its own logs nothing. Only the first call in a process acts.
///
/// # Panics
///
/// When the directory or a file in it cannot be written: a run whose logs are lost must
/// not pass the scan as clean.
pub fn init_test_logs(suite: &str, secrets: &[&str]) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Some(dir) = std::env::var_os("SALLYPORT_TEST_LOG_DIR").filter(|d| !d.is_empty()) else {
            return;
        };
        if let Err(e) = install(Path::new(&dir), suite, secrets) {
            panic!(
                "SALLYPORT_TEST_LOG_DIR={}: cannot write the test logs: {e}",
                Path::new(&dir).display()
            );
        }
    });
}

fn install(dir: &Path, suite: &str, secrets: &[&str]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = std::fs::File::create(dir.join(format!("rust-{suite}-{}.log", std::process::id())))?;
    let mut listed = secrets.join("\n");
    listed.push('\n');
    std::fs::write(dir.join(format!("rust-{suite}.secrets")), listed)?;
    let mut filter = std::env::var("SALLYPORT_TEST_RUST_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "debug,sallyport=trace".into());
    // The cookie jar of the tests' own HTTP clients (reqwest's `cookies` feature, a
    // dev-dependency only: `cargo tree -e normal -i cookie_store` is empty) logs every
    // `Set-Cookie` it stores at debug. That is the test's browser, not Sallyport.
    filter.push_str(",cookie_store=info");
    // Another subscriber already set (a test that installs its own) keeps its place.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
    Ok(())
}
