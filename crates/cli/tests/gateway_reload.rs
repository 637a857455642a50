//! `sallyport gateway` reloads its configuration file on `SIGHUP`, through the real
//! binary: the change takes effect without the process or a held client connection
//! dropping, and an invalid edit is refused with a log line while the old configuration
//! keeps serving.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::net::{SocketAddr, TcpStream};
use std::path::Path;

mod support;
use support::{
    Conn, Process as Gateway, eventually, free_addr, gateway_toml, get, hangup, upstream, workdir,
    write_atomically,
};

fn write_config(path: &Path, listen: SocketAddr, admin: SocketAddr, top: &str) {
    write_atomically(
        path,
        &gateway_toml(listen, top, &format!("[admin]\nlisten = \"{admin}\"")),
    );
}

#[test]
fn sighup_reloads_the_configuration_without_dropping_connections() {
    let dir = workdir("gateway-reload");
    let config = dir.join("gateway.toml");
    let (listen, admin) = (free_addr(), free_addr());
    let (a, b) = (upstream("upstream-a"), upstream("upstream-b"));
    write_config(
        &config,
        listen,
        admin,
        &format!("upstream = \"http://{a}\"\npublic_paths = [\"/public/**\"]"),
    );
    let mut gw = Gateway::launch(
        &["gateway"],
        &config,
        &[
            "SESSION_SECRET",
            "SALLYPORT_GATEWAY_CONFIG",
            "SALLYPORT_LOG_FORMAT",
        ],
        dir.join("gateway.log"),
    );
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
