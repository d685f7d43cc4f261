//! From observed-state fixtures to decisions, for LDAP replication.

use super::*;
use crate::engine::*;
use clustermgr_proto::{DirectoryInfoOutput, Inventory, Operation, OperationOutput};

fn member(i: u32) -> Member {
    Member {
        node_id: format!("n{i}"),
        server_id: i,
    }
}

fn def(members: &[u32], leaving: &[u32]) -> Replication {
    Replication {
        members: members.iter().map(|i| member(*i)).collect(),
        leaving: leaving.iter().map(|i| member(*i)).collect(),
        admin_password: "Adm1n pw!".into(),
        replication_password: "R3pl 'pw\"".into(),
        https_port: Some(8443),
        primary: "n1".into(),
        probe_within_ms: 1000,
        run_id: "w1".into(),
        schemas: Vec::new(),
        balancer: Default::default(),
    }
}

fn fixture(d: &Replication) -> (Workflow, Observed) {
    let nodes = d
        .order()
        .iter()
        .map(|m| {
            (
                m.node_id.clone(),
                format!("gluu{}", m.server_id),
                STEPS.to_vec(),
            )
        })
        .collect();
    let wf = new_workflow("w1", KIND, "operator:a", 1, nodes);
    let mut obs = Observed::default();
    for m in d.order() {
        obs.nodes.insert(
            m.node_id.clone(),
            NodeView {
                hostname: format!("gluu{}", m.server_id),
                online: true,
                approved: true,
                inventory: Some(Inventory {
                    addresses: vec![format!("10.0.0.{}", m.server_id)],
                    ..Default::default()
                }),
            },
        );
    }
    (wf, obs)
}

/// Answers every job with success (inspect: a certificate per node) until nothing is
/// dispatched; returns (node, step, operation) in dispatch order.
fn drive(
    d: &Replication,
    wf: &mut Workflow,
    obs: &mut Observed,
) -> Vec<(String, String, Operation)> {
    let mut all = Vec::new();
    let mut n = 0;
    for _ in 0..100 {
        let dec = advance(wf, d, obs);
        if dec.dispatch.is_empty() {
            break;
        }
        for disp in dec.dispatch {
            n += 1;
            let id = format!("j{n}");
            bind_job(wf, &disp, &id);
            let node = wf.nodes.iter().find(|x| x.node_id == disp.node_id).unwrap();
            let step = node.steps[disp.step].name.clone();
            let output = if step == "inspect" {
                OperationOutput {
                    kind: Some(operation_output::Kind::DirectoryInfo(DirectoryInfoOutput {
                        kind: "openldap".into(),
                        certificate_pem: format!("CERT-{}\n", disp.node_id),
                        bases: vec![],
                        // n2 is an OpenLDAP node: no administration connector.
                        admin_certificate_der: if disp.node_id == "n2" {
                            Vec::new()
                        } else {
                            format!("ADMIN-{}", disp.node_id).into_bytes()
                        },
                    })),
                }
            } else {
                OperationOutput::default()
            };
            obs.jobs.insert(
                id,
                JobView {
                    state: JobState::Succeeded,
                    exit_code: 0,
                    error: String::new(),
                    output: Some(output),
                },
            );
            all.push((disp.node_id.clone(), step, disp.job.operation.clone()));
        }
    }
    all
}

fn pos(all: &[(String, String, Operation)], node: &str, step: &str) -> usize {
    all.iter()
        .position(|(n, s, _)| n == node && s == step)
        .unwrap_or_else(|| panic!("{node} {step} never ran"))
}

#[test]
fn three_nodes_are_configured_one_after_the_other_with_verified_peers() {
    let d = def(&[1, 2, 3], &[]);
    let (mut wf, mut obs) = fixture(&d);
    let all = drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    // Rolling: a node is configured only after the previous one is back.
    assert!(pos(&all, "n2", "configure") > pos(&all, "n1", "web-ready"));
    assert!(pos(&all, "n3", "configure") > pos(&all, "n2", "web-ready"));
    // Each node replicates with the two others, verified against their certificates only.
    let Some(operation::Kind::ConfigureReplication(c)) = &all[pos(&all, "n2", "configure")].2.kind
    else {
        panic!()
    };
    assert_eq!(c.server_id, 2);
    let peers: Vec<(String, u32)> = c
        .peers
        .iter()
        .map(|p| (p.host.clone(), p.server_id))
        .collect();
    assert_eq!(
        peers,
        [("10.0.0.1".to_string(), 1), ("10.0.0.3".to_string(), 3)]
    );
    assert_eq!(c.ca_pem, "CERT-n1\nCERT-n3\n");
    // OpenDJ: every node's administration connector with the certificate it read itself, so
    // the agent checks each one its tools contact (none reported, none listed).
    let admin: Vec<(String, Vec<u8>)> = c
        .admin_connectors
        .iter()
        .map(|a| (a.host.clone(), a.certificate_der.clone()))
        .collect();
    assert_eq!(
        admin,
        [
            ("10.0.0.1".to_string(), b"ADMIN-n1".to_vec()),
            ("10.0.0.3".to_string(), b"ADMIN-n3".to_vec())
        ]
    );
    assert_eq!(c.bases, ["o=gluu", "o=site"]);
    assert_eq!(c.replicator_dn, REPLICATOR_DN);
    // Server lists: the node first.
    let Some(operation::Kind::SetLdapServers(s)) = &all[pos(&all, "n3", "servers")].2.kind else {
        panic!()
    };
    assert_eq!(
        s.servers,
        ["10.0.0.3:1636", "10.0.0.1:1636", "10.0.0.2:1636"]
    );
    // Every node reads both peers' markers, after they were written; markers go last.
    let Some(operation::Kind::ReplicationProbe(p)) = &all[pos(&all, "n1", "verify")].2.kind else {
        panic!()
    };
    let mut seen = vec![p.marker.clone()];
    seen.extend(p.also.clone());
    assert_eq!(seen, ["clustermgr-w1-2", "clustermgr-w1-3"]);
    assert!(pos(&all, "n1", "verify") > pos(&all, "n3", "mark"));
    assert!(pos(&all, "n1", "unmark") > pos(&all, "n3", "verify"));
    // No secret in any summary.
    let text = format!("{:?}", dry_run(&fixture(&d).0, &d, &fixture(&d).1));
    assert!(!text.contains("pw"), "{text}");
}

#[test]
fn a_leaving_node_stops_replicating_and_the_others_drop_it() {
    let d = def(&[1, 2], &[3]);
    let (mut wf, mut obs) = fixture(&d);
    let all = drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    let Some(operation::Kind::ConfigureReplication(c)) = &all[pos(&all, "n3", "configure")].2.kind
    else {
        panic!()
    };
    assert!(c.peers.is_empty());
    let Some(operation::Kind::ConfigureReplication(c)) = &all[pos(&all, "n1", "configure")].2.kind
    else {
        panic!()
    };
    assert_eq!(c.peers.len(), 1);
    assert_eq!(c.peers[0].host, "10.0.0.2");
    let Some(operation::Kind::SetLdapServers(s)) = &all[pos(&all, "n3", "servers")].2.kind else {
        panic!()
    };
    assert_eq!(s.servers, ["10.0.0.3:1636"]);
    assert!(!all.iter().any(|(n, s, _)| n == "n3" && s == "mark"));
}

#[test]
fn a_directory_without_certificate_fails_its_node() {
    let d = def(&[1, 2], &[]);
    let (mut wf, obs) = fixture(&d);
    let dec = advance(&mut wf, &d, &obs);
    let mut obs = obs;
    for (i, disp) in dec.dispatch.iter().enumerate() {
        let id = format!("i{i}");
        bind_job(&mut wf, disp, &id);
        obs.jobs.insert(
            id,
            JobView {
                state: JobState::Succeeded,
                exit_code: 0,
                error: String::new(),
                output: Some(OperationOutput {
                    kind: Some(operation_output::Kind::DirectoryInfo(
                        DirectoryInfoOutput::default(),
                    )),
                }),
            },
        );
    }
    advance(&mut wf, &d, &obs);
    assert_eq!(wf.nodes[0].steps[0].status(), StepStatus::Failed);
    assert!(wf.nodes[0].steps[0].error.contains("no certificate"));
}

#[test]
fn server_ids_are_stable_and_new_nodes_get_free_ones() {
    let existing: BTreeMap<String, u32> = [("a".to_string(), 1), ("c".to_string(), 3)].into();
    let ids = assign_server_ids(&existing, &["a".into(), "b".into(), "c".into(), "d".into()]);
    assert_eq!(ids["a"], 1);
    assert_eq!(ids["c"], 3);
    assert_eq!(ids["b"], 2);
    assert_eq!(ids["d"], 4);
}

#[test]
fn custom_schema_reaches_every_member_before_it_replicates() {
    let mut d = def(&[1, 2], &[3]);
    let (mut wf, mut obs) = fixture(&d);
    let all = drive(&d, &mut wf, &mut obs);
    // None added: the step is skipped everywhere.
    assert!(!all.iter().any(|(_, s, _)| s == "schema"));
    d.schemas = vec![clustermgr_proto::CustomSchema {
        name: "acme".into(),
        ..Default::default()
    }];
    let (mut wf, mut obs) = fixture(&d);
    let all = drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    for n in ["n1", "n2"] {
        assert!(pos(&all, n, "schema") < pos(&all, n, "configure"));
        let Some(operation::Kind::ApplyLdapSchema(a)) = &all[pos(&all, n, "schema")].2.kind else {
            panic!()
        };
        assert_eq!(a.schemas[0].name, "acme");
        assert!(!a.check_only);
    }
    // A leaving node gets nothing.
    assert!(!all.iter().any(|(n, s, _)| n == "n3" && s == "schema"));
}

/// A balancer in front of every node of `d`, on node `lb` (online).
fn with_balancer(d: &mut Replication, obs: &mut Observed) {
    let order = d.order();
    let names = order
        .iter()
        .map(|m| (m.node_id.as_str(), format!("gluu{}", m.server_id)));
    d.balancer = crate::drain::testing::balancer("lb", names);
    crate::drain::testing::lb_online(obs, "lb");
}

#[test]
fn each_node_is_out_of_rotation_from_its_schema_to_web_ready_and_a_leaving_node_stays_out() {
    let mut d = def(&[1, 2], &[3]);
    let (mut wf, mut obs) = fixture(&d);
    with_balancer(&mut d, &mut obs);
    let all = drive(&d, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    for n in ["n1", "n2", "n3"] {
        let drain = pos(&all, n, "drain");
        for step in [
            "configure",
            "directory-ready",
            "servers",
            "restart",
            "web-ready",
        ] {
            assert!(pos(&all, n, step) > drain, "{n} {step} before its drain");
        }
        let Some(operation::Kind::SetBackendRotation(r)) = &all[drain].2.kind else {
            panic!("{n}: the drain changes no rotation")
        };
        assert!(!r.in_rotation);
    }
    // One at a time: a node drains only after the previous one rejoined.
    assert!(pos(&all, "n2", "drain") > pos(&all, "n1", "rejoin"));
    assert!(pos(&all, "n3", "drain") > pos(&all, "n2", "rejoin"));
    for n in ["n1", "n2"] {
        assert!(pos(&all, n, "rejoin") > pos(&all, n, "web-ready"));
    }
    // The leaving node never rejoins; the balancer keeps it out until it is dropped.
    assert!(!all.iter().any(|(n, s, _)| n == "n3" && s == "rejoin"));
    assert_eq!(crate::drain::drained_nodes(&wf), vec!["n3".to_string()]);
}
