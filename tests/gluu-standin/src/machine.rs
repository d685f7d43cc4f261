//! The Gluu Server machine seen from the host: where the package put its files under ROOT,
//! the `systemd-nspawn` process running the container and the machine's leader (its systemd,
//! PID 1 of its own PID namespace), and starting and stopping that process when no systemd on
//! the host does it.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clustermgr_procfs::{alive, cmdline};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::layout::{CONTAINER_IN_ROOT, Layout};
use crate::notify;

/// The machine's name (`--machine=`), as Gluu 4.2.3 names it.
pub const MACHINE: &str = "gluu-server";
/// The package's unit running the machine.
pub const UNIT: &str = "systemd-nspawn@gluu-server.service";
/// Where the package's unit may be, as systemd looks for it.
const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];
/// The unit's enablement (`WantedBy=machines.target`) and machines.target's own
/// (`WantedBy=multi-user.target`), as `systemctl enable` records them.
pub const UNIT_WANTS: &str =
    "/etc/systemd/system/machines.target.wants/systemd-nspawn@gluu-server.service";
pub const TARGET_WANTS: &str = "/etc/systemd/system/multi-user.target.wants/machines.target";
pub const TARGET_FILE: &str = "/lib/systemd/system/machines.target";
/// The port of the machine's sshd (the Gluu console).
pub const CONSOLE_PORT: u16 = 60022;
/// Like systemd's default TimeoutStartSec / TimeoutStopSec.
const START_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(90);
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// The host side of an installed package: the agent's root (`/` on a real node) and the
/// container root under it.
#[derive(Debug, Clone)]
pub struct Host {
    pub root: PathBuf,
    pub container: PathBuf,
}

impl Host {
    /// The host the running binary was installed on (from `ROOT/opt/gluu-server/...`).
    pub fn resolve() -> Result<Host> {
        let layout = Layout::resolve()?;
        if layout.inside() {
            bail!("gluu-serverd runs on the host, not inside the Gluu Server machine");
        }
        let container = layout.chroot;
        let Some(root) = container
            .strip_suffix_components(CONTAINER_IN_ROOT)
            .map(Path::to_path_buf)
        else {
            bail!(
                "{} is not ROOT/{CONTAINER_IN_ROOT}: cannot tell the host's root",
                container.display()
            );
        };
        Ok(Host { root, container })
    }

    /// Host path of a path of the host's own file system (`/etc/gluu/keys`...).
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// ROOT is `/` and systemd runs the host: the package's unit is the real one.
    pub fn host_systemd(&self) -> bool {
        self.root == Path::new("/") && Path::new("/run/systemd/system").is_dir()
    }

    /// The package's unit file, if installed.
    pub fn unit_file(&self) -> Option<PathBuf> {
        UNIT_DIRS
            .iter()
            .map(|d| self.path(d).join(UNIT))
            .find(|p| p.is_file())
    }

    pub fn enabled(&self) -> bool {
        fs::symlink_metadata(self.path(UNIT_WANTS)).is_ok()
    }

    pub fn console_key(&self) -> PathBuf {
        self.path("/etc/gluu/keys/gluu-console")
    }

    pub fn nspawn_log(&self) -> PathBuf {
        self.path("/var/log/gluu-server/nspawn.log")
    }

    /// `GLUU_CONSOLE_ADDRESS` from ROOT/etc/default/gluu-server (default 127.0.0.1): where the
    /// machine's sshd listens, on port 60022.
    pub fn console_address(&self) -> String {
        let text = fs::read_to_string(self.path("/etc/default/gluu-server")).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("GLUU_CONSOLE_ADDRESS="))
            .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
            .rfind(|v| !v.is_empty())
            .unwrap_or_else(|| "127.0.0.1".to_string())
    }

    /// The machine's sshd listens on the console address (read when the machine boots).
    pub fn write_console_config(&self) -> Result<()> {
        let dir = self.container.join("etc/ssh/sshd_config.d");
        let path = dir.join("gluu-console.conf");
        let text = format!(
            "# The Gluu console (gluu-serverd login), from GLUU_CONSOLE_ADDRESS in /etc/default/gluu-server.\n\
             Port {CONSOLE_PORT}\nListenAddress {}\nHostKey /etc/ssh/ssh_host_ed25519_key\n",
            self.console_address()
        );
        if fs::read_to_string(&path).is_ok_and(|t| t == text) {
            return Ok(());
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// The live `systemd-nspawn` processes running this container.
    pub fn nspawn_pids(&self) -> Vec<i32> {
        clustermgr_procfs::find(|args| runs_container(args, &self.container))
            .into_iter()
            .map(|p| p.pid)
            .collect()
    }

    /// The machine's leader: a live process that is PID 1 of a nested PID namespace and whose
    /// root directory is the container root.
    pub fn leader(&self) -> Option<i32> {
        let want = fs::metadata(&self.container).ok()?;
        let mut found: Vec<i32> = clustermgr_procfs::pids()
            .into_iter()
            .filter(|pid| alive(*pid) && namespace_init(*pid))
            .filter(|pid| {
                fs::metadata(format!("/proc/{pid}/root"))
                    .is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
            })
            .collect();
        found.sort_unstable();
        found.pop()
    }

    pub fn running(&self) -> bool {
        self.leader().is_some() || !self.nspawn_pids().is_empty()
    }

    /// Enablement as `systemctl enable machines.target` and `systemctl enable UNIT` record it;
    /// each link made is reported as systemctl does.
    pub fn enable(&self) -> Result<()> {
        let unit = self
            .unit_file()
            .with_context(|| format!("Unit file {UNIT} does not exist."))?;
        let unit_target = Path::new("/").join(unit.strip_prefix(&self.root).unwrap_or(&unit));
        for (link, target) in [
            (TARGET_WANTS, Path::new(TARGET_FILE).to_path_buf()),
            (UNIT_WANTS, unit_target),
        ] {
            let path = self.path(link);
            if fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            symlink(&target, &path).with_context(|| format!("linking {}", path.display()))?;
            eprintln!(
                "Created symlink {} \u{2192} {}.",
                path.display(),
                target.display()
            );
        }
        Ok(())
    }

    pub fn disable(&self) -> Result<()> {
        for link in [UNIT_WANTS, TARGET_WANTS] {
            let path = self.path(link);
            if fs::symlink_metadata(&path).is_ok() {
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                eprintln!("Removed \"{}\".", path.display());
            }
        }
        Ok(())
    }

    /// Boot the machine as the package's unit does, detached from the caller (own session,
    /// output to the nspawn log), and return once systemd-nspawn reports it ready: like
    /// `systemctl start` of the `Type=notify` unit, that is when the machine's init runs (the
    /// unit does not ask nspawn to wait for the boot to finish).
    pub fn start(&self) -> Result<i32> {
        if let Some(leader) = self.leader() {
            return Ok(leader);
        }
        if !self.nspawn_pids().is_empty() {
            // Being started by another call: wait for its leader.
            return self.wait_leader(START_TIMEOUT);
        }
        self.write_console_config()?;
        let log_path = self.nspawn_log();
        if let Some(dir) = log_path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let err = log.try_clone().context("duplicating the log handle")?;
        let listener = notify::Listener::bind()?;
        let mut nspawn = Command::new("setsid");
        nspawn
            .arg("systemd-nspawn")
            .args([
                "--quiet",
                "--boot",
                "--link-journal=try-guest",
                "--keep-unit",
                "--register=no",
                "-D",
            ])
            .arg(&self.container)
            .arg(format!("--machine={MACHINE}"))
            .env("NOTIFY_SOCKET", listener.env_value())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let mut child = nspawn
            .spawn()
            .context("running setsid systemd-nspawn (package systemd-container)")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(msg) = listener.recv(POLL)? {
                if notify::field(&msg, "READY") == Some("1") {
                    break;
                }
                continue;
            }
            if let Some(status) = child.try_wait().context("watching systemd-nspawn")? {
                if let Some(leader) = self.leader() {
                    // Another start won the race for the directory.
                    return Ok(leader);
                }
                bail!(
                    "systemd-nspawn exited ({status}) before the machine was up; last lines of {}:\n{}",
                    log_path.display(),
                    tail(&log_path, 15)
                );
            }
            if Instant::now() > deadline {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                bail!(
                    "the machine did not come up within {}s; last lines of {}:\n{}",
                    START_TIMEOUT.as_secs(),
                    log_path.display(),
                    tail(&log_path, 15)
                );
            }
        }
        // The child is left running: it outlives this process (its parent becomes init).
        drop(child);
        self.wait_leader(Duration::from_secs(10))
    }

    fn wait_leader(&self, limit: Duration) -> Result<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(leader) = self.leader() {
                return Ok(leader);
            }
            if Instant::now() > deadline {
                bail!(
                    "no leader of the machine at {} appeared within {}s",
                    self.container.display(),
                    limit.as_secs()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stop the machine as `systemctl stop` stops the unit: SIGTERM to systemd-nspawn, which
    /// has the machine's systemd shut down (every unit stopped), then waits for it; SIGKILL
    /// to the leader (its whole PID namespace) and nspawn when that takes too long.
    pub fn stop(&self) -> Result<()> {
        let nspawn = self.nspawn_pids();
        let leader = self.leader();
        if nspawn.is_empty() && leader.is_none() {
            return Ok(());
        }
        for pid in &nspawn {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        if nspawn.is_empty() {
            // A machine whose nspawn is gone: nothing can shut it down cleanly.
            if let Some(pid) = leader {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if self.wait_stopped(STOP_TIMEOUT) {
            return Ok(());
        }
        eprintln!(
            "{UNIT}: stopping timed out after {}s, killing the machine",
            STOP_TIMEOUT.as_secs()
        );
        if let Some(pid) = self.leader() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for pid in self.nspawn_pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if self.wait_stopped(KILL_TIMEOUT) {
            return Ok(());
        }
        bail!(
            "the machine at {} did not stop (nspawn {:?}, leader {:?})",
            self.container.display(),
            self.nspawn_pids(),
            self.leader()
        )
    }

    fn wait_stopped(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if !self.running() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }
}

trait StripSuffix {
    fn strip_suffix_components(&self, suffix: &str) -> Option<&Path>;
}

impl StripSuffix for PathBuf {
    fn strip_suffix_components(&self, suffix: &str) -> Option<&Path> {
        let mut dir = self.as_path();
        for _ in Path::new(suffix).components() {
            dir = dir.parent()?;
        }
        (dir.join(suffix) == *self).then_some(dir)
    }
}

/// `args` is a systemd-nspawn command line with `-D`/`--directory` naming `container`.
fn runs_container(args: &[String], container: &Path) -> bool {
    let is_nspawn = args.first().is_some_and(|a| {
        Path::new(a)
            .file_name()
            .is_some_and(|n| n == "systemd-nspawn")
    });
    if !is_nspawn {
        return false;
    }
    let same = |dir: &str| Path::new(dir.trim_end_matches('/')) == container;
    args.iter().enumerate().any(|(i, a)| {
        if a == "-D" || a == "--directory" {
            args.get(i + 1).is_some_and(|d| same(d))
        } else if let Some(d) = a.strip_prefix("--directory=") {
            same(d)
        } else {
            a.strip_prefix("-D")
                .is_some_and(|d| !d.is_empty() && same(d))
        }
    })
}

/// PID 1 of a PID namespace nested under ours (`NSpid: <ours> ... 1`).
fn namespace_init(pid: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status.lines().any(|l| {
        l.strip_prefix("NSpid:").is_some_and(|rest| {
            let ids: Vec<&str> = rest.split_whitespace().collect();
            ids.len() >= 2 && ids.last() == Some(&"1")
        })
    })
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The command line of a process, for messages.
pub fn describe(pid: i32) -> String {
    cmdline(pid)
        .map(|a| a.join(" "))
        .unwrap_or_else(|| "?".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn the_nspawn_of_a_container_is_recognised_by_its_directory() {
        let c = Path::new("/r/opt/gluu-server");
        assert!(runs_container(
            &args("/usr/bin/systemd-nspawn --quiet -D /r/opt/gluu-server --machine=gluu-server"),
            c
        ));
        assert!(runs_container(
            &args("systemd-nspawn --directory=/r/opt/gluu-server/"),
            c
        ));
        assert!(runs_container(
            &args("systemd-nspawn -D/r/opt/gluu-server"),
            c
        ));
        assert!(!runs_container(
            &args("systemd-nspawn -D /other/opt/gluu-server"),
            c
        ));
        assert!(!runs_container(&args("sleep -D /r/opt/gluu-server"), c));
    }

    #[test]
    fn the_root_is_above_the_container() {
        let c = PathBuf::from("/tmp/x/opt/gluu-server");
        assert_eq!(
            c.strip_suffix_components(CONTAINER_IN_ROOT),
            Some(Path::new("/tmp/x"))
        );
        let c = PathBuf::from("/opt/gluu-server");
        assert_eq!(
            c.strip_suffix_components(CONTAINER_IN_ROOT),
            Some(Path::new("/"))
        );
        assert_eq!(
            PathBuf::from("/tmp/other").strip_suffix_components(CONTAINER_IN_ROOT),
            None
        );
    }
}
