//! `gluu restart NODE...`: Gluu Server restarted on the servers named, one at a time in the
//! order given, each drained from the load balancer first (`workflow::gluu_restart`); and the
//! restarts file replication's actions ask for ([`restart_wanted`]), the same workflow for the
//! services named, of the asking node.

use super::PROBE_WITHIN_MS;
use crate::audit::Audit;
use crate::ctl::{Ctl, KindError, Plan, WorkflowKind};
use crate::fsrep::Fsrep;
use crate::nodes;
use crate::settings;
use crate::settings::ClusterError;
use crate::workflows::{New, WhenBusy, WorkflowError, start_nodes_when};
use clustermgr_proto::RestartGluuRequest;
use clustermgr_proto::{StartWorkflowResponse, Workflow};
use clustermgr_workflow::gluu_restart::{self, Coalesce, GluuRestart, Inputs};
use clustermgr_workflow::inputs::KindInputs;
use std::sync::Arc;

/// `gluu restart` and file replication's restarts.
pub struct GluuRestartKind;

impl WorkflowKind for GluuRestartKind {
    fn kinds(&self) -> &'static [&'static str] {
        &[gluu_restart::KIND]
    }

    fn definition(&self, ctl: &Ctl, wf: &Workflow) -> Result<Plan, KindError> {
        Ok(Box::new(definition(ctl, wf)?))
    }
}

/// The definition of a gluu-restart workflow from its inputs and the settings now.
pub(crate) fn definition(ctl: &Ctl, wf: &Workflow) -> Result<GluuRestart, WorkflowError> {
    let s = settings::settings_record(ctl)?;
    Ok(GluuRestart {
        inputs: Inputs::decode(&wf.inputs)?,
        https_port: (s.https_port != 0).then_some(s.https_port as u16),
        probe_within_ms: PROBE_WITHIN_MS,
        balancer: crate::drain::balancer(ctl)?,
    })
}

/// Starts the workflow (or returns its plan): every node named must be an installed server.
pub async fn restart_gluu(
    ctl: &Ctl,
    req: &RestartGluuRequest,
    audit: &Audit,
) -> Result<StartWorkflowResponse, WorkflowError> {
    if req.nodes.is_empty() {
        return Err(WorkflowError::Refused(
            "name the servers to restart (gluu restart NODE...)".into(),
        ));
    }
    let mut order = Vec::new();
    for r in &req.nodes {
        let n = nodes::find(ctl, &r.node).map_err(ClusterError::from)?;
        let installed = ctl.store.server(&n.id)?.is_some_and(|s| s.install_complete);
        if !installed {
            return Err(WorkflowError::Refused(format!(
                "{} is not an installed Gluu server of the cluster",
                n.hostname
            )));
        }
        if !order.contains(&n.id) {
            order.push(n.id);
        }
    }
    let primary = primary(ctl)?;
    let nodes = order
        .iter()
        .map(|id| (id.clone(), gluu_restart::STEPS.to_vec()))
        .collect();
    let inputs = Inputs {
        order,
        primary,
        services: Vec::new(),
    };
    let new = New::plain(gluu_restart::KIND, &inputs, nodes, Vec::new());
    start_nodes_when(
        ctl,
        new,
        req.dry_run,
        WhenBusy::from_no_wait(req.no_wait),
        audit,
    )
    .await
}

fn primary(ctl: &Ctl) -> Result<String, WorkflowError> {
    Ok(ctl
        .store
        .servers()?
        .into_iter()
        .find(|s| s.primary)
        .map(|s| s.node_id)
        .unwrap_or_default())
}

/// One restart request's coalescing at a time (two requests of a node never both start one).
static WANTED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A node's file replication actions ask for `services` to restart: those taken restart
/// through [`restart_wanted`], beside the node's stream; a refusal is the node's last error.
pub fn fsrep_restart(
    ctl: &Arc<Ctl>,
    fsrep: &Arc<Fsrep>,
    node: &str,
    generation: u64,
    services: Vec<String>,
) {
    let wanted = fsrep.restarts_taken(node, generation, services);
    if wanted.is_empty() {
        return;
    }
    let (ctl, fsrep, node) = (ctl.clone(), fsrep.clone(), node.to_string());
    tokio::spawn(async move {
        match restart_wanted(&ctl, &node, wanted.clone()).await {
            Ok(id) => {
                tracing::info!(node = %node, services = ?wanted, workflow = %id, "file replication's actions restart services through a drained gluu-restart")
            }
            Err(e) => {
                tracing::warn!(node = %node, services = ?wanted, error = %e, "cannot restart what file replication's actions asked for");
                fsrep.restart_refused(&node, format!("restart of {}: {e}", wanted.join(", ")));
            }
        }
    });
}

/// A node's file replication asks for `services` to restart (relayed writes matched their
/// actions): they join a gluu-restart of the node that has not restarted yet, or a new one
/// restarts them, drained and queued behind what holds the node (`gluu_restart::coalesce`).
/// Returns the workflow's id.
pub async fn restart_wanted(
    ctl: &Ctl,
    node_id: &str,
    services: Vec<String>,
) -> Result<String, WorkflowError> {
    let _one = WANTED.lock().await;
    // A server replicates once Gluu is set up on it (the node says so), installed by the
    // cluster or not.
    if ctl.store.server(node_id)?.is_none() {
        return Err(WorkflowError::Refused(format!(
            "{node_id} is not a Gluu server of the cluster"
        )));
    }
    let audit = Audit::new(format!("node:{node_id}"), "fsrep.restart", node_id);
    {
        // No driver pass in between: the record it reads is the one widened.
        let _pass = ctl.workflows.pass.lock().await;
        let active = ctl.store.active_workflows()?;
        match gluu_restart::coalesce(&active, node_id, &services) {
            Coalesce::Covered(id) => return Ok(id),
            Coalesce::Widened(wf) => {
                let row = audit
                    .on(wf.id.clone())
                    .ok(format!("services={}", services.join(",")));
                ctl.store
                    .put_workflow(*wf.clone(), Vec::new(), Some(row))
                    .await?;
                ctl.workflows.changed.send_modify(|v| *v += 1);
                ctl.workflows.kick();
                return Ok(wf.id);
            }
            Coalesce::Start => {}
        }
    }
    let inputs = Inputs {
        order: vec![node_id.to_string()],
        primary: primary(ctl)?,
        services,
    };
    let nodes = vec![(node_id.to_string(), gluu_restart::STEPS.to_vec())];
    let new = New::plain(gluu_restart::KIND, &inputs, nodes, Vec::new());
    let r = start_nodes_when(ctl, new, false, WhenBusy::Queue, &audit).await?;
    Ok(r.workflow.map(|w| w.id).unwrap_or_default())
}
