//! The operations the Gluu install workflow runs, by real agents against the Gluu stand-in
//! installed with dpkg under each agent's root (its machine booted by the postinst; setup, its
//! real slapd and its keytool run inside the machine; setup.properties.last left encrypted):
//! setup, read-setup-properties (decrypting what setup encrypted), preflight, the certificate
//! set read on one node and installed on another (keytool imports), oxAuth's configuration and a
//! host rename through the node's own directory. Jobs go through the Operator API, so every
//! field is reachable; the setup password must not show up in any job record or log.

use clustermgr_proto::operator_client::OperatorClient;
use clustermgr_proto::{
    GluuCertificates, InstallGluuCertificates, Job, JobLogsRequest, NodeRef, Operation, Preflight,
    ReadGluuCertificates, ReadSetupProperties, RenameGluuHost, RunGluuSetup, SetOxAuthConfig,
    SubmitJobRequest, operation, operation_output,
};
use clustermgr_shared::config::ClientBundle;
use clustermgr_shared::dial::{DialOptions, connect};
use clustermgr_shared::tls::{client_config, install_crypto_provider};
use clustermgr_tests::{Agent, Controller, eventually, free_port, machine, standin_deb, text};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const LB: &str = "lb.example.test";
/// Characters a shell or a properties file would mangle.
const PASSWORD: &str = "Gl!u $ecret'pw\"x";

/// A Gluu host with the stand-in installed; its machine is stopped when the agent is dropped.
struct Node {
    agent: Agent,
    https_port: u16,
}

impl Node {
    fn new(ctl: &Controller, name: &str) -> Node {
        let mut agent = Agent::gluu_host(name);
        // As the agent installs it on a sandbox host: the postinst boots the machine.
        machine::dpkg_install(&agent.root, &standin_deb());
        agent.join(ctl, "gluu-node");
        agent.start();
        ctl.wait_status(&agent.node_id, "online");
        Node {
            agent,
            https_port: free_port(),
        }
    }

    fn chroot(&self, rel: &str) -> std::path::PathBuf {
        self.agent.root.join("opt/gluu-server").join(rel)
    }

    fn properties(&self) -> Vec<u8> {
        format!(
            "hostname={LB}\nip={}\nldapPass={}\norgName=Example\ncountryCode=US\ncity=Austin\n\
             state=TX\nadmin_email=admin@example.test\ninstallOxAuth=True\ninstallOxTrust=True\n\
             installSaml=True\ninstallPassport=True\nhttps_port={}\n",
            self.agent.address,
            PASSWORD.replace('\\', "\\\\"),
            self.https_port
        )
        .into_bytes()
    }

    fn ldapsearch(&self, base: &str, attrs: &[&str]) -> String {
        let pw = self.agent.dir.path().join("ldap.pw");
        std::fs::write(&pw, PASSWORD).unwrap();
        let o = Command::new("ldapsearch")
            .env("LDAPTLS_CACERT", self.chroot("etc/certs/openldap.crt"))
            .arg("-H")
            .arg(format!("ldaps://{}:1636", self.agent.address))
            .args(["-x", "-D", "cn=directory manager", "-y"])
            .arg(&pw)
            .args(["-LLL", "-o", "ldif-wrap=no", "-s", "base", "-b", base])
            .arg("(objectClass=*)")
            .args(attrs)
            .output()
            .unwrap();
        assert!(o.status.success(), "ldapsearch: {}", text(&o.stderr));
        text(&o.stdout)
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

    /// Submits one job, waits for it; returns the final record and the caller-only content.
    fn run(&mut self, node: &Node, kind: operation::Kind) -> (Job, Vec<u8>) {
        let req = SubmitJobRequest {
            node: Some(NodeRef {
                node: node.agent.node_id.clone(),
            }),
            operation: Some(Operation { kind: Some(kind) }),
            timeout_ms: 180_000,
            wait: true,
        };
        let r = self
            .rt
            .block_on(self.client.submit_job(req))
            .unwrap()
            .into_inner();
        (r.job.unwrap(), r.content)
    }

    fn ok(&mut self, node: &Node, kind: operation::Kind) -> (operation_output::Kind, Vec<u8>) {
        let (job, content) = self.run(node, kind);
        assert_eq!(job.state, "succeeded", "{job:?}\n{}", self.logs(&job.id));
        (job.output.unwrap().kind.unwrap(), content)
    }

    fn failed(&mut self, node: &Node, kind: operation::Kind) -> Job {
        let (job, _) = self.run(node, kind);
        assert_eq!(job.state, "failed", "{job:?}");
        job
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
}

fn sha256_hex(b: &[u8]) -> String {
    let o = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .unwrap();
    text(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn cacerts(node: &Node) -> serde_json::Value {
    let p = node.chroot("opt/jre/lib/security/cacerts");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn setup(env: &mut Env, node: &Node, no_data: bool) {
    let (out, _) = env.ok(
        node,
        operation::Kind::RunGluuSetup(RunGluuSetup {
            properties: node.properties(),
            no_data,
        }),
    );
    assert!(matches!(out, operation_output::Kind::RunGluuSetup(s) if s.changed));
}

fn set_oxauth(node: &Node, password: &str, values: &[(&str, &str)]) -> operation::Kind {
    operation::Kind::SetOxAuthConfig(SetOxAuthConfig {
        host: node.agent.address.clone(),
        port: 1636,
        password: password.as_bytes().to_vec(),
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

#[test]
fn gluu_install_operations_against_the_standin() {
    let mut env = Env::new();
    let primary = Node::new(&env.ctl, "gluu-primary.example.test");
    let other = Node::new(&env.ctl, "gluu-other.example.test");

    // Preflight before the install: everything at once, the job itself succeeds.
    let busy = std::net::TcpListener::bind(format!("{}:0", primary.agent.address)).unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let (out, _) = env.ok(
        &primary,
        operation::Kind::Preflight(Preflight {
            address: primary.agent.address.clone(),
            ports: vec![1636, u32::from(busy_port), u32::from(primary.https_port)],
            disk_path: "/opt/gluu-server".into(),
            min_free_bytes: u64::MAX,
            resolve: vec!["localhost".into(), "no-such-name.invalid".into()],
        }),
    );
    let operation_output::Kind::Preflight(p) = out else {
        panic!("{out:?}")
    };
    let problems = p.problems.join("\n");
    assert_eq!(p.problems.len(), 3, "{problems}");
    assert!(
        problems.contains(&format!("port {busy_port} on {}", primary.agent.address)),
        "{problems}"
    );
    assert!(problems.contains("no-such-name.invalid"), "{problems}");
    assert!(problems.contains("bytes free"), "{problems}");
    assert!(p.free_bytes > 0);
    drop(busy);

    // Setup, as the workflow runs it: the primary with data, the other without.
    setup(&mut env, &primary, false);
    setup(&mut env, &other, true);
    let enc = primary.chroot("install/community-edition-setup/setup.properties.last.enc");
    assert!(enc.is_file() && !enc.with_extension("").exists());

    // After setup, the directory's port is taken.
    let (out, _) = env.ok(
        &primary,
        operation::Kind::Preflight(Preflight {
            address: primary.agent.address.clone(),
            ports: vec![1636],
            ..Default::default()
        }),
    );
    assert!(matches!(out, operation_output::Kind::Preflight(p) if p.problems.len() == 1));

    // read-setup-properties decrypts what the stand-in's setup encrypted with openssl -k.
    let (out, content) = env.ok(
        &primary,
        operation::Kind::ReadSetupProperties(ReadSetupProperties {
            password: PASSWORD.as_bytes().to_vec(),
        }),
    );
    assert!(matches!(out, operation_output::Kind::ReadSetupProperties(r) if r.was_encrypted));
    let props = text(&content);
    assert!(props.contains(&format!("hostname={LB}")), "{props}");
    assert!(
        props.contains(&format!("ip={}", primary.agent.address)),
        "{props}"
    );
    let job = env.failed(
        &primary,
        operation::Kind::ReadSetupProperties(ReadSetupProperties {
            password: b"wrong password".to_vec(),
        }),
    );
    assert!(job.error.contains("cannot decrypt"), "{}", job.error);

    // The primary's certificate set: the caller gets the files, the job record only names.
    let (out, content) = env.ok(
        &primary,
        operation::Kind::ReadGluuCertificates(ReadGluuCertificates {}),
    );
    let operation_output::Kind::ReadGluuCertificates(recorded) = out else {
        panic!("{out:?}")
    };
    assert!(recorded.files.iter().all(|f| f.content.is_empty()));
    let set: GluuCertificates = prost::Message::decode(content.as_slice()).unwrap();
    let paths: Vec<&str> = set.files.iter().map(|f| f.path.as_str()).collect();
    for want in [
        "etc/certs/httpd.crt",
        "etc/certs/httpd.key",
        "etc/certs/shibIDP.crt",
        "etc/certs/idp-encryption.crt",
        "etc/certs/oxauth-keys.json",
        "install/community-edition-setup/output/scim-rp.jks",
        "etc/gluu/conf/passport-config.json",
    ] {
        assert!(paths.contains(&want), "{want} not in {paths:?}");
    }
    for f in &set.files {
        assert_eq!(
            f.content,
            std::fs::read(primary.chroot(&f.path)).unwrap(),
            "{}",
            f.path
        );
        assert_eq!(f.sha256, sha256_hex(&f.content), "{}", f.path);
    }
    // The directory's TLS identity stays per node: not in the set.
    for own in ["opendj.crt", "openldap.crt", "openldap.key"] {
        let own = format!("etc/certs/{own}");
        assert!(!paths.contains(&own.as_str()), "{own} in {paths:?}");
    }
    let key = set
        .files
        .iter()
        .find(|f| f.path == "etc/certs/httpd.key")
        .unwrap();
    assert_eq!(key.mode, 0o600);

    // Installed on the other node: same bytes and modes, and keytool imported the primary's
    // public certificates under the load balancer's aliases, replacing the node's own.
    let own_httpd = cacerts(&other)["entries"][format!("{LB}_httpd")]["sha256"].clone();
    assert!(own_httpd.is_string(), "setup imported the node's own");
    let install = operation::Kind::InstallGluuCertificates(InstallGluuCertificates {
        files: set.files.clone(),
        alias_prefix: LB.into(),
    });
    let (out, _) = env.ok(&other, install.clone());
    let operation_output::Kind::InstallGluuCertificates(i) = out else {
        panic!("{out:?}")
    };
    assert_eq!(i.imported, 4, "{i:?}");
    assert!(i.written >= 6, "{i:?}");
    for f in &set.files {
        let p = other.chroot(&f.path);
        assert_eq!(std::fs::read(&p).unwrap(), f.content, "{}", f.path);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            f.mode,
            "{}",
            f.path
        );
    }
    let store = cacerts(&other);
    let own_directory = std::fs::read_to_string(other.chroot("etc/certs/opendj.crt")).unwrap();
    assert_ne!(
        own_directory,
        std::fs::read_to_string(primary.chroot("etc/certs/opendj.crt")).unwrap()
    );
    for suffix in ["httpd", "shibidp", "idp-encryption", "opendj"] {
        let crt = if suffix == "shibidp" {
            "shibIDP"
        } else {
            suffix
        };
        // The directory's certificate imported is the node's own.
        let owner = if suffix == "opendj" { &other } else { &primary };
        let pem = std::fs::read_to_string(owner.chroot(&format!("etc/certs/{crt}.crt"))).unwrap();
        assert_eq!(
            store["entries"][format!("{LB}_{suffix}")]["pem"].as_str(),
            Some(pem.as_str()),
            "{suffix}: {store}"
        );
    }
    assert_ne!(store["entries"][format!("{LB}_httpd")]["sha256"], own_httpd);
    // Again: nothing to write, the imports converge.
    let (out, _) = env.ok(&other, install);
    assert!(matches!(out,
        operation_output::Kind::InstallGluuCertificates(i) if i.written == 0 && i.imported == 4));

    // The other node's directory serves the certificate still in its /etc/certs: the agent
    // talks to it (it has no data, so oxAuth's configuration is not there yet).
    let job = env.failed(&other, set_oxauth(&other, PASSWORD, &[("a", "1")]));
    assert!(job.error.contains("noSuchObject"), "{}", job.error);

    // oxAuth's configuration on the primary: one modify with the revision, then nothing to do.
    let set_regen = set_oxauth(
        &primary,
        PASSWORD,
        &[
            ("keyRegenerationEnabled", "false"),
            ("accessTokenLifetime", "300"),
        ],
    );
    let (out, _) = env.ok(&primary, set_regen.clone());
    assert!(matches!(out,
        operation_output::Kind::SetOxAuthConfig(c) if c.changed && c.revision == 2));
    let ldif = primary.ldapsearch(
        "ou=oxauth,ou=configuration,o=gluu",
        &["oxRevision", "oxAuthConfDynamic"],
    );
    assert!(ldif.contains("oxRevision: 2"), "{ldif}");
    assert!(ldif.contains("\"keyRegenerationEnabled\":false"), "{ldif}");
    let (out, _) = env.ok(&primary, set_regen);
    assert!(matches!(out,
        operation_output::Kind::SetOxAuthConfig(c) if !c.changed && c.revision == 2));
    let job = env.failed(&primary, set_oxauth(&primary, "wrong", &[("a", "1")]));
    assert!(job.error.contains("result code 49"), "{}", job.error);
    let job = env.failed(
        &primary,
        set_oxauth(&primary, PASSWORD, &[("a", "not json")]),
    );
    assert!(job.error.contains("not JSON"), "{}", job.error);

    // Rename the primary's host name: directory strings (configuration JSON included, the
    // revisions moved so oxAuth reloads) and the files under the Gluu root.
    std::fs::create_dir_all(primary.chroot("etc/apache2/sites-available")).unwrap();
    std::fs::write(
        primary.chroot("etc/apache2/sites-available/https_gluu.conf"),
        format!("<VirtualHost *:443>\n  ServerName {LB}\n  Redirect / https://{LB}/identity\n"),
    )
    .unwrap();
    std::fs::write(primary.chroot("etc/hostname"), format!("{LB}\n")).unwrap();
    std::fs::write(
        primary.chroot("etc/hosts"),
        format!("# {LB} in a comment stays\n127.0.0.1 localhost\n10.0.0.9\t{LB} other\n"),
    )
    .unwrap();
    let new = "idp.example.test";
    let rename = operation::Kind::RenameGluuHost(RenameGluuHost {
        host: primary.agent.address.clone(),
        port: 1636,
        password: PASSWORD.as_bytes().to_vec(),
        from: LB.into(),
        to: new.into(),
    });
    let (out, _) = env.ok(&primary, rename.clone());
    let operation_output::Kind::RenameGluuHost(r) = out else {
        panic!("{out:?}")
    };
    assert!(r.ldap_entries_changed >= 3, "{r:?}");
    assert_eq!(r.files_changed, 3, "{r:?}");
    let ldif = primary.ldapsearch("ou=configuration,o=gluu", &["gluuHostname"]);
    assert!(ldif.contains(&format!("gluuHostname: {new}")), "{ldif}");
    let ldif = primary.ldapsearch(
        "ou=oxauth,ou=configuration,o=gluu",
        &["oxRevision", "oxAuthConfDynamic"],
    );
    assert!(ldif.contains("oxRevision: 3"), "{ldif}");
    assert!(!ldif.contains(LB), "{ldif}");
    assert_eq!(
        std::fs::read_to_string(primary.chroot("etc/hosts")).unwrap(),
        format!("# {LB} in a comment stays\n127.0.0.1 localhost\n10.0.0.9\t{new} other\n")
    );
    assert_eq!(
        std::fs::read_to_string(primary.chroot("etc/hostname")).unwrap(),
        format!("{new}\n")
    );
    assert!(
        std::fs::read_to_string(primary.chroot("etc/apache2/sites-available/https_gluu.conf"))
            .unwrap()
            .contains(&format!(
                "ServerName {new}\n  Redirect / https://{new}/identity"
            ))
    );
    // oxAuth reloaded the renamed configuration (it follows oxRevision).
    let url = format!(
        "https://{}:{}/.well-known/openid-configuration",
        primary.agent.address, primary.https_port
    );
    eventually(Duration::from_secs(20), "oxAuth's issuer renamed", || {
        let o = Command::new("curl")
            .args(["-sk", "--max-time", "5", &url])
            .output()
            .map_err(|e| e.to_string())?;
        let body = text(&o.stdout);
        if body.contains(&format!("https://{new}:")) {
            Ok(())
        } else {
            Err(body)
        }
    });
    // Renaming again finds nothing left.
    let (out, _) = env.ok(&primary, rename);
    assert!(matches!(out,
        operation_output::Kind::RenameGluuHost(r) if r.ldap_entries_changed == 0 && r.files_changed == 0));

    // The password reached no job record and no job log.
    let jobs = env.ctl.cli_ok(&["--output", "json", "job", "list"]);
    let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&jobs)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() >= 15, "{jobs}");
    for id in &ids {
        let shown = env.ctl.cli_ok(&["--output", "json", "job", "show", id]);
        let logs = env.logs(id);
        for hay in [&shown, &logs] {
            assert!(
                !hay.contains(PASSWORD),
                "job {id} holds the password: {hay}"
            );
            assert!(!hay.contains("BEGIN PRIVATE KEY"), "job {id} holds a key");
        }
    }
    assert!(!Path::new(&enc.with_extension("")).exists());
}
