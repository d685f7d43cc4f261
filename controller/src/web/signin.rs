//! Sign-in, first-run setup and sign-out.

use super::pages::{W, gate_change, message, pre_session_form, pre_session_ok};
use super::sessions::COOKIE;
use super::users::UserError;
use super::{PRE_COOKIE, Web, redirect, set_cookie};
use crate::audit::{Audit, UNAUTHENTICATED};
use crate::auth::Role;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Deserialize)]
pub(super) struct SetupForm {
    #[serde(default)]
    form_token: Option<String>,
    #[serde(default)]
    setup_code: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

pub(super) async fn setup_form(State(web): W) -> Response {
    if !web.users.needs_setup() {
        return redirect("/login");
    }
    pre_session_form(&web, "setup.html", StatusCode::OK, None)
}

pub(super) async fn setup_submit(
    State(web): W,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<SetupForm>,
) -> Response {
    if let Err(r) = pre_session_ok(&headers, f.form_token.as_deref()) {
        return *r;
    }
    let source = peer.ip().to_string();
    if let Err(wait) = web.limiter.check("(setup)", &source) {
        return too_many(&web, "setup.html", wait);
    }
    match web
        .users
        .setup(&f.setup_code, &f.username, &f.password, &f.password_again)
        .await
    {
        Ok(u) => {
            let a = Audit::new(format!("web:{}", u.name), "web.setup", u.name.clone());
            record(&web, a.ok(format!("first admin from {source}"))).await;
            signed_in(&web, &u.name, u.role)
        }
        Err(UserError::SetupDone) => redirect("/login"),
        Err(e) => {
            if matches!(e, UserError::BadSetupCode) {
                web.limiter.failed("(setup)", &source);
                let a = Audit::new(UNAUTHENTICATED, "web.setup", source);
                record(&web, a.failed("wrong setup code")).await;
            }
            pre_session_form(
                &web,
                "setup.html",
                StatusCode::BAD_REQUEST,
                Some(e.to_string()),
            )
        }
    }
}

fn too_many(web: &Web, form: &str, wait: std::time::Duration) -> Response {
    pre_session_form(
        web,
        form,
        StatusCode::TOO_MANY_REQUESTS,
        Some(format!(
            "too many failed attempts: try again in {} minutes",
            wait.as_secs().div_ceil(60)
        )),
    )
}

pub(super) async fn record(web: &Web, row: clustermgr_proto::AuditEntry) {
    if let Err(e) = web.ctl.store.append_audit(row).await {
        tracing::error!(error = %e, "web console: cannot write an audit row");
    }
}

/// Starts a session and lands on the dashboard.
fn signed_in(web: &Web, user: &str, role: Role) -> Response {
    let (id, _) = web.sessions.create(user, role);
    let mut r = redirect("/dashboard");
    set_cookie(&mut r, COOKIE, &id, super::sessions::ABSOLUTE.as_secs());
    set_cookie(&mut r, PRE_COOKIE, "", 0);
    r
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    form_token: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub(super) async fn login_form(State(web): W, headers: HeaderMap) -> Response {
    if web.users.needs_setup() {
        return redirect("/setup");
    }
    if web.session(&headers).is_some() {
        return redirect("/dashboard");
    }
    pre_session_form(&web, "login.html", StatusCode::OK, None)
}

pub(super) async fn login_submit(
    State(web): W,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if let Err(r) = pre_session_ok(&headers, f.form_token.as_deref()) {
        return *r;
    }
    let source = peer.ip().to_string();
    let name = f.username.trim().to_string();
    if let Err(wait) = web.limiter.check(&name, &source) {
        let a = Audit::new(UNAUTHENTICATED, "web.sign-in", source);
        record(&web, a.failed(&format!("rate-limited ({name})"))).await;
        return too_many(&web, "login.html", wait);
    }
    match web.users.verify(&name, &f.password).await {
        Ok(Some(role)) => {
            web.limiter.succeeded(&name);
            let a = Audit::new(format!("web:{name}"), "web.sign-in", name.clone());
            record(&web, a.ok(format!("from {source} as {}", role.as_str()))).await;
            signed_in(&web, &name, role)
        }
        Ok(None) => {
            web.limiter.failed(&name, &source);
            let a = Audit::new(UNAUTHENTICATED, "web.sign-in", source);
            record(
                &web,
                a.failed(&format!("wrong user name or password ({name})")),
            )
            .await;
            pre_session_form(
                &web,
                "login.html",
                StatusCode::UNAUTHORIZED,
                Some("wrong user name or password".into()),
            )
        }
        Err(e) => message(
            &web,
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            &e.to_string(),
        ),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: Option<String>,
}

pub(super) async fn logout(State(web): W, headers: HeaderMap, Form(f): Form<CsrfOnly>) -> Response {
    if let Err(r) = gate_change(&web, &headers, Role::Viewer, f.csrf.as_deref()) {
        return *r;
    }
    if let Some((id, s)) = web.session(&headers) {
        web.sessions.end(&id);
        let a = s.audit("web.sign-out", s.user.clone());
        record(&web, a.ok("")).await;
    }
    let mut r = redirect("/login");
    set_cookie(&mut r, COOKIE, "", 0);
    r
}
