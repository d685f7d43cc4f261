//! Host facts for the inventory: hostname, addresses, OS release, kernel, package manager and
//! the Gluu Server installation (its packaging and, for a machine, its state), all read under
//! the agent's root. Only the machine's state runs a program (its `systemctl
//! is-system-running`, bounded): the inventory never waits long.

use crate::host::{Command, Host};
use crate::ops::gluu::{CONTAINER, Flavor, Layout, MachineState};
use clustermgr_proto::{GluuFlavor, GluuInstallation, GluuMachineState, Inventory};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where facts come from.
#[derive(Debug, Clone)]
pub struct HostView {
    pub root: PathBuf,
    pub hostname: Option<String>,
    pub address: Option<String>,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn rooted(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// `KEY=value` pairs of an os-release file (quotes removed).
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect()
}

fn os_release(root: &Path) -> Vec<(String, String)> {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        if let Some(t) = read_trim(&root.join(p)) {
            return parse_os_release(&t);
        }
    }
    if root != Path::new("/") {
        // A sandbox root without its own release file shares the host's OS.
        return os_release(Path::new("/"));
    }
    Vec::new()
}

fn package_manager(root: &Path) -> String {
    for (bin, name) in [
        ("usr/bin/apt-get", "apt"),
        ("usr/bin/dnf", "dnf"),
        ("usr/bin/yum", "yum"),
    ] {
        if root.join(bin).exists() || Path::new("/").join(bin).exists() {
            return name.into();
        }
    }
    String::new()
}

fn addresses(view: &HostView) -> Vec<String> {
    if let Some(a) = &view.address {
        return vec![a.clone()];
    }
    let mut out = BTreeSet::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifa in addrs {
            let Some(addr) = ifa.address else { continue };
            if let Some(v4) = addr.as_sockaddr_in() {
                let ip = v4.ip();
                if !ip.is_loopback() {
                    out.insert(ip.to_string());
                }
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                let ip = v6.ip();
                if !ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80 {
                    out.insert(ip.to_string());
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Version of an installed dpkg package, from the dpkg database under the root.
pub fn dpkg_version(root: &Path, package: &str) -> Option<String> {
    let status = std::fs::read_to_string(rooted(root, "/var/lib/dpkg/status")).ok()?;
    for stanza in status.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if name == Some(package) && installed {
            return version.map(str::to_string);
        }
    }
    None
}

/// Components by the paths Gluu 4.x installs them under.
const COMPONENTS: &[(&str, &str)] = &[
    ("opt/gluu/jetty/oxauth", "oxauth"),
    ("opt/gluu/jetty/identity", "oxtrust"),
    ("opt/shibboleth-idp", "shibboleth"),
    ("opt/gluu/jetty/oxauth-rp", "oxauth-rp"),
    ("opt/gluu/node/passport", "passport"),
    ("opt/gluu/jetty/casa", "casa"),
];

/// Most time the inventory waits for the machine's systemd to say its state.
const MACHINE_CHECK: Duration = Duration::from_secs(2);

/// The Gluu Server on the host: present, set up, its packaging and its machine's state.
pub fn gluu(host: &Host) -> GluuInstallation {
    let root = host.root.as_path();
    let container = rooted(root, CONTAINER);
    let (present, chroot, base) = if container.is_dir() {
        (true, true, container)
    } else if rooted(root, "/opt/gluu/jetty").is_dir() {
        (true, false, root.to_path_buf())
    } else {
        (false, false, root.to_path_buf())
    };
    if !present {
        return GluuInstallation::default();
    }
    // Gluu 4.2.3 keeps its record of the install only encrypted (`.last.enc`).
    let setup_dir = base.join("install/community-edition-setup");
    let installed = setup_dir.join("setup.properties.last").exists()
        || setup_dir.join("setup.properties.last.enc").exists();
    let version = dpkg_version(root, "gluu-server")
        .or_else(|| dpkg_version(root, "gluu-server-nochroot"))
        .unwrap_or_default();
    let components = COMPONENTS
        .iter()
        .filter(|(p, _)| base.join(p).is_dir())
        .map(|(_, c)| c.to_string())
        .collect();
    let layout = Layout::locate(host);
    let flavor = match layout.as_ref().map(|l| l.flavor) {
        Some(Flavor::Machine) => GluuFlavor::NspawnMachine,
        Some(Flavor::InitdChroot) => GluuFlavor::InitdChroot,
        Some(Flavor::NoChroot) => GluuFlavor::Nochroot,
        None => GluuFlavor::Unspecified,
    };
    let machine_state = match &layout {
        Some(l) => machine_state(host, l),
        None => GluuMachineState::Unspecified,
    };
    GluuInstallation {
        present,
        installed,
        chroot,
        version,
        components,
        flavor: flavor.into(),
        machine_state: machine_state.into(),
    }
}

/// The machine's state: stopped without a leader, else its systemd's word, asked inside with a
/// bound (a machine that does not answer in time is still starting).
fn machine_state(host: &Host, layout: &Layout) -> GluuMachineState {
    if layout.flavor != Flavor::Machine {
        return GluuMachineState::NotApplicable;
    }
    let Ok(argv) = layout.system_state_argv() else {
        return GluuMachineState::Stopped;
    };
    let state = match host.runner.run_blocking(&Command::new(argv), MACHINE_CHECK) {
        Ok(out) => MachineState::from_output(&out),
        Err(e) => {
            tracing::debug!(error = %e, "the Gluu Server machine's state");
            MachineState::Starting
        }
    };
    match state {
        MachineState::NotApplicable => GluuMachineState::NotApplicable,
        MachineState::Stopped => GluuMachineState::Stopped,
        MachineState::Starting => GluuMachineState::Starting,
        MachineState::Running => GluuMachineState::Running,
        MachineState::Degraded => GluuMachineState::Degraded,
    }
}

/// Collects the full inventory.
pub fn inventory(view: &HostView) -> Inventory {
    let os = os_release(&view.root);
    let get = |k: &str| {
        os.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let hostname = view
        .hostname
        .clone()
        .or_else(|| read_trim(Path::new("/proc/sys/kernel/hostname")))
        .unwrap_or_default();
    Inventory {
        hostname,
        addresses: addresses(view),
        os_id: get("ID"),
        os_version: get("VERSION_ID"),
        os_pretty_name: get("PRETTY_NAME"),
        kernel: read_trim(Path::new("/proc/sys/kernel/osrelease")).unwrap_or_default(),
        package_manager: package_manager(&view.root),
        agent_version: clustermgr_shared::VERSION.into(),
        arch: std::env::consts::ARCH.into(),
        gluu: Some(gluu(&Host::detect(&view.root))),
        agent_package_version: crate::ops::upgrade::package_version(&view.root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{PackageFormat, PackageMode, Recorder, Runner};
    use crate::ops::gluu::layout::fixture::{install, nsenter, start_machine};
    use std::sync::Arc;

    fn host(root: &Path) -> (Host, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        (
            Host {
                root: root.to_path_buf(),
                packages: PackageMode::System,
                format: Some(PackageFormat::Deb),
                runner: Runner::Recording(rec.clone()),
                proc: root.join("proc"),
            },
            rec,
        )
    }

    #[test]
    fn detects_a_chroot_gluu_layout_and_dpkg_version() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let (h, rec) = host(r);
        std::fs::create_dir_all(r.join("opt/gluu-server/opt/gluu/jetty/oxauth")).unwrap();
        std::fs::create_dir_all(r.join("opt/gluu-server/opt/gluu/jetty/identity")).unwrap();
        std::fs::create_dir_all(r.join("opt/gluu-server/install/community-edition-setup")).unwrap();
        std::fs::create_dir_all(r.join("var/lib/dpkg")).unwrap();
        std::fs::write(
            r.join("var/lib/dpkg/status"),
            "Package: other\nStatus: install ok installed\nVersion: 1\n\nPackage: gluu-server\nStatus: install ok installed\nVersion: 4.2.3~standin1\n",
        )
        .unwrap();
        let g = gluu(&h);
        assert!(g.present && g.chroot && !g.installed);
        assert_eq!(g.version, "4.2.3~standin1");
        assert_eq!(g.components, vec!["oxauth", "oxtrust"]);
        // Neither the machine unit nor the init script: an unknown packaging.
        assert_eq!(g.flavor(), GluuFlavor::Unspecified);
        assert_eq!(g.machine_state(), GluuMachineState::Unspecified);
        // Gluu 4.2.3 leaves only the encrypted record.
        let last = r.join("opt/gluu-server/install/community-edition-setup/setup.properties.last");
        std::fs::write(last.with_extension("last.enc"), "Salted__").unwrap();
        assert!(gluu(&h).installed);
        std::fs::remove_file(last.with_extension("last.enc")).unwrap();
        assert!(!gluu(&h).installed);
        std::fs::write(&last, "").unwrap();
        assert!(gluu(&h).installed);
        // The init.d chroot packaging: no machine, nothing run.
        install(r, Flavor::InitdChroot);
        let g = gluu(&h);
        assert_eq!(g.flavor(), GluuFlavor::InitdChroot);
        assert_eq!(g.machine_state(), GluuMachineState::NotApplicable);
        assert!(rec.argvs().is_empty());
    }

    #[test]
    fn a_machines_state_is_its_leader_and_its_systemds_word() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let (h, rec) = host(r);
        install(r, Flavor::Machine);
        // Stopped: no leader, nothing run.
        let g = gluu(&h);
        assert!(g.present && g.chroot);
        assert_eq!(g.flavor(), GluuFlavor::NspawnMachine);
        assert_eq!(g.machine_state(), GluuMachineState::Stopped);
        assert!(rec.argvs().is_empty());
        // Running, booting, degraded, in rescue: what is-system-running says inside.
        start_machine(r, &h.proc, 31);
        for (code, word, want) in [
            (0, "running\n", GluuMachineState::Running),
            (1, "starting\n", GluuMachineState::Starting),
            (1, "initializing\n", GluuMachineState::Starting),
            (1, "degraded\n", GluuMachineState::Degraded),
            (1, "maintenance\n", GluuMachineState::Degraded),
        ] {
            rec.answer(code, word);
            assert_eq!(gluu(&h).machine_state(), want, "{word}");
        }
        let argvs = rec.argvs();
        assert_eq!(argvs.len(), 5);
        assert!(
            argvs
                .iter()
                .all(|a| *a == nsenter(31, "/bin/systemctl", &["is-system-running"])),
            "{argvs:?}"
        );
    }

    #[test]
    fn nochroot_and_no_gluu() {
        let d = tempfile::tempdir().unwrap();
        let (h, _) = host(d.path());
        assert!(!gluu(&h).present);
        std::fs::create_dir_all(d.path().join("opt/gluu/jetty/oxauth")).unwrap();
        let g = gluu(&h);
        assert!(g.present && !g.chroot);
        assert_eq!(g.flavor(), GluuFlavor::Nochroot);
        assert_eq!(g.machine_state(), GluuMachineState::NotApplicable);
        assert_eq!(g.components, ["oxauth"]);
    }

    #[test]
    fn os_release_parsing() {
        let kv =
            parse_os_release("ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12\"");
        assert!(kv.contains(&("VERSION_ID".into(), "12".into())));
    }
}
