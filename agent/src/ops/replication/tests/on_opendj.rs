//! OpenDJ: the exact commands per packaging, the truststores, the password files.

use super::*;
use crate::ops::tests::{ctx_with, log};
use clustermgr_proto::{AdminConnector, DirectoryInfo};
use std::path::PathBuf;
use std::time::Duration;

const KEYTOOL: &str = "/opt/jre/bin/keytool";
const DM: &str = "dm pw $x";
const REPL: &str = "repl pw!";
const P12: &str = "p12:s3cret!";

/// An OpenDJ node under the container root: its tools, OpenDJ's truststore with the PIN file
/// `pin`, keytool and, with `p12`, oxAuth's LDAP truststore and setup's encrypted record.
fn opendj_node(root: &Path, pins: &[&str], p12: bool) -> PathBuf {
    let c = root.join("opt/gluu-server");
    write(&c.join("opt/opendj/bin/dsreplication"), "");
    write(&c.join(&KEYTOOL[1..]), "");
    if !pins.is_empty() {
        write(&c.join("opt/opendj/config/truststore"), "");
        for p in pins {
            write(&c.join("opt/opendj/config").join(p), "pin\n");
        }
    }
    if p12 {
        write(&c.join("etc/certs/opendj.pkcs12"), "");
        write(
            &c.join("install/community-edition-setup/setup.properties.last.enc"),
            "Salted__",
        );
    }
    c
}

/// OpenDJ administration connectors on one port of 127.0.44.1-3, each presenting its own
/// self-signed certificate for `localhost` (as Gluu's setup makes them).
struct AdminServers {
    port: String,
    connectors: Vec<AdminConnector>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for AdminServers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn tls_acceptor(cert: &rcgen::CertifiedKey<rcgen::KeyPair>) -> tokio_rustls::TlsAcceptor {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(clustermgr_shared::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS server on `listener` presenting `cert` to every client.
fn serve_tls(
    listener: tokio::net::TcpListener,
    cert: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> tokio::task::JoinHandle<()> {
    let acceptor = tls_acceptor(cert);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    })
}

async fn admin_servers() -> AdminServers {
    let hosts = ["127.0.44.1", "127.0.44.2", "127.0.44.3"];
    'again: loop {
        let first = tokio::net::TcpListener::bind((hosts[0], 0)).await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for h in &hosts[1..] {
            match tokio::net::TcpListener::bind((*h, port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'again,
            }
        }
        let mut connectors = Vec::new();
        let mut tasks = Vec::new();
        for (h, l) in hosts.iter().zip(listeners) {
            let cert = self_signed("localhost");
            connectors.push(AdminConnector {
                host: h.to_string(),
                certificate_der: cert.cert.der().to_vec(),
            });
            tasks.push(serve_tls(l, &cert));
        }
        return AdminServers {
            port: port.to_string(),
            connectors,
            tasks,
        };
    }
}

/// The request for node `host` of a set whose primary is 127.0.44.1, every node's
/// administration connector answering with the certificate the request lists.
async fn dj_req(
    host: &str,
    peers: &[(&str, u32)],
    bundle: String,
) -> (ConfigureReplication, AdminServers) {
    let srv = admin_servers().await;
    let mut r = req(peers);
    r.admin_port = srv.port.parse().unwrap();
    r.admin_connectors = srv.connectors.clone();
    r.host = host.into();
    r.server_id = 2;
    r.replicator_password = REPL.as_bytes().to_vec();
    r.admin_password = DM.as_bytes().to_vec();
    r.bases = vec!["o=gluu".into()];
    r.primary = Some(ReplicationPeer {
        host: "127.0.44.1".into(),
        port: 1636,
        server_id: 1,
    });
    r.ca_pem = bundle;
    (r, srv)
}

/// keytool on OpenDJ's truststore opened with `pin`.
fn on_truststore(args: &[&str], pin: &str) -> Vec<String> {
    let mut v = vec![KEYTOOL];
    v.extend(args);
    v.extend(["-keystore", OPENDJ_TRUSTSTORE, "-storepass:file", pin]);
    nsenter(&v)
}

/// keytool on oxAuth's LDAP truststore (its password in the environment).
fn on_p12(args: &[&str]) -> Vec<String> {
    let mut v = vec![KEYTOOL];
    v.extend(args);
    v.extend([
        "-keystore",
        LDAP_TRUSTSTORE,
        "-storetype",
        "PKCS12",
        "-storepass:env",
        "CLUSTERMGR_STOREPASS",
    ]);
    nsenter(&v)
}

fn listing(aliases: &[&str]) -> String {
    let mut s = String::from(
        "Keystore type: JKS\n\nserver-cert, Dec 7, 2026, PrivateKeyEntry, \nCertificate \
         fingerprint (SHA-256): AA\n",
    );
    for a in aliases {
        s.push_str(&format!("{a}, Dec 7, 2026, trustedCertEntry, \n"));
    }
    s
}

fn env_of(rec: &Recorder, i: usize) -> Vec<(String, String)> {
    rec.calls.lock().unwrap()[i].env.clone()
}

/// The value after `flag` in `argv`.
fn after(argv: &[String], flag: &str) -> String {
    argv[argv.iter().position(|a| a == flag).unwrap() + 1].clone()
}

fn no_secret_anywhere(rec: &Recorder, lines: &[String]) {
    for a in rec.argvs().iter().flatten() {
        for s in [DM, REPL, P12, "s3cret"] {
            assert!(!a.contains(s), "{s} in argv: {a}");
        }
    }
    for l in lines {
        for s in [DM, REPL, P12, "s3cret"] {
            assert!(!l.contains(s), "{s} in the log: {l}");
        }
    }
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<(u64, String)>) -> Vec<String> {
    let mut v = Vec::new();
    while let Ok((_, l)) = rx.try_recv() {
        v.push(l);
    }
    v
}

#[tokio::test]
async fn a_member_in_a_machine_trusts_its_peers_then_replicates_with_the_primary() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine, true);
    let c = opendj_node(d.path(), &["keystore.pin"], true);
    let (a, b) = (self_signed("127.0.44.1"), self_signed("127.0.44.3"));
    let (aa, ba) = (
        peer_alias(a.cert.der().as_ref()),
        peer_alias(b.cert.der().as_ref()),
    );
    let stale = "clustermgr-peer-0000000000000000";
    rec.answer(0, "running\n");
    // setup.properties.last as openssl decrypts it (Java-escaped, as setup writes it).
    rec.answer(
        0,
        "hostname=lb.example.org\nopendj_p12_pass=p12\\:s3cret!\n",
    );
    rec.answer(0, &listing(&[aa.as_str(), ba.as_str()]));
    rec.answer(0, &listing(&[stale]));
    let (mut l, mut rx) = log();
    let (r, srv) = dj_req(
        "127.0.44.2",
        &[("127.0.44.1", 1), ("127.0.44.3", 3)],
        format!("{}{}", a.cert.pem(), b.cert.pem()),
    )
    .await;
    let boot = boot_check(&h).await.len();
    let out = configure(&ctx_with(h.clone()), r, &mut l).await.unwrap();
    assert!(out.changed && !out.restarted, "{out:?}");
    let argvs = rec.argvs();
    assert_eq!(argvs.len(), boot + 9, "{argvs:#?}");
    let pin = "/opt/opendj/config/keystore.pin";
    let (dm, rp) = (
        after(&argvs[boot + 6], "--bindPasswordFile1"),
        after(&argvs[boot + 6], "--adminPasswordFile"),
    );
    assert!(dm.starts_with("/root/.clustermgr-dm-"), "{dm}");
    assert!(rp.starts_with("/root/.clustermgr-repl-"), "{rp}");
    let (fa, fb) = (format!("/root/.{aa}.crt"), format!("/root/.{ba}.crt"));
    let want = vec![
        nsenter(&[
            "/usr/bin/openssl",
            "enc",
            "-d",
            "-aes-256-cbc",
            "-in",
            "/install/community-edition-setup/setup.properties.last.enc",
            "-pass",
            "stdin",
        ]),
        on_truststore(&["-list"], pin),
        on_p12(&["-list"]),
        on_p12(&["-delete", "-alias", stale]),
        on_p12(&["-importcert", "-noprompt", "-alias", &aa, "-file", &fa]),
        on_p12(&["-importcert", "-noprompt", "-alias", &ba, "-file", &fb]),
        nsenter(&[
            DSREPLICATION,
            "enable",
            "--host1",
            "127.0.44.1",
            "--port1",
            &srv.port,
            "--bindDN1",
            "cn=directory manager",
            "--bindPasswordFile1",
            &dm,
            "--replicationPort1",
            "8989",
            "--host2",
            "127.0.44.2",
            "--port2",
            &srv.port,
            "--bindDN2",
            "cn=directory manager",
            "--bindPasswordFile2",
            &dm,
            "--replicationPort2",
            "8989",
            "--adminUID",
            "admin",
            "--adminPasswordFile",
            &rp,
            "--baseDN",
            "o=gluu",
            "-X",
            "-n",
        ]),
        nsenter(&[
            DSCONFIG,
            "--hostname",
            "127.0.44.2",
            "--port",
            &srv.port,
            "--bindDN",
            "cn=directory manager",
            "--bindPasswordFile",
            &dm,
            "--trustAll",
            "--no-prompt",
            "set-crypto-manager-prop",
            "--set",
            "ssl-encryption:true",
        ]),
        nsenter(&[
            DSREPLICATION,
            "initialize-all",
            "--baseDN",
            "o=gluu",
            "--hostname",
            "127.0.44.1",
            "--port",
            &srv.port,
            "--adminUID",
            "admin",
            "--adminPasswordFile",
            &rp,
            "-X",
            "-n",
        ]),
    ];
    assert_eq!(argvs, after_boot(&h, want).await);
    // The secrets travel on stdin and in the environment, never in argv.
    {
        let calls = rec.calls.lock().unwrap();
        assert_eq!(
            calls[boot].stdin.as_ref().unwrap().expose(),
            format!("{DM}\n").as_bytes()
        );
    }
    let pass = ("CLUSTERMGR_STOREPASS".to_string(), P12.to_string());
    assert!(
        env_of(&rec, boot + 1).is_empty(),
        "a PIN file needs no password"
    );
    for i in boot + 2..=boot + 5 {
        assert_eq!(env_of(&rec, i), std::slice::from_ref(&pass), "call {i}");
    }
    let java = ("OPENDJ_JAVA_HOME".to_string(), "/opt/jre".to_string());
    for i in boot + 6..=boot + 8 {
        assert_eq!(env_of(&rec, i), std::slice::from_ref(&java), "call {i}");
    }
    // Password and certificate files are gone; no secret in argv or the log.
    for f in [&dm, &rp, &fa, &fb] {
        assert!(!c.join(&f[1..]).exists(), "{f} left behind");
    }
    no_secret_anywhere(&rec, &drain(&mut rx));
}

#[tokio::test]
async fn the_primary_gets_the_same_crypto_manager_settings() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine, true);
    opendj_node(d.path(), &["keystore.pin"], true);
    let (b, c3) = (self_signed("127.0.44.2"), self_signed("127.0.44.3"));
    let owned = [
        peer_alias(b.cert.der().as_ref()),
        peer_alias(c3.cert.der().as_ref()),
    ];
    let owned: Vec<&str> = owned.iter().map(String::as_str).collect();
    rec.answer(0, "running\n");
    rec.answer(0, "opendj_p12_pass=p12:s3cret!\n");
    rec.answer(0, &listing(&owned));
    rec.answer(0, &listing(&owned));
    let (mut l, mut rx) = log();
    let (r, srv) = dj_req(
        "127.0.44.1",
        &[("127.0.44.2", 2), ("127.0.44.3", 3)],
        format!("{}{}", b.cert.pem(), c3.cert.pem()),
    )
    .await;
    let out = configure(&ctx_with(h.clone()), r, &mut l).await.unwrap();
    assert!(out.changed && !out.restarted);
    let argvs = rec.argvs();
    let dm = after(argvs.last().unwrap(), "--bindPasswordFile");
    let want = vec![
        nsenter(&[
            "/usr/bin/openssl",
            "enc",
            "-d",
            "-aes-256-cbc",
            "-in",
            "/install/community-edition-setup/setup.properties.last.enc",
            "-pass",
            "stdin",
        ]),
        on_truststore(&["-list"], "/opt/opendj/config/keystore.pin"),
        on_p12(&["-list"]),
        nsenter(&[
            DSCONFIG,
            "--hostname",
            "127.0.44.1",
            "--port",
            &srv.port,
            "--bindDN",
            "cn=directory manager",
            "--bindPasswordFile",
            &dm,
            "--trustAll",
            "--no-prompt",
            "set-crypto-manager-prop",
            "--set",
            "ssl-encryption:true",
        ]),
    ];
    assert_eq!(argvs, after_boot(&h, want).await);
    assert!(
        argvs.iter().flatten().all(|a| a != DSREPLICATION),
        "the primary is not enabled against itself"
    );
    no_secret_anywhere(&rec, &drain(&mut rx));
}

#[tokio::test]
async fn a_changed_truststore_restarts_the_directory_before_replication() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine, true);
    let c = opendj_node(d.path(), &["keystore.pin", "truststore.pin"], false);
    let a = self_signed("127.0.44.1");
    let aa = peer_alias(a.cert.der().as_ref());
    rec.answer(0, "running\n");
    rec.answer(0, &listing(&[]));
    let ctx = ctx_with(h.clone());
    let layout = Layout::detect(&ctx.host).unwrap();
    let (mut l, _rx) = log();
    let (mut r, _srv) = dj_req("127.0.44.2", &[("127.0.44.1", 1)], a.cert.pem()).await;
    // Nothing answers there: the wait after the restart fails at once.
    r.host = "127.0.0.1".into();
    r.port = 9;
    let e = opendj::configure(&ctx, &layout, &r, Duration::from_millis(300), &mut l)
        .await
        .unwrap_err();
    assert!(e.0.contains("did not answer on LDAPS"), "{e}");
    let pin = "/opt/opendj/config/truststore.pin";
    let file = format!("/root/.{aa}.crt");
    let want = vec![
        on_truststore(&["-list"], pin),
        on_truststore(
            &["-importcert", "-noprompt", "-alias", &aa, "-file", &file],
            pin,
        ),
        nsenter(&["/bin/systemctl", "restart", "opendj"]),
    ];
    assert_eq!(rec.argvs(), after_boot(&h, want).await);
    assert!(!c.join(&file[1..]).exists());
}

#[tokio::test]
async fn a_node_without_peers_leaves_replication() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::Machine, true);
    opendj_node(d.path(), &["keystore.pin"], false);
    rec.answer(0, "running\n");
    rec.answer(0, &listing(&[]));
    let (mut l, _rx) = log();
    let (r, srv) = dj_req("127.0.44.3", &[], String::new()).await;
    let out = configure(&ctx_with(h.clone()), r, &mut l).await.unwrap();
    assert!(out.changed && !out.restarted);
    let argvs = rec.argvs();
    let dm = after(argvs.last().unwrap(), "--adminPasswordFile");
    let want = vec![
        on_truststore(&["-list"], "/opt/opendj/config/keystore.pin"),
        nsenter(&[
            DSREPLICATION,
            "disable",
            "--disableAll",
            "--hostname",
            "127.0.44.3",
            "--port",
            &srv.port,
            "--bindDN",
            "cn=directory manager",
            "--adminPasswordFile",
            &dm,
            "-X",
            "-n",
        ]),
    ];
    assert_eq!(argvs, after_boot(&h, want).await);
}

#[tokio::test]
async fn the_ldap_truststore_password_comes_from_the_install_record_or_the_job_fails() {
    let a = self_signed("127.0.44.1");
    for (answer, wanted) in [
        ((1, ""), "cannot decrypt setup.properties.last.enc"),
        ((0, "hostname=lb\n"), "records no opendj_p12_pass"),
    ] {
        let d = tempfile::tempdir().unwrap();
        let (h, rec) = gluu_host(d.path(), Flavor::Machine, true);
        opendj_node(d.path(), &["keystore.pin"], true);
        rec.answer(0, "running\n");
        rec.answer(answer.0, answer.1);
        let (mut l, _rx) = log();
        let (r, _srv) = dj_req("127.0.44.2", &[("127.0.44.1", 1)], a.cert.pem()).await;
        let boot = boot_check(&h).await.len();
        let e = configure(&ctx_with(h), r, &mut l).await.unwrap_err();
        assert!(e.0.contains(wanted), "{e}");
        // Nothing ran after the record was read.
        assert_eq!(rec.argvs().len(), boot + 1);
    }
}

#[tokio::test]
async fn an_initd_chroot_runs_the_reference_commands_through_chroot() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec) = gluu_host(d.path(), Flavor::InitdChroot, false);
    // No OpenDJ truststore here: nothing to trust, no keytool.
    let c = opendj_node(d.path(), &[], false);
    let (mut l, mut rx) = log();
    let (r, srv) = dj_req(
        "127.0.44.2",
        &[("127.0.44.1", 1)],
        self_signed("127.0.44.1").cert.pem(),
    )
    .await;
    let out = configure(&ctx_with(h), r, &mut l).await.unwrap();
    assert!(out.changed && !out.restarted);
    let argvs = rec.argvs();
    assert_eq!(argvs.len(), 3, "{argvs:#?}");
    let cs = c.display().to_string();
    let dm = after(&argvs[0], "--bindPasswordFile1");
    let rp = after(&argvs[0], "--adminPasswordFile");
    let chroot = |v: &[&str]| -> Vec<String> {
        ["chroot", cs.as_str()]
            .iter()
            .chain(v)
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(
        argvs[0],
        chroot(&[
            DSREPLICATION,
            "enable",
            "--host1",
            "127.0.44.1",
            "--port1",
            &srv.port,
            "--bindDN1",
            "cn=directory manager",
            "--bindPasswordFile1",
            &dm,
            "--replicationPort1",
            "8989",
            "--host2",
            "127.0.44.2",
            "--port2",
            &srv.port,
            "--bindDN2",
            "cn=directory manager",
            "--bindPasswordFile2",
            &dm,
            "--replicationPort2",
            "8989",
            "--adminUID",
            "admin",
            "--adminPasswordFile",
            &rp,
            "--baseDN",
            "o=gluu",
            "-X",
            "-n"
        ])
    );
    assert_eq!(
        argvs[1],
        chroot(&[
            DSCONFIG,
            "--hostname",
            "127.0.44.2",
            "--port",
            &srv.port,
            "--bindDN",
            "cn=directory manager",
            "--bindPasswordFile",
            &dm,
            "--trustAll",
            "--no-prompt",
            "set-crypto-manager-prop",
            "--set",
            "ssl-encryption:true"
        ])
    );
    assert_eq!(
        argvs[2],
        chroot(&[
            DSREPLICATION,
            "initialize-all",
            "--baseDN",
            "o=gluu",
            "--hostname",
            "127.0.44.1",
            "--port",
            &srv.port,
            "--adminUID",
            "admin",
            "--adminPasswordFile",
            &rp,
            "-X",
            "-n"
        ])
    );
    assert!(!c.join(&dm[1..]).exists() && !c.join(&rp[1..]).exists());
    let lines = drain(&mut rx);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("truststore does not exist")),
        "{lines:?}"
    );
    no_secret_anywhere(&rec, &lines);
}

/// A member whose trust needs no change (its OpenDJ truststore holds the primary's directory
/// certificate already), ready to be configured.
async fn settled_member(
    d: &Path,
) -> (
    Host,
    Arc<Recorder>,
    PathBuf,
    ConfigureReplication,
    AdminServers,
) {
    let (h, rec) = gluu_host(d, Flavor::Machine, true);
    let c = opendj_node(d, &["keystore.pin"], false);
    let a = self_signed("127.0.44.1");
    rec.answer(0, "running\n");
    rec.answer(0, &listing(&[peer_alias(a.cert.der().as_ref()).as_str()]));
    let (r, srv) = dj_req("127.0.44.2", &[("127.0.44.1", 1)], a.cert.pem()).await;
    (h, rec, c, r, srv)
}

/// No password file was written under the container's /root and no OpenDJ tool ran.
fn no_password_sent(rec: &Recorder, c: &Path) {
    let argvs = rec.argvs();
    assert!(
        argvs
            .iter()
            .flatten()
            .all(|a| a != DSREPLICATION && a != DSCONFIG),
        "{argvs:#?}"
    );
    let left: Vec<_> = std::fs::read_dir(c.join("root"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_connector_presenting_another_certificate_is_sent_no_password() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec, c, mut r, _srv) = settled_member(d.path()).await;
    // What the primary's node read from itself is not what answers at its address.
    r.admin_connectors[0].certificate_der = self_signed("localhost").cert.der().to_vec();
    let (mut l, mut rx) = log();
    let e = configure(&ctx_with(h), r, &mut l).await.unwrap_err();
    assert!(
        e.0.contains("127.0.44.1:") && e.0.contains("refusing to send"),
        "{e}"
    );
    no_password_sent(&rec, &c);
    no_secret_anywhere(&rec, &drain(&mut rx));
}

#[tokio::test]
async fn a_connector_whose_certificate_is_unknown_is_sent_no_password() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec, c, mut r, _srv) = settled_member(d.path()).await;
    r.admin_connectors.retain(|a| a.host != "127.0.44.2");
    let (mut l, _rx) = log();
    let e = configure(&ctx_with(h), r, &mut l).await.unwrap_err();
    assert!(
        e.0.contains("no administration certificate is known for 127.0.44.2"),
        "{e}"
    );
    no_password_sent(&rec, &c);
}

#[tokio::test]
async fn every_connector_the_tools_contact_is_checked_before_they_run() {
    let d = tempfile::tempdir().unwrap();
    let (h, rec, _c, r, srv) = settled_member(d.path()).await;
    let (mut l, mut rx) = log();
    configure(&ctx_with(h), r, &mut l).await.unwrap();
    let lines = drain(&mut rx);
    for host in ["127.0.44.1", "127.0.44.2"] {
        let at = format!("{host}:{}", srv.port);
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&at) && l.contains("presents the certificate its node read")),
            "{at}: {lines:?}"
        );
    }
    // 127.0.44.3 is a peer the tools of a member do not contact.
    assert!(
        !lines.iter().any(|l| l.contains("127.0.44.3:")),
        "{lines:?}"
    );
    assert!(rec.argvs().iter().flatten().any(|a| a == DSREPLICATION));
}

#[tokio::test]
async fn an_opendj_node_reports_what_its_administration_connector_presents() {
    let d = tempfile::tempdir().unwrap();
    let (h, _rec) = gluu_host(d.path(), Flavor::Machine, true);
    let c = opendj_node(d.path(), &[], false);
    let own = self_signed("localhost");
    write(&c.join("etc/certs/opendj.crt"), &own.cert.pem());
    let admin = self_signed("localhost");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = serve_tls(listener, &admin);
    let (mut l, _rx) = log();
    let out = directory_info(
        &ctx_with(h),
        DirectoryInfo {
            admin_port: port.into(),
        },
        &mut l,
    )
    .await
    .unwrap();
    task.abort();
    assert_eq!(out.kind, "opendj");
    assert_eq!(out.admin_certificate_der, admin.cert.der().to_vec());
    assert_ne!(out.admin_certificate_der, own.cert.der().to_vec());
}
