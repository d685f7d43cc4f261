//! What operators do from the console's pages: cancel and retry a workflow. Each is the gRPC
//! API's domain call with the same role (operator) and audit action, as `web:USER`.

use super::pages::{W, failure, gate_change, message};
use super::sessions::Session;
use super::{Web, redirect};
use crate::audit::record_failure;
use crate::auth::Role;
use crate::error::Classify;
use crate::workflows::WorkflowError;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use clustermgr_proto::Workflow;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: Option<String>,
}

/// What a workflow action came to, as the page after it.
fn outcome(
    web: &Web,
    s: &Session,
    id: &str,
    r: Result<clustermgr_proto::Workflow, WorkflowError>,
) -> Response {
    match r {
        Ok(w) => redirect(&format!("/workflows/{}", w.id)),
        Err(e) => failure(web, s, &format!("workflow {id}"), e),
    }
}

/// A started workflow: its live page (queued ones too); else the error, with `what` was asked.
pub(super) fn started<E: Classify>(
    web: &Web,
    s: &Session,
    what: &str,
    r: Result<Option<Workflow>, E>,
) -> Response {
    match r {
        Ok(Some(w)) => redirect(&format!("/workflows/{}", w.id)),
        Ok(None) => message(
            web,
            StatusCode::OK,
            Some(s),
            &format!("{what}: nothing to do"),
        ),
        Err(e) => failure(web, s, what, e),
    }
}

/// What an operator does to a workflow from its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Cancel,
    Retry,
}

async fn change_workflow(
    web: &Web,
    headers: &HeaderMap,
    id: &str,
    csrf: Option<&str>,
    c: Change,
) -> Response {
    // A retry needs its kind's role (a restore's: admin).
    let min = match c {
        Change::Retry => crate::workflows::retry_role(&web.ctl, id).unwrap_or(Role::Operator),
        Change::Cancel => Role::Operator,
    };
    let s = match gate_change(web, headers, min, csrf) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let action = match c {
        Change::Cancel => "workflow.cancel",
        Change::Retry => "workflow.retry",
    };
    let a = s.audit(action, id);
    let r = match c {
        Change::Cancel => crate::workflows::cancel(&web.ctl, id, &a).await,
        Change::Retry => crate::workflows::retry(&web.ctl, id, &a).await,
    };
    record_failure(&web.ctl.store, &a, &r).await;
    outcome(web, &s, id, r)
}

pub(super) async fn workflow_cancel(
    State(web): W,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    change_workflow(&web, &headers, &id, f.csrf.as_deref(), Change::Cancel).await
}

pub(super) async fn workflow_retry(
    State(web): W,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    change_workflow(&web, &headers, &id, f.csrf.as_deref(), Change::Retry).await
}
