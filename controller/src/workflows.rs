//! Workflows: starting, listing, cancelling and retrying them, and the driver that moves them.
//!
//! The planning is the `clustermgr-workflow` crate's (pure: observed state in, jobs out). The
//! driver here gathers the observed state (nodes and sessions, the steps' jobs, the outputs it
//! kept), calls `advance`, and persists the record — with each dispatched step's job id — before
//! it sends a job, so a step with a live or succeeded job is never dispatched twice. It runs on
//! job ends (announced after their commit), node hellos, operator actions and a timer; a
//! restarted controller simply runs it again on the stored records.
//!
//! Secret outputs a later step needs (the primary's setup.properties.last and certificate set)
//! are kept sealed in the store, bound to their workflow and key, and deleted when the workflow
//! ends (a failed one keeps them for a retry).

use crate::audit::Audit;
use crate::ctl::{Ctl, KindError, Plan, WorkflowKind};
use crate::error::{Classify, Kind};
use crate::jobs::{Finished, JobSpec};
use crate::nodes;
use crate::settings::ClusterError;
use crate::store::StoreError;
use clustermgr_proto::{
    Job, PlannedStep, ServerRecord, StartWorkflowResponse, StepStatus, Workflow, WorkflowStatus,
};
use clustermgr_shared::util::now_ms;
use clustermgr_workflow::{
    Definition, JobState, JobView, NodeView, Observed, Planned, advance, bind_job, is_terminal,
    new_workflow,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the driver looks at running workflows without being woken.
mod actions;
mod queue;
pub(crate) use actions::plan_of;
pub use actions::{
    New, cancel, find, jobs_of, list, retry, retry_role, start, start_nodes, start_nodes_when,
    steps_of,
};
pub(crate) use queue::admit_new;
pub use queue::{WhenBusy, describe_holders};

const TICK: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("no workflow {0:?}")]
    NotFound(String),
    #[error("{0:?} matches several workflows ({1}); give more of the id")]
    Ambiguous(String, String),
    #[error("{0}")]
    Refused(String),
    #[error(
        "{host}: workflow {workflow} ({kind}) holds it ({state}) and --no-wait was given; wait for it or cancel it (without --no-wait the workflow is queued behind it)"
    )]
    Busy {
        host: String,
        workflow: String,
        kind: String,
        /// The holder's status: running, pending or queued.
        state: &'static str,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A kind's hook failed (its plan, its admission, its end).
    #[error("{0}")]
    Kind(KindError),
    /// A stored workflow's inputs cannot be read.
    #[error(transparent)]
    Inputs(#[from] clustermgr_workflow::inputs::InputsError),
}

impl WorkflowError {
    /// A kind's error: a `WorkflowError` it passed up keeps its classification.
    pub fn from_kind(e: KindError) -> Self {
        match e.downcast::<WorkflowError>() {
            Ok(w) => *w,
            Err(e) => Self::Kind(e),
        }
    }
}

impl Classify for WorkflowError {
    fn kind(&self) -> Kind {
        match self {
            Self::NotFound(_) => Kind::NotFound,
            Self::Ambiguous(..) => Kind::InvalidArgument,
            Self::Refused(_) | Self::Busy { .. } => Kind::FailedPrecondition,
            Self::Cluster(e) => e.kind(),
            Self::Store(_) => Kind::Internal,
            Self::Kind(_) | Self::Inputs(_) => Kind::FailedPrecondition,
        }
    }
}

/// Starts the driver: a pass at start (resuming what a previous process left), then on every
/// wake-up.
pub fn start_driver(ctl: Arc<Ctl>) {
    let mut ended = ctl.jobs.ended();
    tokio::spawn(async move {
        loop {
            if let Err(e) = pass(&ctl).await {
                tracing::error!(error = %e, "workflow driver pass failed");
            }
            tokio::select! {
                _ = ctl.workflows.kick.notified() => {}
                r = ended.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        return;
                    }
                }
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    });
}

pub(crate) fn purpose(workflow_id: &str, key: &str) -> String {
    format!("workflow/{workflow_id}/{key}")
}

/// The stored job state as the planner sees it (a state no planner knows counts as lost).
fn job_state(state: clustermgr_proto::JobState) -> JobState {
    use clustermgr_proto::JobState as Stored;
    match state {
        Stored::Running => JobState::Running,
        Stored::Succeeded => JobState::Succeeded,
        Stored::Failed => JobState::Failed,
        Stored::TimedOut => JobState::TimedOut,
        Stored::Interrupted | Stored::Unspecified => JobState::Interrupted,
    }
}

/// What the driver observes for one workflow.
pub(crate) fn observe(
    ctl: &Ctl,
    wf: &Workflow,
    def: &(dyn Definition + Send + Sync),
) -> Result<Observed, WorkflowError> {
    let mut obs = Observed {
        now_ms: now_ms(),
        ..Default::default()
    };
    // Its own nodes, and those its plan reads besides (the balancer's, a client's cache hosts).
    let extra = def.observed_nodes(wf);
    let ids = wf
        .nodes
        .iter()
        .map(|n| n.node_id.as_str())
        .chain(extra.iter().map(String::as_str));
    for id in ids {
        if obs.nodes.contains_key(id) {
            continue;
        }
        if let Some(rec) = ctl.store.node(id)? {
            obs.nodes.insert(
                id.to_string(),
                NodeView {
                    hostname: rec.hostname.clone(),
                    online: ctl.registry.get(&rec.id).is_some(),
                    approved: rec.approved,
                    inventory: rec.inventory.clone(),
                },
            );
        }
    }
    for (key, sealed) in ctl.store.kept(&wf.id)? {
        match ctl.sealer.open(&purpose(&wf.id, &key), &sealed) {
            Ok(v) => {
                obs.kept.insert(key, v);
            }
            Err(e) => {
                tracing::warn!(workflow = %wf.id, key = %key, error = %e, "a kept output does not open; the step that made it runs again")
            }
        }
    }
    let keeping = ctl.workflows.keeping().clone();
    for s in wf.nodes.iter().flat_map(|n| n.steps.iter()) {
        if s.job_id.is_empty() {
            continue;
        }
        let Some(job) = ctl.jobs.record(&s.job_id).ok().flatten() else {
            continue;
        };
        let mut view = JobView {
            state: job_state(job.state()),
            exit_code: job.exit_code,
            error: job.error.clone(),
            output: job.output.clone(),
        };
        if view.state == JobState::Interrupted && ctl.jobs.awaiting_node(&s.job_id) {
            // Interrupted by a controller restart; its node has not said yet whether it still
            // runs it or how it ended.
            view.state = JobState::Running;
        }
        if !s.keeps.is_empty() && view.state == JobState::Succeeded {
            if keeping.contains(&s.job_id) {
                view.state = JobState::Running;
            } else if !obs.kept.contains_key(&s.keeps) {
                // Succeeded, but what it read was not kept (the controller stopped in between).
                view.state = JobState::Interrupted;
                view.error = "its output was not kept".into();
            }
        }
        obs.jobs.insert(s.job_id.clone(), view);
    }
    Ok(obs)
}

/// The registered kind of a workflow.
pub(crate) fn kind_of<'a>(
    ctl: &'a Ctl,
    wf: &Workflow,
) -> Result<&'a std::sync::Arc<dyn WorkflowKind>, WorkflowError> {
    ctl.kinds.get(&wf.kind).ok_or_else(|| {
        WorkflowError::Refused(format!(
            "this controller does not know workflows of kind {:?}",
            wf.kind
        ))
    })
}

/// The definition of a workflow's kind, from its inputs and the settings now.
pub fn definition(ctl: &Ctl, wf: &Workflow) -> Result<Plan, WorkflowError> {
    kind_of(ctl, wf)?
        .definition(ctl, wf)
        .map_err(WorkflowError::from_kind)
}

/// One pass over every workflow that has not ended.
/// Queued workflows whose holders ended in the pass start in the same pass.
pub async fn pass(ctl: &Arc<Ctl>) -> Result<(), WorkflowError> {
    let _one = ctl.workflows.pass.lock().await;
    // Bounded: each round either admits a queued workflow or stops.
    for _ in 0..64 {
        queue::admit_queued(ctl).await?;
        let mut ended = false;
        for wf in ctl.store.active_workflows()? {
            let id = wf.id.clone();
            match advance_one(ctl, wf).await {
                Ok(e) => ended |= e,
                Err(e) => tracing::error!(workflow = %id, error = %e, "cannot advance workflow"),
            }
        }
        let queued = ctl
            .store
            .active_workflows()?
            .iter()
            .any(|w| w.status() == WorkflowStatus::Queued);
        if !ended || !queued {
            break;
        }
    }
    Ok(())
}

/// Advances one workflow; returns whether it ended in this call.
async fn advance_one(ctl: &Arc<Ctl>, mut wf: Workflow) -> Result<bool, WorkflowError> {
    if wf.status() == WorkflowStatus::Queued {
        // Nothing more of it runs: a cancel ends it here, whatever its kind needs to plan. A
        // queued retry goes back to failed and keeps its kept values for a later retry.
        if !clustermgr_workflow::end_cancelled_queued(&mut wf, now_ms()) {
            return Ok(false);
        }
        save(ctl, &wf, Vec::new()).await?;
        if wf.status() != WorkflowStatus::Failed {
            ctl.store.drop_kept(&wf.id).await?;
        }
        return Ok(true);
    }
    let def = match definition(ctl, &wf) {
        Ok(d) => d,
        Err(e) => {
            // The settings no longer allow it (e.g. a password was removed): wait, visibly.
            let msg = format!("cannot plan: {e}");
            if wf.error != msg {
                wf.error = msg;
                save(ctl, &wf, Vec::new()).await?;
            }
            return Ok(false);
        }
    };
    if !wf.error.is_empty() && wf.status() == WorkflowStatus::Running {
        wf.error.clear();
    }
    let obs = observe(ctl, &wf, def.as_ref())?;
    let before = wf.clone();
    let d = advance(&mut wf, def.as_ref(), &obs);
    drop(def);
    let mut sends = Vec::new();
    for disp in &d.dispatch {
        let job_id = uuid::Uuid::now_v7().to_string();
        bind_job(&mut wf, disp, &job_id);
        if let Some(step) = dispatched_step(&mut wf, disp) {
            step.keeps = disp.job.keep_output_as.clone().unwrap_or_default();
        }
        sends.push((disp.clone(), job_id));
    }
    if wf == before {
        return Ok(false);
    }
    let mut servers = Vec::new();
    if is_terminal(wf.status()) {
        servers = kind_of(ctl, &wf)?
            .finished_servers(ctl, &wf)
            .map_err(WorkflowError::from_kind)?;
    }
    // The step -> job mapping is durable before any job leaves.
    save(ctl, &wf, servers).await?;
    for t in &d.transitions {
        record_refreshed_inventory(ctl, &wf, t, &obs).await;
        tracing::info!(workflow = %wf.id, node = %t.node_id, step = %t.step, status = clustermgr_workflow::step_status_name(t.status), "workflow step");
    }
    send_jobs(ctl, &mut wf, sends).await?;
    if is_terminal(wf.status()) && wf.status() != WorkflowStatus::Failed {
        ctl.store.drop_kept(&wf.id).await?;
    }
    if is_terminal(wf.status())
        && let Err(e) = kind_of(ctl, &wf)?.ended(ctl, &wf).await
    {
        tracing::error!(workflow = %wf.id, kind = %wf.kind, error = %e, "what follows the workflow's end failed");
    }
    Ok(is_terminal(wf.status()))
}

/// The step a dispatch is for.
fn dispatched_step<'w>(
    wf: &'w mut Workflow,
    disp: &clustermgr_workflow::Dispatch,
) -> Option<&'w mut clustermgr_proto::Step> {
    wf.nodes
        .iter_mut()
        .find(|n| n.node_id == disp.node_id)
        .and_then(|n| n.steps.get_mut(disp.step))
}

/// A refreshed inventory (a collect-facts step that succeeded) becomes the node's.
async fn record_refreshed_inventory(
    ctl: &Arc<Ctl>,
    wf: &Workflow,
    t: &clustermgr_workflow::Transition,
    obs: &Observed,
) {
    if t.status == StepStatus::Succeeded
        && let Some(job_id) = wf
            .nodes
            .iter()
            .find(|n| n.node_id == t.node_id)
            .and_then(|n| n.steps.iter().find(|s| s.name == t.step))
            .map(|s| s.job_id.clone())
        && let Some(JobView {
            output:
                Some(clustermgr_proto::OperationOutput {
                    kind: Some(clustermgr_proto::operation_output::Kind::Facts(inv)),
                }),
            ..
        }) = obs.jobs.get(&job_id)
        && let Err(e) = nodes::hello(ctl, &t.node_id, inv.clone()).await
    {
        tracing::warn!(node = %t.node_id, error = %e, "cannot record a refreshed inventory");
    }
}

/// Sends the dispatched jobs; a step whose job was never sent waits again, as if it had not
/// been dispatched.
async fn send_jobs(
    ctl: &Arc<Ctl>,
    wf: &mut Workflow,
    sends: Vec<(clustermgr_workflow::Dispatch, String)>,
) -> Result<(), WorkflowError> {
    let mut unsent = Vec::new();
    for (disp, job_id) in sends {
        if let Err(e) = send(ctl, wf, &disp, &job_id).await {
            unsent.push((disp, e));
        }
    }
    if unsent.is_empty() {
        return Ok(());
    }
    for (disp, why) in unsent {
        if let Some(s) = dispatched_step(wf, &disp) {
            s.set_status(StepStatus::Pending);
            s.job_id.clear();
            s.keeps.clear();
            s.attempts = s.attempts.saturating_sub(1);
            s.waiting_for = format!("not sent: {why}");
        }
    }
    save(ctl, wf, Vec::new()).await
}

async fn save(ctl: &Ctl, wf: &Workflow, servers: Vec<ServerRecord>) -> Result<(), WorkflowError> {
    ctl.store.put_workflow(wf.clone(), servers, None).await?;
    ctl.workflows.changed.send_modify(|v| *v += 1);
    Ok(())
}

async fn send(
    ctl: &Arc<Ctl>,
    wf: &Workflow,
    disp: &clustermgr_workflow::Dispatch,
    job_id: &str,
) -> Result<(), String> {
    // A step may run its job on another node (the load balancer's drain of the step's node).
    let runs_on = disp.run_on.as_deref().unwrap_or(&disp.node_id);
    let node = ctl
        .store
        .node(runs_on)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the node was removed".to_string())?;
    let mut operation = disp.job.operation.clone();
    // A push names its own job when the node fetches the file.
    if let Some(clustermgr_proto::operation::Kind::ReceivePackage(r)) = operation.kind.as_mut() {
        r.job_id = job_id.to_string();
    }
    // So does a stunnel configuration when the node asks for its certificate.
    if let Some(clustermgr_proto::operation::Kind::ConfigureStunnel(r)) = operation.kind.as_mut() {
        r.job_id = job_id.to_string();
    }
    let spec = JobSpec {
        operation,
        timeout: Duration::from_millis(disp.job.timeout_ms.max(1000) as u64),
        submitted_by: format!("workflow:{}", wf.id),
        id: Some(job_id.to_string()),
        workflow_id: Some(wf.id.clone()),
    };
    let audit = Audit::new(format!("workflow:{}", wf.id), "job.submit", node.id.clone());
    let keep = disp.job.keep_output_as.clone();
    if keep.is_some() {
        ctl.workflows.keeping().insert(job_id.to_string());
    }
    let (_, done) = match ctl.jobs.submit(&node, spec, &audit).await {
        Ok(x) => x,
        Err(e) => {
            ctl.workflows.keeping().remove(job_id);
            return Err(e.to_string());
        }
    };
    if let Some(key) = keep {
        let ctl = ctl.clone();
        let wf_id = wf.id.clone();
        let job_id = job_id.to_string();
        tokio::spawn(async move {
            if let Some(Finished {
                job,
                content: Some(content),
            }) = crate::jobs::finished(done).await
                && job.state == crate::jobs::SUCCEEDED
            {
                match ctl.sealer.seal(&purpose(&wf_id, &key), &content) {
                    Ok(sealed) => {
                        if let Err(e) = ctl.store.put_kept(&wf_id, &key, sealed).await {
                            tracing::error!(workflow = %wf_id, error = %e, "cannot keep a step's output");
                        }
                    }
                    Err(e) => {
                        tracing::error!(workflow = %wf_id, error = %e, "cannot seal a step's output")
                    }
                }
            }
            ctl.workflows.keeping().remove(&job_id);
            ctl.workflows.kick();
        });
    }
    Ok(())
}
