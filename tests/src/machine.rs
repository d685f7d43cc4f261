//! The Gluu Server 4.2.3 machine of a test host: the stand-in package's container root
//! (`ROOT/opt/gluu-server`) booted by `ROOT/sbin/gluu-serverd` as a systemd-nspawn machine.
//!
//! Tests look at it the way an operator would: `gluu-serverd VERB`, the machine's own
//! `systemctl` entered through its leader (`nsenter --target LEADER --all -r -w`), files by their
//! host path under the container root. [`stop`] (run by every Gluu host's drop guard) powers the
//! machine off and then proves that no process of it is left.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The container root under a host's root.
pub const CONTAINER: &str = "opt/gluu-server";
/// The Gluu services the stand-in's machine runs as systemd units once setup has run.
pub const SERVICES: [&str; 3] = ["opendj", "oxauth", "identity"];
/// Host programs the machine flavor needs (Debian package in brackets, for the message).
const PREREQUISITES: [(&str, &str); 4] = [
    ("systemd-nspawn", "systemd-container"),
    ("mmdebstrap", "mmdebstrap"),
    ("nsenter", "util-linux"),
    ("ssh-keygen", "openssh-client"),
];

pub fn container(root: &Path) -> PathBuf {
    root.join(CONTAINER)
}

/// Fails (never skips, in CI or not) unless this process can boot Gluu machines: root, and the
/// programs of systemd-container, mmdebstrap, util-linux and openssh-client.
pub fn require_prerequisites() {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (the stand-in boots systemd-nspawn machines)".to_string());
    }
    for (program, package) in PREREQUISITES {
        if !on_path(program) {
            missing.push(format!("{program} (Debian package {package})"));
        }
    }
    assert!(
        missing.is_empty(),
        "a Gluu host needs {}: scripts/test installs the packages; run the tests as root",
        missing.join(", ")
    );
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// Writes `ROOT/etc/default/gluu-server` with the host's console address, so the machine's sshd
/// (port 60022) binds the host's own loopback address and not another host's.
pub fn write_console_address(root: &Path, address: &str) {
    let dir = root.join("etc/default");
    std::fs::create_dir_all(&dir).expect("ROOT/etc/default");
    std::fs::write(
        dir.join("gluu-server"),
        format!("GLUU_CONSOLE_ADDRESS={address}\n"),
    )
    .expect("ROOT/etc/default/gluu-server");
}

/// Installs a package under `root` as the agent does on a sandbox host: dpkg with its database
/// in ROOT and the maintainer scripts run on the host with `DPKG_ROOT=ROOT`. The Gluu stand-in's
/// postinst makes the container from the cached base root and boots the machine. Panics with
/// dpkg's output when it fails.
pub fn dpkg_install(root: &Path, deb: &Path) {
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).expect("ROOT/var/lib/dpkg");
    }
    let status = root.join("var/lib/dpkg/status");
    if !status.exists() {
        std::fs::write(&status, "").expect("ROOT/var/lib/dpkg/status");
    }
    let o = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-not-root",
            "--force-depends",
            "--force-confold",
            "-i",
        ])
        .arg(deb)
        .stdin(Stdio::null())
        .output()
        .expect("run dpkg");
    assert!(
        o.status.success(),
        "dpkg -i {} under {}: {}{}",
        deb.display(),
        root.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The machine's leader: PID 1 of a nested PID namespace whose root directory is the
/// container root (the agent's rule).
pub fn leader(root: &Path) -> Option<u32> {
    clustermgr_shared::machine::leader(Path::new("/proc"), &container(root))
}

/// Every live process of the machine under `root`: those whose root directory is the container
/// root (its systemd and every service in it) and those whose command line names the container
/// root (`systemd-nspawn -D ROOT/opt/gluu-server`).
pub fn processes(root: &Path) -> Vec<u32> {
    let Ok(want) = std::fs::metadata(container(root)) else {
        return Vec::new();
    };
    let needle = container(root).to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    clustermgr_procfs::pids()
        .into_iter()
        .filter(|pid| *pid != me && clustermgr_procfs::alive(*pid))
        .filter(|pid| {
            clustermgr_shared::machine::rooted_at(Path::new("/proc"), *pid as u32, &want)
                || std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .map(|pid| pid as u32)
        .collect()
}

/// `ROOT/sbin/gluu-serverd VERB` (the package's own control, as an operator runs it).
pub fn serverd(root: &Path, verb: &str) -> Output {
    Command::new(root.join("sbin/gluu-serverd"))
        .arg(verb)
        .stdin(Stdio::null())
        .output()
        .expect("run gluu-serverd")
}

/// Runs `argv` inside the running machine (its namespaces, root and working directory).
pub fn exec(root: &Path, argv: &[&str]) -> Result<Output, String> {
    let pid = leader(root).ok_or_else(|| format!("no machine runs under {}", root.display()))?;
    Command::new("nsenter")
        .args(["--target", &pid.to_string(), "--all", "-r", "-w", "--"])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("nsenter: {e}"))
}

/// The machine's `systemctl ARGS` (its own systemd, not the host's).
pub fn systemctl(root: &Path, args: &[&str]) -> Result<Output, String> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    exec(root, &argv)
}

/// Ok when every unit is `active` under the machine's own systemd.
pub fn units_active(root: &Path, units: &[&str]) -> Result<(), String> {
    let mut args = vec!["is-active"];
    args.extend_from_slice(units);
    let o = systemctl(root, &args)?;
    let states: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if o.status.success() && states.len() == units.len() && states.iter().all(|s| s == "active") {
        Ok(())
    } else {
        Err(format!("systemctl is-active {units:?}: {states:?}"))
    }
}

/// Stops the machine under `root` (`gluu-serverd stop`), then checks that no process of it is
/// left; any that is gets SIGKILL (so nothing leaks into the next test) and is reported.
pub fn stop(root: &Path) -> Result<(), String> {
    let serverd_path = root.join("sbin/gluu-serverd");
    let mut said = String::new();
    if serverd_path.is_file() {
        let o = serverd(root, "stop");
        if !o.status.success() {
            said = format!(
                "gluu-serverd stop exited {:?}: {}{}; ",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
    }
    // gluu-serverd stop returns once nspawn exited; its children may take a moment to be reaped.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = processes(root);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = processes(root);
    }
    // (A stop of a machine that was not running may exit non-zero: only what is left counts.)
    if left.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = left.iter().map(|p| describe(*p)).collect();
    for pid in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    Err(format!(
        "{said}machine processes left under {} after gluu-serverd stop: {shown:?}",
        root.display()
    ))
}

fn describe(pid: u32) -> String {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default();
    format!("{pid} {}", cmd.trim())
}

/// Stops the machine of a Gluu host when dropped, failing the test if any process of it is
/// left (and killing those). Tests that start a Gluu host hold one (an [`crate::Agent`] made
/// with `Agent::gluu_host` does).
pub struct Guard {
    pub root: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = stop(&self.root) {
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
    }
}
