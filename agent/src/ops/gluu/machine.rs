//! The Gluu 4.2.3 container as a running systemd-nspawn machine: its leader (the machine's own
//! systemd, PID 1 of its PID namespace, whose root is the container root) and its state.
//!
//! The leader is found from `/proc` (the host seam's `proc`), not from `machinectl`: it works
//! for the package's own `systemd-nspawn@gluu-server.service` and for a machine started
//! without registration alike. A process is the leader when its `NSpid` ends in `1` (it is PID 1
//! of a nested PID namespace) and its root directory is the container root (same device and
//! inode).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What the machine is doing, as the inventory reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    /// No leader: the machine is not started.
    Stopped,
    /// The leader runs but its systemd has not finished booting (or is shutting down).
    Starting,
    /// Booted; every unit started (`systemctl is-system-running`: running).
    Running,
    /// Booted with at least one failed unit (`is-system-running`: degraded).
    Degraded,
}

impl MachineState {
    /// The label the inventory and the CLI show.
    pub fn label(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Degraded => "degraded",
        }
    }

    /// `systemctl is-system-running`'s word, for a machine whose leader runs.
    pub fn from_system_state(word: &str) -> Self {
        match word.trim() {
            "running" => Self::Running,
            "degraded" => Self::Degraded,
            _ => Self::Starting,
        }
    }
}

/// The leader PID of the machine whose root is `container`, looked up under `proc` (`/proc`).
pub fn leader(proc: &Path, container: &Path) -> Option<u32> {
    let want = std::fs::metadata(container).ok()?;
    let entries = std::fs::read_dir(proc).ok()?;
    let mut found: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_namespace_init(proc, *pid))
        .filter(|pid| {
            std::fs::metadata(proc.join(pid.to_string()).join("root"))
                .is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino())
        })
        .collect();
    // Several (a machine restarting while the old one winds down): the newest.
    found.sort_unstable();
    found.pop()
}

/// The process is PID 1 of a PID namespace nested under ours (`NSpid: <ours> ... 1`).
fn is_namespace_init(proc: &Path, pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(proc.join(pid.to_string()).join("status")) else {
        return false;
    };
    status.lines().any(|l| {
        let Some(rest) = l.strip_prefix("NSpid:") else {
            return false;
        };
        let ids: Vec<&str> = rest.split_whitespace().collect();
        ids.len() >= 2 && ids.last() == Some(&"1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc entry: `status` with the given NSpid line, `root` pointing at `root`.
    pub(crate) fn fake_pid(proc: &Path, pid: u32, nspid: &str, root: &Path) {
        let d = proc.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("status"),
            format!("Name:\tsystemd\nNSpid:\t{nspid}\n"),
        )
        .unwrap();
        std::os::unix::fs::symlink(root, d.join("root")).unwrap();
    }

    #[test]
    fn the_leader_is_the_namespace_init_rooted_at_the_container() {
        let d = tempfile::tempdir().unwrap();
        let proc = d.path().join("proc");
        let container = d.path().join("opt/gluu-server");
        let other = d.path().join("other");
        std::fs::create_dir_all(&container).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        assert_eq!(leader(&proc, &container), None, "no /proc at all");
        // PID 1 of the host namespace, a process inside the machine, another machine's init.
        fake_pid(&proc, 1, "1", &container);
        fake_pid(&proc, 700, "700\t5", &container);
        fake_pid(&proc, 800, "800\t1", &other);
        assert_eq!(leader(&proc, &container), None);
        fake_pid(&proc, 900, "900\t1", &container);
        assert_eq!(leader(&proc, &container), Some(900));
        std::fs::write(proc.join("notapid"), "").unwrap();
        assert_eq!(leader(&proc, &container), Some(900));
    }

    #[test]
    fn states_from_systemd() {
        assert_eq!(
            MachineState::from_system_state("running\n"),
            MachineState::Running
        );
        assert_eq!(
            MachineState::from_system_state("degraded"),
            MachineState::Degraded
        );
        for w in ["starting", "initializing", "stopping", ""] {
            assert_eq!(MachineState::from_system_state(w), MachineState::Starting);
        }
        assert_eq!(MachineState::Stopped.label(), "stopped");
    }
}
