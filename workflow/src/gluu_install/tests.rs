//! From observed-state fixtures to decisions, for the Gluu install.

use super::*;
use crate::engine::*;
use clustermgr_proto::{
    GluuInstallation, Inventory, OperationOutput, ReadSetupPropertiesOutput, operation_output,
};
use clustermgr_proto::{Probe, probe};
use std::collections::BTreeMap;

pub(super) const PASSWORD: &str = "Pa$$ w0rd!'\"";
const SHA: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

pub(super) fn def() -> GluuInstall {
    GluuInstall {
        primary: "n1".into(),
        lb_hostname: "idp.example.org".into(),
        org: Org {
            name: "Example Org".into(),
            country: "US".into(),
            city: "Austin".into(),
            state: "TX".into(),
            admin_email: "admin@example.org".into(),
        },
        ldap_admin_password: PASSWORD.into(),
        package: PackageSource::Pushed {
            sha256: SHA.into(),
            summary: "gluu-server 4.2.3".into(),
            receive: clustermgr_proto::ReceivePackage {
                sha256: SHA.into(),
                size: 3,
                format: "deb".into(),
                display_name: "gluu-server_4.2.3_amd64".into(),
                chunk_size: 1 << 20,
                chunk_sha256: vec![SHA.into()],
                job_id: String::new(),
            },
        },
        force: false,
        balancer: Default::default(),
        https_port: Some(8443),
        probe_within_ms: 60_000,
        completed: Default::default(),
        min_free_bytes: 1 << 30,
        resolve: Vec::new(),
        components: Components::default(),
    }
}

/// `os` is an os-release ID, optionally followed by its VERSION_ID (`ubuntu 20.04`).
fn node(os: &str, addr: &str, installed: bool) -> NodeView {
    let (id, version) = os.split_once(' ').unwrap_or((os, ""));
    NodeView {
        hostname: format!("host-{addr}"),
        online: true,
        approved: true,
        inventory: Some(Inventory {
            os_id: id.into(),
            os_version: version.into(),
            addresses: vec![addr.into()],
            package_manager: match id {
                "rhel" | "centos" => "dnf",
                _ => "apt",
            }
            .into(),
            gluu: Some(GluuInstallation {
                present: installed,
                installed,
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

pub(super) fn fixture(oses: &[&str], installed: bool) -> (Workflow, Observed) {
    let d = def();
    let nodes: Vec<(String, String, Vec<&str>)> = (1..=oses.len())
        .map(|i| {
            let id = format!("n{i}");
            let steps = d.steps(&id);
            (id, format!("gluu{i}"), steps)
        })
        .collect();
    let wf = new_workflow("w", KIND, "operator:admin", 1, nodes);
    let obs = Observed {
        now_ms: 5,
        nodes: oses
            .iter()
            .enumerate()
            .map(|(i, os)| {
                (
                    format!("n{}", i + 1),
                    node(os, &format!("127.0.0.{}", 11 + i), installed),
                )
            })
            .collect(),
        jobs: BTreeMap::new(),
        kept: BTreeMap::new(),
    };
    (wf, obs)
}

/// The primary's `setup.properties.last` the fixtures read back.
pub(super) const PRIMARY_LAST: &[u8] = b"hostname=idp.example.org\nip=127.0.0.11\nldap_hostname=127.0.0.11\nldapPass=Pa$$ w0rd\\!'\"\norgName=Example Org\ninstallLdap=True\nloadData=True\n";

/// Runs rounds, answering every dispatched job with success (and the primary's properties
/// for `record-properties`), until nothing more is dispatched. Returns every dispatch.
pub(super) fn drive(wf: &mut Workflow, obs: &mut Observed) -> Vec<Dispatch> {
    drive_answering(&def(), wf, obs, PRIMARY_LAST)
}

/// [`drive`] with a definition and the primary's `setup.properties.last` to read back.
pub(super) fn drive_answering(
    def: &GluuInstall,
    wf: &mut Workflow,
    obs: &mut Observed,
    last: &[u8],
) -> Vec<Dispatch> {
    let mut all = Vec::new();
    let mut n = 0;
    for _ in 0..50 {
        let d = advance(wf, def, obs);
        if d.dispatch.is_empty() {
            break;
        }
        for disp in d.dispatch {
            n += 1;
            let id = format!("j{n}");
            bind_job(wf, &disp, &id);
            let output = disp.job.keep_output_as.as_ref().map(|key| {
                let (content, kind) = if key == PRIMARY_CERTIFICATES {
                    let set = certificate_set();
                    (
                        set.encode_to_vec(),
                        operation_output::Kind::ReadGluuCertificates(set),
                    )
                } else {
                    let content = last.to_vec();
                    (
                        content.clone(),
                        operation_output::Kind::ReadSetupProperties(ReadSetupPropertiesOutput {
                            content,
                            was_encrypted: true,
                        }),
                    )
                };
                obs.kept.insert(key.clone(), content);
                OperationOutput { kind: Some(kind) }
            });
            obs.jobs.insert(
                id,
                JobView {
                    state: JobState::Succeeded,
                    exit_code: 0,
                    error: String::new(),
                    output,
                },
            );
            all.push(disp);
        }
    }
    all
}

pub(super) fn certificate_set() -> GluuCertificates {
    GluuCertificates {
        files: vec![clustermgr_proto::CertificateFile {
            path: "etc/certs/httpd.key".into(),
            content: b"-----BEGIN PRIVATE KEY-----".to_vec(),
            mode: 0o600,
            sha256: "00".into(),
        }],
    }
}

fn step_names(all: &[Dispatch], wf: &Workflow, node: &str) -> Vec<String> {
    let n = wf.nodes.iter().find(|n| n.node_id == node).unwrap();
    all.iter()
        .filter(|d| d.node_id == node)
        .map(|d| n.steps[d.step].name.clone())
        .collect()
}

pub(super) fn setup_of(all: &[Dispatch], node: &str) -> RunGluuSetup {
    all.iter()
        .filter(|d| d.node_id == node)
        .find_map(|d| match &d.job.operation.kind {
            Some(operation::Kind::RunGluuSetup(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn the_primary_installs_first_then_the_others_from_its_properties() {
    let (mut wf, mut obs) = fixture(&["debian", "debian", "debian"], false);
    let first = advance(&mut wf, &def(), &obs);
    assert_eq!(first.dispatch.len(), 1, "only the primary starts");
    assert_eq!(first.dispatch[0].node_id, "n1");
    let Some(operation::Kind::Preflight(pf)) = &first.dispatch[0].job.operation.kind else {
        panic!("{:?}", first.dispatch[0]);
    };
    assert_eq!(pf.address, "127.0.0.11");
    assert_eq!(pf.ports, [1636, 4444, 8443, 8989]);
    assert_eq!(
        wf.nodes[1].steps[0].waiting_for,
        "waiting for the primary's install"
    );

    let (mut wf, _) = fixture(&["debian", "debian", "debian"], false);
    let all = drive(&mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    assert_eq!(
        step_names(&all, &wf, "n1"),
        [
            "preflight",
            "push",
            "package",
            "setup",
            "directory-ready",
            "web-ready",
            "key-regeneration",
            "record-properties",
            "record-certificates",
            "inventory"
        ]
    );
    assert_eq!(
        step_names(&all, &wf, "n2"),
        [
            "preflight",
            "push",
            "package",
            "setup",
            "certificates",
            "restart",
            "directory-ready",
            "web-ready",
            "inventory"
        ]
    );
    // The package is pushed, then installed from the cache by its hash.
    assert!(all.iter().any(|d| d.node_id == "n2"
        && matches!(&d.job.operation.kind,
            Some(operation::Kind::ReceivePackage(r)) if r.sha256 == SHA)));
    assert!(all.iter().any(|d| d.node_id == "n2"
        && matches!(&d.job.operation.kind,
            Some(operation::Kind::InstallPackage(InstallPackage {
                source: Some(install_package::Source::CachedSha256(s)), ..
            })) if s == SHA)));
    // The secondaries get the primary's certificate set, imported under the LB's name.
    let certs = all
        .iter()
        .find_map(|d| match &d.job.operation.kind {
            Some(operation::Kind::InstallGluuCertificates(c)) if d.node_id == "n3" => {
                Some(c.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(certs.alias_prefix, "idp.example.org");
    assert_eq!(certs.files, certificate_set().files);
    // Key regeneration is turned off on the primary only.
    let keyregen: Vec<&str> = all
        .iter()
        .filter_map(|d| match &d.job.operation.kind {
            Some(operation::Kind::SetOxAuthConfig(c)) => {
                assert_eq!(c.values["keyRegenerationEnabled"], "false");
                Some(d.node_id.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(keyregen, ["n1"]);
    // The secondaries start together, after the primary's last step.
    let pos = |node: &str, step: &str| {
        all.iter()
            .position(|d| {
                d.node_id == node
                    && wf.nodes.iter().find(|n| n.node_id == node).unwrap().steps[d.step].name
                        == step
            })
            .unwrap()
    };
    assert!(pos("n2", "preflight") > pos("n1", "record-certificates"));
    assert_eq!(pos("n3", "preflight"), pos("n2", "preflight") + 1);

    // Primary: properties from the settings, the keys setup 4.2.3 reads.
    let p = setup_of(&all, "n1");
    assert!(!p.no_data);
    let props: BTreeMap<String, String> =
        parse_properties(&String::from_utf8(p.properties).unwrap())
            .into_iter()
            .collect();
    assert_eq!(props["hostname"], "idp.example.org");
    assert_eq!(props["ip"], "127.0.0.11");
    assert_eq!(
        props["ldapPass"], PASSWORD,
        "the password survives escaping"
    );
    assert_eq!(props["installLdap"], "True");
    assert_eq!(props["installHttpd"], "True");
    assert_eq!(props["countryCode"], "US");
    assert_eq!(props["https_port"], "8443");

    // Secondary: the primary's .last, its own address, --no-data, no primary-only keys.
    let s = setup_of(&all, "n3");
    assert!(s.no_data);
    let props: BTreeMap<String, String> =
        parse_properties(&String::from_utf8(s.properties).unwrap())
            .into_iter()
            .collect();
    assert_eq!(props["ip"], "127.0.0.13");
    assert_eq!(props["hostname"], "idp.example.org");
    assert_eq!(props["ldapPass"], "Pa$$ w0rd!'\"");
    assert!(!props.contains_key("ldap_hostname") && !props.contains_key("loadData"));
    assert_eq!(props["orgName"], "Example Org");

    // Probes: the directory on the node's own address; oxAuth's health on the primary only.
    let urls: Vec<String> = all
        .iter()
        .filter_map(|d| match &d.job.operation.kind {
            Some(operation::Kind::Probe(Probe {
                target: Some(probe::Target::Https(h)),
                ..
            })) => Some(format!("{} {}", d.node_id, h.url)),
            _ => None,
        })
        .collect();
    assert_eq!(
        urls,
        [
            "n1 https://127.0.0.11:8443/oxauth/restv1/health-check",
            "n2 https://127.0.0.12:8443/identity/restv1/health-check",
            "n3 https://127.0.0.13:8443/identity/restv1/health-check"
        ]
    );
}

#[test]
fn secrets_never_reach_a_summary_or_the_dry_run() {
    let (wf, obs) = fixture(&["debian", "debian"], false);
    let plan = dry_run(&wf, &def(), &obs);
    let text = format!("{plan:?}");
    assert!(
        text.contains("run /install/community-edition-setup/setup.py -f /root/setup.properties --listen_all_interfaces -n -c on 127.0.0.11"),
        "{text}"
    );
    assert!(!text.contains("w0rd"), "{text}");
    assert!(text.contains("ldapPass=***"), "{text}");
    assert!(!format!("{:?}", def()).contains("w0rd"));
}

pub(super) fn drive_with(d: &GluuInstall, wf: &mut Workflow, obs: &mut Observed) -> Vec<Dispatch> {
    let mut all = Vec::new();
    let mut n = 0;
    for _ in 0..50 {
        let dec = advance(wf, d, obs);
        if dec.dispatch.is_empty() {
            break;
        }
        for disp in dec.dispatch {
            n += 1;
            let id = format!("j{n}");
            bind_job(wf, &disp, &id);
            if let Some(key) = &disp.job.keep_output_as {
                obs.kept
                    .insert(key.clone(), certificate_set().encode_to_vec());
            }
            obs.jobs.insert(
                id,
                JobView {
                    state: JobState::Succeeded,
                    exit_code: 0,
                    error: String::new(),
                    output: Some(OperationOutput::default()),
                },
            );
            all.push(disp);
        }
    }
    all
}

#[test]
fn a_cluster_an_earlier_run_installed_is_only_observed() {
    let (mut wf, mut obs) = fixture(&["debian", "debian"], true);
    let mut d = def();
    d.completed = ["n1".to_string(), "n2".to_string()].into();
    let all = drive_with(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    assert!(!all.is_empty());
    for d in &all {
        assert!(
            matches!(
                d.job.operation.kind,
                Some(operation::Kind::Probe(_))
                    | Some(operation::Kind::ReadSetupProperties(_))
                    | Some(operation::Kind::ReadGluuCertificates(_))
                    | Some(operation::Kind::CollectFacts(_))
            ),
            "a re-run only probes and reads: {:?}",
            d.job.summary
        );
    }
}

#[test]
fn installed_nodes_skip_the_package_and_setup_but_get_the_cluster_certificates() {
    // Gluu installed (e.g. by hand) but not by an install of this cluster.
    let (mut wf, mut obs) = fixture(&["debian", "debian"], true);
    let all = drive(&mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    let names = step_names(&all, &wf, "n2");
    assert!(
        !names
            .iter()
            .any(|n| n == "package" || n == "setup" || n == "push")
    );
    assert!(names.iter().any(|n| n == "certificates"), "{names:?}");
}

#[test]
fn preflight_problems_fail_the_node_with_every_problem() {
    let (mut wf, mut obs) = fixture(&["debian"], false);
    let d = advance(&mut wf, &def(), &obs);
    bind_job(&mut wf, &d.dispatch[0], "pf");
    obs.jobs.insert(
        "pf".into(),
        JobView {
            state: JobState::Succeeded,
            exit_code: 0,
            error: String::new(),
            output: Some(OperationOutput {
                kind: Some(operation_output::Kind::Preflight(
                    clustermgr_proto::PreflightOutput {
                        problems: vec!["port 1636 is in use".into(), "only 10 MiB free".into()],
                        free_bytes: 10 << 20,
                    },
                )),
            }),
        },
    );
    advance(&mut wf, &def(), &obs);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    let s = &wf.nodes[0].steps[0];
    assert_eq!(s.error, "port 1636 is in use; only 10 MiB free");
}

#[test]
fn a_package_of_the_other_format_fails_preflight() {
    let (mut wf, mut obs) = fixture(&["rhel"], false);
    drive(&mut wf, &mut obs);
    assert!(
        wf.nodes[0].steps[0].error.contains("the package is a .deb"),
        "{}",
        wf.nodes[0].steps[0].error
    );
}

#[test]
fn a_node_of_another_os_family_fails_preflight_and_the_others_go_on() {
    let (mut wf, mut obs) = fixture(&["debian", "rhel", "ubuntu"], false);
    drive(&mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    let n2 = &wf.nodes[1].steps[0];
    assert_eq!(n2.status(), StepStatus::Failed);
    assert!(
        n2.error.contains("differs from the primary's family"),
        "{}",
        n2.error
    );
    assert!(
        wf.nodes[2].steps.iter().all(|s| is_done(s.status())),
        "ubuntu is a Debian family"
    );
    let (mut wf, mut obs) = fixture(&["plan9"], false);
    drive(&mut wf, &mut obs);
    assert!(wf.nodes[0].steps[0].error.contains("not supported"));
}

#[test]
fn the_others_wait_for_the_primary_properties_when_they_were_lost() {
    let (mut wf, mut obs) = fixture(&["debian", "debian"], false);
    drive(&mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    // A record whose secondary has not run setup yet, and no kept properties.
    let (mut wf2, mut obs2) = fixture(&["debian", "debian"], false);
    for s in &mut wf2.nodes[0].steps {
        s.set_status(StepStatus::Succeeded);
    }
    // preflight, push, drain, package.
    for i in 0..4 {
        wf2.nodes[1].steps[i].set_status(StepStatus::Succeeded);
    }
    obs2.kept.clear();
    let d = advance(&mut wf2, &def(), &obs2);
    assert!(d.dispatch.is_empty());
    assert_eq!(
        wf2.nodes[1].steps[4].waiting_for,
        "waiting for the primary's setup.properties.last"
    );
    obs2.kept
        .insert(PRIMARY_PROPERTIES.into(), b"orgName=X\n".to_vec());
    assert_eq!(advance(&mut wf2, &def(), &obs2).dispatch.len(), 1);
}

#[test]
fn properties_escaping_round_trips() {
    let tricky = [
        ("ldapPass", "a b=c:d#e!f\\g'h\"i$j"),
        ("orgName", " leading space"),
        ("x", ""),
    ];
    let text = render_properties(tricky.iter().copied());
    let back = parse_properties(&text);
    assert_eq!(
        back,
        tricky
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    );
    // What a Java writer produces parses too (escaped colon, comments, ':' separator).
    let java = "#Gluu\n! comment\nhostname=idp.example.org\nldap_binddn=cn\\=directory manager\nurl : https\\://x\n";
    let m: BTreeMap<String, String> = parse_properties(java).into_iter().collect();
    assert_eq!(m["ldap_binddn"], "cn=directory manager");
    assert_eq!(m["url"], "https://x");
}

#[test]
fn a_dry_run_plans_every_node_to_its_last_step() {
    let (wf, obs) = fixture(&["debian", "debian"], false);
    let plan = dry_run(&wf, &def(), &obs);
    assert!(
        !plan
            .iter()
            .any(|p| matches!(p.what, Planned::Blocked(_) | Planned::Fail(_))),
        "{plan:?}"
    );
    let secondary: Vec<&str> = plan
        .iter()
        .filter(|p| p.hostname == "gluu2")
        .map(|p| p.step.as_str())
        .collect();
    assert_eq!(secondary.len(), def().steps("n2").len(), "{secondary:?}");
    assert!(
        plan.iter().any(|p| p.hostname == "gluu2"
            && matches!(&p.what, Planned::Run(s) if s.contains("--no-data")))
    );
}

mod online;
mod plan;

/// A re-run on nodes Gluu already runs on (--force) restarts them: each leaves the load
/// balancer's rotation before its package step and comes back after its web tier is ready,
/// one node at a time; a first install drains nothing.
#[test]
fn a_rerun_on_installed_nodes_drains_each_before_it_restarts() {
    let mut d = def();
    d.force = true;
    let names = ["n1", "n2", "n3"].map(|n| (n, format!("{n}.example.org")));
    d.balancer = crate::drain::testing::balancer("lb", names);
    for installed in [true, false] {
        let (mut wf, mut obs) = fixture(&["debian", "debian", "debian"], installed);
        crate::drain::testing::lb_online(&mut obs, "lb");
        let all = drive_answering(&d, &mut wf, &mut obs, PRIMARY_LAST);
        assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
        let step = |disp: &Dispatch| {
            let n = wf.nodes.iter().find(|n| n.node_id == disp.node_id).unwrap();
            (n.node_id.clone(), n.steps[disp.step].name.clone())
        };
        let seq: Vec<(String, String)> = all
            .iter()
            .map(step)
            .filter(|(_, s)| {
                ["drain", "package", "restart", "web-ready", "rejoin"].contains(&s.as_str())
            })
            .collect();
        let drains = seq.iter().filter(|(_, s)| s == "drain").count();
        if !installed {
            assert_eq!(drains, 0, "a first install: {seq:?}");
            continue;
        }
        assert_eq!(drains, 3, "{seq:?}");
        // Each node's package, restart and readiness come between its own drain and rejoin,
        // and no other node is out meanwhile.
        let mut out: Option<&str> = None;
        for (n, s) in &seq {
            match s.as_str() {
                "drain" => {
                    assert!(out.is_none(), "{n} drained while {out:?} is out: {seq:?}");
                    out = Some(n);
                }
                "rejoin" => out = None,
                _ => assert_eq!(out, Some(n.as_str()), "{n} {s} in rotation: {seq:?}"),
            }
        }
    }
}

/// Behind an external balancer probing the health marks, a first install drains nothing, and
/// each new node's mark appears with its rejoin, once its web tier is ready.
#[test]
fn behind_an_external_balancer_a_new_node_gets_its_health_mark_once_ready() {
    let mut d = def();
    let names = ["n1", "n2"].map(|n| (n, format!("{n}.example.org")));
    d.balancer = crate::drain::testing::balancer("", names);
    d.balancer.health_mark_wait_ms = 5_000;
    let (mut wf, mut obs) = fixture(&["debian", "debian"], false);
    let all = drive_answering(&d, &mut wf, &mut obs, PRIMARY_LAST);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    let mut rejoins = 0;
    for disp in &all {
        let n = wf.nodes.iter().find(|n| n.node_id == disp.node_id).unwrap();
        let step = n.steps[disp.step].name.as_str();
        assert_ne!(step, "drain");
        if step == "rejoin" {
            rejoins += 1;
            assert!(crate::engine::is_done(
                crate::engine::step_of(&wf, &n.node_id, "web-ready")
                    .unwrap()
                    .status()
            ));
            match &disp.job.operation.kind {
                Some(operation::Kind::SetBackendRotation(r)) => {
                    assert!(r.in_rotation && r.health_mark)
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(rejoins, 2);
}
