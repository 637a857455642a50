//! `sallyport gateway` reloads its configuration file on `SIGHUP`, through the real
//! binary: the change takes effect without the process or a held client connection
//! dropping, and an invalid edit is refused with a log line while the old configuration
//! keeps serving.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod support;
use support::{Conn, Process as Gateway, eventually, free_addr, get, hangup, upstream};

fn write_config(path: &Path, listen: SocketAddr, admin: SocketAddr, body: &str) {
    let text = format!(
        r#"listen = "{listen}"
{body}

[session]
secure = false
secrets = {{ "1" = "cli-reload-secret-cli-reload-secret-0001" }}

[backend]
login_url = "http://127.0.0.1:9/api/login"
refresh_url = "http://127.0.0.1:9/api/refresh-token"

[store]
persist_logouts = false

[admin]
listen = "{admin}"
"#
    );
    // Written whole, then renamed: the gateway never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Polls `check` for up to 20 s.

#[test]
fn sighup_reloads_the_configuration_without_dropping_connections() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gateway-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    let log = dir.join("gateway.log");
    let (listen, admin) = (free_addr(), free_addr());
    let (a, b) = (upstream("upstream-a"), upstream("upstream-b"));
    write_config(
        &config,
        listen,
        admin,
        &format!("upstream = \"http://{a}\"\npublic_paths = [\"/public/**\"]"),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .args(["gateway", "--config"])
        .arg(&config)
        .env_remove("SESSION_SECRET")
        .env_remove("SALLYPORT_GATEWAY_CONFIG")
        .env_remove("SALLYPORT_LOG_FORMAT")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut gw = Gateway { child, log };
    eventually("the gateway serves", || {
        TcpStream::connect(listen).is_ok() && TcpStream::connect(admin).is_ok()
    });

    let mut held = Conn::open(listen);
    assert_eq!(held.get("/public/x"), (200, "upstream-a".into()));
    assert_eq!(get(listen, "/private/x").0, 401);

    // A valid edit: new upstream, new public path.
    write_config(
        &config,
        listen,
        admin,
        &format!("upstream = \"http://{b}\"\npublic_paths = [\"/public/**\", \"/private/**\"]"),
    );
    hangup(&gw.child);
    eventually("the new configuration applies", || {
        get(listen, "/private/x") == (200, "upstream-b".into())
    });
    assert!(gw.alive(), "SIGHUP does not end the process");
    assert!(gw.log().contains("configuration reloaded"), "{}", gw.log());
    // The connection opened before the reload carries on, under the new configuration.
    assert_eq!(held.get("/public/x"), (200, "upstream-b".into()));

    // An invalid edit: refused with a log line naming the setting; nothing changes.
    write_config(
        &config,
        listen,
        admin,
        "upstream = \"not a url\"\npublic_paths = []",
    );
    hangup(&gw.child);
    eventually("the refusal is logged", || {
        gw.log().contains("configuration reload refused")
    });
    let log = gw.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("configuration reload refused"))
        .unwrap();
    assert!(refusal.contains("`upstream`"), "{refusal}");
    assert!(
        gw.alive(),
        "an invalid configuration does not end the process"
    );
    assert_eq!(held.get("/private/x"), (200, "upstream-b".into()));
    assert_eq!(get(listen, "/private/y"), (200, "upstream-b".into()));

    // An unparsable file is refused the same way.
    std::fs::write(&config, "listen = [").unwrap();
    hangup(&gw.child);
    eventually("the second refusal is logged", || {
        gw.log().matches("configuration reload refused").count() == 2
    });
    assert!(gw.alive());
    let log = gw.log();
    let refusal = log
        .lines()
        .filter(|l| l.contains("configuration reload refused"))
        .nth(1)
        .unwrap();
    assert!(refusal.contains("TOML parse error"), "one line: {refusal}");
    assert_eq!(held.get("/public/x"), (200, "upstream-b".into()));

    let metrics = get(admin, "/metrics").1;
    for line in [
        "sallyport_gateway_config_reloads_total{result=\"ok\"} 1",
        "sallyport_gateway_config_reloads_total{result=\"refused\"} 2",
        "sallyport_gateway_config_last_reload_successful 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}
