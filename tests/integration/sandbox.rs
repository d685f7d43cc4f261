//! The local sandbox: up (each Gluu node a booted nspawn machine), status, down, and nothing
//! left running, the machines included.

use clustermgr_tests::{Sandbox, clustermgr_bin, eventually, machine, processes_mentioning, text};
use std::process::Command;
use std::time::Duration;

#[test]
fn sandbox_up_status_down_leaves_no_process() {
    // Whatever happens, no machine outlives the test.
    let sbx = Sandbox::new(2);
    let dir = sbx.dir.clone();
    let roots: Vec<std::path::PathBuf> = ["gluu1.sandbox", "gluu2.sandbox"]
        .iter()
        .map(|h| dir.join("hosts").join(h).join("root"))
        .collect();
    let up = sbx.up();
    assert!(text(&up.stdout).contains("gluu2.sandbox"));
    // It says how long it took, in all and on each node.
    let said = text(&up.stderr);
    assert!(said.contains("timing: sandbox up"), "{said}");
    assert!(said.contains("timing: install on gluu2.sandbox"), "{said}");
    // Each node's Gluu Server is its own machine: the console's address written before the
    // install, the Gluu units active under the machine's systemd.
    for (root, addr) in roots.iter().zip(["127.0.0.11", "127.0.0.12"]) {
        assert_eq!(
            std::fs::read_to_string(root.join("etc/default/gluu-server")).unwrap(),
            format!("GLUU_CONSOLE_ADDRESS={addr}\n")
        );
        assert!(machine::leader(root).is_some(), "{}", root.display());
        machine::units_active(root, &machine::SERVICES).unwrap();
    }
    // Gluu is installed on every node: each directory answers a bind with the password the
    // sandbox generated (0600 in SANDBOX_DIR/secrets), each web tier its health check.
    let secrets = dir.join("secrets");
    for f in ["ldap-admin-password", "replication-password"] {
        let meta = std::fs::metadata(secrets.join(f)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
    }
    for (addr, path) in [("127.0.0.11", "oxauth"), ("127.0.0.12", "identity")] {
        let bind = Command::new("ldapwhoami")
            .args([
                "-x",
                "-H",
                &format!("ldaps://{addr}:1636"),
                "-D",
                "cn=directory manager",
                "-y",
            ])
            .arg(secrets.join("ldap-admin-password"))
            .env("LDAPTLS_REQCERT", "never")
            .output()
            .unwrap();
        assert!(bind.status.success(), "{addr}: {}", text(&bind.stderr));
        let web = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://{addr}:8443/{path}/restv1/health-check"))
            .output()
            .unwrap();
        assert_eq!(text(&web.stdout), "200", "{addr}");
    }
    let status = Command::new(clustermgr_bin())
        .args(["--output", "json", "sandbox", "status", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", text(&status.stderr));
    let hosts: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let hosts = hosts.as_array().unwrap();
    assert_eq!(hosts.len(), 5, "controller, lb, cache, 2 nodes");
    let roles: Vec<_> = hosts.iter().map(|h| h["role"].as_str().unwrap()).collect();
    assert!(roles.contains(&"lb") && roles.contains(&"cache"));
    for h in hosts {
        assert_eq!(h["running"], true, "{h}");
        if h["role"] == "gluu-node" {
            assert_eq!(h["gluu"], "installed", "{h}");
            assert_eq!(h["flavor"], "nspawn-machine", "{h}");
            // From the inventory: running, or degraded if a unit failed at some point since.
            assert!(
                matches!(h["machine"].as_str(), Some("running" | "degraded")),
                "{h}"
            );
        }
    }
    // The load balancer (nginx on lb.sandbox) is healthy and answers for the cluster.
    let lb = hosts.iter().find(|h| h["role"] == "lb").unwrap();
    assert_eq!(lb["lb"]["healthy"], true, "{lb}");
    let web = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(dir.join("hosts/gluu1.sandbox/root/opt/gluu-server/etc/certs/httpd.crt"))
        .args(["--resolve", "idp.sandbox.test:8443:127.0.0.2"])
        .arg("https://idp.sandbox.test:8443/.well-known/openid-configuration")
        .output()
        .unwrap();
    assert_eq!(text(&web.stdout), "200");
    // A token issued through the load balancer is active on every node asked directly: they
    // share the cache (Redis behind stunnel on cache.sandbox).
    let token = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(dir.join("hosts/gluu1.sandbox/root/opt/gluu-server/etc/certs/httpd.crt"))
        .args([
            "--resolve",
            "idp.sandbox.test:8443:127.0.0.2",
            "-u",
            "sandbox-test:secret",
        ])
        .args(["-d", "grant_type=client_credentials"])
        .arg("https://idp.sandbox.test:8443/oxauth/restv1/token")
        .output()
        .unwrap();
    let token: serde_json::Value = serde_json::from_slice(&token.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&token.stdout)));
    let token = token["access_token"].as_str().expect("a token").to_string();
    for addr in ["127.0.0.11", "127.0.0.12"] {
        let o = Command::new("curl")
            .args(["-sk", "--data-urlencode"])
            .arg(format!("token={token}"))
            .arg(format!("https://{addr}:8443/oxauth/restv1/introspection"))
            .output()
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["active"], true, "{addr}: {r}");
    }
    // Each host has its own loopback address and root.
    let addrs: std::collections::HashSet<_> =
        hosts.iter().map(|h| h["address"].to_string()).collect();
    assert_eq!(addrs.len(), 5);
    assert!(dir.join("hosts/gluu1.sandbox/root").is_dir());
    // The operator CLI works against it.
    let nodes = Command::new(clustermgr_bin())
        .arg("--data-dir")
        .arg(dir.join("controller"))
        .args(["--output", "json", "node", "list"])
        .output()
        .unwrap();
    let nodes: serde_json::Value = serde_json::from_slice(&nodes.stdout).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 4);
    assert!(!processes_mentioning(&dir).is_empty());
    // The cluster overview: every service of every host up (the agents check them).
    let want = [
        ("gluu1.sandbox", "ldap"),
        ("gluu1.sandbox", "oxauth"),
        ("gluu2.sandbox", "identity"),
        ("gluu2.sandbox", "redis"),
        ("cache.sandbox", "redis"),
        ("lb.sandbox", "nginx"),
    ];
    eventually(Duration::from_secs(40), "every service up", || {
        let o = Command::new(clustermgr_bin())
            .arg("--data-dir")
            .arg(dir.join("controller"))
            .args(["--output", "json", "status"])
            .output()
            .unwrap();
        let s: serde_json::Value =
            serde_json::from_slice(&o.stdout).map_err(|e| format!("{e}: {}", text(&o.stderr)))?;
        let up = |host: &str, svc: &str| {
            s["nodes"].as_array().is_some_and(|n| {
                n.iter().any(|x| {
                    x["hostname"] == host
                        && x["services"].as_array().is_some_and(|v| {
                            v.iter().any(|y| y["service"] == svc && y["state"] == "up")
                        })
                })
            })
        };
        if want.iter().all(|(h, svc)| up(h, svc)) {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });

    let again = sbx.run(&["up", "--no-gluu"]);
    assert!(!again.status.success(), "a second up must refuse");
    assert!(text(&again.stderr).contains("already running"));

    // A process of the user's that names a sandbox file (a `tail -f` on its state) is not the
    // sandbox's to stop: `down` leaves it running and says so.
    let mut watcher = std::process::Command::new("tail")
        .arg("-f")
        .arg(dir.join("sandbox.json"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let down = sbx.run(&["down"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(
        watcher.try_wait().unwrap().is_none(),
        "sandbox down killed a process it did not start"
    );
    assert!(
        text(&down.stderr).contains("left running (not started by the sandbox)"),
        "{}",
        text(&down.stderr)
    );
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    // nginx's workers (whose command lines do not name the sandbox) went with their master.
    eventually(
        Duration::from_secs(5),
        "nothing listening on lb.sandbox",
        || match std::net::TcpStream::connect("127.0.0.2:8443") {
            Ok(_) => Err("127.0.0.2:8443 still accepts connections".to_string()),
            Err(_) => Ok(()),
        },
    );
    eventually(Duration::from_secs(5), "no sandbox process left", || {
        let left = processes_mentioning(&dir);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    // The machines are powered off: no leader, no process rooted in a container.
    for root in &roots {
        assert_eq!(machine::leader(root), None, "{}", root.display());
        let left = machine::processes(root);
        assert!(left.is_empty(), "{}: {left:?}", root.display());
    }
    let status = sbx.run(&["status"]);
    assert_eq!(status.status.code(), Some(3));
}
