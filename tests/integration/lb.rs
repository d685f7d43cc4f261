//! The load balancer end to end: the Gluu stand-in installed on two nodes, then `lb install` on
//! a node of role lb running the machine's real nginx under its root, requests through it with
//! curl (TLS verified against the cluster's httpd certificate), a failing `nginx -t` that leaves
//! the running configuration serving, and the upstreams following `server remove`.

use super::gluu_cluster::{Cluster, HTTPS_PORT, LB, address};
use clustermgr_tests::{Agent, Controller, eventually, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The lb host: its agent, and its nginx stopped when the test ends whatever happens.
pub(crate) struct LbHost {
    pub(crate) agent: Agent,
}

impl LbHost {
    /// An agent of role lb, online.
    pub(crate) fn join(ctl: &Controller, hostname: &str) -> LbHost {
        let mut agent = Agent::new(hostname);
        agent.join(ctl, "lb");
        agent.start();
        ctl.wait_status(&agent.node_id, "online");
        LbHost { agent }
    }
}

impl Drop for LbHost {
    fn drop(&mut self) {
        let pid_file = self.agent.root.join("run/clustermgr/nginx.pid");
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// A GET through the balancer from `source` (curl binds that address; ip_hash keys on its
/// first three bytes): (HTTP status, body).
pub(crate) fn get(ca: &Path, lb: &str, source: &str, path: &str) -> (String, String) {
    let o = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args([
            "--resolve",
            &format!("{LB}:{HTTPS_PORT}:{lb}"),
            "--interface",
            source,
            "-w",
            "\n%{http_code}",
            &format!("https://{LB}:{HTTPS_PORT}{path}"),
        ])
        .output()
        .unwrap();
    let out = text(&o.stdout);
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    (code.to_string(), body.to_string())
}

/// Which node answered /identity for `source` (the stand-in names itself by address).
pub(crate) fn identity_node(ca: &Path, lb: &str, source: &str) -> Result<String, String> {
    let (code, body) = get(ca, lb, source, "/identity");
    if code != "200" {
        return Err(format!("HTTP {code}: {body}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(v["node"].as_str().unwrap_or_default().to_string())
}

fn nginx_conf(lb: &LbHost) -> String {
    std::fs::read_to_string(lb.agent.root.join("etc/nginx/nginx.conf")).unwrap_or_default()
}

#[test]
fn nginx_balances_the_gluu_servers_sticks_sessions_and_follows_the_servers() {
    let c = Cluster::new(2, HTTPS_PORT);
    let ctl = &c.ctl;
    let out = ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lb = LbHost::join(ctl, "lb.cluster.test");
    let lb_addr = lb.agent.address.clone();
    let ca: PathBuf = c.nodes[0]
        .agent
        .root
        .join("opt/gluu-server/etc/certs/httpd.crt");

    // A dry run plans on both nodes and changes nothing.
    let plan = ctl.json(&["lb", "install", "--dry-run"]);
    let steps: Vec<String> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} {} {}", p["hostname"], p["step"], p["action"]))
        .collect();
    assert!(
        steps
            .iter()
            .any(|s| s.contains("gluu1.cluster.test") && s.contains("certificates")),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| s.contains("lb.cluster.test") && s.contains("inspect")),
        "{steps:?}"
    );
    assert!(c.workflows_of("lb-install").is_empty());
    assert!(nginx_conf(&lb).is_empty());

    let out = ctl.cli(&["lb", "install", "--oxauth-balancing", "round-robin"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        ctl.cli_ok(&["--output", "json", "workflow", "list"])
    );
    // The cluster overview checks nginx on the lb node (and the Gluu services on the others).
    eventually(Duration::from_secs(20), "nginx up in status", || {
        let s = ctl.json(&["status"]);
        let up = s["nodes"].as_array().unwrap().iter().any(|n| {
            n["hostname"] == "lb.cluster.test"
                && n["services"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["service"] == "nginx" && x["state"] == "up")
        });
        if up { Ok(()) } else { Err(s.to_string()) }
    });
    let conf = nginx_conf(&lb);
    for node in &c.nodes {
        assert!(
            conf.contains(&format!(
                "server {}:{HTTPS_PORT} max_fails=2",
                address(node)
            )),
            "{conf}"
        );
    }
    // The key the balancer serves with is its owner's only.
    let ssl = lb.agent.root.join("etc/nginx/ssl");
    let key = std::fs::read_dir(&ssl)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".key"))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.metadata().unwrap().permissions().mode() & 0o777, 0o600);

    // Discovery answers through the balancer (TLS: the cluster's httpd certificate).
    let (code, body) = get(
        &ca,
        &lb_addr,
        "127.0.0.1",
        "/.well-known/openid-configuration",
    );
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("issuer"), "{body}");
    // `/` goes to /identity; http goes to https.
    let o = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .arg(format!("http://{lb_addr}:8080/oxauth/x"))
        .output()
        .unwrap();
    assert_eq!(
        text(&o.stdout),
        format!("301 https://{LB}:{HTTPS_PORT}/oxauth/x")
    );
    let o = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .arg("--cacert")
        .arg(&ca)
        .args(["--resolve", &format!("{LB}:{HTTPS_PORT}:{lb_addr}")])
        .arg(format!("https://{LB}:{HTTPS_PORT}/"))
        .output()
        .unwrap();
    assert_eq!(
        text(&o.stdout),
        format!("302 https://{LB}:{HTTPS_PORT}/identity")
    );

    // /identity sticks: each client address stays on one node, and the clients spread over
    // both nodes (ip_hash keys on the first three bytes of the address; with two servers,
    // 127.200.k.* alternate between them).
    let mut by_node: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for k in 1..=16 {
        let source = format!("127.200.{k}.1");
        let first = eventually(Duration::from_secs(20), "/identity answers", || {
            identity_node(&ca, &lb_addr, &source)
        });
        for _ in 0..3 {
            assert_eq!(
                identity_node(&ca, &lb_addr, &source).unwrap(),
                first,
                "{source} moved: {}",
                std::fs::read_to_string(lb.agent.root.join("var/log/nginx/error.log"))
                    .unwrap_or_default()
            );
        }
        by_node.entry(first).or_default().push(source);
    }
    assert_eq!(by_node.len(), 2, "every client on one node: {by_node:?}");

    // Status: healthy, both backends answering.
    let st = ctl.json(&["lb", "status"]);
    assert_eq!(st["state"], "installed", "{st}");
    assert_eq!(st["healthy"], true, "{st}");
    assert_eq!(st["oxauth_balancing"], "round-robin", "{st}");
    assert_eq!(st["nginx"]["backends"].as_array().unwrap().len(), 2, "{st}");

    // One node's oxAuth stops (its machine's units): the balancer keeps answering, its clients
    // go to the other node.
    let (second, first) = (&c.nodes[1], &c.nodes[0]);
    second.systemctl(&["stop", "identity", "oxauth"]);
    let moved = &by_node[address(second)];
    for source in moved {
        assert_eq!(
            identity_node(&ca, &lb_addr, source).unwrap(),
            address(first),
            "{source}"
        );
    }
    for source in ["127.0.0.1", moved[0].as_str()] {
        let (code, body) = get(&ca, &lb_addr, source, "/.well-known/openid-configuration");
        assert_eq!(code, "200", "{body}");
    }
    let st = ctl.cli(&["--output", "json", "lb", "status"]);
    let stj: Value = serde_json::from_slice(&st.stdout).unwrap();
    let down = stj["nginx"]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == address(second))
        .unwrap()
        .clone();
    assert_eq!(down["healthy"], false, "{stj}");

    // The operator's own template on the lb node, broken: nginx -t refuses what it renders, the
    // job fails with nginx's error, and the running configuration keeps serving.
    let custom = lb.agent.root.join("etc/clustermgr/nginx.conf.j2");
    std::fs::create_dir_all(custom.parent().unwrap()).unwrap();
    std::fs::write(
        &custom,
        "events {}\nhttp { server { listen {{ listen }}:{{ https_port }} ssl; bogus_directive on; } }\n",
    )
    .unwrap();
    let before = nginx_conf(&lb);
    let out = ctl.cli(&["lb", "install"]);
    std::fs::remove_file(&custom).unwrap();
    let wf = c.workflows_of("lb-install")[0].clone();
    let shown = ctl.json(&["workflow", "show", wf["id"].as_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}\n{shown}", text(&out.stderr));
    let configure = Cluster::step(&shown, "lb.cluster.test", "configure");
    let err = configure["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("nginx -t") && err.contains("bogus_directive"),
        "{shown}"
    );
    assert_eq!(nginx_conf(&lb), before);
    let (code, _) = get(
        &ca,
        &lb_addr,
        "127.0.0.1",
        "/.well-known/openid-configuration",
    );
    assert_eq!(code, "200", "the old configuration stopped serving");
    // Without --oxauth-balancing, a re-install kept the operator's earlier choice.
    assert!(
        before.contains("/oxauth and /.well-known: round robin"),
        "{before}"
    );
    assert_eq!(
        ctl.json(&["lb", "status"])["oxauth_balancing"],
        "round-robin"
    );

    // Removing a Gluu server drops it from the upstreams (the balancer is reconfigured by
    // itself).
    let host2 = second.agent.hostname.clone();
    ctl.cli_ok(&["server", "remove", &host2]);
    let gone = format!("server {}:{HTTPS_PORT}", address(second));
    eventually(Duration::from_secs(60), "the upstream dropped", || {
        let conf = nginx_conf(&lb);
        if !conf.contains(&gone) && conf.contains(&format!("server {}:", address(first))) {
            Ok(())
        } else {
            Err(conf)
        }
    });
    eventually(
        Duration::from_secs(30),
        "the ping lists one backend",
        || {
            let (code, body) = get(&ca, &lb_addr, "127.0.0.1", "/clustermgrping");
            if code == "200" && !body.contains(&host2) && body.contains(&first.agent.hostname) {
                Ok(())
            } else {
                Err(format!("{code} {body}"))
            }
        },
    );

    // The balancer's private key is nowhere in what the controller keeps or logs.
    let key_pem =
        std::fs::read_to_string(first.agent.root.join("opt/gluu-server/etc/certs/httpd.key"))
            .unwrap();
    let key_line = key_pem
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 20)
        .unwrap()
        .to_string();
    let mut seen = vec![
        ctl.cli_ok(&["--output", "json", "job", "list", "--limit", "1000"]),
        ctl.cli_ok(&["--output", "json", "audit", "--limit", "10000"]),
        std::fs::read_to_string(ctl.log_path()).unwrap(),
        lb.agent.log(),
    ];
    for w in c.workflows_of("lb-install") {
        let id = w["id"].as_str().unwrap();
        seen.push(ctl.cli_ok(&["--output", "json", "workflow", "show", id]));
    }
    for j in c.jobs() {
        if j["kind"] == "configure-nginx" || j["kind"] == "read-gluu-certificates" {
            seen.push(ctl.cli_ok(&["job", "logs", j["id"].as_str().unwrap()]));
        }
    }
    for hay in &seen {
        assert!(!hay.contains(&key_line), "the key leaked");
    }

    // What an external balancer must route.
    let cfg = ctl.json(&["lb", "config"]);
    let sticky: Vec<&str> = cfg["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["sticky"] == true)
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(sticky, ["/identity", "/idp", "/passport", "/casa"]);
    assert_eq!(cfg["health_check"], "/oxauth/restv1/health-check");

    // Remove: nginx stops, its files go.
    let out = ctl.cli(&["lb", "remove"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(nginx_conf(&lb).is_empty());
    assert!(
        std::net::TcpStream::connect((lb_addr.as_str(), 8443)).is_err(),
        "nginx still listens"
    );
    let st = ctl.cli(&["lb", "status"]);
    assert_eq!(st.status.code(), Some(1));

    // An external balancer: no nginx to install; `lb config` says what it must route.
    ctl.cli_ok(&["cluster", "configure", "--external-lb", "true"]);
    let refused = ctl.cli(&["lb", "install"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("lb config"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(ctl.json(&["lb", "status"])["state"], "external");
    assert_eq!(ctl.json(&["lb", "config"])["external_lb"], true);
    let human = ctl.cli_ok(&["lb", "config"]);
    assert!(
        human.contains("/identity") && human.contains("yes"),
        "{human}"
    );
}
