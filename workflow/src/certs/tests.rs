//! From observed-state fixtures to decisions, for the web certificate install.

use super::*;
use crate::engine::*;
use clustermgr_proto::{CertificateFile, Inventory, OperationOutput, operation_output};

fn def() -> CertInstall {
    CertInstall {
        inputs: Inputs {
            order: vec!["n1".into(), "n2".into(), "n3".into()],
            primary: "n1".into(),
            lb: String::new(),
        },
        lb_hostname: "lb.example.org".into(),
        https_port: Some(8443),
        probe_within_ms: 1000,
        lb: None,
        balancer: Default::default(),
    }
}

fn def_lb() -> CertInstall {
    let mut d = def();
    d.inputs.lb = "l1".into();
    d.lb = Some(ConfigureNginx {
        server_name: "lb.example.org".into(),
        listen_address: "10.0.0.9".into(),
        https_port: 8443,
        ..Default::default()
    });
    d
}

fn set(tag: &str) -> GluuCertificates {
    let f = |path: &str, c: String| CertificateFile {
        path: path.into(),
        content: c.into_bytes(),
        mode: 0o600,
        sha256: format!("sha-{tag}"),
    };
    GluuCertificates {
        files: vec![
            f(HTTPD_CRT, format!("CRT {tag}")),
            f(HTTPD_KEY, format!("KEY {tag}")),
        ],
    }
}

fn fixture() -> (Workflow, Observed) {
    fixture_of(&def())
}

fn fixture_of(d: &CertInstall) -> (Workflow, Observed) {
    let mut nodes: Vec<(String, String, Vec<&str>)> = (1..=3)
        .map(|i| {
            (
                format!("n{i}"),
                format!("gluu{i}"),
                steps(&d.inputs, &format!("n{i}")),
            )
        })
        .collect();
    if !d.inputs.lb.is_empty() {
        nodes.push((
            d.inputs.lb.clone(),
            "lb".into(),
            steps(&d.inputs, &d.inputs.lb),
        ));
    }
    let wf = new_workflow("w1", KIND, "operator:a", 1, nodes);
    let mut obs = Observed::default();
    for i in 1..=3 {
        obs.nodes.insert(
            format!("n{i}"),
            NodeView {
                hostname: format!("gluu{i}"),
                online: true,
                approved: true,
                inventory: Some(Inventory {
                    addresses: vec![format!("10.0.0.{i}")],
                    ..Default::default()
                }),
            },
        );
    }
    obs.nodes.insert(
        "l1".into(),
        NodeView {
            hostname: "lb".into(),
            online: true,
            approved: true,
            inventory: None,
        },
    );
    obs.kept.insert(NEW.into(), set("new").encode_to_vec());
    (wf, obs)
}

/// What a step's job installs: (node, step, certificate content), or the job kind.
fn describe(d: &Dispatch) -> (String, String, String) {
    let what = match &d.job.operation.kind {
        Some(operation::Kind::InstallHttpdCertificate(i)) => {
            assert!(!d.job.summary.contains("KEY"), "a key in a summary");
            format!("install {}", i.certificate_pem)
        }
        Some(operation::Kind::ReadGluuCertificates(_)) => "backup".into(),
        Some(operation::Kind::Probe(_)) => "probe".into(),
        Some(operation::Kind::ProbeNginx(_)) => "probe nginx".into(),
        Some(operation::Kind::ConfigureNginx(c)) => {
            assert_eq!(c.server_name, "lb.example.org");
            format!("nginx {}", c.certificate_pem)
        }
        Some(operation::Kind::SetBackendRotation(r)) => format!(
            "{} {} on {} trusting {:?}",
            if r.in_rotation { "rejoin" } else { "drain" },
            r.name,
            d.run_on.as_deref().unwrap_or("?"),
            r.also_trust_pem
        ),
        other => format!("{other:?}"),
    };
    let step = if d.node_id == "l1" {
        LB_STEPS[d.step]
    } else {
        STEPS[d.step]
    }
    .to_string();
    (d.node_id.clone(), step, what)
}

/// Runs the workflow to its end, answering each job: failing those `fail` names (node, step).
fn drive(fail: &[(&str, &str)]) -> (Workflow, Vec<(String, String, String)>) {
    drive_with(&def(), fail)
}

fn drive_with(
    def: &CertInstall,
    fail: &[(&str, &str)],
) -> (Workflow, Vec<(String, String, String)>) {
    let (mut wf, mut obs) = fixture_of(def);
    let mut seen = Vec::new();
    let mut seq = 0;
    for _ in 0..100 {
        let d = advance(&mut wf, def, &obs);
        if d.dispatch.is_empty() {
            break;
        }
        for disp in &d.dispatch {
            seq += 1;
            let id = format!("j{seq}");
            bind_job(&mut wf, disp, &id);
            let (node, step, what) = describe(disp);
            let failing = fail.iter().any(|(n, s)| *n == node && *s == step);
            if step == "backup" && !failing {
                let tag = format!("old-{node}");
                obs.kept
                    .insert(backup_key(&node), set(&tag).encode_to_vec());
            }
            obs.jobs.insert(
                id,
                JobView {
                    state: if failing {
                        JobState::Failed
                    } else {
                        JobState::Succeeded
                    },
                    exit_code: i32::from(failing),
                    error: if failing {
                        "boom".into()
                    } else {
                        String::new()
                    },
                    output: Some(OperationOutput {
                        kind: Some(operation_output::Kind::ReadGluuCertificates(
                            GluuCertificates::default(),
                        )),
                    }),
                },
            );
            seen.push((node, step, what));
        }
    }
    (wf, seen)
}

fn s(v: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    v.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[test]
fn rolls_one_node_at_a_time_after_every_backup_and_rolls_back_on_a_failure() {
    struct Case {
        name: &'static str,
        fail: Vec<(&'static str, &'static str)>,
        jobs: Vec<(&'static str, &'static str, &'static str)>,
        status: WorkflowStatus,
    }
    let backups = [
        ("n1", "backup", "backup"),
        ("n2", "backup", "backup"),
        ("n3", "backup", "backup"),
    ];
    let cases = vec![
        Case {
            name: "all succeed",
            fail: vec![],
            jobs: [
                &backups[..],
                &[
                    ("n1", "install", "install CRT new"),
                    ("n1", "web-ready", "probe"),
                    ("n2", "install", "install CRT new"),
                    ("n2", "web-ready", "probe"),
                    ("n3", "install", "install CRT new"),
                    ("n3", "web-ready", "probe"),
                ],
            ]
            .concat(),
            status: WorkflowStatus::Succeeded,
        },
        Case {
            name: "the second node fails: the first gets its own pair back",
            fail: vec![("n2", "install")],
            jobs: [
                &backups[..],
                &[
                    ("n1", "install", "install CRT new"),
                    ("n1", "web-ready", "probe"),
                    ("n2", "install", "install CRT new"),
                    ("n1", "rollback", "install CRT old-n1"),
                ],
            ]
            .concat(),
            status: WorkflowStatus::Failed,
        },
        Case {
            name: "the last node's health gate fails: both earlier ones roll back",
            fail: vec![("n3", "web-ready")],
            jobs: [
                &backups[..],
                &[
                    ("n1", "install", "install CRT new"),
                    ("n1", "web-ready", "probe"),
                    ("n2", "install", "install CRT new"),
                    ("n2", "web-ready", "probe"),
                    ("n3", "install", "install CRT new"),
                    ("n3", "web-ready", "probe"),
                    ("n1", "rollback", "install CRT old-n1"),
                    ("n2", "rollback", "install CRT old-n2"),
                    // Its own gate failed, its install succeeded: it is rolled back too.
                    ("n3", "rollback", "install CRT old-n3"),
                ],
            ]
            .concat(),
            status: WorkflowStatus::Failed,
        },
        Case {
            name: "a backup fails: nothing is installed anywhere",
            fail: vec![("n3", "backup")],
            jobs: backups.to_vec(),
            status: WorkflowStatus::Failed,
        },
    ];
    for c in cases {
        let (wf, seen) = drive(&c.fail);
        assert_eq!(seen, s(&c.jobs), "{}", c.name);
        assert_eq!(wf.status(), c.status, "{}", c.name);
    }
}

#[test]
fn the_first_install_waits_for_every_backup() {
    let (mut wf, obs) = fixture();
    let d = advance(&mut wf, &def(), &obs);
    assert_eq!(d.dispatch.len(), 3);
    for disp in &d.dispatch {
        bind_job(&mut wf, disp, &format!("b-{}", disp.node_id));
    }
    let mut obs = obs;
    // Only n1's backup is done.
    obs.kept
        .insert(backup_key("n1"), set("old").encode_to_vec());
    obs.jobs.insert(
        "b-n1".into(),
        JobView {
            state: JobState::Succeeded,
            exit_code: 0,
            error: String::new(),
            output: Some(OperationOutput::default()),
        },
    );
    for n in ["n2", "n3"] {
        obs.jobs.insert(
            format!("b-{n}"),
            JobView {
                state: JobState::Running,
                exit_code: 0,
                error: String::new(),
                output: None,
            },
        );
    }
    let d = advance(&mut wf, &def(), &obs);
    assert!(d.dispatch.is_empty());
    let install = wf.nodes[0]
        .steps
        .iter()
        .find(|s| s.name == "install")
        .unwrap();
    assert!(install.waiting_for.contains("backup of gluu2"));
}

#[test]
fn inputs_round_trip_and_carry_no_secret() {
    let i = def().inputs;
    let m = i.encode().into_iter().collect();
    assert_eq!(Inputs::decode(&m), Ok(i));
    assert!(m.values().all(|v| !v.contains("KEY")));
}

#[test]
fn a_missing_new_certificate_fails_the_install() {
    let (mut wf, mut obs) = fixture();
    obs.kept.remove(NEW);
    let (w2, _) = drive(&[]);
    assert_eq!(w2.status(), WorkflowStatus::Succeeded);
    let d = advance(&mut wf, &def(), &obs);
    for disp in &d.dispatch {
        bind_job(&mut wf, disp, &format!("b-{}", disp.node_id));
        obs.kept
            .insert(backup_key(&disp.node_id), set("old").encode_to_vec());
        obs.jobs.insert(
            format!("b-{}", disp.node_id),
            JobView {
                state: JobState::Succeeded,
                exit_code: 0,
                error: String::new(),
                output: Some(OperationOutput::default()),
            },
        );
    }
    advance(&mut wf, &def(), &obs);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert!(
        wf.error.contains("new certificate is not kept"),
        "{}",
        wf.error
    );
}

#[test]
fn the_load_balancer_goes_last_and_is_rolled_back_with_the_nodes() {
    let rolled = [
        ("n1", "backup", "backup"),
        ("n2", "backup", "backup"),
        ("n3", "backup", "backup"),
        ("n1", "install", "install CRT new"),
        ("n1", "web-ready", "probe"),
        ("n2", "install", "install CRT new"),
        ("n2", "web-ready", "probe"),
        ("n3", "install", "install CRT new"),
        ("n3", "web-ready", "probe"),
        ("l1", "configure", "nginx CRT new"),
        ("l1", "probe", "probe nginx"),
    ];
    let (wf, seen) = drive_with(&def_lb(), &[]);
    assert_eq!(seen, s(&rolled));
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);

    // nginx -t refuses it: every node gets its own pair back; nginx was not changed.
    let (wf, seen) = drive_with(&def_lb(), &[("l1", "configure")]);
    let mut expect = rolled[..rolled.len() - 1].to_vec();
    expect.extend([
        ("n1", "rollback", "install CRT old-n1"),
        ("n2", "rollback", "install CRT old-n2"),
        ("n3", "rollback", "install CRT old-n3"),
    ]);
    assert_eq!(seen, s(&expect));
    assert_eq!(wf.status(), WorkflowStatus::Failed);

    // nginx took it but does not serve it: every node rolls back, nginx too (its rollback is a
    // clean-up step: it runs after its own node's failed probe).
    let (wf, seen) = drive_with(&def_lb(), &[("l1", "probe")]);
    let mut expect = rolled.to_vec();
    expect.extend([
        ("n1", "rollback", "install CRT old-n1"),
        ("n2", "rollback", "install CRT old-n2"),
        ("n3", "rollback", "install CRT old-n3"),
        ("l1", "rollback", "nginx CRT old-n1"),
    ]);
    assert_eq!(seen, s(&expect));
    assert_eq!(wf.status(), WorkflowStatus::Failed);

    // Without a known configuration the balancer's step fails (and the nodes roll back).
    let mut d = def_lb();
    d.lb = None;
    let (wf, _) = drive_with(&d, &[]);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert!(wf.error.contains("lb install first"), "{}", wf.error);
}

#[test]
fn each_install_is_drained_and_the_balancer_trusts_both_certificates_until_its_own_configure() {
    let mut d = def_lb();
    let names = ["n1", "n2", "n3"].map(|n| (n, n.replace('n', "gluu")));
    d.balancer = crate::drain::testing::balancer("l1", names);
    let (wf, seen) = drive_with(&d, &[]);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    let rolled: Vec<(String, String, String)> = seen
        .into_iter()
        .filter(|(_, step, _)| step != "backup" && step != "probe")
        .collect();
    let mut want = Vec::new();
    for (n, host) in [("n1", "gluu1"), ("n2", "gluu2"), ("n3", "gluu3")] {
        let drain = format!("drain {host} on l1 trusting \"CRT new\"");
        let rejoin = format!("rejoin {host} on l1 trusting \"CRT new\"");
        want.push((n.to_string(), "drain".to_string(), drain));
        want.push((
            n.to_string(),
            "install".to_string(),
            "install CRT new".to_string(),
        ));
        want.push((n.to_string(), "web-ready".to_string(), "probe".to_string()));
        want.push((n.to_string(), "rejoin".to_string(), rejoin));
    }
    want.push(("l1".into(), "configure".into(), "nginx CRT new".into()));
    assert_eq!(rolled, want);
}
