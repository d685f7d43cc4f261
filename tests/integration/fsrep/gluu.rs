//! Gluu's own tree: a node without Gluu (or not set up yet) says so and replicates nothing,
//! then catches up inside its container once Gluu is set up; an action restarts the unit of the
//! node's running Gluu machine, once per burst, through a gluu-restart workflow of that node
//! (drained when there is a balancer), never by the node on its own.

use super::{CONF, CONTAINER, Cluster, IDP, WAIT, gluu_installed, read, set_up, wait_content};
use clustermgr_tests::{Agent, Controller, eventually, machine, standin_deb, text};
use std::time::Duration;

#[test]
fn a_change_under_an_action_pattern_restarts_the_machine_s_unit_once() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    // Node 1 has Gluu's files; node 2 runs the Gluu machine (the stand-in package booted it).
    let mut a1 = Agent::new("gluu1.fsrepact.test");
    gluu_installed(&a1.root);
    let mut a2 = Agent::gluu_host("gluu2.fsrepact.test");
    machine::dpkg_install(&a2.root, &standin_deb());
    set_up(&a2.root);
    // A unit of the machine's own systemd that counts its restarts.
    let unit = a2
        .root
        .join(CONTAINER)
        .join("etc/systemd/system/fsrep-probe.service");
    std::fs::write(
        &unit,
        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo restarted >> /var/tmp/fsrep-probe'\n",
    )
    .unwrap();
    eventually(Duration::from_secs(60), "node 2's machine booted", || {
        let o = machine::systemctl(&a2.root, &["is-system-running"])?;
        match text(&o.stdout).trim() {
            "running" | "degraded" => Ok(()),
            s => Err(format!("{s} {}", text(&o.stderr))),
        }
    });
    let o = machine::systemctl(&a2.root, &["daemon-reload"]).unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let restarts = a2.root.join(CONTAINER).join("var/tmp/fsrep-probe");
    for a in [&mut a1, &mut a2] {
        a.join(&ctl, "gluu-node");
        a.start();
    }
    for a in [&a1, &a2] {
        ctl.wait_status(&a.node_id, "online");
        ctl.cli_ok(&["server", "add", &a.hostname]);
    }
    let pattern = format!("/{IDP}/**");
    for svc in ["idp", "identity"] {
        ctl.cli_ok(&["fsrep", "actions", "remove", svc]);
    }
    ctl.cli_ok(&[
        "fsrep",
        "actions",
        "add",
        "--pattern",
        &pattern,
        "--service",
        "fsrep-probe",
    ]);
    ctl.cli_ok(&["fsrep", "enable"]);
    let c = Cluster {
        ctl,
        nodes: vec![a1, a2],
    };
    c.wait_connected(2);
    // A burst of files under the pattern on node 1.
    std::fs::create_dir_all(c.path(0, IDP)).unwrap();
    for i in 0..5 {
        std::fs::write(c.path(0, &format!("{IDP}/attr{i}.xml")), format!("<a{i}/>")).unwrap();
    }
    wait_content(&c, &[1], &format!("{IDP}/attr4.xml"), Some("<a4/>"));
    eventually(WAIT, "the action reported", || {
        let n = c.node_status(1);
        let runs = n["action_runs"].as_array().cloned().unwrap_or_default();
        if runs.len() == 1 {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    let n = c.node_status(1);
    assert_eq!(n["action_runs"][0]["service"], "fsrep-probe", "{n}");
    assert_eq!(n["action_runs"][0]["error"], "", "{n}");
    // The node asked; the controller restarts the unit in a gluu-restart workflow of node 2
    // alone (its drain and rejoin steps around it), by the machine's own systemd (the unit
    // wrote inside the container), once.
    let node2 = c.nodes[1].node_id.clone();
    let (wf, on) = eventually(WAIT, "the gluu-restart workflow's restart done", || {
        let list = c.ctl.json(&["workflow", "list", "--limit", "20"]);
        let Some(id) = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| w["kind"] == "gluu-restart")
            .and_then(|w| w["id"].as_str())
        else {
            return Err(list.to_string());
        };
        let wf = c.ctl.json(&["workflow", "show", id]);
        let node = &wf["nodes"][0];
        let restart = node["steps"]
            .as_array()
            .and_then(|ss| ss.iter().find(|s| s["name"] == "restart"))
            .cloned()
            .unwrap_or_default();
        if restart["status"] == "succeeded" {
            Ok((wf.clone(), node["node_id"].clone()))
        } else {
            Err(wf.to_string())
        }
    });
    assert_eq!(on, node2.as_str(), "{wf}");
    assert_eq!(wf["nodes"].as_array().map(Vec::len), Some(1), "{wf}");
    let steps: Vec<&str> = wf["nodes"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(steps, ["drain", "restart", "web-ready", "rejoin"], "{wf}");
    assert_eq!(read(&restarts).as_deref(), Some("restarted\n"));
    // Files outside the pattern restart nothing: once the write is acknowledged, no action is
    // pending (a matching write says so before its acknowledgement).
    std::fs::create_dir_all(c.path(0, CONF)).unwrap();
    std::fs::write(c.path(0, &format!("{CONF}/other")), "o").unwrap();
    wait_content(&c, &[1], &format!("{CONF}/other"), Some("o"));
    eventually(WAIT, "the write acknowledged, no action pending", || {
        let n = c.node_status(1);
        if n["queued"] == 0 && n["behind"] == 0 && n["actions_pending"] == false {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    assert_eq!(read(&restarts).unwrap_or_default().lines().count(), 1);
    // Another write under the pattern within the action interval (60 s by default): the restart
    // waits for the interval's end, whatever else comes meanwhile joining it; the status says so.
    std::fs::write(c.path(0, &format!("{IDP}/attr0.xml")), "<again/>").unwrap();
    wait_content(&c, &[1], &format!("{IDP}/attr0.xml"), Some("<again/>"));
    eventually(WAIT, "the restart deferred", || {
        let n = c.node_status(1);
        let deferred = n["capped"]
            .to_string()
            .contains("fsrep-probe: restart deferred");
        if deferred && n["actions_pending"] == true {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    assert_eq!(read(&restarts).unwrap_or_default().lines().count(), 1);
}

#[test]
fn a_node_without_gluu_says_so_and_replicates_once_gluu_is_set_up() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a1 = Agent::new("gluu1.fsrepnone.test");
    gluu_installed(&a1.root);
    let mut a2 = Agent::new("gluu2.fsrepnone.test");
    // The host's own /etc/gluu/conf is not Gluu's: never watched.
    std::fs::create_dir_all(a2.root.join(CONF)).unwrap();
    for a in [&mut a1, &mut a2] {
        a.join(&ctl, "gluu-node");
        a.start();
    }
    for a in [&a1, &a2] {
        ctl.wait_status(&a.node_id, "online");
        ctl.cli_ok(&["server", "add", &a.hostname]);
    }
    ctl.cli_ok(&["fsrep", "enable"]);
    let c = Cluster {
        ctl,
        nodes: vec![a1, a2],
    };
    c.wait_connected(2);
    eventually(WAIT, "node 2 says Gluu is missing", || {
        let n = c.node_status(1);
        if n["inactive"]
            .as_str()
            .is_some_and(|s| s.contains("not installed"))
        {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    std::fs::create_dir_all(c.path(0, CONF)).unwrap();
    std::fs::write(c.path(0, &format!("{CONF}/a.properties")), "a").unwrap();
    std::fs::write(c.nodes[1].root.join(CONF).join("host.properties"), "h").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(!c.nodes[1].root.join(CONF).join("a.properties").exists());
    // Installed but not set up: still nothing, and the status says that.
    let units = c.nodes[1].root.join("lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("systemd-nspawn@gluu-server.service"), "").unwrap();
    let setup = c.nodes[1]
        .root
        .join(CONTAINER)
        .join("install/community-edition-setup");
    std::fs::create_dir_all(&setup).unwrap();
    std::fs::write(setup.join("setup.py"), "").unwrap();
    eventually(WAIT, "node 2 waits for setup", || {
        let n = c.node_status(1);
        if n["inactive"]
            .as_str()
            .is_some_and(|s| s.contains("not set up yet"))
        {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    // Set up: it catches up inside its container, and the host's file stays its own.
    set_up(&c.nodes[1].root);
    wait_content(&c, &[1], &format!("{CONF}/a.properties"), Some("a"));
    let n = c.node_status(1);
    assert_eq!(n["inactive"], "", "{n}");
    assert!(read(&c.path(0, &format!("{CONF}/host.properties"))).is_none());
}
