//! Shared helpers of the stand-in's tests: the package, a node installed the way the agent
//! installs it (`dpkg --root=ROOT --force-script-chrootless ...`), its machine, and commands
//! run inside it (`nsenter --target LEADER --all -r -w -- ...`).
#![allow(dead_code)]

pub mod tokens;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const HOSTNAME: &str = "lb.example.org";
pub const HTTPS_PORT: u16 = 18443;
pub const PASSWORD: &str = "S3cret!pw'$x \"q\"";
/// Where setup's input and the directory password live inside the machine.
pub const PROPS_INSIDE: &str = "/root/setup.properties";
pub const PASSWORD_INSIDE: &str = "/root/ldap.pw";
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `f` every 20 ms until it returns `Some`, or panic after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the machine tests can run here: root, systemd-nspawn, nsenter, dpkg, curl, ssh.
/// Missing prerequisites skip the test (with the reason on stderr), except under `CI=true`,
/// where they fail it.
pub fn prerequisites(extra: &[&str]) -> bool {
    let mut missing = Vec::new();
    if run(Command::new("id").arg("-u")).stdout.trim_ascii() != b"0" {
        missing.push("root (uid 0): the machines are booted with systemd-nspawn".to_string());
    }
    for tool in [
        "systemd-nspawn",
        "nsenter",
        "setsid",
        "dpkg",
        "dpkg-deb",
        "curl",
        "ssh",
        "ssh-keygen",
        "chroot",
    ]
    .iter()
    .chain(extra)
    {
        // On PATH, looked up directly (no shell).
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
        if !found {
            missing.push(format!("the {tool} command"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("missing prerequisites: {}", missing.join(", "));
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{msg} (CI=true: not skipping)"
    );
    eprintln!("SKIPPED: {msg}");
    false
}

/// The package, built once per test process (build-package ensures the base userland and
/// caches and locks itself).
pub fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gluu-standin-cache");
        let started = Instant::now();
        let out = run_ok(
            Command::new(here.join("build-package"))
                .arg(&cache)
                .env("STANDIN_BINARY", env!("CARGO_BIN_EXE_gluu-standin")),
        );
        eprintln!("build-package: {:?}", started.elapsed());
        let deb = PathBuf::from(out.lines().last().unwrap_or_default().trim());
        assert!(deb.is_file(), "build-package printed no .deb path: {out}");
        let name = deb.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            name.starts_with("gluu-server_4.2.3~standin1_") && name.ends_with(".deb"),
            "unexpected package name {name}"
        );
        deb
    })
}

/// A node: the package installed under its own ROOT the way the agent installs it on a
/// sandbox host. Its machine is stopped (and anything left of it killed) on drop.
pub struct Node {
    pub root: tempfile::TempDir,
    pub ip: String,
}

impl Node {
    /// A scratch ROOT (empty dpkg database, the console address in /etc/default/gluu-server)
    /// with the package installed by `dpkg --root`; its postinst starts the machine.
    pub fn install(ip: &str) -> Node {
        let root = tempfile::Builder::new()
            .prefix("standin")
            .tempdir()
            .expect("tempdir");
        for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc/default"] {
            fs::create_dir_all(root.path().join(d)).expect("mkdir");
        }
        fs::write(root.path().join("var/lib/dpkg/status"), "").expect("dpkg status");
        fs::write(
            root.path().join("etc/default/gluu-server"),
            format!("GLUU_CONSOLE_ADDRESS={ip}\n"),
        )
        .expect("default file");
        let node = Node {
            root,
            ip: ip.to_string(),
        };
        let started = Instant::now();
        let out = run(node.dpkg().arg("-i").arg(package()));
        assert!(out.status.success(), "dpkg -i: {}", text(&out));
        eprintln!("{ip}: dpkg -i (machine started): {:?}", started.elapsed());
        node
    }

    /// Install, boot, and run setup inside (as the cluster manager does:
    /// `-f ... -n --listen_all_interfaces -c`).
    pub fn install_and_setup(ip: &str, no_data: bool) -> Node {
        let node = Node::install(ip);
        node.wait_booted();
        let out = node.setup(&[], no_data);
        assert!(out.status.success(), "setup.py: {}", text(&out));
        node
    }

    pub fn dpkg(&self) -> Command {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", self.root.path().display()))
            .args([
                "--force-script-chrootless",
                "--force-not-root",
                "--force-depends",
                "--force-confold",
                "--log=/dev/null",
            ]);
        c
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel.trim_start_matches('/'))
    }

    /// A path inside the container, by its host path.
    pub fn container(&self, rel: &str) -> PathBuf {
        self.path("opt/gluu-server")
            .join(rel.trim_start_matches('/'))
    }

    pub fn serverd(&self, verb: &str) -> Output {
        run(Command::new(self.path("sbin/gluu-serverd")).arg(verb))
    }

    /// The machine's leader: PID 1 of a nested PID namespace whose root is the container.
    pub fn leader(&self) -> Option<i32> {
        let want = fs::metadata(self.container("")).ok()?;
        clustermgr_procfs::pids().into_iter().find(|pid| {
            clustermgr_procfs::alive(*pid)
                && fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                    s.lines().any(|l| {
                        l.strip_prefix("NSpid:").is_some_and(|r| {
                            let ids: Vec<&str> = r.split_whitespace().collect();
                            ids.len() >= 2 && ids.last() == Some(&"1")
                        })
                    })
                })
                && fs::metadata(format!("/proc/{pid}/root"))
                    .is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
        })
    }

    /// Live processes of this machine: its systemd-nspawn and everything whose root is the
    /// container.
    pub fn processes(&self) -> Vec<String> {
        let container = self.container("");
        let Ok(want) = fs::metadata(&container) else {
            return Vec::new();
        };
        // gluu-serverd names the container by its canonical path.
        let dir = container
            .canonicalize()
            .unwrap_or(container)
            .display()
            .to_string();
        clustermgr_procfs::live_processes()
            .into_iter()
            .filter(|p| {
                p.args.windows(2).any(|w| w[0] == "-D" && w[1] == dir)
                    || fs::metadata(format!("/proc/{}/root", p.pid))
                        .is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
            })
            .map(|p| format!("{}: {}", p.pid, p.command_line()))
            .collect()
    }

    /// Wait for the machine to finish booting: its leader appears, its systemd's socket
    /// exists, then `systemctl is-system-running --wait` answers (running).
    pub fn wait_booted(&self) -> i32 {
        let started = Instant::now();
        let leader = wait_for("the machine's leader", BOOT_TIMEOUT, || self.leader());
        let socket = PathBuf::from(format!("/proc/{leader}/root/run/systemd/private"));
        wait_for("the machine's systemd socket", BOOT_TIMEOUT, || {
            socket.exists().then_some(())
        });
        let out = run(&mut self.exec(&["systemctl", "is-system-running", "--wait"]));
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            state,
            "running",
            "the machine booted {}; failed units: {}",
            text(&out),
            run_ok(&mut self.exec(&["systemctl", "--failed", "--no-legend"]))
        );
        eprintln!("{}: booted {:?} after waiting", self.ip, started.elapsed());
        leader
    }

    /// A command run inside the machine, entering its leader's namespaces.
    pub fn exec(&self, argv: &[&str]) -> Command {
        let leader = self.leader().expect("the machine is not running");
        let mut c = Command::new("nsenter");
        c.arg("--target")
            .arg(leader.to_string())
            .args(["--all", "-r", "-w", "--"])
            .args(argv);
        c
    }

    pub fn write_props(&self, extra: &[(&str, &str)]) {
        let mut text = format!(
            "# test node\nhostname={HOSTNAME}\nip={}\nldapPass={}\norgName=Example Org\n\
             countryCode=US\ncity=Austin\nstate=TX\nadmin_email=admin@example.org\n\
             installOxAuth=True\ninstallOxTrust=True\ninstallSaml=True\nhttps_port={HTTPS_PORT}\n",
            self.ip,
            PASSWORD.replace('\\', "\\\\")
        );
        for (k, v) in extra {
            text.push_str(&format!("{k}={v}\n"));
        }
        fs::write(self.container(PROPS_INSIDE), text).expect("write setup.properties");
    }

    /// setup.py inside the machine, with setup.properties written from `extra`.
    pub fn setup(&self, extra: &[(&str, &str)], no_data: bool) -> Output {
        self.write_props(extra);
        let mut argv = vec![
            "/install/community-edition-setup/setup.py",
            "-f",
            PROPS_INSIDE,
            "-n",
            "--listen_all_interfaces",
            "-c",
        ];
        if no_data {
            argv.push("--no-data");
        }
        let started = Instant::now();
        let out = run(&mut self.exec(&argv));
        eprintln!("{}: setup.py {:?}", self.ip, started.elapsed());
        out
    }

    /// `setup.properties.last.enc` decrypted with `password` inside the machine (as Gluu
    /// documents: `openssl enc -d -aes-256-cbc -in setup.properties.last.enc`), on stdin.
    pub fn decrypted_last(&self, password: &str) -> Output {
        let mut child = self
            .exec(&[
                "openssl",
                "enc",
                "-d",
                "-aes-256-cbc",
                "-pass",
                "stdin",
                "-in",
                "/install/community-edition-setup/setup.properties.last.enc",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("write password");
        child.wait_with_output().expect("openssl")
    }

    /// An OpenLDAP client run inside the machine, bound as the administrator over LDAPS to
    /// the node's address (the machine shares the host's network), verifying its certificate.
    pub fn ldap_tool(&self, tool: &str, args: &[&str]) -> Command {
        let pw = self.container(PASSWORD_INSIDE);
        if !pw.exists() {
            fs::write(&pw, PASSWORD).expect("write password file");
            fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let url = format!("ldaps://{}:1636", self.ip);
        let mut argv = vec![
            "env",
            "LDAPTLS_CACERT=/etc/certs/openldap.crt",
            "LDAPTLS_REQCERT=demand",
            tool,
            "-H",
            &url,
            "-x",
            "-D",
            "cn=directory manager",
            "-y",
            PASSWORD_INSIDE,
        ];
        argv.extend_from_slice(args);
        self.exec(&argv)
    }

    pub fn ldapsearch(&self, base: &str, scope: &str, attrs: &[&str]) -> Output {
        let mut args = vec![
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-b",
            base,
            "-s",
            scope,
            "(objectClass=*)",
        ];
        args.extend_from_slice(attrs);
        run(&mut self.ldap_tool("ldapsearch", &args))
    }

    pub fn ldapmodify(&self, ldif: &str) {
        let mut child = self
            .ldap_tool("ldapmodify", &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ldapmodify");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write ldif");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(out.status.success(), "ldapmodify: {}", text(&out));
    }

    /// `curl` from the host against the node under the load balancer's name, verifying the
    /// httpd certificate. Returns (status, headers, body).
    pub fn curl(&self, path: &str, args: &[&str]) -> (u16, String, String) {
        let headers = self
            .root
            .path()
            .join(format!("headers.{}", rand::random::<u64>()));
        let out = run(Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.container("etc/certs/httpd.crt"))
            .arg("--resolve")
            .arg(format!("{HOSTNAME}:{HTTPS_PORT}:{}", self.ip))
            .arg("-D")
            .arg(&headers)
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("https://{HOSTNAME}:{HTTPS_PORT}{path}")));
        assert!(out.status.success(), "curl {path}: {}", text(&out));
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = body.rsplit_once('\n').unwrap_or(("", &body));
        let head = fs::read_to_string(&headers).unwrap_or_default();
        let _ = fs::remove_file(&headers);
        (code.trim().parse().unwrap_or(0), head, body.to_string())
    }

    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (code, _, body) = self.curl(path, &[]);
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (code, v)
    }

    /// `Ok` when the node's `ip:port` refuses connections (from the host).
    pub fn refuses(&self, port: u16) -> Result<(), String> {
        let addr: std::net::SocketAddr = format!("{}:{port}", self.ip).parse().expect("addr");
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => Err(format!("{addr} accepts connections")),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            Err(e) => Err(format!("{addr}: {e} (expected connection refused)")),
        }
    }

    /// Stop the machine with gluu-serverd; kill whatever is left (a failed test's machine).
    pub fn stop_all(&self) {
        if self.path("sbin/gluu-serverd").exists() && self.container("opt/gluu/bin").exists() {
            let _ = self.serverd("stop");
        }
        for line in self.processes() {
            if let Some(pid) = line.split(':').next().and_then(|p| p.parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_all();
    }
}

pub fn attr<'a>(ldif: &'a str, name: &str) -> Option<&'a str> {
    ldif.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}
