//! Test harness: runs the real `clustermgr` and `clustermgr-agent` binaries as child processes
//! on loopback, each test in its own temporary directory, with its own port and addresses.
#![forbid(unsafe_code)]

pub use clustermgr_procfs as procfs;

pub mod booted;
pub mod day2;
pub mod fake_peer;
pub mod machine;
pub mod webdriver;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Directory holding the workspace binaries (built on first use if missing).
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/deps/<test> -> target/<profile>
        let dir = exe
            .parent()
            .and_then(|d| {
                if d.ends_with("deps") {
                    d.parent()
                } else {
                    Some(d)
                }
            })
            .expect("target dir")
            .to_path_buf();
        let bins = ["clustermgr", "clustermgr-agent", "gluu-standin"];
        if bins.iter().any(|b| !dir.join(b).exists()) {
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--bins",
                    "-p",
                    "clustermgr",
                    "-p",
                    "clustermgr-agent",
                ])
                .args(["-p", "gluu-standin"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the binaries failed");
        }
        dir
    })
    .clone()
}

pub fn clustermgr_bin() -> PathBuf {
    bin_dir().join("clustermgr")
}

pub fn agent_bin() -> PathBuf {
    bin_dir().join("clustermgr-agent")
}

/// The Gluu Server stand-in package, built once per test process from the workspace's
/// `gluu-standin` binary (`tests/gluu-standin/build-package` caches and locks; the Debian base
/// root of its machines is built once and cached under /var/cache/gluu-standin).
pub fn standin_deb() -> PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        // The package carries the machine's base root, built as root with mmdebstrap.
        machine::require_prerequisites();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("gluu-standin/build-package");
        let out = Command::new(&script)
            .arg(bin_dir().join("gluu-standin-cache"))
            .env("STANDIN_BINARY", bin_dir().join("gluu-standin"))
            .output()
            .expect("run build-package");
        assert!(
            out.status.success(),
            "build-package failed: {}",
            text(&out.stderr)
        );
        let deb = PathBuf::from(text(&out.stdout).lines().last().unwrap_or_default().trim());
        assert!(
            deb.is_file(),
            "build-package printed no .deb: {}",
            text(&out.stdout)
        );
        deb
    })
    .clone()
}

/// The port a test process listens on at each address it gives out, for as long as it runs:
/// another test process (tests run in parallel) finds it taken and picks another address.
/// Outside the kernel's ephemeral range, so no outgoing connection takes it.
const CLAIM_PORT: u16 = 64_999;

/// A loopback address of its own for each simulated host (127.1.x.y), claimed for the test
/// process's life.
pub fn next_address() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    static CLAIMS: std::sync::Mutex<Vec<std::net::TcpListener>> = std::sync::Mutex::new(Vec::new());
    let base = std::process::id() % 200 * 250;
    for _ in 0..250 * 250 {
        let n = N.fetch_add(1, Ordering::Relaxed) + base;
        let addr = format!("127.1.{}.{}", (n / 250) % 250 + 1, n % 250 + 1);
        if let Ok(l) = std::net::TcpListener::bind((addr.as_str(), CLAIM_PORT)) {
            CLAIMS.lock().unwrap_or_else(|e| e.into_inner()).push(l);
            return addr;
        }
    }
    panic!("no free loopback address in 127.1.0.0/16");
}

/// Held while a test runs a `clustermgr sandbox`: its hosts have fixed loopback addresses
/// (127.0.0.2, 127.0.0.3, 127.0.0.11...), so two sandboxes cannot run at once. Tests run in
/// parallel processes: the lock is a file lock, released when the returned file is dropped.
fn sandbox_lock() -> std::fs::File {
    let path = std::env::temp_dir().join("clustermgr-tests-sandbox.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    f.lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    f
}

/// A test's own sandbox directory (`clustermgr sandbox ... --dir`), for a sandbox of `nodes`
/// Gluu nodes: the machine prerequisites checked, the sandbox lock held, and each node's machine
/// stopped when it is dropped (then the lock released and the directory removed).
pub struct Sandbox {
    nodes: u8,
    _guards: Vec<machine::Guard>,
    _lock: std::fs::File,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Sandbox {
    pub fn new(nodes: u8) -> Self {
        machine::require_prerequisites();
        let lock = sandbox_lock();
        let tmp = tempfile::tempdir().expect("temporary directory");
        let dir = tmp.path().join("sbx");
        let guards = (1..=nodes)
            .map(|i| machine::Guard {
                root: dir.join(format!("hosts/gluu{i}.sandbox/root")),
            })
            .collect();
        Self {
            nodes,
            _guards: guards,
            _lock: lock,
            dir,
            _tmp: tmp,
        }
    }

    /// `clustermgr sandbox up` with Gluu (the stand-in package) on every node; it must succeed.
    pub fn up(&self) -> Output {
        let deb = standin_deb();
        let nodes = self.nodes.to_string();
        let up = self.run(&[
            "up",
            "--nodes",
            &nodes,
            "--gluu-package",
            &deb.to_string_lossy(),
        ]);
        assert!(up.status.success(), "sandbox up: {}", text(&up.stderr));
        up
    }

    /// `clustermgr sandbox ARGS --dir DIR`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(clustermgr_bin())
            .arg("sandbox")
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .expect("run clustermgr sandbox")
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `f` until it returns Ok or the timeout passes (then panics with the last error).
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > timeout => {
                panic!("{what}: not true within {timeout:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn stop_child(child: &mut Option<Child>, sig: Signal) {
    if let Some(mut c) = child.take() {
        let _ = kill(Pid::from_raw(c.id() as i32), sig);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// A controller with its own data directory.
pub struct Controller {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub addr: String,
    pub pin: String,
    child: Option<Child>,
}

impl Controller {
    /// `clustermgr init` on a fresh port.
    pub fn init() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("controller");
        let addr = format!("127.0.0.1:{}", free_port());
        let out = Command::new(clustermgr_bin())
            .arg("--data-dir")
            .arg(&data)
            .args(["init", "--listen", &addr])
            .output()
            .expect("run clustermgr init");
        assert!(out.status.success(), "init failed: {}", text(&out.stderr));
        let pin = text(&out.stdout).trim().to_string();
        assert!(pin.starts_with("sha256:"), "init printed {pin:?}");
        Self {
            dir,
            data,
            addr,
            pin,
            child: None,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("controller.log")
    }

    /// Starts `clustermgr serve` and waits until it answers an authenticated call.
    pub fn start(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(clustermgr_bin())
            .arg("--data-dir")
            .arg(&self.data)
            .arg("serve")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("spawn controller");
        self.child = Some(child);
        eventually(Duration::from_secs(20), "controller ready", || {
            let o = self.cli(&["whoami"]);
            if o.status.success() {
                Ok(())
            } else {
                Err(text(&o.stderr))
            }
        });
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn kill9(&mut self) {
        stop_child(&mut self.child, Signal::SIGKILL);
    }

    pub fn stop(&mut self) {
        stop_child(&mut self.child, Signal::SIGTERM);
    }

    /// Sends SIGTERM and returns how long the controller took to exit by itself, or None if it
    /// had not exited within `limit` (it is then killed).
    pub fn terminate_within(&mut self, limit: Duration) -> Option<Duration> {
        let mut c = self.child.take()?;
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = c.try_wait() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Runs the CLI against this controller (admin credential unless `--config` is given).
    /// Tables are not fitted to a width (no `COLUMNS`): a row is one line.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(clustermgr_bin())
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env_remove("COLUMNS")
            .stdin(Stdio::null())
            .output()
            .expect("run clustermgr")
    }

    /// Runs the CLI and requires success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "clustermgr {args:?} failed: {}{}",
            text(&o.stderr),
            text(&o.stdout)
        );
        text(&o.stdout)
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--output", "json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.cli_ok(&a)).expect("valid JSON")
    }

    pub fn token(&self, role: &str) -> String {
        self.cli_ok(&["token", "create", "--role", role])
            .trim()
            .to_string()
    }

    pub fn node_status(&self, id: &str) -> Option<String> {
        let nodes = self.json(&["node", "list"]);
        nodes
            .as_array()?
            .iter()
            .find(|n| n["id"] == id)
            .map(|n| n["status"].as_str().unwrap_or_default().to_string())
    }

    pub fn wait_status(&self, id: &str, status: &str) {
        eventually(
            Duration::from_secs(20),
            &format!("node {id} {status}"),
            || match self.node_status(id) {
                Some(s) if s == status => Ok(()),
                other => Err(format!("status {other:?}")),
            },
        );
    }

    pub fn ca_key_pem(&self) -> String {
        std::fs::read_to_string(self.data.join("ca.key")).expect("ca.key")
    }

    pub fn ca_cert_pem(&self) -> String {
        std::fs::read_to_string(self.data.join("ca.crt")).expect("ca.crt")
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        stop_child(&mut self.child, Signal::SIGKILL);
    }
}

/// An agent host: its own state dir, root and loopback address.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub root: PathBuf,
    pub address: String,
    pub hostname: String,
    pub node_id: String,
    child: Option<Child>,
}

impl Agent {
    /// A host that will run Gluu Server: the machine prerequisites are checked (a missing one
    /// fails the test), and `ROOT/etc/default/gluu-server` names the host's own address for the
    /// machine's console before any package is installed. Its machine is stopped when the agent
    /// is dropped.
    pub fn gluu_host(hostname: &str) -> Self {
        machine::require_prerequisites();
        let a = Self::new(hostname);
        machine::write_console_address(&a.root, &a.address);
        a
    }

    pub fn new(hostname: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).expect("root");
        Self {
            dir,
            state,
            root,
            address: next_address(),
            hostname: hostname.into(),
            node_id: String::new(),
            child: None,
        }
    }

    pub fn join_output(&self, controller: &str, token: &str, pin: &str, extra: &[&str]) -> Output {
        Command::new(agent_bin())
            .arg("--state-dir")
            .arg(&self.state)
            .args([
                "join",
                "--controller",
                controller,
                "--token",
                token,
                "--ca-pin",
                pin,
            ])
            .arg("--root")
            .arg(&self.root)
            .args(["--hostname", &self.hostname, "--address", &self.address])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .expect("run agent join")
    }

    /// Joins and records the node id.
    pub fn join(&mut self, ctl: &Controller, role: &str) {
        let token = ctl.token(role);
        let o = self.join_output(&ctl.addr, &token, &ctl.pin, &[]);
        assert!(o.status.success(), "join failed: {}", text(&o.stderr));
        self.node_id = text(&o.stdout).trim().to_string();
        assert_eq!(self.node_id.len(), 36, "node id {:?}", self.node_id);
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts `clustermgr-agent run` with extra arguments.
    pub fn start_with(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log");
        let child = Command::new(agent_bin())
            .arg("--state-dir")
            .arg(&self.state)
            .args(["run", "--max-backoff", "1s"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Waits for the agent process to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let c = self.child.as_mut()?;
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                self.child = None;
                return s.code();
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        stop_child(&mut self.child, Signal::SIGTERM);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn identity_pem(&self) -> String {
        std::fs::read_to_string(self.state.join("identity.pem")).expect("identity.pem")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        stop_child(&mut self.child, Signal::SIGKILL);
        // A Gluu machine booted under this root is powered off, and nothing of it may be left
        // (before the temporary directory holding it goes).
        if machine::container(&self.root).is_dir()
            && let Err(e) = machine::stop(&self.root)
        {
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
        // The daemons the agent started for this host (Redis, stunnel, nginx: on a real host,
        // services that outlive the agent) go with the host.
        for pid in processes_mentioning(&self.root) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The processes whose command line mentions `needle` (to prove nothing is left running).
pub fn processes_mentioning(needle: &Path) -> Vec<i32> {
    let needle = needle.to_string_lossy().to_string();
    clustermgr_procfs::find(|args| args.join(" ").contains(&needle))
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

/// A TCP relay on loopback that can be cut: while cut, traffic on existing connections is
/// silently dropped (a black hole, as in a network partition) and new connections are refused.
pub struct Partition {
    pub addr: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Partition {
    pub fn new(target: &str) -> Self {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().expect("relay addr").to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let target = target.to_string();
        let c = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    let c = c.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                // Dropped on the floor while cut; the sockets stay open.
                                Ok(_) if c.load(Ordering::SeqCst) => {}
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { addr, cut }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
