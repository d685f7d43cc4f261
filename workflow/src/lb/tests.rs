//! From observed-state fixtures to decisions, for the load balancer.

use super::*;
use crate::engine::*;
use clustermgr_proto::{
    CertificateFile, Inventory, NginxStatusOutput, OperationOutput, operation_output,
};
use prost::Message as _;
use std::collections::BTreeMap;

const SHA: &str = "cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34";
const CRT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n";

fn inputs(b: OxauthBalancing) -> Inputs {
    Inputs {
        lb: "lb".into(),
        primary: "p".into(),
        balancing: b,
        https_port: 8443,
        http_port: 8080,
        backends: "10.0.0.1:8443=g1".into(),
    }
}

fn pushed() -> NginxPackage {
    NginxPackage::Pushed {
        sha256: SHA.into(),
        summary: "nginx 1.22.1".into(),
        receive: ReceivePackage {
            sha256: SHA.into(),
            size: 7,
            format: "deb".into(),
            display_name: "nginx_1.22.1_amd64".into(),
            chunk_size: 1 << 20,
            chunk_sha256: vec![SHA.into()],
            job_id: String::new(),
        },
    }
}

fn def(package: NginxPackage, b: OxauthBalancing, backends: usize) -> LbInstall {
    LbInstall {
        inputs: inputs(b),
        server_name: "idp.example.org".into(),
        backends: (1..=backends)
            .map(|i| LbBackend {
                address: format!("10.0.0.{i}"),
                port: 8443,
                name: format!("gluu{i}.example.org"),
            })
            .collect(),
        package,
        probe_within_ms: 60_000,
        lb_ip: String::new(),
        drained: Vec::new(),
    }
}

fn view(addr: &str) -> NodeView {
    NodeView {
        hostname: addr.into(),
        online: true,
        approved: true,
        inventory: Some(Inventory {
            addresses: vec![addr.into()],
            ..Default::default()
        }),
    }
}

fn fixture(d: &LbInstall) -> (Workflow, Observed) {
    let nodes = ["p", "lb"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                format!("{n}.example.org"),
                steps(INSTALL_KIND, &d.inputs.primary, n).unwrap(),
            )
        })
        .collect();
    let wf = new_workflow("w", INSTALL_KIND, "operator:admin", 1, nodes);
    let obs = Observed {
        now_ms: 5,
        nodes: BTreeMap::from([
            ("p".to_string(), view("10.0.0.1")),
            ("lb".to_string(), view("10.0.0.100")),
        ]),
        ..Default::default()
    };
    (wf, obs)
}

fn set(with_key: bool) -> GluuCertificates {
    let mut files = vec![CertificateFile {
        path: HTTPD_CRT.into(),
        content: CRT.as_bytes().to_vec(),
        mode: 0o644,
        sha256: String::new(),
    }];
    if with_key {
        files.push(CertificateFile {
            path: HTTPD_KEY.into(),
            content: KEY.as_bytes().to_vec(),
            mode: 0o600,
            sha256: String::new(),
        });
    }
    GluuCertificates { files }
}

/// Runs rounds, answering every job with success (the inspect with `nginx_installed`, the
/// certificates kept as the driver would), until nothing more is dispatched or a step fails.
fn drive(
    d: &LbInstall,
    nginx_installed: bool,
    certs: GluuCertificates,
) -> (Workflow, Vec<Dispatch>) {
    let (mut wf, mut obs) = fixture(d);
    let mut all = Vec::new();
    for n in 0..50 {
        let dec = advance(&mut wf, d, &obs);
        if dec.dispatch.is_empty() {
            break;
        }
        for (i, disp) in dec.dispatch.into_iter().enumerate() {
            let id = format!("j{n}-{i}");
            bind_job(&mut wf, &disp, &id);
            let output = match &disp.job.operation.kind {
                Some(operation::Kind::NginxStatus(_)) => {
                    Some(operation_output::Kind::NginxStatus(NginxStatusOutput {
                        installed: nginx_installed,
                        ..Default::default()
                    }))
                }
                Some(operation::Kind::ReadGluuCertificates(_)) => {
                    obs.kept.insert(CERTIFICATES.into(), certs.encode_to_vec());
                    Some(operation_output::Kind::ReadGluuCertificates(
                        GluuCertificates::default(),
                    ))
                }
                _ => None,
            };
            obs.jobs.insert(
                id,
                JobView {
                    state: JobState::Succeeded,
                    exit_code: 0,
                    error: String::new(),
                    output: output.map(|k| OperationOutput { kind: Some(k) }),
                },
            );
            all.push(disp);
        }
    }
    (wf, all)
}

fn ran(all: &[Dispatch], wf: &Workflow) -> Vec<String> {
    all.iter()
        .map(|d| {
            let n = wf.nodes.iter().find(|n| n.node_id == d.node_id).unwrap();
            format!("{}:{}", d.node_id, n.steps[d.step].name)
        })
        .collect()
}

fn status_of(wf: &Workflow, node: &str, step: &str) -> StepStatus {
    wf.nodes
        .iter()
        .find(|n| n.node_id == node)
        .unwrap()
        .steps
        .iter()
        .find(|s| s.name == step)
        .unwrap()
        .status()
}

#[test]
fn the_primary_reads_the_certificates_and_the_lb_node_gets_nginx_configured() {
    struct Case {
        name: &'static str,
        package: NginxPackage,
        installed: bool,
        runs: &'static [&'static str],
        skipped: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "offline, nginx missing: pushed then installed",
            package: pushed(),
            installed: false,
            runs: &["push", "package", "configure", "probe"],
            skipped: &[],
        },
        Case {
            name: "nginx already there (a sandbox host): nothing pushed or installed",
            package: pushed(),
            installed: true,
            runs: &["configure", "probe"],
            skipped: &["push", "package"],
        },
        Case {
            name: "online, nginx missing: installed by name",
            package: NginxPackage::Online,
            installed: false,
            runs: &["package", "configure", "probe"],
            skipped: &["push"],
        },
        Case {
            name: "offline with no package, nginx there: no package needed",
            package: NginxPackage::Missing("no nginx package".into()),
            installed: true,
            runs: &["configure", "probe"],
            skipped: &["push", "package"],
        },
    ];
    for c in cases {
        let d = def(c.package.clone(), OxauthBalancing::Sticky, 2);
        let (wf, all) = drive(&d, c.installed, set(true));
        assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{}", c.name);
        let ran = ran(&all, &wf);
        assert!(ran.contains(&"p:certificates".to_string()), "{}", c.name);
        assert!(ran.contains(&"lb:inspect".to_string()), "{}", c.name);
        for s in c.runs {
            assert!(
                ran.contains(&format!("lb:{s}")),
                "{}: {s} in {ran:?}",
                c.name
            );
        }
        for s in c.skipped {
            assert_eq!(
                status_of(&wf, "lb", s),
                StepStatus::Skipped,
                "{}: {s}",
                c.name
            );
            assert!(!ran.contains(&format!("lb:{s}")), "{}: {s}", c.name);
        }
        // The certificate set is kept (secret), never put in a summary.
        let keep = all.iter().find(|x| x.node_id == "p").unwrap();
        assert_eq!(keep.job.keep_output_as.as_deref(), Some(CERTIFICATES));
        for x in &all {
            assert!(!x.job.summary.contains("secret"), "{}", x.job.summary);
        }
    }
}

#[test]
fn configure_carries_the_httpd_pair_backends_and_balancing() {
    for (b, name) in [
        (OxauthBalancing::Sticky, "sticky"),
        (OxauthBalancing::RoundRobin, "round-robin"),
    ] {
        let d = def(NginxPackage::Online, b, 3);
        let (_, all) = drive(&d, true, set(true));
        let conf = all
            .iter()
            .find_map(|x| match &x.job.operation.kind {
                Some(operation::Kind::ConfigureNginx(c)) => {
                    Some((c.clone(), x.job.summary.clone()))
                }
                _ => None,
            })
            .unwrap();
        let (c, summary) = conf;
        assert_eq!(c.server_name, "idp.example.org");
        assert_eq!(c.listen_address, "10.0.0.100");
        // The cluster's lb address when the node has it; else its first address.
        let mut d2 = d.clone();
        d2.lb_ip = "192.0.2.7".into();
        let (mut wf, mut obs) = fixture(&d2);
        obs.nodes
            .get_mut("lb")
            .unwrap()
            .inventory
            .as_mut()
            .unwrap()
            .addresses = vec!["10.0.0.100".into(), "192.0.2.7".into()];
        obs.kept
            .insert(CERTIFICATES.into(), set(true).encode_to_vec());
        for s in &mut wf
            .nodes
            .iter_mut()
            .find(|n| n.node_id == "lb")
            .unwrap()
            .steps[..3]
        {
            s.set_status(StepStatus::Succeeded);
        }
        let dec = advance(&mut wf, &d2, &obs);
        assert!(dec.dispatch.iter().any(|x| matches!(
            &x.job.operation.kind,
            Some(operation::Kind::ConfigureNginx(c)) if c.listen_address == "192.0.2.7"
        )));
        assert_eq!((c.https_port, c.http_port), (8443, 8080));
        assert_eq!(c.oxauth_balancing, b as i32);
        assert_eq!(c.backends.len(), 3);
        assert_eq!(c.certificate_pem, CRT);
        assert_eq!(c.key_pem, KEY.as_bytes());
        assert!(
            summary.contains(&format!("/.well-known {name}")),
            "{summary}"
        );
        assert!(!summary.contains("PRIVATE KEY"), "{summary}");
    }
}

#[test]
fn what_cannot_be_done_fails_or_waits_with_a_reason() {
    // Offline, nginx missing, no package: the push step fails with the reason.
    let d = def(
        NginxPackage::Missing("add one".into()),
        OxauthBalancing::Sticky,
        1,
    );
    let (wf, _) = drive(&d, false, set(true));
    assert_eq!(status_of(&wf, "lb", "push"), StepStatus::Failed);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    // No installed Gluu server.
    let d = def(NginxPackage::Online, OxauthBalancing::Sticky, 0);
    let (wf, _) = drive(&d, true, set(true));
    assert_eq!(status_of(&wf, "lb", "configure"), StepStatus::Failed);
    // A certificate set without the key.
    let d = def(NginxPackage::Online, OxauthBalancing::Sticky, 1);
    let (wf, _) = drive(&d, true, set(false));
    let n = wf.nodes.iter().find(|n| n.node_id == "lb").unwrap();
    let s = n.steps.iter().find(|s| s.name == "configure").unwrap();
    assert_eq!(s.status(), StepStatus::Failed);
    assert!(s.error.contains(HTTPD_KEY), "{}", s.error);
    // Until the certificates are kept, configure waits.
    let d = def(NginxPackage::Online, OxauthBalancing::Sticky, 1);
    let (mut wf, mut obs) = fixture(&d);
    for s in &mut wf
        .nodes
        .iter_mut()
        .find(|n| n.node_id == "lb")
        .unwrap()
        .steps[..3]
    {
        s.set_status(StepStatus::Succeeded);
    }
    let dec = advance(&mut wf, &d, &obs);
    assert!(
        dec.dispatch.iter().all(|x| x.node_id == "p"),
        "only the primary's read: {:?}",
        dec.dispatch
    );
    obs.kept
        .insert(CERTIFICATES.into(), set(true).encode_to_vec());
    let dec = advance(&mut wf, &d, &obs);
    assert!(dec.dispatch.iter().any(|x| matches!(
        x.job.operation.kind,
        Some(operation::Kind::ConfigureNginx(_))
    )));
}

#[test]
fn inputs_round_trip_and_each_node_gets_its_steps() {
    for b in [OxauthBalancing::Sticky, OxauthBalancing::RoundRobin] {
        let i = inputs(b);
        let m = i.encode().into_iter().collect();
        assert_eq!(Inputs::decode(&m), Ok(i));
    }
    let m = "p";
    assert_eq!(steps(INSTALL_KIND, m, "p").unwrap(), PRIMARY_STEPS.to_vec());
    assert_eq!(steps(INSTALL_KIND, m, "lb").unwrap(), LB_STEPS.to_vec());
    assert_eq!(steps(REMOVE_KIND, m, "lb").unwrap(), REMOVE_STEPS.to_vec());
    assert_eq!(steps("hosts", m, "lb"), None);
}

#[test]
fn remove_stops_nginx_on_the_lb_node() {
    let wf0 = new_workflow(
        "w",
        REMOVE_KIND,
        "operator:admin",
        1,
        vec![("lb".into(), "lb".into(), REMOVE_STEPS.to_vec())],
    );
    let mut wf = wf0.clone();
    let obs = Observed {
        nodes: BTreeMap::from([("lb".to_string(), view("10.0.0.100"))]),
        ..Default::default()
    };
    let dec = advance(&mut wf, &LbRemove, &obs);
    assert_eq!(dec.dispatch.len(), 1);
    assert!(matches!(
        dec.dispatch[0].job.operation.kind,
        Some(operation::Kind::RemoveNginx(_))
    ));
    assert!(dec.dispatch[0].job.rerunnable);
}

#[test]
fn the_dry_run_plans_every_step_without_knowing_the_nodes_answers() {
    for (package, push) in [
        (pushed(), "run"),
        (NginxPackage::Online, "skip"),
        (NginxPackage::Missing("no package".into()), "skip"),
    ] {
        let d = def(package, OxauthBalancing::Sticky, 2);
        let (wf, obs) = fixture(&d);
        let plan = dry_run(&wf, &d, &obs);
        let what = |step: &str| {
            plan.iter()
                .find(|p| p.step == step)
                .map(|p| match &p.what {
                    Planned::Run(_) => "run",
                    Planned::Skip(_) => "skip",
                    Planned::Blocked(_) => "blocked",
                    Planned::Fail(_) => "fail",
                })
                .unwrap_or("absent")
        };
        assert_eq!(what("push"), push, "{plan:?}");
        for step in ["certificates", "inspect", "configure", "probe"] {
            assert_eq!(what(step), "run", "{step}: {plan:?}");
        }
    }
}
