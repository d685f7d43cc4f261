//! From observed-state fixtures to decisions, for the rolling agent upgrade.

use super::*;
use crate::engine::*;
use clustermgr_proto::{Inventory, OperationOutput, UpgradeAgentOutput, Workflow};

const SHA: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";
const OLD: &str = "0.1.0";
const NEW: &str = "0.1.0+up1";
const NODES: [&str; 3] = ["a", "b", "c"];

fn def() -> AgentUpgrade {
    AgentUpgrade {
        inputs: Inputs {
            sha256: SHA.into(),
            version: NEW.into(),
            online_within_ms: 60_000,
        },
        receive: ReceivePackage {
            sha256: SHA.into(),
            size: 9,
            format: "deb".into(),
            display_name: format!("clustermgr-agent_{NEW}_amd64"),
            chunk_size: 1 << 20,
            chunk_sha256: vec![SHA.into()],
            job_id: String::new(),
        },
    }
}

fn view(version: &str, online: bool) -> NodeView {
    NodeView {
        hostname: String::new(),
        online,
        approved: true,
        inventory: Some(Inventory {
            agent_package_version: version.into(),
            ..Default::default()
        }),
    }
}

fn fixture(versions: [&str; 3]) -> (Workflow, Observed) {
    let nodes = NODES
        .iter()
        .map(|n| (n.to_string(), format!("{n}.example.org"), STEPS.to_vec()))
        .collect();
    let mut wf = new_workflow("w", KIND, "operator:admin", 1, nodes);
    wf.inputs = def().inputs.encode().into_iter().collect();
    let obs = Observed {
        now_ms: 10,
        nodes: NODES
            .iter()
            .zip(versions)
            .map(|(n, v)| (n.to_string(), view(v, true)))
            .collect(),
        ..Default::default()
    };
    (wf, obs)
}

fn kind_of(d: &Dispatch) -> &'static str {
    match &d.job.operation.kind {
        Some(operation::Kind::ReceivePackage(_)) => "push",
        Some(operation::Kind::UpgradeAgent(_)) => "upgrade",
        _ => "other",
    }
}

/// Binds and records every dispatched job with `state` (and an upgrade's output).
fn answer(wf: &mut Workflow, obs: &mut Observed, dec: &Decision, state: JobState) -> Vec<String> {
    let mut out = Vec::new();
    for (i, d) in dec.dispatch.iter().enumerate() {
        let id = format!("{}-{}-{i}-{}", d.node_id, kind_of(d), obs.jobs.len());
        bind_job(wf, d, &id);
        let output = match (kind_of(d), state) {
            ("upgrade", JobState::Succeeded) => Some(OperationOutput {
                kind: Some(operation_output::Kind::UpgradeAgent(UpgradeAgentOutput {
                    from_version: OLD.into(),
                    to_version: NEW.into(),
                    changed: true,
                })),
            }),
            _ => None,
        };
        obs.jobs.insert(
            id.clone(),
            JobView {
                state,
                exit_code: 0,
                error: if state == JobState::Failed {
                    "the new agent (0.1.0+up1) did not come online within 60s; clustermgr-agent 0.1.0 was reinstalled".into()
                } else {
                    String::new()
                },
                output,
            },
        );
        out.push(format!("{} {}", d.node_id, kind_of(d)));
    }
    out
}

fn step<'a>(wf: &'a Workflow, node: &str, name: &str) -> &'a Step {
    wf.nodes
        .iter()
        .find(|n| n.node_id == node)
        .and_then(|n| n.steps.iter().find(|s| s.name == name))
        .expect("step")
}

#[test]
fn inputs_round_trip() {
    let i = def().inputs;
    assert_eq!(Inputs::decode(&i.encode().into_iter().collect()), Ok(i));
}

#[test]
fn pushes_go_in_parallel_upgrades_one_node_at_a_time_each_judged_by_its_new_agent() {
    let d = def();
    let (mut wf, mut obs) = fixture([OLD; 3]);
    let dec = advance(&mut wf, &d, &obs);
    assert_eq!(
        answer(&mut wf, &mut obs, &dec, JobState::Succeeded),
        ["a push", "b push", "c push"]
    );
    let dec = advance(&mut wf, &d, &obs);
    assert_eq!(
        answer(&mut wf, &mut obs, &dec, JobState::Interrupted),
        ["a upgrade"],
        "only the first node"
    );
    assert!(
        step(&wf, "b", "upgrade")
            .waiting_for
            .contains("waiting for a.example.org's upgrade"),
        "{:?}",
        step(&wf, "b", "upgrade").waiting_for
    );
    // The package's prerm stopped a's agent: its job is interrupted and the node offline.
    obs.nodes.insert("a".into(), view(OLD, false));
    let dec = advance(&mut wf, &d, &obs);
    assert!(dec.dispatch.is_empty(), "nothing while a is away");
    assert!(
        step(&wf, "a", "upgrade")
            .waiting_for
            .contains("when the node is back")
    );
    // The new agent is online: the request goes again, and its answer is judged by what the
    // node reports.
    obs.nodes.insert("a".into(), view(NEW, true));
    let dec = advance(&mut wf, &d, &obs);
    assert_eq!(
        answer(&mut wf, &mut obs, &dec, JobState::Succeeded),
        ["a upgrade"]
    );
    let dec = advance(&mut wf, &d, &obs);
    assert_eq!(step(&wf, "a", "upgrade").status(), StepStatus::Succeeded);
    assert_eq!(step(&wf, "a", "upgrade").attempts, 2);
    assert_eq!(
        answer(&mut wf, &mut obs, &dec, JobState::Succeeded),
        ["b upgrade"]
    );
    obs.nodes.insert("b".into(), view(NEW, true));
    let dec = advance(&mut wf, &d, &obs);
    assert_eq!(
        answer(&mut wf, &mut obs, &dec, JobState::Succeeded),
        ["c upgrade"]
    );
    obs.nodes.insert("c".into(), view(NEW, true));
    advance(&mut wf, &d, &obs);
    assert_eq!(wf.status(), WorkflowStatus::Succeeded, "{}", wf.error);
}

#[test]
fn a_rolled_back_node_stops_the_roll() {
    let d = def();
    let (mut wf, mut obs) = fixture([NEW, OLD, OLD]);
    let dec = advance(&mut wf, &d, &obs);
    // a runs the version already: skipped; b's upgrade follows at once.
    assert_eq!(step(&wf, "a", "upgrade").status(), StepStatus::Skipped);
    answer(&mut wf, &mut obs, &dec, JobState::Succeeded);
    let dec = advance(&mut wf, &d, &obs);
    assert_eq!(
        answer(&mut wf, &mut obs, &dec, JobState::Failed),
        ["b upgrade"]
    );
    let dec = advance(&mut wf, &d, &obs);
    assert!(dec.dispatch.is_empty(), "c is not upgraded");
    assert_eq!(step(&wf, "c", "upgrade").status(), StepStatus::Failed);
    assert_eq!(
        step(&wf, "c", "upgrade").error,
        "not upgraded: the roll stopped at b.example.org"
    );
    assert_eq!(wf.status(), WorkflowStatus::Failed);
    assert!(
        wf.error
            .starts_with("b.example.org: step upgrade failed: the new agent")
            && wf.error.contains("0.1.0 was reinstalled"),
        "{}",
        wf.error
    );
}

#[test]
fn an_answer_is_not_enough_the_node_must_report_the_new_package() {
    let d = def();
    let (mut wf, mut obs) = fixture([OLD; 3]);
    let dec = advance(&mut wf, &d, &obs);
    answer(&mut wf, &mut obs, &dec, JobState::Succeeded);
    let dec = advance(&mut wf, &d, &obs);
    answer(&mut wf, &mut obs, &dec, JobState::Succeeded);
    // The job says upgraded, the inventory still says 0.1.0.
    advance(&mut wf, &d, &obs);
    let s = step(&wf, "a", "upgrade");
    assert_eq!(s.status(), StepStatus::Failed);
    assert!(
        s.error
            .contains("not online from clustermgr-agent 0.1.0+up1"),
        "{}",
        s.error
    );
}

#[test]
fn a_node_that_never_comes_back_fails_after_the_deadline() {
    let d = def();
    let (mut wf, mut obs) = fixture([OLD; 3]);
    let dec = advance(&mut wf, &d, &obs);
    answer(&mut wf, &mut obs, &dec, JobState::Succeeded);
    let dec = advance(&mut wf, &d, &obs);
    answer(&mut wf, &mut obs, &dec, JobState::Interrupted);
    obs.nodes.insert("a".into(), view(OLD, false));
    obs.now_ms = 10 + d.inputs.deadline_ms();
    advance(&mut wf, &d, &obs);
    assert_ne!(step(&wf, "a", "upgrade").status(), StepStatus::Failed);
    obs.now_ms += 1;
    advance(&mut wf, &d, &obs);
    let s = step(&wf, "a", "upgrade");
    assert_eq!(s.status(), StepStatus::Failed);
    assert!(s.error.contains("did not answer within"), "{}", s.error);
    assert_eq!(wf.status(), WorkflowStatus::Failed);
}

#[test]
fn the_plan_lists_the_roll_in_order() {
    let d = def();
    let (wf, obs) = fixture([OLD, NEW, OLD]);
    let plan: Vec<String> = dry_run(&wf, &d, &obs)
        .into_iter()
        .map(|p| match p.what {
            Planned::Run(_) => format!("{} {} run", p.hostname, p.step),
            Planned::Skip(_) => format!("{} {} skip", p.hostname, p.step),
            other => format!("{} {} {other:?}", p.hostname, p.step),
        })
        .collect();
    assert_eq!(
        plan,
        [
            "b.example.org push skip",
            "a.example.org push run",
            "c.example.org push run",
            "a.example.org upgrade run",
            "b.example.org upgrade skip",
            "c.example.org upgrade run",
        ]
    );
}
