//! The step function shared by every workflow kind.

use clustermgr_proto::{Inventory, Operation, OperationOutput};
pub use clustermgr_proto::{NodeSteps, Step, StepStatus, Workflow, WorkflowStatus};
use std::collections::BTreeMap;

/// How often a step whose job's outcome is unknown may be sent again.
pub const MAX_ATTEMPTS: u32 = 3;

/// How a job ended, as the controller recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    /// The controller lost track of the job (its session or the controller went away).
    Interrupted,
}

/// One job as the controller sees it.
#[derive(Debug, Clone)]
pub struct JobView {
    pub state: JobState,
    pub exit_code: i32,
    pub error: String,
    pub output: Option<OperationOutput>,
}

/// One node as the controller sees it.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub hostname: String,
    pub online: bool,
    pub approved: bool,
    pub inventory: Option<Inventory>,
}

/// Everything a step decision may depend on.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub now_ms: u64,
    pub nodes: BTreeMap<String, NodeView>,
    /// The jobs the workflow's steps started, by job id. A job id missing here is unknown to
    /// the controller (it was never recorded).
    pub jobs: BTreeMap<String, JobView>,
    /// Outputs the driver kept for the workflow (see [`JobSpec::keep_output_as`]), by key; the
    /// driver stores them encrypted at rest, so they survive a controller restart.
    pub kept: BTreeMap<String, Vec<u8>>,
}

/// A job a step wants run.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub operation: Operation,
    pub timeout_ms: u32,
    /// What the job does, for `--dry-run` and `workflow show`; never holds secrets.
    pub summary: String,
    /// Running the job a second time is harmless (so an unknown outcome may be retried).
    pub rerunnable: bool,
    /// Keep the job's secret output (e.g. file content) under this key in [`Observed::kept`].
    pub keep_output_as: Option<String>,
}

/// What a workflow kind says about one pending step, now.
#[derive(Debug, Clone, PartialEq)]
// One value per step decision, moved straight into a dispatch: boxing would add an allocation
// and change nothing in memory use.
#[allow(clippy::large_enum_variant)]
pub enum StepPlan {
    /// Run this job.
    Run(JobSpec),
    /// Run this job on another node (by id) for this step, e.g. the load balancer's drain of
    /// the step's node; it waits while that node is offline or not approved.
    RunOn(String, JobSpec),
    /// Not yet: a precondition is not met (in words, for `workflow show`).
    Wait(String),
    /// Nothing to do: what the step would make true already is.
    Skip(String),
    /// The step cannot be done.
    Fail(String),
}

/// A workflow kind: which steps, and what each one needs.
pub trait Definition {
    /// The `kind` recorded on the workflow.
    fn kind(&self) -> &'static str;

    /// Decides a pending step from observed state.
    fn plan_step(&self, ctx: &StepCtx<'_>) -> StepPlan;

    /// Checks a succeeded job's result; an error fails the step.
    fn check(&self, _ctx: &StepCtx<'_>, _job: &JobView) -> Result<(), String> {
        Ok(())
    }

    /// A clean-up step (e.g. a rollback): it is still planned after an earlier step of its own
    /// node failed, when every other step of that node stops. Its `plan_step` decides whether
    /// there is anything to undo.
    fn cleanup(&self, _step: &str) -> bool {
        false
    }

    /// Nodes besides the workflow's own whose state the plan reads (the load balancer's node a
    /// drain runs on, a cache client's cache hosts): the driver observes them too.
    fn observed_nodes(&self, _wf: &Workflow) -> Vec<String> {
        Vec::new()
    }
}

/// The step being decided and what surrounds it.
pub struct StepCtx<'a> {
    pub workflow: &'a Workflow,
    pub node: &'a NodeSteps,
    pub index: usize,
    pub observed: &'a Observed,
}

impl StepCtx<'_> {
    pub fn step(&self) -> &Step {
        &self.node.steps[self.index]
    }

    /// The observed view of the step's node.
    pub fn node_view(&self) -> Option<&NodeView> {
        self.observed.nodes.get(&self.node.node_id)
    }

    /// Whether `node_id`'s step `name` in this workflow succeeded or was skipped.
    pub fn done(&self, node_id: &str, name: &str) -> bool {
        step_of(self.workflow, node_id, name).is_some_and(|s| is_done(s.status()))
    }

    /// `node_id`'s first address, from its inventory.
    pub fn address(&self, node_id: &str) -> Option<String> {
        self.observed
            .nodes
            .get(node_id)?
            .inventory
            .as_ref()?
            .addresses
            .first()
            .cloned()
    }

    /// `node_id`'s hostname in this workflow (its id when it is not one of the workflow's).
    pub fn hostname(&self, node_id: &str) -> String {
        self.workflow
            .nodes
            .iter()
            .find(|n| n.node_id == node_id)
            .map_or_else(|| node_id.to_string(), |n| n.hostname.clone())
    }

    /// The job that carried out `node_id`'s step `name`, when it succeeded.
    pub fn job_of(&self, node_id: &str, name: &str) -> Option<&JobView> {
        let s = step_of(self.workflow, node_id, name)?;
        self.observed
            .jobs
            .get(&s.job_id)
            .filter(|j| j.state == JobState::Succeeded)
    }
}

pub(crate) fn step_of<'a>(wf: &'a Workflow, node_id: &str, name: &str) -> Option<&'a Step> {
    wf.nodes
        .iter()
        .find(|n| n.node_id == node_id)?
        .steps
        .iter()
        .find(|s| s.name == name)
}

/// A job to send for a step. The driver records the job's id on the step ([`bind_job`]) and
/// persists the workflow before it sends the job.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub node_id: String,
    pub step: usize,
    pub job: JobSpec,
    /// The node that runs the job when it is not the step's own ([`StepPlan::RunOn`]).
    pub run_on: Option<String>,
}

/// A step that finished (or started waiting) in this round, for the driver's log and events.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub node_id: String,
    pub step: String,
    pub status: StepStatus,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub dispatch: Vec<Dispatch>,
    pub transitions: Vec<Transition>,
    /// Whether the record changed (the driver persists it only then).
    pub changed: bool,
}

pub fn is_done(s: StepStatus) -> bool {
    matches!(s, StepStatus::Succeeded | StepStatus::Skipped)
}

pub fn is_terminal(s: WorkflowStatus) -> bool {
    matches!(
        s,
        WorkflowStatus::Succeeded | WorkflowStatus::Failed | WorkflowStatus::Cancelled
    )
}

/// A new workflow record: every step of every node pending.
pub fn new_workflow(
    id: &str,
    kind: &str,
    started_by: &str,
    now_ms: u64,
    nodes: Vec<(String, String, Vec<&str>)>,
) -> Workflow {
    Workflow {
        id: id.to_string(),
        kind: kind.to_string(),
        status: WorkflowStatus::Pending as i32,
        started_by: started_by.to_string(),
        created_unix_ms: now_ms,
        updated_unix_ms: now_ms,
        nodes: nodes
            .into_iter()
            .map(|(node_id, hostname, steps)| NodeSteps {
                node_id,
                hostname,
                steps: steps
                    .into_iter()
                    .map(|name| Step {
                        name: name.to_string(),
                        status: StepStatus::Pending as i32,
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Records the job the driver created for a dispatched step.
pub fn bind_job(wf: &mut Workflow, d: &Dispatch, job_id: &str) {
    if let Some(s) = wf
        .nodes
        .iter_mut()
        .find(|n| n.node_id == d.node_id)
        .and_then(|n| n.steps.get_mut(d.step))
    {
        s.job_id = job_id.to_string();
    }
}

/// Asks a workflow to stop after its running steps. Returns false if it had already ended.
pub fn cancel(wf: &mut Workflow) -> bool {
    if is_terminal(wf.status()) {
        return false;
    }
    wf.cancel_requested = true;
    true
}

/// A queued workflow whose cancel was asked for ends at once (nothing more of it runs); only
/// its pending steps are cancelled. A queued retry (some of it ran before) goes back to failed,
/// its done steps and the values it kept intact, so it can be retried again; a workflow that
/// never ran ends cancelled. Returns whether it ended.
pub fn end_cancelled_queued(wf: &mut Workflow, now_ms: u64) -> bool {
    if wf.status() != WorkflowStatus::Queued || !wf.cancel_requested {
        return false;
    }
    let ran = wf
        .nodes
        .iter()
        .flat_map(|n| n.steps.iter())
        .any(|s| is_done(s.status()) || s.started_unix_ms != 0 || !s.job_id.is_empty());
    for s in wf.nodes.iter_mut().flat_map(|n| n.steps.iter_mut()) {
        if matches!(s.status(), StepStatus::Pending | StepStatus::Unspecified) {
            s.set_status(StepStatus::Cancelled);
        }
        s.waiting_for.clear();
    }
    if ran {
        wf.set_status(WorkflowStatus::Failed);
        wf.error = "its retry was cancelled before it started; workflow retry runs it again".into();
        wf.cancel_requested = false;
    } else {
        wf.set_status(WorkflowStatus::Cancelled);
    }
    wf.queued_behind.clear();
    wf.finished_unix_ms = now_ms;
    wf.updated_unix_ms = now_ms;
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryError {
    NotFailed(WorkflowStatus),
}

impl std::fmt::Display for RetryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFailed(s) => write!(
                f,
                "only a failed workflow can be retried; this one is {}",
                status_name(*s)
            ),
        }
    }
}

impl std::error::Error for RetryError {}

/// Starts a failed workflow again from its failed steps; done steps stay done.
pub fn retry(wf: &mut Workflow, now_ms: u64) -> Result<(), RetryError> {
    if wf.status() != WorkflowStatus::Failed {
        return Err(RetryError::NotFailed(wf.status()));
    }
    for s in wf.nodes.iter_mut().flat_map(|n| n.steps.iter_mut()) {
        if matches!(s.status(), StepStatus::Failed | StepStatus::Cancelled) {
            s.set_status(StepStatus::Pending);
            s.error.clear();
            s.exit_code = 0;
            s.attempts = 0;
            s.finished_unix_ms = 0;
        }
    }
    wf.set_status(WorkflowStatus::Running);
    // A cancel asked for before it failed is over: the retry is a new request.
    wf.cancel_requested = false;
    wf.error.clear();
    wf.finished_unix_ms = 0;
    wf.updated_unix_ms = now_ms;
    Ok(())
}

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
        // Removed from the controller: its next step can never run.
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
                let job_id = wf.nodes[n].steps[i].job_id.clone();
                if job_id.is_empty()
                    && d.dispatch
                        .iter()
                        .any(|x| x.node_id == node_id && x.step == i)
                {
                    // Dispatched earlier in this round: the driver binds and sends it.
                    return;
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
                    return;
                };
                match job.state {
                    JobState::Running => return,
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
                            Ok(()) => finish(wf, n, i, StepStatus::Succeeded, "", 0, obs, d),
                            Err(e) => {
                                finish(wf, n, i, StepStatus::Failed, &e, job.exit_code, obs, d);
                                return;
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
                        return;
                    }
                    JobState::Interrupted => {
                        let why = format!("the step's job was interrupted ({})", job.error);
                        unknown_outcome(wf, n, i, def, obs, available, d, &why);
                        return;
                    }
                }
            }
            StepStatus::Pending | StepStatus::Unspecified => {
                continue_pending(wf, n, i, def, obs, available, d);
                return;
            }
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

/// `pending`, `queued`, `running`, `succeeded`, `failed` or `cancelled`: the names the CLI and JSON use.
pub fn status_name(s: WorkflowStatus) -> &'static str {
    match s {
        WorkflowStatus::Unspecified | WorkflowStatus::Pending => "pending",
        WorkflowStatus::Running => "running",
        WorkflowStatus::Succeeded => "succeeded",
        WorkflowStatus::Failed => "failed",
        WorkflowStatus::Cancelled => "cancelled",
        WorkflowStatus::Queued => "queued",
    }
}

/// `pending`, `running`, `succeeded`, `failed`, `skipped` or `cancelled`.
pub fn step_status_name(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Unspecified | StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
        StepStatus::Cancelled => "cancelled",
    }
}

/// Steps done and steps in all, for a node's progress bar.
pub fn node_progress(n: &NodeSteps) -> (usize, usize) {
    let done = n.steps.iter().filter(|s| is_done(s.status())).count();
    (done, n.steps.len())
}

/// One line of a dry run: what a step would do.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub hostname: String,
    pub step: String,
    pub what: Planned,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    Run(String),
    Skip(String),
    /// The plan stops here for this node (a precondition no simulated step makes true).
    Blocked(String),
    Fail(String),
}

/// What the workflow would do if every job succeeded, without doing anything: the plan for
/// `--dry-run`. Each dispatched job is assumed to succeed with no output.
pub fn dry_run(wf: &Workflow, def: &dyn Definition, obs: &Observed) -> Vec<PlannedStep> {
    let mut wf = wf.clone();
    let mut obs = obs.clone();
    let mut out = Vec::new();
    let mut seq = 0u64;
    for _ in 0..10_000 {
        let d = advance(&mut wf, def, &obs);
        for t in &d.transitions {
            if t.status == StepStatus::Skipped {
                let why = step_of(&wf, &t.node_id, &t.step)
                    .map(|s| s.waiting_for.clone())
                    .unwrap_or_default();
                out.push(PlannedStep {
                    hostname: hostname(&wf, &t.node_id),
                    step: t.step.clone(),
                    what: Planned::Skip(why),
                });
            } else if t.status == StepStatus::Failed {
                let e = step_of(&wf, &t.node_id, &t.step)
                    .map(|s| s.error.clone())
                    .unwrap_or_default();
                out.push(PlannedStep {
                    hostname: hostname(&wf, &t.node_id),
                    step: t.step.clone(),
                    what: Planned::Fail(e),
                });
            }
        }
        if d.dispatch.is_empty() {
            break;
        }
        for disp in &d.dispatch {
            seq += 1;
            let job_id = format!("dry-run-{seq}");
            bind_job(&mut wf, disp, &job_id);
            // What the job would keep is not known before it runs: an empty placeholder lets
            // the steps that need it be planned.
            if let Some(key) = &disp.job.keep_output_as {
                obs.kept.entry(key.clone()).or_default();
            }
            obs.jobs.insert(
                job_id,
                JobView {
                    state: JobState::Succeeded,
                    exit_code: 0,
                    error: String::new(),
                    output: Some(OperationOutput::default()),
                },
            );
            out.push(PlannedStep {
                hostname: hostname(&wf, &disp.node_id),
                step: wf
                    .nodes
                    .iter()
                    .find(|n| n.node_id == disp.node_id)
                    .map(|n| n.steps[disp.step].name.clone())
                    .unwrap_or_default(),
                what: Planned::Run(disp.job.summary.clone()),
            });
        }
    }
    for n in &wf.nodes {
        if let Some(s) = n.steps.iter().find(|s| s.status() == StepStatus::Pending) {
            out.push(PlannedStep {
                hostname: n.hostname.clone(),
                step: s.name.clone(),
                what: Planned::Blocked(s.waiting_for.clone()),
            });
        }
    }
    out
}

fn hostname(wf: &Workflow, node_id: &str) -> String {
    wf.nodes
        .iter()
        .find(|n| n.node_id == node_id)
        .map(|n| n.hostname.clone())
        .unwrap_or_else(|| node_id.to_string())
}

#[cfg(test)]
mod tests;
