//! A workflow record's life outside a round: its creation, the binding of a dispatched step to
//! its job, cancel (and a queued workflow's cancel taking effect) and retry.

use super::{
    Dispatch, NodeSteps, Step, StepStatus, Workflow, WorkflowStatus, is_done, is_terminal,
    status_name,
};

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
