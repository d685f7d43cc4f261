//! The one abstraction for "run this inside Gluu" and "this service inside Gluu".
//!
//! Gluu Server 4.x comes in three packagings, and the agent drives each the way it expects:
//!
//! - [`Flavor::Machine`] (4.2.x on systemd hosts): `/opt/gluu-server` is the root of a
//!   systemd-nspawn machine (`systemd-nspawn@gluu-server.service`, `/sbin/gluu-serverd
//!   enable|start|stop|restart|status|login`). Programs run inside by entering the machine's
//!   namespaces from its leader (as `machinectl shell` does; no shell string), services are
//!   the machine's systemd units, files are reached by their host path under the container root.
//! - [`Flavor::InitdChroot`] (older packages): `/etc/init.d/gluu-server` on the host, programs
//!   and init scripts through `chroot`.
//! - [`Flavor::NoChroot`]: Gluu installed on the host itself, services by the host's systemd.

use super::machine::{self, MachineState};
use crate::host::{Command, Host};
use crate::ops::{Log, OpError, run_checked, run_logged};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where setup.py lives, inside the container (or on the host for a nochroot install).
pub const SETUP_DIR: &str = "/install/community-edition-setup";
/// The container root of the chroot and machine packagings.
pub const CONTAINER: &str = "/opt/gluu-server";
/// The package's machine unit, looked for under these host directories.
const MACHINE_UNIT: &str = "systemd-nspawn@gluu-server.service";
const UNIT_DIRS: [&str; 3] = [
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/systemd/system",
];
/// The init script of the chroot packaging.
const INITD: &str = "/etc/init.d/gluu-server";
/// How long a started machine may take to appear and to finish booting.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// How this node's Gluu Server is packaged (and so how it is driven).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A systemd-nspawn machine rooted at `/opt/gluu-server` (Gluu 4.2.x packages).
    Machine,
    /// A chroot at `/opt/gluu-server` with `/etc/init.d/gluu-server` (older packages).
    InitdChroot,
    /// Installed on the host itself (`gluu-server-nochroot`).
    NoChroot,
}

impl Flavor {
    /// The label the inventory and the CLI show.
    pub fn label(self) -> &'static str {
        match self {
            Self::Machine => "nspawn-machine",
            Self::InitdChroot => "initd-chroot",
            Self::NoChroot => "nochroot",
        }
    }
}

/// A service action, as systemctl and init scripts take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    Start,
    Stop,
    Restart,
    Status,
}

impl ServiceAction {
    pub fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Status => "status",
        }
    }
}

/// The node's Gluu installation on disk and how to act inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Host path of the container root (`ROOT/opt/gluu-server`), or the root for nochroot.
    pub base: PathBuf,
    pub flavor: Flavor,
    /// The agent's root (host paths of the host's own files: `/sbin/gluu-serverd`).
    root: PathBuf,
    /// Where processes are looked up (`/proc`; a fake tree in tests).
    proc: PathBuf,
}

impl Layout {
    /// Finds the Gluu packaging on this host; an error when no Gluu Server package is there.
    pub fn detect(host: &Host) -> Result<Self, OpError> {
        let container = host.path(CONTAINER);
        let at = |base: PathBuf, flavor| Self {
            base,
            flavor,
            root: host.root.clone(),
            proc: host.proc.clone(),
        };
        if container.join(&SETUP_DIR[1..]).join("setup.py").exists() {
            if UNIT_DIRS
                .iter()
                .any(|d| host.path(d).join(MACHINE_UNIT).exists())
            {
                return Ok(at(container, Flavor::Machine));
            }
            if host.path(INITD).exists() {
                return Ok(at(container, Flavor::InitdChroot));
            }
            return Err(OpError(format!(
                "{} holds a Gluu Server but neither its machine unit ({MACHINE_UNIT} under {}) \
                 nor {INITD} exists: unknown packaging",
                container.display(),
                UNIT_DIRS.join(", ")
            )));
        }
        if host.path(SETUP_DIR).join("setup.py").exists() {
            return Ok(at(host.root.clone(), Flavor::NoChroot));
        }
        Err(OpError(
            "the Gluu Server package is not installed on this node (no setup.py)".into(),
        ))
    }

    /// Host path of a path inside the container.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.base.join(inside.trim_start_matches('/'))
    }

    /// A path as a program run by [`Layout::exec`] sees it.
    pub fn seen(&self, inside: &str) -> String {
        match self.flavor {
            Flavor::Machine | Flavor::InitdChroot => inside.to_string(),
            Flavor::NoChroot => self.host_path(inside).display().to_string(),
        }
    }

    /// The machine's leader PID, when it runs (machine flavor only).
    pub fn leader(&self) -> Option<u32> {
        match self.flavor {
            Flavor::Machine => machine::leader(&self.proc, &self.base),
            _ => None,
        }
    }

    /// The argv running the program `inside` (a path inside Gluu) with `args`, inside Gluu.
    /// For a machine, it must be running.
    pub fn exec(&self, inside: &str, args: &[&str]) -> Result<Vec<String>, OpError> {
        let mut argv: Vec<String> = match self.flavor {
            Flavor::Machine => {
                let pid = self.leader().ok_or_else(|| self.not_running())?;
                // Every namespace of the machine's systemd, its root and working directory.
                [
                    "nsenter",
                    "--target",
                    &pid.to_string(),
                    "--all",
                    "-r",
                    "-w",
                    "--",
                    inside,
                ]
                .map(String::from)
                .to_vec()
            }
            Flavor::InitdChroot => vec![
                "chroot".into(),
                self.base.display().to_string(),
                inside.into(),
            ],
            Flavor::NoChroot => vec![self.host_path(inside).display().to_string()],
        };
        argv.extend(args.iter().map(|s| s.to_string()));
        Ok(argv)
    }

    /// The argv acting on the Gluu service `name` (`opendj`, `oxauth`, `identity`, `idp`...).
    pub fn service(&self, name: &str, action: ServiceAction) -> Result<Vec<String>, OpError> {
        match self.flavor {
            Flavor::Machine => self.exec("/bin/systemctl", &[action.verb(), name]),
            Flavor::InitdChroot => self.exec(&format!("/etc/init.d/{name}"), &[action.verb()]),
            Flavor::NoChroot => Ok(["systemctl", action.verb(), name]
                .map(String::from)
                .to_vec()),
        }
    }

    /// The argv of the packaging's whole-server control (`gluu-serverd VERB`,
    /// `/etc/init.d/gluu-server VERB`); none for nochroot (its services are the host's).
    pub fn serverd(&self, verb: &str) -> Result<Vec<String>, OpError> {
        let program = match self.flavor {
            Flavor::Machine => "/sbin/gluu-serverd",
            Flavor::InitdChroot => INITD,
            Flavor::NoChroot => {
                return Err(OpError(
                    "a nochroot Gluu Server has no gluu-serverd: its services are the host's units"
                        .into(),
                ));
            }
        };
        Ok(vec![
            rooted(&self.root, program).display().to_string(),
            verb.to_string(),
        ])
    }

    /// The machine's state (a stopped machine when there is no leader).
    pub async fn machine_state(&self, host: &Host, log: &mut Log) -> Result<MachineState, OpError> {
        if self.leader().is_none() {
            return Ok(MachineState::Stopped);
        }
        let cmd = Command::new(self.exec("/bin/systemctl", &["is-system-running"])?);
        let out = run_logged(host, &cmd, log, "systemctl is-system-running").await?;
        Ok(MachineState::from_system_state(&out.stdout))
    }

    /// Makes sure Gluu's machine runs and has finished booting: `gluu-serverd enable` and
    /// `start` when it does not run, then waits for its leader and for its systemd to finish
    /// starting units (`is-system-running --wait`). Other flavors have nothing to start.
    pub async fn ensure_running(
        &self,
        host: &Host,
        log: &mut Log,
    ) -> Result<MachineState, OpError> {
        if self.flavor != Flavor::Machine {
            return Ok(MachineState::Running);
        }
        if self.leader().is_none() {
            log.line("the Gluu Server machine is not running: enabling and starting it");
            run_checked(
                host,
                &Command::new(self.serverd("enable")?),
                log,
                "gluu-serverd enable",
            )
            .await?;
            run_checked(
                host,
                &Command::new(self.serverd("start")?),
                log,
                "gluu-serverd start",
            )
            .await?;
        }
        self.wait_booted(host, log).await
    }

    /// Waits for the machine's leader to appear and its boot to finish.
    pub async fn wait_booted(&self, host: &Host, log: &mut Log) -> Result<MachineState, OpError> {
        let deadline = tokio::time::Instant::now() + BOOT_TIMEOUT;
        while self.leader().is_none() {
            if tokio::time::Instant::now() >= deadline {
                return Err(self.not_running());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cmd = Command::new(self.exec("/bin/systemctl", &["is-system-running", "--wait"])?);
        let out = tokio::time::timeout(
            deadline.saturating_duration_since(tokio::time::Instant::now()),
            run_logged(host, &cmd, log, "systemctl is-system-running --wait"),
        )
        .await
        .map_err(|_| OpError("the Gluu Server machine did not finish booting in time".into()))??;
        let state = MachineState::from_system_state(&out.stdout);
        match state {
            MachineState::Running => Ok(state),
            MachineState::Degraded => {
                log.line("the Gluu Server machine booted with a failed unit (degraded)");
                Ok(state)
            }
            _ => Err(OpError(format!(
                "the Gluu Server machine did not boot: systemd says {}",
                out.stdout.trim()
            ))),
        }
    }

    fn not_running(&self) -> OpError {
        OpError(format!(
            "the Gluu Server machine ({}) is not running: start it with gluu-serverd start",
            self.base.display()
        ))
    }

    pub fn setup_last(&self) -> PathBuf {
        self.host_path(&format!("{SETUP_DIR}/setup.properties.last"))
    }

    pub fn setup_last_enc(&self) -> PathBuf {
        self.host_path(&format!("{SETUP_DIR}/setup.properties.last.enc"))
    }

    /// Setup has run here: it left its record of the install (plain or encrypted).
    pub fn installed(&self) -> bool {
        self.setup_last().exists() || self.setup_last_enc().exists()
    }
}

fn rooted(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// Test fixtures: a Gluu layout of each flavor under a temporary root.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    /// Makes `root` hold a Gluu Server of `flavor` (setup.py, and the unit or init script).
    pub fn install(root: &Path, flavor: Flavor) {
        let base = match flavor {
            Flavor::NoChroot => root.to_path_buf(),
            _ => rooted(root, CONTAINER),
        };
        std::fs::create_dir_all(rooted(&base, SETUP_DIR)).unwrap();
        std::fs::write(rooted(&base, SETUP_DIR).join("setup.py"), "").unwrap();
        match flavor {
            Flavor::Machine => {
                let d = rooted(root, UNIT_DIRS[0]);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(MACHINE_UNIT), "").unwrap();
            }
            Flavor::InitdChroot => {
                std::fs::create_dir_all(rooted(root, "/etc/init.d")).unwrap();
                std::fs::write(rooted(root, INITD), "").unwrap();
            }
            Flavor::NoChroot => {}
        }
    }

    /// Makes the machine under `root` look running to a host whose `proc` is `proc`: a fake
    /// leader with PID `pid`.
    pub fn start_machine(root: &Path, proc: &Path, pid: u32) {
        let d = proc.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("status"), format!("NSpid:\t{pid}\t1\n")).unwrap();
        std::os::unix::fs::symlink(rooted(root, CONTAINER), d.join("root")).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{install, start_machine};
    use super::*;
    use crate::host::{PackageFormat, PackageMode, Runner};

    fn host(root: &Path) -> Host {
        Host {
            root: root.to_path_buf(),
            packages: PackageMode::System,
            format: Some(PackageFormat::Deb),
            runner: Runner::Real,
            proc: root.join("proc"),
        }
    }

    #[test]
    fn each_packaging_is_detected_and_driven_its_own_way() {
        let d = tempfile::tempdir().unwrap();
        let h = host(d.path());
        assert!(Layout::detect(&h).unwrap_err().0.contains("not installed"));
        // A container with neither unit nor init script is not guessed at.
        std::fs::create_dir_all(
            d.path()
                .join("opt/gluu-server/install/community-edition-setup"),
        )
        .unwrap();
        std::fs::write(
            d.path()
                .join("opt/gluu-server/install/community-edition-setup/setup.py"),
            "",
        )
        .unwrap();
        assert!(
            Layout::detect(&h)
                .unwrap_err()
                .0
                .contains("unknown packaging")
        );

        install(d.path(), Flavor::Machine);
        let l = Layout::detect(&h).unwrap();
        assert_eq!(l.flavor, Flavor::Machine);
        assert_eq!(l.seen("/etc/certs/httpd.crt"), "/etc/certs/httpd.crt");
        let e = l.exec("/bin/true", &[]).unwrap_err();
        assert!(e.0.contains("not running"), "{}", e.0);
        start_machine(d.path(), &h.proc, 4242);
        assert_eq!(l.leader(), Some(4242));
        assert_eq!(
            l.service("opendj", ServiceAction::Restart).unwrap(),
            [
                "nsenter",
                "--target",
                "4242",
                "--all",
                "-r",
                "-w",
                "--",
                "/bin/systemctl",
                "restart",
                "opendj"
            ]
        );
        let serverd = d.path().join("sbin/gluu-serverd").display().to_string();
        assert_eq!(l.serverd("start").unwrap(), [serverd.as_str(), "start"]);

        let d2 = tempfile::tempdir().unwrap();
        install(d2.path(), Flavor::InitdChroot);
        let l = Layout::detect(&host(d2.path())).unwrap();
        assert_eq!(l.flavor, Flavor::InitdChroot);
        let c = d2.path().join("opt/gluu-server").display().to_string();
        assert_eq!(
            l.service("opendj", ServiceAction::Stop).unwrap(),
            ["chroot", c.as_str(), "/etc/init.d/opendj", "stop"]
        );

        let d3 = tempfile::tempdir().unwrap();
        install(d3.path(), Flavor::NoChroot);
        let l = Layout::detect(&host(d3.path())).unwrap();
        assert_eq!(l.flavor, Flavor::NoChroot);
        assert_eq!(
            l.service("oxauth", ServiceAction::Start).unwrap(),
            ["systemctl", "start", "oxauth"]
        );
        assert!(l.serverd("start").is_err());
        assert_eq!(
            l.seen("/etc/certs/a.crt"),
            d3.path().join("etc/certs/a.crt").display().to_string()
        );
    }
}
