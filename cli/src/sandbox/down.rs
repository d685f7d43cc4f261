//! `sandbox down`: agents and controller, then every Gluu host's machine (`gluu-serverd stop`,
//! then proof that no nspawn or machine process is left), then the services agents started
//! (nginx, redis-server, stunnel, nutcracker), then what is left in the agents' and the
//! controller's process groups (their jobs' commands). It stops only what the sandbox started:
//! another process that merely names the sandbox directory (a `tail -f` on its log, an editor,
//! the `timeout` wrapping this command) is reported and left alone.

use super::{alive, load, save};
use anyhow::{Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The container root of a sandbox host's Gluu Server.
const CONTAINER: &str = "opt/gluu-server";

/// What powering off the sandbox's Gluu machines did.
#[derive(Debug, Default)]
pub struct MachinesStopped {
    /// `gluu-serverd stop` commands that failed, one line each.
    pub failures: Vec<String>,
    /// Machine processes still there after the stops, killed (described).
    pub killed: Vec<String>,
}

impl MachinesStopped {
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty() && self.killed.is_empty()
    }
}

/// What `sandbox down` did.
#[derive(Debug)]
pub struct Down {
    pub dir: PathBuf,
    /// Processes naming the sandbox directory that the sandbox did not start: left running.
    pub left_running: Vec<String>,
    /// The machines' power-off; processes it had to kill mean the down failed.
    pub machines: MachinesStopped,
    /// The directory was deleted (`--purge`, once everything stopped).
    pub purged: bool,
}

pub fn down(dir: &Path, purge: bool) -> Result<Down> {
    let mut state = load(dir)?;
    // The process groups the sandbox started (each agent and the controller leads its own).
    let groups: Vec<i32> = state
        .procs
        .iter()
        .map(|p| p.pid)
        .filter(|p| *p > 1)
        .collect();
    // Agents first, then the controller.
    let mut order: Vec<usize> = (0..state.procs.len()).collect();
    order.sort_by_key(|&i| state.procs[i].role == "controller");
    for i in order {
        let p = &state.procs[i];
        if !alive(p.pid) {
            continue;
        }
        if !terminate(p.pid, alive) {
            bail!("{} (pid {}) did not stop", p.name, p.pid);
        }
    }
    let machines = stop_machines(dir);
    // The services agents started on their hosts (nginx, redis-server, stunnel, nutcracker):
    // each writes a pid file under its host's root (`run/clustermgr/*.pid`); redis-server
    // rewrites its command line, so the scan below would not find it.
    for pid in daemon_pids(dir) {
        terminate(pid, running);
    }
    // What is left in the sandbox's own process groups (a job's command outliving its agent).
    for pid in in_groups(&groups) {
        terminate(pid, running);
    }
    // Anything else naming the sandbox is not the sandbox's to stop: said, not killed.
    let left_running = processes_under(dir).into_iter().map(describe).collect();
    for p in &mut state.procs {
        p.pid = 0;
    }
    save(dir, &state)?;
    let purged = purge && machines.killed.is_empty();
    if purged {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(Down {
        dir: dir.to_path_buf(),
        left_running,
        machines,
        purged,
    })
}

/// SIGTERM, up to 5 s, then SIGKILL and up to 5 s more; whether it is gone.
fn terminate(pid: i32, is_alive: impl Fn(i32) -> bool) -> bool {
    for sig in [Signal::SIGTERM, Signal::SIGKILL] {
        let _ = kill(Pid::from_raw(pid), sig);
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !is_alive(pid) {
            return true;
        }
    }
    false
}

/// The roots of the sandbox's hosts that hold a Gluu Server container.
fn gluu_roots(dir: &Path) -> Vec<PathBuf> {
    let Ok(hosts) = std::fs::read_dir(dir.join("hosts")) else {
        return Vec::new();
    };
    let mut roots: Vec<PathBuf> = hosts
        .flatten()
        .map(|h| h.path().join("root"))
        .filter(|r| r.join(CONTAINER).is_dir())
        .collect();
    roots.sort();
    roots
}

/// Powers off every Gluu machine of the sandbox (`ROOT/sbin/gluu-serverd stop`, all hosts at
/// once), then checks that no nspawn or machine process is left under the sandbox directory.
/// Whatever is left is killed and described in what is returned, beside the stops that failed.
pub fn stop_machines(dir: &Path) -> MachinesStopped {
    let roots = gluu_roots(dir);
    let failures: Vec<String> = std::thread::scope(|s| {
        let stops: Vec<_> = roots
            .iter()
            .map(|root| root.join("sbin/gluu-serverd"))
            .filter(|serverd| serverd.is_file())
            .map(|serverd| {
                s.spawn(move || {
                    let out = Command::new(&serverd)
                        .arg("stop")
                        .stdin(Stdio::null())
                        .output();
                    match out {
                        Ok(o) if o.status.success() => None,
                        Ok(o) => Some(format!(
                            "{} stop: exit {:?}: {}",
                            serverd.display(),
                            o.status.code(),
                            String::from_utf8_lossy(&o.stderr).trim()
                        )),
                        Err(e) => Some(format!("cannot run {}: {e}", serverd.display())),
                    }
                })
            })
            .collect();
        stops
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .collect()
    });
    // The stop returns when nspawn has exited; give the kernel a moment to reap the rest.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = machine_processes(&roots);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = machine_processes(&roots);
    }
    let killed: Vec<String> = left.iter().map(|p| describe(*p)).collect();
    // A leader's death (PID 1 of its PID namespace) takes the rest of its machine with it.
    for pid in &left {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !machine_processes(&roots).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    MachinesStopped { failures, killed }
}

/// Live processes of the machines under `roots`: every process whose root directory is one of
/// the container roots (the machine's systemd, its services) and every process whose command
/// line names one (`systemd-nspawn -D ROOT/opt/gluu-server`).
pub fn machine_processes(roots: &[PathBuf]) -> Vec<i32> {
    let containers: Vec<(PathBuf, u64, u64)> = roots
        .iter()
        .filter_map(|r| {
            let c = r.join(CONTAINER);
            let m = std::fs::metadata(&c).ok()?;
            Some((c, m.dev(), m.ino()))
        })
        .collect();
    if containers.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let mut out: Vec<i32> = pids()
        .into_iter()
        .filter(|pid| *pid != me && running(*pid))
        .filter(|pid| {
            let rooted = std::fs::metadata(format!("/proc/{pid}/root")).is_ok_and(|m| {
                containers
                    .iter()
                    .any(|(_, dev, ino)| m.dev() == *dev && m.ino() == *ino)
            });
            rooted || {
                let cmd = cmdline(*pid);
                containers
                    .iter()
                    .any(|(c, _, _)| cmd.contains(&*c.to_string_lossy()))
            }
        })
        .collect();
    out.sort_unstable();
    out
}

/// A machine's state as the sandbox host sees it: "running" while its leader (PID 1 of a
/// nested PID namespace, rooted at the container) lives, else "stopped"; None without Gluu.
pub fn local_machine_state(root: &Path) -> Option<&'static str> {
    let container = root.join(CONTAINER);
    container.exists().then_some(())?;
    let leader = clustermgr_shared::machine::leader(Path::new("/proc"), &container);
    Some(if leader.is_some() {
        "running"
    } else {
        "stopped"
    })
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

fn describe(pid: i32) -> String {
    format!("{pid} {}", cmdline(pid).trim())
}

/// Live processes whose process group is one of `groups`.
fn in_groups(groups: &[i32]) -> Vec<i32> {
    let me = std::process::id() as i32;
    pids()
        .into_iter()
        .filter(|pid| *pid != me && running(*pid))
        .filter(|pid| process_group(*pid).is_some_and(|g| groups.contains(&g)))
        .collect()
}

/// The process group of `pid` (`/proc/PID/stat`: state, ppid, pgrp after the command name).
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Live processes whose command line names `dir`, but for this one and its ancestors (the
/// shell or `timeout` that started it).
fn processes_under(dir: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    let needle = dir.to_string_lossy().into_owned();
    let mine = ancestors();
    pids()
        .into_iter()
        .filter(|pid| !mine.contains(pid) && running(*pid) && cmdline(*pid).contains(&needle))
        .collect()
}

/// This process and its ancestors.
fn ancestors() -> Vec<i32> {
    let mut out = vec![std::process::id() as i32];
    while let Some(parent) = out.last().and_then(|p| parent_of(*p)).filter(|p| *p > 1) {
        if out.contains(&parent) {
            break;
        }
        out.push(parent);
    }
    out
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Alive and not a zombie, whatever its command line (a service's own pid file names it; nginx's
/// master shows "nginx: master process", and its workers outlive a master killed with SIGKILL,
/// so it must get SIGTERM and the time to stop them).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|st| st != 'Z' && st != 'X')
}

/// Live processes named by the pid files agents keep for their services
/// (`hosts/*/root/run/clustermgr/*.pid`).
fn daemon_pids(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(hosts) = std::fs::read_dir(dir.join("hosts")) else {
        return out;
    };
    for h in hosts.flatten() {
        let Ok(files) = std::fs::read_dir(h.path().join("root/run/clustermgr")) else {
            continue;
        };
        for f in files.flatten() {
            if f.path().extension().is_some_and(|e| e == "pid")
                && let Some(pid) = std::fs::read_to_string(f.path())
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                && pid > 1
                && running(pid)
            {
                out.push(pid);
            }
        }
    }
    out
}
