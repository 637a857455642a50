//! `sallyport issuer` reloads its configuration file on `SIGHUP`, through the real
//! binary: a client added to the file is accepted without the process or a held client
//! connection dropping, a setting that needs a restart is kept with a warning, and an
//! invalid edit is refused with one log line while the old configuration keeps serving.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

mod support;
use support::{Conn, Process as Issuer, eventually, free_addr, hangup, workdir, write_atomically};

const GATEWAY_SECRET: &str = "gateway-client-secret-0001";
const SECOND_SECRET: &str = "second-client-secret-0002";

/// The issuer's requests on a held connection.
trait IssuerConn {
    fn send(&mut self, path: &str, body: &str) -> (u16, String);
    fn token_as(&mut self, client: &str, secret: &str) -> u16;
}

impl IssuerConn for Conn {
    /// Sends a request (`body` empty: a GET); returns (status, body).
    fn send(&mut self, path: &str, body: &str) -> (u16, String) {
        let request = if body.is_empty() {
            format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        } else {
            format!(
                "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\
                 content-type: application/x-www-form-urlencoded\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        self.exchange(&request)
            .expect("the connection is still open")
    }

    /// A refresh grant with a made-up token, authenticated as `client`
    /// (client_secret_post): 401 when the issuer does not know the client, 400
    /// `invalid_grant` when it does (no password hashing involved).
    fn token_as(&mut self, client: &str, secret: &str) -> u16 {
        let body = format!(
            "grant_type=refresh_token&refresh_token=made-up&client_id={client}&client_secret={secret}"
        );
        self.send("/oauth/token", &body).0
    }
}

fn write_config(path: &Path, db: &Path, listen: SocketAddr, body: &str) {
    let text = format!(
        r#"database_url = "sqlite://{db}"
listen = "{listen}"
issuer = "http://{listen}"
allow_public_clients = false
{body}

[[clients]]
id = "gateway"
secret = "{GATEWAY_SECRET}"
"#,
        db = db.display()
    );
    write_atomically(path, &text);
}

fn second_client() -> String {
    format!("[[clients]]\nid = \"second\"\nsecret = \"{SECOND_SECRET}\"")
}

#[test]
fn sighup_reloads_the_issuer_configuration_without_dropping_connections() {
    let dir = workdir("issuer-reload");
    let config = dir.join("issuer.toml");
    let db = dir.join("issuer.db");
    let listen = free_addr();
    write_config(&config, &db, listen, "");
    let mut issuer = Issuer::launch(
        &["issuer"],
        &config,
        &[
            "SALLYPORT_ISSUER_CONFIG",
            "SALLYPORT_ISSUER_DATABASE_URL",
            "SALLYPORT_ISSUER_LISTEN",
            "SALLYPORT_ISSUER_AUDIENCE",
            "SALLYPORT_KEY_ENCRYPTION_KEY",
            "SALLYPORT_LOG_FORMAT",
        ],
        dir.join("issuer.log"),
    );
    eventually("the issuer serves", || TcpStream::connect(listen).is_ok());

    let mut held = Conn::open(listen);
    assert_eq!(held.token_as("gateway", GATEWAY_SECRET), 400);
    assert_eq!(held.token_as("second", SECOND_SECRET), 401);

    // A valid edit: a second client, and `audience`, which needs a restart.
    write_config(
        &config,
        &db,
        listen,
        &format!("audience = \"elsewhere\"\n{}", second_client()),
    );
    hangup(&issuer.child);
    eventually("the new client is accepted", || {
        Conn::open(listen).token_as("second", SECOND_SECRET) == 400
    });
    assert!(issuer.alive(), "SIGHUP does not end the process");
    assert!(
        !issuer.lines_with("configuration reloaded").is_empty(),
        "{}",
        issuer.log()
    );
    let kept = issuer.lines_with("needs a restart");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].contains("`audience`"), "{}", kept[0]);
    // The connection opened before the reload carries on, under the new configuration.
    assert_eq!(held.token_as("second", SECOND_SECRET), 400);
    assert_eq!(held.token_as("gateway", GATEWAY_SECRET), 400);

    // An invalid edit (which would also remove the second client): refused with one log
    // line naming the setting; nothing changes.
    write_config(
        &config,
        &db,
        listen,
        "[http]\ntrusted_proxies = [\"not-a-network\"]",
    );
    hangup(&issuer.child);
    eventually("the refusal is logged", || {
        !issuer.lines_with("configuration reload refused").is_empty()
    });
    let refusal = &issuer.lines_with("configuration reload refused")[0];
    assert!(refusal.contains("http.trusted_proxies"), "{refusal}");
    assert!(issuer.alive(), "an invalid configuration does not end it");
    assert_eq!(held.token_as("second", SECOND_SECRET), 400, "still known");

    // An unparsable file is refused the same way, on one line.
    std::fs::write(&config, "listen = [").unwrap();
    hangup(&issuer.child);
    eventually("the second refusal is logged", || {
        issuer.lines_with("configuration reload refused").len() == 2
    });
    assert!(issuer.alive());
    let refusal = &issuer.lines_with("configuration reload refused")[1];
    assert!(refusal.contains("TOML parse error"), "one line: {refusal}");
    assert_eq!(held.token_as("second", SECOND_SECRET), 400);

    let metrics = held.send("/metrics", "").1;
    for line in [
        "sallyport_issuer_config_reloads_total{result=\"ok\"} 1",
        "sallyport_issuer_config_reloads_total{result=\"refused\"} 2",
        "sallyport_issuer_config_last_reload_successful 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

/// A `SIGHUP` that arrives while the issuer is still opening its database (sent from
/// `systemctl reload` during a slow start, say) does not end the process: the handler
/// is installed first thing. The database here is a TCP listener that accepts the
/// issuer's connection — proof that start-up has reached the database — and closes it
/// after the signal, so start-up then fails on its own terms: an error exit, not death
/// by signal.
#[test]
fn sighup_during_start_up_does_not_end_the_issuer() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = workdir("issuer-reload-start");
    let config = dir.join("issuer.toml");
    let fake_db = TcpListener::bind("127.0.0.1:0").unwrap();
    let db_addr = fake_db.local_addr().unwrap();
    let listen = free_addr();
    std::fs::write(
        &config,
        format!(
            "database_url = \"postgres://sallyport@{db_addr}/issuer\"\nlisten = \"{listen}\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .args(["issuer", "--config"])
        .arg(&config)
        .env_remove("SALLYPORT_ISSUER_CONFIG")
        .env_remove("SALLYPORT_ISSUER_DATABASE_URL")
        .env_remove("SALLYPORT_ISSUER_LISTEN")
        .env_remove("SALLYPORT_KEY_ENCRYPTION_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (first, _) = fake_db.accept().unwrap();
    hangup(&child);
    drop(first);
    // Any further attempt is refused the same way.
    std::thread::spawn(move || {
        for stream in fake_db.incoming() {
            drop(stream);
        }
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), None, "ended by SIGHUP: {stderr}");
    assert!(!status.success());
    assert!(stderr.contains("opening postgres://"), "{stderr}");
}
