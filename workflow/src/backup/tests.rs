use super::*;
use crate::drain::testing::{balancer, lb_online, succeed_all, succeed_all_with, succeeded};
use crate::engine::*;
use clustermgr_proto::{
    BackupNodeOutput, DirectoryInfoOutput, GluuInstallation, Inventory, RestoreNodeOutput,
    RestoredBase,
};

fn observed(nodes: &[(&str, bool)]) -> Observed {
    let mut obs = Observed::default();
    for (i, (n, installed)) in nodes.iter().enumerate() {
        obs.nodes.insert(
            n.to_string(),
            NodeView {
                hostname: format!("gluu{}", i + 1),
                online: true,
                approved: true,
                inventory: Some(Inventory {
                    addresses: vec![format!("10.0.0.{}", i + 1)],
                    gluu: Some(GluuInstallation {
                        present: true,
                        installed: *installed,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
        );
    }
    obs
}

fn backup_of(nodes: &[&str]) -> (Backup, Workflow) {
    let wf = new_workflow(
        "w",
        KIND,
        "operator:a",
        1,
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), format!("gluu{}", i + 1), STEPS.to_vec()))
            .collect(),
    );
    let def = Backup {
        inputs: Inputs {
            ids: nodes
                .iter()
                .map(|n| (n.to_string(), format!("id-{n}")))
                .collect(),
            keep: 3,
        },
    };
    (def, wf)
}

/// The output a node gives for `step` of a backup: `id` for its backup.
fn backup_output(step: &str, id: &str, kind: &str) -> Option<operation_output::Kind> {
    match step {
        "preflight" => Some(operation_output::Kind::DirectoryInfo(DirectoryInfoOutput {
            kind: kind.into(),
            ..Default::default()
        })),
        "backup-directory" => Some(operation_output::Kind::BackupNode(BackupNodeOutput {
            backup_id: id.into(),
            sha256: "a".repeat(64),
            size: 10,
            manifest: None,
        })),
        _ => None,
    }
}

/// Runs a backup whose nodes answer as `answer(node's step)` says; returns the workflow's
/// status, the failed step's message, and (node, step, summary) of what was sent.
fn run_backup(
    nodes: &[(&str, bool)],
    answer: &dyn Fn(&str) -> Option<operation_output::Kind>,
) -> (WorkflowStatus, String, Vec<(String, String, String)>) {
    let names: Vec<&str> = nodes.iter().map(|(n, _)| *n).collect();
    let (def, mut wf) = backup_of(&names);
    let mut obs = observed(nodes);
    let mut sent = Vec::new();
    succeed_all_with(&def, &mut wf, &mut obs, answer, &mut |_, d, step| {
        sent.push((d.node_id.clone(), step.to_string(), d.job.summary.clone()));
    });
    let error = wf
        .nodes
        .iter()
        .flat_map(|n| &n.steps)
        .find(|s| s.status() == StepStatus::Failed)
        .map(|s| s.error.clone())
        .unwrap_or_default();
    (wf.status(), error, sent)
}

#[test]
fn backup_cases() {
    type Answer = Box<dyn Fn(&str) -> Option<operation_output::Kind>>;
    let ok = |id: &'static str| -> Answer { Box::new(move |s| backup_output(s, id, "openldap")) };
    /// (case, nodes, answer, status, error contains, steps sent)
    type Case = (
        &'static str,
        Vec<(&'static str, bool)>,
        Answer,
        WorkflowStatus,
        &'static str,
        usize,
    );
    let cases: Vec<Case> = vec![
        (
            "one node: its directory read, then backed up",
            vec![("n1", true)],
            ok("id-n1"),
            WorkflowStatus::Succeeded,
            "",
            2,
        ),
        (
            "no Gluu Server: fails before any job",
            vec![("n1", false)],
            ok("id-n1"),
            WorkflowStatus::Failed,
            "no Gluu Server is installed on gluu1",
            0,
        ),
        (
            "an unknown directory",
            vec![("n1", true)],
            Box::new(|s| backup_output(s, "id-n1", "")),
            WorkflowStatus::Failed,
            "the node's directory is \"\"",
            1,
        ),
        (
            "the node made another backup",
            vec![("n1", true)],
            ok("id-other"),
            WorkflowStatus::Failed,
            "the node made backup \"id-other\"",
            2,
        ),
        (
            "the node named no archive",
            vec![("n1", true)],
            Box::new(|s| match s {
                "backup-directory" => Some(operation_output::Kind::BackupNode(BackupNodeOutput {
                    backup_id: "id-n1".into(),
                    ..Default::default()
                })),
                s => backup_output(s, "id-n1", "opendj"),
            }),
            WorkflowStatus::Failed,
            "names no archive",
            2,
        ),
        (
            "no output at all",
            vec![("n1", true)],
            Box::new(|_| None),
            WorkflowStatus::Failed,
            "no result",
            1,
        ),
    ];
    for (name, nodes, answer, status, error, n_sent) in cases {
        let (got, err, sent) = run_backup(&nodes, &answer);
        assert_eq!(got, status, "{name}: {err}");
        assert!(err.contains(error), "{name}: {err}");
        assert_eq!(sent.len(), n_sent, "{name}: {sent:?}");
    }
}

#[test]
fn every_node_is_backed_up_at_once_under_its_own_id_and_nothing_is_drained() {
    let nodes = [("n1", true), ("n2", true)];
    let (def, mut wf) = backup_of(&["n1", "n2"]);
    let mut obs = observed(&nodes);
    let d = advance(&mut wf, &def, &obs);
    // Both preflights at once.
    assert_eq!(d.dispatch.len(), 2);
    let mut ops = Vec::new();
    succeed_all_with(
        &def,
        &mut wf,
        &mut obs,
        &|s| match s {
            "preflight" => backup_output(s, "", "opendj"),
            _ => None,
        },
        &mut |_, d, step| ops.push((d.node_id.clone(), step.to_string(), d.job.operation.clone())),
    );
    let ids: Vec<(String, String)> = ops
        .iter()
        .filter_map(|(n, _, op)| match &op.kind {
            Some(operation::Kind::BackupNode(b)) => Some((n.clone(), b.backup_id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("n1".to_string(), "id-n1".to_string()),
            ("n2".to_string(), "id-n2".to_string())
        ]
    );
    assert!(ops.iter().all(|(_, _, op)| op.kind.is_some()));
}

fn restore_fixture(b: Balancer) -> (BackupRestore, Workflow, Observed) {
    let mut obs = observed(&[("n1", true), ("n2", true)]);
    lb_online(&mut obs, "lb");
    let wf = new_workflow(
        "r",
        RESTORE_KIND,
        "operator:a",
        1,
        vec![("n1".into(), "gluu1".into(), RESTORE_STEPS.to_vec())],
    );
    let def = BackupRestore {
        inputs: RestoreInputs {
            backup_id: "b1".into(),
            sha256: "c".repeat(64),
            size: 4096,
        },
        admin_password: "dm-pw".into(),
        within_ms: 1000,
        balancer: b,
    };
    (def, wf, obs)
}

fn restored(bases: &[(u64, u64, bool)]) -> Option<operation_output::Kind> {
    Some(operation_output::Kind::RestoreNode(RestoreNodeOutput {
        backup_id: "b1".into(),
        bases: bases
            .iter()
            .map(|(want, got, base)| RestoredBase {
                base: "o=gluu".into(),
                expected_entries: *want,
                entries: *got,
                base_entry: *base,
            })
            .collect(),
        ..Default::default()
    }))
}

#[test]
fn a_restore_drains_the_node_stops_its_directory_restores_restarts_verifies_and_rejoins() {
    let names = [("n1", "gluu1".to_string()), ("n2", "gluu2".to_string())];
    let (def, mut wf, mut obs) = restore_fixture(balancer("lb", names));
    let mut sent = Vec::new();
    succeed_all_with(
        &def,
        &mut wf,
        &mut obs,
        &|s| {
            if s == "restore" {
                restored(&[(4, 4, true)])
            } else {
                None
            }
        },
        &mut |_, d, step| {
            let on = d.run_on.clone().unwrap_or_else(|| d.node_id.clone());
            sent.push((step.to_string(), on, d.job.operation.clone()));
        },
    );
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    let steps: Vec<(&str, &str)> = sent
        .iter()
        .map(|(s, on, _)| (s.as_str(), on.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (DRAIN, "lb"),
            ("stop-directory", "n1"),
            ("restore", "n1"),
            ("start", "n1"),
            ("verify", "n1"),
            (REJOIN, "lb")
        ]
    );
    let op = |i: usize| sent[i].2.kind.clone();
    assert_eq!(
        op(1),
        Some(operation::Kind::GluuServices(GluuServices {
            action: gluu_services::Action::Stop as i32,
            services: vec!["opendj".into()],
        }))
    );
    assert_eq!(
        op(2),
        Some(operation::Kind::RestoreNode(RestoreNode {
            backup_id: "b1".into(),
            sha256: "c".repeat(64),
            size: 4096,
            directory_host: "10.0.0.1".into(),
            directory_port: 1636,
        }))
    );
    let Some(operation::Kind::GluuServices(g)) = op(3) else {
        panic!("{:?}", op(3))
    };
    assert_eq!(
        (g.action(), g.services.len()),
        (gluu_services::Action::Restart, 0)
    );
    assert!(matches!(op(4), Some(operation::Kind::Probe(_))));
}

/// The driver observes the nodes a definition names besides its own: without the balancer's,
/// the drain waits for an unknown node forever.
#[test]
fn a_restore_names_the_balancers_node_to_observe_and_a_backup_none() {
    let names = [("n1", "gluu1".to_string()), ("n2", "gluu2".to_string())];
    let (def, wf, _) = restore_fixture(balancer("lb", names));
    assert_eq!(def.observed_nodes(&wf), ["lb"]);
    let (def, wf, _) = restore_fixture(Balancer::default());
    assert!(def.observed_nodes(&wf).is_empty());
    let (b, wf) = backup_of(&["n1", "n2"]);
    assert!(b.observed_nodes(&wf).is_empty());
}

#[test]
fn restore_cases() {
    // (case, restore's output, status, error contains)
    let cases: Vec<(&str, Option<operation_output::Kind>, WorkflowStatus, &str)> = vec![
        (
            "every entry back",
            restored(&[(4, 4, true), (2, 2, true)]),
            WorkflowStatus::Succeeded,
            "",
        ),
        (
            "an entry short",
            restored(&[(4, 3, true)]),
            WorkflowStatus::Failed,
            "3 entries after the restore, the backup 4",
        ),
        (
            "no base entry",
            restored(&[(4, 4, false)]),
            WorkflowStatus::Failed,
            "entries after the restore",
        ),
        (
            "no base restored",
            restored(&[]),
            WorkflowStatus::Failed,
            "restored no base",
        ),
        ("no output", None, WorkflowStatus::Failed, "no result"),
        (
            "another backup",
            Some(operation_output::Kind::RestoreNode(RestoreNodeOutput {
                backup_id: "b9".into(),
                ..Default::default()
            })),
            WorkflowStatus::Failed,
            "restored \"b9\"",
        ),
    ];
    for (name, out, status, error) in cases {
        // Without a balancer: no drain, no rejoin.
        let (def, mut wf, mut obs) = restore_fixture(Balancer::default());
        let sent = succeed_all(&def, &mut wf, &mut obs, &|s| {
            if s == "restore" { out.clone() } else { None }
        });
        assert_eq!(wf.status(), status, "{name}");
        let err = wf.nodes[0]
            .steps
            .iter()
            .find(|s| s.status() == StepStatus::Failed)
            .map(|s| s.error.clone())
            .unwrap_or_default();
        assert!(err.contains(error), "{name}: {err}");
        let steps: Vec<&str> = sent.iter().map(|(_, s, _)| s.as_str()).collect();
        let want: &[&str] = if status == WorkflowStatus::Succeeded {
            &["stop-directory", "restore", "start", "verify"]
        } else {
            // A failed restore starts nothing after it.
            &["stop-directory", "restore"]
        };
        assert_eq!(steps, want, "{name}");
    }
}

#[test]
fn a_restore_waits_for_the_nodes_address() {
    let (def, mut wf, mut obs) = restore_fixture(Balancer::default());
    obs.nodes.get_mut("n1").unwrap().inventory = None;
    let d = advance(&mut wf, &def, &obs);
    assert!(d.dispatch.is_empty());
    let _ = succeeded(None);
}

#[test]
fn inputs_round_trip() {
    let i = Inputs {
        ids: BTreeMap::from([("n1".into(), "a".into()), ("n2".into(), "b".into())]),
        keep: 7,
    };
    let m: std::collections::HashMap<String, String> = i.encode().into_iter().collect();
    assert_eq!(Inputs::decode(&m).unwrap(), i);
    let r = RestoreInputs {
        backup_id: "b".into(),
        sha256: "d".repeat(64),
        size: 12,
    };
    let m: std::collections::HashMap<String, String> = r.encode().into_iter().collect();
    assert_eq!(RestoreInputs::decode(&m).unwrap(), r);
    let bad = [("keep".to_string(), "x".to_string())].into();
    assert!(Inputs::decode(&bad).is_err());
    assert!(RestoreInputs::decode(&Default::default()).is_err());
}

/// A dry run shows every step the backup and the restore would run: no step fails for want of
/// the output a simulated job does not have.
#[test]
fn dry_runs_plan_every_step() {
    let (def, wf) = backup_of(&["n1", "n2"]);
    let plan = dry_run(&wf, &def, &observed(&[("n1", true), ("n2", true)]));
    let ran: Vec<(String, String)> = plan
        .iter()
        .filter(|p| matches!(p.what, Planned::Run(_)))
        .map(|p| (p.hostname.clone(), p.step.clone()))
        .collect();
    assert_eq!(ran.len(), 4, "{plan:?}");
    assert!(
        plan.iter().all(|p| matches!(p.what, Planned::Run(_))),
        "{plan:?}"
    );
    let b = balancer(
        "lb",
        [("n1", "gluu1".to_string()), ("n2", "gluu2".to_string())],
    );
    let (def, wf, obs) = restore_fixture(b);
    let plan = dry_run(&wf, &def, &obs);
    let steps: Vec<&str> = plan.iter().map(|p| p.step.as_str()).collect();
    assert_eq!(steps, RESTORE_STEPS, "{plan:?}");
    assert!(
        plan.iter().all(|p| matches!(p.what, Planned::Run(_))),
        "{plan:?}"
    );
}
