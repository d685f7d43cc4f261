//! The inventory an agent reports for a host with the Gluu Server (stand-in) package: found by
//! the package database and the container layout, and "installed" once setup has run inside
//! the machine.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use clustermgr_tests::{Agent, Controller, free_port, machine, standin_deb, text};
use std::path::Path;

/// The setup password. `=` is escaped in a properties file, so the form setup.properties.last
/// stores differs from the plain one.
const LDAP_PASS: &str = "Adm1n=pass!";

/// The value after `prefix` on the first line of `file` that starts with it.
fn stored_value(file: &Path, prefix: &str) -> String {
    let content = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    content
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("no {prefix:?} line in {}:\n{content}", file.display()))
}

/// Every form the password can take: plain, base64 (padded or not, standard or URL-safe), and
/// whatever the stand-in stored on the host (base64 in gluu-ldap.properties, properties-escaped
/// in the stand-in's record of setup.properties.last, an {SSHA} hash in slapd.conf), each also as JSON would escape it.
fn secret_forms(root: &Path) -> Vec<String> {
    let chroot = root.join("opt/gluu-server");
    let mut forms = vec![
        LDAP_PASS.to_string(),
        STANDARD.encode(LDAP_PASS),
        STANDARD_NO_PAD.encode(LDAP_PASS),
        URL_SAFE_NO_PAD.encode(LDAP_PASS),
        stored_value(
            &chroot.join("etc/gluu/conf/gluu-ldap.properties"),
            "bindPassword:",
        ),
        // The stand-in's private copy of setup.properties.last (setup leaves that one only
        // encrypted, as Gluu 4.2.3 does).
        stored_value(
            &chroot.join("opt/gluu/standin/node.properties"),
            "ldapPass=",
        ),
        stored_value(&chroot.join("opt/openldap/etc/slapd.conf"), "rootpw "),
    ];
    let json: Vec<String> = forms
        .iter()
        .map(|f| {
            serde_json::to_string(f)
                .unwrap()
                .trim_matches('"')
                .to_string()
        })
        .collect();
    forms.extend(json);
    forms.sort();
    forms.dedup();
    forms
}

/// The first form of the secret found in `hay`.
fn leaked<'a>(hay: &str, forms: &'a [String]) -> Option<&'a str> {
    forms.iter().map(String::as_str).find(|f| hay.contains(f))
}

#[test]
fn inventory_reports_the_gluu_installation_before_and_after_setup() {
    let deb = standin_deb();
    let mut ctl = Controller::init();
    ctl.start(&[]);
    let mut a = Agent::gluu_host("gluu-a.example.test");
    // Install the package into the host's root with the real dpkg, so its database knows it
    // (its postinst makes the container and boots the machine).
    machine::dpkg_install(&a.root, &deb);

    a.join(&ctl, "gluu-node");
    a.start();
    ctl.wait_status(&a.node_id, "online");
    let n = ctl.json(&["node", "show", "gluu-a.example.test"]);
    let g = &n["gluu"];
    assert_eq!(g["present"], true, "{n}");
    assert_eq!(g["chroot"], true);
    assert_eq!(g["installed"], false, "setup has not run yet");
    assert_eq!(g["version"], "4.2.3~standin1");
    let comps: Vec<&str> = g["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        comps.contains(&"oxauth") && comps.contains(&"oxtrust"),
        "{comps:?}"
    );

    // Run setup the way Gluu's is run: inside the machine, on the host's own address.
    let props = a.root.join("opt/gluu-server/root/setup.properties");
    std::fs::create_dir_all(props.parent().unwrap()).unwrap();
    std::fs::write(
        &props,
        format!(
            "hostname=lb.example.test\nip={}\nldapPass={}\norgName=Example\ncountryCode=US\n\
             city=Austin\nstate=TX\nadmin_email=admin@example.test\ninstallOxAuth=True\n\
             installOxTrust=True\nhttps_port={}\n",
            a.address,
            LDAP_PASS.replace('=', "\\="),
            free_port()
        ),
    )
    .unwrap();
    let o = machine::exec(
        &a.root,
        &[
            "/install/community-edition-setup/setup.py",
            "-f",
            "/root/setup.properties",
            "-n",
            "--listen_all_interfaces",
            "-c",
        ],
    )
    .unwrap();
    std::fs::remove_file(&props).unwrap();
    assert!(
        o.status.success(),
        "setup failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let facts = ctl.json(&["job", "run", "gluu-a.example.test", "facts"]);
    let conf = ctl.cli(&[
        "job",
        "run",
        "gluu-a.example.test",
        "read-file",
        "/opt/gluu-server/etc/gluu/conf/gluu-ldap.properties",
    ]);
    machine::stop(&a.root).unwrap();
    assert_eq!(facts["output"]["gluu"]["installed"], true, "{facts}");
    assert!(
        text(&conf.stdout).contains("servers:"),
        "{}",
        text(&conf.stderr)
    );
    // The setup password, in none of its forms, shows up in what the controller recorded.
    let forms = secret_forms(&a.root);
    // Control: the file read went through the controller to the operator with the password in
    // it (base64-encoded by the stand-in), and the search finds it there.
    assert!(
        leaked(&text(&conf.stdout), &forms).is_some(),
        "the search for {forms:?} does not find the password in the file read: {}",
        text(&conf.stdout)
    );
    let jobs = ctl.cli_ok(&["--output", "json", "job", "list"]);
    let mut records = vec![
        ("job list".to_string(), jobs.clone()),
        (
            "audit".to_string(),
            ctl.cli_ok(&["--output", "json", "audit"]),
        ),
        (
            "controller log".to_string(),
            std::fs::read_to_string(ctl.log_path()).unwrap(),
        ),
        (
            "store file".to_string(),
            text(&std::fs::read(ctl.data.join("state.redb")).unwrap()),
        ),
    ];
    let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&jobs)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() >= 2, "{jobs}");
    for id in &ids {
        records.push((
            format!("job show {id}"),
            ctl.cli_ok(&["--output", "json", "job", "show", id]),
        ));
        records.push((format!("job logs {id}"), ctl.cli_ok(&["job", "logs", id])));
    }
    for (name, hay) in &records {
        if let Some(form) = leaked(hay, &forms) {
            let at = hay.find(form).unwrap();
            let around = text(
                &hay.as_bytes()[at.saturating_sub(200)..(at + form.len() + 200).min(hay.len())],
            );
            panic!("{name} holds the setup password (as {form:?}): ...{around:?}...");
        }
    }
}
