//! Rolling agent upgrades in the world of booted systemd machines: three machines run the
//! agent installed from this build's .deb (as an operator installs it), then
//! `clustermgr agent upgrade` rolls a build with a bumped version onto them one node at a time
//! (each node's new agent online from the new package before the next starts); then a build
//! whose agent cannot start is rolled: the first node's upgrade is rolled back on the node (its
//! previous package reinstalled, its agent online again) and the roll stops there.
//!
//! The bumped builds are this build's .deb repacked with another version (and, for the broken
//! one, a program that exits 1 in place of the agent).

use super::{Debs, build_debs};
use clustermgr_tests::booted::{Machine, ONLINE, base_root};
use clustermgr_tests::{Controller, eventually};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long a node's new agent has to come online.
const ONLINE_WITHIN: &str = "20s";
/// Upper bound for a whole roll (three machines; each install and restart takes seconds).
const ROLL: Duration = Duration::from_secs(300);

/// The package version dpkg has installed in the machine.
fn installed(m: &Machine) -> String {
    m.ok(&["dpkg-query", "-W", "-f=${Version}", "clustermgr-agent"])
}

fn node_of<'a>(nodes: &'a Value, id: &str) -> &'a Value {
    nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["id"] == id))
        .unwrap_or_else(|| panic!("node {id} not listed: {nodes}"))
}

/// Waits until the node is online with its agent started from `version`.
fn wait_running(ctl: &Controller, id: &str, version: &str) {
    eventually(ONLINE, &format!("{id} online from {version}"), || {
        let nodes = ctl.json(&["node", "list"]);
        let n = node_of(&nodes, id);
        if n["status"] == "online" && n["agent_package_version"] == version {
            Ok(())
        } else {
            Err(format!("{} {}", n["status"], n["agent_package_version"]))
        }
    });
}

/// What the machines' journals say about the agent and its upgrades (for a failure's message).
fn journals(machines: &[Machine]) -> String {
    machines
        .iter()
        .map(|m| {
            let o = m.exec(&[
                "journalctl",
                "--no-pager",
                "-n",
                "60",
                "-u",
                "clustermgr-agent",
                "-u",
                "clustermgr-agent-upgrade",
            ]);
            format!(
                "--- {}\n{}",
                m.path("/").display(),
                o.map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                    .unwrap_or_else(|e| e)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts `agent upgrade` detached and waits for the workflow's end; returns its record.
fn roll(
    ctl: &Controller,
    machines: &[Machine],
    package: &Path,
    nodes: &[&str],
) -> (Value, Duration) {
    let pkg = package.display().to_string();
    let mut args = vec![
        "agent",
        "upgrade",
        "--package",
        &pkg,
        "--timeout",
        ONLINE_WITHIN,
        "--detach",
        "--nodes",
    ];
    args.extend_from_slice(nodes);
    let started = Instant::now();
    let id = ctl.cli_ok(&args).trim().to_string();
    // `workflow watch` returns when the workflow has ended.
    let mut watch = Command::new(clustermgr_tests::clustermgr_bin())
        .arg("--data-dir")
        .arg(&ctl.data)
        .args(["workflow", "watch", &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("workflow watch");
    let deadline = Instant::now() + ROLL;
    while watch.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = watch.kill();
            let _ = watch.wait();
            let w = ctl.json(&["workflow", "show", &id]);
            panic!(
                "the agent-upgrade workflow did not end within {ROLL:?}: {w:#}\n{}",
                journals(machines)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (ctl.json(&["workflow", "show", &id]), started.elapsed())
}

fn step<'a>(wf: &'a Value, node: &str, name: &str) -> &'a Value {
    wf["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["node_id"] == node))
        .and_then(|n| n["steps"].as_array())
        .and_then(|ss| ss.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name} of {node}: {wf}"))
}

#[test]
fn agents_roll_to_a_new_package_one_node_at_a_time_and_a_broken_one_is_rolled_back() {
    clustermgr_tests::machine::require_prerequisites();
    let base = base_root();
    let debs: Debs = build_debs();
    let up = format!("{VERSION}+up1");
    let broken = format!("{VERSION}+up2");
    let dir = tempfile::tempdir().expect("tempdir");
    let up_deb = dir.path().join(format!("clustermgr-agent_{up}.deb"));
    let broken_deb = dir.path().join(format!("clustermgr-agent_{broken}.deb"));
    clustermgr_tests::booted::repack(&debs.agent, &up_deb, &up, false);
    clustermgr_tests::booted::repack(&debs.agent, &broken_deb, &broken, true);

    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut machines = Vec::new();
    let mut ids = Vec::new();
    for s in ["a", "b", "c"] {
        let mut m = Machine::new(&base, &format!("cmup{}{s}", std::process::id()));
        m.boot();
        std::fs::copy(&debs.agent, m.path("/root/clustermgr-agent.deb")).expect("copy in");
        m.ok(&["dpkg", "-i", "/root/clustermgr-agent.deb"]);
        let id = m.join(&ctl);
        m.ok(&["systemctl", "enable", "--now", "clustermgr-agent"]);
        wait_running(&ctl, &id, VERSION);
        machines.push(m);
        ids.push(id);
    }
    let ids_ref: Vec<&str> = ids.iter().map(String::as_str).collect();

    // The roll to the bumped build.
    let (wf, took) = roll(&ctl, &machines, &up_deb, &ids_ref);
    eprintln!(
        "timing: 3-node rolling agent upgrade ({VERSION} -> {up}) in {:.1} s",
        took.as_secs_f64()
    );
    assert_eq!(wf["status"], "succeeded", "{wf:#}\n{}", journals(&machines));
    for (m, id) in machines.iter().zip(&ids) {
        wait_running(&ctl, id, &up);
        assert_eq!(installed(m), up);
        m.ok(&["systemctl", "is-active", "clustermgr-agent"]);
        // The node kept the package it had.
        let kept = m.ok(&[
            "dpkg-deb",
            "-f",
            "/var/lib/clustermgr-agent/upgrade/previous.deb",
            "Version",
        ]);
        assert_eq!(kept.trim(), VERSION);
        assert_eq!(step(&wf, id, "upgrade")["status"], "succeeded");
    }
    // One node at a time: each upgrade started after the one before it had ended.
    for w in ids.windows(2) {
        let before = step(&wf, &w[0], "upgrade")["finished_unix_ms"]
            .as_u64()
            .expect("finished");
        let after = step(&wf, &w[1], "upgrade")["started_unix_ms"]
            .as_u64()
            .expect("started");
        assert!(after >= before, "{} started before {} ended", w[1], w[0]);
    }

    // A build whose agent cannot start: the first node gets its package back, the roll stops.
    let (wf, took) = roll(&ctl, &machines, &broken_deb, &ids_ref);
    eprintln!(
        "timing: a failed upgrade rolled back in {:.1} s (new agent given {ONLINE_WITHIN})",
        took.as_secs_f64()
    );
    assert_eq!(wf["status"], "failed", "{wf:#}\n{}", journals(&machines));
    let first = step(&wf, &ids[0], "upgrade");
    let error = first["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "the new agent ({broken}) did not come online within 20s"
        )) && error.contains(&format!("clustermgr-agent {up} was reinstalled")),
        "{error}"
    );
    let wf_error = wf["error"].as_str().unwrap_or_default();
    assert!(wf_error.contains("step upgrade failed"), "{wf_error}");
    wait_running(&ctl, &ids[0], &up);
    assert_eq!(installed(&machines[0]), up, "the previous package is back");
    for (m, id) in machines.iter().zip(&ids).skip(1) {
        assert_eq!(step(&wf, id, "upgrade")["status"], "failed");
        assert!(
            step(&wf, id, "upgrade")["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("not upgraded: the roll stopped at"),
            "{wf:#}"
        );
        assert_eq!(installed(m), up, "{id} was not touched");
    }
    // What the node's journal says about the rollback.
    let journal = machines[0].ok(&["journalctl", "--no-pager", "-u", "clustermgr-agent-upgrade"]);
    assert!(journal.contains(&format!("reinstalling {up}")), "{journal}");
}
