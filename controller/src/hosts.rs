//! /etc/hosts: with the "manage hosts" setting on, every cluster node (Gluu servers, the load
//! balancer and cache hosts) gets the cluster's hostnames in a marked block of its /etc/hosts
//! (and the Gluu chroot's). Applied by `hosts apply` and after every server add or remove.

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::settings;
use crate::settings::ClusterError;
use crate::workflows::{self, WorkflowError};
use clustermgr_proto::{HostEntry, NodeRole, StartWorkflowResponse};
use clustermgr_workflow::hosts::{self, Hosts, KIND};
use clustermgr_workflow::inputs::KindInputs;
use clustermgr_workflow::replication::Member;

/// The cluster's host lines and the nodes that get them.
fn plan(ctl: &Ctl) -> Result<(Vec<HostEntry>, Vec<String>), WorkflowError> {
    let s = settings::settings_record(ctl)?;
    let servers = ctl.store.servers()?;
    let mut entries = Vec::new();
    let mut nodes = Vec::new();
    let mut lb_address = s.lb_ip.clone();
    for n in ctl.store.nodes()? {
        let addr = crate::nodes::address(&n).unwrap_or_default();
        let member = match n.role() {
            NodeRole::GluuNode => servers.iter().any(|x| x.node_id == n.id),
            NodeRole::Lb | NodeRole::Cache => true,
            NodeRole::Unspecified => false,
        };
        if !member || !n.approved {
            continue;
        }
        if n.role() == NodeRole::Lb && lb_address.is_empty() {
            lb_address = addr.clone();
        }
        if !addr.is_empty() {
            entries.push(HostEntry {
                address: addr,
                names: vec![n.hostname.clone()],
            });
        }
        nodes.push(n.id.clone());
    }
    if !s.lb_hostname.is_empty() && !lb_address.is_empty() && !s.external_lb {
        match entries.iter_mut().find(|e| e.address == lb_address) {
            Some(e) => e.names.insert(0, s.lb_hostname.clone()),
            None => entries.push(HostEntry {
                address: lb_address,
                names: vec![s.lb_hostname.clone()],
            }),
        }
    }
    entries.sort_by(|a, b| a.address.cmp(&b.address));
    Ok((entries, nodes))
}

pub fn definition(
    inputs: &std::collections::HashMap<String, String>,
) -> Result<Hosts, WorkflowError> {
    Ok(Hosts::of(hosts::Inputs::decode(inputs)?))
}

/// `hosts apply [--dry-run]`.
pub async fn apply(
    ctl: &Ctl,
    dry_run: bool,
    audit: &Audit,
) -> Result<StartWorkflowResponse, WorkflowError> {
    let s = settings::settings_record(ctl)?;
    if !s.manage_hosts {
        return Err(ClusterError::NotConfigured(
            "the cluster does not manage /etc/hosts (--manage-hosts)",
        )
        .into());
    }
    let (entries, nodes) = plan(ctl)?;
    if nodes.is_empty() {
        return Err(WorkflowError::Refused(
            "the cluster has no nodes yet".into(),
        ));
    }
    let members: Vec<Member> = nodes
        .into_iter()
        .map(|node_id| Member {
            node_id,
            server_id: 0,
        })
        .collect();
    let inputs = hosts::Inputs::new(&entries);
    workflows::start(
        ctl,
        KIND,
        &hosts::STEPS,
        &inputs,
        &members,
        &[],
        Vec::new(),
        dry_run,
        audit,
    )
    .await
}

/// After a change of the cluster's servers: apply, when the cluster manages /etc/hosts.
/// Returns the workflow it started.
pub async fn after_change(ctl: &Ctl, audit: &Audit) -> Option<clustermgr_proto::Workflow> {
    let manage = settings::settings_record(ctl).is_ok_and(|s| s.manage_hosts);
    if !manage {
        return None;
    }
    match apply(ctl, false, audit).await {
        Ok(r) => r.workflow,
        Err(e) => {
            tracing::warn!(error = %e, "cannot update the nodes' /etc/hosts");
            None
        }
    }
}

/// The `hosts` workflow kind: its plan only.
pub fn kind() -> std::sync::Arc<dyn crate::ctl::WorkflowKind> {
    crate::ctl::plan_only(&[clustermgr_workflow::hosts::KIND], |_, wf| {
        Ok(Box::new(definition(&wf.inputs)?))
    })
}
