//! The status screens' actions: cache (install, password), load balancer (install nginx), file
//! replication (settings changes) and key rotation (settings, rotate now). Each is the gRPC
//! API's domain call with the same role, rules (`cache::NewPassword::of`,
//! `fsrep::change_audit`) and audit action, as `web:USER`. Workflows land on their live page,
//! settings changes back on their screen.

use super::actions::{CsrfForm, started};
use super::pages::{W, failure, message};
use super::redirect;
use crate::audit::record_failure;
use crate::auth::Role;
use crate::cache::NewPassword;
use crate::workflows::WhenBusy;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use clustermgr_proto::fsrep_change_request::Change;
use clustermgr_proto::{
    ConfigureKeysRequest, FsrepAction, FsrepChangeRequest, InstallLoadBalancerRequest,
    OxauthBalancing, SetCachePasswordRequest,
};
use clustermgr_shared::duration::parse_duration;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct NodesForm {
    #[serde(default)]
    csrf: Option<String>,
    /// Node names (hostname or id), comma-separated.
    #[serde(default)]
    node: String,
}

pub(super) async fn cache_install(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<NodesForm>,
) -> Response {
    let nodes: Vec<String> = f
        .node
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        f.csrf.as_deref(),
        "cache.install",
        nodes.join(","),
        |a| { crate::cache::install(&web.ctl, &nodes, false, WhenBusy::Queue, &a) }
    );
    started(&web, &s, "cache install", r.map(|x| x.workflow))
}

/// What the cache password form asks for.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum PasswordMode {
    Set,
    Random,
    Clear,
}

/// The cache password form. The password is write-only: never rendered, logged or audited.
#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    csrf: Option<String>,
    mode: PasswordMode,
    #[serde(default)]
    password: String,
}

pub(super) async fn cache_password(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<PasswordForm>,
) -> Response {
    let s = gate!(web, headers, Role::Operator, f.csrf.as_deref());
    if f.mode == PasswordMode::Set && f.password.is_empty() {
        return message(
            &web,
            StatusCode::BAD_REQUEST,
            Some(&s),
            "cache password: enter the new password (or choose a random one)",
        );
    }
    let req = SetCachePasswordRequest {
        password: match f.mode {
            PasswordMode::Set => f.password.into_bytes(),
            PasswordMode::Random | PasswordMode::Clear => Vec::new(),
        },
        clear: f.mode == PasswordMode::Clear,
        dry_run: false,
        no_wait: false,
    };
    let (action, new) = NewPassword::of(&req);
    let a = s.audit(action, "cluster");
    let r = match new {
        Ok(new) => crate::cache::set_password(&web.ctl, new, false, WhenBusy::Queue, &a).await,
        Err(e) => Err(e),
    };
    record_failure(&web.ctl.store, &a, &r).await;
    started(&web, &s, "cache password", r.map(|x| x.workflow))
}

/// How nginx balances /oxauth.
#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Balancing {
    /// The last install's choice, else sticky.
    #[default]
    Unchanged,
    Sticky,
    RoundRobin,
}

#[derive(Deserialize)]
pub(super) struct LbForm {
    #[serde(default)]
    csrf: Option<String>,
    /// The lb node; empty: the one node enrolled with role lb.
    #[serde(default)]
    node: String,
    #[serde(default)]
    balancing: Balancing,
}

pub(super) async fn lb_install(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<LbForm>,
) -> Response {
    let req = InstallLoadBalancerRequest {
        node: f.node.trim().to_string(),
        oxauth_balancing: match f.balancing {
            Balancing::Unchanged => OxauthBalancing::Unspecified,
            Balancing::Sticky => OxauthBalancing::Sticky,
            Balancing::RoundRobin => OxauthBalancing::RoundRobin,
        } as i32,
        dry_run: false,
    };
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        f.csrf.as_deref(),
        "lb.install",
        "cluster",
        |a| { crate::lb::install(&web.ctl, &req, &a) }
    );
    started(&web, &s, "load balancer install", r.map(|x| x.workflow))
}

/// One change of the file replication settings, as the form names it.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(super) enum FsChange {
    Enable,
    Disable,
    AddPath,
    RemovePath,
    AddExclude,
    RemoveExclude,
    AddAction,
    RemoveAction,
}

#[derive(Deserialize)]
pub(super) struct FsForm {
    #[serde(default)]
    csrf: Option<String>,
    change: FsChange,
    /// The path, exclude glob or action pattern.
    #[serde(default)]
    value: String,
    /// An action's service.
    #[serde(default)]
    service: String,
    /// add-path: a system directory (an admin's decision).
    #[serde(default)]
    force: Option<String>,
}

pub(super) async fn fsrep_change(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<FsForm>,
) -> Response {
    let value = f.value.trim().to_string();
    let action = || FsrepAction {
        pattern: value.clone(),
        service: f.service.trim().to_string(),
    };
    let change = match f.change {
        FsChange::Enable => Change::Enable(true),
        FsChange::Disable => Change::Enable(false),
        FsChange::AddPath => Change::AddPath(value.clone()),
        FsChange::RemovePath => Change::RemovePath(value.clone()),
        FsChange::AddExclude => Change::AddExclude(value.clone()),
        FsChange::RemoveExclude => Change::RemoveExclude(value.clone()),
        FsChange::AddAction => Change::AddAction(action()),
        FsChange::RemoveAction => Change::RemoveAction(action()),
    };
    let req = FsrepChangeRequest {
        change: Some(change),
        force: f.force.is_some(),
    };
    let (action, target, min) = crate::fsrep::change_audit(&req);
    let (s, r) = act!(web, headers, min, f.csrf.as_deref(), action, target, |a| {
        web.parts.fsrep.change_settings(&web.ctl, req, &a)
    });
    match r {
        Ok(_) => redirect("/status/fsrep"),
        Err(e) => failure(&web, &s, "file replication", e),
    }
}

#[derive(Deserialize)]
pub(super) struct KeysForm {
    #[serde(default)]
    csrf: Option<String>,
    /// Checkboxes: present when ticked.
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    backup: Option<String>,
    #[serde(default)]
    interval: String,
    #[serde(default)]
    overlap: String,
}

/// A duration field: empty leaves the setting as it is.
fn duration_ms(field: &str, v: &str) -> Result<Option<u64>, String> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    parse_duration(v.trim())
        .map(|d| Some(d.as_millis() as u64))
        .map_err(|e| format!("{field}: {e}"))
}

pub(super) async fn keys_configure(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<KeysForm>,
) -> Response {
    let s = gate!(web, headers, Role::Operator, f.csrf.as_deref());
    let parsed = duration_ms("interval", &f.interval)
        .and_then(|i| Ok((i, duration_ms("overlap", &f.overlap)?)));
    let (interval_ms, overlap_ms) = match parsed {
        Ok(v) => v,
        Err(e) => return message(&web, StatusCode::BAD_REQUEST, Some(&s), &e),
    };
    let req = ConfigureKeysRequest {
        enabled: Some(f.enabled.is_some()),
        interval_ms,
        backup: Some(f.backup.is_some()),
        overlap_ms,
    };
    let a = s.audit("keys.configure", "cluster");
    let r = crate::keys::configure(&web.ctl, &req, &a).await;
    record_failure(&web.ctl.store, &a, &r).await;
    match r {
        Ok(_) => redirect("/status/keys"),
        Err(e) => failure(&web, &s, "key rotation settings", e),
    }
}

pub(super) async fn keys_rotate(
    State(web): W,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let (s, r) = act!(
        web,
        headers,
        Role::Operator,
        f.csrf.as_deref(),
        "keys.rotate",
        "cluster",
        |a| { crate::keys::rotate(&web.ctl, false, WhenBusy::Queue, &a) }
    );
    started(&web, &s, "key rotation", r.map(|x| x.workflow))
}
