//! Gluu Server 4.2.3 as a systemd-nspawn machine, as the stand-in models it: after the install
//! the Gluu units are active under the machine's own systemd; a host `chroot` into the
//! container (how the product drove Gluu before) cannot start them; and a node whose machine is
//! restarted while clients go through the load balancer heals without an operator.

use super::gluu_cluster::{Cluster, HTTPS_PORT, Node, address, ldaps_bind, password_file};
use super::lb::{LbHost, get, identity_node};
use clustermgr_tests::{eventually, machine, text};
use serde_json::Value;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn installed(n: usize) -> Cluster {
    let c = Cluster::new(n, HTTPS_PORT);
    c.ctl
        .cli_ok(&["cluster", "configure", "--ldap-check-period", "10s"]);
    let out = c.ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    c
}

/// Nothing of the node's Gluu answers: no machine process, LDAPS and HTTPS refuse.
fn assert_all_down(node: &Node, what: &str) {
    let host = &node.agent.hostname;
    assert_eq!(machine::leader(node.root()), None, "{host} {what}");
    let left = machine::processes(node.root());
    assert!(left.is_empty(), "{host} {what}: processes {left:?}");
    for port in [1636, HTTPS_PORT.parse().unwrap()] {
        assert!(
            std::net::TcpStream::connect((address(node), port)).is_err(),
            "{host} {what}: port {port} answers"
        );
    }
}

#[test]
fn the_machine_runs_gluu_and_a_host_chroot_cannot_start_its_directory() {
    let c = installed(1);
    let node = &c.nodes[0];
    let root = node.root();
    let container = machine::container(root);

    // After the install: the Gluu units are active under the machine's own systemd, whose
    // PID 1 is not the host's.
    node.wait_services_active();
    ldaps_bind(address(node)).unwrap();
    let leader = machine::leader(root).expect("a running machine");
    assert_ne!(leader, 1);
    let pid1 = machine::exec(root, &["cat", "/proc/1/comm"]).unwrap();
    assert_eq!(text(&pid1.stdout).trim(), "systemd");

    // gluu-serverd stop powers the machine off: every Gluu service stops with it.
    node.serverd("stop");
    assert_all_down(node, "after gluu-serverd stop");
    let status = machine::serverd(root, "status");
    assert_eq!(status.status.code(), Some(3), "{}", text(&status.stdout));

    // Today's way through a host chroot: the container's systemctl cannot reach a systemd
    // (in a chroot it ignores the command or finds no bus), whatever it exits with, and
    // 4.2.3 has no init script for the directory.
    let chroot_systemctl = Command::new("chroot")
        .arg(&container)
        .args(["systemctl", "start", "opendj"])
        .output()
        .unwrap();
    eprintln!(
        "chroot systemctl start opendj: exit {:?}: {}{}",
        chroot_systemctl.status.code(),
        text(&chroot_systemctl.stdout).trim(),
        text(&chroot_systemctl.stderr).trim()
    );
    let initd = Command::new("chroot")
        .arg(&container)
        .args(["/etc/init.d/opendj", "start"])
        .output()
        .unwrap();
    assert!(!initd.status.success(), "{}", text(&initd.stdout));
    assert!(!container.join("etc/init.d/opendj").exists());
    assert_all_down(node, "after the chroot attempts");
    assert!(ldaps_bind(address(node)).is_err());

    // The machine's way: gluu-serverd start boots it and its systemd starts the units setup
    // enabled; nobody starts a service by hand.
    node.serverd("start");
    node.wait_services_active();
    eventually(Duration::from_secs(30), "the directory answers", || {
        ldaps_bind(address(node))
    });
    assert_ne!(machine::leader(root), Some(leader), "a new machine");
}

/// An OpenLDAP client tool against `node` as the directory manager.
fn ldap(tool: &str, node: &Node, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    super::replication::ldap(tool, node, args, stdin)
}

fn person(uid: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,o=gluu\nobjectClass: top\nobjectClass: inetOrgPerson\n\
         uid: {uid}\ncn: {uid}\nsn: test\n"
    )
}

/// The node's service `svc` as the latest `clustermgr status` round reported it.
fn service(s: &Value, host: &str, svc: &str) -> Option<Value> {
    s["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["hostname"] == host)?["services"]
        .as_array()?
        .iter()
        .find(|x| x["service"] == svc)
        .cloned()
}

#[test]
fn a_node_whose_machine_restarts_under_traffic_heals_without_an_operator() {
    let c = installed(2);
    let ctl = &c.ctl;
    let out = ctl.cli(&["replication", "deploy", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lb = LbHost::join(ctl, "lb.cluster.test");
    let out = ctl.cli(&["lb", "install"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (first, second) = (&c.nodes[0], &c.nodes[1]);
    let lb_addr = lb.agent.address.clone();
    let ca = first.inside("/etc/certs/httpd.crt");

    // Clients the balancer keeps on the second node (/identity sticks by client address).
    let on_second: Vec<String> = (1..=16)
        .map(|k| format!("127.200.{k}.1"))
        .filter(|s| {
            eventually(Duration::from_secs(20), "/identity answers", || {
                identity_node(&ca, &lb_addr, s)
            }) == address(second)
        })
        .collect();
    assert!(!on_second.is_empty(), "no client on the second node");

    // Traffic all along: discovery through the balancer and a write on the first node's
    // directory, one round every 100 ms, until the node has healed.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, ca, lb_addr) = (stop.clone(), ca.clone(), lb_addr.clone());
        let first_addr = address(first).to_string();
        std::thread::spawn(move || {
            let (mut codes, mut uids) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let (code, _) = get(
                    &ca,
                    &lb_addr,
                    "127.0.0.1",
                    "/.well-known/openid-configuration",
                );
                codes.push(code);
                let uid = format!("during-{}", uids.len());
                if add_on(&first_addr, &person(&uid)).is_ok() {
                    uids.push(uid);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (codes, uids)
        })
    };

    let workflows_before = workflow_ids(ctl);
    let before = machine::leader(second.root()).expect("the second node's machine");
    let restarted = machine::serverd(second.root(), "restart");
    assert!(
        restarted.status.success(),
        "gluu-serverd restart: {}{}",
        text(&restarted.stdout),
        text(&restarted.stderr)
    );
    assert_ne!(
        machine::leader(second.root()),
        Some(before),
        "a new machine"
    );

    // Services back: under the machine's systemd, and in the agents' first check round that
    // ends after the restart (its `checked` differs from what the status said then).
    second.wait_services_active();
    let host = second.agent.hostname.clone();
    let checked = |s: &Value, svc: &str| service(s, &host, svc).map(|v| v["checked"].clone());
    let seen = ctl.json(&["status"]);
    eventually(Duration::from_secs(60), "the agents see it up", || {
        let s = ctl.json(&["status"]);
        for svc in ["ldap", "oxauth", "identity"] {
            match service(&s, &host, svc) {
                Some(v) if v["state"] == "up" && checked(&s, svc) != checked(&seen, svc) => {}
                other => return Err(format!("{svc}: {other:?}")),
            }
        }
        Ok(())
    });
    // The load balancer sends its clients to it again.
    for source in &on_second {
        eventually(
            Duration::from_secs(60),
            "back on the second node",
            || match identity_node(&ca, &lb_addr, source) {
                Ok(n) if n == address(second) => Ok(()),
                other => Err(format!("{source}: {other:?}")),
            },
        );
    }
    eventually(Duration::from_secs(60), "the balancer healthy", || {
        let st = ctl.json(&["lb", "status"]);
        let backends = st["nginx"]["backends"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if st["healthy"] == true
            && backends.len() == 2
            && backends.iter().all(|b| b["healthy"] == true)
        {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
    stop.store(true, Ordering::SeqCst);
    let (codes, uids) = traffic.join().unwrap();

    // Replication caught up: every entry written on the first node, those written while the
    // second node's machine was down included, is on the second; and it replicates outwards.
    assert!(uids.len() >= 10, "{} writes", uids.len());
    for uid in &uids {
        eventually(
            Duration::from_secs(60),
            "replicated to the second node",
            || {
                let found = ldap(
                    "ldapsearch",
                    second,
                    &["-LLL", "-b", "o=gluu", &format!("(uid={uid})"), "uid"],
                    None,
                )?;
                if found.contains(uid.as_str()) {
                    Ok(())
                } else {
                    Err(format!("{uid} missing"))
                }
            },
        );
    }
    ldap("ldapadd", second, &[], Some(&person("after-restart"))).unwrap();
    eventually(
        Duration::from_secs(30),
        "replicated from the second node",
        || {
            let found = ldap(
                "ldapsearch",
                first,
                &["-LLL", "-b", "o=gluu", "(uid=after-restart)", "uid"],
                None,
            )?;
            if found.contains("after-restart") {
                Ok(())
            } else {
                Err("missing".into())
            }
        },
    );

    // Clients of the balancer never saw the restart.
    let failed: Vec<&String> = codes.iter().filter(|c| *c != "200").collect();
    eprintln!(
        "through the balancer during the restart: {} requests, {} failed",
        codes.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    // It healed by itself: no workflow was started after the restart.
    assert_eq!(workflow_ids(ctl), workflows_before, "a workflow ran");
}

/// The ids of every workflow the controller has.
fn workflow_ids(ctl: &clustermgr_tests::Controller) -> Vec<String> {
    let mut v: Vec<String> = ctl
        .json(&["workflow", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

/// An ldapadd on the directory at `addr` (the cluster's password).
pub(crate) fn add_on(addr: &str, ldif: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ldapadd")
        .args(["-x", "-H", &format!("ldaps://{addr}:1636"), "-D"])
        .arg("cn=directory manager")
        .arg("-y")
        .arg(password_file())
        .env("LDAPTLS_REQCERT", "never")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut w) = child.stdin.take() {
        w.write_all(ldif.as_bytes()).map_err(|e| e.to_string())?;
    }
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(text(&o.stderr))
    }
}
