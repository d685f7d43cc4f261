//! Booted systemd machines for the packaging tests and the packaging benchmark: a Debian
//! bookworm root (the cached mmdebstrap base of the Gluu stand-in, `tests/gluu-standin/build-base`)
//! under an overlay of its own, booted with `systemd-nspawn --boot --keep-unit --register=no`,
//! sharing the host's network; commands run inside through its leader (`nsenter --all`).

use crate::{Controller, eventually, text};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(120);
pub const ONLINE: Duration = Duration::from_secs(60);

/// A booted machine on an overlay of the base root; powered off and unmounted when dropped.
pub struct Machine {
    dir: tempfile::TempDir,
    root: PathBuf,
    name: String,
    nspawn: Option<Child>,
}

impl Machine {
    pub fn new(base: &Path, name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (upper, work, root) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("root"),
        );
        for d in [&upper, &work, &root] {
            std::fs::create_dir_all(d).expect("overlay dirs");
        }
        let o = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                base.display(),
                upper.display(),
                work.display()
            ))
            .arg(&root)
            .output()
            .expect("mount");
        assert!(o.status.success(), "mount overlay: {}", text(&o.stderr));
        Self {
            dir,
            root,
            name: name.to_string(),
            nspawn: None,
        }
    }

    fn leader(&self) -> Option<u32> {
        clustermgr_shared::machine::leader(Path::new("/proc"), &self.root)
    }

    /// Boots the machine and waits until its systemd reports the boot finished.
    pub fn boot(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nspawn.log"))
            .expect("nspawn log");
        let child = Command::new("systemd-nspawn")
            .args(["--quiet", "--boot", "--keep-unit", "--register=no", "-D"])
            .arg(&self.root)
            .arg(format!("--machine={}", self.name))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn (package systemd-container)");
        self.nspawn = Some(child);
        eventually(BOOT, "the machine's leader", || {
            self.leader().ok_or_else(|| self.log_tail())
        });
        let state = eventually(BOOT, "the machine's boot", || {
            let o = self.exec(&["systemctl", "is-system-running", "--wait"])?;
            let state = text(&o.stdout).trim().to_string();
            match state.as_str() {
                "running" | "degraded" => Ok(state),
                _ => Err(format!("is-system-running: {state}")),
            }
        });
        if state == "degraded" {
            let o = self.exec(&["systemctl", "--failed", "--no-legend"]);
            eprintln!("machine degraded: {:?}", o.map(|o| text(&o.stdout)));
        }
    }

    /// Powers the machine off as `systemctl stop` of its unit would (SIGTERM to nspawn, which
    /// has the machine's systemd shut down) and waits for nspawn to exit.
    pub fn power_off(&mut self) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    if let Some(pid) = self.leader() {
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("nspawn.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Runs `argv` inside the machine (its namespaces, root and working directory).
    pub fn exec(&self, argv: &[&str]) -> Result<Output, String> {
        let pid = self.leader().ok_or("the machine is not running")?;
        Command::new("nsenter")
            .args(["--target", &pid.to_string(), "--all", "-r", "-w", "--"])
            .args(argv)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("nsenter: {e}"))
    }

    /// Runs `argv` inside the machine; panics with its output unless it succeeds.
    pub fn ok(&self, argv: &[&str]) -> String {
        let o = self.exec(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert!(
            o.status.success(),
            "{argv:?} in the machine failed ({}): {}{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// `clustermgr-agent join` against `ctl` with a new gluu-node token, in the machine;
    /// returns the node id it printed.
    pub fn join(&self, ctl: &Controller) -> String {
        let token = ctl.token("gluu-node");
        let node = self.ok(&[
            "clustermgr-agent",
            "join",
            "--controller",
            &ctl.addr,
            "--token",
            &token,
            "--ca-pin",
            &ctl.pin,
        ]);
        let node = node.trim().to_string();
        assert_eq!(node.len(), 36, "join printed {node:?}");
        node
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.power_off();
        let _ = Command::new("umount").arg(&self.root).status();
    }
}

/// The cached Debian bookworm base root (built on first use by tests/gluu-standin/build-base).
pub fn base_root() -> PathBuf {
    let o = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("gluu-standin/build-base"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("tests/gluu-standin/build-base");
    assert!(o.status.success(), "build-base failed");
    let base = PathBuf::from(text(&o.stdout).lines().last().unwrap_or_default());
    assert!(
        base.join("usr/lib/systemd").is_dir(),
        "no base root at {}",
        base.display()
    );
    base
}

fn ok(cmd: &mut Command) {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", text(&o.stderr));
}

/// `deb` repacked as `version`; `broken`: its agent exits 1 at once.
pub fn repack(deb: &Path, out: &Path, version: &str, broken: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    ok(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).expect("control");
    let text: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&control, text.join("\n") + "\n").expect("control");
    if broken {
        let bin = tree.join("usr/bin/clustermgr-agent");
        std::fs::write(
            &bin,
            "#!/bin/sh\necho 'clustermgr-agent: this build cannot start' >&2\nexit 1\n",
        )
        .expect("broken agent");
    }
    ok(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-b"])
        .arg(&tree)
        .arg(out));
}
