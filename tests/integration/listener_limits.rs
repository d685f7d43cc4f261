//! The controller's listener bounds what anonymous clients cost: half-open TLS connections are
//! dropped by the handshake timeout while real clients keep working, connections beyond the
//! cap are closed at once, and idle connections without a client certificate neither lock out
//! agents and operators nor stay open.

use clustermgr_tests::{Agent, Controller, eventually, next_address, text};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tokio_rustls::rustls::{ClientConnection, StreamOwned, pki_types::ServerName};

/// Rewrites `[listener]` settings that `init` wrote with their defaults.
fn set_listener(ctl: &Controller, replacements: &[(&str, &str)]) {
    let path = ctl.data.join("controller.toml");
    let mut s = std::fs::read_to_string(&path).unwrap();
    for (from, to) in replacements {
        assert!(s.contains(from), "{from:?} not in {s}");
        s = s.replace(from, to);
    }
    std::fs::write(&path, s).unwrap();
}

/// Lifts this process's open-files limit so that it can hold many connections.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Waits until the server closes `s` (EOF or reset), up to `deadline`.
fn closed_by_server(s: &mut TcpStream, deadline: Instant) -> Result<(), String> {
    read_until_closed(s, deadline, |s, left| {
        s.set_read_timeout(Some(left)).unwrap()
    })
}

/// Reads (and drops) whatever comes until the server closes the connection, up to `deadline`.
fn read_until_closed<R: Read>(
    s: &mut R,
    deadline: Instant,
    set_timeout: impl Fn(&mut R, Duration),
) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("still open".into());
        }
        set_timeout(s, left);
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            // A TLS alert may come before the close.
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err("still open".into());
            }
            Err(_) => return Ok(()),
        }
    }
}

/// A TLS record header announcing a 200-byte ClientHello, and only the start of it.
const PARTIAL_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03];

#[test]
fn half_open_tls_connections_are_dropped_and_real_clients_keep_working() {
    raise_nofile();
    let mut ctl = Controller::init();
    set_listener(
        &ctl,
        &[
            ("handshake_timeout = \"10s\"", "handshake_timeout = \"5s\""),
            // Here every connection may wait for its handshake timeout.
            (
                "max_unauthenticated_per_source = 32",
                "max_unauthenticated_per_source = 2000",
            ),
        ],
    );
    ctl.start(&[]);

    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut s = TcpStream::connect(&ctl.addr).expect("connect");
            if i % 2 == 0 {
                s.write_all(PARTIAL_CLIENT_HELLO).unwrap();
            }
            s
        })
        .collect();
    // Accept never waits on a handshake: a real client gets through while they hang.
    let who = ctl.cli_ok(&["whoami"]);
    assert!(who.contains("admin"), "{who}");
    let still_open = idle[900..]
        .iter_mut()
        .map(|s| {
            s.set_nonblocking(true).unwrap();
            let open = matches!(s.read(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
            s.set_nonblocking(false).unwrap();
            open
        })
        .filter(|open| *open)
        .count();
    assert!(
        still_open > 0,
        "the real client was served only after the half-open connections were dropped ({:?})",
        opened.elapsed()
    );

    // Every half-open connection is closed by the server shortly after the timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, s) in idle.iter_mut().enumerate() {
        if let Err(e) = closed_by_server(s, deadline) {
            panic!(
                "half-open connection {i} {e} {:?} after it was opened",
                opened.elapsed()
            );
        }
    }
    assert!(
        opened.elapsed() >= Duration::from_secs(5),
        "closed before the timeout"
    );
    drop(idle);
    assert!(ctl.cli_ok(&["whoami"]).contains("admin"));
}

#[test]
fn connections_beyond_the_cap_are_closed_at_once() {
    raise_nofile();
    let mut ctl = Controller::init();
    set_listener(
        &ctl,
        &[
            ("max_connections = 20000", "max_connections = 20"),
            ("handshake_timeout = \"10s\"", "handshake_timeout = \"60s\""),
        ],
    );
    ctl.start(&[]);
    // 20 connections that never finish a handshake take every slot. (A slot can still be
    // held for a moment by a connection that just ended, e.g. the start-up check's: a held
    // connection the server closed is opened again.)
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&ctl.addr).expect("connect"))
        .collect();
    eventually(
        Duration::from_secs(10),
        "a connection beyond the cap is closed at once",
        || {
            for h in held.iter_mut() {
                if closed_by_server(h, Instant::now() + Duration::from_millis(50)).is_ok() {
                    *h = TcpStream::connect(&ctl.addr).map_err(|e| e.to_string())?;
                    return Err("a held connection was refused: a slot was still taken".into());
                }
            }
            let mut probe = TcpStream::connect(&ctl.addr).map_err(|e| e.to_string())?;
            closed_by_server(&mut probe, Instant::now() + Duration::from_secs(2))
        },
    );
    let o = ctl.cli(&["whoami"]);
    assert!(!o.status.success(), "a 21st client got through");

    // Accepted sockets have TCP keep-alive on.
    let port = ctl.addr.rsplit_once(':').unwrap().1;
    let ss = std::process::Command::new("ss")
        .args([
            "-tnoH",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .output()
        .expect("run ss");
    let ss = text(&ss.stdout);
    assert!(
        ss.lines().filter(|l| l.contains("keepalive")).count() >= 20,
        "{ss}"
    );

    drop(held);
    eventually(Duration::from_secs(10), "slots freed", || {
        let o = ctl.cli(&["whoami"]);
        if o.status.success() {
            Ok(())
        } else {
            Err(text(&o.stderr))
        }
    });
    let log = std::fs::read_to_string(ctl.log_path()).unwrap();
    assert!(log.contains("connection limit reached"), "{log}");
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection from `source` that completed its handshake without a client certificate
/// and sends nothing more; None when the server closed it first.
fn idle_tls(ctl: &Controller, source: &str) -> Option<Tls> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tcp = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(format!("{source}:0").parse().unwrap())?;
            sock.connect(ctl.addr.parse().unwrap()).await
        })
        .expect("connect")
        .into_std()
        .unwrap();
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    clustermgr_shared::tls::install_crypto_provider();
    let config = clustermgr_shared::tls::client_config(&ctl.ca_cert_pem(), None).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut s = StreamOwned::new(ClientConnection::new(config, name).unwrap(), tcp);
    while s.conn.is_handshaking() {
        if s.conn.complete_io(&mut s.sock).is_err() {
            return None;
        }
    }
    Some(s)
}

#[test]
fn idle_connections_without_a_certificate_neither_lock_out_nor_stay() {
    raise_nofile();
    let mut ctl = Controller::init();
    set_listener(
        &ctl,
        &[
            ("max_connections = 20000", "max_connections = 40"),
            ("max_unauthenticated = 2000", "max_unauthenticated = 16"),
            (
                "max_unauthenticated_per_source = 32",
                "max_unauthenticated_per_source = 6",
            ),
            (
                "unauthenticated_idle_timeout = \"10s\"",
                "unauthenticated_idle_timeout = \"3s\"",
            ),
            (
                "unauthenticated_lifetime = \"60s\"",
                "unauthenticated_lifetime = \"1h\"",
            ),
        ],
    );
    ctl.start(&[]);
    let mut agent = Agent::new("held-out.example.test");

    // 20 idle connections from each of four sources (beyond the per-source cap, and twice the
    // whole connection cap in all).
    let sources = [
        next_address(),
        next_address(),
        next_address(),
        next_address(),
    ];
    let mut held: Vec<Tls> = Vec::new();
    for source in &sources {
        for _ in 0..20 {
            held.extend(idle_tls(&ctl, source));
        }
    }
    assert!(!held.is_empty(), "no idle connection was handshaken");

    // An operator (127.0.0.1) and a new agent (an address of its own) still connect and work.
    assert!(ctl.cli_ok(&["whoami"]).contains("admin"));
    agent.join(&ctl, "gluu-node");
    agent.start();
    ctl.wait_status(&agent.node_id, "online");
    let out = ctl.cli_ok(&["job", "run", &agent.node_id, "ping"]);
    assert!(out.contains("pong"), "{out}");

    // Every idle connection is closed by the server: displaced by another source's, or idle
    // too long.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, s) in held.iter_mut().enumerate() {
        if let Err(e) = read_until_closed(s, deadline, |s, left| {
            s.sock.set_read_timeout(Some(left)).unwrap()
        }) {
            panic!("idle connection {i} without a client certificate is {e}");
        }
    }
    // The agent's session (a client certificate) is not idle-closed.
    ctl.wait_status(&agent.node_id, "online");
    assert!(
        ctl.cli_ok(&["job", "run", &agent.node_id, "ping"])
            .contains("pong")
    );
    let log = std::fs::read_to_string(ctl.log_path()).unwrap();
    assert!(
        log.contains("unauthenticated connection budget full"),
        "{log}"
    );
}
