//! LDAP replication: deploying it (the `ldap-replication` workflow), taking a node out, and its
//! status — asked from every replicated node, compared, and checked periodically on the
//! cluster's "LDAP check period" (the last result shows in `server list`).

mod kind;
pub use kind::ReplicationKind;

use crate::audit::Audit;
use crate::cluster;
use crate::ctl::Ctl;
use crate::jobs::JobSpec;
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
use clustermgr_workflow::replication::{self, BASES, Member, Replication, assign_server_ids};
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

fn members_input(m: &[Member]) -> String {
    m.iter()
        .map(|m| format!("{}:{}", m.node_id, m.server_id))
        .collect::<Vec<_>>()
        .join(",")
}

fn members_of(input: &str) -> Vec<Member> {
    input
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let (n, id) = s.rsplit_once(':')?;
            Some(Member {
                node_id: n.to_string(),
                server_id: id.parse().ok()?,
            })
        })
        .collect()
}

/// The workflow's definition from its inputs and the settings now.
pub fn definition(
    ctl: &Ctl,
    wf_id: &str,
    inputs: &HashMap<String, String>,
) -> Result<Replication, WorkflowError> {
    let s = settings::settings_record(ctl)?;
    let get = |k: &str| inputs.get(k).cloned().unwrap_or_default();
    Ok(Replication {
        members: members_of(&get("members")),
        leaving: members_of(&get("leaving")),
        admin_password: settings::ldap_admin_password(ctl, &s)?,
        replication_password: replication_password(ctl, &s)?,
        https_port: (s.https_port != 0).then_some(s.https_port as u16),
        primary: get("primary"),
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
    let members = members_of(inputs.get("members").map(String::as_str).unwrap_or(""));
    let leaving = members_of(inputs.get("leaving").map(String::as_str).unwrap_or(""));
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
    let remove = (inputs.get("remove_server").map(String::as_str) == Some("true"))
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
    let mut inputs = BTreeMap::new();
    inputs.insert("members".to_string(), members_input(&members));
    inputs.insert("leaving".to_string(), String::new());
    inputs.insert("primary".to_string(), primary);
    let recs: Vec<ServerRecord> = servers
        .into_iter()
        .filter(|s| set.contains(&s.node_id))
        .map(|mut s| {
            s.ldap_server_id = sids[&s.node_id];
            s
        })
        .collect();
    let nodes = workflows::steps_of(replication::KIND, &inputs, &members, &[]);
    workflows::start_nodes_when(
        ctl,
        workflows::New::plain(replication::KIND, inputs, nodes, recs),
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
    let mut inputs = BTreeMap::new();
    inputs.insert("members".to_string(), members_input(&members));
    inputs.insert("leaving".to_string(), members_input(&leaving));
    inputs.insert("primary".to_string(), primary);
    inputs.insert("remove_server".to_string(), remove_server.to_string());
    workflows::start(
        ctl,
        replication::KIND,
        inputs,
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

/// `20261129031500.123456Z#000000#001#000000` → ms since the epoch.
fn csn_ms(csn: &str) -> Option<u64> {
    let t = csn.split('#').next()?;
    let (main, frac) = t
        .trim_end_matches('Z')
        .split_once('.')
        .unwrap_or((t.trim_end_matches('Z'), "0"));
    if main.len() != 14 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| main.get(r)?.parse::<i64>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let dt = date
        .with_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8)
        .ok()?
        .assume_utc();
    let micros: u64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    Some(dt.unix_timestamp() as u64 * 1000 + micros / 1000)
}

fn csn_sid(csn: &str) -> String {
    csn.split('#').nth(2).unwrap_or("").to_string()
}

/// Compares the nodes' change stamps: agreement per base, and how far each node is behind.
pub fn compare(nodes: &mut [NodeReplicationState]) -> bool {
    let mut all_agree = true;
    for base in BASES {
        // Newest stamp per server id across the reachable nodes.
        let mut newest: BTreeMap<String, (u64, String)> = BTreeMap::new();
        let mut sets = Vec::new();
        for n in nodes.iter() {
            if let Some(b) = n.bases.iter().find(|b| b.base == base && b.reachable) {
                let mut set = b.context_csn.clone();
                set.sort();
                sets.push(set);
                for c in &b.context_csn {
                    let t = csn_ms(c).unwrap_or(0);
                    let e = newest.entry(csn_sid(c)).or_insert((0, String::new()));
                    if t > e.0 {
                        *e = (t, c.clone());
                    }
                }
            }
        }
        let agree = sets.windows(2).all(|w| w[0] == w[1]);
        all_agree &= agree;
        for n in nodes.iter_mut() {
            if let Some(b) = n.bases.iter_mut().find(|b| b.base == base) {
                b.in_agreement = agree && b.reachable;
                let mine: BTreeMap<String, u64> = b
                    .context_csn
                    .iter()
                    .map(|c| (csn_sid(c), csn_ms(c).unwrap_or(0)))
                    .collect();
                b.lag_ms = newest
                    .iter()
                    .map(|(sid, (t, _))| t.saturating_sub(mine.get(sid).copied().unwrap_or(0)))
                    .max()
                    .unwrap_or(0);
            }
        }
    }
    for n in nodes.iter_mut() {
        n.lag_ms = n.bases.iter().map(|b| b.lag_ms).max().unwrap_or(0);
        if !n.reachable {
            all_agree = false;
        }
    }
    all_agree
}

/// Asks every replicated server (every installed one if none replicates yet) now.
pub async fn status(ctl: &Arc<Ctl>) -> Result<ReplicationStatusReport, WorkflowError> {
    let settings = settings::settings_record(ctl)?;
    let password = settings::ldap_admin_password(ctl, &settings)?;
    let servers = ctl.store.servers()?;
    let any_replicated = servers.iter().any(|s| s.replicated);
    let chosen: Vec<ServerRecord> = servers
        .into_iter()
        .filter(|s| {
            if any_replicated {
                s.replicated
            } else {
                installed(ctl, s)
            }
        })
        .collect();
    let asks = chosen.iter().map(|s| {
        let ctl = ctl.clone();
        let password = password.clone();
        let s = s.clone();
        async move { ask(&ctl, &s, &password).await }
    });
    let mut nodes: Vec<NodeReplicationState> = futures::future::join_all(asks).await;
    let in_agreement = compare(&mut nodes) && !nodes.is_empty();
    Ok(ReplicationStatusReport {
        nodes,
        in_agreement,
        checked_unix_ms: now_ms(),
    })
}

async fn ask(ctl: &Arc<Ctl>, s: &ServerRecord, password: &str) -> NodeReplicationState {
    let mut out = NodeReplicationState {
        node_id: s.node_id.clone(),
        hostname: hostname(ctl, &s.node_id),
        server_id: s.ldap_server_id,
        ..Default::default()
    };
    let node: NodeRecord = match ctl.store.node(&s.node_id) {
        Ok(Some(n)) => n,
        _ => {
            out.error = "the node was removed".into();
            return out;
        }
    };
    let Some(addr) = node
        .inventory
        .as_ref()
        .and_then(|i| i.addresses.first().cloned())
    else {
        out.error = "the node's address is unknown".into();
        return out;
    };
    let op = Operation {
        kind: Some(operation::Kind::ReplicationStatus(ReplicationStatus {
            host: addr,
            port: LDAPS_PORT,
            admin_password: password.as_bytes().to_vec(),
            bases: BASES.iter().map(|b| b.to_string()).collect(),
        })),
    };
    let audit = Audit::new("controller", "replication.status", node.id.clone());
    let spec = JobSpec::new(
        op,
        Duration::from_secs(30),
        "controller:replication-check".into(),
    );
    let finished = match ctl.jobs.run(&node, spec, &audit).await {
        Ok(f) => f,
        Err(e) => {
            out.error = e.to_string();
            return out;
        }
    };
    let Some(f) = finished else {
        out.error = "no result".into();
        return out;
    };
    match f.job.output.and_then(|o| o.kind) {
        Some(operation_output::Kind::ReplicationStatus(r)) => {
            out.reachable = r.bases.iter().any(|b| b.reachable);
            if r.server_id != 0 {
                out.server_id = r.server_id;
            }
            out.bases = r
                .bases
                .into_iter()
                .map(|b| BaseReplicationState {
                    base: b.base,
                    reachable: b.reachable,
                    error: b.error,
                    context_csn: b.context_csn,
                    partners: b.partners,
                    ..Default::default()
                })
                .collect();
        }
        _ => {
            out.error = if f.job.error.is_empty() {
                "no status".into()
            } else {
                f.job.error
            }
        }
    }
    out
}

/// The one-word state `server list` shows.
pub fn state_word(n: &NodeReplicationState) -> String {
    if !n.reachable {
        "unreachable".into()
    } else if n.bases.iter().all(|b| b.in_agreement) {
        "in-sync".into()
    } else {
        format!("lagging {}s", n.lag_ms.div_ceil(1000))
    }
}

/// Checks replication on the cluster's period and records the result on the servers.
pub fn start_checker(ctl: Arc<Ctl>) {
    tokio::spawn(async move {
        loop {
            let period = settings::settings_record(&ctl)
                .ok()
                .map(|s| s.ldap_check_period_ms)
                .filter(|ms| *ms > 0)
                .unwrap_or(5 * 60_000);
            tokio::time::sleep(Duration::from_millis(period)).await;
            let any = ctl
                .store
                .servers()
                .map(|v| v.iter().any(|s| s.replicated))
                .unwrap_or(false);
            if !any {
                continue;
            }
            match status(&ctl).await {
                Ok(report) => {
                    if let Err(e) = record(&ctl, &report).await {
                        tracing::warn!(error = %e, "cannot record the replication check");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "replication check failed"),
            }
        }
    });
}

/// Stores a report's per-node state on the server records.
pub async fn record(ctl: &Ctl, report: &ReplicationStatusReport) -> Result<(), WorkflowError> {
    let states: HashMap<String, String> = report
        .nodes
        .iter()
        .map(|n| (n.node_id.clone(), state_word(n)))
        .collect();
    let at = report.checked_unix_ms;
    ctl.store
        .change_servers(
            move |servers| {
                let write = servers
                    .into_iter()
                    .filter_map(|mut s| {
                        let st = states.get(&s.node_id)?;
                        s.replication_state = st.clone();
                        s.replication_checked_unix_ms = at;
                        Some(s)
                    })
                    .collect();
                Ok::<_, WorkflowError>((write, Vec::new(), ()))
            },
            None,
        )
        .await??;
    Ok(())
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn members_round_trip_through_inputs() {
        let m = vec![
            Member {
                node_id: "a-b".into(),
                server_id: 1,
            },
            Member {
                node_id: "c".into(),
                server_id: 12,
            },
        ];
        assert_eq!(members_of(&members_input(&m)), m);
        assert!(members_of("").is_empty());
    }
}
