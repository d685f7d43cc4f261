//! The services the agent manages beside Gluu (nginx, redis-server, stunnel, nutcracker), one
//! seam for both kinds of host:
//!
//! - a real host (`PackageMode::System`): the distribution's systemd unit —
//!   `systemctl restart|reload|stop|is-active UNIT`;
//! - a sandbox host (its own root, usually not root): the program itself, started with a
//!   configuration under the root; every one of these programs daemonizes and writes a pid file
//!   there, so start is "run it and wait for the pid file", stop is SIGTERM to that pid (then
//!   SIGKILL), reload is SIGHUP, status is "the pid is alive". `sandbox down` stops them from
//!   the same pid files (`<root>/run/clustermgr/*.pid`).
//!
//! Commands are argv built by the caller; nothing goes through a shell.

use super::{Log, OpError, run_checked, run_logged};
use crate::host::{Command, Host, PackageMode};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where sandbox daemons keep their pid files (relative to the host's root).
pub const PID_DIR: &str = "/run/clustermgr";

/// One managed service.
#[derive(Debug, Clone)]
pub struct Daemon {
    /// systemd unit on a real host (e.g. `nginx`, `redis-server`, `stunnel4`).
    pub unit: String,
    /// Sandbox: the argv that starts the program daemonized with its configuration under the
    /// root; the program must write `pid_file`.
    pub start_argv: Vec<String>,
    /// Sandbox: the pid file the program writes (a host path).
    pub pid_file: PathBuf,
    /// Sandbox: the signal that makes the program re-read its configuration, if it has one.
    pub reload_signal: Option<Signal>,
}

/// What a daemon is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running(Option<i32>),
    Stopped,
}

impl State {
    pub fn running(self) -> bool {
        matches!(self, Self::Running(_))
    }
}

/// The pid file path of a sandbox daemon named `name` under the host's root.
pub fn pid_file(host: &Host, name: &str) -> PathBuf {
    host.path(&format!("{PID_DIR}/{name}.pid"))
}

fn uses_systemd(host: &Host) -> bool {
    host.packages == PackageMode::System
}

fn read_pid(path: &Path) -> Option<i32> {
    let s = std::fs::read_to_string(path).ok()?;
    let pid: i32 = s.trim().parse().ok()?;
    (pid > 1).then_some(pid)
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks existence; a zombie is not running.
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

impl Daemon {
    /// Whether it runs (systemd: `is-active`; sandbox: the pid file's process is alive).
    pub async fn state(&self, host: &Host, log: &mut Log) -> Result<State, OpError> {
        if uses_systemd(host) {
            let out = run_logged(
                host,
                &Command::new(["systemctl", "is-active", "--quiet", &self.unit]),
                log,
                "systemctl is-active",
            )
            .await?;
            return Ok(if out.success() {
                State::Running(None)
            } else {
                State::Stopped
            });
        }
        Ok(match read_pid(&self.pid_file) {
            Some(pid) if alive(pid) => State::Running(Some(pid)),
            _ => State::Stopped,
        })
    }

    /// `systemctl VERB` on the unit, logged as `what`.
    async fn systemctl(
        &self,
        host: &Host,
        log: &mut Log,
        verb: &str,
        what: &str,
    ) -> Result<(), OpError> {
        run_checked(
            host,
            &Command::new(["systemctl", verb, &self.unit]),
            log,
            &format!("{what} {}", self.unit),
        )
        .await?;
        Ok(())
    }

    /// Starts it, or restarts it when it runs.
    pub async fn restart(&self, host: &Host, log: &mut Log) -> Result<(), OpError> {
        if uses_systemd(host) {
            return self.systemctl(host, log, "restart", "restart").await;
        }
        self.stop(host, log).await?;
        self.start_sandbox(host, log).await
    }

    /// Starts it unless it runs.
    pub async fn ensure_started(&self, host: &Host, log: &mut Log) -> Result<(), OpError> {
        if self.state(host, log).await?.running() {
            return Ok(());
        }
        if uses_systemd(host) {
            return self.systemctl(host, log, "start", "start").await;
        }
        self.start_sandbox(host, log).await
    }

    /// Makes a running daemon re-read its configuration (starts it when it does not run).
    pub async fn reload(&self, host: &Host, log: &mut Log) -> Result<(), OpError> {
        if uses_systemd(host) {
            return self
                .systemctl(host, log, "reload-or-restart", "reload")
                .await;
        }
        match (self.state(host, log).await?, self.reload_signal) {
            (State::Running(Some(pid)), Some(sig)) => {
                log.line(format!("signal {sig} to {} (pid {pid})", self.unit));
                kill(Pid::from_raw(pid), sig)
                    .map_err(|e| OpError(format!("cannot signal {}: {e}", self.unit)))
            }
            (State::Running(_), _) => self.restart(host, log).await,
            (State::Stopped, _) => self.start_sandbox(host, log).await,
        }
    }

    /// Stops it (no error when it does not run).
    pub async fn stop(&self, host: &Host, log: &mut Log) -> Result<(), OpError> {
        if uses_systemd(host) {
            return self.systemctl(host, log, "stop", "stop").await;
        }
        let Some(pid) = read_pid(&self.pid_file) else {
            return Ok(());
        };
        if !alive(pid) {
            let _ = std::fs::remove_file(&self.pid_file);
            return Ok(());
        }
        log.line(format!("stop {} (pid {pid})", self.unit));
        stop_pid(pid)
            .await
            .map_err(|e| OpError(format!("{}: {e}", self.unit)))?;
        let _ = std::fs::remove_file(&self.pid_file);
        Ok(())
    }

    async fn start_sandbox(&self, host: &Host, log: &mut Log) -> Result<(), OpError> {
        if let Some(dir) = self.pid_file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| OpError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let _ = std::fs::remove_file(&self.pid_file);
        run_checked(
            host,
            &Command::new(self.start_argv.clone()),
            log,
            &format!("start {}", self.unit),
        )
        .await?;
        // The program daemonizes: wait (bounded) for its pid file and a live process.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = read_pid(&self.pid_file)
                && alive(pid)
            {
                log.line(format!("{} running (pid {pid})", self.unit));
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(OpError(format!(
                    "{} did not start: no live process in {} after 10 s",
                    self.unit,
                    self.pid_file.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// SIGTERM, up to 10 s, then SIGKILL.
pub async fn stop_pid(pid: i32) -> Result<(), String> {
    let p = Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if alive(pid) {
        let _ = kill(p, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if alive(pid) {
        return Err(format!("pid {pid} did not stop"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Runner;
    use tokio::sync::mpsc;

    fn sandbox_host(root: &Path) -> Host {
        Host {
            root: root.to_path_buf(),
            packages: PackageMode::UnderRoot,
            format: None,
            runner: Runner::Real,
            proc: std::path::PathBuf::from("/proc"),
        }
    }

    #[tokio::test]
    async fn sandbox_daemon_starts_reloads_and_stops_by_its_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = sandbox_host(dir.path());
        let pid_file = pid_file(&host, "sleeper");
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut log = Log::new(tx);
        // A program that daemonizes (the shell exits, its background child writes the pid
        // file and stays), as nginx, redis-server and stunnel do.
        let script = format!(
            "sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {}",
            pid_file.display()
        );
        let d = Daemon {
            unit: "sleeper".into(),
            start_argv: vec!["sh".into(), "-c".into(), script],
            pid_file: pid_file.clone(),
            reload_signal: Some(Signal::SIGCONT),
        };
        assert_eq!(d.state(&host, &mut log).await.unwrap(), State::Stopped);
        d.ensure_started(&host, &mut log).await.unwrap();
        let State::Running(Some(pid)) = d.state(&host, &mut log).await.unwrap() else {
            panic!("not running");
        };
        // Started twice is still one process.
        d.ensure_started(&host, &mut log).await.unwrap();
        assert_eq!(read_pid(&pid_file), Some(pid));
        d.reload(&host, &mut log).await.unwrap();
        assert!(alive(pid), "SIGCONT leaves it running");
        d.restart(&host, &mut log).await.unwrap();
        let State::Running(Some(pid2)) = d.state(&host, &mut log).await.unwrap() else {
            panic!("not running after restart");
        };
        assert_ne!(pid, pid2);
        assert!(!alive(pid), "the old process is gone");
        d.stop(&host, &mut log).await.unwrap();
        assert!(!alive(pid2));
        assert_eq!(d.state(&host, &mut log).await.unwrap(), State::Stopped);
        // Stopping a stopped daemon is fine.
        d.stop(&host, &mut log).await.unwrap();
    }

    #[tokio::test]
    async fn a_program_that_never_writes_its_pid_file_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let host = sandbox_host(dir.path());
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut log = Log::new(tx);
        let d = Daemon {
            unit: "broken".into(),
            start_argv: vec!["false".into()],
            pid_file: pid_file(&host, "broken"),
            reload_signal: None,
        };
        let e = d.ensure_started(&host, &mut log).await.unwrap_err();
        assert!(e.0.contains("start broken failed"), "{e}");
    }
}
