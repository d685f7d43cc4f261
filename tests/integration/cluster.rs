//! Cluster settings and servers through the real CLI and controller.

use clustermgr_tests::{Agent, Controller, eventually, text};
use std::time::Duration;

const PASSWORD: &str = "Zebra-Quartz 77!$'";

fn configure_ok(ctl: &Controller, dir: &std::path::Path) {
    let pw = dir.join("ldap-pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let rp = dir.join("repl-pw");
    std::fs::write(&rp, "Replic4tion-Pass\n").unwrap();
    let out = ctl.cli(&[
        "cluster",
        "configure",
        "--gluu-version",
        "4.2.3",
        "--lb-hostname",
        "IdP.Example.ORG",
        "--lb-ip",
        "10.0.0.9",
        "--org",
        "Example Org",
        "--country",
        "us",
        "--city",
        "Austin",
        "--state",
        "TX",
        "--admin-email",
        "admin@example.org",
        "--ldap-admin-password-file",
        pw.to_str().unwrap(),
        "--replication-password-file",
        rp.to_str().unwrap(),
        "--ldap-check-period",
        "5m",
        "--manage-hosts",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("Zebra"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn settings_are_validated_field_by_field_and_secrets_never_shown() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let bad: [(&[&str], &str); 8] = [
        (&["--gluu-version", "3.1.6"], "gluu-version"),
        (&["--lb-hostname=-x.example.org"], "lb-hostname"),
        (&["--lb-hostname", "idp"], "lb-hostname"),
        (&["--lb-ip", "300.1.1.1"], "lb-ip"),
        (&["--country", "USA"], "country"),
        (&["--admin-email", "nobody"], "admin-email"),
        (
            &["--ldap-admin-password-file", empty.to_str().unwrap()],
            "ldap-admin-password",
        ),
        (&["--ldap-check-period", "forever"], "ldap-check-period"),
    ];
    for (args, field) in bad {
        let mut a = vec!["cluster", "configure"];
        a.extend_from_slice(args);
        let out = ctl.cli(&a);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(field), "{args:?}: {err}");
        // The controller's validation said it, not the argument parser (whose own errors
        // also exit 2 and name the flag).
        assert!(
            !err.contains("unexpected argument") && !err.contains("Usage:"),
            "{args:?}: refused by the argument parser: {err}"
        );
    }
    // Nothing was stored by the refused calls.
    let shown = ctl.json(&["cluster", "show"]);
    assert_eq!(shown["lb_hostname"], "");
    assert_eq!(shown["ldap_admin_password"], "unset");

    configure_ok(&ctl, dir.path());
    let shown = ctl.json(&["cluster", "show"]);
    assert_eq!(shown["lb_hostname"], "idp.example.org");
    assert_eq!(shown["country"], "US");
    assert_eq!(shown["ldap_admin_password"], "set");
    assert_eq!(shown["replication_password"], "set");
    assert_eq!(shown["manage_hosts"], true);
    assert_eq!(shown["ldap_check_period"], "300s");
    // A partial change keeps the rest.
    ctl.cli_ok(&["cluster", "configure", "--city", "Dallas"]);
    let shown = ctl.json(&["cluster", "show"]);
    assert_eq!(shown["city"], "Dallas");
    assert_eq!(shown["org"], "Example Org");
    assert_eq!(shown["ldap_admin_password"], "set");

    // Gluu's repository for online installs: https only, with an OpenPGP key.
    let http = ctl.cli(&[
        "cluster",
        "configure",
        "--gluu-repo-url",
        "http://repo.gluu.org/debian/",
    ]);
    assert!(
        text(&http.stderr).contains("gluu-repo-url"),
        "{}",
        text(&http.stderr)
    );
    let bad_key = dir.path().join("bad.key");
    std::fs::write(&bad_key, "not a key").unwrap();
    let key = ctl.cli(&[
        "cluster",
        "configure",
        "--gluu-repo-key-file",
        bad_key.to_str().unwrap(),
    ]);
    assert!(
        text(&key.stderr).contains("gluu-repo-key-file"),
        "{}",
        text(&key.stderr)
    );
    let good_key = dir.path().join("gluu.asc");
    std::fs::write(
        &good_key,
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF...\n-----END PGP PUBLIC KEY BLOCK-----\n",
    )
    .unwrap();
    ctl.cli_ok(&[
        "cluster",
        "configure",
        "--gluu-repo-url",
        "https://repo.gluu.org/debian/",
        "--gluu-repo-suite",
        "bookworm",
        "--gluu-repo-key-file",
        good_key.to_str().unwrap(),
    ]);
    let shown = ctl.json(&["cluster", "show"]);
    assert_eq!(shown["gluu_repo_url"], "https://repo.gluu.org/debian/");
    assert_eq!(shown["gluu_repo_key"], "set");

    // The password is nowhere in clear: not in any output, the audit log, the controller's
    // log, or the store file (sealed at rest).
    let table = ctl.cli_ok(&["cluster", "show"]);
    let audit = ctl.cli_ok(&["--output", "json", "audit"]);
    assert!(audit.contains("cluster.configure"), "{audit}");
    let store = std::fs::read(ctl.data.join("state.redb")).unwrap();
    for secret in [PASSWORD, "Replic4tion-Pass"] {
        assert!(!table.contains(secret));
        assert!(!audit.contains(secret));
        assert!(
            !std::fs::read_to_string(ctl.log_path())
                .unwrap()
                .contains(secret)
        );
        assert!(
            !store.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} found in the store file"
        );
    }
}

#[test]
fn servers_join_by_role_and_os_family_and_the_first_is_primary() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut agents = Vec::new();
    for (name, role, os) in [
        ("gluu1.test", "gluu-node", "debian"),
        ("gluu2.test", "gluu-node", "ubuntu"),
        ("gluu3.test", "gluu-node", "rhel"),
        ("lb.test", "lb", "debian"),
    ] {
        let mut a = Agent::new(name);
        std::fs::create_dir_all(a.root.join("etc")).unwrap();
        std::fs::write(
            a.root.join("etc/os-release"),
            format!("ID={os}\nVERSION_ID=\"12\"\nPRETTY_NAME=\"{os} 12\"\n"),
        )
        .unwrap();
        a.join(&ctl, role);
        a.start();
        agents.push(a);
    }
    for a in &agents {
        ctl.wait_status(&a.node_id, "online");
    }
    // Inventories arrive with the hello; wait until every node reports its OS.
    eventually(Duration::from_secs(10), "inventories", || {
        let nodes = ctl.json(&["node", "list"]);
        let known = nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| !n["os"].as_str().unwrap_or("").is_empty())
            .count();
        if known == 4 {
            Ok(())
        } else {
            Err(format!("{known} of 4"))
        }
    });

    ctl.cli_ok(&["server", "add", "gluu1.test"]);
    ctl.cli_ok(&["server", "add", "gluu2.test"]);
    let rhel = ctl.cli(&["server", "add", "gluu3.test"]);
    assert_eq!(rhel.status.code(), Some(2));
    assert!(
        text(&rhel.stderr).contains("another family than the primary gluu1.test"),
        "{}",
        text(&rhel.stderr)
    );
    let lb = ctl.cli(&["server", "add", "lb.test"]);
    assert!(
        text(&lb.stderr).contains("only nodes of role gluu-node"),
        "{}",
        text(&lb.stderr)
    );

    let list = ctl.json(&["server", "list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["hostname"], "gluu1.test");
    assert_eq!(list[0]["primary"], true);
    assert_eq!(list[1]["primary"], false);
    for s in list {
        assert_eq!(s["install_state"], "not-installed");
        assert!(s["components"].is_array());
    }

    ctl.cli_ok(&["server", "make-primary", "gluu2.test"]);
    let list = ctl.json(&["server", "list"]);
    assert_eq!(list[0]["hostname"], "gluu2.test");
    assert_eq!(list[1]["primary"], false);

    ctl.cli_ok(&["server", "remove", "gluu1.test"]);
    assert_eq!(ctl.json(&["server", "list"]).as_array().unwrap().len(), 1);
    let again = ctl.cli(&["server", "remove", "gluu1.test"]);
    assert!(text(&again.stderr).contains("not a server of the cluster"));

    // An install needs the settings first, and says which ones.
    let install = ctl.cli(&["gluu", "install", "--all"]);
    assert_eq!(install.status.code(), Some(2));
    let msg = text(&install.stderr);
    assert!(
        msg.contains("--lb-hostname") && msg.contains("--ldap-admin-password-file"),
        "{msg}"
    );
    assert!(
        ctl.json(&["workflow", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let audit = ctl.cli_ok(&["--output", "json", "audit"]);
    for action in ["server.add", "server.make-primary", "server.remove"] {
        assert!(audit.contains(action), "{action}");
    }
}

#[test]
fn components_are_configured_shown_and_steer_the_cache_and_file_replication() {
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let idp_action = |ctl: &Controller| {
        ctl.json(&["fsrep", "status"])["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["service"] == "idp")
    };
    // Gluu 4.2.3's defaults until configured.
    assert_eq!(
        ctl.json(&["cluster", "show"])["components"],
        serde_json::json!(["oxauth", "oxtrust", "httpd"])
    );
    // Unknown names are refused, listing the valid ones; nothing is stored.
    let out = ctl.cli(&[
        "cluster",
        "configure",
        "--components",
        "oxauth,oxtrust,httpd,shibboleth",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let msg = text(&out.stderr);
    assert!(
        msg.contains("unknown component(s) \"shibboleth\": the components are oxauth,oxtrust,httpd,saml,oxauth-rp,passport,radius,scim,fido2,casa,oxd"),
        "{msg}"
    );
    let out = ctl.cli(&["cluster", "configure", "--components", "saml"]);
    assert!(
        text(&out.stderr).contains("oxauth,oxtrust,httpd cannot be left out"),
        "{}",
        text(&out.stderr)
    );

    // Without Shibboleth no replication action restarts idp; with it, idp and identity.
    ctl.cli_ok(&[
        "cluster",
        "configure",
        "--components",
        "oxauth,oxtrust,httpd",
    ]);
    assert!(!idp_action(&ctl));
    ctl.cli_ok(&[
        "cluster",
        "configure",
        "--components",
        "oxauth, oxtrust, httpd, saml, scim",
    ]);
    let shown = ctl.json(&["cluster", "show"]);
    assert_eq!(
        shown["components"],
        serde_json::json!(["oxauth", "oxtrust", "httpd", "saml", "scim"])
    );
    assert!(idp_action(&ctl));
    let human = ctl.cli_ok(&["cluster", "show"]);
    assert!(human.contains("oxauth"), "{human}");

    // Shibboleth needs the LDAP cache: a Redis cache install is refused.
    let mut cache = Agent::new("cache1.test");
    cache.join(&ctl, "cache");
    cache.start();
    let mut gluu = Agent::new("gluu1.test");
    gluu.join(&ctl, "gluu-node");
    gluu.start();
    ctl.wait_status(&gluu.node_id, "online");
    ctl.cli_ok(&["server", "add", "gluu1.test"]);
    let list = ctl.json(&["server", "list"]);
    assert_eq!(
        list[0]["components"],
        serde_json::json!(["oxauth", "oxtrust", "httpd", "saml", "scim"]),
        "{list}"
    );
    assert!(list[0]["installed_components"].is_array(), "{list}");
    let shown = ctl.json(&["node", "show", "gluu1.test"]);
    assert_eq!(
        shown["components"],
        serde_json::json!(["oxauth", "oxtrust", "httpd", "saml", "scim"]),
        "{shown}"
    );
    assert!(
        ctl.json(&["node", "show", "cache1.test"])
            .get("components")
            .is_none()
    );
    let out = ctl.cli(&["cache", "install", "cache1.test", "--dry-run"]);
    assert!(
        text(&out.stderr).contains("Shibboleth (saml) is one of the cluster's components"),
        "{}",
        text(&out.stderr)
    );
    let audit = ctl.cli_ok(&["--output", "json", "audit"]);
    assert!(audit.contains("fsrep.actions.add"), "{audit}");
}
