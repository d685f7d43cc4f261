//! End-to-end tests of the Gluu Server stand-in's services, in its machine.
//!
//! Each test installs the package under its own ROOT with `dpkg --root` (as the agent does on a
//! sandbox host: the postinst boots the machine), waits for the machine to finish booting, runs
//! setup.py inside it (`nsenter --target LEADER --all -r -w -- setup.py ...`), and checks the
//! result with real clients: OpenLDAP's tools inside the machine and `curl` from the host, both
//! on the node's own loopback address (the machine shares the host's network). Every node has
//! its own address, so tests run in parallel; each node's machine is stopped by a drop guard. Needs root and systemd-nspawn (see
//! `support::prerequisites`; under CI=true a missing one fails the test).

mod support;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use support::tokens::{introspect, issue_token, last_text, token_cache_key, verify_jwt};
use support::{HOSTNAME, HTTPS_PORT, Node, attr, prerequisites, run, run_ok, text, wait_for};

// ---------------------------------------------------------------- tests

#[test]
fn primary_node_runs_in_its_machine() {
    if !prerequisites(&[]) {
        return;
    }
    let node = Node::install("127.77.0.11");

    // What the package put on the host (the agent detects the machine flavor by the unit).
    let unit =
        fs::read_to_string(node.path("lib/systemd/system/systemd-nspawn@gluu-server.service"))
            .expect("the package's unit");
    assert!(
        unit.contains("Type=notify")
            && unit.contains("systemd-nspawn --quiet --boot --link-journal=try-guest -D /opt/gluu-server --machine=%I")
            && unit.contains("WantedBy=machines.target"),
        "{unit}"
    );
    let wants =
        node.path("etc/systemd/system/machines.target.wants/systemd-nspawn@gluu-server.service");
    assert!(
        fs::symlink_metadata(&wants).is_ok(),
        "the postinst enables the unit (gluu-serverd enable)"
    );
    let public =
        fs::read_to_string(node.path("etc/gluu/keys/gluu-console.pub")).expect("console key");
    assert!(node.path("etc/gluu/keys/gluu-console").is_file());
    assert_eq!(
        fs::read_to_string(node.container("root/.ssh/authorized_keys")).expect("authorized_keys"),
        public
    );
    assert_eq!(
        fs::read_link(node.path("var/lib/container/gluu-server")).expect("container link"),
        Path::new("/opt/gluu-server")
    );
    assert!(
        !node.container("etc/init.d/opendj").exists(),
        "a 4.2.3 machine has no /etc/init.d/opendj"
    );

    // The postinst started the machine: its systemd is PID 1 of its own PID namespace.
    let leader = node.wait_booted();
    assert_eq!(
        fs::read_to_string(format!("/proc/{leader}/comm"))
            .unwrap_or_default()
            .trim(),
        "systemd"
    );
    assert_eq!(
        run_ok(&mut node.exec(&["cat", "/proc/1/comm"])).trim(),
        "systemd",
        "inside, the machine's systemd is PID 1"
    );
    // Shipped, not enabled: nothing answers before setup.
    let enabled = run(&mut node.exec(&["systemctl", "is-enabled", "oxauth.service"]));
    assert_eq!(String::from_utf8_lossy(&enabled.stdout).trim(), "disabled");
    for port in [1636, HTTPS_PORT] {
        node.refuses(port).expect("nothing answers before setup");
    }

    let out = node.setup(&[], false);
    assert!(out.status.success(), "setup.py: {}", text(&out));
    // Setup enabled and started the units with the machine's systemctl.
    assert_eq!(
        run_ok(&mut node.exec(&["systemctl", "is-active", "opendj", "oxauth", "identity"])),
        "active\nactive\nactive\n"
    );
    assert_eq!(
        run_ok(&mut node.exec(&["systemctl", "is-enabled", "opendj", "oxauth", "identity"])),
        "enabled\nenabled\nenabled\n"
    );
    assert!(
        node.container("etc/systemd/system/opendj.service")
            .is_file()
    );
    assert!(node.container("opt/gluu/bin/show_version.py").is_file());

    // The files a cluster manager relies on, by their host paths. As Gluu 4.2.3 does, setup
    // leaves setup.properties.last only encrypted with the setup password.
    assert!(
        !node
            .container("install/community-edition-setup/setup.properties.last")
            .exists(),
        "the plaintext setup.properties.last must be deleted"
    );
    let last = last_text(&node);
    assert!(last.contains("hostname=lb.example.org"), "{last}");
    assert!(last.contains("ip=127.77.0.11"), "{last}");
    // Every component switch: those given (oxAuth, oxTrust, Shibboleth), the others as Gluu
    // 4.2.3's defaults.
    for kv in [
        "installOxAuth=True",
        "installOxTrust=True",
        "installHttpd=True",
        "installSaml=True",
        "installPassport=False",
        "installCasa=False",
        "installOxd=False",
    ] {
        assert!(last.lines().any(|l| l == kv), "{kv}: {last}");
    }
    let wrong = node.decrypted_last("not the password");
    assert!(
        !wrong.status.success() || !String::from_utf8_lossy(&wrong.stdout).contains("hostname="),
        "a wrong password must not decrypt it"
    );
    let record = node.container("opt/gluu/standin/node.properties");
    let mode = fs::metadata(&record)
        .expect("node record")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the node record must be private");
    for f in [
        "etc/certs/httpd.crt",
        "etc/certs/httpd.key",
        "etc/certs/shibIDP.crt",
        "etc/certs/shibIDP.key",
        "etc/certs/idp-encryption.crt",
        "etc/certs/idp-encryption.key",
        "etc/certs/idp-signing.crt",
        "etc/certs/passport-sp.crt",
        "etc/certs/opendj.crt",
        "etc/certs/openldap.crt",
        "etc/certs/oxauth-keys.json",
        "install/community-edition-setup/output/scim-rp.jks",
        "opt/shibboleth-idp/metadata/idp-metadata.xml",
    ] {
        assert!(node.container(f).is_file(), "{f} missing");
    }
    assert_eq!(
        fs::read(node.container("etc/certs/opendj.crt")).expect("opendj.crt"),
        fs::read(node.container("etc/certs/openldap.crt")).expect("openldap.crt"),
        "opendj.crt is the directory's certificate"
    );
    let ldap_props = fs::read_to_string(node.container("etc/gluu/conf/gluu-ldap.properties"))
        .expect("gluu-ldap.properties");
    assert!(
        ldap_props.contains("servers: 127.77.0.11:1636"),
        "{ldap_props}"
    );

    // keytool, run inside the machine, on the JRE's trust store setup filled.
    let keytool = |args: &[&str]| {
        let mut argv = vec!["/opt/jre/bin/keytool"];
        argv.extend_from_slice(args);
        run(&mut node.exec(&argv))
    };
    const CACERTS: &str = "/opt/jre/lib/security/cacerts";
    let list = keytool(&["-list", "-storepass", "changeit", "-keystore", CACERTS]);
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    for suffix in ["httpd", "shibidp", "idp-encryption", "opendj"] {
        assert!(
            list.contains(&format!("{HOSTNAME}_{suffix}, trustedCertEntry")),
            "{suffix}: {list}"
        );
    }
    let out = keytool(&[
        "-delete",
        "-alias",
        "nope",
        "-keystore",
        CACERTS,
        "-storepass",
        "changeit",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Alias <nope> does not exist"));
    let httpd_alias = format!("{HOSTNAME}_httpd");
    let out = keytool(&[
        "-delete",
        "-alias",
        &httpd_alias,
        "-keystore",
        CACERTS,
        "-storepass",
        "wrong",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let upper = format!("{}_HTTPD", HOSTNAME.to_uppercase());
    let import = |alias: &str| {
        keytool(&[
            "-import",
            "-trustcacerts",
            "-alias",
            alias,
            "-file",
            "/etc/certs/httpd.crt",
            "-keystore",
            CACERTS,
            "-storepass",
            "changeit",
            "-noprompt",
        ])
    };
    assert!(String::from_utf8_lossy(&import(&upper).stdout).contains("already exists"));
    let out = keytool(&[
        "-delete",
        "-alias",
        &httpd_alias,
        "-keystore",
        CACERTS,
        "-storepass",
        "changeit",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = import(&httpd_alias);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Certificate was added to keystore"),
        "{}",
        text(&out)
    );

    // LDAPS with OpenLDAP's client, as the directory manager.
    let out = node.ldapsearch(
        "ou=oxauth,ou=configuration,o=gluu",
        "base",
        &["oxAuthConfWebKeys", "oxRevision", "oxAuthConfDynamic"],
    );
    assert!(out.status.success(), "ldapsearch: {}", text(&out));
    let ldif = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(attr(&ldif, "oxRevision"), Some("1"), "{ldif}");
    let web_keys: Value =
        serde_json::from_str(attr(&ldif, "oxAuthConfWebKeys").expect("oxAuthConfWebKeys"))
            .expect("jwks");
    assert!(attr(&ldif, "oxAuthConfDynamic").is_some());
    let out = node.ldapsearch(
        "ou=configuration,o=gluu",
        "base",
        &[
            "gluuHostname",
            "oxCacheConfiguration",
            "oxIDPAuthentication",
        ],
    );
    let ldif = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(attr(&ldif, "gluuHostname"), Some(HOSTNAME), "{ldif}");
    assert!(attr(&ldif, "oxCacheConfiguration").is_some_and(|c| c.contains("NATIVE_PERSISTENCE")));
    for base in ["ou=people,o=gluu", "ou=clients,o=gluu", "o=site"] {
        let out = node.ldapsearch(base, "base", &["dn"]);
        assert!(out.status.success(), "{base} missing");
    }
    // Anonymous clients see nothing; a wrong password is refused.
    let url = format!("ldaps://{}:1636", node.ip);
    let anon = run(&mut node.exec(&[
        "env",
        "LDAPTLS_CACERT=/etc/certs/openldap.crt",
        "ldapsearch",
        "-H",
        &url,
        "-x",
        "-LLL",
        "-b",
        "o=gluu",
        "-s",
        "base",
    ]));
    assert!(String::from_utf8_lossy(&anon.stdout).trim().is_empty());
    let wrong = run(&mut node.exec(&[
        "env",
        "LDAPTLS_CACERT=/etc/certs/openldap.crt",
        "ldapwhoami",
        "-H",
        &url,
        "-x",
        "-D",
        "cn=directory manager",
        "-w",
        "wrong",
    ]));
    assert!(!wrong.status.success());

    // HTTPS from the host.
    let (code, disco) = node.get_json("/.well-known/openid-configuration");
    assert_eq!(code, 200);
    assert_eq!(disco["issuer"], format!("https://{HOSTNAME}:{HTTPS_PORT}"));
    let (code, health) = node.get_json("/oxauth/restv1/health-check");
    assert_eq!(
        (code, health["status"].as_str()),
        (200, Some("running")),
        "{health}"
    );
    let (code, jwks) = node.get_json("/oxauth/restv1/jwks");
    assert_eq!(code, 200);
    assert_eq!(jwks, web_keys, "/jwks serves oxAuthConfWebKeys");
    let (code, _, xml) = node.curl("/idp/shibboleth", &[]);
    assert_eq!(code, 200);
    assert!(xml.contains("<ds:X509Certificate>"), "{xml}");
    let (code, head, body) = node.curl("/identity", &[]);
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("set-cookie: jsessionid="),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("x-gluu-node: 127.77.0.11"),
        "{head}"
    );
    let who: Value = serde_json::from_str(&body).expect("identity json");
    assert_eq!(who["node"], "127.77.0.11");
    let (code, _, _) = node.curl(
        "/oxauth/restv1/token",
        &["-d", "grant_type=client_credentials"],
    );
    assert_eq!(code, 401, "a token needs client authentication");
    let token = issue_token(&node);
    let claims = verify_jwt(&token, &jwks);
    assert_eq!(claims["client_id"], "test-client");
    let info = introspect(&node, &token);
    assert_eq!(info["active"], true, "{info}");
    // NATIVE_PERSISTENCE: the token is an entry under ou=cache,o=gluu.
    let key = token_cache_key(&token);
    let out = node.ldapsearch(&format!("uuid={key},ou=cache,o=gluu"), "base", &["exp"]);
    assert!(
        out.status.success(),
        "token not in ou=cache: {}",
        text(&out)
    );

    // Logs at the usual paths, read by their host paths.
    let oxauth_log = fs::read_to_string(node.container("opt/gluu/jetty/oxauth/logs/oxauth.log"))
        .expect("oxauth.log");
    assert!(
        oxauth_log.contains("\"POST /oxauth/restv1/token\" 200"),
        "{oxauth_log}"
    );
    let oxtrust_log =
        fs::read_to_string(node.container("opt/gluu/jetty/identity/logs/oxtrust.log"))
            .expect("oxtrust.log");
    assert!(oxtrust_log.contains("GET /identity"));
    let access = fs::read_to_string(node.container("opt/opendj/logs/access")).expect("access log");
    assert!(
        access.contains("BIND dn=\"cn=directory manager\""),
        "access log lacks binds"
    );
    let errors = fs::read_to_string(node.container("opt/opendj/logs/errors")).expect("errors log");
    assert!(errors.contains("slapd started"), "{errors}");

    // One service restarted by the machine's systemctl answers again when the command returns.
    run_ok(&mut node.exec(&["systemctl", "restart", "oxauth"]));
    assert_eq!(node.get_json("/oxauth/restv1/health-check").0, 200);

    // The machine: status, restart, stop, start.
    let st = node.serverd("status");
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    assert!(String::from_utf8_lossy(&st.stdout).contains("Active: active (running)"));
    let restarted = Instant::now();
    let out = node.serverd("restart");
    assert!(out.status.success(), "{}", text(&out));
    let again = node.wait_booted();
    assert_ne!(again, leader, "a new machine");
    let (code, _) = node.get_json("/oxauth/restv1/health-check");
    assert_eq!(code, 200, "the enabled units start at boot");
    eprintln!("restart to answering: {:?}", restarted.elapsed());

    let stopping = Instant::now();
    let out = node.serverd("stop");
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("stop: {:?}", stopping.elapsed());
    assert_eq!(
        node.processes(),
        Vec::<String>::new(),
        "processes left after stop"
    );
    for port in [1636, HTTPS_PORT] {
        node.refuses(port).expect("stop stops every service");
    }
    let st = node.serverd("status");
    assert_eq!(st.status.code(), Some(3), "{}", text(&st));
    assert!(String::from_utf8_lossy(&st.stdout).contains("Active: inactive (dead)"));
    assert_eq!(node.serverd("ready").status.code(), Some(0));

    let out = node.serverd("start");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(node.serverd("ready").status.code(), Some(1));
    node.wait_booted();
    let (code, _) = node.get_json("/oxauth/restv1/health-check");
    assert_eq!(code, 200);
}

#[test]
fn jwks_follows_web_keys_and_revision() {
    if !prerequisites(&[]) {
        return;
    }
    let node = Node::install_and_setup("127.77.0.12", false);
    let (_, before) = node.get_json("/oxauth/restv1/jwks");

    // A new signing key: private part in the keys file, public part in oxAuthConfWebKeys.
    let pem = run_ok(Command::new("openssl").args([
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
    ]));
    let der = rustls_pemfile::private_key(&mut pem.as_bytes())
        .expect("pem")
        .expect("a key");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_der()).expect("pkcs8");
    let comps = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(
        ring::signature::KeyPair::public_key(&pair),
    );
    let strip = |b: &[u8]| b[b.iter().position(|x| *x != 0).unwrap_or(0)..].to_vec();
    let kid = format!("rotated-{}", rand::random::<u32>());
    let new_keys = json!({"keys": [{
        "kid": kid, "kty": "RSA", "use": "sig", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(strip(&comps.n)),
        "e": URL_SAFE_NO_PAD.encode(strip(&comps.e)),
    }]});
    let keys_file = node.container("etc/certs/oxauth-keys.json");
    let mut private: HashMap<String, String> =
        serde_json::from_str(&fs::read_to_string(&keys_file).expect("keys file"))
            .expect("keys json");
    private.insert(kid.clone(), pem);
    fs::write(&keys_file, serde_json::to_string(&private).expect("json")).expect("write keys");

    // Changing the keys without bumping oxRevision changes nothing, even after polls that
    // started after the change.
    let polls = || node.get_json("/oxauth/restv1/health-check").1["configuration_polls"].as_u64();
    node.ldapmodify(&format!(
        "dn: ou=oxauth,ou=configuration,o=gluu\nchangetype: modify\nreplace: oxAuthConfWebKeys\noxAuthConfWebKeys: {new_keys}\n"
    ));
    let after_change = polls().expect("configuration_polls");
    wait_for(
        "two polls after the change",
        Duration::from_secs(30),
        || polls().filter(|p| *p >= after_change + 2),
    );
    let (_, same) = node.get_json("/oxauth/restv1/jwks");
    assert_eq!(
        same, before,
        "keys must only reload on an oxRevision change"
    );

    node.ldapmodify("dn: ou=oxauth,ou=configuration,o=gluu\nchangetype: modify\nreplace: oxRevision\noxRevision: 2\n");
    let bumped = Instant::now();
    let jwks = wait_for(
        "/jwks to follow oxRevision",
        Duration::from_secs(30),
        || {
            let (_, j) = node.get_json("/oxauth/restv1/jwks");
            (j == new_keys).then_some(j)
        },
    );
    eprintln!("jwks followed oxRevision in {:?}", bumped.elapsed());
    // The new token is signed with the new key (the JWKS now holds only that kid).
    let token = issue_token(&node);
    verify_jwt(&token, &jwks);
}

#[test]
fn no_data_setup_leaves_directory_empty() {
    if !prerequisites(&[]) {
        return;
    }
    let node = Node::install_and_setup("127.77.0.15", true);
    for base in ["o=gluu", "o=site"] {
        let out = node.ldapsearch(base, "sub", &["dn"]);
        assert_eq!(
            out.status.code(),
            Some(32),
            "{base} should not exist (stdout {}, stderr {})",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The directory server itself is up and the admin can bind.
    let who = run(&mut node.ldap_tool("ldapwhoami", &[]));
    assert!(
        who.status.success(),
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );
    // Services run, oxAuth waits for its configuration.
    assert_eq!(
        run_ok(&mut node.exec(&["systemctl", "is-active", "opendj", "oxauth", "identity"])),
        "active\nactive\nactive\n"
    );
    let (code, health) = node.get_json("/oxauth/restv1/health-check");
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["configuration"], "missing");
    let last = last_text(&node);
    assert!(last.contains("loadData=False"), "{last}");
}

#[test]
fn setup_rejects_bad_input() {
    if !prerequisites(&[]) {
        return;
    }
    let node = Node::install("127.77.0.16");
    node.wait_booted();
    let last = node.container("install/community-edition-setup/setup.properties.last.enc");
    let setup = |props: &str| {
        run(&mut node.exec(&[
            "/install/community-edition-setup/setup.py",
            "-f",
            props,
            "-n",
        ]))
    };

    // Missing required keys: named in the message.
    node.write_props(&[]);
    let full = fs::read_to_string(node.container(support::PROPS_INSIDE)).expect("props");
    let partial: String = full
        .lines()
        .filter(|l| !l.starts_with("ldapPass=") && !l.starts_with("city="))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(node.container("root/partial.properties"), partial).expect("write");
    let out = setup("/root/partial.properties");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("missing required key(s): ldapPass, city"),
        "{err}"
    );

    // Unreadable properties files: missing, and a directory.
    for bad in ["/root/nope.properties", "/root"] {
        let out = setup(bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("cannot read properties file"), "{err}");
    }

    // A malformed value.
    node.write_props(&[("ip", "not-an-ip")]);
    let out = setup(support::PROPS_INSIDE);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an IP address"));

    // Unknown flags are refused too (the old stand-in's --root among them).
    for flag in ["--bogus", "--root"] {
        let out = run(&mut node.exec(&["/install/community-edition-setup/setup.py", flag, "/"]));
        assert!(!out.status.success(), "{flag}: {}", text(&out));
    }

    assert!(
        !last.exists() && !node.container("opt/gluu/standin/node.properties").exists(),
        "a failed setup must not record an installation"
    );
    let enabled = run(&mut node.exec(&["systemctl", "is-enabled", "oxauth", "identity"]));
    assert_eq!(
        String::from_utf8_lossy(&enabled.stdout),
        "disabled\ndisabled\n",
        "a failed setup enables nothing"
    );
    assert!(
        !node.container("etc/systemd/system/opendj.service").exists(),
        "a failed setup writes no unit"
    );
}
