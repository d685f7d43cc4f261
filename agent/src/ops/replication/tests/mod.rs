//! Replication's unit tests: rendering and parsing here, each directory's operations with the
//! exact argv per Gluu packaging in [`on_openldap`] and [`on_opendj`].

mod on_opendj;
mod on_openldap;

use super::openldap::HEADER;
use super::*;
use crate::host::{Host, PackageFormat, PackageMode, Recorder, Runner};
use crate::ops::gluu::Flavor;
use crate::ops::gluu::layout::fixture::{install, start_machine};
use clustermgr_proto::ReplicationPeer;
use std::path::Path;
use std::sync::Arc;

/// The fake leader PID of a started test machine.
const PID: u32 = 4242;

/// A host under `root` whose Gluu is of `flavor` (a machine is started: its leader is [`PID`]),
/// recording the commands it runs.
fn gluu_host(root: &Path, flavor: Flavor, started: bool) -> (Host, Arc<Recorder>) {
    install(root, flavor);
    let proc = root.join("proc");
    std::fs::create_dir_all(&proc).unwrap();
    if started {
        start_machine(root, &proc, PID);
    }
    let rec = Arc::new(Recorder::default());
    (
        Host {
            root: root.to_path_buf(),
            packages: PackageMode::System,
            format: Some(PackageFormat::Deb),
            runner: Runner::Recording(rec.clone()),
            proc,
        },
        rec,
    )
}

/// argv of `inside` run in the started test machine.
fn nsenter(inside: &[&str]) -> Vec<String> {
    let pid = PID.to_string();
    [
        "nsenter",
        "--target",
        pid.as_str(),
        "--all",
        "-r",
        "-w",
        "--",
    ]
    .iter()
    .chain(inside)
    .map(|s| s.to_string())
    .collect()
}

/// What the layout runs to be sure the started test machine runs (its boot check), as it
/// records it: an operation that runs something inside Gluu starts with it. Its first command
/// is answered "running", as the tests script their recorders.
async fn boot_check(host: &Host) -> Vec<Vec<String>> {
    let rec = Arc::new(Recorder::default());
    rec.answer(0, "running\n");
    let mut h = host.clone();
    h.runner = Runner::Recording(rec.clone());
    let (mut l, _rx) = crate::ops::tests::log();
    Layout::detect(&h)
        .unwrap()
        .ensure_running(&h, &mut l)
        .await
        .unwrap();
    let argvs = rec.argvs();
    assert!(!argvs.is_empty(), "a machine's boot is checked inside it");
    argvs
}

/// `argvs` after the boot check.
async fn after_boot(host: &Host, argvs: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut all = boot_check(host).await;
    all.extend(argvs);
    all
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn self_signed(name: &str) -> rcgen::CertifiedKey<rcgen::KeyPair> {
    rcgen::generate_simple_self_signed(vec![name.into()]).unwrap()
}

fn req(peers: &[(&str, u32)]) -> ConfigureReplication {
    ConfigureReplication {
        host: "10.0.0.1".into(),
        port: 1636,
        server_id: 1,
        peers: peers
            .iter()
            .map(|(h, id)| ReplicationPeer {
                host: h.to_string(),
                port: 1636,
                server_id: *id,
            })
            .collect(),
        bases: vec!["o=gluu".into(), "o=site".into()],
        replicator_dn: "cn=replicator,o=site".into(),
        replicator_password: b"a! b'$\"c\\d".to_vec(),
        admin_password: b"admin".to_vec(),
        ca_pem: self_signed("x").cert.pem(),
        ..Default::default()
    }
}

#[test]
fn hooks_quote_the_password_and_number_the_consumers() {
    let h = render_hooks(&req(&[("10.0.0.3", 3), ("10.0.0.2", 2)]), "/e/ca.pem").unwrap();
    assert_eq!(h.global, format!("{HEADER}serverID 1\n"));
    assert_eq!(h.bases[0].0, "replication-gluu.conf");
    assert_eq!(h.bases[1].0, "replication-site.conf");
    let gluu = &h.bases[0].1;
    let want = "syncrepl rid=002 provider=ldaps://10.0.0.2:1636 bindmethod=simple \
                binddn=\"cn=replicator,o=site\" credentials=\"a! b'$\\\"c\\\\d\" \
                searchbase=\"o=gluu\" type=refreshAndPersist retry=\"1 10 5 +\" timeout=3 \
                tls_cacert=\"/e/ca.pem\" tls_reqcert=demand\n";
    assert!(gluu.contains(want), "{gluu}");
    assert!(gluu.contains("rid=003 provider=ldaps://10.0.0.3:1636"));
    assert!(
        h.bases[1]
            .1
            .contains("rid=102 provider=ldaps://10.0.0.2:1636")
    );
    assert!(gluu.ends_with("multiprovider on\n"));
    assert!(gluu.starts_with(&format!(
        "{HEADER}access to dn.exact=\"cn=replicator,o=site\" attrs=userPassword by anonymous auth by * break\n"
    )));
    assert_eq!(partners(gluu), ["10.0.0.2:1636", "10.0.0.3:1636"]);
    assert_eq!(server_id(&h.global), 1);
    assert!(h.ca.is_some());
    // IPv6 peers are bracketed.
    let h = render_hooks(&req(&[("fd00::2", 2)]), "/e/ca.pem").unwrap();
    assert!(h.bases[0].1.contains("provider=ldaps://[fd00::2]:1636 "));
}

#[test]
fn no_peer_means_no_directive_and_bad_requests_are_refused() {
    let h = render_hooks(&req(&[]), "/ca").unwrap();
    assert_eq!(h.global, HEADER);
    assert!(h.bases.iter().all(|(_, t)| t == HEADER));
    assert!(h.ca.is_none());
    let mut r = req(&[("10.0.0.2", 1)]);
    assert!(render_hooks(&r, "/ca").unwrap_err().0.contains("twice"));
    r = req(&[("10.0.0.2", 2)]);
    r.ca_pem = String::new();
    assert!(render_hooks(&r, "/ca").unwrap_err().0.contains("CA bundle"));
    r = req(&[("bad host; x", 2)]);
    assert!(render_hooks(&r, "/ca").is_err());
    r = req(&[("10.0.0.2", 2)]);
    r.replicator_password = b"line\nbreak".to_vec();
    assert!(
        render_hooks(&r, "/ca")
            .unwrap_err()
            .0
            .contains("line break")
    );
    r = req(&[("10.0.0.2", 2)]);
    r.bases = vec!["ou=x".into()];
    assert!(render_hooks(&r, "/ca").is_err());
}

#[test]
fn ssha_round_trip() {
    let h = ssha(b"pw ! $");
    assert!(ssha_matches(&h, b"pw ! $"));
    assert!(!ssha_matches(&h, b"pw"));
    assert!(!ssha_matches("{SHA}xx", b"pw"));
}

#[test]
fn properties_keep_everything_else() {
    let text =
        "# c\nbindDN: cn=directory manager\r\nservers:  10.0.0.1:1636\nuseSSL: true\nno newline";
    let new = set_property(text, "servers", "a:1636,b:1636").unwrap();
    assert_eq!(
        new,
        "# c\nbindDN: cn=directory manager\r\nservers:  a:1636,b:1636\nuseSSL: true\nno newline"
    );
    assert_eq!(set_property(&new, "servers", "a:1636,b:1636").unwrap(), new);
    assert!(set_property(text, "server", "x").is_none());
    let shib = "idp.authn.LDAP.ldapURL = ldaps://localhost:1636\nx=1\n";
    assert_eq!(
        set_property(shib, SHIB_LDAP_URL, "ldaps://a:1636 ldaps://b:1636").unwrap(),
        "idp.authn.LDAP.ldapURL = ldaps://a:1636 ldaps://b:1636\nx=1\n"
    );
}

#[test]
fn idp_servers_object_or_string() {
    let servers = vec!["a:1636".to_string(), "b:1636".to_string()];
    let v = vec![
        r#"{"type":"auth","config":{"configId":"auth_ldap_server","servers":["localhost:1636"]}}"#
            .to_string(),
    ];
    let new = idp_values(&v, &servers).unwrap().unwrap();
    let j: serde_json::Value = serde_json::from_str(&new[0]).unwrap();
    assert_eq!(j["config"]["servers"], serde_json::json!(servers));
    assert_eq!(j["config"]["configId"], "auth_ldap_server");
    assert!(idp_values(&new, &servers).unwrap().is_none());
    let s = vec![r#"{"config":"{\"servers\":[\"x:1\"]}"}"#.to_string()];
    let new = idp_values(&s, &servers).unwrap().unwrap();
    assert!(
        new[0].contains(r#"\"servers\":[\"a:1636\",\"b:1636\"]"#),
        "{new:?}"
    );
}

#[test]
fn peer_entries_are_named_by_fingerprint_once_each() {
    let (a, b) = (self_signed("a"), self_signed("b"));
    let bundle = format!("{}{}{}", a.cert.pem(), b.cert.pem(), a.cert.pem());
    let certs = truststore::peer_certs(&bundle, true).unwrap();
    assert_eq!(certs.len(), 2, "the duplicate is trusted once");
    assert_eq!(certs[0].alias, peer_alias(a.cert.der().as_ref()));
    assert_eq!(certs[1].alias, peer_alias(b.cert.der().as_ref()));
    assert!(
        certs[0].alias.starts_with(PEER_ALIAS) && certs[0].alias.len() == PEER_ALIAS.len() + 16
    );
    assert_ne!(certs[0].alias, certs[1].alias);
    // What keytool gets is the same certificate.
    let back = clustermgr_shared::tls::certs_from_pem(&certs[1].pem).unwrap();
    assert_eq!(back[0].as_ref(), b.cert.der().as_ref());
    // No bundle: nothing to trust, unless there are peers to verify.
    assert!(truststore::peer_certs(" \n", false).unwrap().is_empty());
    let e = truststore::peer_certs("", true).unwrap_err();
    assert!(e.0.contains("no certificate"), "{e}");
    assert!(truststore::peer_certs("not pem", false).is_err());
}

#[test]
fn keytool_listings_give_only_our_entries() {
    let list = "Keystore type: JKS\nKeystore provider: SUN\n\nYour keystore contains 3 entries\n\n\
                server-cert, Dec 7, 2026, PrivateKeyEntry, \n\
                Certificate fingerprint (SHA-256): AA:BB\n\
                Clustermgr-Peer-00112233aabbccdd, Dec 7, 2026, trustedCertEntry, \n\
                clustermgr-peer-ffeeddccbbaa9988, Dec 7, 2026, trustedCertEntry, \n";
    let got: Vec<String> = truststore::owned_aliases(list).into_iter().collect();
    assert_eq!(
        got,
        [
            "clustermgr-peer-00112233aabbccdd",
            "clustermgr-peer-ffeeddccbbaa9988"
        ]
    );
    assert!(truststore::owned_aliases("").is_empty());
}

#[test]
fn setup_properties_values_are_unescaped() {
    let text = "#Tue Dec 07 2026\n! comment\nhostname=lb.example.org\n\
                opendj_p12_pass=Ab\\:c\\=d\\\\e\\u0041\n\
                spaced : x y \nbare value\nopendj_p12_pass_other=no\n";
    assert_eq!(
        truststore::property(text, "opendj_p12_pass").as_deref(),
        Some("Ab:c=d\\eA")
    );
    assert_eq!(
        truststore::property(text, "spaced").as_deref(),
        Some("x y ")
    );
    assert_eq!(truststore::property(text, "bare").as_deref(), Some("value"));
    assert_eq!(
        truststore::property(text, "hostname").as_deref(),
        Some("lb.example.org")
    );
    assert_eq!(truststore::property(text, "missing"), None);
    assert_eq!(truststore::property(text, "comment"), None);
}
