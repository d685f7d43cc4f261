//! /etc/hosts: the cluster's hostnames in a marked block of every node's hosts file, kept up to
//! date after server add and remove, everything outside the block untouched.

use clustermgr_tests::{Agent, Controller, eventually, text};
use std::time::Duration;

const MINE: &str =
    "127.0.0.1\tlocalhost\n# the operator's own comment\n10.9.9.9 printer # keep me\n";

#[test]
fn the_managed_block_follows_the_servers_and_keeps_everything_else() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let refused = ctl.cli(&["hosts", "apply"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("--manage-hosts"),
        "{}",
        text(&refused.stderr)
    );
    let mut agents = Vec::new();
    for (name, role) in [
        ("gluu1.hosts.test", "gluu-node"),
        ("gluu2.hosts.test", "gluu-node"),
        ("lb.hosts.test", "lb"),
    ] {
        let mut a = Agent::new(name);
        std::fs::create_dir_all(a.root.join("etc")).unwrap();
        std::fs::write(a.root.join("etc/hosts"), MINE).unwrap();
        a.join(&ctl, role);
        a.start();
        agents.push(a);
    }
    for a in &agents {
        ctl.wait_status(&a.node_id, "online");
    }
    ctl.cli_ok(&[
        "cluster",
        "configure",
        "--manage-hosts",
        "--lb-hostname",
        "idp.hosts.test",
    ]);
    ctl.cli_ok(&["server", "add", "gluu1.hosts.test"]);
    ctl.cli_ok(&["server", "add", "gluu2.hosts.test"]);
    let hosts = |a: &Agent| std::fs::read_to_string(a.root.join("etc/hosts")).unwrap();
    for a in &agents {
        eventually(Duration::from_secs(20), "the block written", || {
            let h = hosts(a);
            let want = [
                format!("{}\tgluu1.hosts.test", agents[0].address),
                format!("{}\tgluu2.hosts.test", agents[1].address),
                format!("{}\tidp.hosts.test lb.hosts.test", agents[2].address),
            ];
            if want.iter().all(|w| h.contains(w.as_str())) {
                Ok(())
            } else {
                Err(h)
            }
        });
        let h = hosts(a);
        assert!(
            h.starts_with(MINE),
            "the operator's lines come first, untouched: {h}"
        );
        assert_eq!(h.matches("# BEGIN clustermgr").count(), 1, "{h}");
    }
    // Applying again changes nothing.
    let before: Vec<String> = agents.iter().map(hosts).collect();
    let out = ctl.cli(&["hosts", "apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after: Vec<String> = agents.iter().map(hosts).collect();
    assert_eq!(before, after);
    // Removing a server removes its line.
    ctl.cli_ok(&["server", "remove", "gluu2.hosts.test"]);
    eventually(Duration::from_secs(20), "gluu2's line gone", || {
        let h = hosts(&agents[0]);
        if h.contains("gluu2.hosts.test") {
            Err(h)
        } else {
            Ok(())
        }
    });
    assert!(hosts(&agents[0]).starts_with(MINE));
    // A dry run plans and writes nothing.
    let dry = ctl.cli(&["--output", "json", "hosts", "apply", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).contains("idp.hosts.test"),
        "{}",
        text(&dry.stdout)
    );
}
