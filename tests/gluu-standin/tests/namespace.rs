//! Installing the package with `dpkg -i` as root into `/` (DPKG_ROOT empty, as on a real
//! node) inside mount/net/UTS/PID namespaces (`install-in-namespace.sh`): the postinst boots
//! the machine, setup runs inside it, the package is purged, and the host is unchanged.
//! Needs root and util-linux `unshare` besides the machine prerequisites.

mod support;

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{package, prerequisites, run, run_ok};

/// What a real installation into `/` would change on the host.
#[derive(Debug, PartialEq, Eq)]
struct HostState {
    opt_gluu_server: bool,
    sbin_gluu_serverd: bool,
    dpkg_knows_gluu_server: bool,
    dpkg_status_len: usize,
    dpkg_status_hash: u64,
    hostname: String,
}

fn host_state() -> HostState {
    use std::hash::{Hash as _, Hasher as _};
    let status = fs::read("/var/lib/dpkg/status").expect("read /var/lib/dpkg/status");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    status.hash(&mut hasher);
    HostState {
        opt_gluu_server: Path::new("/opt/gluu-server").exists(),
        sbin_gluu_serverd: Path::new("/usr/sbin/gluu-serverd").exists()
            || Path::new("/sbin/gluu-serverd").exists(),
        dpkg_knows_gluu_server: run(Command::new("dpkg").args(["-s", "gluu-server"]))
            .status
            .success(),
        dpkg_status_len: status.len(),
        dpkg_status_hash: hasher.finish(),
        hostname: run_ok(&mut Command::new("hostname")).trim().to_string(),
    }
}

/// `Ok` when the host's `127.0.0.1:port` refuses connections.
fn host_loopback_refuses(port: u16) -> Result<(), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => Err(format!("the host's {addr} accepts connections")),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(format!(
            "the host's {addr}: {e} (expected connection refused)"
        )),
    }
}

/// Host processes of a machine installed at `/`: a systemd-nspawn of `/opt/gluu-server`
/// (the machines of nodes installed under a temporary ROOT do not match).
fn host_processes_of_root_install() -> Vec<String> {
    clustermgr_procfs::find(|args| {
        args.windows(2)
            .any(|w| w[0] == "-D" && w[1] == "/opt/gluu-server")
            || args.iter().any(|a| a.starts_with("/opt/gluu-server/"))
    })
    .iter()
    .map(|p| format!("{}: {}", p.pid, p.command_line()))
    .collect()
}

/// The namespace script, killed with its whole process group (timeout, unshare and the
/// namespace's PID 1, whose death ends the namespace) unless it exited.
struct NsScript {
    child: Child,
}

impl Drop for NsScript {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Ok(pgid) = i32::try_from(self.child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = self.child.wait();
        }
    }
}

#[test]
fn dpkg_install_as_root_in_namespace() {
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::os::unix::process::CommandExt as _;

    if !prerequisites(&["unshare", "mount", "ip", "timeout", "hostname"]) {
        return;
    }

    let deb = package();
    let before = host_state();
    assert!(
        !before.opt_gluu_server && !before.sbin_gluu_serverd && !before.dpkg_knows_gluu_server,
        "the host must not have the gluu-server package installed: {before:?}"
    );
    assert_eq!(host_processes_of_root_install(), Vec::<String>::new());
    for port in [1636, 443] {
        if let Err(e) = host_loopback_refuses(port) {
            panic!("precondition: {e}; the host check of this test needs it free");
        }
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/install-in-namespace.sh");
    let started = Instant::now();
    let mut ns = NsScript {
        child: Command::new("bash")
            .arg(&script)
            .arg("--hold")
            .arg(deb)
            .env("STANDIN_NS_TIMEOUT", "240")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display())),
    };
    let stdout = ns.child.stdout.take().expect("stdout");
    let mut stderr = ns.child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let deadline = started + Duration::from_secs(300);
    let mut lines = Vec::new();
    let mut up_after = None;
    let mut seen_from_host = Vec::new();
    let mut host_port_errors = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "the namespace script did not finish within 300 s; output so far:\n{lines:#?}"
                )
            }
        };
        if line == "node up" {
            // The machine runs its services on the namespace's 127.0.0.1:1636 and :443. Its
            // processes are visible from the host (parent PID namespace), its sockets are not:
            // the host's own loopback must still refuse both ports.
            up_after = Some(started.elapsed());
            seen_from_host = host_processes_of_root_install();
            host_port_errors = [1636, 443]
                .into_iter()
                .filter_map(|p| host_loopback_refuses(p).err())
                .collect();
            let mut stdin = ns.child.stdin.take().expect("stdin");
            let _ = stdin.write_all(b"go\n");
        }
        lines.push(line);
    }
    let status = ns.child.wait().expect("wait for the namespace script");
    let total = started.elapsed();
    let err = err_reader.join().unwrap_or_default();
    let out = lines.join("\n");
    assert!(
        status.success(),
        "namespace script failed ({status}):\nstdout:\n{out}\nstderr:\n{err}"
    );

    // Every step, in order.
    let expected = [
        "mounts private, overlays on /etc /opt /usr /var /tmp",
        "interfaces lo",
        "uts hostname gluu-ns-node",
        "dpkg installed 4.2.3~standin1",
        "machine booted",
        "setup ok",
        "gluu-serverd start ok",
        "ldap ok",
        "https ok",
        "node up",
        "no process left",
        "purged",
        "namespace gone",
    ];
    let mut at = 0;
    for want in expected {
        match lines[at..].iter().position(|l| l == want) {
            Some(i) => at += i + 1,
            None => panic!("line {want:?} missing or out of order in:\n{out}\nstderr:\n{err}"),
        }
    }
    assert_eq!(
        host_port_errors,
        Vec::<String>::new(),
        "the node's ports leaked to the host's loopback"
    );
    assert!(
        seen_from_host.iter().any(|p| p.contains("systemd-nspawn")),
        "while the node was up the host should see its machine's systemd-nspawn \
         (else the port check above proves nothing): {seen_from_host:?}"
    );

    // The host is as it was.
    assert_eq!(host_state(), before, "the host changed");
    assert_eq!(
        host_processes_of_root_install(),
        Vec::<String>::new(),
        "processes of the node outlived the namespace"
    );
    for port in [1636, 443] {
        if let Err(e) = host_loopback_refuses(port) {
            panic!("after the run: {e}");
        }
    }

    let timings: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("timing "))
        .collect();
    eprintln!(
        "namespace install: node up after {:?}, total {total:?}; phases (s): {}",
        up_after.unwrap_or_default(),
        timings.join(", ")
    );
}
