//! From observed-state fixtures to decisions, for custom schema.

use super::*;
use crate::engine::*;
use clustermgr_proto::{
    ApplyLdapSchemaOutput, Inventory, OperationOutput, SchemaElement, SchemaElementKind,
    VerifyLdapSchemaOutput, WorkflowStatus,
};

fn def() -> SchemaAdd {
    SchemaAdd {
        inputs: Inputs {
            order: vec!["n1".into(), "n2".into(), "n3".into()],
            name: "acme".into(),
            schema: CustomSchema {
                name: "acme".into(),
                elements: vec![SchemaElement {
                    kind: SchemaElementKind::AttributeType as i32,
                    oid: "1.3.6.1.4.1.99999.1.1".into(),
                    names: vec!["acmeBadge".into()],
                    description: "( 1.3.6.1.4.1.99999.1.1 NAME 'acmeBadge' SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )".into(),
                    syntax: "1.3.6.1.4.1.1466.115.121.1.15".into(),
                    single_value: false,
                    user_modifiable: true,
                }],
                source_sha256: "ab".into(),
                source_file: "acme.schema".into(),
            },
        },
        admin_password: "dm-secret".into(),
        within_ms: 1000,
        balancer: Default::default(),
    }
}

fn fixture(d: &SchemaAdd) -> (Workflow, Observed) {
    let nodes = (1..=3)
        .map(|i| (format!("n{i}"), format!("gluu{i}"), STEPS.to_vec()))
        .collect();
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
    let _ = d;
    (wf, obs)
}

/// Runs the workflow to its end, failing the jobs `fail` names (node, step); the jobs in order.
fn drive(fail: &[(&str, &str)]) -> (Workflow, Vec<(String, String)>) {
    let d = def();
    let (mut wf, mut obs) = fixture(&d);
    let mut seen = Vec::new();
    let mut seq = 0;
    for _ in 0..100 {
        let dec = advance(&mut wf, &d, &obs);
        if dec.dispatch.is_empty() {
            break;
        }
        for disp in &dec.dispatch {
            seq += 1;
            let id = format!("j{seq}");
            bind_job(&mut wf, disp, &id);
            let step = STEPS[disp.step].to_string();
            assert!(!disp.job.summary.contains("dm-secret"));
            let output = match &disp.job.operation.kind {
                Some(operation::Kind::ApplyLdapSchema(a)) => {
                    assert_eq!(a.check_only, step == "check");
                    assert_eq!(a.host, format!("10.0.0.{}", &disp.node_id[1..]));
                    operation_output::Kind::ApplyLdapSchema(ApplyLdapSchemaOutput::default())
                }
                Some(operation::Kind::VerifyLdapSchema(v)) => {
                    assert_eq!(v.base, VERIFY_BASE);
                    operation_output::Kind::VerifyLdapSchema(VerifyLdapSchemaOutput {
                        attribute_types: 1,
                        ..Default::default()
                    })
                }
                other => panic!("unexpected {other:?}"),
            };
            let failing = fail.iter().any(|(n, s)| *n == disp.node_id && *s == step);
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
                    output: Some(OperationOutput { kind: Some(output) }),
                },
            );
            seen.push((disp.node_id.clone(), step));
        }
    }
    (wf, seen)
}

fn s(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn checks_everywhere_then_installs_one_node_at_a_time_then_verifies() {
    let (wf, mut seen) = drive(&[]);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    // The verifications start together once the last node is installed.
    seen[6..].sort();
    assert_eq!(
        seen,
        s(&[
            ("n1", "check"),
            ("n2", "check"),
            ("n3", "check"),
            ("n1", "install"),
            ("n2", "install"),
            ("n3", "install"),
            ("n1", "verify"),
            ("n2", "verify"),
            ("n3", "verify"),
        ])
    );
}

#[test]
fn a_failed_check_anywhere_changes_no_node() {
    let (wf, seen) = drive(&[("n3", "check")]);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert!(seen.iter().all(|(_, step)| step == "check"), "{seen:?}");
    for n in &wf.nodes {
        for st in &n.steps {
            if st.name == "install" {
                assert_ne!(st.status(), StepStatus::Succeeded);
            }
        }
    }
}

#[test]
fn a_failed_install_stops_the_nodes_after_it() {
    let (wf, seen) = drive(&[("n2", "install")]);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert_eq!(
        seen,
        s(&[
            ("n1", "check"),
            ("n2", "check"),
            ("n3", "check"),
            ("n1", "install"),
            ("n2", "install"),
        ])
    );
}

#[test]
fn a_verification_missing_elements_fails_the_step() {
    let d = def();
    let (wf, _) = fixture(&d);
    let obs = Observed::default();
    let ctx = StepCtx {
        workflow: &wf,
        node: &wf.nodes[0],
        index: STEPS.iter().position(|s| *s == "verify").unwrap(),
        observed: &obs,
    };
    let job = JobView {
        state: JobState::Succeeded,
        exit_code: 0,
        error: String::new(),
        output: Some(OperationOutput {
            kind: Some(operation_output::Kind::VerifyLdapSchema(
                VerifyLdapSchemaOutput::default(),
            )),
        }),
    };
    assert!(d.check(&ctx, &job).unwrap_err().contains("0 of the 1"));
}

#[test]
fn inputs_round_trip_without_the_password() {
    let d = def();
    assert!(!format!("{d:?}").contains("dm-secret"));
    let enc = d.inputs.encode();
    assert!(enc.values().all(|v| !v.contains("dm-secret")));
    let back = Inputs::decode(&enc.into_iter().collect()).unwrap();
    assert_eq!(back, d.inputs);
    let bad = [("schema".to_string(), "%%".to_string())].into();
    assert!(Inputs::decode(&bad).is_err());
}

#[test]
fn the_install_restarts_the_directory_out_of_rotation_after_every_check() {
    let mut d = def();
    let (mut wf, mut obs) = fixture(&d);
    let order = d.inputs.order.clone();
    let names = order
        .iter()
        .map(|n| (n.as_str(), format!("{n}.example.org")));
    d.balancer = crate::drain::testing::balancer("lb", names);
    crate::drain::testing::lb_online(&mut obs, "lb");
    let output = |step: &str| match step {
        "verify" => Some(operation_output::Kind::VerifyLdapSchema(
            VerifyLdapSchemaOutput {
                attribute_types: 1,
                ..Default::default()
            },
        )),
        "check" | "install" => Some(operation_output::Kind::ApplyLdapSchema(
            ApplyLdapSchemaOutput::default(),
        )),
        _ => None,
    };
    let sent: Vec<(String, String, Option<String>)> =
        crate::drain::testing::succeed_all(&d, &mut wf, &mut obs, &output)
            .into_iter()
            .map(|(n, s, on)| {
                let on = (on != n).then_some(on);
                (n, s, on)
            })
            .collect();
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    let at = |n: &str, s: &str| {
        sent.iter()
            .position(|(x, y, _)| x == n && y == s)
            .unwrap_or_else(|| panic!("{n} {s} never ran"))
    };
    let last_check = ["n1", "n2", "n3"].map(|n| at(n, "check")).into_iter().max();
    for n in ["n1", "n2", "n3"] {
        assert!(
            Some(at(n, "drain")) > last_check,
            "{n} drained before every check"
        );
        assert!(at(n, "drain") < at(n, "install") && at(n, "install") < at(n, "rejoin"));
        assert_eq!(sent[at(n, "rejoin")].2.as_deref(), Some("lb"));
    }
    assert!(at("n2", "drain") > at("n1", "rejoin"));
    assert!(at("n3", "drain") > at("n2", "rejoin"));
}
