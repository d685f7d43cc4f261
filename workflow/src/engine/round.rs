//! One round of the step function ([`advance`]): each node's steps moved forward from what is
//! observed, the jobs to send, and the workflow's status settled from its steps.

use super::{
    Decision, Definition, Dispatch, JobSpec, JobState, MAX_ATTEMPTS, Observed, StepCtx, StepPlan,
    StepStatus, Transition, Workflow, WorkflowStatus, end_cancelled_queued, is_done, is_terminal,
};

/// One round of the step function: reads the observed state, moves steps forward, and returns
/// the jobs to send. Pure: the same record and observations give the same decision.
pub fn advance(wf: &mut Workflow, def: &dyn Definition, obs: &Observed) -> Decision {
    let mut d = Decision::default();
    if is_terminal(wf.status()) {
        return d;
    }
    if wf.status() == WorkflowStatus::Queued {
        // Not started: the driver starts it when what it waits for has ended
        // (`queue::admit_queued`).
        d.changed = end_cancelled_queued(wf, obs.now_ms);
        return d;
    }
    let before = wf.clone();
    if wf.status() == WorkflowStatus::Pending {
        wf.set_status(WorkflowStatus::Running);
    }
    // Until nothing moves: a step finishing on a later node may unblock an earlier one in the
    // same round (bounded: each pass changes at least one step, and steps only move forward).
    for _ in 0..64 {
        let pass = wf.clone();
        for n in 0..wf.nodes.len() {
            advance_node(wf, n, def, obs, &mut d);
        }
        if *wf == pass {
            break;
        }
    }
    settle(wf, obs, &d, def);
    d.changed = *wf != before;
    if d.changed {
        wf.updated_unix_ms = obs.now_ms;
    }
    d
}

fn advance_node(
    wf: &mut Workflow,
    n: usize,
    def: &dyn Definition,
    obs: &Observed,
    d: &mut Decision,
) {
    let node_id = wf.nodes[n].node_id.clone();
    let view = obs.nodes.get(&node_id);
    if view.is_none() {
        fail_removed_node(wf, n, obs, d);
        return;
    }
    let available = view.is_some_and(|v| v.online && v.approved);
    // Once a step failed, only the node's clean-up steps go on.
    let mut stopped = false;
    for i in 0..wf.nodes[n].steps.len() {
        let status = wf.nodes[n].steps[i].status();
        if stopped && !def.cleanup(&wf.nodes[n].steps[i].name) {
            continue;
        }
        match status {
            StepStatus::Succeeded | StepStatus::Skipped => continue,
            StepStatus::Cancelled => return,
            StepStatus::Failed => {
                stopped = true;
                continue;
            }
            StepStatus::Running => {
                if !advance_running(wf, n, i, def, obs, available, d) {
                    return;
                }
            }
            StepStatus::Pending | StepStatus::Unspecified => {
                continue_pending(wf, n, i, def, obs, available, d);
                return;
            }
        }
    }
}

/// A node removed from the controller: its next step can never run, so it fails.
fn fail_removed_node(wf: &mut Workflow, n: usize, obs: &Observed, d: &mut Decision) {
    if let Some(i) = wf.nodes[n]
        .steps
        .iter()
        .position(|s| !is_done(s.status()))
        .filter(|&i| {
            !matches!(
                wf.nodes[n].steps[i].status(),
                StepStatus::Failed | StepStatus::Cancelled
            )
        })
    {
        finish(
            wf,
            n,
            i,
            StepStatus::Failed,
            "the node was removed from the controller",
            0,
            obs,
            d,
        );
    }
}

/// A running step, from its job's state. Returns whether the node goes on to its next step
/// (the job succeeded and its result passed the kind's check).
fn advance_running(
    wf: &mut Workflow,
    n: usize,
    i: usize,
    def: &dyn Definition,
    obs: &Observed,
    available: bool,
    d: &mut Decision,
) -> bool {
    let node_id = wf.nodes[n].node_id.clone();
    let job_id = wf.nodes[n].steps[i].job_id.clone();
    if job_id.is_empty()
        && d.dispatch
            .iter()
            .any(|x| x.node_id == node_id && x.step == i)
    {
        // Dispatched earlier in this round: the driver binds and sends it.
        return false;
    }
    let Some(job) = obs.jobs.get(&job_id).cloned() else {
        if job_id.is_empty() {
            // Marked running but never bound to a job: it was never sent.
            reset_to_pending(wf, n, i);
            continue_pending(wf, n, i, def, obs, available, d);
        } else {
            unknown_outcome(
                wf,
                n,
                i,
                def,
                obs,
                available,
                d,
                "the controller has no record of the step's job",
            );
        }
        return false;
    };
    match job.state {
        JobState::Running => false,
        JobState::Succeeded => {
            let verdict = {
                let ctx = StepCtx {
                    workflow: wf,
                    node: &wf.nodes[n],
                    index: i,
                    observed: obs,
                };
                def.check(&ctx, &job)
            };
            match verdict {
                Ok(()) => {
                    finish(wf, n, i, StepStatus::Succeeded, "", 0, obs, d);
                    true
                }
                Err(e) => {
                    finish(wf, n, i, StepStatus::Failed, &e, job.exit_code, obs, d);
                    false
                }
            }
        }
        JobState::Failed | JobState::TimedOut => {
            let err = if job.error.is_empty() {
                "the job failed".to_string()
            } else {
                job.error.clone()
            };
            finish(wf, n, i, StepStatus::Failed, &err, job.exit_code, obs, d);
            false
        }
        JobState::Interrupted => {
            let why = format!("the step's job was interrupted ({})", job.error);
            unknown_outcome(wf, n, i, def, obs, available, d, &why);
            false
        }
    }
}

fn node_available(obs: &Observed, node_id: &str) -> bool {
    obs.nodes
        .get(node_id)
        .is_some_and(|v| v.online && v.approved)
}

fn reset_to_pending(wf: &mut Workflow, n: usize, i: usize) {
    let s = &mut wf.nodes[n].steps[i];
    s.set_status(StepStatus::Pending);
    s.job_id.clear();
}

/// A running step whose job's outcome is unknown: run it again if that is safe.
#[allow(clippy::too_many_arguments)]
fn unknown_outcome(
    wf: &mut Workflow,
    n: usize,
    i: usize,
    def: &dyn Definition,
    obs: &Observed,
    available: bool,
    d: &mut Decision,
    why: &str,
) {
    let plan = plan(wf, n, i, def, obs);
    let (available, run_on) = match &plan {
        StepPlan::RunOn(other, _) => (node_available(obs, other), Some(other.clone())),
        _ => (available, None),
    };
    match plan {
        StepPlan::Run(spec) | StepPlan::RunOn(_, spec)
            if spec.rerunnable && wf.nodes[n].steps[i].attempts < MAX_ATTEMPTS =>
        {
            if available && !wf.cancel_requested {
                start(wf, n, i, spec, run_on, obs, d);
            } else {
                wf.nodes[n].steps[i].waiting_for =
                    format!("{why}; will run it again when the node is back");
            }
        }
        StepPlan::Run(_) | StepPlan::RunOn(..) => {
            let msg = format!(
                "{why}; its outcome is unknown and it is not safe to run again automatically: check the node, then retry the workflow"
            );
            finish(wf, n, i, StepStatus::Failed, &msg, 0, obs, d);
        }
        // What the step makes true may meanwhile be observed true, or it may have to wait.
        other => apply_plan(wf, n, i, other, obs, available, d),
    }
}

#[allow(clippy::too_many_arguments)]
fn continue_pending(
    wf: &mut Workflow,
    n: usize,
    i: usize,
    def: &dyn Definition,
    obs: &Observed,
    available: bool,
    d: &mut Decision,
) {
    if wf.cancel_requested {
        for s in wf.nodes[n].steps[i..].iter_mut() {
            s.set_status(StepStatus::Cancelled);
            s.waiting_for.clear();
        }
        return;
    }
    let plan = plan(wf, n, i, def, obs);
    let skipped = matches!(plan, StepPlan::Skip(_));
    apply_plan(wf, n, i, plan, obs, available, d);
    // A skipped step lets the node go on to its next step in the same round.
    if skipped && i + 1 < wf.nodes[n].steps.len() {
        continue_pending(wf, n, i + 1, def, obs, available, d);
    }
}

fn plan(wf: &Workflow, n: usize, i: usize, def: &dyn Definition, obs: &Observed) -> StepPlan {
    let ctx = StepCtx {
        workflow: wf,
        node: &wf.nodes[n],
        index: i,
        observed: obs,
    };
    def.plan_step(&ctx)
}

#[allow(clippy::too_many_arguments)]
fn apply_plan(
    wf: &mut Workflow,
    n: usize,
    i: usize,
    plan: StepPlan,
    obs: &Observed,
    available: bool,
    d: &mut Decision,
) {
    match plan {
        StepPlan::Run(spec) => {
            if available {
                start(wf, n, i, spec, None, obs, d);
            } else {
                let s = &mut wf.nodes[n].steps[i];
                if s.status() != StepStatus::Pending {
                    s.set_status(StepStatus::Pending);
                }
                s.waiting_for = "the node is offline or not approved".into();
            }
        }
        StepPlan::RunOn(other, spec) => {
            if node_available(obs, &other) {
                start(wf, n, i, spec, Some(other), obs, d);
            } else {
                let s = &mut wf.nodes[n].steps[i];
                if s.status() != StepStatus::Pending {
                    s.set_status(StepStatus::Pending);
                }
                s.waiting_for = format!(
                    "{} (which runs this step) is offline or not approved",
                    obs.nodes
                        .get(&other)
                        .map_or(other.as_str(), |v| v.hostname.as_str())
                );
            }
        }
        StepPlan::Wait(why) => {
            let s = &mut wf.nodes[n].steps[i];
            if s.status() != StepStatus::Pending {
                s.set_status(StepStatus::Pending);
            }
            s.waiting_for = why;
        }
        StepPlan::Skip(why) => {
            finish(wf, n, i, StepStatus::Skipped, "", 0, obs, d);
            wf.nodes[n].steps[i].waiting_for = why;
        }
        StepPlan::Fail(e) => finish(wf, n, i, StepStatus::Failed, &e, 0, obs, d),
    }
}

#[allow(clippy::too_many_arguments)]
fn start(
    wf: &mut Workflow,
    n: usize,
    i: usize,
    spec: JobSpec,
    run_on: Option<String>,
    obs: &Observed,
    d: &mut Decision,
) {
    let node_id = wf.nodes[n].node_id.clone();
    let s = &mut wf.nodes[n].steps[i];
    s.set_status(StepStatus::Running);
    s.job_id.clear();
    s.attempts += 1;
    s.waiting_for.clear();
    s.error.clear();
    if s.started_unix_ms == 0 {
        s.started_unix_ms = obs.now_ms;
    }
    d.transitions.push(Transition {
        node_id: node_id.clone(),
        step: s.name.clone(),
        status: StepStatus::Running,
    });
    d.dispatch.push(Dispatch {
        node_id,
        step: i,
        job: spec,
        run_on,
    });
}

#[allow(clippy::too_many_arguments)]
fn finish(
    wf: &mut Workflow,
    n: usize,
    i: usize,
    status: StepStatus,
    error: &str,
    exit_code: i32,
    obs: &Observed,
    d: &mut Decision,
) {
    let node_id = wf.nodes[n].node_id.clone();
    let s = &mut wf.nodes[n].steps[i];
    s.set_status(status);
    s.error = error.to_string();
    s.exit_code = exit_code;
    s.waiting_for.clear();
    if s.started_unix_ms == 0 {
        s.started_unix_ms = obs.now_ms;
    }
    s.finished_unix_ms = obs.now_ms;
    d.transitions.push(Transition {
        node_id,
        step: s.name.clone(),
        status,
    });
}

/// The workflow's status from its steps' after a round.
fn settle(wf: &mut Workflow, obs: &Observed, d: &Decision, def: &dyn Definition) {
    let now_ms = obs.now_ms;
    let steps = || wf.nodes.iter().flat_map(|n| n.steps.iter());
    let running = steps().any(|s| s.status() == StepStatus::Running) || !d.dispatch.is_empty();
    if running {
        return;
    }
    // A clean-up step its node has reached (every step before it ended), on a node the
    // controller knows (offline for now, say): the workflow waits for it, unless it is being
    // cancelled.
    let cleanup_left = !wf.cancel_requested
        && wf.nodes.iter().any(|n| {
            obs.nodes.contains_key(&n.node_id)
                && n.steps.iter().enumerate().any(|(i, s)| {
                    matches!(s.status(), StepStatus::Pending | StepStatus::Unspecified)
                        && def.cleanup(&s.name)
                        && n.steps[..i].iter().all(|e| {
                            is_done(e.status())
                                || matches!(e.status(), StepStatus::Failed | StepStatus::Cancelled)
                        })
                })
        });
    if cleanup_left {
        return;
    }
    let all_done = steps().all(|s| is_done(s.status()));
    let failed = wf.nodes.iter().find_map(|n| {
        n.steps
            .iter()
            .find(|s| s.status() == StepStatus::Failed)
            .map(|s| format!("{}: step {} failed: {}", n.hostname, s.name, s.error))
    });
    let new = if all_done {
        WorkflowStatus::Succeeded
    } else if let Some(e) = failed {
        wf.error = e;
        WorkflowStatus::Failed
    } else if wf.cancel_requested {
        for s in wf.nodes.iter_mut().flat_map(|n| n.steps.iter_mut()) {
            if s.status() == StepStatus::Pending {
                s.set_status(StepStatus::Cancelled);
                s.waiting_for.clear();
            }
        }
        WorkflowStatus::Cancelled
    } else {
        // Waiting for a node or a precondition: still running.
        return;
    };
    wf.set_status(new);
    wf.finished_unix_ms = now_ms;
}
