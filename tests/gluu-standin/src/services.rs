//! The Gluu services as the machine's systemd runs them (units shipped in the container's
//! `/lib/systemd/system`; setup enables and starts them):
//!
//! - `opendj.service` (`Type=notify`): `gluu-standin opendj` runs slapd in the foreground as
//!   its child, reports `READY=1` once slapd accepts LDAPS connections, passes SIGTERM on and
//!   exits with slapd;
//! - `oxauth.service` (`Type=notify`): `gluu-standin oxauth`, ready once it listens;
//! - `identity.service` (oneshot, `RemainAfterExit`): `gluu-standin identity` waits for the
//!   oxAuth process (which also serves `/identity`) to accept connections.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::layout::Layout;
use crate::machine::tail;
use crate::notify;
use crate::serverd::port_open;
use crate::setup::Node;
use crate::slapd;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

fn append(path: &Path) -> Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn log_line(path: &Path, msg: &str) {
    if let Ok(mut f) = append(path) {
        let ts = time::OffsetDateTime::now_utc();
        let _ = f.write_all(format!("[{ts}] {msg}\n").as_bytes());
    }
}

/// `opendj.service`: slapd in the foreground, ready once it answers on `ip:1636`.
pub fn opendj() -> Result<()> {
    let layout = Layout::resolve()?;
    let node = Node::load(&layout)?;
    let errors = layout.ldap_errors_log();
    if port_open(node.ip, slapd::LDAPS_PORT) {
        let msg = format!(
            "cannot start slapd: {}:{} is in use by another process",
            node.ip,
            slapd::LDAPS_PORT
        );
        log_line(&errors, &msg);
        bail!(msg);
    }
    fs::create_dir_all(layout.run_dir())
        .with_context(|| format!("creating {}", layout.run_dir().display()))?;
    let access = append(&layout.ldap_access_log())?;
    let access_err = access.try_clone().context("duplicating the log handle")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // Signals are watched before slapd exists, so a stop during start is not lost.
        let mut term = signal(SignalKind::terminate()).context("watching SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("watching SIGINT")?;
        let mut child = tokio::process::Command::new(slapd::slapd_binary())
            .arg("-d")
            .arg("256")
            .arg("-f")
            .arg(layout.slapd_conf())
            .arg("-h")
            .arg(format!(
                "{} {}",
                slapd::ldaps_url(node.ip),
                slapd::ldapi_url(&layout)
            ))
            .stdin(Stdio::null())
            .stdout(access)
            .stderr(access_err)
            .spawn()
            .context("starting slapd")?;
        let pid = child.id().unwrap_or_default();
        log_line(&errors, &format!("slapd started, pid {pid}"));
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut ready = false;
        loop {
            if !ready && port_open(node.ip, slapd::LDAPS_PORT) {
                ready = true;
                notify::notify(&format!("READY=1\nSTATUS=slapd answers on {}", slapd::ldaps_url(node.ip)))?;
            }
            if !ready && Instant::now() > deadline {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let msg = format!(
                    "slapd did not accept connections on {}:{} within {}s",
                    node.ip,
                    slapd::LDAPS_PORT,
                    READY_TIMEOUT.as_secs()
                );
                log_line(&errors, &msg);
                bail!("{msg}; last lines of {}:\n{}", layout.ldap_access_log().display(), tail(&layout.ldap_access_log(), 15));
            }
            tokio::select! {
                status = child.wait() => {
                    let status = status.context("waiting for slapd")?;
                    let msg = format!("slapd exited ({status})");
                    log_line(&errors, &msg);
                    bail!("{msg}; last lines of {}:\n{}", layout.ldap_access_log().display(), tail(&layout.ldap_access_log(), 15));
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
                () = tokio::time::sleep(POLL), if !ready => {}
            }
        }
        let _ = notify::notify("STOPPING=1");
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let status = child.wait().await.context("waiting for slapd")?;
        log_line(&errors, &format!("slapd stopped ({status})"));
        Ok(())
    })
}

/// `identity.service`: /identity is served by the oxAuth process; the unit is started once
/// that process accepts connections on the HTTPS port.
pub fn identity() -> Result<()> {
    let layout = Layout::resolve()?;
    let node = Node::load(&layout)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while !port_open(node.ip, node.https_port) {
        if Instant::now() > deadline {
            bail!(
                "/identity does not answer: nothing accepts connections on {}:{} (is oxauth.service running?)",
                node.ip,
                node.https_port
            );
        }
        std::thread::sleep(POLL);
    }
    println!(
        "identity is served by oxauth on {}:{}",
        node.ip, node.https_port
    );
    Ok(())
}

/// Run the machine's `systemctl` (setup, inside the machine); fails with its output.
pub fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "systemctl {} failed ({}): {}",
            args.join(" "),
            out.status,
            text.trim()
        );
    }
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        println!("  {line}");
    }
    Ok(())
}
