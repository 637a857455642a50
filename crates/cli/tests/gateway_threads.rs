//! `sallyport gateway --threads N` runs N event loops on one listener, through the real
//! binary: every loop serves connections (the kernel spreads them over the loops'
//! `SO_REUSEPORT` sockets), the connection cap counts all loops together
//! (N loops must not admit N times `max_connections`), and SIGTERM ends them all.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::{Conn, Process as Gateway, free_addr, gateway_toml, upstream, workdir};

impl Gateway {
    /// Starts a gateway with `threads` loops on a free address and waits until it serves.
    fn start(name: &str, threads: usize, server: &str) -> (Self, SocketAddr) {
        let listen = free_addr();
        let gw = Self::spawn(name, listen, threads, server, "ok");
        let deadline = Instant::now() + Duration::from_secs(30);
        while probe(listen).is_none() {
            assert!(Instant::now() < deadline, "not serving: {}", gw.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        (gw, listen)
    }

    /// Spawns `sallyport gateway --threads <threads>` on `listen` (a config and log of
    /// its own under `name`) in front of an upstream answering `body`, without waiting.
    fn spawn(
        name: &str,
        listen: SocketAddr,
        threads: usize,
        server: &str,
        body: &'static str,
    ) -> Self {
        let dir = workdir(&format!("gateway-threads-{name}"));
        let config = dir.join("gateway.toml");
        let top = format!(
            "upstream = \"http://{}\"\npublic_paths = [\"/public/**\"]",
            upstream(body)
        );
        let tail = format!("[admin]\nenabled = false\n\n[server]\n{server}");
        std::fs::write(&config, gateway_toml(listen, &top, &tail)).unwrap();
        Self::launch(
            &["gateway", "--threads", &threads.to_string()],
            &config,
            &[
                "SESSION_SECRET",
                "SALLYPORT_GATEWAY_CONFIG",
                "SALLYPORT_GATEWAY_THREADS",
            ],
            dir.join("gateway.log"),
        )
    }

    /// The event-loop threads (`gateway-loop-<i>`) and the CPU time each has run so far
    /// (`schedstat`, nanoseconds): a loop that serves connections runs; one that is
    /// given none sleeps in `epoll_wait`.
    fn loop_cpu_ns(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let tasks = format!("/proc/{}/task", self.child.id());
        for task in std::fs::read_dir(tasks).unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let comm = comm.trim();
            if !comm.starts_with("gateway-loop") {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap();
            let ran = stat.split_whitespace().next().unwrap().parse().unwrap();
            out.push((comm.to_owned(), ran));
        }
        out.sort();
        out
    }
}

/// A status from `addr` if it accepts connections yet.
fn probe(addr: SocketAddr) -> Option<u16> {
    TcpStream::connect(addr).ok()?;
    status(&mut Conn::open(addr), "/public/ping")
}

/// The status of `GET path`, or `None` when the gateway closed the connection.
fn status(conn: &mut Conn, path: &str) -> Option<u16> {
    conn.try_get(path).map(|(status, _)| status)
}

#[test]
fn every_event_loop_serves_connections_and_sigterm_ends_them_all() {
    let (gw, listen) = Gateway::start("serve", 3, "");
    let before = gw.loop_cpu_ns();
    assert_eq!(
        before.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["gateway-loop-1", "gateway-loop-2"],
        "3 loops: this runtime's and two threads of their own"
    );
    // 60 connections of 30 requests each, opened together: the kernel spreads them over
    // the loops' sockets (SO_REUSEPORT), about 20 each.
    let clients: Vec<_> = (0..60)
        .map(|_| {
            std::thread::spawn(move || {
                let mut conn = Conn::open(listen);
                (0..30)
                    .filter(|_| status(&mut conn, "/public/x") == Some(200))
                    .count()
            })
        })
        .collect();
    let served: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(served, 1800, "every request answered");
    let after = gw.loop_cpu_ns();
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        // ~600 requests of a debug build take far more than 10 ms; a loop given no
        // connection runs for microseconds.
        assert!(
            a - b > 10_000_000,
            "{name} ran {} µs during 1,800 requests: it served (almost) none of them",
            (a - b) / 1000
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
    let status = gw.exited_within(30);
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
        assert_eq!(status(conn, "/public/x"), Some(200), "{}", gw.log());
    }
    // Per-loop caps would admit up to twelve; the fourth connection is closed at once.
    for _ in 0..8 {
        let mut extra = Conn::open(listen);
        assert_eq!(
            status(&mut extra, "/public/x"),
            None,
            "a connection past the cap"
        );
    }
    // A freed slot is usable again, whichever loop accepts the next connection.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if status(&mut Conn::open(listen), "/public/x") == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was not reused");
        std::thread::sleep(Duration::from_millis(50));
    }
    for conn in &mut held {
        assert_eq!(status(conn, "/public/x"), Some(200));
    }
}

/// A second gateway on an address the first one serves fails to start, as any server
/// would: `SO_REUSEPORT` (one socket per event loop) must not let it join the first
/// one's sockets and take half of its connections.
#[test]
fn a_second_gateway_on_the_same_address_is_refused() {
    let (first, listen) = Gateway::start("first", 2, "");
    // Its upstream answers "second": a connection it took would show.
    let mut second = Gateway::spawn("second", listen, 2, "", "second");
    // Still running after that: it joined the first one's sockets (killed when dropped).
    let status = second.exited_within(20);
    let stderr = second.log();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot listen on") && stderr.contains("setting `listen`"),
        "{stderr}"
    );
    // The first one still has every connection.
    for _ in 0..20 {
        assert_eq!(
            Conn::open(listen).try_get("/public/x"),
            Some((200, "ok".to_owned())),
            "{}",
            first.log()
        );
    }
}
