//! LDAP multi-master replication end to end: the Gluu stand-in installed on 3 nodes by the
//! install workflow, then `replication deploy`, real slapd syncrepl between them over LDAPS
//! verified against the nodes' certificates.

use super::gluu_cluster::{
    Cluster, HTTPS_PORT, Node, PASSWORD, REPLICATION, address, assert_no_secret, password_file,
};
use clustermgr_tests::{eventually, text};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// A real OpenLDAP client tool against `node`'s directory over LDAPS, as the directory manager.
pub(crate) fn ldap(
    tool: &str,
    node: &Node,
    extra: &[&str],
    stdin: Option<&str>,
) -> Result<String, String> {
    use std::io::Write;
    let mut cmd = Command::new(tool);
    cmd.args(["-x", "-H", &format!("ldaps://{}:1636", address(node)), "-D"])
        .arg("cn=directory manager")
        .arg("-y")
        .arg(password_file())
        .args(extra)
        .env("LDAPTLS_REQCERT", "never")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(input) = stdin
        && let Some(mut w) = child.stdin.take()
    {
        w.write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    }
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(text(&o.stdout))
    } else {
        Err(format!("{tool}: {}{}", text(&o.stderr), text(&o.stdout)))
    }
}

fn add_person(node: &Node, uid: &str) {
    let ldif = format!(
        "dn: uid={uid},ou=people,o=gluu\nobjectClass: top\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: test\n"
    );
    ldap("ldapadd", node, &[], Some(&ldif)).unwrap_or_else(|e| panic!("add {uid}: {e}"));
}

fn find(node: &Node, filter: &str, attr: &str) -> Option<String> {
    ldap(
        "ldapsearch",
        node,
        &["-LLL", "-b", "o=gluu", filter, attr],
        None,
    )
    .ok()
    .filter(|o| !o.trim().is_empty())
}

fn wait_seen(node: &Node, filter: &str, want: Option<&str>, what: &str) {
    eventually(Duration::from_secs(30), what, || {
        let got = find(node, filter, "sn");
        match (want, &got) {
            (None, None) => Ok(()),
            (Some(w), Some(g)) if g.contains(w) => Ok(()),
            _ => Err(format!("{got:?}")),
        }
    });
}

fn status(c: &Cluster) -> Value {
    let o = c.ctl.cli(&["--output", "json", "replication", "status"]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o.stderr)))
}

fn installed_and_replicated(n: usize) -> Cluster {
    let c = Cluster::new(n, HTTPS_PORT);
    let out = c.ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dry = c.ctl.cli(&[
        "--output",
        "json",
        "replication",
        "deploy",
        "--all",
        "--dry-run",
    ]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert_no_secret("the replication plan", &text(&dry.stdout));
    let out = c.ctl.cli(&["replication", "deploy", "--all"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        c.ctl
            .cli_ok(&["--output", "json", "workflow", "list", "--limit", "1"])
    );
    c
}

#[test]
fn three_nodes_replicate_every_change_and_agree() {
    let c = installed_and_replicated(3);
    let [a, b, d] = [&c.nodes[0], &c.nodes[1], &c.nodes[2]];
    // An entry added on each node appears on the other two.
    for (i, node) in [a, b, d].into_iter().enumerate() {
        add_person(node, &format!("repl-{i}"));
    }
    for node in [a, b, d] {
        for i in 0..3 {
            wait_seen(
                node,
                &format!("(uid=repl-{i})"),
                Some("test"),
                "an entry replicated",
            );
        }
    }
    // A modify and a delete replicate.
    ldap(
        "ldapmodify",
        b,
        &[],
        Some("dn: uid=repl-0,ou=people,o=gluu\nchangetype: modify\nreplace: sn\nsn: changed\n"),
    )
    .unwrap();
    wait_seen(d, "(uid=repl-0)", Some("changed"), "a modify replicated");
    ldap("ldapdelete", d, &["uid=repl-1,ou=people,o=gluu"], None).unwrap();
    wait_seen(a, "(uid=repl-1)", None, "a delete replicated");

    // Status: every node reachable, the same change stamps on all.
    eventually(Duration::from_secs(30), "the nodes agree", || {
        let s = status(&c);
        if s["in_agreement"] == true {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    let s = status(&c);
    let nodes = s["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        for b in n["bases"].as_array().unwrap() {
            assert_eq!(b["partners"].as_array().unwrap().len(), 2, "{b}");
        }
    }
    let servers = c.ctl.json(&["server", "list"]);
    for s in servers.as_array().unwrap() {
        assert_eq!(s["replication"], "in-sync", "{s}");
    }
    // Gluu's server lists: the node itself first.
    let props = std::fs::read_to_string(
        b.agent
            .root
            .join("opt/gluu-server/etc/gluu/conf/gluu-ldap.properties"),
    )
    .unwrap();
    let servers_line = props.lines().find(|l| l.starts_with("servers")).unwrap();
    assert!(
        servers_line.contains(&format!("{}:1636", address(b))),
        "{servers_line}"
    );
    let first = servers_line
        .split([':', ' ', '='])
        .find(|p| p.starts_with("127."))
        .unwrap();
    assert_eq!(first, address(b), "{servers_line}");

    // A stopped machine's directory falls behind, then catches up once the machine is back.
    d.serverd("stop");
    add_person(a, "while-down");
    let s = status(&c);
    assert_eq!(s["in_agreement"], false, "{s}");
    d.serverd("start");
    wait_seen(
        d,
        "(uid=while-down)",
        Some("test"),
        "the restarted node caught up",
    );
    eventually(Duration::from_secs(30), "agreement again", || {
        let s = status(&c);
        if s["in_agreement"] == true {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });

    // Remove a node: the two others go on and no longer list it.
    let out = c.ctl.cli(&["replication", "remove", &d.agent.hostname]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    add_person(a, "after-remove");
    wait_seen(
        b,
        "(uid=after-remove)",
        Some("test"),
        "the others still replicate",
    );
    let s = status(&c);
    let nodes = s["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{s}");
    for n in nodes {
        for base in n["bases"].as_array().unwrap() {
            let partners = base["partners"].to_string();
            assert!(!partners.contains(address(d)), "{partners}");
        }
    }
    // The removed node got nothing new.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(find(d, "(uid=after-remove)", "sn"), None);

    // Secrets: nowhere in jobs, logs or the audit log.
    let jobs = c
        .ctl
        .cli_ok(&["--output", "json", "job", "list", "--limit", "1000"]);
    for secret in [PASSWORD, REPLICATION] {
        assert!(!jobs.contains(secret));
    }
    for j in c.jobs() {
        assert_no_secret(
            "a job log",
            &c.ctl.cli_ok(&["job", "logs", j["id"].as_str().unwrap()]),
        );
    }
    assert_no_secret(
        "the audit log",
        &c.ctl
            .cli_ok(&["--output", "json", "audit", "--limit", "10000"]),
    );
    assert_no_secret(
        "the controller's log",
        &std::fs::read_to_string(c.ctl.log_path()).unwrap(),
    );
    for node in &c.nodes {
        assert_no_secret("an agent's log", &node.agent.log());
    }
}

#[test]
fn a_controller_killed_mid_deploy_completes_it_without_configuring_a_node_twice() {
    let mut c = Cluster::new(3, HTTPS_PORT);
    let out = c.ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = c
        .ctl
        .cli_ok(&["replication", "deploy", "--all", "--detach"])
        .trim()
        .to_string();
    eventually(
        Duration::from_secs(120),
        "the second node configuring",
        || {
            let wf = c.workflow(&id);
            let s = Cluster::step(&wf, "gluu2.cluster.test", "configure");
            if s["status"] == "running" || s["status"] == "succeeded" {
                Ok(())
            } else {
                Err(format!("{}", s["status"]))
            }
        },
    );
    c.ctl.kill9();
    c.ctl.start(&[]);
    let watch = c.ctl.cli(&["workflow", "watch", &id]);
    assert_eq!(watch.status.code(), Some(0), "{}", text(&watch.stderr));
    // Each node's configuration changed once (a re-sent job finds it done).
    for node in &c.nodes {
        let changed = c
            .jobs()
            .iter()
            .filter(|j| {
                j["node_id"] == node.agent.node_id.as_str()
                    && j["kind"] == "configure-replication"
                    && j["output"]["changed"] == true
            })
            .count();
        assert_eq!(changed, 1, "{}", node.agent.hostname);
    }
    add_person(&c.nodes[2], "after-restart");
    wait_seen(
        &c.nodes[0],
        "(uid=after-restart)",
        Some("test"),
        "replication works",
    );
}

#[test]
fn a_node_installed_later_joins_replication_without_touching_the_others_data() {
    let c = Cluster::new(3, HTTPS_PORT);
    let [a, b, d] = [&c.nodes[0], &c.nodes[1], &c.nodes[2]];
    // Two nodes first.
    let out = c.ctl.cli(&["gluu", "install", &b.agent.hostname]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let all = c.ctl.cli(&["replication", "deploy", "--all"]);
    assert_eq!(all.status.code(), Some(2), "gluu3 is not installed yet");
    assert!(
        text(&all.stderr).contains("not installed on gluu3"),
        "{}",
        text(&all.stderr)
    );
    let out = c.ctl.cli(&["replication", "deploy", &b.agent.hostname]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    add_person(a, "before-the-third");
    wait_seen(
        b,
        "(uid=before-the-third)",
        Some("test"),
        "two nodes replicate",
    );
    let count = |n: &Node| {
        ldap(
            "ldapsearch",
            n,
            &["-LLL", "-b", "o=gluu", "(objectClass=*)", "dn"],
            None,
        )
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("dn:"))
        .count()
    };
    let before = count(a);

    // The third: installed, then brought in by name.
    let out = c.ctl.cli(&["gluu", "install", &d.agent.hostname]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = c.ctl.cli(&["replication", "deploy", &d.agent.hostname]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_seen(
        d,
        "(uid=before-the-third)",
        Some("test"),
        "the new node got the data",
    );
    assert_eq!(count(a), before, "the others' data is untouched");
    add_person(d, "from-the-third");
    wait_seen(
        a,
        "(uid=from-the-third)",
        Some("test"),
        "the new node's writes reach the others",
    );
    let servers = c.ctl.json(&["server", "list"]);
    for s in servers.as_array().unwrap() {
        assert_ne!(s["replication"], "not-replicated", "{s}");
    }
    // `server remove` of a replicated node takes it out of replication, then out of the cluster.
    let out = c.ctl.cli(&["server", "remove", &d.agent.hostname]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("replicates"),
        "{}",
        text(&out.stderr)
    );
    let servers = c.ctl.json(&["server", "list"]);
    assert_eq!(servers.as_array().unwrap().len(), 2, "{servers}");
    add_person(a, "after-server-remove");
    wait_seen(
        b,
        "(uid=after-server-remove)",
        Some("test"),
        "the two others replicate",
    );
    let s = status(&c);
    assert!(!s.to_string().contains(address(d)), "{s}");
}
