//! The agent's .deb in a booted systemd machine, as an operator installs it: a Debian bookworm
//! root (the cached mmdebstrap base of the Gluu stand-in, `tests/gluu-standin/build-base`, under
//! an overlay of its own) booted with `systemd-nspawn --boot --keep-unit --register=no`, sharing
//! the host's network; `dpkg -i` of the package, `clustermgr-agent join` against a controller on
//! the host, `systemctl enable --now`, the node online; `systemctl restart` and a reboot of the
//! machine bring it back; `apt-get remove` stops it, `apt-get purge` removes its state.

use super::{Debs, build_debs};
use clustermgr_tests::booted::{Machine, ONLINE, base_root};
use clustermgr_tests::{Agent, Controller, eventually, text};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;
use std::time::Instant;

/// The main process of `unit` in the machine ("0": none).
pub(super) fn main_pid(m: &Machine, unit: &str) -> String {
    m.ok(&["systemctl", "show", "--property=MainPID", "--value", unit])
        .trim()
        .to_string()
}

#[test]
fn agent_deb_in_a_booted_systemd_machine() {
    clustermgr_tests::machine::require_prerequisites();
    let base = base_root();
    let debs: Debs = build_debs();
    let deb = &debs.agent;
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let name = format!("cmpkg{}", std::process::id());
    let mut m = Machine::new(&base, &name);
    m.boot();

    // Install as an operator does: the package's dependencies are in the base already.
    std::fs::copy(deb, m.path("/root/clustermgr-agent.deb")).expect("copy the package in");
    let started = Instant::now();
    m.ok(&["dpkg", "-i", "/root/clustermgr-agent.deb"]);
    let state = m.path("/var/lib/clustermgr-agent");
    let mode = std::fs::metadata(&state)
        .map(|md| md.permissions().mode() & 0o7777)
        .unwrap_or_else(|e| panic!("{}: {e}", state.display()));
    assert_eq!(mode, 0o700, "state dir mode {mode:o}");
    // Installed, neither enabled nor started.
    let o = m
        .exec(&["systemctl", "is-enabled", "clustermgr-agent.service"])
        .expect("is-enabled");
    assert_eq!(text(&o.stdout).trim(), "disabled");

    let node = m.join(&ctl);
    m.ok(&["systemctl", "enable", "--now", "clustermgr-agent"]);
    eventually(ONLINE, "the node online", || match ctl.node_status(&node) {
        Some(s) if s == "online" => Ok(()),
        other => Err(format!("status {other:?}")),
    });
    eprintln!(
        "timing: dpkg -i to node online in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // systemctl restart: a new agent process, online again.
    let before = main_pid(&m, "clustermgr-agent");
    m.ok(&["systemctl", "restart", "clustermgr-agent"]);
    eventually(ONLINE, "a new agent process", || {
        let now = main_pid(&m, "clustermgr-agent");
        if now != before && now != "0" {
            Ok(())
        } else {
            Err(format!("MainPID {now}"))
        }
    });
    ctl.wait_status(&node, "online");

    // The machine stopped (the node goes offline) and booted again: the enabled agent is
    // back online by itself.
    m.power_off();
    ctl.wait_status(&node, "offline");
    m.boot();
    eventually(ONLINE, "the node online after the reboot", || {
        match ctl.node_status(&node) {
            Some(s) if s == "online" => Ok(()),
            other => Err(format!("status {other:?}")),
        }
    });
    m.ok(&["systemctl", "is-active", "clustermgr-agent"]);

    // apt-get remove stops and disables the agent and keeps its identity; purge removes it.
    m.ok(&["apt-get", "remove", "-y", "-q", "clustermgr-agent"]);
    ctl.wait_status(&node, "offline");
    let o = m
        .exec(&["systemctl", "is-active", "clustermgr-agent"])
        .expect("is-active");
    assert_ne!(text(&o.stdout).trim(), "active");
    assert!(!m.path("/usr/bin/clustermgr-agent").exists());
    // (the link itself: once the unit file is gone a leftover link dangles)
    let wants = m.path("/etc/systemd/system/multi-user.target.wants/clustermgr-agent.service");
    assert!(
        std::fs::symlink_metadata(&wants).is_err(),
        "remove left the agent enabled"
    );
    assert!(
        state.join("agent.toml").is_file(),
        "remove lost the identity"
    );
    assert!(
        m.path("/etc/default/clustermgr-agent").is_file(),
        "remove took the conffile"
    );
    m.ok(&["apt-get", "purge", "-y", "-q", "clustermgr-agent"]);
    assert!(!state.exists(), "purge left {}", state.display());
    assert!(!m.path("/etc/default/clustermgr-agent").exists());
    let o = m
        .exec(&["dpkg", "-s", "clustermgr-agent"])
        .expect("dpkg -s");
    assert!(
        !o.status.success(),
        "still known to dpkg: {}",
        text(&o.stdout)
    );
}

/// `clustermgr --data-dir /var/lib/clustermgr ARGS` run in the machine as the system user
/// `clustermgr` (`runuser`), as the README tells operators to.
pub(super) fn as_controller_user(m: &Machine, args: &[&str]) -> Result<Output, String> {
    let mut argv = vec![
        "runuser",
        "-u",
        "clustermgr",
        "--",
        "clustermgr",
        "--data-dir",
        "/var/lib/clustermgr",
    ];
    argv.extend_from_slice(args);
    m.exec(&argv)
}

/// [`as_controller_user`]; panics with its output unless it succeeds, returns stdout.
pub(super) fn controller_ok(m: &Machine, args: &[&str]) -> String {
    let o = as_controller_user(m, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        o.status.success(),
        "clustermgr {args:?} in the machine failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// `dpkg -i` of the controller's .deb: checks the postinst's system user and its data directory
/// (owner, 0700); returns the user's uid.
pub(super) fn install_controller(m: &Machine, deb: &Path) -> u32 {
    std::fs::copy(deb, m.path("/root/clustermgr.deb")).expect("copy the package in");
    m.ok(&["dpkg", "-i", "/root/clustermgr.deb"]);
    let passwd = std::fs::read_to_string(m.path("/etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("clustermgr:"))
        .unwrap_or_else(|| panic!("no clustermgr user: {passwd}"));
    let uid: u32 = user
        .split(':')
        .nth(2)
        .and_then(|u| u.parse().ok())
        .expect("uid");
    let data = std::fs::metadata(m.path("/var/lib/clustermgr")).expect("data dir");
    assert_eq!(
        (data.uid(), data.permissions().mode() & 0o7777),
        (uid, 0o700)
    );
    uid
}

/// Waits until the controller in the machine answers its admin credential.
pub(super) fn wait_serving(m: &Machine) {
    eventually(ONLINE, "the controller serving", || {
        let o = as_controller_user(m, &["whoami"])?;
        if o.status.success() {
            Ok(())
        } else {
            Err(text(&o.stderr))
        }
    });
}

/// `init` as the system user, then `systemctl enable --now clustermgr`; returns the listen
/// address and the CA pin once the service answers.
pub(super) fn serve_controller(m: &Machine) -> (String, String) {
    let addr = format!("127.0.0.1:{}", clustermgr_tests::free_port());
    let pin = controller_ok(m, &["init", "--listen", &addr])
        .trim()
        .to_string();
    assert!(pin.starts_with("sha256:"), "init printed {pin:?}");
    m.ok(&["systemctl", "enable", "--now", "clustermgr"]);
    wait_serving(m);
    (addr, pin)
}

/// Waits until the controller in the machine lists `node` as `status`.
pub(super) fn wait_node(m: &Machine, node: &str, status: &str) {
    eventually(ONLINE, &format!("the node {status}"), || {
        let list = controller_ok(m, &["node", "list", "--output", "json"]);
        let nodes: serde_json::Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
        let found = nodes
            .as_array()
            .and_then(|a| a.iter().find(|n| n["id"] == node))
            .map(|n| n["status"].clone());
        match found {
            Some(s) if s == status => Ok(()),
            other => Err(format!("status {other:?}")),
        }
    });
}

/// An agent on the host joins the controller served in the machine and comes online; returns
/// it (running) and its node id.
pub(super) fn host_agent_online(m: &Machine, addr: &str, pin: &str) -> (Agent, String) {
    let token = controller_ok(m, &["token", "create", "--role", "gluu-node"]);
    let mut agent = Agent::new("pkg-node");
    let o = agent.join_output(addr, token.trim(), pin, &[]);
    assert!(o.status.success(), "join: {}", text(&o.stderr));
    let node = text(&o.stdout).trim().to_string();
    agent.start();
    wait_node(m, &node, "online");
    (agent, node)
}

/// The controller's .deb in a booted systemd machine: the postinst's system user and data
/// directory, `init` as that user, `systemctl enable --now clustermgr` under the hardened unit
/// (the sandbox must not stop it from serving), an agent on the host joins it and comes
/// online.
/// A booted machine running the controller's .deb of this build as the enabled service.
pub(super) struct Served {
    pub debs: Debs,
    pub m: Machine,
    /// The system user's uid.
    pub uid: u32,
    pub addr: String,
    pub pin: String,
}

/// Boots the machine `name`, installs the controller's .deb ([`install_controller`]) and
/// serves it ([`serve_controller`]).
pub(super) fn controller_served(name: &str) -> Served {
    clustermgr_tests::machine::require_prerequisites();
    let base = base_root();
    let debs: Debs = build_debs();
    let mut m = Machine::new(&base, &format!("{name}{}", std::process::id()));
    m.boot();
    let uid = install_controller(&m, &debs.controller);
    let (addr, pin) = serve_controller(&m);
    Served {
        debs,
        m,
        uid,
        addr,
        pin,
    }
}

#[test]
fn controller_deb_in_a_booted_systemd_machine() {
    let Served { m, addr, pin, .. } = controller_served("cmctl");
    let main_user = m.ok(&["ps", "-o", "user=", "-p", &main_pid(&m, "clustermgr")]);
    assert_eq!(main_user.trim(), "clustermgr");
    let o = m
        .exec(&[
            "systemd-analyze",
            "security",
            "--no-pager",
            "clustermgr.service",
        ])
        .expect("systemd-analyze");
    if let Some(line) = text(&o.stdout)
        .lines()
        .find(|l| l.contains("Overall exposure"))
    {
        eprintln!(
            "systemd-analyze security in the machine: {}",
            line.trim_start_matches('→').trim()
        );
    }

    // An agent on the host joins the packaged controller and comes online.
    host_agent_online(&m, &addr, &pin);
}
