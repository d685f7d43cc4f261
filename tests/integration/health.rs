//! Service health: the agents check what the controller names on the cluster's LDAP check
//! period; `clustermgr status` shows each service and its last change, and a service that
//! stops and starts again leaves a down and an up event.

use crate::gluu_install::{Cluster, HTTPS_PORT};
use clustermgr_tests::{eventually, text};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

fn service<'a>(s: &'a Value, host: &str, svc: &str) -> Option<&'a Value> {
    s["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["hostname"] == host)?["services"]
        .as_array()?
        .iter()
        .find(|x| x["service"] == svc)
}

#[test]
fn a_stopped_service_goes_down_and_comes_back_up_with_events() {
    let c = Cluster::new(1, HTTPS_PORT);
    c.ctl
        .cli_ok(&["cluster", "configure", "--ldap-check-period", "10s"]);
    let out = c.ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let host = c.nodes[0].agent.hostname.clone();
    let wait = |want: &[(&str, &str)], what: &str| -> Value {
        eventually(Duration::from_secs(40), what, || {
            let s = c.ctl.json(&["status", "--events", "100"]);
            for (svc, state) in want {
                match service(&s, &host, svc) {
                    Some(v) if v["state"] == *state => {}
                    _ => return Err(s.to_string()),
                }
            }
            Ok(s)
        })
    };
    let s = wait(
        &[("ldap", "up"), ("oxauth", "up"), ("identity", "up")],
        "every service up",
    );
    assert_eq!(s["period_ms"], 10_000);
    let node = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["hostname"] == host.as_str())
        .unwrap();
    assert_eq!(node["status"], "online");
    assert_eq!(node["role"], "gluu-node");

    // The web tier stops: oxauth and identity go down, the directory stays up.
    let init = |action: &str| {
        let root = &c.nodes[0].agent.root;
        let o = Command::new(root.join("opt/gluu-server/etc/init.d/oxauth"))
            .args([action, "--root"])
            .arg(root)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    init("stop");
    let s = wait(
        &[("oxauth", "down"), ("identity", "down"), ("ldap", "up")],
        "the web tier down",
    );
    let detail = service(&s, &host, "oxauth").unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("connect"), "why it is down: {detail}");
    init("start");
    let s = wait(&[("oxauth", "up"), ("identity", "up")], "the web tier back");
    let changes: Vec<String> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["service"] == "oxauth")
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(changes, vec!["up", "down", "up"], "{s}");

    // The people's form names the services and the events.
    let human = c.ctl.cli_ok(&["status"]);
    assert!(
        human.contains("oxauth") && human.contains("Recent events:"),
        "{human}"
    );
    // The directory password the checks use never shows.
    let all = format!(
        "{human}{}",
        c.ctl
            .cli_ok(&["--output", "json", "audit", "--limit", "1000"])
    );
    crate::gluu_install::assert_no_secret("status and audit", &all);
    crate::gluu_install::assert_no_secret("the agent's log", &c.nodes[0].agent.log());
}
