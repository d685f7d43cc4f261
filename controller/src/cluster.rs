//! The Gluu cluster's servers and `cluster configure`: enrolled nodes of role gluu-node that
//! belong to the cluster; the first one is the primary. A node of another OS family than the
//! primary's is refused. What a change means elsewhere (the hosts files, the load balancer, the
//! cache clients, file replication's actions) is asked of those modules from here.

use crate::audit::Audit;
use crate::ctl::Ctl;
use crate::nodes::{self};
use clustermgr_proto::{
    ClusterSettings, ClusterSettingsRecord, ConfigureRequest, NodeRecord, NodeRole, Server,
    ServerRecord, StartedWorkflow, Workflow, WorkflowStatus,
};
use clustermgr_shared::util::now_ms;
use clustermgr_workflow::gluu_install::Component;
use clustermgr_workflow::{is_terminal, status_name};

use crate::settings::{ClusterError, apply, installed_server, settings_record, view};

pub async fn configure(
    ctl: &Ctl,
    fsrep: &crate::fsrep::Fsrep,
    req: ConfigureRequest,
    audit: &Audit,
) -> Result<ClusterSettings, ClusterError> {
    let old = settings_record(ctl)?;
    let mut new = apply(old.clone(), &req, &ctl.sealer)?;
    if new.ldap_cache && !old.ldap_cache {
        crate::cache::refuse_ldap_cache(ctl)?;
    }
    check_change(ctl, &old, &new)?;
    new.updated_unix_ms = now_ms();
    // What changed, by field name (never a secret's value).
    let mut changed = Vec::new();
    let fields: [(&str, bool); 21] = [
        ("gluu_version", old.gluu_version != new.gluu_version),
        ("lb_hostname", old.lb_hostname != new.lb_hostname),
        ("lb_ip", old.lb_ip != new.lb_ip),
        ("external_lb", old.external_lb != new.external_lb),
        (
            "external_lb_health_wait",
            old.external_lb_health_wait_secs != new.external_lb_health_wait_secs,
        ),
        ("ldap_cache", old.ldap_cache != new.ldap_cache),
        ("offline", old.offline != new.offline),
        (
            "ldap_check_period",
            old.ldap_check_period_ms != new.ldap_check_period_ms,
        ),
        ("manage_hosts", old.manage_hosts != new.manage_hosts),
        ("org", old.org != new.org),
        ("country", old.country != new.country),
        ("city", old.city != new.city),
        ("state", old.state != new.state),
        ("admin_email", old.admin_email != new.admin_email),
        ("ldap_admin_password", req.ldap_admin_password.is_some()),
        ("replication_password", req.replication_password.is_some()),
        ("https_port", old.https_port != new.https_port),
        ("gluu_repo_url", old.gluu_repo_url != new.gluu_repo_url),
        (
            "gluu_repo_suite",
            old.gluu_repo_suite != new.gluu_repo_suite,
        ),
        ("gluu_repo_key", old.gluu_repo_key != new.gluu_repo_key),
        (
            "components",
            crate::settings::of(&old) != crate::settings::of(&new),
        ),
    ];
    for (name, c) in fields {
        if c {
            changed.push(name);
        }
    }
    let locked_host = installed_server(ctl)?;
    let row = audit.ok(format!("changed: {}", changed.join(",")));
    let lb = new.lb_hostname.clone();
    let refused = ctl
        .store
        .put_cluster_settings(
            new.clone(),
            move |stored, _servers| {
                let before = stored.map(|s| s.lb_hostname.as_str()).unwrap_or("");
                match &locked_host {
                    Some(host) if !before.is_empty() && before != lb => {
                        Err(ClusterError::LbLocked(host.clone()))
                    }
                    _ => Ok(()),
                }
            },
            row,
        )
        .await?;
    refused?;
    if req.components.is_some() {
        crate::fsrep::follow_components(ctl, fsrep, &crate::settings::of(&new), audit).await;
    }
    let locked = installed_server(ctl)?.is_some();
    Ok(view(&new, locked))
}

fn family(node: &NodeRecord) -> Option<&'static str> {
    let os = node.inventory.as_ref()?.os_id.as_str();
    match os {
        "debian" | "ubuntu" => Some("deb"),
        "rhel" | "centos" | "rocky" | "almalinux" | "ol" | "fedora" => Some("rpm"),
        _ => None,
    }
}

fn os_of(node: &NodeRecord) -> String {
    node.inventory
        .as_ref()
        .map(|i| {
            if i.os_pretty_name.is_empty() {
                format!("{} {}", i.os_id, i.os_version)
            } else {
                i.os_pretty_name.clone()
            }
        })
        .unwrap_or_default()
}

/// A running workflow that has steps on `node_id`.
pub fn running_workflow_on(ctl: &Ctl, node_id: &str) -> Result<Option<Workflow>, ClusterError> {
    Ok(ctl.store.active_workflows()?.into_iter().rev().find(|w| {
        // A hosts update is a quick idempotent file edit: it never holds others up.
        w.kind != clustermgr_workflow::hosts::KIND
            && !is_terminal(w.status())
            && w.nodes.iter().any(|n| n.node_id == node_id)
    }))
}

pub fn server_view(ctl: &Ctl, s: &ServerRecord) -> Result<Server, ClusterError> {
    let node = ctl.store.node(&s.node_id)?;
    let gluu = node
        .as_ref()
        .and_then(|n| n.inventory.as_ref())
        .and_then(|i| i.gluu.as_ref());
    let (hostname, status, address, os, gluu_version, components, installed) = match &node {
        Some(n) => {
            let inv = n.inventory.as_ref();
            let g = inv.and_then(|i| i.gluu.as_ref());
            (
                n.hostname.clone(),
                nodes::status_of(n.approved, ctl.registry.get(&n.id).is_some())
                    .as_str()
                    .to_string(),
                inv.and_then(|i| i.addresses.first().cloned())
                    .unwrap_or_default(),
                os_of(n),
                g.map(|g| g.version.clone()).unwrap_or_default(),
                g.map(|g| g.components.clone()).unwrap_or_default(),
                g.is_some_and(|g| g.installed),
            )
        }
        None => (
            s.node_id.clone(),
            "removed".into(),
            String::new(),
            String::new(),
            String::new(),
            Vec::new(),
            false,
        ),
    };
    let last = if s.last_workflow_id.is_empty() {
        None
    } else {
        ctl.store.workflow(&s.last_workflow_id)?
    };
    let node_failed = last.as_ref().is_some_and(|w| {
        w.nodes.iter().any(|n| {
            n.node_id == s.node_id
                && n.steps
                    .iter()
                    .any(|st| st.status() == clustermgr_proto::StepStatus::Failed)
        })
    });
    let running = last.as_ref().is_some_and(|w| !is_terminal(w.status()));
    let configured_components = crate::settings::of_server(ctl, last.as_ref())?;
    let install_state = if running && !(installed && s.install_complete) {
        "installing"
    } else if installed || s.install_complete {
        "installed"
    } else if node_failed {
        "failed"
    } else {
        "not-installed"
    };
    Ok(Server {
        node_id: s.node_id.clone(),
        hostname,
        primary: s.primary,
        status,
        address,
        os,
        gluu_version,
        components,
        install_state: install_state.into(),
        last_workflow_id: s.last_workflow_id.clone(),
        last_workflow_status: last
            .map(|w| status_name(w.status()).to_string())
            .unwrap_or_default(),
        added_unix_ms: s.added_unix_ms,
        replication: if s.replicated {
            if s.replication_state.is_empty() {
                "replicating".into()
            } else {
                s.replication_state.clone()
            }
        } else {
            "not-replicated".into()
        },
        replication_checked_unix_ms: s.replication_checked_unix_ms,
        removal_workflow_id: String::new(),
        gluu_flavor: gluu.map_or(0, |g| g.flavor),
        machine_state: gluu.map_or(0, |g| g.machine_state),
        configured_components,
        started_workflows: Vec::new(),
    })
}

/// Every server, the primary first, then by hostname.
pub fn list_servers(ctl: &Ctl) -> Result<Vec<Server>, ClusterError> {
    let mut out = ctl
        .store
        .servers()?
        .iter()
        .map(|s| server_view(ctl, s))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| b.primary.cmp(&a.primary).then(a.hostname.cmp(&b.hostname)));
    Ok(out)
}

pub async fn add_server(
    ctl: &Ctl,
    r: &str,
    primary: bool,
    audit: &Audit,
) -> Result<Server, ClusterError> {
    let node = nodes::find(ctl, r)?;
    if node.role() != NodeRole::GluuNode {
        return Err(ClusterError::WrongRole {
            host: node.hostname.clone(),
            role: node.role().label(),
        });
    }
    let by = audit.who.clone();
    let row = audit
        .on(node.id.clone())
        .ok(format!("hostname={} primary={primary}", node.hostname));
    let nodes_now = ctl.store.nodes()?;
    let me = node.clone();
    let out = ctl
        .store
        .change_servers(
            move |servers| {
                with_server(&servers, &me, &nodes_now, primary, &by)
                    .map(|(write, rec)| (write, Vec::new(), rec))
            },
            Some(row),
        )
        .await??;
    let started = after_server_add(ctl, audit, &out.node_id).await?;
    let mut view = server_view(ctl, &out)?;
    view.started_workflows = started
        .into_iter()
        .map(|w| StartedWorkflow {
            status: w.status,
            id: w.id,
            kind: w.kind,
            queued_behind: w.queued_behind,
        })
        .collect();
    Ok(view)
}

/// The servers to write when `me` is added (as the primary when asked, or when there is none),
/// and its own record; refused when its OS family is not the primary's.
fn with_server(
    servers: &[ServerRecord],
    me: &NodeRecord,
    nodes_now: &[NodeRecord],
    primary: bool,
    by: &str,
) -> Result<(Vec<ServerRecord>, ServerRecord), ClusterError> {
    let becomes_primary = primary || servers.iter().all(|s| !s.primary);
    // The OS family must match the primary's (the new primary's: the others').
    let others = servers
        .iter()
        .filter(|s| s.node_id != me.id && (s.primary || becomes_primary))
        .filter_map(|s| nodes_now.iter().find(|n| n.id == s.node_id));
    for other in others {
        if let (Some(a), Some(b)) = (family(me), family(other))
            && a != b
        {
            return Err(ClusterError::OsMismatch {
                host: me.hostname.clone(),
                os: os_of(me),
                primary: other.hostname.clone(),
                primary_os: os_of(other),
            });
        }
    }
    let mut write = Vec::new();
    if becomes_primary {
        for s in servers {
            if s.primary && s.node_id != me.id {
                let mut s = s.clone();
                s.primary = false;
                write.push(s);
            }
        }
    }
    let mut rec = servers
        .iter()
        .find(|s| s.node_id == me.id)
        .cloned()
        .unwrap_or_else(|| ServerRecord {
            node_id: me.id.clone(),
            added_unix_ms: now_ms(),
            added_by: by.to_string(),
            ..Default::default()
        });
    rec.primary = rec.primary || becomes_primary;
    write.push(rec.clone());
    Ok((write, rec))
}

/// The follow-ups of a server's addition, each queued behind what holds its nodes; the
/// workflows they started.
async fn after_server_add(
    ctl: &Ctl,
    audit: &Audit,
    node_id: &str,
) -> Result<Vec<clustermgr_proto::Workflow>, ClusterError> {
    let mut started = Vec::new();
    started.extend(
        crate::hosts::after_change(ctl, &Audit::new(&audit.who, "hosts.apply", "server.add")).await,
    );
    started.extend(
        crate::cache::after_server_add(
            ctl,
            node_id,
            &Audit::new(&audit.who, "cache.install", "server.add"),
        )
        .await,
    );
    let lb_before = ctl
        .store
        .latest_workflow(clustermgr_workflow::lb::INSTALL_KIND)?;
    crate::lb::after_change(ctl, &Audit::new(&audit.who, "lb.update", "server.add")).await;
    let lb_after = ctl
        .store
        .latest_workflow(clustermgr_workflow::lb::INSTALL_KIND)?;
    if let Some(w) = lb_after.filter(|a| lb_before.as_ref().is_none_or(|b| b.id != a.id)) {
        started.push(w);
    }
    Ok(started)
}

fn find_server(ctl: &Ctl, r: &str) -> Result<(NodeRecord, ServerRecord), ClusterError> {
    let node = nodes::find(ctl, r)?;
    let s = ctl
        .store
        .server(&node.id)?
        .ok_or_else(|| ClusterError::NotAServer(node.hostname.clone()))?;
    Ok((node, s))
}

pub async fn make_primary(ctl: &Ctl, r: &str, audit: &Audit) -> Result<Server, ClusterError> {
    let (node, _) = find_server(ctl, r)?;
    if let Some(w) = running_workflow_on(ctl, &node.id)? {
        return Err(ClusterError::Busy {
            host: node.hostname,
            workflow: w.id,
            kind: w.kind,
        });
    }
    let id = node.id.clone();
    let row = audit
        .on(node.id.clone())
        .ok(format!("hostname={}", node.hostname));
    let rec = ctl
        .store
        .change_servers(
            move |servers| {
                let mut write = Vec::new();
                let mut mine = None;
                for s in servers {
                    let mut s = s.clone();
                    let want = s.node_id == id;
                    if s.primary != want {
                        s.primary = want;
                        write.push(s.clone());
                    }
                    if want {
                        mine = Some(s);
                    }
                }
                match mine {
                    Some(m) => Ok((write, Vec::new(), m)),
                    None => Err(ClusterError::NotAServer(id.clone())),
                }
            },
            Some(row),
        )
        .await??;
    server_view(ctl, &rec)
}

pub async fn remove_server(ctl: &Ctl, r: &str, audit: &Audit) -> Result<Server, ClusterError> {
    let (node, rec) = find_server(ctl, r)?;
    if let Some(w) = running_workflow_on(ctl, &node.id)? {
        return Err(ClusterError::Busy {
            host: node.hostname,
            workflow: w.id,
            kind: w.kind,
        });
    }
    let view = server_view(ctl, &rec)?;
    let id = node.id.clone();
    let row = audit
        .on(node.id.clone())
        .ok(format!("hostname={}", node.hostname));
    ctl.store
        .change_servers(
            move |_| Ok::<_, ClusterError>((Vec::new(), vec![id.clone()], ())),
            Some(row),
        )
        .await??;
    crate::cache::after_server_remove(
        ctl,
        &node.id,
        &Audit::new(&audit.who, "cache.detach", "server.remove"),
    )
    .await;
    crate::hosts::after_change(ctl, &Audit::new(&audit.who, "hosts.apply", "server.remove")).await;
    crate::lb::after_change(ctl, &Audit::new(&audit.who, "lb.update", "server.remove")).await;
    Ok(view)
}

/// The status of a workflow for the server list.
pub fn workflow_status(w: &Workflow) -> WorkflowStatus {
    w.status()
}

/// A change of components the rest of the cluster cannot take: saml while a Redis cache is
/// installed.
pub fn check_change(
    ctl: &Ctl,
    old: &ClusterSettingsRecord,
    new: &ClusterSettingsRecord,
) -> Result<(), ClusterError> {
    if crate::settings::of(new).contains(Component::Saml)
        && !crate::settings::of(old).contains(Component::Saml)
    {
        crate::cache::refuse_shibboleth(ctl)?;
    }
    Ok(())
}
