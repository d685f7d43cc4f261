//! LDAP multi-provider replication among three real agents whose roots hold the Gluu stand-in's
//! booted machine (real OpenLDAP slapd each, as the machine's opendj unit): directory info, configure replication (syncrepl over LDAPS
//! verified against the peers' certificates), probes, a modify and a delete replicating, status
//! converging, a peer whose certificate is not in the bundle not replicated from, the LDAP
//! server lists; passwords with `! ' $ "` and spaces, never in job records or logs.

use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::{
    ConfigureReplication, DirectoryInfo, Job, JobLogsRequest, NodeRef, Operation, ReplicationPeer,
    ReplicationProbe, ReplicationStatus, RunGluuSetup, SetLdapServers, SubmitJobRequest, operation,
    operation_output, replication_probe,
};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::dial::{DialOptions, connect};
use clustermgr_shared::tls::{client_config, install_crypto_provider};
use clustermgr_tests::{Agent, Controller, eventually, free_port, machine, standin_deb, text};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const LB: &str = "lb.example.test";
const PASSWORD: &str = "Dm! it's $x \"q\"";
const REPL_PW: &str = "R3pl! a'b $c \"d\" e";
const REPLICATOR: &str = "cn=replicator,o=site";
const WAIT: Duration = Duration::from_secs(90);

struct Node {
    agent: Agent,
    https_port: u16,
    id: u32,
}

impl Node {
    fn new(ctl: &Controller, name: &str, id: u32) -> Node {
        let mut agent = Agent::gluu_host(name);
        // As the agent installs it on a sandbox host: the postinst boots the machine.
        machine::dpkg_install(&agent.root, &standin_deb());
        agent.join(ctl, "gluu-node");
        agent.start();
        ctl.wait_status(&agent.node_id, "online");
        Node {
            agent,
            https_port: free_port(),
            id,
        }
    }

    fn chroot(&self, rel: &str) -> std::path::PathBuf {
        self.agent.root.join("opt/gluu-server").join(rel)
    }

    fn addr(&self) -> String {
        self.agent.address.clone()
    }

    fn peer(&self) -> ReplicationPeer {
        ReplicationPeer {
            host: self.addr(),
            port: 1636,
            server_id: self.id,
        }
    }

    fn properties(&self) -> Vec<u8> {
        format!(
            "hostname={LB}\nip={}\nldapPass={}\norgName=Example\ncountryCode=US\ncity=Austin\n\
             state=TX\nadmin_email=admin@example.test\nhttps_port={}\n",
            self.agent.address,
            PASSWORD.replace('\\', "\\\\"),
            self.https_port
        )
        .into_bytes()
    }

    fn pw_file(&self) -> std::path::PathBuf {
        let pw = self.agent.dir.path().join("ldap.pw");
        std::fs::write(&pw, PASSWORD).unwrap();
        pw
    }

    /// An OpenLDAP client tool against this node as the directory manager.
    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(name);
        c.env("LDAPTLS_CACERT", self.chroot("etc/certs/openldap.crt"))
            .arg("-H")
            .arg(format!("ldaps://{}:1636", self.agent.address))
            .args(["-x", "-D", "cn=directory manager", "-y"])
            .arg(self.pw_file());
        c
    }

    /// ldapsearch of one entry: Ok(LDIF) or Err(exit code and stderr).
    fn read(&self, dn: &str, attrs: &[&str]) -> Result<String, String> {
        let o = self
            .tool("ldapsearch")
            .args(["-LLL", "-o", "ldif-wrap=no", "-s", "base", "-b", dn])
            .arg("(objectClass=*)")
            .args(attrs)
            .output()
            .unwrap();
        if o.status.success() {
            Ok(text(&o.stdout))
        } else {
            Err(format!("{:?} {}", o.status.code(), text(&o.stderr)))
        }
    }

    fn stdin_tool(&self, name: &str, input: &str) {
        use std::io::Write;
        let mut child = self
            .tool(name)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
    }
}

struct Env {
    ctl: Controller,
    rt: tokio::runtime::Runtime,
    client: OperatorClient<Channel>,
}

impl Env {
    fn new() -> Env {
        install_crypto_provider();
        let mut ctl = Controller::init();
        ctl.start(&[]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let bundle = ClientBundle::load(&ctl.data.join("admin.toml")).unwrap();
        let tls = client_config(&bundle.ca_pem, Some((&bundle.cert_pem, &bundle.key_pem))).unwrap();
        let ch = rt
            .block_on(connect(&ctl.addr, tls, DialOptions::default()))
            .unwrap();
        Env {
            ctl,
            rt,
            client: OperatorClient::new(ch),
        }
    }

    fn run(&mut self, node: &Node, kind: operation::Kind) -> Job {
        let req = SubmitJobRequest {
            node: Some(NodeRef {
                node: node.agent.node_id.clone(),
            }),
            operation: Some(Operation { kind: Some(kind) }),
            timeout_ms: 180_000,
            wait: true,
        };
        self.rt
            .block_on(self.client.submit_job(req))
            .unwrap()
            .into_inner()
            .job
            .unwrap()
    }

    fn ok(&mut self, node: &Node, kind: operation::Kind) -> operation_output::Kind {
        let job = self.run(node, kind);
        assert_eq!(job.state, "succeeded", "{job:?}\n{}", self.logs(&job.id));
        job.output.unwrap().kind.unwrap()
    }

    fn logs(&mut self, id: &str) -> String {
        let mut s = self
            .rt
            .block_on(self.client.job_logs(JobLogsRequest {
                id: id.into(),
                ..Default::default()
            }))
            .unwrap()
            .into_inner();
        let mut out = String::new();
        self.rt.block_on(async {
            while let Some(Ok(l)) = s.next().await {
                out.push_str(&l.line);
                out.push('\n');
            }
        });
        out
    }

    fn configure(&mut self, node: &Node, peers: &[&Node], ca: &str) -> (bool, bool) {
        let out = self.ok(
            node,
            operation::Kind::ConfigureReplication(ConfigureReplication {
                host: node.addr(),
                port: 1636,
                server_id: node.id,
                peers: peers.iter().map(|p| p.peer()).collect(),
                bases: vec!["o=gluu".into(), "o=site".into()],
                replicator_dn: REPLICATOR.into(),
                replicator_password: REPL_PW.as_bytes().to_vec(),
                admin_password: PASSWORD.as_bytes().to_vec(),
                ca_pem: ca.into(),
                ..Default::default()
            }),
        );
        let operation_output::Kind::ConfigureReplication(c) = out else {
            panic!("{out:?}")
        };
        (c.changed, c.restarted)
    }

    fn probe(&mut self, node: &Node, marker: &str, action: replication_probe::Action) {
        let mut p = ReplicationProbe {
            also: Vec::new(),
            host: node.addr(),
            port: 1636,
            admin_password: PASSWORD.as_bytes().to_vec(),
            base: "o=gluu".into(),
            marker: marker.into(),
            action: 0,
            within_ms: WAIT.as_millis() as u32,
        };
        p.set_action(action);
        self.ok(node, operation::Kind::ReplicationProbe(p));
    }

    fn status(&mut self, node: &Node) -> clustermgr_proto::ReplicationStatusOutput {
        let out = self.ok(
            node,
            operation::Kind::ReplicationStatus(ReplicationStatus {
                host: node.addr(),
                port: 1636,
                admin_password: PASSWORD.as_bytes().to_vec(),
                bases: vec!["o=gluu".into(), "o=site".into()],
            }),
        );
        let operation_output::Kind::ReplicationStatus(s) = out else {
            panic!("{out:?}")
        };
        s
    }
}

fn setup(env: &mut Env, node: &Node, no_data: bool) {
    let out = env.ok(
        node,
        operation::Kind::RunGluuSetup(RunGluuSetup {
            properties: node.properties(),
            no_data,
        }),
    );
    assert!(matches!(out, operation_output::Kind::RunGluuSetup(s) if s.changed));
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn ldap_multi_provider_replication_among_three_standin_nodes() {
    use replication_probe::Action;
    let mut env = Env::new();
    let n1 = Node::new(&env.ctl, "gluu-1.example.test", 1);
    let n2 = Node::new(&env.ctl, "gluu-2.example.test", 2);
    let n3 = Node::new(&env.ctl, "gluu-3.example.test", 3);
    // As the install workflow does: the primary with data, the others without.
    setup(&mut env, &n1, false);
    setup(&mut env, &n2, true);
    setup(&mut env, &n3, true);

    // Each directory's own certificate.
    let mut certs = Vec::new();
    for n in [&n1, &n2, &n3] {
        let out = env.ok(n, operation::Kind::DirectoryInfo(DirectoryInfo::default()));
        let operation_output::Kind::DirectoryInfo(d) = out else {
            panic!("{out:?}")
        };
        assert_eq!(d.kind, "openldap");
        assert_eq!(d.bases, ["o=gluu", "o=site"]);
        assert_eq!(
            d.certificate_pem,
            std::fs::read_to_string(n.chroot("etc/certs/openldap.crt")).unwrap()
        );
        certs.push(d.certificate_pem);
    }
    assert!(certs[0] != certs[1] && certs[1] != certs[2]);
    let (c1, c2, c3) = (&certs[0], &certs[1], &certs[2]);

    // The primary replicates with the two others; node 3's bundle lacks node 1's certificate.
    assert_eq!(
        env.configure(&n1, &[&n2, &n3], &format!("{c2}{c3}")),
        (true, true)
    );
    let etc = n1.chroot("opt/openldap/etc");
    for f in [
        "replication-global.conf",
        "replication-gluu.conf",
        "replication-site.conf",
    ] {
        assert_eq!(mode(&etc.join(f)), 0o600, "{f}");
    }
    assert!(
        std::fs::read_to_string(etc.join("replication-global.conf"))
            .unwrap()
            .contains("serverID 1\n")
    );
    assert!(
        n1.read(REPLICATOR, &["cn"]).is_ok(),
        "the replicator exists on the primary"
    );
    assert!(
        !etc.read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("candidate")),
        "no candidate file is left"
    );
    assert_eq!(env.configure(&n3, &[&n1, &n2], c2), (true, true));
    // Node 3 refuses node 1's certificate: its consumer of node 1 (rid 001) keeps failing
    // and nothing arrives (node 2 has nothing yet).
    let access = n3.chroot("opt/opendj/logs/access");
    eventually(WAIT, "node 3's consumer of node 1 retried twice", || {
        let log = std::fs::read_to_string(&access).unwrap_or_default();
        let n = log
            .lines()
            .filter(|l| l.contains("rid=001") && l.contains("retrying"))
            .count();
        if n >= 2 { Ok(()) } else { Err(log) }
    });
    let e = n3.read("o=gluu", &["o"]).unwrap_err();
    assert!(e.contains("32"), "node 3 has no data: {e}");

    // With node 1's certificate in its bundle, node 3 replicates from node 1.
    assert_eq!(
        env.configure(&n3, &[&n1, &n2], &format!("{c1}{c2}")),
        (true, true)
    );
    eventually(WAIT, "node 3 has node 1's data", || {
        n3.read("ou=oxauth,ou=configuration,o=gluu", &["oxRevision"])
    });
    // Node 2 joins; configuring it again changes nothing and restarts nothing.
    assert_eq!(
        env.configure(&n2, &[&n1, &n3], &format!("{c1}{c3}")),
        (true, true)
    );
    assert_eq!(
        env.configure(&n2, &[&n1, &n3], &format!("{c1}{c3}")),
        (false, false)
    );

    // A marker written on one node is read on the two others, from each side.
    env.probe(&n1, "m1", Action::Write);
    env.probe(&n2, "m1", Action::Read);
    env.probe(&n3, "m1", Action::Read);
    env.probe(&n3, "m3", Action::Write);
    env.probe(&n1, "m3", Action::Read);
    env.probe(&n2, "m3", Action::Read);
    // A modify on node 2 replicates.
    n2.stdin_tool(
        "ldapmodify",
        "dn: cn=m1,ou=clustermgr,o=gluu\nchangetype: modify\nreplace: description\ndescription: changed on node 2\n",
    );
    for n in [&n1, &n3] {
        eventually(WAIT, "the modify arrived", || {
            let l = n.read("cn=m1,ou=clustermgr,o=gluu", &["description"])?;
            if l.contains("changed on node 2") {
                Ok(())
            } else {
                Err(l)
            }
        });
    }
    // A delete on node 3 (ldapdelete) and a probe removal on node 1 replicate.
    n3.stdin_tool("ldapdelete", "cn=m1,ou=clustermgr,o=gluu\n");
    env.probe(&n1, "m3", Action::Remove);
    for n in [&n1, &n2, &n3] {
        for dn in ["cn=m1,ou=clustermgr,o=gluu", "cn=m3,ou=clustermgr,o=gluu"] {
            eventually(WAIT, "the delete arrived", || match n.read(dn, &["cn"]) {
                Err(e) if e.contains("32") => Ok(()),
                other => Err(format!("{other:?}")),
            });
        }
    }

    // Status: the same contextCSN set everywhere, one value per server that wrote.
    eventually(WAIT, "the same contextCSN on all three", || {
        let s: Vec<_> = [&n1, &n2, &n3].iter().map(|n| env.status(n)).collect();
        for b in 0..2 {
            let csn = &s[0].bases[b].context_csn;
            if csn.is_empty() || s.iter().any(|x| &x.bases[b].context_csn != csn) {
                return Err(format!("{s:?}"));
            }
        }
        Ok(s)
    });
    let s = env.status(&n2);
    assert_eq!(s.server_id, 2);
    assert!(s.bases.iter().all(|b| b.reachable && b.error.is_empty()));
    assert_eq!(
        s.bases[0].partners,
        [format!("{}:1636", n1.addr()), format!("{}:1636", n3.addr())]
    );
    let gluu_csn = &s.bases[0].context_csn;
    assert!(
        gluu_csn.len() >= 2,
        "writes from several servers: {gluu_csn:?}"
    );

    // The LDAP server lists of node 1: properties file and oxIDPAuthentication.
    let servers: Vec<String> = [&n1, &n2, &n3]
        .iter()
        .map(|n| format!("{}:1636", n.addr()))
        .collect();
    let props = n1.chroot("etc/gluu/conf/gluu-ldap.properties");
    let before = std::fs::read_to_string(&props).unwrap();
    let set = operation::Kind::SetLdapServers(SetLdapServers {
        servers: servers.clone(),
        host: n1.addr(),
        port: 1636,
        admin_password: PASSWORD.as_bytes().to_vec(),
    });
    let out = env.ok(&n1, set.clone());
    assert!(matches!(out, operation_output::Kind::SetLdapServers(s) if s.changed));
    let after = std::fs::read_to_string(&props).unwrap();
    let want = before
        .lines()
        .map(|l| {
            if l.starts_with("servers:") {
                format!("servers: {}", servers.join(","))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_eq!(after, want);
    assert_eq!(mode(&props), 0o600);
    let l = n1
        .read("ou=configuration,o=gluu", &["oxIDPAuthentication"])
        .unwrap();
    assert!(
        l.contains(&format!("\"servers\":{}", serde_json::json!(servers))),
        "{l}"
    );
    // The change replicates; a second run finds nothing to do.
    eventually(WAIT, "oxIDPAuthentication on node 3", || {
        let l = n3.read("ou=configuration,o=gluu", &["oxIDPAuthentication"])?;
        if l.contains(&servers[2]) {
            Ok(())
        } else {
            Err(l)
        }
    });
    let out = env.ok(&n1, set);
    assert!(matches!(out, operation_output::Kind::SetLdapServers(s) if !s.changed));

    // No password in any job record or log.
    let jobs = env.ctl.cli_ok(&["--output", "json", "job", "list"]);
    let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&jobs)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() >= 20, "{jobs}");
    for id in &ids {
        let shown = env.ctl.cli_ok(&["--output", "json", "job", "show", id]);
        let logs = env.logs(id);
        for hay in [&shown, &logs] {
            for secret in [PASSWORD, REPL_PW, "R3pl!", "Dm! it"] {
                assert!(!hay.contains(secret), "job {id} holds a password: {hay}");
            }
        }
    }
}
