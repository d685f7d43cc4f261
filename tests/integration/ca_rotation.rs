//! Certificates that outlive the cluster: CA rotation with running agents, server certificate
//! renewal without a restart, offline recovery of an admin credential.

use clustermgr_shared::config::ClientBundle;
use clustermgr_tests::{Agent, Controller, eventually, text};
use std::process::Command;
use std::time::Duration;

fn established(a: &Agent) -> usize {
    a.log().matches("session established").count()
}

fn certs_in(pem: &str) -> usize {
    pem.matches("BEGIN CERTIFICATE").count()
}

/// (hostname -> "current" | "previous" | "unknown") from `ca status`.
fn node_cas(ctl: &Controller) -> Vec<(String, String)> {
    let s = ctl.json(&["ca", "status"]);
    s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["hostname"].as_str().unwrap().to_string(),
                n["ca"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn on_current_ca(ctl: &Controller, hostname: &str) -> Result<(), String> {
    let cas = node_cas(ctl);
    match cas.iter().find(|(h, _)| h == hostname) {
        Some((_, ca)) if ca == "current" => Ok(()),
        other => Err(format!("{hostname}: {other:?} in {cas:?}")),
    }
}

fn ping(ctl: &Controller, host: &str) {
    let out = ctl.cli_ok(&["job", "run", host, "ping"]);
    assert!(out.contains("pong"), "{out}");
}

#[test]
fn the_ca_is_rotated_with_running_agents() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut agents: Vec<Agent> = (0..3).map(|i| Agent::new(&format!("rot{i}"))).collect();
    for a in &mut agents {
        a.join(&ctl, "gluu-node");
        a.start();
    }
    for a in &agents {
        ctl.wait_status(&a.node_id, "online");
    }
    // This one is off during the rotation; it learns about it when it connects.
    let mut late = Agent::new("late");
    late.join(&ctl, "cache");
    let admin_path = ctl.data.join("admin.toml");
    let old_admin = ClientBundle::load(&admin_path).unwrap();
    let before: Vec<usize> = agents.iter().map(established).collect();

    let new_pin = ctl.cli_ok(&["ca", "rotate"]).trim().to_string();
    assert!(
        new_pin.starts_with("sha256:") && new_pin != ctl.pin,
        "{new_pin}"
    );
    // The calling credential was renewed from the new CA and trusts both.
    let admin = ClientBundle::load(&admin_path).unwrap();
    assert_ne!(admin.cert_pem, old_admin.cert_pem);
    assert_eq!(certs_in(&admin.ca_pem), 2);
    let s = ctl.json(&["ca", "status"]);
    assert_eq!(s["overlap"], true, "{s}");
    assert_eq!(s["cas"][0]["pin"], new_pin.as_str());
    assert_eq!(s["cas"][1]["pin"], ctl.pin.as_str());
    assert_eq!(s["server"]["ca_pin"], new_pin.as_str());

    // Running agents get the bundle, renew over their session and reconnect once.
    for a in &agents {
        eventually(Duration::from_secs(30), "agent on the new CA", || {
            on_current_ca(&ctl, &a.hostname).map_err(|e| format!("{e}\nagent log:\n{}", a.log()))
        });
    }
    for (a, n) in agents.iter().zip(&before) {
        eventually(Duration::from_secs(20), "agent reconnected", || {
            if established(a) > *n {
                Ok(())
            } else {
                Err(a.log())
            }
        });
        ctl.wait_status(&a.node_id, "online");
        let log = a.log();
        assert_eq!(established(a), n + 1, "more than one reconnect: {log}");
        assert!(!log.contains("session lost"), "{log}");
        let bundle = std::fs::read_to_string(a.state.join("ca.crt")).unwrap();
        assert_eq!(certs_in(&bundle), 2, "{bundle}");
    }
    assert_eq!(
        node_cas(&ctl)
            .iter()
            .filter(|(_, c)| c == "previous")
            .count(),
        1
    );
    for a in &agents {
        ping(&ctl, &a.hostname);
    }

    // During the overlap a node joins with either pin, and an old-CA credential still works.
    for (host, pin) in [("old-pin", ctl.pin.as_str()), ("new-pin", new_pin.as_str())] {
        let j = Agent::new(host);
        let token = ctl.token("gluu-node");
        let o = j.join_output(&ctl.addr, &token, pin, &[]);
        assert!(o.status.success(), "join with {pin}: {}", text(&o.stderr));
        let ca = std::fs::read_to_string(j.state.join("ca.crt")).unwrap();
        assert_eq!(certs_in(&ca), 2);
        on_current_ca(&ctl, host).unwrap();
    }
    let mixed_path = ctl.dir.path().join("old-cert.toml");
    ClientBundle {
        ca_pem: admin.ca_pem.clone(),
        ..old_admin.clone()
    }
    .save(&mixed_path)
    .unwrap();
    let mixed = mixed_path.to_str().unwrap();
    assert!(ctl.cli_ok(&["--config", mixed, "whoami"]).contains("admin"));

    // The overlap survives a controller restart.
    ctl.stop();
    ctl.start(&[]);
    assert_eq!(ctl.json(&["ca", "status"])["overlap"], true);
    for a in &agents {
        ctl.wait_status(&a.node_id, "online");
    }

    // Retiring is refused while a node has only a certificate from the previous CA.
    let o = ctl.cli(&["ca", "rotate", "--finish"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("late") && err.contains("--force"), "{err}");

    // The late agent is told to renew when its session starts.
    late.start();
    ctl.wait_status(&late.node_id, "online");
    eventually(Duration::from_secs(30), "late agent on the new CA", || {
        on_current_ca(&ctl, "late")
    });
    ctl.wait_status(&late.node_id, "online");

    ctl.cli_ok(&["ca", "rotate", "--finish"]);
    let s = ctl.json(&["ca", "status"]);
    assert_eq!(s["overlap"], false, "{s}");
    assert_eq!(s["cas"].as_array().unwrap().len(), 1, "{s}");
    assert!(node_cas(&ctl).iter().all(|(_, c)| c == "current"), "{s}");
    // A certificate from the retired CA is refused.
    let o = ctl.cli(&["--config", mixed, "whoami"]);
    assert!(
        !o.status.success(),
        "old-CA credential accepted after retiring"
    );
    // The old pin no longer leads to this controller.
    let j = Agent::new("too-late");
    let o = j.join_output(&ctl.addr, &ctl.token("gluu-node"), &ctl.pin, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("does not match --ca-pin"),
        "{}",
        text(&o.stderr)
    );

    // Jobs still run, over the sessions and over new connections.
    for a in agents.iter().chain([&late]) {
        ctl.wait_status(&a.node_id, "online");
        ping(&ctl, &a.hostname);
    }
    agents[0].stop();
    agents[0].start();
    ctl.wait_status(&agents[0].node_id, "online");
    ping(&ctl, "rot0");
    let audit = ctl.cli_ok(&["audit"]);
    assert!(
        audit.contains("ca.rotate")
            && audit.contains("ca.retire")
            && audit.contains("operator.renew"),
        "{audit}"
    );
}

/// The DNS names of the certificate the controller presents to a new connection.
fn served_names(addr: &str) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName"
        ))
        .output()
        .expect("run openssl");
    text(&o.stdout)
}

#[test]
fn the_server_certificate_is_renewed_without_a_restart_and_admin_access_is_recovered_offline() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let pid = ctl.pid();
    let before = served_names(&ctl.addr);
    assert!(before.contains("localhost"), "{before}");
    assert!(!before.contains("renewed.example"), "{before}");
    let o = ctl.cli(&["ca", "renew-server", "--san", "renewed.example"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("no restart needed"),
        "{}",
        text(&o.stderr)
    );
    let after = served_names(&ctl.addr);
    assert!(
        after.contains("renewed.example") && after.contains("localhost"),
        "{after}"
    );
    assert_eq!(ctl.pid(), pid);
    assert!(ctl.cli_ok(&["whoami"]).contains("admin"));
    assert!(ctl.cli_ok(&["audit"]).contains("ca.renew-server"));

    // Recovery needs the store, which the running controller locks.
    let o = ctl.cli(&["operator", "recover"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("running"), "{}", text(&o.stderr));

    ctl.stop();
    std::fs::remove_file(ctl.data.join("admin.toml")).unwrap();
    let o = ctl.cli(&["operator", "recover"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // `start` waits for `whoami` with the recovered credential.
    ctl.start(&[]);
    assert!(ctl.cli_ok(&["whoami"]).contains("admin"));
    let audit = ctl.json(&["audit"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "operator.recover" && e["result"] == "ok"),
        "{audit}"
    );
    // A second admin can be recovered under another name; a viewer cannot be turned into one.
    let out = ctl.dir.path().join("ops.toml");
    ctl.cli_ok(&[
        "operator",
        "create",
        "watcher",
        "--role",
        "viewer",
        "--out",
        out.to_str().unwrap(),
    ]);
    ctl.stop();
    let o = ctl.cli(&["operator", "recover", "--name", "watcher"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("viewer"), "{}", text(&o.stderr));
}
