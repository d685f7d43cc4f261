//! The step function shared by every workflow kind.
//!
//! The types a workflow kind and the driver share live here; the rest is in submodules:
//! `lifecycle` (a record's creation, cancel and retry), `round` (one round of the step
//! function, [`advance`]) and `dry_run` (the plan a `--dry-run` shows).

use clustermgr_proto::{Inventory, Operation, OperationOutput, operation};
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

impl JobSpec {
    /// A job that is harmless to run again (it sets a state rather than applying a delta):
    /// an unknown outcome may be retried.
    pub fn rerunnable(kind: operation::Kind, timeout_ms: u32, summary: impl Into<String>) -> Self {
        Self {
            operation: Operation { kind: Some(kind) },
            timeout_ms,
            summary: summary.into(),
            rerunnable: true,
            keep_output_as: None,
        }
    }

    /// A job that must not run twice unasked (an unknown outcome stops the workflow).
    pub fn once(kind: operation::Kind, timeout_ms: u32, summary: impl Into<String>) -> Self {
        Self {
            rerunnable: false,
            ..Self::rerunnable(kind, timeout_ms, summary)
        }
    }

    /// The job's secret output kept under `key` in [`Observed::kept`].
    pub fn keeping(self, key: &str) -> Self {
        Self {
            keep_output_as: Some(key.to_string()),
            ..self
        }
    }
}

impl From<JobSpec> for StepPlan {
    fn from(j: JobSpec) -> Self {
        StepPlan::Run(j)
    }
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
    /// drain runs on, a cache client's cache hosts): the driver observes them too. Required:
    /// a definition that drains and forgot its balancer's node would wait on it forever.
    fn observed_nodes(&self, wf: &Workflow) -> Vec<String>;
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

mod dry_run;
mod lifecycle;
mod round;

pub use dry_run::{Planned, PlannedStep, dry_run};
pub use lifecycle::{RetryError, bind_job, cancel, end_cancelled_queued, new_workflow, retry};
pub use round::advance;

#[cfg(test)]
mod tests;
