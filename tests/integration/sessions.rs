//! Sessions: reconnection after a controller crash, offline detection, certificate renewal and
//! expiry while the agent was off.

use clustermgr_tests::{Agent, Controller, eventually, text};
use std::time::Duration;

#[test]
fn agent_reconnects_after_controller_sigkill_and_state_is_intact() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("survivor");
    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let ping = ctl.cli_ok(&["job", "run", "survivor", "ping"]);
    let job_id = ping
        .rsplit_once("(job ")
        .map(|(_, r)| r.trim().trim_end_matches(')').to_string())
        .unwrap();
    let before = ctl.json(&["job", "show", &job_id]);
    assert_eq!(before["state"], "succeeded");

    ctl.kill9();
    ctl.start(&[]);
    // Node list and job records survived; the agent comes back by itself.
    let nodes = ctl.json(&["node", "list"]);
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["id"], a.node_id);
    let after = ctl.json(&["job", "show", &job_id]);
    assert_eq!(after, before);
    ctl.wait_status(&a.node_id, "online");
    let again = ctl.cli_ok(&["job", "run", "survivor", "ping"]);
    assert!(again.contains("pong"), "{again}");
}

#[test]
fn a_stopped_agent_goes_offline_and_is_kept() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::new("sleepy");
    a.join(&ctl, "cache");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    a.stop();
    ctl.wait_status(&a.node_id, "offline");
    let o = ctl.cli(&["job", "run", "sleepy", "ping"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("not connected"),
        "{}",
        text(&o.stderr)
    );
    // Offline is never a reason to drop a node.
    assert_eq!(ctl.json(&["node", "list"]).as_array().unwrap().len(), 1);
    a.start();
    ctl.wait_status(&a.node_id, "online");
}

#[test]
fn certificates_are_renewed_over_the_session() {
    let mut ctl = Controller::init();
    // Short lifetime so that two thirds of it pass during the test, long enough that a loaded
    // machine still renews before the first certificate expires.
    ctl.start(&["--node-cert-ttl", "12s"]);
    let mut a = Agent::new("renewer");
    a.join(&ctl, "gluu-node");
    let joined = std::time::Instant::now();
    let first = a.identity_pem();
    let first_not_after = ctl.json(&["node", "show", &a.node_id])["certificate_not_after"].clone();
    a.start();
    ctl.wait_status(&a.node_id, "online");
    eventually(Duration::from_secs(20), "certificate renewed", || {
        if a.identity_pem() != first {
            Ok(())
        } else {
            Err("identity unchanged".into())
        }
    });
    assert!(a.identity_pem().contains("PRIVATE KEY"));
    eventually(
        Duration::from_secs(10),
        "controller knows the new expiry",
        || {
            let n = ctl.json(&["node", "show", &a.node_id]);
            if n["certificate_not_after"] != first_not_after {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        },
    );
    // After the first certificate expired (time has to pass here), a fresh connection with the
    // renewed one works.
    std::thread::sleep(Duration::from_secs(13).saturating_sub(joined.elapsed()));
    a.stop();
    a.start();
    ctl.wait_status(&a.node_id, "online");
    assert!(
        ctl.cli_ok(&["job", "run", "renewer", "ping"])
            .contains("pong")
    );
}

#[test]
fn an_agent_whose_certificate_expired_while_off_gets_a_clear_rejoin_path() {
    let mut ctl = Controller::init();
    ctl.start(&["--node-cert-ttl", "2s"]);
    let mut a = Agent::new("hibernated");
    a.join(&ctl, "gluu-node");
    // Off for longer than the certificate lives.
    std::thread::sleep(Duration::from_millis(2500));
    a.start();
    assert_eq!(a.wait_exit(Duration::from_secs(10)), Some(2));
    let log = a.log();
    assert!(log.contains("expired"), "{log}");
    assert!(log.contains("join --force"), "{log}");
    let token = ctl.token("gluu-node");
    let o = a.join_output(&ctl.addr, &token, &ctl.pin, &["--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn sigterm_ends_agent_sessions_and_the_controller_exits_promptly() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut agents: Vec<Agent> = (0..3).map(|i| Agent::new(&format!("n{i}"))).collect();
    for a in &mut agents {
        a.join(&ctl, "gluu-node");
        a.start();
    }
    for a in &agents {
        ctl.wait_status(&a.node_id, "online");
    }
    // Long-lived agent streams must not hold the shutdown up.
    let took = ctl.terminate_within(Duration::from_secs(8));
    assert!(
        took.is_some(),
        "the controller did not exit within 8 s of SIGTERM"
    );
    let log = std::fs::read_to_string(ctl.log_path()).unwrap();
    assert!(
        log.contains("shutting down") && log.contains("controller stopped"),
        "{log}"
    );
    ctl.start(&[]);
    for a in &agents {
        ctl.wait_status(&a.node_id, "online");
    }
}

#[test]
fn after_a_network_partition_the_node_goes_offline_and_the_agent_reconnects() {
    use clustermgr_tests::Partition;
    let mut ctl = Controller::init();
    ctl.start(&["--heartbeat-interval", "1s"]);
    let net = Partition::new(&ctl.addr);
    let mut a = Agent::new("partitioned");
    let token = ctl.token("gluu-node");
    // The agent knows the controller only through the relay.
    let o = a.join_output(&net.addr, &token, &ctl.pin, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    a.node_id = text(&o.stdout).trim().into();
    a.start_with(&["--keepalive", "1s"]);
    ctl.wait_status(&a.node_id, "online");

    net.cut();
    // The controller notices missed heartbeats; it marks the node offline and keeps it.
    ctl.wait_status(&a.node_id, "offline");
    eventually(
        Duration::from_secs(20),
        "agent notices the dead connection",
        || {
            if a.log().contains("session lost") {
                Ok(())
            } else {
                Err(a.log())
            }
        },
    );
    assert_eq!(ctl.json(&["node", "list"]).as_array().unwrap().len(), 1);

    net.heal();
    ctl.wait_status(&a.node_id, "online");
    assert!(
        ctl.cli_ok(&["job", "run", "partitioned", "ping"])
            .contains("pong")
    );
}
