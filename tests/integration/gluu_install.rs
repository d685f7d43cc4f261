//! The gluu-install workflow end to end: real controller and agents, the stand-in package added
//! to the repository, pushed to the nodes and installed with dpkg under each agent's root (its
//! postinst makes the container and boots the machine), setup run inside the machine, its
//! directory and web tier (systemd units of the machine) probed. The primary installs first,
//! the others in parallel after it.

use super::gluu_cluster::{
    Cluster, HTTPS_PORT, LB, Node, PASSWORD, address, assert_no_secret, https_status, ldaps_bind,
    password_file,
};
use clustermgr_tests::{eventually, machine, text};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Files of /etc/certs that are each node's own, never copied from the primary.
const DIRECTORY_IDENTITY: [&str; 4] = [
    "openldap.crt",
    "openldap.key",
    "opendj.crt",
    "opendj.pkcs12",
];

fn chroot(node: &Node) -> PathBuf {
    machine::container(node.root())
}

/// Decrypts a setup.properties.last.enc the way Gluu 4.2.3's setup encrypted it.
fn decrypt_last(node: &Node) -> BTreeMap<String, String> {
    let enc = chroot(node).join("install/community-edition-setup/setup.properties.last.enc");
    let o = Command::new("openssl")
        .args(["enc", "-d", "-aes-256-cbc", "-in"])
        .arg(&enc)
        .arg("-pass")
        .arg(format!("file:{}", password_file().display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}: {}", enc.display(), text(&o.stderr));
    text(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            );
        }
    }
    out
}

#[test]
fn offline_install_of_three_nodes_primary_first_then_the_others() {
    let c = Cluster::new(3, HTTPS_PORT);
    let ctl = &c.ctl;

    // A dry run plans and changes nothing (the hosts updates of `server add` are done first).
    eventually(Duration::from_secs(20), "the hosts updates done", || {
        let busy = ctl
            .json(&["workflow", "list"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["status"] == "running" || w["status"] == "pending")
            .count();
        if busy == 0 {
            Ok(())
        } else {
            Err(format!("{busy} running"))
        }
    });
    // Shibboleth on every node, besides Gluu 4.2.3's defaults.
    ctl.cli_ok(&[
        "cluster",
        "configure",
        "--components",
        "oxauth,oxtrust,httpd,saml",
    ]);
    let workflows_before = ctl.json(&["workflow", "list"]).as_array().unwrap().len();
    let jobs_before = c.jobs().len();
    let plan = ctl.cli(&["--output", "json", "gluu", "install", "--all", "--dry-run"]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let runs: Vec<String> = plan
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["action"] == "run")
        .map(|p| format!("{} {} {}", p["hostname"], p["step"], p["detail"]))
        .collect();
    assert!(
        runs.iter()
            .any(|r| r.contains("gluu1.cluster.test") && r.contains("push")),
        "{runs:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("setup") && r.contains("--no-data"))
    );
    // The exact command line, the properties (secrets masked), the certificate files' rule.
    for (step, says) in [
        (
            "setup",
            "run /install/community-edition-setup/setup.py -f /root/setup.properties --listen_all_interfaces -n -c on ",
        ),
        ("setup", "installSaml=True"),
        ("setup", "ldapPass=***"),
        (
            "certificates",
            "every file of /etc/certs but the directory's own",
        ),
    ] {
        assert!(
            runs.iter().any(|r| r.contains(step) && r.contains(says)),
            "{step}: {says}: {runs:?}"
        );
    }
    assert_no_secret("the dry run", &plan.to_string());
    assert_eq!(
        ctl.json(&["workflow", "list"]).as_array().unwrap().len(),
        workflows_before
    );
    assert_eq!(c.jobs().len(), jobs_before, "a dry run ran jobs");

    let out = ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        ctl.cli_ok(&["--output", "json", "workflow", "list"])
    );
    let wfs = ctl.json(&["workflow", "list"]);
    let id = wfs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(wfs[0]["status"], "succeeded");
    let wf = c.workflow(&id);

    // The primary went first: the others' first step started after its last one ended.
    let primary_done =
        Cluster::step(&wf, "gluu1.cluster.test", "record-certificates")["finished_unix_ms"]
            .as_u64()
            .unwrap();
    for host in ["gluu2.cluster.test", "gluu3.cluster.test"] {
        let first = Cluster::step(&wf, host, "preflight")["started_unix_ms"]
            .as_u64()
            .unwrap();
        assert!(
            first >= primary_done,
            "{host} started before the primary was done"
        );
    }

    // Every directory answers an LDAPS bind and every web tier its health check.
    for (i, node) in c.nodes.iter().enumerate() {
        ldaps_bind(address(node)).unwrap_or_else(|e| panic!("{}: {e}", node.agent.hostname));
        let path = if i == 0 { "oxauth" } else { "identity" };
        assert_eq!(
            https_status(&format!(
                "https://{}:{HTTPS_PORT}/{path}/restv1/health-check",
                address(node)
            )),
            "200"
        );
    }

    // Each node's Gluu Server is a booted machine whose own systemd (PID 1 of the machine's
    // PID namespace) runs the units setup enabled; there is no init script to fall back on.
    for node in &c.nodes {
        let host = &node.agent.hostname;
        assert!(machine::leader(node.root()).is_some(), "{host}: no machine");
        machine::units_active(node.root(), &machine::SERVICES)
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        let enabled = machine::systemctl(node.root(), &["is-enabled", "opendj", "oxauth"])
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(text(&enabled.stdout), "enabled\nenabled\n", "{host}");
        let init = machine::exec(node.root(), &["cat", "/proc/1/comm"])
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(text(&init.stdout).trim(), "systemd", "{host}");
        assert!(!node.inside("/etc/init.d/opendj").exists(), "{host}");
        let status = machine::serverd(node.root(), "status");
        assert_eq!(
            status.status.code(),
            Some(0),
            "{host}: {}",
            text(&status.stdout)
        );
    }

    // The secondaries hold the primary's certificates byte for byte, and a setup.properties
    // derived from the primary's .last: same cluster values, their own address, no data.
    let primary = &c.nodes[0];
    let primary_certs = files_under(&chroot(primary).join("etc/certs"));
    assert!(
        primary_certs.contains_key("httpd.key"),
        "{:?}",
        primary_certs.keys()
    );
    let primary_last = decrypt_last(primary);
    for node in &c.nodes[1..] {
        let certs = files_under(&chroot(node).join("etc/certs"));
        for (name, bytes) in &primary_certs {
            if DIRECTORY_IDENTITY.contains(&name.as_str()) {
                // The directory's own TLS identity stays the node's (peers verify it).
                assert_ne!(
                    certs.get(name),
                    Some(bytes),
                    "{}: {name}",
                    node.agent.hostname
                );
            } else {
                assert_eq!(
                    certs.get(name),
                    Some(bytes),
                    "{}: {name}",
                    node.agent.hostname
                );
            }
        }
        let last = decrypt_last(node);
        assert_eq!(last["ip"], address(node));
        assert_eq!(last["hostname"], LB);
        assert_eq!(last["orgName"], primary_last["orgName"]);
        assert_eq!(last["ldapPass"], PASSWORD);
        assert_eq!(last["loadData"], "False");
        assert_eq!(last["installSaml"], "True");
        // The plaintext setup.properties written for setup is gone.
        assert!(!chroot(node).join("root/setup.properties").exists());
        assert!(!node.agent.root.join("setup.properties").exists());
    }

    // server list: installed, with components, from the refreshed inventories.
    let servers = ctl.json(&["server", "list"]);
    for s in servers.as_array().unwrap() {
        assert_eq!(s["install_state"], "installed", "{s}");
        assert_eq!(
            s["components"],
            serde_json::json!(["oxauth", "oxtrust", "httpd", "saml"]),
            "{s}"
        );
        assert!(
            s["installed_components"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "shibboleth"),
            "no Shibboleth found installed: {s}"
        );
        assert_eq!(s["last_workflow"]["status"], "succeeded");
    }

    // With --force, the plan says setup.py does not run again on the installed nodes.
    let forced = ctl.json(&["gluu", "install", "--all", "--force", "--dry-run"]);
    let setup: Vec<&Value> = forced
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["step"] == "setup")
        .collect();
    assert_eq!(setup.len(), 3, "{forced}");
    for p in setup {
        assert_eq!(p["action"], "skip", "{p}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("--force does not run setup.py again"),
            "{p}"
        );
    }

    // A re-run on the working cluster only observes: no job that writes.
    let before: Vec<String> = c
        .jobs()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    let again = ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let new: Vec<Value> = c
        .jobs()
        .into_iter()
        .filter(|j| !before.contains(&j["id"].as_str().unwrap().to_string()))
        .collect();
    assert!(!new.is_empty());
    for j in &new {
        let kind = j["kind"].as_str().unwrap();
        assert!(
            matches!(
                kind,
                "probe" | "read-setup-properties" | "read-gluu-certificates" | "collect-facts"
            ),
            "a re-run ran {kind}: {j}"
        );
    }

    // Secrets: nowhere in job records, job logs, the audit log, or any log file.
    let jobs = ctl.cli_ok(&["--output", "json", "job", "list", "--limit", "1000"]);
    assert_no_secret("job records", &jobs);
    for j in c.jobs() {
        let id = j["id"].as_str().unwrap();
        assert_no_secret("a job log", &ctl.cli_ok(&["job", "logs", id]));
    }
    assert_no_secret(
        "the audit log",
        &ctl.cli_ok(&["--output", "json", "audit", "--limit", "10000"]),
    );
    assert_no_secret(
        "workflow show",
        &ctl.cli_ok(&["--output", "json", "workflow", "show", &id]),
    );
    assert_no_secret(
        "cluster show",
        &ctl.cli_ok(&["--output", "json", "cluster", "show"]),
    );
    assert_no_secret(
        "the controller's log",
        &std::fs::read_to_string(ctl.log_path()).unwrap(),
    );
    for node in &c.nodes {
        assert_no_secret("an agent's log", &node.agent.log());
    }
    drop(c.files);
}

#[test]
fn a_controller_killed_during_the_secondaries_install_resumes_without_reinstalling_the_primary() {
    let mut c = Cluster::new(3, HTTPS_PORT);
    let id = c
        .ctl
        .cli_ok(&["gluu", "install", "--all", "--detach"])
        .trim()
        .to_string();
    assert_eq!(id.len(), 36, "--detach prints the id alone: {id:?}");
    // Wait until a secondary is past its push, into the install proper.
    eventually(Duration::from_secs(240), "a secondary installing", || {
        let wf = c.workflow(&id);
        let s = Cluster::step(&wf, "gluu2.cluster.test", "setup");
        let p = Cluster::step(&wf, "gluu2.cluster.test", "package");
        if s["status"] == "running" || p["status"] == "running" {
            Ok(())
        } else if wf["status"] != "running" {
            Err(format!("workflow ended: {wf}"))
        } else {
            Err(format!("setup {}", s["status"]))
        }
    });
    c.ctl.kill9();
    c.ctl.start(&[]);
    let watch = c.ctl.cli(&["workflow", "watch", &id]);
    assert_eq!(watch.status.code(), Some(0), "{}", text(&watch.stderr));
    let wf = c.workflow(&id);
    assert_eq!(wf["status"], "succeeded");
    // The primary was installed once: one setup job, one package job, on its first attempt.
    let primary = &c.nodes[0].agent.node_id;
    for kind in ["gluu-setup", "install-package"] {
        let n = c
            .jobs()
            .iter()
            .filter(|j| j["node_id"] == primary.as_str() && j["kind"] == kind)
            .count();
        assert_eq!(n, 1, "{kind} jobs on the primary");
    }
    assert_eq!(
        Cluster::step(&wf, "gluu1.cluster.test", "setup")["attempts"],
        1
    );
    for node in &c.nodes {
        ldaps_bind(address(node)).unwrap();
    }
}

#[test]
fn a_failing_setup_names_its_step_and_a_retry_completes_once_the_setting_is_fixed() {
    // The web tier on the directory's port: the stand-in's setup refuses it, as setup.py
    // refuses conflicting ports.
    let c = Cluster::new(1, "1636");
    let ctl = &c.ctl;
    let out = ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("step setup failed"), "{err}");
    let id = ctl.json(&["workflow", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let wf = c.workflow(&id);
    assert_eq!(wf["status"], "failed");
    let setup = Cluster::step(&wf, "gluu1.cluster.test", "setup");
    assert_eq!(setup["status"], "failed");
    assert!(
        setup["error"].as_str().unwrap().contains("https_port"),
        "{setup}"
    );
    assert_ne!(setup["exit_code"], 0, "{setup}");
    let servers = ctl.json(&["server", "list"]);
    assert_eq!(servers[0]["install_state"], "failed");

    ctl.cli_ok(&["cluster", "configure", "--https-port", HTTPS_PORT]);
    let retry = ctl.cli(&["workflow", "retry", &id]);
    assert_eq!(retry.status.code(), Some(0), "{}", text(&retry.stderr));
    let wf = c.workflow(&id);
    assert_eq!(wf["status"], "succeeded");
    assert_eq!(
        Cluster::step(&wf, "gluu1.cluster.test", "setup")["attempts"],
        1
    );
    ldaps_bind(address(&c.nodes[0])).unwrap();
    let audit = ctl.cli_ok(&["--output", "json", "audit"]);
    for action in ["gluu.install", "workflow.retry"] {
        assert!(audit.contains(action), "{action}");
    }
    // A finished workflow cannot be cancelled or retried.
    let cancel = ctl.cli(&["workflow", "cancel", &id]);
    assert_eq!(cancel.status.code(), Some(2));
    assert!(text(&cancel.stderr).contains("already ended"));
}

/// A gluu-server package whose pre-installation script fails.
fn broken_package(dir: &Path) -> PathBuf {
    let stage = dir.join("broken");
    std::fs::create_dir_all(stage.join("DEBIAN")).unwrap();
    std::fs::write(
        stage.join("DEBIAN/control"),
        "Package: gluu-server\nVersion: 4.2.3~broken1\nArchitecture: all\n\
         Maintainer: tests <tests@example.org>\nDescription: fails to install\n",
    )
    .unwrap();
    let preinst = stage.join("DEBIAN/preinst");
    std::fs::write(
        &preinst,
        "#!/bin/sh\necho 'preinst: this package refuses to install' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &preinst,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let deb = dir.join("gluu-server_4.2.3~broken1_all.deb");
    let o = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&stage)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    deb
}

#[test]
fn a_package_that_fails_to_install_stops_its_node_with_the_exit_code_and_output() {
    let c = Cluster::new(1, HTTPS_PORT);
    let deb = broken_package(c.files.path());
    c.ctl.cli_ok(&["package", "add", deb.to_str().unwrap()]);
    let out = c.ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let id = c.ctl.json(&["workflow", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let wf = c.workflow(&id);
    let step = Cluster::step(&wf, "gluu1.cluster.test", "package");
    assert_eq!(step["status"], "failed", "{step}");
    let err = step["error"].as_str().unwrap();
    assert!(err.contains("exit code"), "{err}");
    assert!(
        err.contains("refuses to install"),
        "the output's tail: {err}"
    );
    assert_ne!(step["exit_code"], 0);
    // The later steps never ran.
    assert_eq!(
        Cluster::step(&wf, "gluu1.cluster.test", "setup")["status"],
        "pending"
    );
    // The job log has the command and its output.
    let job = step["job_id"].as_str().unwrap();
    let log = c.ctl.cli_ok(&["job", "logs", job]);
    assert!(log.contains("dpkg"), "{log}");
    assert!(log.contains("refuses to install"), "{log}");
}

#[test]
fn a_cancelled_install_stops_after_its_running_step() {
    let c = Cluster::new(2, HTTPS_PORT);
    let id = c
        .ctl
        .cli_ok(&["gluu", "install", "--all", "--detach"])
        .trim()
        .to_string();
    c.ctl.cli_ok(&["workflow", "cancel", &id]);
    let watch = c.ctl.cli(&["workflow", "watch", &id]);
    assert_eq!(watch.status.code(), Some(1), "{}", text(&watch.stderr));
    let wf = c.workflow(&id);
    assert_eq!(wf["status"], "cancelled", "{wf}");
    let steps: Vec<&Value> = wf["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["steps"].as_array().unwrap())
        .collect();
    // Nothing is left running, nothing after a cancelled step ran, and the secondary never
    // started.
    assert!(steps.iter().all(|s| s["status"] != "running"));
    assert!(steps.iter().any(|s| s["status"] == "cancelled"));
    assert_eq!(
        Cluster::step(&wf, "gluu2.cluster.test", "preflight")["status"],
        "cancelled"
    );
    eventually(Duration::from_secs(10), "no job running", || {
        let running = c.jobs().iter().filter(|j| j["state"] == "running").count();
        if running == 0 {
            Ok(())
        } else {
            Err(format!("{running} running"))
        }
    });
    // A retry is for failed workflows only.
    let retry = c.ctl.cli(&["workflow", "retry", &id]);
    assert_eq!(retry.status.code(), Some(2));
    assert!(
        text(&retry.stderr).contains("only a failed workflow"),
        "{}",
        text(&retry.stderr)
    );
}

#[test]
fn a_standalone_server_is_adopted_as_the_primary_under_the_load_balancer_name() {
    // A node installed on its own, as standalone.cluster.test.
    let c = Cluster::new(1, HTTPS_PORT);
    let ctl = &c.ctl;
    ctl.cli_ok(&[
        "cluster",
        "configure",
        "--lb-hostname",
        "standalone.cluster.test",
    ]);
    let out = ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Out of the cluster again, and the cluster gets its load balancer's name.
    ctl.cli_ok(&["server", "remove", "gluu1.cluster.test"]);
    ctl.cli_ok(&["cluster", "configure", "--lb-hostname", LB]);

    let adopt = ctl.cli(&["gluu", "adopt", "gluu1.cluster.test"]);
    assert_eq!(adopt.status.code(), Some(0), "{}", text(&adopt.stderr));
    let id = ctl.json(&["workflow", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let wf = c.workflow(&id);
    assert_eq!(wf["kind"], "gluu-adopt");
    assert_eq!(
        Cluster::step(&wf, "gluu1.cluster.test", "rename")["status"],
        "succeeded"
    );
    let servers = ctl.json(&["server", "list"]);
    assert_eq!(servers[0]["primary"], true);
    assert_eq!(servers[0]["install_state"], "installed");
    // The directory now carries the load balancer's name, and oxAuth serves it.
    let node = &c.nodes[0];
    let search = Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-H",
            &format!("ldaps://{}:1636", address(node)),
            "-D",
        ])
        .arg("cn=directory manager")
        .arg("-y")
        .arg(password_file())
        .args(["-b", "o=gluu", "(gluuHostname=*)", "gluuHostname"])
        .env("LDAPTLS_REQCERT", "never")
        .output()
        .unwrap();
    let found = text(&search.stdout);
    assert!(found.contains(LB), "{found}{}", text(&search.stderr));
    assert!(!found.contains("standalone.cluster.test"), "{found}");
    // The load balancer hostname is locked now that Gluu is installed with it.
    let change = ctl.cli(&[
        "cluster",
        "configure",
        "--lb-hostname",
        "other.cluster.test",
    ]);
    assert_eq!(change.status.code(), Some(2));
    assert!(
        text(&change.stderr).contains("cannot change"),
        "{}",
        text(&change.stderr)
    );
    // Adopting it again is harmless: the rename finds nothing left to change.
    let again = ctl.cli(&["gluu", "adopt", "gluu1.cluster.test"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let id2 = ctl.json(&["workflow", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(id, id2);
    let wf = c.workflow(&id2);
    let rename = Cluster::step(&wf, "gluu1.cluster.test", "rename");
    if rename["status"] == "succeeded" {
        let job = ctl.json(&["job", "show", rename["job_id"].as_str().unwrap()]);
        assert_eq!(job["output"]["ldap_entries_changed"], 0, "{job}");
    } else {
        assert_eq!(rename["status"], "skipped");
    }
}

#[test]
fn an_offline_node_makes_the_install_wait_and_it_completes_when_the_node_is_back() {
    let mut c = Cluster::new(2, HTTPS_PORT);
    c.nodes[1].agent.stop();
    c.ctl.wait_status(&c.nodes[1].agent.node_id, "offline");
    let id = c
        .ctl
        .cli_ok(&["gluu", "install", "--all", "--detach"])
        .trim()
        .to_string();
    eventually(Duration::from_secs(60), "the secondary waiting", || {
        let wf = c.workflow(&id);
        let s = Cluster::step(&wf, "gluu2.cluster.test", "preflight");
        match s["waiting_for"].as_str() {
            Some(w) if w.contains("offline") => Ok(()),
            other => Err(format!("{other:?} / {}", wf["status"])),
        }
    });
    // Waiting is not failing; and the node cannot leave the cluster meanwhile.
    assert_eq!(c.workflow(&id)["status"], "running");
    let remove = c.ctl.cli(&["server", "remove", "gluu2.cluster.test"]);
    assert_eq!(remove.status.code(), Some(2));
    assert!(
        text(&remove.stderr).contains("is running on it"),
        "{}",
        text(&remove.stderr)
    );
    c.nodes[1].agent.start();
    let watch = c.ctl.cli(&["workflow", "watch", &id]);
    assert_eq!(watch.status.code(), Some(0), "{}", text(&watch.stderr));
    ldaps_bind(address(&c.nodes[1])).unwrap();
}
