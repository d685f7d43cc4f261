//! Drain and rejoin, from observed state to decisions.

use super::*;
use crate::engine::*;
use clustermgr_proto::{GluuServices, SetBackendRotationOutput, operation_output};

/// A rolling kind: `restart` then `ready`, the next node only once the previous one is ready.
struct Rolling {
    b: Balancer,
    order: Vec<String>,
}

impl Definition for Rolling {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        self.b.observed()
    }

    fn kind(&self) -> &'static str {
        "rolling"
    }

    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        if let Some(p) = plan(&self.b, ctx) {
            return p;
        }
        let me = ctx.node.node_id.as_str();
        let pos = self.order.iter().position(|n| n == me).unwrap_or(0);
        if pos > 0 && !ctx.done(&self.order[pos - 1], "ready") {
            return StepPlan::Wait("the previous node".into());
        }
        StepPlan::Run(JobSpec {
            operation: Operation {
                kind: Some(operation::Kind::GluuServices(GluuServices::default())),
            },
            timeout_ms: 1000,
            summary: ctx.step().name.clone(),
            rerunnable: true,
            keep_output_as: None,
        })
    }
}

fn balancer(nodes: &[&str]) -> Balancer {
    super::testing::balancer("lb", nodes.iter().map(|n| (*n, format!("{n}.example.org"))))
}

fn fixture(b: Balancer, nodes: &[&str]) -> (Rolling, Workflow, Observed) {
    let mut obs = Observed::default();
    for n in nodes.iter().chain(["lb"].iter()) {
        obs.nodes.insert(
            n.to_string(),
            NodeView {
                hostname: n.to_string(),
                online: true,
                approved: true,
                inventory: None,
            },
        );
    }
    let wf = new_workflow(
        "w",
        "rolling",
        "operator:a",
        1,
        nodes
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    n.to_string(),
                    around(vec!["restart", "ready"], "restart", "ready"),
                )
            })
            .collect(),
    );
    let def = Rolling {
        b,
        order: nodes.iter().map(|n| n.to_string()).collect(),
    };
    (def, wf, obs)
}

/// One dispatched job: (step's node, step, node that runs it, rotation asked: Some(in)).
type Sent = (String, String, String, Option<bool>);

/// Answers every job with success until nothing is dispatched; returns what was sent, in order,
/// and the nodes out of rotation when each job was sent.
fn drive(def: &Rolling, wf: &mut Workflow, obs: &mut Observed) -> Vec<(Sent, Vec<String>)> {
    let mut out = Vec::new();
    super::testing::succeed_all_with(def, wf, obs, &|_| None, &mut |wf, disp, step| {
        let rotation = match &disp.job.operation.kind {
            Some(operation::Kind::SetBackendRotation(r)) => Some(r.in_rotation),
            _ => None,
        };
        let on = disp.run_on.clone().unwrap_or_else(|| disp.node_id.clone());
        out.push((
            (disp.node_id.clone(), step.to_string(), on, rotation),
            drained_nodes(wf),
        ));
    });
    out
}

#[test]
fn around_puts_drain_before_the_first_restart_and_rejoin_after_readiness() {
    let cases: Vec<(Vec<&'static str>, &str, &str, Vec<&str>)> = vec![
        (
            vec!["configure", "restart", "web-ready"],
            "restart",
            "web-ready",
            vec!["configure", "drain", "restart", "web-ready", "rejoin"],
        ),
        (
            vec!["restart", "web-ready", "cleanup"],
            "restart",
            "web-ready",
            vec!["drain", "restart", "web-ready", "rejoin", "cleanup"],
        ),
        // One step both restarts and probes.
        (
            vec!["backup", "install"],
            "install",
            "install",
            vec!["backup", "drain", "install", "rejoin"],
        ),
        // A step missing or out of order: unchanged.
        (vec!["a", "b"], "restart", "b", vec!["a", "b"]),
        (vec!["a", "b"], "b", "a", vec!["a", "b"]),
    ];
    for (steps, first, last, want) in cases {
        assert_eq!(around(steps.clone(), first, last), want, "{steps:?}");
    }
}

#[test]
fn every_restart_happens_out_of_rotation_and_one_node_at_a_time() {
    let nodes = ["g1", "g2", "g3"];
    let (def, mut wf, mut obs) = fixture(balancer(&nodes), &nodes);
    let sent = drive(&def, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    let steps: Vec<_> = sent
        .iter()
        .map(|((n, s, on, r), _)| (n.as_str(), s.as_str(), on.as_str(), *r))
        .collect();
    let mut want = Vec::new();
    for n in nodes {
        want.extend([
            (n, "drain", "lb", Some(false)),
            (n, "restart", n, None),
            (n, "ready", n, None),
            (n, "rejoin", "lb", Some(true)),
        ]);
    }
    assert_eq!(steps, want);
    for ((node, step, _, _), drained) in &sent {
        match step.as_str() {
            // Restarts and readiness probes happen while the node (and only it) is out.
            "restart" | "ready" => assert_eq!(drained, &vec![node.clone()], "{node} {step}"),
            // A drain is sent while no other node is out.
            "drain" => assert_eq!(drained, &vec![node.clone()], "{node} drain"),
            _ => {}
        }
    }
    assert!(drained_nodes(&wf).is_empty());
}

#[test]
fn a_drain_waits_while_another_node_of_the_workflow_is_out() {
    let nodes = ["g1", "g2"];
    // g2 does not wait for g1's readiness: only the drain rule keeps them apart.
    let (mut def, mut wf, mut obs) = fixture(balancer(&nodes), &nodes);
    def.order = vec!["g1".into()];
    let d = advance(&mut wf, &def, &obs);
    let drains: Vec<_> = d.dispatch.iter().map(|x| x.node_id.as_str()).collect();
    // Both drains would be sent in the same round only if the rule were missing.
    assert_eq!(drains, vec!["g1"]);
    let g2 = &wf.nodes[1].steps[0];
    assert_eq!(g2.status(), StepStatus::Pending);
    assert!(
        g2.waiting_for
            .contains("g1 is out of the load balancer's rotation")
    );
    obs.now_ms = 2;
    let _ = &mut obs;
}

#[test]
fn drain_and_rejoin_skip_without_a_balancer_or_for_a_node_not_behind_it() {
    let cases: Vec<(&str, Balancer, &str)> = vec![
        ("no lb", Balancer::default(), "no nginx load balancer"),
        (
            "not a backend",
            balancer(&["g2"]),
            "not behind the load balancer",
        ),
    ];
    for (what, b, why) in cases {
        let (def, mut wf, mut obs) = fixture(b, &["g1"]);
        let sent = drive(&def, &mut wf, &mut obs);
        let steps: Vec<_> = sent.iter().map(|((_, s, _, _), _)| s.as_str()).collect();
        assert_eq!(steps, vec!["restart", "ready"], "{what}");
        let drain = &wf.nodes[0].steps[0];
        assert_eq!(drain.status(), StepStatus::Skipped, "{what}");
        assert!(
            drain.waiting_for.contains(why),
            "{what}: {}",
            drain.waiting_for
        );
    }
}

#[test]
fn the_only_backend_is_not_drained_but_its_rejoin_still_waits_for_readiness() {
    let (def, mut wf, mut obs) = fixture(balancer(&["g1"]), &["g1"]);
    let sent = drive(&def, &mut wf, &mut obs);
    let steps: Vec<_> = sent
        .iter()
        .map(|((_, s, on, r), _)| (s.as_str(), on.as_str(), *r))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("restart", "g1", None),
            ("ready", "g1", None),
            ("rejoin", "lb", Some(true))
        ]
    );
}

#[test]
fn an_offline_balancer_holds_the_drain_and_the_restart_behind_it() {
    let (def, mut wf, mut obs) = fixture(balancer(&["g1", "g2"]), &["g1", "g2"]);
    obs.nodes.get_mut("lb").unwrap().online = false;
    let d = advance(&mut wf, &def, &obs);
    assert!(d.dispatch.is_empty());
    let s = &wf.nodes[0].steps[0];
    assert_eq!(
        (s.name.as_str(), s.status()),
        ("drain", StepStatus::Pending)
    );
    assert!(
        s.waiting_for
            .contains("lb (which runs this step) is offline")
    );
}

#[test]
fn a_rejoin_waits_for_what_the_node_answered_before_its_drain_and_carries_the_rolls_certificate() {
    let (oxauth, identity) = (READY_PATHS[0], READY_PATHS[1]);
    // (what the node answered before the drain (None: the drain reported nothing), what the
    // rejoin waits for)
    let cases: Vec<(Option<Vec<&str>>, Vec<&str>)> = vec![
        (Some(vec![oxauth, identity]), vec![oxauth, identity]),
        // oxAuth without configuration yet (--no-data before replication): not held out for it.
        (Some(vec![identity]), vec![identity]),
        (Some(vec![]), vec![identity]),
        (None, vec![oxauth, identity]),
    ];
    for (before, want) in cases {
        let mut b = balancer(&["g1", "g2"]);
        b.also_trust_pem = "NEW CERT".into();
        let (def, mut wf, mut obs) = fixture(b, &["g1", "g2"]);
        let mut rejoin = None;
        for round in 0..20 {
            let d = advance(&mut wf, &def, &obs);
            for (k, disp) in d.dispatch.iter().enumerate() {
                let id = format!("j{round}-{k}");
                bind_job(&mut wf, disp, &id);
                let step = wf.nodes[0].steps[disp.step].name.clone();
                let Some(operation::Kind::SetBackendRotation(r)) = &disp.job.operation.kind else {
                    obs.jobs.insert(id, ok(None));
                    continue;
                };
                assert_eq!(r.also_trust_pem, "NEW CERT");
                if step == DRAIN {
                    assert!(!r.in_rotation);
                    assert_eq!(r.ready_paths, READY_PATHS.to_vec(), "asked once before");
                    let out = before.as_ref().map(|ready| {
                        operation_output::Kind::SetBackendRotation(SetBackendRotationOutput {
                            ready: ready.iter().map(|p| p.to_string()).collect(),
                            ..Default::default()
                        })
                    });
                    obs.jobs.insert(id, ok(out));
                } else if disp.node_id == "g1" {
                    rejoin = Some(r.clone());
                }
            }
            if rejoin.is_some() {
                break;
            }
        }
        let r = rejoin.expect("g1 rejoins");
        assert!(r.in_rotation);
        assert_eq!(r.ready_paths, want, "before the drain: {before:?}");
    }
}

fn ok(kind: Option<operation_output::Kind>) -> JobView {
    super::testing::succeeded(kind)
}

#[test]
fn a_failed_rejoin_keeps_the_node_out_and_the_next_drain_waits() {
    let (def, mut wf, mut obs) = fixture(balancer(&["g1", "g2", "g3"]), &["g1", "g2", "g3"]);
    // g1 drained, restarted, ready; its rejoin fails (the node never answered).
    for (i, s) in wf.nodes[0].steps.iter_mut().enumerate() {
        s.set_status(if i < 3 {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        });
    }
    obs.now_ms = 5;
    let d = advance(&mut wf, &def, &obs);
    assert!(d.dispatch.is_empty(), "{:?}", d.dispatch);
    assert_eq!(drained_nodes(&wf), vec!["g1".to_string()]);
    assert!(wf.nodes[1].steps[0].waiting_for.contains("g1 is out"));
}

/// One backend out at a time across workflows: a drain waits (visibly) while another running
/// workflow holds a node out of rotation, and goes once that node is back.
#[test]
fn a_drain_waits_while_another_workflow_holds_a_node_out() {
    let nodes = ["g1", "g2"];
    let mut b = balancer(&["g1", "g2", "g3"]);
    b.held = vec![Held {
        workflow_id: "other".into(),
        node_id: "g3".into(),
        hostname: "g3.example.org".into(),
        ..Default::default()
    }];
    let (mut def, mut wf, mut obs) = fixture(b, &nodes);
    let d = advance(&mut wf, &def, &obs);
    assert!(d.dispatch.is_empty(), "{:?}", d.dispatch);
    let waiting = &wf.nodes[0].steps[0];
    assert_eq!(waiting.name, DRAIN);
    assert!(
        waiting.waiting_for.contains("g3.example.org") && waiting.waiting_for.contains("other"),
        "{waiting:?}"
    );
    // Its own held node does not hold it up; the other workflow's rejoin releases it.
    def.b.held.clear();
    let sent = drive(&def, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    assert_eq!(
        sent.iter().filter(|((_, s, _, _), _)| s == DRAIN).count(),
        2
    );
    assert_eq!(held_out(&wf), Vec::new());
}

/// An external balancer probing the health marks: drain and rejoin run on the node itself (no
/// lb node), take away and put back its mark with the configured wait, one node at a time, each
/// restart between its node's own drain and rejoin.
#[test]
fn behind_an_external_balancer_each_node_flips_its_own_health_mark() {
    let nodes = ["g1", "g2", "g3"];
    let mut b = balancer(&nodes);
    b.lb_node.clear();
    b.health_mark_wait_ms = 15_000;
    let (def, mut wf, mut obs) = fixture(b, &nodes);
    let mut sent = Vec::new();
    super::testing::succeed_all_with(&def, &mut wf, &mut obs, &|_| None, &mut |_, disp, step| {
        if let Some(operation::Kind::SetBackendRotation(r)) = &disp.job.operation.kind {
            assert!(r.health_mark && r.mark_wait_ms == 15_000, "{r:?}");
            assert!(disp.run_on.is_none(), "runs on the node itself");
            assert!(disp.job.timeout_ms > r.mark_wait_ms);
        }
        sent.push((disp.node_id.clone(), step.to_string()));
    });
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    let mut want = Vec::new();
    for n in nodes {
        for s in [DRAIN, "restart", "ready", REJOIN] {
            want.push((n.to_string(), s.to_string()));
        }
    }
    assert_eq!(sent, want);
    // Without a wait configured, an external balancer drains nothing.
    let mut b = balancer(&nodes);
    b.lb_node.clear();
    let (def, mut wf, mut obs) = fixture(b, &nodes);
    let sent = drive(&def, &mut wf, &mut obs);
    assert!(
        sent.iter()
            .all(|((_, s, _, _), _)| s != DRAIN && s != REJOIN)
    );
}

/// Sets `node`'s steps (drain, restart, ready, rejoin) of `wf`, the drain started at `at`.
fn set_steps(wf: &mut Workflow, node: &str, at: u64, statuses: [StepStatus; 4]) {
    let n = wf.nodes.iter_mut().find(|n| n.node_id == node).unwrap();
    for (s, st) in n.steps.iter_mut().zip(statuses) {
        s.set_status(st);
        if st != StepStatus::Pending {
            s.started_unix_ms = at;
            s.finished_unix_ms = at + 1;
        }
    }
}

fn health_marks(nodes: &[&str]) -> Balancer {
    let mut b = balancer(nodes);
    b.lb_node.clear();
    b.health_mark_wait_ms = 15_000;
    b
}

use StepStatus::{Failed, Pending, Skipped, Succeeded};

/// A node a failed workflow left out of rotation (behind an external balancer: no health
/// mark) holds every other drain, shown as waiting with the workflow that left it and what
/// the operator can do, until a rejoin of that node (its retry, `gluu restart`) puts it back.
/// With two servers, draining the second one would leave the balancer no node.
#[test]
fn a_node_an_ended_workflow_left_out_holds_the_next_drain() {
    let both = ["g1", "g2"];
    let (_, mut failed, _) = fixture(health_marks(&both), &both);
    failed.id = "wf-failed".into();
    set_steps(&mut failed, "g1", 10, [Succeeded, Failed, Pending, Pending]);
    failed.set_status(WorkflowStatus::Failed);
    let held = left_out_by(std::slice::from_ref(&failed));
    assert_eq!(
        held,
        vec![Held {
            workflow_id: "wf-failed".into(),
            node_id: "g1".into(),
            hostname: "g1".into(),
            ended: true,
        }]
    );
    let mut b = health_marks(&both);
    b.held = held;
    let (mut def, mut wf, mut obs) = fixture(b, &["g2"]);
    let d = advance(&mut wf, &def, &obs);
    assert!(d.dispatch.is_empty(), "{:?}", d.dispatch);
    let why = &wf.nodes[0].steps[0].waiting_for;
    for want in [
        "g1",
        "wf-failed",
        "workflow retry wf-failed",
        "gluu restart g1",
    ] {
        assert!(why.contains(want), "{want}: {why}");
    }
    // A later rejoin of g1 (gluu restart g1) puts it back: g2 drains.
    let (_, mut restart, _) = fixture(health_marks(&both), &["g1"]);
    restart.id = "wf-restart".into();
    set_steps(&mut restart, "g1", 20, [Succeeded; 4]);
    restart.set_status(WorkflowStatus::Succeeded);
    assert_eq!(left_out_by(&[failed.clone(), restart.clone()]), Vec::new());
    // ... but not one that came before the failed workflow's drain.
    set_steps(&mut restart, "g1", 5, [Succeeded; 4]);
    assert_eq!(left_out_by(&[failed, restart]).len(), 1);
    def.b.held.clear();
    let sent = drive(&def, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded);
    assert_eq!(
        sent[0].0,
        ("g2".into(), DRAIN.into(), "g2".into(), Some(false))
    );
}

/// A drain that failed (its wait for the node's requests timed out after the mark was taken
/// away) may have left the node out: the workflow's next node does not drain behind it (with
/// two servers behind an external balancer that would leave none marked), and the node counts
/// as out for the balancer afterwards.
#[test]
fn a_failed_drain_counts_as_out_of_rotation() {
    let both = ["g1", "g2"];
    let (def, mut wf, mut obs) = fixture(health_marks(&both), &both);
    set_steps(&mut wf, "g1", 10, [Failed, Pending, Pending, Pending]);
    obs.now_ms = 20;
    let d = advance(&mut wf, &def, &obs);
    let rotations = d
        .dispatch
        .iter()
        .filter(|x| {
            matches!(
                x.job.operation.kind,
                Some(operation::Kind::SetBackendRotation(_))
            )
        })
        .count();
    assert_eq!(rotations, 0, "{:?}", d.dispatch);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert_eq!(held_out(&wf).len(), 1);
    assert!(held_out(&wf)[0].ended);
    // A leaving node (its rejoin skipped) and a finished roll leave nothing held.
    set_steps(
        &mut wf,
        "g1",
        10,
        [Succeeded, Succeeded, Succeeded, Skipped],
    );
    set_steps(&mut wf, "g2", 30, [Succeeded; 4]);
    assert_eq!(left_out_by(&[wf]), Vec::new());
}

/// Two nodes each left out by an ended workflow: a restart of both drains (again) and rejoins
/// each in turn rather than waiting for the other.
#[test]
fn nodes_left_out_are_brought_back_one_after_the_other() {
    let both = ["g1", "g2"];
    let mut b = balancer(&both);
    b.held = ["g1", "g2"]
        .iter()
        .map(|n| Held {
            workflow_id: format!("ended-{n}"),
            node_id: n.to_string(),
            hostname: n.to_string(),
            ended: true,
        })
        .collect();
    let (def, mut wf, mut obs) = fixture(b, &both);
    let sent = drive(&def, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    let rotations: Vec<(String, Option<bool>)> = sent
        .iter()
        .filter(|((_, s, _, _), _)| s == DRAIN || s == REJOIN)
        .map(|((n, _, _, r), _)| (n.clone(), *r))
        .collect();
    let want: Vec<(String, Option<bool>)> =
        [("g1", false), ("g1", true), ("g2", false), ("g2", true)]
            .iter()
            .map(|(n, r)| (n.to_string(), Some(*r)))
            .collect();
    assert_eq!(rotations, want);
}

/// A node an ended workflow left out that is also a later node of this workflow does not hold
/// this workflow's earlier nodes: they would wait for this workflow itself (the node's turn
/// comes after theirs). The workflow drains its nodes in order and brings that node back too.
#[test]
fn a_left_out_node_of_this_workflow_does_not_hold_its_earlier_nodes() {
    let all = ["g1", "g2", "g3"];
    let mut b = balancer(&all);
    b.held = vec![Held {
        workflow_id: "wf-failed".into(),
        node_id: "g2".into(),
        hostname: "g2".into(),
        ended: true,
    }];
    let (def, mut wf, mut obs) = fixture(b, &["g1", "g2"]);
    let sent = drive(&def, &mut wf, &mut obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{wf:?}");
    let drains: Vec<&str> = sent
        .iter()
        .filter(|((_, step, _, _), _)| step == DRAIN)
        .map(|((node, _, _, _), _)| node.as_str())
        .collect();
    assert_eq!(drains, ["g1", "g2"]);
    // A node outside this workflow still holds it.
    let mut b = balancer(&all);
    b.held = vec![Held {
        workflow_id: "wf-failed".into(),
        node_id: "g3".into(),
        hostname: "g3".into(),
        ended: true,
    }];
    let (def, mut wf, obs) = fixture(b, &["g1", "g2"]);
    let d = advance(&mut wf, &def, &obs);
    assert!(d.dispatch.is_empty(), "{:?}", d.dispatch);
}

/// The balancer's list of nodes out is taken from the stored workflows, which may be a step
/// behind the workflow being advanced: its own node whose rejoin just succeeded still shows as
/// out there. That node does not make the next node "the only server" (its drain was skipped,
/// and it restarted in rotation).
#[test]
fn a_stale_view_of_this_workflows_own_nodes_does_not_skip_the_next_drain() {
    let both = ["g1", "g2"];
    let (_, wf0, _) = fixture(balancer(&both), &both);
    let mut b = balancer(&both);
    b.held = vec![Held {
        workflow_id: wf0.id.clone(),
        node_id: "g1".into(),
        hostname: "g1".into(),
        ended: false,
    }];
    let (def, mut wf, obs) = fixture(b, &both);
    set_steps(&mut wf, "g1", 10, [Succeeded; 4]);
    let d = advance(&mut wf, &def, &obs);
    let g2 = wf.nodes.iter().find(|n| n.node_id == "g2").unwrap();
    let drain = g2.steps.iter().find(|s| s.name == DRAIN).unwrap();
    assert_ne!(drain.status(), Skipped, "{drain:?}");
    let at = g2.steps.iter().position(|s| s.name == DRAIN).unwrap();
    assert!(
        d.dispatch.iter().any(|x| x.node_id == "g2" && x.step == at),
        "{:?}",
        d.dispatch
    );
}
