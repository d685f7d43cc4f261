//! What operators do with workflows: find, list, cancel, retry, start one on the cluster or on
//! nodes, the plan of a dry run, a workflow's jobs.

use super::*;
use clustermgr_workflow::inputs::KindInputs;

/// A workflow by id or unique id prefix.
pub fn find(ctl: &Ctl, r: &str) -> Result<Workflow, WorkflowError> {
    let r = r.trim();
    if r.is_empty() {
        return Err(WorkflowError::NotFound(String::new()));
    }
    if let Some(w) = ctl.store.workflow(r)? {
        return Ok(w);
    }
    let all = ctl.store.workflows()?;
    match crate::ids::unique_prefix(all.iter().map(|w| w.id.as_str()), r) {
        Ok(Some(id)) => all
            .into_iter()
            .find(|w| w.id == id)
            .ok_or(WorkflowError::NotFound(id)),
        Ok(None) => Err(WorkflowError::NotFound(r.chars().take(64).collect())),
        Err(ids) => Err(WorkflowError::Ambiguous(r.into(), ids.join(", "))),
    }
}

/// The newest workflows first.
pub fn list(ctl: &Ctl, limit: usize) -> Result<Vec<Workflow>, WorkflowError> {
    let mut all = ctl.store.workflows()?;
    all.reverse();
    all.truncate(limit.max(1));
    Ok(all)
}

pub async fn cancel(ctl: &Ctl, r: &str, audit: &Audit) -> Result<Workflow, WorkflowError> {
    let _one = ctl.workflows.pass.lock().await;
    let mut wf = find(ctl, r)?;
    if !clustermgr_workflow::cancel(&mut wf) {
        return Err(WorkflowError::Refused(format!(
            "workflow {} has already ended ({})",
            wf.id,
            clustermgr_workflow::status_name(wf.status())
        )));
    }
    wf.updated_unix_ms = now_ms();
    put_acted(ctl, &wf, audit).await?;
    Ok(wf)
}

/// The role a retry of workflow `r` needs (its kind's; an operator's for a kind not known).
pub fn retry_role(ctl: &Ctl, r: &str) -> Result<crate::roles::Role, WorkflowError> {
    let wf = find(ctl, r)?;
    Ok(ctl
        .kinds
        .get(&wf.kind)
        .map_or(crate::roles::Role::Operator, |k| k.retry_role(&wf)))
}

/// Stores an operator's change of a workflow with its audit row, then wakes the driver.
async fn put_acted(ctl: &Ctl, wf: &Workflow, audit: &Audit) -> Result<(), WorkflowError> {
    let row = audit.on(wf.id.clone()).ok(format!("kind={}", wf.kind));
    ctl.store
        .put_workflow(wf.clone(), Vec::new(), Some(row))
        .await?;
    ctl.workflows.changed.send_modify(|v| *v += 1);
    ctl.workflows.kick();
    Ok(())
}

pub async fn retry(ctl: &Ctl, r: &str, audit: &Audit) -> Result<Workflow, WorkflowError> {
    let _one = ctl.workflows.pass.lock().await;
    let mut wf = find(ctl, r)?;
    clustermgr_workflow::retry(&mut wf, now_ms())
        .map_err(|e| WorkflowError::Refused(e.to_string()))?;
    // Another workflow may have started on these nodes since: the retry queues behind it.
    let _admitted = admit_new(ctl, &mut wf, WhenBusy::Queue).await?;
    // Its kind's start-time changes (again: they may have failed before it ever started).
    if wf.status() != WorkflowStatus::Queued {
        super::queue::on_admit(ctl, &wf).await?;
    }
    put_acted(ctl, &wf, audit).await?;
    Ok(wf)
}

/// Starts a workflow of `kind` on `members` then `leaving` (every node gets `steps`), with its
/// inputs and the server records to write with it; or, with `dry_run`, returns its plan and
/// changes nothing. Queued behind the workflows holding its nodes.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    ctl: &Ctl,
    kind: &str,
    steps: &[&'static str],
    inputs: &impl KindInputs,
    members: &[clustermgr_workflow::replication::Member],
    leaving: &[clustermgr_workflow::replication::Member],
    servers: Vec<ServerRecord>,
    dry_run: bool,
    audit: &Audit,
) -> Result<StartWorkflowResponse, WorkflowError> {
    let nodes = steps_of(members, leaving, steps);
    let new = New::plain(kind, inputs, nodes, servers);
    start_nodes_when(ctl, new, dry_run, WhenBusy::Queue, audit).await
}

/// Each of `members` then `leaving` with `steps`.
pub fn steps_of<'a>(
    members: &[clustermgr_workflow::replication::Member],
    leaving: &[clustermgr_workflow::replication::Member],
    steps: &[&'a str],
) -> Vec<(String, Vec<&'a str>)> {
    members
        .iter()
        .chain(leaving.iter())
        .map(|m| (m.node_id.clone(), steps.to_vec()))
        .collect()
}

/// A workflow to start: its kind, inputs, nodes with their steps, the server records written
/// with it, and secret values kept (sealed) for it before it exists.
pub struct New<'a> {
    pub kind: &'a str,
    pub inputs: BTreeMap<String, String>,
    pub nodes: Vec<(String, Vec<&'a str>)>,
    pub servers: Vec<ServerRecord>,
    pub kept: Vec<(String, Vec<u8>)>,
}

impl<'a> New<'a> {
    /// One that keeps nothing.
    pub fn plain(
        kind: &'a str,
        inputs: &impl KindInputs,
        nodes: Vec<(String, Vec<&'a str>)>,
        servers: Vec<ServerRecord>,
    ) -> Self {
        Self {
            kind,
            inputs: inputs.encode(),
            nodes,
            servers,
            kept: Vec::new(),
        }
    }
}

/// [`start`] with the steps of each node given (kinds whose nodes have different steps).
pub async fn start_nodes(
    ctl: &Ctl,
    kind: &str,
    inputs: &impl KindInputs,
    nodes: Vec<(String, Vec<&str>)>,
    servers: Vec<ServerRecord>,
    dry_run: bool,
    audit: &Audit,
) -> Result<StartWorkflowResponse, WorkflowError> {
    let new = New::plain(kind, inputs, nodes, servers);
    start_nodes_when(ctl, new, dry_run, WhenBusy::Queue, audit).await
}

/// [`start_nodes`] of a [`New`] workflow, refused instead of queued with [`WhenBusy::Refuse`].
/// A workflow that starts at once gets its kind's start-time changes now
/// (`queue::on_admit`); a queued one when the driver starts it.
pub async fn start_nodes_when(
    ctl: &Ctl,
    new: New<'_>,
    dry_run: bool,
    when_busy: WhenBusy,
    audit: &Audit,
) -> Result<StartWorkflowResponse, WorkflowError> {
    let New {
        kind,
        inputs,
        nodes,
        mut servers,
        kept,
    } = new;
    let id = uuid::Uuid::now_v7().to_string();
    let mut nodes_steps = Vec::new();
    for (node_id, steps) in &nodes {
        nodes_steps.push((
            node_id.clone(),
            ctl.store
                .node(node_id)?
                .map(|n| n.hostname)
                .unwrap_or_else(|| node_id.clone()),
            steps.clone(),
        ));
    }
    let mut wf = new_workflow(&id, kind, &audit.who, now_ms(), nodes_steps);
    wf.inputs = inputs.into_iter().collect();
    if dry_run {
        let def = definition(ctl, &wf)?;
        let obs = observe(ctl, &wf, def.as_ref())?;
        return Ok(StartWorkflowResponse {
            workflow: None,
            plan: plan_of(clustermgr_workflow::dry_run(&wf, def.as_ref(), &obs)),
        });
    }
    // Refuse now what the driver could not plan (e.g. a missing password).
    definition(ctl, &wf)?;
    let _admitted = admit_new(ctl, &mut wf, when_busy).await?;
    for (key, plain) in kept {
        let sealed = ctl
            .sealer
            .seal(&purpose(&id, &key), &plain)
            .map_err(|e| WorkflowError::Refused(e.to_string()))?;
        ctl.store.put_kept(&id, &key, sealed).await?;
    }
    if wf.status() != WorkflowStatus::Queued {
        super::queue::on_admit(ctl, &wf).await?;
    }
    for (node_id, _) in &nodes {
        if let Some(s) = servers.iter_mut().find(|s| &s.node_id == node_id) {
            s.last_workflow_id = id.clone();
        } else if let Some(mut s) = ctl.store.server(node_id)? {
            s.last_workflow_id = id.clone();
            servers.push(s);
        }
    }
    let row = audit
        .on(id.clone())
        .ok(format!("kind={kind} nodes={}", nodes.len()));
    if let Err(e) = ctl.store.put_workflow(wf.clone(), servers, Some(row)).await {
        let _ = ctl.store.drop_kept(&id).await;
        return Err(e.into());
    }
    ctl.workflows.changed.send_modify(|v| *v += 1);
    ctl.workflows.kick();
    Ok(StartWorkflowResponse {
        workflow: Some(wf),
        plan: Vec::new(),
    })
}

pub(crate) fn plan_of(plan: Vec<clustermgr_workflow::PlannedStep>) -> Vec<PlannedStep> {
    plan.into_iter()
        .map(|p| {
            let (action, detail) = match p.what {
                Planned::Run(s) => ("run", s),
                Planned::Skip(s) => ("skip", s),
                Planned::Blocked(s) => ("blocked", s),
                Planned::Fail(s) => ("fail", s),
            };
            PlannedStep {
                hostname: p.hostname,
                step: p.step,
                action: action.into(),
                detail,
            }
        })
        .collect()
}

/// The jobs a workflow ran, newest last (for `workflow show`).
pub fn jobs_of(ctl: &Ctl, wf: &Workflow) -> Vec<Job> {
    wf.nodes
        .iter()
        .flat_map(|n| n.steps.iter())
        .filter(|s| !s.job_id.is_empty())
        .filter_map(|s| ctl.jobs.get(&s.job_id).ok().flatten())
        .collect()
}
