//! Plain-socket HTTP/1.1 helpers for the tests that run the real binary: a keep-alive
//! client connection, a keep-alive upstream, free loopback ports. Each test file is a
//! crate of its own and uses part of this, hence `dead_code` allowed here.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A loopback address nothing listens on (yet).
pub(crate) fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Reads one message head; returns its lines (first the start line), or `None` at EOF or
/// on an error.
pub(crate) fn read_head(reader: &mut impl BufRead) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            return Some(lines);
        }
        lines.push(line);
    }
}

/// A keep-alive HTTP/1.1 upstream answering every request with 200 and `body`.
pub(crate) fn upstream(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                while read_head(&mut reader).is_some() {
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A held HTTP/1.1 keep-alive connection.
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Conn {
    pub(crate) fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// Writes `request` (head and body) and reads the answer: (status, body), or `None`
    /// when the server closed the connection instead.
    pub(crate) fn exchange(&mut self, request: &str) -> Option<(u16, String)> {
        self.stream.write_all(request.as_bytes()).ok()?;
        let head = read_head(&mut self.reader)?;
        let status = head.first()?.split(' ').nth(1)?.parse().ok()?;
        let len: usize = head.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })?;
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).ok()?;
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// `GET path` asking for JSON: (status, body), or `None` when the connection closed.
    pub(crate) fn try_get(&mut self, path: &str) -> Option<(u16, String)> {
        self.exchange(&format!(
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: application/json\r\n\r\n"
        ))
    }

    /// [`Conn::try_get`] on a connection that must still be open.
    pub(crate) fn get(&mut self, path: &str) -> (u16, String) {
        self.try_get(path).expect("the connection is still open")
    }
}

/// `GET path` on a new connection.
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    Conn::open(addr).get(path)
}

/// A `sallyport` process under test with its log file; killed when dropped.
pub(crate) struct Process {
    pub(crate) child: std::process::Child,
    pub(crate) log: std::path::PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Spawns `sallyport <args…> --config <config>` with the variables `clear` removed
    /// from its environment and `RUST_LOG=info`, its stderr into `log`.
    pub(crate) fn launch(args: &[&str], config: &Path, clear: &[&str], log: PathBuf) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sallyport"));
        cmd.args(args).arg("--config").arg(config);
        for name in clear {
            cmd.env_remove(name);
        }
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// The exit status once the process has ended, failing after `secs` seconds.
    pub(crate) fn exited_within(&mut self, secs: u64) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "still running: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The log lines containing `what`.
    pub(crate) fn lines_with(&self, what: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(what))
            .map(str::to_owned)
            .collect()
    }
}

/// Sends SIGHUP (a configuration reload) to `child`.
pub(crate) fn hangup(child: &std::process::Child) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP");
}

/// Waits (at most 60 s) until `check` holds.
pub(crate) fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh, empty directory `<name>-<pid>` for one test's files.
pub(crate) fn workdir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` whole, then renames it into place: a server reloading on `SIGHUP`
/// never reads half a file.
pub(crate) fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A gateway configuration listening on `listen`: `top` (upstream, public paths…), then
/// the session (a fixed secret, not `Secure`), an unreachable backend, logouts in memory
/// only, and `tail` (`[admin]`, `[server]`…).
pub(crate) fn gateway_toml(listen: SocketAddr, top: &str, tail: &str) -> String {
    format!(
        r#"listen = "{listen}"
{top}

[session]
secure = false
secrets = {{ "1" = "cli-tests-secret-cli-tests-secret-000001" }}

[backend]
login_url = "http://127.0.0.1:9/api/login"
refresh_url = "http://127.0.0.1:9/api/refresh-token"

[store]
persist_logouts = false

{tail}
"#
    )
}
