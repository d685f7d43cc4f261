//! OpenDJ: the exact commands per packaging, the truststores, the password files.

use super::*;
use crate::ops::tests::{ctx_with, log};
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

/// The request for node `host` of a set whose primary is 10.0.0.1.
fn dj_req(host: &str, peers: &[(&str, u32)], bundle: String) -> ConfigureReplication {
    let mut r = req(peers);
    r.host = host.into();
    r.server_id = 2;
    r.replicator_password = REPL.as_bytes().to_vec();
    r.admin_password = DM.as_bytes().to_vec();
    r.bases = vec!["o=gluu".into()];
    r.primary = Some(ReplicationPeer {
        host: "10.0.0.1".into(),
        port: 1636,
        server_id: 1,
    });
    r.ca_pem = bundle;
    r
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
    let (a, b) = (self_signed("10.0.0.1"), self_signed("10.0.0.3"));
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
    let r = dj_req(
        "10.0.0.2",
        &[("10.0.0.1", 1), ("10.0.0.3", 3)],
        format!("{}{}", a.cert.pem(), b.cert.pem()),
    );
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
            "10.0.0.1",
            "--port1",
            "4444",
            "--bindDN1",
            "cn=directory manager",
            "--bindPasswordFile1",
            &dm,
            "--replicationPort1",
            "8989",
            "--host2",
            "10.0.0.2",
            "--port2",
            "4444",
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
            "10.0.0.2",
            "--port",
            "4444",
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
            "10.0.0.1",
            "--port",
            "4444",
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
    let (b, c3) = (self_signed("10.0.0.2"), self_signed("10.0.0.3"));
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
    let r = dj_req(
        "10.0.0.1",
        &[("10.0.0.2", 2), ("10.0.0.3", 3)],
        format!("{}{}", b.cert.pem(), c3.cert.pem()),
    );
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
            "10.0.0.1",
            "--port",
            "4444",
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
    let a = self_signed("10.0.0.1");
    let aa = peer_alias(a.cert.der().as_ref());
    rec.answer(0, "running\n");
    rec.answer(0, &listing(&[]));
    let ctx = ctx_with(h.clone());
    let layout = Layout::detect(&ctx.host).unwrap();
    let (mut l, _rx) = log();
    let mut r = dj_req("10.0.0.2", &[("10.0.0.1", 1)], a.cert.pem());
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
    let r = dj_req("10.0.0.3", &[], String::new());
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
            "10.0.0.3",
            "--port",
            "4444",
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
    let a = self_signed("10.0.0.1");
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
        let r = dj_req("10.0.0.2", &[("10.0.0.1", 1)], a.cert.pem());
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
    let r = dj_req(
        "10.0.0.2",
        &[("10.0.0.1", 1)],
        self_signed("10.0.0.1").cert.pem(),
    );
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
            "10.0.0.1",
            "--port1",
            "4444",
            "--bindDN1",
            "cn=directory manager",
            "--bindPasswordFile1",
            &dm,
            "--replicationPort1",
            "8989",
            "--host2",
            "10.0.0.2",
            "--port2",
            "4444",
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
            "10.0.0.2",
            "--port",
            "4444",
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
            "10.0.0.1",
            "--port",
            "4444",
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
