//! `sallyport gateway --threads N` runs N event loops on one listener, through the real
//! binary: every loop serves connections, the connection cap counts all loops together
//! (N loops must not admit N times `max_connections`), and SIGTERM ends them all.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A keep-alive HTTP/1.1 upstream answering every request with 200 `ok`.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                while read_head(&mut reader).is_some() {
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Reads one message head; returns its lines, or `None` at EOF or on an error.
fn read_head(reader: &mut impl BufRead) -> Option<Vec<String>> {
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

/// A held keep-alive connection to the gateway.
struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// `GET path`: the status, or `None` when the gateway closed the connection.
    fn get(&mut self, path: &str) -> Option<u16> {
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
        )
        .ok()?;
        let head = read_head(&mut self.reader)?;
        let status = head[0].split(' ').nth(1)?.parse().ok()?;
        let len: usize = head.iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })?;
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).ok()?;
        Some(status)
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Gateway {
    child: Child,
    log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(name: &str, threads: usize, server: &str) -> (Self, SocketAddr) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("gateway-threads-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listen = free_addr();
        let config = dir.join("gateway.toml");
        write_config(&config, listen, upstream(), server);
        let log = dir.join("gateway.log");
        let child = Command::new(env!("CARGO_BIN_EXE_sallyport"))
            .args(["gateway", "--threads", &threads.to_string(), "--config"])
            .arg(&config)
            .env_remove("SESSION_SECRET")
            .env_remove("SALLYPORT_GATEWAY_CONFIG")
            .env_remove("SALLYPORT_GATEWAY_THREADS")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let gw = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Conn::open_checked(listen).is_none() {
            assert!(Instant::now() < deadline, "not serving: {}", gw.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        (gw, listen)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The event-loop threads (`gateway-loop-<i>`) and their voluntary context
    /// switches so far: a loop that serves requests sleeps in `epoll_wait` and is woken
    /// for nearly every one of them.
    fn loop_wakeups(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let tasks = format!("/proc/{}/task", self.child.id());
        for task in std::fs::read_dir(tasks).unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let comm = comm.trim();
            if !comm.starts_with("gateway-loop") {
                continue;
            }
            let status = std::fs::read_to_string(task.path().join("status")).unwrap();
            let switches = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            out.push((comm.to_owned(), switches));
        }
        out.sort();
        out
    }
}

impl Conn {
    fn open_checked(addr: SocketAddr) -> Option<u16> {
        TcpStream::connect(addr).ok()?;
        Conn::open(addr).get("/public/ping")
    }
}

fn write_config(path: &Path, listen: SocketAddr, upstream: SocketAddr, server: &str) {
    let text = format!(
        r#"listen = "{listen}"
upstream = "http://{upstream}"
public_paths = ["/public/**"]

[session]
secure = false
secrets = {{ "1" = "cli-threads-secret-cli-threads-secret-01" }}

[backend]
login_url = "http://127.0.0.1:9/api/login"
refresh_url = "http://127.0.0.1:9/api/refresh-token"

[store]
persist_logouts = false

[admin]
enabled = false

[server]
{server}
"#
    );
    std::fs::write(path, text).unwrap();
}

#[test]
fn every_event_loop_serves_connections_and_sigterm_ends_them_all() {
    let (gw, listen) = Gateway::start("serve", 3, "");
    let before = gw.loop_wakeups();
    assert_eq!(
        before.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["gateway-loop-1", "gateway-loop-2"],
        "3 loops: this runtime's and two threads of their own"
    );
    // 60 connections of 30 requests each, opened together: each loop is woken at most
    // once per connection without serving it (both race for an accept), and about once
    // per request for those it serves.
    let clients: Vec<_> = (0..60)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conn = Conn::open(listen);
                (0..30)
                    .filter(|_| conn.get("/public/x") == Some(200))
                    .count()
            })
        })
        .collect();
    let served: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(served, 1800, "every request answered");
    let after = gw.loop_wakeups();
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        assert!(
            a - b > 150,
            "{name} was woken {} times for 1800 requests: it served none of them",
            a - b
        );
    }

    // SIGTERM: every loop stops accepting and the process exits cleanly.
    let mut gw = gw;
    let ok = Command::new("kill")
        .args(["-TERM", &gw.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running: {}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}: {}", gw.log());
    assert!(
        TcpStream::connect(listen).is_err(),
        "the listener is closed"
    );
}

#[test]
fn the_connection_cap_counts_every_event_loop_together() {
    // Four loops, a cap of three connections for the whole process.
    let (gw, listen) = Gateway::start("cap", 4, "max_connections = 3");
    // `start` probed with connections of its own; wait until they are gone.
    std::thread::sleep(Duration::from_millis(300));
    let mut held: Vec<Conn> = (0..3).map(|_| Conn::open(listen)).collect();
    for conn in &mut held {
        assert_eq!(conn.get("/public/x"), Some(200), "{}", gw.log());
    }
    // Per-loop caps would admit up to twelve; the fourth connection is closed at once.
    for _ in 0..8 {
        let mut extra = Conn::open(listen);
        assert_eq!(extra.get("/public/x"), None, "a connection past the cap");
    }
    // A freed slot is usable again, whichever loop accepts the next connection.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if Conn::open(listen).get("/public/x") == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was not reused");
        std::thread::sleep(Duration::from_millis(50));
    }
    for conn in &mut held {
        assert_eq!(conn.get("/public/x"), Some(200));
    }
}
