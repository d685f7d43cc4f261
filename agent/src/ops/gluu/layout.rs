//! The one abstraction for "run this inside Gluu" and "this service inside Gluu".
//!
//! Gluu Server 4.x comes in three packagings, and the agent drives each the way it expects:
//!
//! - [`Flavor::Machine`] (4.2.x): `/opt/gluu-server` is the root of a systemd-nspawn machine
//!   (`systemd-nspawn@gluu-server.service`, `/sbin/gluu-serverd
//!   enable|start|stop|restart|status|login`). Programs run inside by entering the machine's
//!   namespaces from its leader (`nsenter --target LEADER --all -r -w -- PROG ARGS`, as
//!   `machinectl shell` does; no shell string), services are the machine's systemd units (its own
//!   `/bin/systemctl`), files are reached by their host path under the container root. The
//!   machine's life (enable, start, wait for its boot, its state) is in [`super::machine`].
//! - [`Flavor::InitdChroot`] (older packages): `/etc/init.d/gluu-server` on the host, programs
//!   and init scripts through `chroot`.
//! - [`Flavor::NoChroot`]: Gluu installed on the host itself, services by the host's systemd.

use super::machine;
use crate::host::Host;
use crate::ops::OpError;
use std::path::{Path, PathBuf};

/// Where setup.py lives, inside the container (or on the host for a nochroot install).
pub use clustermgr_proto::gluu::SETUP_DIR;
/// The container root of the chroot and machine packagings.
pub const CONTAINER: &str = "/opt/gluu-server";
/// The package's machine unit, looked for under these host directories.
pub const MACHINE_UNIT: &str = "systemd-nspawn@gluu-server.service";
const UNIT_DIRS: [&str; 3] = [
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/systemd/system",
];
/// The init script of the chroot packaging.
const INITD: &str = "/etc/init.d/gluu-server";
/// The whole-server control of the machine packaging.
const SERVERD: &str = "/sbin/gluu-serverd";
/// The machine's own systemctl (Debian, Ubuntu and CentOS containers all have it there).
pub const SYSTEMCTL: &str = "/bin/systemctl";
/// A nochroot install's components live on the host under this directory.
const NOCHROOT_MARK: &str = "/opt/gluu/jetty";

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
    fn at(host: &Host, base: PathBuf, flavor: Flavor) -> Self {
        Self {
            base,
            flavor,
            root: host.root.clone(),
            proc: host.proc.clone(),
        }
    }

    /// The packaging of a container root from the host's markers: the machine unit (under
    /// ROOT/{lib,usr/lib,etc}/systemd/system), else the init script.
    fn container_flavor(host: &Host) -> Option<Flavor> {
        if UNIT_DIRS
            .iter()
            .any(|d| host.path(d).join(MACHINE_UNIT).exists())
        {
            Some(Flavor::Machine)
        } else if host.path(INITD).exists() {
            Some(Flavor::InitdChroot)
        } else {
            None
        }
    }

    /// Finds the Gluu packaging on this host, ready to drive (setup.py is there); an error when
    /// no Gluu Server package is there or its packaging is unknown.
    pub fn detect(host: &Host) -> Result<Self, OpError> {
        let container = host.path(CONTAINER);
        if container.join(&SETUP_DIR[1..]).join("setup.py").exists() {
            return match Self::container_flavor(host) {
                Some(flavor) => Ok(Self::at(host, container, flavor)),
                None => Err(OpError(format!(
                    "{} holds a Gluu Server but neither its machine unit ({MACHINE_UNIT} under \
                     {}) nor {INITD} exists: unknown packaging",
                    container.display(),
                    UNIT_DIRS.join(", ")
                ))),
            };
        }
        if host.path(SETUP_DIR).join("setup.py").exists() {
            return Ok(Self::at(host, host.root.clone(), Flavor::NoChroot));
        }
        Err(OpError(
            "the Gluu Server package is not installed on this node (no setup.py)".into(),
        ))
    }

    /// The packaging the host shows, whether or not its setup.py is there yet (the
    /// inventory's view): None when there is no Gluu Server or its packaging is unknown.
    pub fn locate(host: &Host) -> Option<Self> {
        let container = host.path(CONTAINER);
        if container.is_dir() {
            return Self::container_flavor(host).map(|f| Self::at(host, container, f));
        }
        let on_host =
            host.path(SETUP_DIR).join("setup.py").exists() || host.path(NOCHROOT_MARK).is_dir();
        on_host.then(|| Self::at(host, host.root.clone(), Flavor::NoChroot))
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

    /// The argv running the program `inside` (an absolute path inside Gluu) with `args`, inside
    /// Gluu. For a machine, it must be running (see [`Layout::ensure_running`]); the argv names
    /// its current leader.
    pub fn exec(&self, inside: &str, args: &[&str]) -> Result<Vec<String>, OpError> {
        if !inside.starts_with('/') {
            return Err(OpError(format!(
                "{inside:?}: a program inside Gluu is named by its absolute path"
            )));
        }
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

    /// The argv acting on the Gluu service `name` (`opendj`, `oxauth`, `identity`, `idp`...):
    /// the machine's systemctl, the chroot's init script, or the host's systemctl.
    pub fn service(&self, name: &str, action: ServiceAction) -> Result<Vec<String>, OpError> {
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
        if !plain {
            return Err(OpError(format!("{name:?} is not a service name")));
        }
        match self.flavor {
            Flavor::Machine => self.exec(SYSTEMCTL, &[action.verb(), name]),
            Flavor::InitdChroot => self.exec(&format!("/etc/init.d/{name}"), &[action.verb()]),
            Flavor::NoChroot => Ok(["systemctl", action.verb(), name]
                .map(String::from)
                .to_vec()),
        }
    }

    /// The argv of the packaging's whole-server control (`ROOT/sbin/gluu-serverd VERB`,
    /// `ROOT/etc/init.d/gluu-server VERB`); none for nochroot (its services are the host's).
    pub fn serverd(&self, verb: &str) -> Result<Vec<String>, OpError> {
        let program = match self.flavor {
            Flavor::Machine => SERVERD,
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

    pub(super) fn not_running(&self) -> OpError {
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
    use crate::host::{PackageFormat, PackageMode, Recorder, Runner};
    use std::sync::Arc;

    /// A Debian host under `root` holding a Gluu Server of `flavor`, whose commands are
    /// recorded (not run).
    pub fn recorded_host(root: &Path, flavor: Flavor) -> (Host, Arc<Recorder>) {
        install(root, flavor);
        let rec = Arc::new(Recorder::default());
        let h = Host {
            root: root.to_path_buf(),
            packages: PackageMode::System,
            format: Some(PackageFormat::Deb),
            runner: Runner::Recording(rec.clone()),
            proc: root.join("proc"),
        };
        (h, rec)
    }

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
    /// leader with PID `pid` (PID 1 of its namespace, rooted at the container).
    pub fn start_machine(root: &Path, proc: &Path, pid: u32) {
        let d = proc.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("status"), format!("NSpid:\t{pid}\t1\n")).unwrap();
        std::os::unix::fs::symlink(rooted(root, CONTAINER), d.join("root")).unwrap();
    }

    /// The machine's leader is gone (the machine stopped).
    pub fn stop_machine(proc: &Path, pid: u32) {
        std::fs::remove_dir_all(proc.join(pid.to_string())).unwrap();
    }

    /// The exact argv of `program args` run inside the machine whose leader is `pid`.
    pub fn nsenter(pid: u32, program: &str, args: &[&str]) -> Vec<String> {
        let pid = pid.to_string();
        [
            "nsenter", "--target", &pid, "--all", "-r", "-w", "--", program,
        ]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{install, nsenter, start_machine, stop_machine};
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
    fn a_machine_runs_programs_and_services_through_its_leader() {
        let d = tempfile::tempdir().unwrap();
        let h = host(d.path());
        assert!(Layout::detect(&h).unwrap_err().0.contains("not installed"));
        assert_eq!(Layout::locate(&h), None);
        install(d.path(), Flavor::Machine);
        let l = Layout::detect(&h).unwrap();
        assert_eq!(l.flavor, Flavor::Machine);
        assert_eq!(Layout::locate(&h), Some(l.clone()));
        assert_eq!(l.base, d.path().join("opt/gluu-server"));
        assert_eq!(
            l.host_path("/etc/certs/httpd.crt"),
            d.path().join("opt/gluu-server/etc/certs/httpd.crt")
        );
        assert_eq!(l.seen("/etc/certs/httpd.crt"), "/etc/certs/httpd.crt");
        // Not running: nothing can be run inside, whatever it is.
        assert_eq!(l.leader(), None);
        let e = l.exec("/bin/true", &[]).unwrap_err();
        assert!(e.0.contains("not running"), "{}", e.0);
        assert!(l.service("opendj", ServiceAction::Status).is_err());
        start_machine(d.path(), &h.proc, 4242);
        assert_eq!(l.leader(), Some(4242));
        assert_eq!(
            l.exec("/usr/bin/openssl", &["version"]).unwrap(),
            [
                "nsenter",
                "--target",
                "4242",
                "--all",
                "-r",
                "-w",
                "--",
                "/usr/bin/openssl",
                "version"
            ]
        );
        for (action, verb) in [
            (ServiceAction::Start, "start"),
            (ServiceAction::Stop, "stop"),
            (ServiceAction::Restart, "restart"),
            (ServiceAction::Status, "status"),
        ] {
            assert_eq!(
                l.service("opendj", action).unwrap(),
                nsenter(4242, "/bin/systemctl", &[verb, "opendj"])
            );
        }
        // The host's gluu-serverd, with the verb alone (it finds its root itself).
        let serverd = d.path().join("sbin/gluu-serverd").display().to_string();
        for verb in ["enable", "start", "stop", "restart", "status"] {
            assert_eq!(l.serverd(verb).unwrap(), [serverd.as_str(), verb]);
        }
        // Programs are absolute paths inside; service names are names.
        assert!(l.exec("openssl", &[]).is_err());
        assert!(l.service("opendj; reboot", ServiceAction::Stop).is_err());
        assert!(l.service("", ServiceAction::Stop).is_err());
        // A restarted machine has a new leader: the argv follows it.
        stop_machine(&h.proc, 4242);
        start_machine(d.path(), &h.proc, 5150);
        assert_eq!(
            l.service("oxauth", ServiceAction::Restart).unwrap(),
            nsenter(5150, "/bin/systemctl", &["restart", "oxauth"])
        );
    }

    #[test]
    fn the_machine_unit_is_found_where_systemd_keeps_units() {
        for dir in UNIT_DIRS {
            let d = tempfile::tempdir().unwrap();
            install(d.path(), Flavor::InitdChroot);
            std::fs::remove_file(rooted(d.path(), INITD)).unwrap();
            let unit = rooted(d.path(), dir);
            std::fs::create_dir_all(&unit).unwrap();
            std::fs::write(unit.join(MACHINE_UNIT), "").unwrap();
            assert_eq!(
                Layout::detect(&host(d.path())).unwrap().flavor,
                Flavor::Machine,
                "{dir}"
            );
        }
    }

    #[test]
    fn chroot_and_nochroot_packagings_are_driven_their_own_way() {
        let d = tempfile::tempdir().unwrap();
        let h = host(d.path());
        // A container with neither unit nor init script is not guessed at.
        std::fs::create_dir_all(rooted(d.path(), CONTAINER).join(&SETUP_DIR[1..])).unwrap();
        std::fs::write(
            rooted(d.path(), CONTAINER)
                .join(&SETUP_DIR[1..])
                .join("setup.py"),
            "",
        )
        .unwrap();
        let e = Layout::detect(&h).unwrap_err();
        assert!(e.0.contains("unknown packaging"), "{}", e.0);
        assert_eq!(Layout::locate(&h), None);

        install(d.path(), Flavor::InitdChroot);
        let l = Layout::detect(&h).unwrap();
        assert_eq!(l.flavor, Flavor::InitdChroot);
        assert_eq!(l.leader(), None);
        let c = d.path().join("opt/gluu-server").display().to_string();
        assert_eq!(
            l.exec("/usr/bin/openssl", &["version"]).unwrap(),
            ["chroot", c.as_str(), "/usr/bin/openssl", "version"]
        );
        assert_eq!(
            l.service("opendj", ServiceAction::Stop).unwrap(),
            ["chroot", c.as_str(), "/etc/init.d/opendj", "stop"]
        );
        let initd = d
            .path()
            .join("etc/init.d/gluu-server")
            .display()
            .to_string();
        assert_eq!(l.serverd("restart").unwrap(), [initd.as_str(), "restart"]);
        assert_eq!(l.seen("/etc/certs/a.crt"), "/etc/certs/a.crt");

        let d3 = tempfile::tempdir().unwrap();
        let h3 = host(d3.path());
        std::fs::create_dir_all(d3.path().join("opt/gluu/jetty")).unwrap();
        assert_eq!(Layout::locate(&h3).unwrap().flavor, Flavor::NoChroot);
        assert!(Layout::detect(&h3).is_err(), "no setup.py yet");
        install(d3.path(), Flavor::NoChroot);
        let l = Layout::detect(&h3).unwrap();
        assert_eq!(l.flavor, Flavor::NoChroot);
        assert_eq!(
            l.service("oxauth", ServiceAction::Start).unwrap(),
            ["systemctl", "start", "oxauth"]
        );
        assert!(l.serverd("start").is_err());
        let p = |x: &str| d3.path().join(x).display().to_string();
        assert_eq!(l.seen("/etc/certs/a.crt"), p("etc/certs/a.crt"));
        assert_eq!(
            l.exec("/usr/bin/openssl", &["version"]).unwrap(),
            [p("usr/bin/openssl"), "version".into()]
        );
    }
}
