//! The plan states what the run does (setup's command line and properties, the certificate
//! files); components reach every node; the primary's record is copied by an allow-list.

use super::*;

/// A primary's record as 4.2.3's setup writes it: the keys it read, what it generated, and
/// its own attributes (paths, commands) that no other node may take from it.
const REAL_LAST: &str = "#Gluu setup\n\
hostname=idp.example.org\n\
ip=127.0.0.11\n\
ldap_hostname=127.0.0.11\n\
ldapPass=Pa$$ w0rd\\!'\"\n\
orgName=Example Org\n\
countryCode=US\n\
city=Austin\n\
state=TX\n\
admin_email=admin@example.org\n\
application_max_ram=3072\n\
encode_salt=SALTsalt1234SALTsalt\n\
pairwiseCalculationKey=PairKey987654321\n\
pairwiseCalculationSalt=PairSalt123456\n\
oxauthClient_pw=ClientPw5566\n\
oxauth_client_id=1001.0e4cbbb5-0d6c-4ec6-a2a6-5b1d2a8c4f2e\n\
admin_inum=53b9d1a6-1c76-4c0b-a8e4-4a4e0e9b6e11\n\
installOxAuth=True\n\
installOxTrust=True\n\
installHttpd=True\n\
installSaml=False\n\
loadData=True\n\
cmd_java=/opt/jre/bin/java\n\
distFolder=/opt/dist\n";

fn run_summaries(all: &[Dispatch], wf: &Workflow) -> Vec<(String, String, String)> {
    all.iter()
        .map(|d| {
            let n = wf.nodes.iter().find(|n| n.node_id == d.node_id).unwrap();
            (
                n.hostname.clone(),
                n.steps[d.step].name.clone(),
                d.job.summary.clone(),
            )
        })
        .collect()
}

fn plan_summaries(plan: &[PlannedStep]) -> Vec<(String, String, String)> {
    plan.iter()
        .filter_map(|p| match &p.what {
            Planned::Run(s) => Some((p.hostname.clone(), p.step.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

/// The second node's setup step after an install whose primary read back `last`, failed.
fn secondary_setup_failure(last: &str) -> clustermgr_proto::Step {
    let (mut wf, mut obs) = fixture(&["debian", "debian"], false);
    drive_answering(&def(), &mut wf, &mut obs, last.as_bytes());
    let setup = wf.nodes[1]
        .steps
        .iter()
        .find(|s| s.name == "setup")
        .unwrap()
        .clone();
    assert_eq!(setup.status(), StepStatus::Failed, "{last}");
    setup
}

fn props_of(s: &RunGluuSetup) -> BTreeMap<String, String> {
    parse_properties(&String::from_utf8(s.properties.clone()).unwrap())
        .into_iter()
        .collect()
}

#[test]
fn the_dry_run_is_what_the_run_dispatches() {
    let mut d = def();
    d.components = Components::parse("oxauth,oxtrust,httpd,saml").unwrap();
    let last = REAL_LAST.replace("installSaml=False", "installSaml=True");
    let (mut wf, mut obs) = fixture(&["debian", "debian", "debian"], false);
    let all = drive_answering(&d, &mut wf, &mut obs, last.as_bytes());
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    let ran = run_summaries(&all, &wf);

    // Planned with what the run read (the primary's record and certificate set) at hand.
    let (fresh, mut before) = fixture(&["debian", "debian", "debian"], false);
    before.kept = obs.kept.clone();
    let planned = plan_summaries(&dry_run(&fresh, &d, &before));
    assert_eq!(planned, ran);

    // The setup lines: the exact command line, the properties, secrets masked.
    let setup = |host: &str| {
        ran.iter()
            .find(|(h, s, _)| h == host && s == "setup")
            .map(|(_, _, x)| x.clone())
            .unwrap()
    };
    let primary = setup("gluu1");
    assert!(
        primary.starts_with("run /install/community-edition-setup/setup.py -f /root/setup.properties --listen_all_interfaces -n -c on 127.0.0.11 (components oxauth,oxtrust,httpd,saml); setup.properties: hostname=idp.example.org ip=127.0.0.11 installOxAuth=True installOxTrust=True installHttpd=True installSaml=True"),
        "{primary}"
    );
    assert!(primary.contains(" ldapPass=*** "), "{primary}");
    let other = setup("gluu3");
    assert!(other.contains("--no-data on 127.0.0.13"), "{other}");
    for shown in [
        "ldapPass=***",
        "encode_salt=***",
        "pairwiseCalculationKey=***",
        "oxauthClient_pw=***",
        "orgName=Example Org",
        "oxauth_client_id=1001.0e4cbbb5-0d6c-4ec6-a2a6-5b1d2a8c4f2e",
        "other keys left out",
    ] {
        assert!(other.contains(shown), "{shown}: {other}");
    }
    for secret in ["w0rd", "SALTsalt", "PairKey", "PairSalt", "ClientPw"] {
        assert!(!format!("{ran:?}").contains(secret), "{secret}");
    }
    // The certificate files by name.
    let certs = ran
        .iter()
        .find(|(h, s, _)| h == "gluu2" && s == "certificates")
        .unwrap();
    assert!(
        certs
            .2
            .contains("(/etc/certs/httpd.key; each checked by SHA-256)"),
        "{}",
        certs.2
    );

    // Before the primary has run: the plan names the rules its set and record are read by.
    let (fresh, before) = fixture(&["debian", "debian"], false);
    let text = format!("{:?}", dry_run(&fresh, &d, &before));
    assert!(!text.contains("certificates ()"), "{text}");
    assert!(
        text.contains("every file of /etc/certs but the directory's own openldap.crt"),
        "{text}"
    );
    assert!(
        text.contains("the keys of the primary's setup.properties.last on the allow-list (orgName"),
        "{text}"
    );
}

#[test]
fn with_force_an_installed_node_is_told_setup_does_not_run_again() {
    let mut d = def();
    d.force = true;
    let (wf, obs) = fixture(&["debian", "debian"], true);
    let plan = dry_run(&wf, &d, &obs);
    let setup: Vec<&Planned> = plan
        .iter()
        .filter(|p| p.step == "setup")
        .map(|p| &p.what)
        .collect();
    assert_eq!(setup.len(), 2, "{plan:?}");
    for s in setup {
        assert!(
            matches!(s, Planned::Skip(w) if w.contains("--force does not run setup.py again")),
            "{s:?}"
        );
    }
    // And the run does not run it either.
    let (mut wf, mut obs) = fixture(&["debian", "debian"], true);
    let all = drive_with(&d, &mut wf, &mut obs);
    assert!(
        !all.iter()
            .any(|x| matches!(x.job.operation.kind, Some(operation::Kind::RunGluuSetup(_))))
    );
}

#[test]
fn components_are_the_same_on_every_node() {
    let mut d = def();
    d.components = Components::parse("oxauth,oxtrust,httpd,saml,casa,oxd,scim").unwrap();
    let last = REAL_LAST
        .replace("installSaml=False", "installSaml=True\ninstallCasa=True\ninstallOxd=True\ninstallScimServer=True")
        // A record claiming its own oxd server elsewhere: the cluster's own is written instead.
        + "oxd_server_https=https://evil.example.net:8443\n";
    let (mut wf, mut obs) = fixture(&["debian", "debian"], false);
    let all = drive_answering(&d, &mut wf, &mut obs, last.as_bytes());
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    for node in ["n1", "n2"] {
        let p = props_of(&setup_of(&all, node));
        for (k, v) in [
            ("installOxAuth", "True"),
            ("installOxTrust", "True"),
            ("installHttpd", "True"),
            ("installHTTPD", "True"),
            ("installSaml", "True"),
            ("installCasa", "True"),
            ("installOxd", "True"),
            ("installScimServer", "True"),
            ("installPassport", "False"),
            ("installGluuRadius", "False"),
            ("installFido2", "False"),
            ("installOxAuthRP", "False"),
            ("enable_scim_access_policy", "true"),
            ("oxd_server_https", "https://idp.example.org:8443"),
        ] {
            assert_eq!(p.get(k).map(String::as_str), Some(v), "{node} {k}");
        }
    }

    // A primary installed with other components: the others refuse, saying how to match.
    let setup = secondary_setup_failure(&last);
    assert!(
        setup.error.contains("the primary was installed with components oxauth,oxtrust,httpd,saml,scim,casa,oxd and the cluster's are oxauth,oxtrust,httpd"),
        "{}",
        setup.error
    );
}

#[test]
fn a_hostile_primary_record_steers_nothing() {
    // Keys setup.py would take as its installer's attributes, a value with a newline that
    // would add a key, malformed shapes.
    let hostile = "hostname=evil.example.net\n\
ip=10.6.6.6\n\
ldapPass=Pa$$ w0rd\n\
orgName=Example Org\n\
installSaml=False\n\
cmd_java=/tmp/evil.sh\n\
opensslCommand=/tmp/evil.sh\n\
ldap_hostname=evil.example.net\n\
listen_all_interfaces=False\n\
https_port=1\n\
installOxTrust=True\n";
    let (mut wf, mut obs) = fixture(&["debian", "debian"], false);
    let all = drive_answering(&def(), &mut wf, &mut obs, hostile.as_bytes());
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    let p = props_of(&setup_of(&all, "n2"));
    assert_eq!(p["hostname"], "idp.example.org");
    assert_eq!(p["ip"], "127.0.0.12");
    assert_eq!(p["https_port"], "8443");
    for k in [
        "cmd_java",
        "opensslCommand",
        "ldap_hostname",
        "listen_all_interfaces",
    ] {
        assert!(!p.contains_key(k), "{k} was copied");
    }
    assert_eq!(p["ldapPass"], "Pa$$ w0rd");

    // Values that are not plausibly shaped refuse the step, naming the keys, never the values.
    for (line, key) in [
        ("orgName=Example\\ncmd_java\\=/tmp/evil.sh", "orgName"),
        ("admin_email=root@localhost;rm", "admin_email"),
        ("countryCode=USA", "countryCode"),
        ("oxauth_client_id=1001.x /tmp/evil", "oxauth_client_id"),
        ("application_max_ram=3072;", "application_max_ram"),
        ("encode_salt=abc\u{7}def", "encode_salt"),
    ] {
        let last = format!("ldapPass=Pa$$ w0rd\n{line}\n");
        let setup = secondary_setup_failure(&last);
        assert!(
            setup.error.contains("setup.properties.last is refused") && setup.error.contains(key),
            "{line}: {}",
            setup.error
        );
        assert!(
            !setup.error.contains("evil") && !setup.error.contains("w0rd"),
            "{}",
            setup.error
        );
    }
}

#[test]
fn every_copied_secret_is_masked_in_plans_and_logs() {
    for (key, shape) in COPIED {
        assert_eq!(
            clustermgr_proto::gluu::is_secret_key(key),
            *shape == properties::Shape::Secret,
            "{key}"
        );
    }
}
