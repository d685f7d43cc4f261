//! The controller's minimum agent version: an agent older than it is refused at session start
//! (the node shows `refused` in `node list` with the reason, the audit log has a
//! `session.refused` row, the agent logs the reason and keeps trying); with the minimum
//! lowered, the same agent comes online and the refusal is cleared.

use clustermgr_tests::{Agent, Controller, eventually};
use std::time::Duration;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const WAIT: Duration = Duration::from_secs(60);

#[test]
fn agents_older_than_the_minimum_are_refused_and_say_why() {
    let mut ctl = Controller::init();
    ctl.start(&["--min-agent-version", "99.0.0"]);
    let mut agent = Agent::new("old-agent");
    agent.join(&ctl, "gluu-node");
    agent.start();
    let id = agent.node_id.clone();
    let why = format!(
        "this agent ({VERSION}) is older than the controller's minimum agent version 99.0.0"
    );
    let node = eventually(WAIT, "the node refused", || {
        let nodes = ctl.json(&["node", "list"]);
        let n = nodes
            .as_array()
            .and_then(|a| a.iter().find(|n| n["id"] == id.as_str()))
            .cloned()
            .ok_or("not listed")?;
        if n["status"] == "refused" {
            Ok(n)
        } else {
            Err(format!("{n}"))
        }
    });
    assert!(
        node["refused"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&why),
        "{node}"
    );
    // The inventory of the refused session is kept: the operator sees which version it runs.
    assert_eq!(node["agent_version"], VERSION);
    let table = ctl.cli_ok(&["node", "list"]);
    assert!(
        table
            .lines()
            .any(|l| l.contains("old-agent") && l.contains("refused")),
        "{table}"
    );
    let audit = ctl.json(&["audit"]);
    assert!(
        audit
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["action"] == "session.refused"
                && e["target"] == id.as_str()
                && e["result"].as_str().unwrap_or_default().contains(&why))),
        "{audit}"
    );
    eventually(WAIT, "the agent's log", || {
        let log = agent.log();
        if log.contains(&why) {
            Ok(())
        } else {
            Err(log.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
        }
    });

    // The minimum lowered to this version: the agent, still trying, gets in.
    ctl.stop();
    ctl.start(&["--min-agent-version", VERSION]);
    // (the agent retries with a backoff of up to 30 s)
    eventually(WAIT, "the node online", || match ctl.node_status(&id) {
        Some(s) if s == "online" => Ok(()),
        other => Err(format!("status {other:?}")),
    });
    let nodes = ctl.json(&["node", "list"]);
    let n = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["id"] == id.as_str()))
        .expect("listed");
    assert!(n["refused"].is_null(), "{n}");
}
