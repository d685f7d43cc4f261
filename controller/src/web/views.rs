//! The read-only views: dashboard, workflows, audit log.

use super::pages::{W, failure, gate, me, message};
use super::sessions::Session;
use super::{Web, plain};
use crate::auth::Role;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use clustermgr_proto::WorkflowStatus;
use clustermgr_shared::util::fmt_ms;
use clustermgr_workflow::{status_name, step_status_name};
use minijinja::context;
use serde::Serialize;

#[derive(Serialize)]
struct ServerRow {
    id: String,
    hostname: String,
    address: String,
    os: String,
    gluu_version: String,
    components: String,
    primary: bool,
    install_state: String,
    session: String,
    replication: String,
    last_workflow: String,
}

pub(super) async fn dashboard(State(web): W, headers: HeaderMap) -> Response {
    let s = match gate(&web, &headers, Role::Viewer) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let servers = match crate::cluster::list_servers(&web.ctl) {
        Ok(v) => v,
        Err(e) => {
            return failure(&web, &s, "this page", e);
        }
    };
    let rows: Vec<ServerRow> = servers
        .into_iter()
        .map(|v| ServerRow {
            id: v.node_id,
            hostname: v.hostname,
            address: v.address,
            os: v.os,
            gluu_version: v.gluu_version,
            components: v.components.join(", "),
            primary: v.primary,
            install_state: v.install_state,
            session: v.status,
            replication: v.replication,
            last_workflow: v.last_workflow_status,
        })
        .collect();
    let nodes = match crate::nodes::list(&web.ctl) {
        Ok(v) => v,
        Err(e) => {
            return failure(&web, &s, "this page", e);
        }
    };
    let nodes: Vec<NodeSummary> = nodes
        .into_iter()
        .map(|n| {
            let inv = n.inventory.unwrap_or_default();
            NodeSummary {
                is_server: rows.iter().any(|r| r.id == n.id),
                gluu_installed: inv.gluu.as_ref().is_some_and(|g| g.installed),
                hostname: n.hostname,
                role: n.role,
                status: n.status,
                approved: n.approved,
                os: inv.os_pretty_name,
                agent: inv.agent_version,
                last_seen: fmt_ms(n.last_seen_unix_ms),
            }
        })
        .collect();
    web.render(
        "dashboard.html",
        context! { me => me(Some(&s)), servers => rows, nodes => nodes },
    )
}

#[derive(Serialize)]
struct NodeSummary {
    /// Already a server of the cluster (else a gluu-node agent can be added).
    is_server: bool,
    /// Gluu Server is installed there (a standalone server can be adopted).
    gluu_installed: bool,
    hostname: String,
    role: String,
    status: String,
    approved: bool,
    os: String,
    agent: String,
    last_seen: String,
}

#[derive(Serialize)]
struct WorkflowRow {
    id: String,
    kind: String,
    status: &'static str,
    started_by: String,
    created: String,
    finished: String,
    nodes: usize,
    error: String,
}

pub(super) async fn workflows(State(web): W, headers: HeaderMap) -> Response {
    let s = match gate(&web, &headers, Role::Viewer) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let list = match crate::workflows::list(&web.ctl, 200) {
        Ok(v) => v,
        Err(e) => {
            return failure(&web, &s, "this page", e);
        }
    };
    let rows: Vec<WorkflowRow> = list
        .into_iter()
        .map(|w| WorkflowRow {
            status: status_name(w.status()),
            nodes: w.nodes.len(),
            id: w.id,
            kind: w.kind,
            started_by: w.started_by,
            created: fmt_ms(w.created_unix_ms),
            finished: fmt_ms(w.finished_unix_ms),
            error: w.error,
        })
        .collect();
    web.render(
        "workflows.html",
        context! { me => me(Some(&s)), workflows => rows },
    )
}

#[derive(Serialize)]
struct StepRow {
    name: String,
    status: &'static str,
    attempts: u32,
    started: String,
    finished: String,
    waiting_for: String,
    error: String,
}

#[derive(Serialize)]
struct NodeRow {
    hostname: String,
    steps: Vec<StepRow>,
}

/// What the workflow page and its live updates render: the workflow's state and every node's
/// steps.
fn workflow_view(w: &clustermgr_proto::Workflow, s: &Session) -> minijinja::Value {
    let status = w.status();
    let ended = clustermgr_workflow::is_terminal(status);
    let nodes: Vec<NodeRow> = w
        .nodes
        .iter()
        .map(|n| NodeRow {
            hostname: n.hostname.clone(),
            steps: n
                .steps
                .iter()
                .map(|st| StepRow {
                    name: st.name.clone(),
                    status: step_status_name(st.status()),
                    attempts: st.attempts,
                    started: fmt_ms(st.started_unix_ms),
                    finished: fmt_ms(st.finished_unix_ms),
                    waiting_for: st.waiting_for.clone(),
                    error: st.error.clone(),
                })
                .collect(),
        })
        .collect();
    context! {
        id => w.id.clone(),
        kind => w.kind.clone(),
        status => status_name(w.status()),
        started_by => w.started_by.clone(),
        created => fmt_ms(w.created_unix_ms),
        error => w.error.clone(),
        queued_behind => w.queued_behind.clone(),
        nodes => nodes,
        can_cancel => s.role >= Role::Operator && !ended,
        can_retry => s.role >= Role::Operator
            && matches!(status, WorkflowStatus::Failed | WorkflowStatus::Cancelled),
        csrf => s.csrf.clone(),
    }
}

pub(super) async fn workflow(
    State(web): W,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let s = match gate(&web, &headers, Role::Viewer) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match web.ctl.store.workflow(&id) {
        Ok(Some(w)) => web.render(
            "workflow.html",
            context! { me => me(Some(&s)), w => workflow_view(&w, &s) },
        ),
        Ok(None) => message(&web, StatusCode::NOT_FOUND, Some(&s), "no such workflow"),
        Err(e) => failure(&web, &s, "this page", e),
    }
}

/// Server-sent events of one workflow: its state and steps (the page's live part, rendered)
/// now and at every change of a workflow record, then `end` once it has ended. Driven by the
/// workflow driver's change notifications, not by polling.
pub(super) async fn workflow_events(
    State(web): W,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let s = match gate(&web, &headers, Role::Viewer) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match web.ctl.store.workflow(&id) {
        Ok(Some(_)) => {}
        Ok(None) => return plain(StatusCode::NOT_FOUND, "no such workflow"),
        Err(e) => {
            tracing::error!(error = %e, "web console: cannot read a workflow");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    }
    let guard = super::live::Guard::new(&web, &headers, Role::Viewer);
    let changes = web.ctl.workflows.subscribe();
    super::live::live(web, guard, changes, std::time::Duration::ZERO, move |web| {
        let w = web.ctl.store.workflow(&id).ok().flatten()?;
        let html = web.fragment(
            "workflow_live.html",
            context! { w => workflow_view(&w, &s) },
        )?;
        Some((html, clustermgr_workflow::is_terminal(w.status())))
    })
}

#[derive(Serialize)]
struct AuditRow {
    time: String,
    who: String,
    action: String,
    target: String,
    detail: String,
    result: String,
    count: u64,
}

async fn audit_page(web: &Web, s: &Session) -> Response {
    let rows = match crate::audit::list(&web.ctl.store, 500) {
        Ok(v) => v,
        Err(e) => {
            return failure(web, s, "this page", e);
        }
    };
    let rows: Vec<AuditRow> = rows
        .into_iter()
        .rev()
        .map(|e| AuditRow {
            time: fmt_ms(e.unix_ms),
            who: e.who,
            action: e.action,
            target: e.target,
            detail: e.detail,
            result: e.result,
            count: e.count.max(1),
        })
        .collect();
    web.render("audit.html", context! { me => me(Some(s)), rows => rows })
}

pub(super) async fn audit(State(web): W, headers: HeaderMap) -> Response {
    match gate(&web, &headers, Role::Viewer) {
        Ok(s) => audit_page(&web, &s).await,
        Err(r) => *r,
    }
}
