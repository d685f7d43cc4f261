//! The dashboard's server actions: add an enrolled gluu-node agent as a server, make a server
//! the primary, remove a server (a replicated one leaves replication first), adopt a standalone
//! Gluu Server, install Gluu on one server or all. Each is the
//! API's domain call with the operator role and the same audit action, as `web:USER`.

use super::actions::started;
use super::pages::{W, failure};
use super::redirect;
use crate::auth::Role;
use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use clustermgr_proto::{InstallGluuRequest, NodeRef};
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct ServerForm {
    #[serde(default)]
    csrf: Option<String>,
    /// A hostname or node id; for install, empty means every server.
    #[serde(default)]
    node: String,
    /// add: the first server becomes the primary anyway; this makes another one primary.
    #[serde(default)]
    primary: Option<String>,
}

/// What a server action came to: the dashboard, or the failure's page.
fn landed<T, E: crate::error::Classify>(
    web: &super::Web,
    s: &super::sessions::Session,
    what: &str,
    r: Result<T, E>,
) -> Response {
    match r {
        Ok(_) => redirect("/dashboard"),
        Err(e) => failure(web, s, what, e),
    }
}

pub(super) async fn add(State(web): W, headers: HeaderMap, Form(f): Form<ServerForm>) -> Response {
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        f.csrf.as_deref(),
        "server.add",
        f.node.clone(),
        |a| { crate::cluster::add_server(&web.ctl, &f.node, f.primary.is_some(), &a) }
    );
    landed(&web, &s, "server add", r)
}

pub(super) async fn remove(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<ServerForm>,
) -> Response {
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        f.csrf.as_deref(),
        "server.remove",
        f.node.clone(),
        |a| { crate::replication::remove_server(&web.ctl, &f.node, &a) }
    );
    landed(&web, &s, "server remove", r)
}

/// The node a form names, or none (then the request is for all).
pub(super) fn named(node: &str) -> Vec<NodeRef> {
    if node.is_empty() {
        Vec::new()
    } else {
        vec![NodeRef {
            node: node.to_string(),
        }]
    }
}

pub(super) async fn install(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<ServerForm>,
) -> Response {
    let req = InstallGluuRequest {
        nodes: named(&f.node),
        all: f.node.is_empty(),
        force: false,
        dry_run: false,
        no_wait: false,
    };
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        f.csrf.as_deref(),
        "gluu.install",
        "cluster",
        |a| { crate::gluu::install_gluu(&web.ctl, &web.parts.fsrep, &req, &a) }
    );
    started(&web, &s, "gluu install", r.map(|x| x.workflow))
}

/// Edit a server: make it the primary.
pub(super) async fn make_primary(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<ServerForm>,
) -> Response {
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        f.csrf.as_deref(),
        "server.make-primary",
        f.node.clone(),
        |a| { crate::cluster::make_primary(&web.ctl, &f.node, &a) }
    );
    landed(&web, &s, "make primary", r)
}

/// Adopt a standalone Gluu Server as the cluster's primary.
pub(super) async fn adopt(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<ServerForm>,
) -> Response {
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        f.csrf.as_deref(),
        "gluu.adopt",
        f.node.clone(),
        |a| { crate::gluu::adopt_gluu(&web.ctl, &f.node, &a) }
    );
    started(&web, &s, "gluu adopt", r.map(|x| x.workflow))
}
