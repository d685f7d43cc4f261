//! The Gluu cluster the end-to-end tests share: a controller, gluu-node agents whose hosts
//! boot the stand-in package's Gluu Server machine, the cluster configured offline with the
//! stand-in added, and the helpers that look at the nodes (LDAPS, HTTPS, the machine).

use clustermgr_tests::{Agent, Controller, eventually, machine, standin_deb, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub(crate) const LB: &str = "idp.cluster.test";
/// Characters a shell or a properties file would mangle.
pub(crate) const PASSWORD: &str = "Cl$ster 'Pw\"9!";
pub(crate) const REPLICATION: &str = "Re pl!'$\"x9";
pub(crate) const HTTPS_PORT: &str = "8443";
/// A node: a Gluu host's agent (root, its own address). Its Gluu Server machine is powered off
/// when the test ends, and no process of it may be left (the agent's drop guard).
pub(crate) struct Node {
    pub(crate) agent: Agent,
}

impl Node {
    /// The host's root (`ROOT`).
    pub(crate) fn root(&self) -> &Path {
        &self.agent.root
    }

    /// A path inside the Gluu Server machine, by its host path under the container root.
    pub(crate) fn inside(&self, path: &str) -> PathBuf {
        machine::container(self.root()).join(path.trim_start_matches('/'))
    }

    /// `ROOT/sbin/gluu-serverd VERB`, required to succeed.
    pub(crate) fn serverd(&self, verb: &str) {
        let o = machine::serverd(self.root(), verb);
        assert!(
            o.status.success(),
            "{}: gluu-serverd {verb}: {}{}",
            self.agent.hostname,
            text(&o.stdout),
            text(&o.stderr)
        );
    }

    /// The machine's own `systemctl ARGS`, required to succeed.
    pub(crate) fn systemctl(&self, args: &[&str]) {
        let o = machine::systemctl(self.root(), args)
            .unwrap_or_else(|e| panic!("{}: {e}", self.agent.hostname));
        assert!(
            o.status.success(),
            "{}: systemctl {args:?}: {}{}",
            self.agent.hostname,
            text(&o.stdout),
            text(&o.stderr)
        );
    }

    /// Waits until the Gluu units are active under the machine's own systemd.
    pub(crate) fn wait_services_active(&self) {
        eventually(
            Duration::from_secs(60),
            &format!("{}: Gluu units active", self.agent.hostname),
            || machine::units_active(self.root(), &machine::SERVICES),
        );
    }
}

pub(crate) struct Cluster {
    pub(crate) ctl: Controller,
    pub(crate) nodes: Vec<Node>,
    pub(crate) files: tempfile::TempDir,
}

impl Cluster {
    /// A controller, `n` gluu-node agents online, the cluster configured (offline) with the
    /// stand-in package added and every node a server (the first one primary).
    pub(crate) fn new(n: usize, https_port: &str) -> Cluster {
        let mut ctl = Controller::init();
        ctl.start(&[]);
        let mut nodes = Vec::new();
        for i in 1..=n {
            let mut agent = Agent::gluu_host(&format!("gluu{i}.cluster.test"));
            agent.join(&ctl, "gluu-node");
            agent.start();
            nodes.push(Node { agent });
        }
        for node in &nodes {
            ctl.wait_status(&node.agent.node_id, "online");
        }
        let files = tempfile::tempdir().unwrap();
        let pw = files.path().join("ldap-admin-password");
        std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
        let rp = files.path().join("replication-password");
        std::fs::write(&rp, REPLICATION).unwrap();
        ctl.cli_ok(&[
            "cluster",
            "configure",
            "--gluu-version",
            "4.2.3",
            "--lb-hostname",
            LB,
            "--org",
            "Example Org",
            "--country",
            "US",
            "--city",
            "Austin",
            "--state",
            "TX",
            "--admin-email",
            "admin@example.org",
            "--ldap-admin-password-file",
            pw.to_str().unwrap(),
            "--replication-password-file",
            rp.to_str().unwrap(),
            "--offline",
            "--manage-hosts",
            "--https-port",
            https_port,
        ]);
        ctl.cli_ok(&["package", "add", standin_deb().to_str().unwrap()]);
        for node in &nodes {
            ctl.cli_ok(&["server", "add", &node.agent.hostname]);
        }
        Cluster { ctl, nodes, files }
    }

    pub(crate) fn workflow(&self, id: &str) -> Value {
        self.ctl.json(&["workflow", "show", id])
    }

    pub(crate) fn step<'a>(wf: &'a Value, host: &str, step: &str) -> &'a Value {
        wf["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["hostname"] == host)
            .and_then(|n| {
                n["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["name"] == step)
            })
            .unwrap_or_else(|| panic!("no step {step} on {host}: {wf}"))
    }

    /// Everything the cluster said: the controller's and the agents' logs, every job record and
    /// job log, every workflow of `kind`, the audit log (to search for a secret).
    pub(crate) fn everything_said(&self, kind: &str) -> String {
        let ctl = &self.ctl;
        let mut hay = std::fs::read_to_string(ctl.log_path()).unwrap_or_default();
        for n in &self.nodes {
            hay.push_str(&n.agent.log());
        }
        for j in self.jobs() {
            let id = j["id"].as_str().unwrap();
            hay.push_str(&ctl.cli_ok(&["--output", "json", "job", "show", id]));
            hay.push_str(&text(&ctl.cli(&["job", "logs", id]).stdout));
        }
        for w in self.workflows_of(kind) {
            hay.push_str(&self.workflow(w["id"].as_str().unwrap()).to_string());
        }
        hay.push_str(&ctl.cli_ok(&["--output", "json", "audit", "--limit", "1000"]));
        hay
    }

    /// The workflows of `kind`, newest first.
    pub(crate) fn workflows_of(&self, kind: &str) -> Vec<Value> {
        self.ctl
            .json(&["workflow", "list"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["kind"] == kind)
            .cloned()
            .collect()
    }

    /// Every job the controller recorded (newest first).
    pub(crate) fn jobs(&self) -> Vec<Value> {
        self.ctl
            .json(&["job", "list", "--limit", "1000"])
            .as_array()
            .unwrap()
            .clone()
    }
}

pub(crate) fn address(node: &Node) -> &str {
    &node.agent.address
}

/// An LDAPS bind as the directory manager with the cluster's password (real OpenLDAP client).
pub(crate) fn ldaps_bind(addr: &str) -> Result<(), String> {
    let o = Command::new("ldapwhoami")
        .args(["-x", "-H", &format!("ldaps://{addr}:1636"), "-D"])
        .arg("cn=directory manager")
        .arg("-y")
        .arg(password_file())
        .env("LDAPTLS_REQCERT", "never")
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(text(&o.stderr))
    }
}

pub(crate) fn password_file() -> PathBuf {
    let p = std::env::temp_dir().join(format!("gluu-install-pw-{}", std::process::id()));
    // ldapwhoami -y takes the whole file as the password: no newline.
    std::fs::write(&p, PASSWORD).unwrap();
    p
}

pub(crate) fn https_status(url: &str) -> String {
    let o = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            url,
        ])
        .output()
        .unwrap();
    text(&o.stdout)
}

pub(crate) fn assert_no_secret(what: &str, hay: &str) {
    for s in [PASSWORD, REPLICATION] {
        assert!(!hay.contains(s), "a secret leaked into {what}");
    }
}
