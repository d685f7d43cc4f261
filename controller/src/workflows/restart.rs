//! `gluu restart NODE...`: Gluu Server restarted on the servers named, one at a time in the
//! order given, each drained from the load balancer first (`workflow::gluu_restart`).

use super::*;
use clustermgr_proto::RestartGluuRequest;
use clustermgr_workflow::gluu_restart::{self, GluuRestart, Inputs};

/// The definition of a gluu-restart workflow from its inputs and the settings now.
pub(crate) fn definition(ctl: &Ctl, wf: &Workflow) -> Result<GluuRestart, WorkflowError> {
    let s = cluster::settings_record(ctl)?;
    Ok(GluuRestart {
        inputs: Inputs::decode(&wf.inputs),
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
    let primary = ctl
        .store
        .servers()?
        .into_iter()
        .find(|s| s.primary)
        .map(|s| s.node_id)
        .unwrap_or_default();
    let nodes = order
        .iter()
        .map(|id| (id.clone(), gluu_restart::STEPS.to_vec()))
        .collect();
    let inputs = Inputs { order, primary }.encode();
    let new = New::plain(gluu_restart::KIND, inputs, nodes, Vec::new());
    start_nodes_when(
        ctl,
        new,
        req.dry_run,
        WhenBusy::from_no_wait(req.no_wait),
        audit,
    )
    .await
}
