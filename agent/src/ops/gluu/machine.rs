//! The Gluu 4.2.3 container as a running systemd-nspawn machine: its leader (the machine's own
//! systemd, PID 1 of its PID namespace, whose root is the container root), its state, and its
//! life as Gluu's docs drive it (`gluu-serverd enable`, `start`, then wait for the boot).
//!
//! The leader is found from `/proc` (the host seam's `proc`), not from `machinectl`: it works
//! for the package's own `systemd-nspawn@gluu-server.service` and for a machine started
//! without registration alike. A process is the leader when its `NSpid` ends in `1` (it is PID 1
//! of a nested PID namespace) and its root directory is the container root (same device and
//! inode).
//!
//! The boot is over when the machine's systemd says so: `systemctl is-system-running` (run
//! inside) answers `running` (exit 0) or `degraded`. It is asked again until then, bounded; not
//! `--wait`, which the systemd of Gluu's CentOS 7/8 and Ubuntu 18.04 containers lacks.

use super::layout::{Flavor, Layout, SYSTEMCTL};
use crate::host::{Command, Host, Output};
use crate::ops::{Log, OpError, run_checked, run_logged};
use std::time::Duration;

/// How long a started machine may take to appear and to finish booting (Gluu's units start one
/// after another, each allowed `TimeoutSec=300`; the job's own timeout may end it sooner).
#[cfg(not(test))]
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
#[cfg(test)]
const BOOT_TIMEOUT: Duration = Duration::from_secs(1);
/// The first pause between two looks at a booting machine, then doubled up to `MAX_PAUSE`.
#[cfg(not(test))]
const FIRST_PAUSE: Duration = Duration::from_millis(100);
#[cfg(test)]
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// Most time one `is-system-running` may take.
const STATE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the machine is doing, as the inventory reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    /// Not a machine (the init.d chroot and nochroot packagings).
    NotApplicable,
    /// No leader: the machine is not started.
    Stopped,
    /// The leader runs but its systemd has not finished booting (or is shutting down, or did
    /// not answer).
    Starting,
    /// Booted; every unit started (`systemctl is-system-running`: running).
    Running,
    /// Booted with at least one failed unit (`degraded`), or in rescue (`maintenance`).
    Degraded,
}

impl MachineState {
    /// The label the inventory and the CLI show.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotApplicable => "not-applicable",
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
            "degraded" | "maintenance" => Self::Degraded,
            _ => Self::Starting,
        }
    }

    /// The state an `is-system-running` run reports (exit 0 is `running` by definition).
    pub fn from_output(out: &Output) -> Self {
        if out.success() {
            Self::Running
        } else {
            Self::from_system_state(&out.stdout)
        }
    }
}

pub use clustermgr_shared::machine::leader;

impl Layout {
    /// The argv asking the machine's systemd for its state (`is-system-running`).
    pub fn system_state_argv(&self) -> Result<Vec<String>, OpError> {
        self.exec(SYSTEMCTL, &["is-system-running"])
    }

    /// The machine's state: stopped without a leader, else what its systemd says (bounded);
    /// not applicable to the other packagings.
    pub async fn machine_state(&self, host: &Host, log: &mut Log) -> Result<MachineState, OpError> {
        if self.flavor != Flavor::Machine {
            return Ok(MachineState::NotApplicable);
        }
        if self.leader().is_none() {
            return Ok(MachineState::Stopped);
        }
        let cmd = Command::new(self.system_state_argv()?);
        match tokio::time::timeout(
            STATE_TIMEOUT,
            run_logged(host, &cmd, log, "systemctl is-system-running"),
        )
        .await
        {
            Ok(out) => Ok(MachineState::from_output(&out?)),
            Err(_) => {
                log.line("the machine's systemd did not answer in time");
                Ok(MachineState::Starting)
            }
        }
    }

    /// Makes sure Gluu's machine runs and has finished booting, as Gluu's docs have it:
    /// `gluu-serverd enable` and `gluu-serverd start` when it does not run, then waits for its
    /// leader and its systemd's boot. Other flavors have nothing to start.
    pub async fn ensure_running(
        &self,
        host: &Host,
        log: &mut Log,
    ) -> Result<MachineState, OpError> {
        if self.flavor != Flavor::Machine {
            return Ok(MachineState::NotApplicable);
        }
        if self.leader().is_none() {
            log.line("the Gluu Server machine is not running: enabling and starting it");
            for verb in ["enable", "start"] {
                run_checked(
                    host,
                    &Command::new(self.serverd(verb)?),
                    log,
                    &format!("gluu-serverd {verb}"),
                )
                .await?;
            }
        }
        self.wait_booted(host, log).await
    }

    /// Waits (bounded) for the machine's leader to appear and its systemd to finish booting:
    /// `running`, or `degraded` (a unit failed; logged). A machine that booted into rescue
    /// (`maintenance`) or never finishes is an error.
    pub async fn wait_booted(&self, host: &Host, log: &mut Log) -> Result<MachineState, OpError> {
        if self.flavor != Flavor::Machine {
            return Ok(MachineState::NotApplicable);
        }
        let deadline = tokio::time::Instant::now() + BOOT_TIMEOUT;
        let mut pause = FIRST_PAUSE;
        let mut shown: Option<String> = None;
        let mut last = String::from("no leader");
        loop {
            if let Some(argv) = self.leader().and_then(|_| self.system_state_argv().ok()) {
                let cmd = Command::new(argv);
                if shown.is_none() {
                    log.line(format!("$ {}", cmd.display()));
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let out = tokio::time::timeout(left.min(STATE_TIMEOUT), host.runner.run(&cmd))
                    .await
                    .map_err(|_| "no answer".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                last = match &out {
                    Ok(o) if o.success() => "running".into(),
                    Ok(o) => match o.stdout.trim() {
                        "" => o.stderr.lines().next().unwrap_or("").trim().to_string(),
                        word => word.to_string(),
                    },
                    Err(e) => e.clone(),
                };
                if shown.as_deref() != Some(last.as_str()) {
                    log.line(format!("the machine's systemd: {last}"));
                    shown = Some(last.clone());
                }
                match last.as_str() {
                    "running" => return Ok(MachineState::Running),
                    "degraded" => {
                        log.line("the Gluu Server machine booted with a failed unit (degraded)");
                        return Ok(MachineState::Degraded);
                    }
                    "maintenance" => {
                        return Err(OpError(
                            "the Gluu Server machine booted into rescue mode (maintenance): \
                             its systemd could not reach its default target"
                                .into(),
                        ));
                    }
                    _ => {}
                }
            }
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(OpError(format!(
                    "the Gluu Server machine ({}) did not finish booting within {} s (last: {last})",
                    self.base.display(),
                    BOOT_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::fixture::{nsenter, recorded_host, start_machine};
    use super::*;
    use crate::host::Recorder;
    use crate::ops::tests::log;
    use std::path::Path;
    use std::sync::Arc;

    fn recorded(root: &Path, flavor: Flavor) -> (Host, Arc<Recorder>, Layout) {
        let (h, rec) = recorded_host(root, flavor);
        let l = Layout::detect(&h).unwrap();
        (h, rec, l)
    }

    #[tokio::test]
    async fn other_packagings_have_no_machine_to_start() {
        for flavor in [Flavor::InitdChroot, Flavor::NoChroot] {
            let d = tempfile::tempdir().unwrap();
            let (h, rec, l) = recorded(d.path(), flavor);
            let (mut log, _rx) = log();
            assert_eq!(
                l.ensure_running(&h, &mut log).await.unwrap(),
                MachineState::NotApplicable
            );
            assert_eq!(
                l.machine_state(&h, &mut log).await.unwrap(),
                MachineState::NotApplicable
            );
            assert!(rec.argvs().is_empty(), "{flavor:?}");
        }
    }

    #[tokio::test]
    async fn a_machine_that_never_appears_or_never_boots_is_an_error_in_bounded_time() {
        let d = tempfile::tempdir().unwrap();
        let (h, rec, l) = recorded(d.path(), Flavor::Machine);
        let (mut log, _rx) = log();
        // gluu-serverd start "succeeds" but no leader ever appears.
        let e = l.ensure_running(&h, &mut log).await.unwrap_err();
        assert!(
            e.0.contains("did not finish booting") && e.0.contains("no leader"),
            "{e}"
        );
        let serverd = d.path().join("sbin/gluu-serverd").display().to_string();
        assert_eq!(
            rec.argvs(),
            [
                [serverd.clone(), "enable".into()],
                [serverd, "start".into()]
            ]
        );
        // The leader runs, its systemd stays "starting".
        start_machine(d.path(), &h.proc, 77);
        for _ in 0..200 {
            rec.answer(1, "starting\n");
        }
        rec.calls.lock().unwrap().clear();
        let e = l.wait_booted(&h, &mut log).await.unwrap_err();
        assert!(e.0.contains("last: starting"), "{e}");
        let argvs = rec.argvs();
        assert!(!argvs.is_empty());
        assert!(
            argvs
                .iter()
                .all(|a| *a == nsenter(77, "/bin/systemctl", &["is-system-running"])),
            "{argvs:?}"
        );
    }

    /// A fake /proc entry: `status` with the given NSpid line, `root` pointing at `root`.
    fn fake_pid(proc: &Path, pid: u32, nspid: &str, root: &Path) {
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
        // A second machine on the same root (restarting): the newest.
        fake_pid(&proc, 950, "950\t1", &container);
        assert_eq!(leader(&proc, &container), Some(950));
    }

    #[test]
    fn states_from_systemd() {
        assert_eq!(
            MachineState::from_system_state("running\n"),
            MachineState::Running
        );
        for w in ["degraded", "maintenance"] {
            assert_eq!(MachineState::from_system_state(w), MachineState::Degraded);
        }
        for w in ["starting", "initializing", "stopping", "offline", ""] {
            assert_eq!(MachineState::from_system_state(w), MachineState::Starting);
        }
        let exit = |code, stdout: &str| Output {
            code: Some(code),
            stdout: stdout.into(),
            stderr: String::new(),
        };
        assert_eq!(
            MachineState::from_output(&exit(0, "")),
            MachineState::Running
        );
        assert_eq!(
            MachineState::from_output(&exit(1, "degraded\n")),
            MachineState::Degraded
        );
        assert_eq!(
            MachineState::from_output(&exit(1, "starting\n")),
            MachineState::Starting
        );
        assert_eq!(MachineState::Stopped.label(), "stopped");
        assert_eq!(MachineState::NotApplicable.label(), "not-applicable");
    }
}
