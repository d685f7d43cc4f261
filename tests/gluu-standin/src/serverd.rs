//! `/sbin/gluu-serverd`: Gluu Server 4.2.3's host-side control of its machine.
//!
//! Verbs, output and exit codes are those of 4.2.3's `gluu-serverd` (a shell script running
//! `systemctl ... systemd-nspawn@gluu-server.service`): unknown verbs print the usage line and
//! exit 1, further arguments are ignored. When ROOT is `/` and systemd runs the host, the verbs
//! run exactly those systemctl commands. Otherwise (a host without systemd, or a package
//! installed under another ROOT) gluu-serverd does what systemd would do with the package's
//! unit itself: it runs `systemd-nspawn` detached, records enablement as `systemctl enable`
//! does, and prints status the way `systemctl status` does.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::layout::Layout;
use crate::machine::{CONSOLE_PORT, Host, MACHINE, UNIT, describe};
use crate::setup::Node;
use crate::slapd::LDAPS_PORT;

const VERBS: &str = "enable|start|restart|ready|login|stop|disable|status|version";

pub fn run(args: &[String]) -> ExitCode {
    let argv0 = std::env::var("GLUU_SERVERD_ARGV0").unwrap_or_else(|_| "/sbin/gluu-serverd".into());
    let verb = args.first().map(String::as_str).unwrap_or_default();
    if !VERBS.split('|').any(|v| v == verb) {
        println!("Usage: {argv0} {{{VERBS}}}");
        return ExitCode::from(1);
    }
    let host = match Host::resolve() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("gluu-serverd: {e:#}");
            return ExitCode::from(1);
        }
    };
    let result = if host.host_systemd() {
        with_systemd(&host, verb)
    } else {
        self_managed(&host, verb)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn code(status: std::process::ExitStatus) -> ExitCode {
    ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    )
}

fn systemctl(args: &[&str]) -> Result<std::process::ExitStatus> {
    Command::new("systemctl")
        .args(args)
        .status()
        .with_context(|| format!("running systemctl {}", args.join(" ")))
}

/// ROOT is `/` on a systemd host: what 4.2.3's script runs.
fn with_systemd(host: &Host, verb: &str) -> Result<ExitCode> {
    Ok(match verb {
        "start" => {
            host.write_console_config()?;
            code(systemctl(&["start", UNIT])?)
        }
        "stop" => code(systemctl(&["stop", UNIT])?),
        "status" => code(systemctl(&["status", UNIT])?),
        "restart" => {
            systemctl(&["stop", UNIT])?;
            wait_stop(host);
            host.write_console_config()?;
            code(systemctl(&["start", UNIT])?)
        }
        "enable" => {
            systemctl(&["enable", "machines.target"])?;
            code(systemctl(&["enable", UNIT])?)
        }
        "disable" => {
            systemctl(&["disable", UNIT])?;
            code(systemctl(&["disable", "machines.target"])?)
        }
        other => common(host, other)?,
    })
}

/// No systemd to run the unit: gluu-serverd runs the machine itself.
fn self_managed(host: &Host, verb: &str) -> Result<ExitCode> {
    Ok(match verb {
        "start" => start(host)?,
        "stop" => {
            host.stop()?;
            ExitCode::SUCCESS
        }
        "restart" => {
            host.stop()?;
            start(host)?
        }
        "status" => status(host),
        "enable" => {
            host.enable()?;
            ExitCode::SUCCESS
        }
        "disable" => {
            host.disable()?;
            ExitCode::SUCCESS
        }
        other => common(host, other)?,
    })
}

fn start(host: &Host) -> Result<ExitCode> {
    if host.unit_file().is_none() {
        eprintln!("Failed to start {UNIT}: Unit {UNIT} not found.");
        return Ok(ExitCode::from(5));
    }
    match host.start() {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!(
                "Job for {UNIT} failed because the control process exited with error code.\n{e:#}"
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// `systemctl status`'s view of the unit: exit 0 running, 3 not running, 4 no such unit.
fn status(host: &Host) -> ExitCode {
    let Some(unit) = host.unit_file() else {
        println!("Unit {UNIT} could not be found.");
        return ExitCode::from(4);
    };
    let shown = Path::new("/").join(unit.strip_prefix(&host.root).unwrap_or(&unit));
    let enabled = if host.enabled() {
        "enabled"
    } else {
        "disabled"
    };
    let nspawn = host.nspawn_pids();
    let leader = host.leader();
    let dot = if nspawn.is_empty() {
        '\u{25cb}'
    } else {
        '\u{25cf}'
    };
    println!("{dot} {UNIT} - Container {MACHINE}");
    println!(
        "     Loaded: loaded ({}; {enabled}; preset: enabled)",
        shown.display()
    );
    match (nspawn.first(), leader) {
        (Some(pid), Some(leader)) => {
            println!("     Active: active (running)");
            println!("     Status: \"Container running.\"");
            println!("   Main PID: {pid} (systemd-nspawn)");
            println!("     Leader: {leader} ({})", describe(leader));
            println!("  Directory: {}", host.container.display());
            ExitCode::SUCCESS
        }
        (Some(pid), None) => {
            println!("     Active: activating (start)");
            println!("   Main PID: {pid} (systemd-nspawn)");
            ExitCode::from(3)
        }
        (None, _) => {
            println!("     Active: inactive (dead)");
            ExitCode::from(3)
        }
    }
}

/// Verbs that work the same with or without the host's systemd.
fn common(host: &Host, verb: &str) -> Result<ExitCode> {
    Ok(match verb {
        "ready" => {
            if stopped_and_free(host) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        "login" => {
            if host.leader().is_none() {
                println!("Gluu server is not started.");
                return Ok(ExitCode::SUCCESS);
            }
            let err = Command::new("ssh")
                .arg("-o")
                .arg(format!("IdentityFile={}", host.console_key().display()))
                .arg("-o")
                .arg(format!("Port={CONSOLE_PORT}"))
                .args([
                    "-o",
                    "LogLevel=QUIET",
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "PubkeyAuthentication=yes",
                ])
                .arg(format!("root@{}", host.console_address()))
                .exec();
            return Err(err).context("running ssh (package openssh-client)");
        }
        "version" => {
            // As 4.2.3: the version printer setup installed, through chroot.
            let status = Command::new("chroot")
                .arg(&host.container)
                .args(["su", "-", "root", "-c"])
                .arg(Layout::new(Path::new("/")).show_version())
                .status()
                .context("running chroot")?;
            code(status)
        }
        other => {
            println!("Usage: /sbin/gluu-serverd {{{VERBS}}} ({other})");
            ExitCode::from(1)
        }
    })
}

/// `ready`: 0 once the machine is down and the node's ports are free (what 4.2.3's `ready`
/// tests before a restart starts the machine again), else 1.
fn stopped_and_free(host: &Host) -> bool {
    if host.running() {
        return false;
    }
    let layout = Layout::new(&host.container);
    let Ok(node) = Node::load(&layout) else {
        return true;
    };
    ![LDAPS_PORT, node.https_port]
        .into_iter()
        .any(|port| port_open(node.ip, port))
}

/// 4.2.3's `restart` waits (up to 30 s) for `ready` between stop and start.
fn wait_stop(host: &Host) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stopped_and_free(host) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn port_open(ip: IpAddr, port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_millis(300)).is_ok()
}
