//! LDAP replication: deploying it (the `ldap-replication` workflow), taking a node out, and its
//! status — asked from every replicated node, compared, and checked periodically on the
//! cluster's "LDAP check period" (the last result shows in `server list`).

mod status;
pub use status::{compare, record, start_checker, state_word, status};
mod kind;
pub use kind::ReplicationKind;

use crate::audit::Audit;
use crate::cluster;
use crate::ctl::Ctl;
use crate::nodes;
use crate::settings;
use crate::settings::ClusterError;
use crate::workflows::{self, WhenBusy, WorkflowError};
use clustermgr_proto::{
    BaseReplicationState, ClusterSettingsRecord, DeployReplicationRequest, NodeRecord,
    NodeReplicationState, Operation, ReplicationStatus, ReplicationStatusReport, ServerRecord,
    StartWorkflowResponse, operation, operation_output,
};
use clustermgr_shared::util::now_ms;
use clustermgr_workflow::gluu_install::LDAPS_PORT;
use clustermgr_workflow::inputs::KindInputs;
use clustermgr_workflow::replication::{
    self, BASES, Inputs, Member, Replication, assign_server_ids,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Purpose of the sealed replication password (shared with cluster.rs).
pub use crate::settings::REPLICATION_PASSWORD;

fn installed(ctl: &Ctl, s: &ServerRecord) -> bool {
    s.install_complete
        || ctl
            .store
            .node(&s.node_id)
            .ok()
            .flatten()
            .and_then(|n| n.inventory)
            .and_then(|i| i.gluu)
            .is_some_and(|g| g.installed)
}

fn hostname(ctl: &Ctl, id: &str) -> String {
    ctl.store
        .node(id)
        .ok()
        .flatten()
        .map(|n| n.hostname)
        .unwrap_or_else(|| id.to_string())
}

pub fn replication_password(ctl: &Ctl, s: &ClusterSettingsRecord) -> Result<String, ClusterError> {
    if s.replication_password_sealed.is_empty() {
        return Err(ClusterError::NotConfigured(
            "no replication password (--replication-password-file)",
        ));
    }
    let p = ctl
        .sealer
        .open(REPLICATION_PASSWORD, &s.replication_password_sealed)?;
    Ok(String::from_utf8_lossy(&p).into_owned())
}

/// The workflow's definition from its inputs and the settings now.
pub fn definition(
    ctl: &Ctl,
    wf_id: &str,
    inputs: &HashMap<String, String>,
) -> Result<Replication, WorkflowError> {
    let s = settings::settings_record(ctl)?;
    let inputs = Inputs::decode(inputs)?;
    Ok(Replication {
        members: inputs.members,
        leaving: inputs.leaving,
        admin_password: settings::ldap_admin_password(ctl, &s)?,
        replication_password: replication_password(ctl, &s)?,
        https_port: (s.https_port != 0).then_some(s.https_port as u16),
        primary: inputs.primary,
        probe_within_ms: 5 * 60_000,
        balancer: crate::drain::balancer(ctl)?,
        schemas: crate::schema::list(ctl)
            .map_err(|e| WorkflowError::Refused(e.to_string()))?
            .schemas
            .into_iter()
            .filter_map(|a| a.schema)
            .collect(),
        run_id: wf_id
            .chars()
            .rev()
            .take(8)
            .collect::<String>()
            .chars()
            .rev()
            .collect(),
    })
}

/// The server records to write when a replication workflow succeeded, and the server to
/// delete (a `server remove` of a replicated node).
pub fn finished(
    ctl: &Ctl,
    inputs: &HashMap<String, String>,
) -> Result<(Vec<ServerRecord>, Option<String>), WorkflowError> {
    let Inputs {
        members,
        leaving,
        remove_server,
        ..
    } = Inputs::decode(inputs)?;
    let mut out = Vec::new();
    for s in ctl.store.servers()? {
        let mut s2 = s.clone();
        if members.iter().any(|m| m.node_id == s.node_id) {
            s2.replicated = true;
        } else if leaving.iter().any(|m| m.node_id == s.node_id) {
            s2.replicated = false;
            s2.replication_state = "not-replicated".into();
        }
        if s2 != s {
            out.push(s2);
        }
    }
    let remove = remove_server
        .then(|| leaving.first().map(|m| m.node_id.clone()))
        .flatten();
    Ok((out, remove))
}

fn order_members(
    ctl: &Ctl,
    ids: &[String],
    primary: &str,
    sids: &BTreeMap<String, u32>,
) -> Vec<Member> {
    let mut v: Vec<(bool, String, Member)> = ids
        .iter()
        .map(|id| {
            (
                id != primary,
                hostname(ctl, id),
                Member {
                    node_id: id.clone(),
                    server_id: sids.get(id).copied().unwrap_or(0),
                },
            )
        })
        .collect();
    v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    v.into_iter().map(|(_, _, m)| m).collect()
}

/// `replication deploy`: the set is every installed server (`all`), or the nodes replicating
/// now plus the ones named.
pub async fn deploy(
    ctl: &Ctl,
    req: &DeployReplicationRequest,
    audit: &Audit,
) -> Result<StartWorkflowResponse, WorkflowError> {
    let settings = settings::settings_record(ctl)?;
    settings::ldap_admin_password(ctl, &settings)?;
    replication_password(ctl, &settings)?;
    let servers = ctl.store.servers()?;
    let primary = servers
        .iter()
        .find(|s| s.primary)
        .ok_or_else(|| WorkflowError::Refused("the cluster has no servers".into()))?
        .node_id
        .clone();
    let mut set: Vec<String> = if req.all {
        servers.iter().map(|s| s.node_id.clone()).collect()
    } else {
        if req.nodes.is_empty() {
            return Err(WorkflowError::Refused(
                "name the nodes to bring into replication, or --all".into(),
            ));
        }
        let mut v: Vec<String> = servers
            .iter()
            .filter(|s| s.replicated)
            .map(|s| s.node_id.clone())
            .collect();
        for r in &req.nodes {
            let n = nodes::find(ctl, &r.node).map_err(ClusterError::from)?;
            if !servers.iter().any(|s| s.node_id == n.id) {
                return Err(ClusterError::NotAServer(n.hostname).into());
            }
            v.push(n.id);
        }
        v
    };
    if !set.contains(&primary) {
        set.push(primary.clone());
    }
    set.sort();
    set.dedup();
    let not_installed: Vec<String> = set
        .iter()
        .filter(|id| {
            servers
                .iter()
                .find(|s| &s.node_id == *id)
                .is_none_or(|s| !installed(ctl, s))
        })
        .map(|id| hostname(ctl, id))
        .collect();
    if !not_installed.is_empty() {
        return Err(WorkflowError::Refused(format!(
            "Gluu Server is not installed on {}: install it first (clustermgr gluu install)",
            not_installed.join(", ")
        )));
    }
    if set.len() < 2 {
        return Err(WorkflowError::Refused(
            "replication needs at least two installed servers".into(),
        ));
    }
    let existing: BTreeMap<String, u32> = servers
        .iter()
        .map(|s| (s.node_id.clone(), s.ldap_server_id))
        .collect();
    // New ids in rolling order: the primary first.
    set.sort_by_key(|id| (id != &primary, hostname(ctl, id)));
    let sids = assign_server_ids(&existing, &set);
    let members = order_members(ctl, &set, &primary, &sids);
    let inputs = Inputs {
        members: members.clone(),
        leaving: Vec::new(),
        primary,
        remove_server: false,
    };
    let recs: Vec<ServerRecord> = servers
        .into_iter()
        .filter(|s| set.contains(&s.node_id))
        .map(|mut s| {
            s.ldap_server_id = sids[&s.node_id];
            s
        })
        .collect();
    let nodes = workflows::steps_of(&members, &[], &replication::STEPS);
    workflows::start_nodes_when(
        ctl,
        workflows::New::plain(replication::KIND, &inputs, nodes, recs),
        req.dry_run,
        WhenBusy::from_no_wait(req.no_wait),
        audit,
    )
    .await
}

/// `replication remove NODE` (and `server remove` of a replicated node, `remove_server`).
pub async fn remove(
    ctl: &Ctl,
    r: &str,
    remove_server: bool,
    audit: &Audit,
) -> Result<StartWorkflowResponse, WorkflowError> {
    let node = nodes::find(ctl, r).map_err(ClusterError::from)?;
    let servers = ctl.store.servers()?;
    let me = servers
        .iter()
        .find(|s| s.node_id == node.id)
        .ok_or_else(|| ClusterError::NotAServer(node.hostname.clone()))?;
    if !me.replicated {
        return Err(WorkflowError::Refused(format!(
            "{} does not replicate",
            node.hostname
        )));
    }
    let primary = servers
        .iter()
        .find(|s| s.primary)
        .map(|s| s.node_id.clone())
        .unwrap_or_default();
    if primary == node.id {
        return Err(WorkflowError::Refused(format!(
            "{} is the primary: make another server primary first (clustermgr server make-primary)",
            node.hostname
        )));
    }
    let rest: Vec<String> = servers
        .iter()
        .filter(|s| s.replicated && s.node_id != node.id)
        .map(|s| s.node_id.clone())
        .collect();
    let sids: BTreeMap<String, u32> = servers
        .iter()
        .map(|s| (s.node_id.clone(), s.ldap_server_id))
        .collect();
    let members = order_members(ctl, &rest, &primary, &sids);
    let leaving = vec![Member {
        node_id: node.id.clone(),
        server_id: me.ldap_server_id,
    }];
    let inputs = Inputs {
        members: members.clone(),
        leaving: leaving.clone(),
        primary,
        remove_server,
    };
    workflows::start(
        ctl,
        replication::KIND,
        &replication::STEPS,
        &inputs,
        &members,
        &leaving,
        Vec::new(),
        false,
        audit,
    )
    .await
}

/// `server remove`: a replicated node leaves replication first (its peers drop it, and the
/// workflow takes it out of the cluster when that is done); any other server goes at once.
pub async fn remove_server(
    ctl: &Ctl,
    r: &str,
    audit: &Audit,
) -> Result<clustermgr_proto::Server, WorkflowError> {
    let node = nodes::find(ctl, r).map_err(ClusterError::from)?;
    let rec = ctl.store.server(&node.id)?;
    let Some(rec) = rec.filter(|s| s.replicated) else {
        return Ok(cluster::remove_server(ctl, r, audit).await?);
    };
    let started = remove(ctl, r, true, audit).await?;
    let mut view = cluster::server_view(ctl, &rec)?;
    view.removal_workflow_id = started.workflow.map(|w| w.id).unwrap_or_default();
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::status::csn_ms;
    use super::*;

    fn node(id: &str, csns: &[&str]) -> NodeReplicationState {
        NodeReplicationState {
            node_id: id.into(),
            reachable: true,
            bases: BASES
                .iter()
                .map(|b| BaseReplicationState {
                    base: b.to_string(),
                    reachable: true,
                    context_csn: csns.iter().map(|c| c.to_string()).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn change_stamps_are_compared_and_lag_measured() {
        let a = "20261129031500.500000Z#000000#001#000000";
        let b_old = "20261129031458.000000Z#000000#002#000000";
        let b_new = "20261129031503.250000Z#000000#002#000000";
        assert_eq!(
            csn_ms(a).unwrap() - csn_ms("20261129031500.000000Z#000000#001#000000").unwrap(),
            500
        );
        let mut nodes = vec![node("n1", &[a, b_new]), node("n2", &[a, b_old])];
        assert!(!compare(&mut nodes));
        assert_eq!(nodes[0].lag_ms, 0);
        assert_eq!(nodes[1].lag_ms, 5250);
        assert_eq!(state_word(&nodes[1]), "lagging 6s");
        let mut nodes = vec![node("n1", &[a, b_new]), node("n2", &[b_new, a])];
        assert!(compare(&mut nodes));
        assert_eq!(state_word(&nodes[1]), "in-sync");
        let mut down = node("n3", &[]);
        down.reachable = false;
        let mut nodes = vec![node("n1", &[a]), down];
        assert!(!compare(&mut nodes));
        assert_eq!(state_word(&nodes[1]), "unreachable");
    }
}
