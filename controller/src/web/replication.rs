//! Replication: the per-node, per-base status (agreement, lag, partners) the CLI's
//! `replication status` shows, and deploy (every server, or one) and remove, each the API's
//! domain call with the operator role, landing on the started workflow's live page.

use super::actions::started;
use super::pages::{W, gate, gate_change, me, message};
use crate::audit::record_failure;
use crate::auth::Role;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use clustermgr_proto::DeployReplicationRequest;
use minijinja::context;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct BaseRow {
    base: String,
    reachable: bool,
    in_agreement: bool,
    partners: String,
    lag_ms: u64,
    error: String,
}

#[derive(Serialize)]
struct NodeRow {
    hostname: String,
    server_id: u32,
    reachable: bool,
    lag_ms: u64,
    error: String,
    bases: Vec<BaseRow>,
}

pub(super) async fn page(State(web): W, headers: HeaderMap) -> Response {
    let s = match gate(&web, &headers, Role::Viewer) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let servers: Vec<String> = crate::cluster::list_servers(&web.ctl)
        .map(|v| v.into_iter().map(|s| s.hostname).collect())
        .unwrap_or_default();
    let (report, problem) = match crate::replication::status(&web.ctl).await {
        Ok(r) => {
            if let Err(e) = crate::replication::record(&web.ctl, &r).await {
                tracing::warn!(error = %e, "cannot record the replication status");
            }
            (Some(r), None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    let nodes: Vec<NodeRow> = report
        .as_ref()
        .map(|r| {
            r.nodes
                .iter()
                .map(|n| NodeRow {
                    hostname: n.hostname.clone(),
                    server_id: n.server_id,
                    reachable: n.reachable,
                    lag_ms: n.lag_ms,
                    error: n.error.clone(),
                    bases: n
                        .bases
                        .iter()
                        .map(|b| BaseRow {
                            base: b.base.clone(),
                            reachable: b.reachable,
                            in_agreement: b.in_agreement,
                            partners: b.partners.join(", "),
                            lag_ms: b.lag_ms,
                            error: b.error.clone(),
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    web.render(
        "replication.html",
        context! {
            me => me(Some(&s)),
            nodes => nodes,
            in_agreement => report.as_ref().is_some_and(|r| r.in_agreement),
            problem => problem,
            servers => servers,
        },
    )
}

#[derive(Deserialize)]
pub(super) struct DeployForm {
    #[serde(default)]
    csrf: Option<String>,
    /// A server's hostname; empty: every installed server.
    #[serde(default)]
    node: String,
}

pub(super) async fn deploy(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<DeployForm>,
) -> Response {
    let req = DeployReplicationRequest {
        nodes: super::servers::named(&f.node),
        all: f.node.is_empty(),
        dry_run: false,
        no_wait: false,
    };
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        f.csrf.as_deref(),
        "replication.deploy",
        "cluster",
        |a| { crate::replication::deploy(&web.ctl, &req, &a) }
    );
    started(&web, &s, "replication deploy", r.map(|x| x.workflow))
}

pub(super) async fn remove(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<DeployForm>,
) -> Response {
    let s = match gate_change(&web, &headers, Role::Operator, f.csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if f.node.is_empty() {
        return message(&web, StatusCode::BAD_REQUEST, Some(&s), "which node?");
    }
    let a = s.audit("replication.remove", f.node.clone());
    let r = crate::replication::remove(&web.ctl, &f.node, false, &a).await;
    record_failure(&web.ctl.store, &a, &r).await;
    started(&web, &s, "replication remove", r.map(|x| x.workflow))
}
