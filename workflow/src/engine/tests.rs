//! Table-driven tests of the step function with a small two-phase workflow kind: the primary
//! installs first, the others once it is done.

use super::*;
use clustermgr_proto::{Ping, operation};

/// Steps: `install` then `verify` on every node. Others wait for the primary's `verify`.
/// `install` is skipped on a node whose inventory says Gluu is installed; `verify` is not
/// safe to re-run (to exercise both paths). A node named `broken` fails its install plan.
struct Toy;

fn op(payload: &str) -> Operation {
    Operation {
        kind: Some(operation::Kind::Ping(Ping {
            payload: payload.into(),
        })),
    }
}

impl Definition for Toy {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        Vec::new()
    }

    fn kind(&self) -> &'static str {
        "toy"
    }
    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let primary = &ctx.workflow.nodes[0].node_id;
        let me = &ctx.node.node_id;
        if me != primary && !ctx.done(primary, "verify") {
            return StepPlan::Wait("waiting for the primary".into());
        }
        match ctx.step().name.as_str() {
            "install" => {
                if ctx.node.hostname == "broken" {
                    return StepPlan::Fail("unsupported OS".into());
                }
                let installed = ctx
                    .node_view()
                    .and_then(|v| v.inventory.as_ref())
                    .and_then(|i| i.gluu.as_ref())
                    .is_some_and(|g| g.installed);
                if installed {
                    StepPlan::Skip("already installed".into())
                } else {
                    StepPlan::Run(JobSpec {
                        operation: op("install"),
                        timeout_ms: 1000,
                        summary: format!("install on {}", ctx.node.hostname),
                        rerunnable: true,
                        keep_output_as: None,
                    })
                }
            }
            _ => StepPlan::Run(JobSpec {
                operation: op("verify"),
                timeout_ms: 1000,
                summary: "verify".into(),
                rerunnable: false,
                keep_output_as: None,
            }),
        }
    }
    fn check(&self, _ctx: &StepCtx<'_>, job: &JobView) -> Result<(), String> {
        if job.exit_code == 42 {
            Err("output did not verify".into())
        } else {
            Ok(())
        }
    }
}

fn wf(hosts: &[&str]) -> Workflow {
    new_workflow(
        "wf1",
        "toy",
        "operator:admin",
        1,
        hosts
            .iter()
            .map(|h| (format!("id-{h}"), h.to_string(), vec!["install", "verify"]))
            .collect(),
    )
}

fn obs(hosts: &[&str]) -> Observed {
    Observed {
        now_ms: 10,
        nodes: hosts
            .iter()
            .map(|h| {
                (
                    format!("id-{h}"),
                    NodeView {
                        hostname: h.to_string(),
                        online: true,
                        approved: true,
                        inventory: None,
                    },
                )
            })
            .collect(),
        jobs: BTreeMap::new(),
        kept: BTreeMap::new(),
    }
}

fn job(state: JobState) -> JobView {
    JobView {
        state,
        exit_code: if state == JobState::Failed { 3 } else { 0 },
        error: if state == JobState::Failed {
            "exit status 3".into()
        } else {
            String::new()
        },
        output: None,
    }
}

/// Binds every dispatch to a job id `job-N` and returns the ids.
fn bind_all(w: &mut Workflow, d: &Decision, next: &mut u32) -> Vec<String> {
    d.dispatch
        .iter()
        .map(|disp| {
            *next += 1;
            let id = format!("job-{next}");
            bind_job(w, disp, &id);
            id
        })
        .collect()
}

fn status(w: &Workflow, host: &str, step: &str) -> StepStatus {
    w.nodes
        .iter()
        .find(|n| n.hostname == host)
        .and_then(|n| n.steps.iter().find(|s| s.name == step))
        .map(|s| s.status())
        .unwrap_or(StepStatus::Unspecified)
}

fn dispatched(d: &Decision) -> Vec<(String, String)> {
    d.dispatch
        .iter()
        .map(|x| (x.node_id.clone(), x.job.summary.clone()))
        .collect()
}

#[test]
fn primary_first_then_the_others_in_parallel() {
    let hosts = ["g1", "g2", "g3"];
    let mut w = wf(&hosts);
    let mut o = obs(&hosts);
    let mut n = 0;

    let d = advance(&mut w, &Toy, &o);
    assert_eq!(
        dispatched(&d),
        vec![("id-g1".into(), "install on g1".into())]
    );
    assert_eq!(w.status(), WorkflowStatus::Running);
    assert_eq!(w.nodes[1].steps[0].waiting_for, "waiting for the primary");
    let ids = bind_all(&mut w, &d, &mut n);

    // Still running: nothing new, nothing changed.
    o.jobs.insert(ids[0].clone(), job(JobState::Running));
    let d = advance(&mut w, &Toy, &o);
    assert!(d.dispatch.is_empty());
    assert!(!d.changed);

    o.jobs.insert(ids[0].clone(), job(JobState::Succeeded));
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(dispatched(&d), vec![("id-g1".into(), "verify".into())]);
    let ids = bind_all(&mut w, &d, &mut n);
    o.jobs.insert(ids[0].clone(), job(JobState::Succeeded));

    // Primary done: both others start in the same round.
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(
        dispatched(&d),
        vec![
            ("id-g2".into(), "install on g2".into()),
            ("id-g3".into(), "install on g3".into())
        ]
    );
    assert_eq!(status(&w, "g1", "verify"), StepStatus::Succeeded);
    let ids = bind_all(&mut w, &d, &mut n);
    for id in &ids {
        o.jobs.insert(id.clone(), job(JobState::Succeeded));
    }
    let d = advance(&mut w, &Toy, &o);
    let ids = bind_all(&mut w, &d, &mut n);
    assert_eq!(ids.len(), 2);
    for id in &ids {
        o.jobs.insert(id.clone(), job(JobState::Succeeded));
    }
    let d = advance(&mut w, &Toy, &o);
    assert!(d.dispatch.is_empty());
    assert_eq!(w.status(), WorkflowStatus::Succeeded);
    assert_eq!(w.finished_unix_ms, 10);

    // A finished workflow is never advanced again.
    let before = w.clone();
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(d, Decision::default());
    assert_eq!(w, before);
}

#[test]
fn an_offline_node_waits_and_nothing_fails_because_of_it() {
    let hosts = ["g1"];
    let mut w = wf(&hosts);
    let mut o = obs(&hosts);
    o.nodes.get_mut("id-g1").unwrap().online = false;
    for _ in 0..3 {
        let d = advance(&mut w, &Toy, &o);
        assert!(d.dispatch.is_empty());
        assert_eq!(w.status(), WorkflowStatus::Running);
        assert_eq!(status(&w, "g1", "install"), StepStatus::Pending);
        assert!(w.nodes[0].steps[0].waiting_for.contains("offline"));
    }
    o.nodes.get_mut("id-g1").unwrap().online = true;
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(d.dispatch.len(), 1);
    assert!(w.nodes[0].steps[0].waiting_for.is_empty());
}

#[test]
fn a_pending_node_is_not_started() {
    let hosts = ["g1"];
    let mut w = wf(&hosts);
    let mut o = obs(&hosts);
    o.nodes.get_mut("id-g1").unwrap().approved = false;
    assert!(advance(&mut w, &Toy, &o).dispatch.is_empty());
}

#[test]
fn skipped_steps_fall_through_in_one_round() {
    let hosts = ["g1"];
    let mut w = wf(&hosts);
    let mut o = obs(&hosts);
    o.nodes.get_mut("id-g1").unwrap().inventory = Some(Inventory {
        gluu: Some(clustermgr_proto::GluuInstallation {
            installed: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(status(&w, "g1", "install"), StepStatus::Skipped);
    assert_eq!(dispatched(&d), vec![("id-g1".into(), "verify".into())]);
}

#[test]
fn a_failed_step_stops_its_node_the_others_go_on_then_retry_resumes() {
    let hosts = ["g1", "g2", "g3"];
    let mut w = wf(&hosts);
    let mut o = obs(&hosts);
    let mut n = 0;
    // Primary through.
    for _ in 0..2 {
        let d = advance(&mut w, &Toy, &o);
        for id in bind_all(&mut w, &d, &mut n) {
            o.jobs.insert(id, job(JobState::Succeeded));
        }
    }
    let d = advance(&mut w, &Toy, &o);
    let ids = bind_all(&mut w, &d, &mut n);
    assert_eq!(ids.len(), 2);
    // g2's install fails, g3's is still running.
    o.jobs.insert(ids[0].clone(), job(JobState::Failed));
    o.jobs.insert(ids[1].clone(), job(JobState::Running));
    let d = advance(&mut w, &Toy, &o);
    assert!(d.dispatch.is_empty());
    assert_eq!(status(&w, "g2", "install"), StepStatus::Failed);
    assert_eq!(w.nodes[1].steps[0].exit_code, 3);
    assert_eq!(w.nodes[1].steps[0].error, "exit status 3");
    assert_eq!(w.status(), WorkflowStatus::Running, "g3 still runs");
    // g3 finishes its install, goes on to verify.
    o.jobs.insert(ids[1].clone(), job(JobState::Succeeded));
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(dispatched(&d), vec![("id-g3".into(), "verify".into())]);
    let v = bind_all(&mut w, &d, &mut n);
    o.jobs.insert(v[0].clone(), job(JobState::Succeeded));
    advance(&mut w, &Toy, &o);
    assert_eq!(w.status(), WorkflowStatus::Failed);
    assert!(w.error.contains("g2: step install failed"), "{}", w.error);

    // Retry: only g2's install runs again; done steps stay done.
    assert!(retry(&mut w, 20).is_ok());
    assert_eq!(w.status(), WorkflowStatus::Running);
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(
        dispatched(&d),
        vec![("id-g2".into(), "install on g2".into())]
    );
    assert_eq!(status(&w, "g1", "install"), StepStatus::Succeeded);
    assert_eq!(w.nodes[1].steps[0].attempts, 1);
    assert!(matches!(
        retry(&mut w, 21),
        Err(RetryError::NotFailed(WorkflowStatus::Running))
    ));
}

#[test]
fn interrupted_jobs_are_rerun_only_when_safe() {
    // (step index, rerunnable) cases: install is re-runnable, verify is not.
    let hosts = ["g1"];
    let mut w = wf(&hosts);
    let mut o = obs(&hosts);
    let mut n = 0;
    let d = advance(&mut w, &Toy, &o);
    let ids = bind_all(&mut w, &d, &mut n);
    o.jobs.insert(ids[0].clone(), job(JobState::Interrupted));
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(
        dispatched(&d),
        vec![("id-g1".into(), "install on g1".into())]
    );
    assert_eq!(w.nodes[0].steps[0].attempts, 2);
    // An unknown job id (never recorded) is also an unknown outcome.
    let ids = bind_all(&mut w, &d, &mut n);
    assert_eq!(ids, vec!["job-2".to_string()]);
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(d.dispatch.len(), 1);
    assert_eq!(w.nodes[0].steps[0].attempts, 3);
    // Attempts are capped.
    bind_all(&mut w, &d, &mut n);
    advance(&mut w, &Toy, &o);
    assert_eq!(status(&w, "g1", "install"), StepStatus::Failed);
    assert!(w.nodes[0].steps[0].error.contains("not safe to run again"));

    // verify is not re-runnable: an interruption fails it at once.
    let mut w = wf(&hosts);
    let mut o = obs(&hosts);
    let d = advance(&mut w, &Toy, &o);
    for id in bind_all(&mut w, &d, &mut n) {
        o.jobs.insert(id, job(JobState::Succeeded));
    }
    let d = advance(&mut w, &Toy, &o);
    for id in bind_all(&mut w, &d, &mut n) {
        o.jobs.insert(id, job(JobState::Interrupted));
    }
    let d = advance(&mut w, &Toy, &o);
    assert!(d.dispatch.is_empty());
    assert_eq!(status(&w, "g1", "verify"), StepStatus::Failed);
    assert_eq!(w.status(), WorkflowStatus::Failed);
}

#[test]
fn a_step_marked_running_but_never_bound_is_sent() {
    let hosts = ["g1"];
    let mut w = wf(&hosts);
    let o = obs(&hosts);
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(d.dispatch.len(), 1);
    // The driver died before binding a job id: the next round sends the step (once).
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(d.dispatch.len(), 1);
}

#[test]
fn cancel_lets_running_steps_finish_and_starts_nothing() {
    let hosts = ["g1", "g2"];
    let mut w = wf(&hosts);
    let mut o = obs(&hosts);
    let mut n = 0;
    let d = advance(&mut w, &Toy, &o);
    let ids = bind_all(&mut w, &d, &mut n);
    o.jobs.insert(ids[0].clone(), job(JobState::Running));
    assert!(cancel(&mut w));
    advance(&mut w, &Toy, &o);
    assert_eq!(w.status(), WorkflowStatus::Running, "its step still runs");
    o.jobs.insert(ids[0].clone(), job(JobState::Succeeded));
    let d = advance(&mut w, &Toy, &o);
    assert!(d.dispatch.is_empty());
    assert_eq!(w.status(), WorkflowStatus::Cancelled);
    assert_eq!(status(&w, "g1", "install"), StepStatus::Succeeded);
    assert_eq!(status(&w, "g1", "verify"), StepStatus::Cancelled);
    assert_eq!(status(&w, "g2", "install"), StepStatus::Cancelled);
    assert!(!cancel(&mut w), "already ended");
}

#[test]
fn a_queued_workflow_runs_nothing_and_a_cancel_ends_it_at_once() {
    let hosts = ["g1"];
    let mut w = wf(&hosts);
    w.set_status(WorkflowStatus::Queued);
    w.queued_behind = vec!["holder".into()];
    let o = obs(&hosts);
    let d = advance(&mut w, &Toy, &o);
    assert!(
        d.dispatch.is_empty() && !d.changed,
        "queued: nothing starts"
    );
    assert_eq!(w.status(), WorkflowStatus::Queued);
    assert!(cancel(&mut w));
    let d = advance(&mut w, &Toy, &o);
    assert!(d.dispatch.is_empty() && d.changed);
    assert_eq!(w.status(), WorkflowStatus::Cancelled);
    assert!(w.queued_behind.is_empty());
    assert_eq!(status(&w, "g1", "install"), StepStatus::Cancelled);
}

#[test]
fn a_cancelled_queued_retry_keeps_what_succeeded_and_can_be_retried_again() {
    let hosts = ["g1", "g2"];
    let mut w = wf(&hosts);
    let mut o = obs(&hosts);
    let mut n = 0;
    // g1 installs and verifies; g2 installs, its verify fails.
    for state in [
        JobState::Succeeded,
        JobState::Succeeded,
        JobState::Succeeded,
    ] {
        let d = advance(&mut w, &Toy, &o);
        for id in bind_all(&mut w, &d, &mut n) {
            o.jobs.insert(id, job(state));
        }
    }
    let d = advance(&mut w, &Toy, &o);
    for id in bind_all(&mut w, &d, &mut n) {
        o.jobs.insert(id, job(JobState::Failed));
    }
    advance(&mut w, &Toy, &o);
    assert_eq!(w.status(), WorkflowStatus::Failed);
    assert_eq!(status(&w, "g2", "verify"), StepStatus::Failed);
    retry(&mut w, 20).unwrap();
    // Retried while another workflow holds g2: queued, then cancelled.
    w.set_status(WorkflowStatus::Queued);
    w.queued_behind = vec!["holder".into()];
    assert!(cancel(&mut w));
    let d = advance(&mut w, &Toy, &o);
    assert!(d.dispatch.is_empty() && d.changed);
    assert_eq!(
        w.status(),
        WorkflowStatus::Failed,
        "back to failed, not cancelled"
    );
    assert!(w.error.contains("retry was cancelled"), "{}", w.error);
    assert!(!w.cancel_requested && w.queued_behind.is_empty());
    for (host, step, want) in [
        ("g1", "install", StepStatus::Succeeded),
        ("g1", "verify", StepStatus::Succeeded),
        ("g2", "install", StepStatus::Succeeded),
        ("g2", "verify", StepStatus::Cancelled),
    ] {
        assert_eq!(status(&w, host, step), want, "{host} {step}");
    }
    // Retried again: only g2's verify runs.
    retry(&mut w, 30).unwrap();
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(d.dispatch.len(), 1);
    assert_eq!(d.dispatch[0].node_id, "id-g2");
    assert_eq!(w.status(), WorkflowStatus::Running);
}

/// A one-node workflow on g1 whose first step was dispatched: the record, what is observed,
/// the job counter and the dispatched jobs' ids.
fn g1_started() -> (Workflow, Observed, u32, Vec<String>) {
    let hosts = ["g1"];
    let mut w = wf(&hosts);
    let o = obs(&hosts);
    let mut n = 0;
    let d = advance(&mut w, &Toy, &o);
    let ids = bind_all(&mut w, &d, &mut n);
    (w, o, n, ids)
}

#[test]
fn a_retry_after_a_cancel_runs_instead_of_cancelling_at_once() {
    let (mut w, mut o, _, ids) = g1_started();
    assert!(cancel(&mut w));
    o.jobs.insert(ids[0].clone(), job(JobState::Failed));
    advance(&mut w, &Toy, &o);
    assert_eq!(w.status(), WorkflowStatus::Failed);
    retry(&mut w, 20).unwrap();
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(d.dispatch.len(), 1, "the retried install runs");
    assert_eq!(w.status(), WorkflowStatus::Running);
}

#[test]
fn check_can_fail_a_succeeded_job_and_plan_can_fail_a_step() {
    let (mut w, mut o, _, ids) = g1_started();
    let mut j = job(JobState::Succeeded);
    j.exit_code = 42;
    o.jobs.insert(ids[0].clone(), j);
    advance(&mut w, &Toy, &o);
    assert_eq!(status(&w, "g1", "install"), StepStatus::Failed);
    assert_eq!(w.nodes[0].steps[0].error, "output did not verify");

    let hosts = ["broken"];
    let mut w = wf(&hosts);
    let d = advance(&mut w, &Toy, &obs(&hosts));
    assert!(d.dispatch.is_empty());
    assert_eq!(w.status(), WorkflowStatus::Failed);
    assert_eq!(w.nodes[0].steps[0].error, "unsupported OS");
}

#[test]
fn dry_run_shows_the_whole_plan_and_changes_nothing() {
    let hosts = ["g1", "g2"];
    let w = wf(&hosts);
    let o = obs(&hosts);
    let plan = dry_run(&w, &Toy, &o);
    let lines: Vec<(String, String, Planned)> = plan
        .into_iter()
        .map(|p| (p.hostname, p.step, p.what))
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                "g1".into(),
                "install".into(),
                Planned::Run("install on g1".into())
            ),
            ("g1".into(), "verify".into(), Planned::Run("verify".into())),
            (
                "g2".into(),
                "install".into(),
                Planned::Run("install on g2".into())
            ),
            ("g2".into(), "verify".into(), Planned::Run("verify".into())),
        ]
    );
    assert_eq!(
        w.status(),
        WorkflowStatus::Pending,
        "the record is untouched"
    );

    // An offline secondary shows where its plan stops.
    let mut o = obs(&hosts);
    o.nodes.get_mut("id-g2").unwrap().online = false;
    let plan = dry_run(&w, &Toy, &o);
    assert_eq!(
        plan.last().map(|p| p.what.clone()),
        Some(Planned::Blocked(
            "the node is offline or not approved".into()
        ))
    );
}

#[test]
fn names_match_the_cli_contract() {
    let all = [
        (WorkflowStatus::Pending, "pending"),
        (WorkflowStatus::Running, "running"),
        (WorkflowStatus::Succeeded, "succeeded"),
        (WorkflowStatus::Failed, "failed"),
        (WorkflowStatus::Cancelled, "cancelled"),
    ];
    for (s, name) in all {
        assert_eq!(status_name(s), name);
    }
    let n = &wf(&["g1"]).nodes[0];
    assert_eq!(node_progress(n), (0, 2));
}

#[test]
fn a_removed_node_fails_its_next_step_and_the_others_go_on() {
    let hosts = ["g1", "g2"];
    let mut w = wf(&hosts);
    let mut o = obs(&hosts);
    o.nodes.remove("id-g2");
    let d = advance(&mut w, &Toy, &o);
    assert_eq!(status(&w, "g2", "install"), StepStatus::Failed);
    assert!(
        w.nodes[1].steps[0].error.contains("removed"),
        "{}",
        w.nodes[1].steps[0].error
    );
    assert_eq!(d.dispatch.len(), 1, "the primary still starts");
    // Failed once, not again on every round.
    let before = w.clone();
    advance(&mut w, &Toy, &o);
    assert_eq!(w.nodes[1], before.nodes[1]);
}

/// Steps `change`, `check`, `undo`: `undo` is a clean-up step when `cleanup` is set.
struct WithUndo {
    cleanup: bool,
}

impl Definition for WithUndo {
    fn observed_nodes(&self, _wf: &clustermgr_proto::Workflow) -> Vec<String> {
        Vec::new()
    }

    fn kind(&self) -> &'static str {
        "undo"
    }
    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan {
        let name = ctx.step().name.clone();
        if name == "undo" && ctx.done(&ctx.node.node_id, "check") {
            return StepPlan::Skip("nothing to undo".into());
        }
        StepPlan::Run(JobSpec {
            operation: op(&name),
            timeout_ms: 1000,
            summary: name,
            rerunnable: true,
            keep_output_as: None,
        })
    }
    fn cleanup(&self, step: &str) -> bool {
        self.cleanup && step == "undo"
    }
}

#[test]
fn a_cleanup_step_still_runs_after_its_node_failed() {
    for (cleanup, want) in [
        (true, vec!["change", "check", "undo"]),
        (false, vec!["change", "check"]),
    ] {
        let def = WithUndo { cleanup };
        let mut w = new_workflow(
            "wf1",
            "undo",
            "operator:admin",
            1,
            vec![("id-g1".into(), "g1".into(), vec!["change", "check", "undo"])],
        );
        let mut o = obs(&["g1"]);
        let mut n = 0;
        let mut ran = Vec::new();
        for _ in 0..10 {
            let d = advance(&mut w, &def, &o);
            if d.dispatch.is_empty() {
                break;
            }
            for (disp, id) in d.dispatch.iter().zip(bind_all(&mut w, &d, &mut n)) {
                ran.push(disp.job.summary.clone());
                // `check` fails.
                let state = if disp.job.summary == "check" {
                    JobState::Failed
                } else {
                    JobState::Succeeded
                };
                o.jobs.insert(id, job(state));
            }
        }
        assert_eq!(ran, want, "cleanup={cleanup}");
        assert_eq!(w.status(), WorkflowStatus::Failed);
        assert!(w.error.contains("step check failed"), "{}", w.error);
        let undo = if cleanup {
            StepStatus::Succeeded
        } else {
            StepStatus::Pending
        };
        assert_eq!(status(&w, "g1", "undo"), undo);
    }
}

#[test]
fn a_failed_workflow_waits_for_a_cleanup_step_whose_node_is_offline() {
    let def = WithUndo { cleanup: true };
    let mut w = new_workflow(
        "wf1",
        "undo",
        "operator:admin",
        1,
        vec![("id-g1".into(), "g1".into(), vec!["change", "check", "undo"])],
    );
    let mut o = obs(&["g1"]);
    let mut n = 0;
    for state in [JobState::Succeeded, JobState::Failed] {
        let d = advance(&mut w, &def, &o);
        let ids = bind_all(&mut w, &d, &mut n);
        o.jobs.insert(ids[0].clone(), job(state));
    }
    // `check` failed; the node goes offline before its undo is sent.
    o.nodes.get_mut("id-g1").unwrap().online = false;
    let d = advance(&mut w, &def, &o);
    assert!(d.dispatch.is_empty());
    assert_eq!(status(&w, "g1", "check"), StepStatus::Failed);
    assert_eq!(
        w.status(),
        WorkflowStatus::Running,
        "the undo is still to run"
    );
    // Back: the undo runs, then the workflow fails.
    o.nodes.get_mut("id-g1").unwrap().online = true;
    let d = advance(&mut w, &def, &o);
    assert_eq!(dispatched(&d), vec![("id-g1".into(), "undo".into())]);
    let ids = bind_all(&mut w, &d, &mut n);
    o.jobs.insert(ids[0].clone(), job(JobState::Succeeded));
    advance(&mut w, &def, &o);
    assert_eq!(w.status(), WorkflowStatus::Failed);
}
