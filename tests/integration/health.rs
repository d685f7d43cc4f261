//! Service health: the agents check what the controller names on the cluster's LDAP check
//! period; `clustermgr status` shows each service and its last change, and a service that
//! stops and starts again (a unit of the node's Gluu machine) leaves a down and an up event.

use crate::gluu_cluster::{Cluster, HTTPS_PORT};
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

    // The web tier stops (the machine's own systemctl): oxauth and identity go down, the
    // directory stays up.
    let node = &c.nodes[0];
    node.systemctl(&["stop", "identity", "oxauth"]);
    let s = wait(
        &[("oxauth", "down"), ("identity", "down"), ("ldap", "up")],
        "the web tier down",
    );
    let detail = service(&s, &host, "oxauth").unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("connect"), "why it is down: {detail}");
    node.systemctl(&["start", "oxauth", "identity"]);
    wait(&[("oxauth", "up"), ("identity", "up")], "the web tier back");
    let oxauth_changes = |s: &serde_json::Value| -> Vec<String> {
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["service"] == "oxauth")
            .map(|e| e["state"].as_str().unwrap().to_string())
            .collect()
    };
    // An event is stored after the state it records changed: read until the last one is there.
    let s = eventually(Duration::from_secs(30), "oxauth's up event", || {
        let now = c.ctl.json(&["status", "--events", "100"]);
        if oxauth_changes(&now).len() >= 3 {
            Ok(now)
        } else {
            Err(format!("{now}"))
        }
    });
    assert_eq!(oxauth_changes(&s), vec!["up", "down", "up"], "{s}");

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
    crate::gluu_cluster::assert_no_secret("status and audit", &all);
    crate::gluu_cluster::assert_no_secret("the agent's log", &c.nodes[0].agent.log());
}

/// The latest value of `ldap_operations_total{op=OP}` in `clustermgr metrics NODE --metric ldap`.
fn ldap_ops(c: &Cluster, host: &str, op: &str) -> Option<f64> {
    let r = c
        .ctl
        .json(&["metrics", host, "--metric", "ldap", "--since", "1m"]);
    r["series"].as_array()?.iter().find(|s| {
        s["name"] == "ldap_operations_total" && s["labels"] == format!("op=\"{op}\"").as_str()
    })?["points"]
        .as_array()?
        .last()?["value"]
        .as_f64()
}

#[test]
fn the_directory_operation_counters_are_metrics_and_grow() {
    use crate::gluu_cluster::{address, password_file};
    let mut c = Cluster::new(1, HTTPS_PORT);
    let out = c.ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Sampling every second (15 s by default).
    c.nodes[0].agent.stop();
    c.nodes[0].agent.start_with(&["--metrics-interval", "1s"]);
    let host = c.nodes[0].agent.hostname.clone();
    let (bind0, add0) = eventually(Duration::from_secs(60), "directory counters", || {
        match (ldap_ops(&c, &host, "bind"), ldap_ops(&c, &host, "add")) {
            (Some(b), Some(a)) => Ok((b, a)),
            _ => Err(c
                .ctl
                .cli_ok(&["metrics", &host, "--metric", "ldap", "--since", "1m"])),
        }
    });
    // Two entries added and five binds, with the OpenLDAP client tools.
    let addr = address(&c.nodes[0]).to_string();
    let ldap = |tool: &str, stdin: Option<&str>| {
        use std::io::Write;
        let mut child = Command::new(tool)
            .args(["-x", "-H", &format!("ldaps://{addr}:1636"), "-D"])
            .arg("cn=directory manager")
            .arg("-y")
            .arg(password_file())
            .env("LDAPTLS_REQCERT", "never")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{tool}: {}", text(&o.stderr));
    };
    for uid in ["counted1", "counted2"] {
        ldap(
            "ldapadd",
            Some(&format!(
                "dn: uid={uid},ou=people,o=gluu\nobjectClass: top\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: test\n"
            )),
        );
    }
    for _ in 0..5 {
        ldap("ldapwhoami", None);
    }
    eventually(Duration::from_secs(30), "the counters grown", || {
        match (ldap_ops(&c, &host, "bind"), ldap_ops(&c, &host, "add")) {
            (Some(b), Some(a)) if a >= add0 + 2.0 && b >= bind0 + 7.0 => Ok(()),
            other => Err(format!("bind {bind0} add {add0} at first, now {other:?}")),
        }
    });
    // In the Prometheus exposition's vocabulary (the controller describes it).
    let r = c
        .ctl
        .json(&["metrics", &host, "--metric", "ldap_operations_total"]);
    let ops: Vec<&str> = r["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["labels"].as_str())
        .collect();
    for op in [
        "op=\"bind\"",
        "op=\"search\"",
        "op=\"add\"",
        "op=\"modify\"",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
}
